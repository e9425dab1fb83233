/* report.c - the run report as XML (see report.h; schema
 * data/nepenc-report.rng).
 *
 * The document is built in memory with xmlTextWriter, then written through
 * the atomic writer in one go: a failure while building leaves no file.
 * Writer calls only fail on allocation; rather than test each one, the
 * helpers below latch the first failure and the end checks it once.
 */
#include "config.h"

#include "report.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/xmlwriter.h>

#include "atomic.h"
#include "layers.h"

/* ------------------------------------------------------ shared helpers */

const char *np_method_name(np_method m)
{
	switch (m) {
	case NP_METHOD_IMP: return "imp";
	case NP_METHOD_EASIER: return "easier";
	default: return "nepenthe";
	}
}

const char *np_gone_name(np_gone g)
{
	switch (g) {
	case NP_GONE_LINEARIZED: return "linearize";
	case NP_GONE_EASIER: return "easier";
	case NP_GONE_FOLDED: return "fold";
	default: return "no";
	}
}

/* The accepted EASIER step that removed layer i (0-based), or NULL. */
static const np_iteration *easier_step_of(const np_run *run, int i)
{
	for (int k = 0; k < run->n_it; k++)
		if (run->it[k].layer == i + 1 && run->it[k].accepted)
			return &run->it[k];
	return NULL;
}

const char *np_criterion_name(np_criterion c)
{
	return c == NP_CRIT_WANDA ? "wanda" : "magnitude";
}

const char *np_fold_name(np_fold_policy f)
{
	switch (f) {
	case NP_FOLD_APPROX: return "approx";
	case NP_FOLD_NONE: return "none";
	default: return "exact";
	}
}

char *np_fmt_double(char *buf, size_t size, double v)
{
	if (isnan(v)) {
		snprintf(buf, size, "NaN");
	} else if (isinf(v)) {
		snprintf(buf, size, v > 0 ? "INF" : "-INF");
	} else {
		/* From 6 digits: 90 stays "90", not the shorter "9e+01". */
		for (int p = 6; p <= 17; p++) {
			snprintf(buf, size, "%.*g", p, v);
			if (strtod(buf, NULL) == v)
				break;
		}
	}
	return buf;
}

void np_state_summarise(const np_layer_profile *lp, np_state_summary *s)
{
	memset(s, 0, sizeof *s);
	int ns = lp->n_states;
	for (int64_t i = 0; i < lp->neurons; i++) {
		const int64_t *c = lp->counts ? lp->counts + i * ns : NULL;
		int seen = 0, last = -1;
		for (int k = 0; c && k < ns; k++) {
			if (c[k] > 0) {
				seen++;
				last = k;
			}
		}
		if (lp->dont_care)
			s->dont_care_samples += lp->dont_care[i];
		if (seen > 1)
			s->mixed++;
		else if (seen == 0)
			s->dont_care++;
		else if (last == NP_STATE_ON)
			s->on++;
		else if (last == NP_STATE_OFF)
			s->off++;
		else
			s->off_hi++;
	}
}

static bool same(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

void np_layer_fate_of(const np_run *run, int i, np_layer_fate *f)
{
	memset(f, 0, sizeof *f);
	const char *name = run->layer_names ? run->layer_names[i] : NULL;
	if (run->gone && i < run->layers)
		f->gone = (np_gone)run->gone[i];
	if (!name)
		return;
	/* Later entries override earlier ones: undo, then a retry, etc. */
	for (int k = 0; k < run->log.n; k++) {
		const np_log_entry *e = &run->log.v[k];
		if (!same(e->node, name))
			continue;
		if (e->kind == NP_LOG_LINEARIZED) {
			f->linearized = true;
			f->folded = e->into && *e->into;
		} else if (e->kind == NP_LOG_UNDONE) {
			f->linearized = f->folded = false;
		} else if ((e->kind == NP_LOG_FOLDED ||
		            e->kind == NP_LOG_REMOVED) && f->linearized) {
			f->folded = true;
		}
	}
	if (!f->linearized)
		return;
	const char *kind = run->layer_kinds ? run->layer_kinds[i] : NULL;
	bool exact_kind = !same(kind, np_rect_kind_name(NP_RECT_GELU)) &&
	                  !same(kind, np_rect_kind_name(NP_RECT_SILU));
	/* Without a profile of the chosen iterate, eps cannot be judged.  A
	 * layer an EASIER step removed is absent from that profile: the
	 * step's map says. */
	const np_iteration *step = easier_step_of(run, i);
	bool zero_H = step ? step->map == NP_MAP_EXACT
	            : i >= run->final_profile.n || run->final_profile.l[i].H_layer == 0;
	f->approximate = !exact_kind || !zero_H;
}

/* ------------------------------------------------------- text cleaning */

/* Length of the valid UTF-8 sequence at s that is a legal XML 1.0
 * character, 0 if there is none. */
static size_t xml_char_len(const unsigned char *s)
{
	unsigned c = s[0];
	if (c < 0x80)
		return (c >= 0x20 || c == '\t' || c == '\n' || c == '\r') ? 1 : 0;
	size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
	if (n == 0 || c > 0xf4)
		return 0;
	uint32_t cp = c & (0x3f >> (n - 1));
	for (size_t k = 1; k < n; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[k] & 0x3f);
	}
	static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
	if (cp < min_cp[n] || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff)
		return 0;
	return n;
}

