/* report.h - the run report (XML) of DESIGN.md section 9.
 *
 * np_report_write() writes one XML document (libxml2's xmlTextWriter,
 * UTF-8, indented) describing an np_run, through the atomic writer: the
 * file appears whole or not at all.  The document validates against
 * data/nepenc-report.rng, which ships with nepenc (pkgdata); that schema
 * is the reference for every element and attribute.  Outline:
 *
 *   <nepenc-report version="1" generator="nepenc VERSION">
 *     <settings zeta theta entropy-eps max-iter epochs backoff
 *               method criterion fold [easier-map] [min-live]/>
 *     <accuracy chosen>  <dense split top1/>... <final split top1/>...
 *     <iterations count> <iteration index zeta val-top1 accepted backoff
 *                          sparsity seconds [chosen] [layer map]>
 *                          <layer .../> per rectified layer (EASIER:
 *                          present="no" for one an earlier step removed)
 *     <layers count removed> <layer .../> per layer, chosen iterate
 *     <passes count> <folded|linearized|removed|refused|undone
 *                     pass node [into] [why]/>
 *     <summary .../>
 *
 * Neuron states are summarised per layer by partitioning the neurons:
 * on / off / off-hi (only that state was seen), dont-care (every
 * observation sat on a state bound, so nothing was counted) and mixed
 * (two or more states); zero-neurons = on + off + off-hi + dont-care.
 * Layer indices are 1-based, like iterations (iteration 0 = the input).
 *
 * What the report says a layer became is read from the pass log, keyed by
 * the layer's name (its rectifier's node name, run->layer_names):
 *   linearized  a NP_LOG_LINEARIZED entry names it as node and no later
 *               NP_LOG_UNDONE entry does;
 *   folded      linearized, and its LINEARIZED entry has `into` set (the
 *               map went into that node) or a FOLDED or REMOVED entry
 *               names it as node; otherwise "linearized, not folded";
 *   approximate linearized, and a GELU/SiLU layer, or H(l) > 0 in the
 *               chosen iterate's profile (--entropy-eps), or removed by
 *               an EASIER step that took the identity or majority map;
 *   removed     its rectifier is gone from the output (run->gone, read
 *               off the written model), and removed-by says what took it:
 *               linearize (at emission), easier (an EASIER step) or
 *               fold (a branch folded into a constant took it along).
 *
 * Numbers: doubles print in the shortest form of at least 6 significant
 * digits that reads back exactly
 * (at most 17 significant digits; NaN, INF, -INF as xsd:double spells
 * them); seconds print as %.3f.  Same run => same bytes.
 */
#ifndef NEPENC_REPORT_H
#define NEPENC_REPORT_H

#include "nepenthe.h"
#include "status.h"

np_status np_report_write(const np_run *run, const char *path, np_error *err);

/* ------------------------------------------- shared with the plot (SVG) */

/* The partition of a layer's neurons described above. */
typedef struct np_state_summary {
	int64_t on, off, off_hi, dont_care, mixed;
	int64_t dont_care_samples;      /* sum of np_layer_profile.dont_care */
} np_state_summary;

void np_state_summarise(const np_layer_profile *lp, np_state_summary *s);

/* What the pass log says became of layer i (0-based), see above. */
typedef struct np_layer_fate {
	bool linearized, folded, approximate;
	np_gone gone;                   /* NP_GONE_NO without run->gone */
} np_layer_fate;

void np_layer_fate_of(const np_run *run, int i, np_layer_fate *f);

/* Names of the settings' enums as the report spells them. */
const char *np_method_name(np_method m);
const char *np_gone_name(np_gone g);      /* removed-by: "linearize" ... */
const char *np_criterion_name(np_criterion c);
const char *np_fold_name(np_fold_policy f);

/* A malloc'd copy of s that is well-formed XML character data: names
 * come from the model file, which nothing forces to be UTF-8.  Invalid
 * bytes and characters XML 1.0 forbids become U+FFFD.  NULL: no memory. */
char *np_xml_clean(const char *s);

/* Shortest "%.*g" of at least 6 digits that reads back as v (xsd:double spelling for
 * non-finite values) into buf; returns buf. */
char *np_fmt_double(char *buf, size_t size, double v);

#endif
