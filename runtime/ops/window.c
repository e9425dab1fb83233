/* window.c - ONNX window attributes -> output size and oneDNN padding. */
#include "window.h"

#include <string.h>

/* An INTS attribute of exactly want entries, each >= lo, or dflt. */
static np_status window_ints(const np_xnode *x, const char *name, int want,
                             int64_t lo, int64_t dflt, int64_t *v,
                             np_error *err)
{
	int n = 0;
	const int64_t *a = np_node_attr_ints(x->node, name, &n);
	for (int i = 0; i < want; i++)
		v[i] = dflt;
	if (!a)
		return NP_OK;
	if (n != want)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "attribute %s has %d values, expected %d",
		                       name, n, want);
	for (int i = 0; i < want; i++) {
		if (a[i] < lo)
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "attribute %s[%d]=%lld is below %lld",
			                       name, i, (long long)a[i], (long long)lo);
		v[i] = a[i];
	}
	return NP_OK;
}

/* auto_pad SAME_*: output ceil(in/stride), the padding split so the extra
 * pixel goes at the end (UPPER) or the beginning (LOWER). */
static void window_same(np_window *w, int i, int64_t in, int64_t ext,
                        bool lower)
{
	int64_t s = w->stride[i];
	w->out[i] = (in + s - 1) / s;
	int64_t total = (w->out[i] - 1) * s + ext - in;
	if (total < 0)
		total = 0;
	w->pad_l[i] = lower ? total - total / 2 : total / 2;
	w->pad_r[i] = total - w->pad_l[i];
}

/* Explicit pads: floor, or ceil_mode's ceil where, as in PyTorch and
 * onnxruntime, the last window must start inside the input or its left
 * padding. */
static np_status window_explicit(const np_xnode *x, np_window *w, int i,
                                 int64_t in, int64_t ext, bool ceil_mode,
                                 np_error *err)
{
	int64_t s = w->stride[i];
	int64_t span = in + w->pad_l[i] + w->pad_r[i] - ext;
	if (span < 0)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "kernel extent %lld exceeds padded input %lld at spatial axis %d",
		                       (long long)ext,
		                       (long long)(in + w->pad_l[i] + w->pad_r[i]), i);
	w->out[i] = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
	if (ceil_mode && (w->out[i] - 1) * s >= in + w->pad_l[i])
		w->out[i]--;
	return NP_OK;
}

np_status np_window_parse(const np_xnode *x, int n, const int64_t *in,
                          const int64_t *kernel, bool ceil_ok,
                          np_window *w, np_error *err)
{
	int64_t pads[2 * NP_WIN_MAX];
	memset(w, 0, sizeof *w);
	w->n = n;
	memcpy(w->kernel, kernel, (size_t)n * sizeof *kernel);
	np_status st = window_ints(x, "strides", n, 1, 1, w->stride, err);
	if (!st)
		st = window_ints(x, "dilations", n, 1, 1, w->dilation, err);
	if (!st)
		st = window_ints(x, "pads", 2 * n, 0, 0, pads, err);
	if (st)
		return st;
	int64_t ceil_mode = ceil_ok ? np_node_attr_int(x->node, "ceil_mode", 0) : 0;
	if (ceil_mode != 0 && ceil_mode != 1)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "attribute ceil_mode=%lld must be 0 or 1",
		                       (long long)ceil_mode);
	const char *ap = np_node_attr_string(x->node, "auto_pad", "NOTSET");
	bool lower = !strcmp(ap, "SAME_LOWER");
	bool same = lower || !strcmp(ap, "SAME_UPPER");
	bool valid = !strcmp(ap, "VALID");
	if (!same && !valid && strcmp(ap, "NOTSET") != 0)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "attribute auto_pad=%s is not supported", ap);
	for (int i = 0; i < n; i++) {
		int64_t ext = (kernel[i] - 1) * w->dilation[i] + 1;
		if (kernel[i] < 1)
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "kernel size %lld at spatial axis %d",
			                       (long long)kernel[i], i);
		if ((same || valid) && (pads[i] || pads[n + i]))
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "attribute pads given with auto_pad=%s", ap);
		if (same) {
			window_same(w, i, in[i], ext, lower);
		} else {
			w->pad_l[i] = pads[i];
			w->pad_r[i] = pads[n + i];
			st = window_explicit(x, w, i, in[i], ext, ceil_mode, err);
			if (st)
				return st;
		}
		/* oneDNN wants (in + pad_l + pad_r - ext) / stride + 1 == out
		 * exactly: stretch pad_r over ceil_mode's overhang. */
		int64_t need = (w->out[i] - 1) * w->stride[i] + ext - in[i] - w->pad_l[i];
		if (need > w->pad_r[i]) {
			w->pad_r[i] = need;
			w->overhang = true;
		}
	}
	return NP_OK;
}

void np_window_dnnl(const np_window *w, dnnl_dims_t strides,
                    dnnl_dims_t dilates, dnnl_dims_t pad_l,
                    dnnl_dims_t pad_r)
{
	for (int i = 0; i < w->n; i++) {
		strides[i] = w->stride[i];
		dilates[i] = w->dilation[i] - 1;
		pad_l[i] = w->pad_l[i];
		pad_r[i] = w->pad_r[i];
	}
}