char *np_xml_clean(const char *s)
{
	size_t len = strlen(s);
	char *out = malloc(len * 3 + 1);
	if (!out)
		return NULL;
	char *o = out;
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		size_t n = xml_char_len(p);
		if (n) {
			memcpy(o, p, n);
			o += n;
			p += n;
		} else {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
			p++;
		}
	}
	*o = '\0';
	return out;
}

/* ------------------------------------------------------- writer helpers */

typedef struct xw {
	xmlTextWriterPtr w;
	bool bad;                    /* a writer call failed (no memory) */
} xw;

static void x_check(xw *x, int rc)
{
	if (rc < 0)
		x->bad = true;
}

static void x_start(xw *x, const char *name)
{
	x_check(x, xmlTextWriterStartElement(x->w, BAD_CAST name));
}

static void x_end(xw *x)
{
	x_check(x, xmlTextWriterEndElement(x->w));
}

static void x_attr(xw *x, const char *name, const char *value)
{
	char *v = np_xml_clean(value ? value : "");
	if (!v) {
		x->bad = true;
		return;
	}
	x_check(x, xmlTextWriterWriteAttribute(x->w, BAD_CAST name, BAD_CAST v));
	free(v);
}

static void x_double(xw *x, const char *name, double v)
{
	char buf[40];
	x_attr(x, name, np_fmt_double(buf, sizeof buf, v));
}

static void x_int(xw *x, const char *name, int64_t v)
{
	char buf[24];
	snprintf(buf, sizeof buf, "%lld", (long long)v);
	x_attr(x, name, buf);
}

static void x_bool(xw *x, const char *name, bool v)
{
	x_attr(x, name, v ? "yes" : "no");
}

static void x_seconds(xw *x, const char *name, double v)
{
	char buf[40];
	if (isfinite(v))
		snprintf(buf, sizeof buf, "%.3f", v);
	else
		np_fmt_double(buf, sizeof buf, v);
	x_attr(x, name, buf);
}

/* ------------------------------------------------------------ sections */

static void write_settings(xw *x, const np_run *r)
{
	x_start(x, "settings");
	x_double(x, "zeta", r->zeta);
	x_double(x, "theta", r->theta);
	x_double(x, "entropy-eps", r->entropy_eps);
	x_int(x, "max-iter", r->max_iter);
	x_int(x, "epochs", r->epochs);
	x_int(x, "backoff", r->backoff);
	x_attr(x, "method", np_method_name(r->method));
	x_attr(x, "criterion", np_criterion_name(r->criterion));
	x_attr(x, "fold", np_fold_name(r->fold));
	if (r->method == NP_METHOD_EASIER)
		x_attr(x, "easier-map", np_easier_map_name(r->easier_map));
	if (r->min_live > 0)
		x_double(x, "min-live", r->min_live);
	x_end(x);
}

static void write_top1(xw *x, const char *what, const char *split, double v)
{
	x_start(x, what);
	x_attr(x, "split", split);
	x_double(x, "top1", v);
	x_end(x);
}

/* Test accuracy is negative when the run had no --test data. */
static void write_accuracy(xw *x, const np_run *r)
{
	x_start(x, "accuracy");
	x_int(x, "chosen", r->chosen);
	write_top1(x, "dense", "validation", r->dense_val);
	if (r->dense_test >= 0)
		write_top1(x, "dense", "test", r->dense_test);
	write_top1(x, "final", "validation", r->final_val);
	if (r->final_test >= 0)
		write_top1(x, "final", "test", r->final_test);
	x_end(x);
}

static const char *layer_name(const np_run *r, int i)
{
	return r->layer_names && r->layer_names[i] ? r->layer_names[i] : "";
}

