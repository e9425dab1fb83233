/* window.h - sliding-window geometry shared by Conv and the pools.
 *
 * Turns ONNX kernel_shape/strides/pads/dilations/auto_pad/ceil_mode into
 * the output size and the begin/end padding oneDNN wants, so each op file
 * only builds its primitives.
 */
#ifndef NEPENC_OPS_WINDOW_H
#define NEPENC_OPS_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

#include "rt.h"

#define NP_WIN_MAX 3             /* oneDNN: 1D, 2D, 3D spatial */

typedef struct np_window {
	int n;                       /* spatial dims */
	int64_t kernel[NP_WIN_MAX];
	int64_t stride[NP_WIN_MAX];
	int64_t dilation[NP_WIN_MAX];    /* ONNX meaning: 1 = dense */
	int64_t pad_l[NP_WIN_MAX];
	int64_t pad_r[NP_WIN_MAX];       /* includes any ceil_mode overhang */
	int64_t out[NP_WIN_MAX];
	/* ceil_mode made pad_r larger than the ONNX pads: the last window
	 * hangs past the padded input. */
	bool overhang;
} np_window;

/* Reads strides, pads, dilations, auto_pad and (when ceil_ok) ceil_mode
 * from x->node for n spatial input dims and the given kernel; fills w.
 * Unsupported or inconsistent values fail naming the node. */
np_status np_window_parse(const np_xnode *x, int n, const int64_t *in,
                          const int64_t *kernel, bool ceil_ok,
                          np_window *w, np_error *err);

/* The window as oneDNN arrays (oneDNN dilation = ONNX dilation - 1). */
void np_window_dnnl(const np_window *w, dnnl_dims_t strides,
                    dnnl_dims_t dilates, dnnl_dims_t pad_l,
                    dnnl_dims_t pad_r);

#endif
