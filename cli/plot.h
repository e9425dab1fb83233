/* plot.h - the run plot (SVG) of DESIGN.md section 9.
 *
 * np_plot_write() writes one SVG 1.1 picture of an np_run, readable
 * without the XML report, through the atomic writer:
 *   (a) per-layer entropy H(l) across iterations: layers on x, one line
 *       per iteration (solid: accepted; dotted: failed the threshold or
 *       rolled back), plus the chosen iterate's fresh profile (black,
 *       dashed) - the one linearization used;
 *   (b) per-layer neuron states of the chosen iterate (the paper's
 *       Fig. 3): stacked bars of the fraction of neurons that were only
 *       OFF, only ON, only OFF+ (Clip at its max), never counted (don't
 *       care) or mixed, with each layer's neuron count; removed layers are
 *       outlined and their names bold.
 * Hand-written SVG, no library; fixed number formats, so the same run
 * gives the same bytes.
 */
#ifndef NEPENC_PLOT_H
#define NEPENC_PLOT_H

#include "nepenthe.h"
#include "status.h"

np_status np_plot_write(const np_run *run, const char *path, np_error *err);

#endif