static const char *layer_kind(const np_run *r, int i)
{
	return r->layer_kinds && r->layer_kinds[i] ? r->layer_kinds[i] : "";
}

/* The kind as inspect prints it (relu6, gelu(erf pattern)), else the
 * family. */
static const char *layer_label(const np_run *r, int i)
{
	return r->layer_labels && r->layer_labels[i] ? r->layer_labels[i]
	                                              : layer_kind(r, i);
}

/* Attributes shared by both kinds of <layer>: identity and states. */
static void write_layer_profile(xw *x, const np_run *r, int i,
                                const np_layer_profile *lp)
{
	x_int(x, "index", i + 1);
	x_attr(x, "name", layer_name(r, i));
	x_attr(x, "kind", layer_label(r, i));
	x_attr(x, "family", layer_kind(r, i));
	if (lp && lp->absent)
		x_attr(x, "present", "no");
	if (!lp || lp->absent)
		return;
	np_state_summary s;
	np_state_summarise(lp, &s);
	x_double(x, "H", lp->H_layer);
	x_int(x, "neurons", lp->neurons);
	x_int(x, "zero-neurons", lp->zero_neurons);
	x_int(x, "on", s.on);
	x_int(x, "off", s.off);
	if (lp->n_states > 2)
		x_int(x, "off-hi", s.off_hi);
	x_int(x, "dont-care", s.dont_care);
	x_int(x, "mixed", s.mixed);
	x_int(x, "dont-care-samples", s.dont_care_samples);
}

static void write_iteration(xw *x, const np_run *r, const np_iteration *it)
{
	x_start(x, "iteration");
	x_int(x, "index", it->index);
	x_double(x, "zeta", it->zeta);
	x_double(x, "val-top1", it->val_top1);
	x_bool(x, "accepted", it->accepted);
	x_bool(x, "backoff", it->backoff);
	x_double(x, "sparsity", it->sparsity);
	x_seconds(x, "seconds", it->seconds);
	x_bool(x, "chosen", it->index == r->chosen);
	if (it->layer > 0) {
		x_int(x, "layer", it->layer);
		x_attr(x, "map", np_easier_map_name(it->map));
	}
	for (int i = 0; i < r->layers; i++) {
		x_start(x, "layer");
		write_layer_profile(x, r, i, &it->profile.l[i]);
		if (it->mask) {
			const np_mask_layer_stat *m = &it->mask[i];
			x_int(x, "budget", m->budget);
			x_int(x, "removed", m->removed);
			x_int(x, "nonzero-before", m->nonzero_before);
			x_double(x, "I", m->I);
			x_double(x, "R", m->R);
		}
		x_end(x);
	}
	x_end(x);
}

static void write_iterations(xw *x, const np_run *r)
{
	x_start(x, "iterations");
	x_int(x, "count", r->n_it);
	for (int k = 0; k < r->n_it; k++)
		write_iteration(x, r, &r->it[k]);
	x_end(x);
}

static void write_layers(xw *x, const np_run *r)
{
	x_start(x, "layers");
	x_int(x, "count", r->layers);
	x_int(x, "removed", r->removed);
	for (int i = 0; i < r->layers; i++) {
		const np_layer_profile *lp =
			r->final_profile.n ? &r->final_profile.l[i] : NULL;
		np_layer_fate f;
		np_layer_fate_of(r, i, &f);
		x_start(x, "layer");
		write_layer_profile(x, r, i, lp);
		if (lp && !lp->absent)
			x_bool(x, "removable", r->entropy_eps > 0
			       ? lp->H_layer <= r->entropy_eps : lp->H_layer == 0);
		x_bool(x, "removed", r->gone ? f.gone != NP_GONE_NO : f.linearized);
		if (f.gone != NP_GONE_NO)
			x_attr(x, "removed-by", np_gone_name(f.gone));
		x_bool(x, "linearized", f.linearized);
		x_bool(x, "folded", f.folded);
		x_bool(x, "approximate", f.approximate);
		x_end(x);
	}
	x_end(x);
}

static const char *log_kind_name(np_log_kind k)
{
	switch (k) {
	case NP_LOG_FOLDED: return "folded";
	case NP_LOG_LINEARIZED: return "linearized";
	case NP_LOG_REMOVED: return "removed";
	case NP_LOG_REFUSED: return "refused";
	default: return "undone";
	}
}

static void write_passes(xw *x, const np_run *r)
{
	x_start(x, "passes");
	x_int(x, "count", r->log.n);
	for (int k = 0; k < r->log.n; k++) {
		const np_log_entry *e = &r->log.v[k];
		x_start(x, log_kind_name(e->kind));
		if (e->pass)
			x_attr(x, "pass", e->pass);
		x_attr(x, "node", e->node);
		if (e->into)
			x_attr(x, "into", e->into);
		if (e->why)
			x_attr(x, "why", e->why);
		x_end(x);
	}
	x_end(x);
}

static void write_summary(xw *x, const np_run *r)
{
	x_start(x, "summary");
	x_int(x, "layers", r->layers);
	x_int(x, "layers-removed", r->removed);
	x_int(x, "iterations", r->n_it);
	x_int(x, "chosen", r->chosen);
	x_int(x, "nodes-before", r->nodes_before);
	x_int(x, "nodes-after", r->nodes_after);
	x_int(x, "depth-before", r->depth_before);
	x_int(x, "depth-after", r->depth_after);
	x_double(x, "sparsity", r->sparsity);
	x_seconds(x, "seconds", r->seconds);
	if (r->logits_compared) {
		x_double(x, "logit-max-abs-diff", r->logit_max_abs);
		x_double(x, "logit-mean-abs-diff", r->logit_mean_abs);
	}
	x_end(x);
}

/* ---------------------------------------------------------------- entry */

/* Every profile must have one entry per layer: a mismatch is a bug in
 * the caller, reported rather than read out of bounds. */
static np_status check_run(const np_run *r, np_error *err)
{
	if (r->layers < 0 || r->n_it < 0 || (r->n_it > 0 && !r->it))
		return np_fail(err, NP_ERR_INVALID, "the run record is incomplete "
		               "(%d layers, %d iterations)", r->layers, r->n_it);
	for (int k = 0; k < r->n_it; k++) {
		if (r->it[k].profile.n != r->layers)
			return np_fail(err, NP_ERR_INVALID, "the run record is "
			               "inconsistent: iteration %d profiles %d layers, "
			               "the run has %d", r->it[k].index,
			               r->it[k].profile.n, r->layers);
	}
	if (r->final_profile.n != 0 && r->final_profile.n != r->layers)
		return np_fail(err, NP_ERR_INVALID, "the run record is inconsistent: "
		               "the chosen iterate profiles %d layers, the run has %d",
		               r->final_profile.n, r->layers);
	return NP_OK;
}

static void write_document(xw *x, const np_run *r)
{
	x_check(x, xmlTextWriterSetIndent(x->w, 1));
	x_check(x, xmlTextWriterSetIndentString(x->w, BAD_CAST "  "));
	x_check(x, xmlTextWriterStartDocument(x->w, "1.0", "UTF-8", NULL));
	x_start(x, "nepenc-report");
	x_attr(x, "version", "1");
	x_attr(x, "generator", PACKAGE_NAME " " PACKAGE_VERSION);
	write_settings(x, r);
	write_accuracy(x, r);
	write_iterations(x, r);
	write_layers(x, r);
	write_passes(x, r);
	write_summary(x, r);
	x_end(x);
	x_check(x, xmlTextWriterEndDocument(x->w));
}

static np_status write_bytes(const char *path, const void *p, size_t n,
                             np_error *err)
{
	np_atomic_file *f = np_atomic_open(path, err);
	if (!f)
		return err->status ? err->status : NP_ERR_IO;
	FILE *fp = np_atomic_stream(f);
	/* The writer ends the root element without a newline; text files
	 * end with one. */
	if (fwrite(p, 1, n, fp) != n || fputc('\n', fp) == EOF) {
		np_atomic_abort(f);
		return np_fail(err, NP_ERR_IO, "cannot write %s", path);
	}
	return np_atomic_commit(f, err);
}

np_status np_report_write(const np_run *run, const char *path, np_error *err)
{
	np_status st = check_run(run, err);
	if (st != NP_OK)
		return st;
	xmlBufferPtr buf = xmlBufferCreate();
	xw x = {buf ? xmlNewTextWriterMemory(buf, 0) : NULL, false};
	if (!x.w) {
		if (buf)
			xmlBufferFree(buf);
		return np_fail(err, NP_ERR_NOMEM, "out of memory writing %s", path);
	}
	write_document(&x, run);
	xmlFreeTextWriter(x.w);      /* flushes into buf */
	if (x.bad)
		st = np_fail(err, NP_ERR_NOMEM, "out of memory writing %s", path);
	else
		st = write_bytes(path, xmlBufferContent(buf),
		                 (size_t)xmlBufferLength(buf), err);
	xmlBufferFree(buf);
	return st;
}
