/* pool.c - MaxPool, AveragePool, GlobalAveragePool on oneDNN pooling_v2.
 *
 * Pooling runs on its input's layout, plain or blocked (rt.h, LAYOUT): a
 * reorder would cost about as much as the pooling itself.  Its output is
 * in the same layout, reordered after when Y is not (the small output of
 * a GlobalAveragePool read by Flatten).  Max pooling keeps oneDNN's
 * workspace (the argmax) from a forward_training primitive whenever a
 * gradient may be asked for, so backward need not recompute it.
 */
#include "ops.h"
#include "window.h"

#include <stdlib.h>
#include <string.h>

typedef struct pool_state {
	dnnl_primitive_t fwd, bwd;
	dnnl_memory_t src, dst, ws;          /* ws NULL: none (avg) */
	dnnl_memory_t dsrc, ddst;
	/* Y's layout when it differs from the primitive's (a blocked input
	 * pooled into a plain output): dst/ddst are then oneDNN's buffers and
	 * these reorder them to and from Y's. */
	dnnl_memory_t y, dy;
	dnnl_primitive_t y_out, dy_in;
} pool_state;

typedef struct pool_geom {
	np_window win;
	dnnl_alg_kind_t alg;
} pool_geom;

/* ------------------------------------------------------------ infer */

static bool pool_dtype_ok(const np_xnode *x, int dtype)
{
	/* MaxPool (opset 12) also takes 8-bit ints; they never need grad. */
	return dtype == NP_FLOAT ||
	       (x->op == &np_op_maxpool && (dtype == NP_UINT8 || dtype == NP_INT8));
}

static np_status pool_check_input(const np_xnode *x, np_error *err)
{
	const np_rtensor *X = x->in[0];
	if (!pool_dtype_ok(x, X->dtype))
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "input of type %s is not supported",
		                       np_dtype_name(X->dtype));
	if (X->rank < 3 || X->rank > 2 + NP_WIN_MAX)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "input of rank %d (only 1 to 3 spatial dims)",
		                       X->rank);
	if (x->n_out > 1 && x->out[1])
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "the Indices output of MaxPool is not supported");
	return NP_OK;
}

/* The whole spatial extent, one output pixel. */
static void pool_global(const np_rtensor *X, np_window *w)
{
	memset(w, 0, sizeof *w);
	w->n = X->rank - 2;
	for (int i = 0; i < w->n; i++) {
		w->kernel[i] = X->dims[2 + i];
		w->stride[i] = w->dilation[i] = w->out[i] = 1;
	}
}

static np_status pool_avg_alg(const np_xnode *x, pool_geom *g, np_error *err)
{
	int64_t cip = np_node_attr_int(x->node, "count_include_pad", 0);
	if (cip != 0 && cip != 1)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "attribute count_include_pad=%lld must be 0 or 1",
		                       (long long)cip);
	/* oneDNN would count ceil_mode's overhang past the pads too, unlike
	 * onnxruntime and PyTorch. */
	if (cip && g->win.overhang)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "count_include_pad=1 with a ceil_mode window past the padding is not supported");
	g->alg = cip ? dnnl_pooling_avg_include_padding
	             : dnnl_pooling_avg_exclude_padding;
	return NP_OK;
}

static np_status pool_geometry(const np_xnode *x, pool_geom *g, np_error *err)
{
	const np_rtensor *X = x->in[0];
	int n = X->rank - 2, nk = 0;
	np_status st = pool_check_input(x, err);
	if (st)
		return st;
	if (x->op == &np_op_globalaveragepool) {
		pool_global(X, &g->win);
		g->alg = dnnl_pooling_avg_include_padding;
		return NP_OK;
	}
	const int64_t *ks = np_node_attr_ints(x->node, "kernel_shape", &nk);
	if (!ks || nk != n)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "attribute kernel_shape must have %d values", n);
	st = np_window_parse(x, n, X->dims + 2, ks, true, &g->win, err);
	if (st)
		return st;
	/* A window wholly in the padding has no value (onnxruntime and
	 * PyTorch refuse it too). */
	for (int i = 0; i < n; i++) {
		int64_t ext = (ks[i] - 1) * g->win.dilation[i] + 1;
		if (g->win.pad_l[i] >= ext || g->win.pad_r[i] >= ext)
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "pads must be smaller than the kernel (axis %d)", i);
	}
	if (x->op == &np_op_maxpool) {
		/* storage_order only affects the Indices output, refused above. */
		g->alg = dnnl_pooling_max;
		return NP_OK;
	}
	return pool_avg_alg(x, g, err);
}

static np_status pool_infer(np_xnode *x, np_error *err)
{
	pool_geom g;
	np_status st = pool_geometry(x, &g, err);
	if (st)
		return st;
	np_rtensor *Y = x->out[0];
	Y->dtype = x->in[0]->dtype;
	Y->rank = x->in[0]->rank;
	Y->dims[0] = x->in[0]->dims[0];
	Y->dims[1] = x->in[0]->dims[1];
	for (int i = 0; i < g.win.n; i++)
		Y->dims[2 + i] = g.win.out[i];
	return NP_OK;
}

/* ---------------------------------------------------------- prepare */

static void pool_md(dnnl_memory_desc_t *md, const np_rtensor *t)
{
	if (t->blocked) {
		*md = t->md;
		return;
	}
	dnnl_data_type_t dt = t->dtype == NP_UINT8 ? dnnl_u8
	                    : t->dtype == NP_INT8 ? dnnl_s8 : dnnl_f32;
	dnnl_dims_t dims;
	memcpy(dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
	dnnl_memory_desc_init_by_strides(md, t->rank, dims, dt, NULL);
}

/* The primitive's dst: Y's shape in X's layout (X blocked: the same
 * tag, nChw<blk>c or channels-last, and data type: oneDNN's pooling
 * reads and writes one type). */
static void pool_dst_md(dnnl_memory_desc_t *md, const np_xnode *x)
{
	const np_rtensor *X = x->in[0];
	np_rtensor like = *x->out[0];
	like.blocked = X->blocked;
	if (like.blocked) {
		dnnl_dims_t d;
		memcpy(d, like.dims, sizeof(int64_t) * (size_t)like.rank);
		dnnl_memory_desc_init_by_tag(&like.md, like.rank, d,
		                             X->md.data_type, np_rt_tag(X));
	}
	pool_md(md, &like);
}

/* When Y's layout is not the primitive's: a buffer for the primitive and
 * a reorder between it and Y (forward: after; backward: before). */
static dnnl_status_t pool_y_edge(dnnl_memory_t *prim, dnnl_memory_t *user,
                                 dnnl_primitive_t *r, const dnnl_memory_desc_t *md,
                                 const np_rtensor *Y, void *buf, bool out,
                                 dnnl_engine_t eng)
{
	dnnl_memory_desc_t ymd;
	pool_md(&ymd, Y);
	if (dnnl_memory_desc_equal(&ymd, md))
		return dnnl_memory_create(prim, md, eng, buf);
	dnnl_status_t s = dnnl_memory_create(prim, md, eng, DNNL_MEMORY_ALLOCATE);
	if (!s)
		s = dnnl_memory_create(user, &ymd, eng, buf);
	if (!s)
		s = out ? np_rt_reorder_make(eng, md, &ymd, r)
		        : np_rt_reorder_make(eng, &ymd, md, r);
	return s;
}

static dnnl_status_t pool_make(np_rt *rt, const np_xnode *x,
                               dnnl_primitive_t *p, dnnl_primitive_desc_t *pd,
                               const dnnl_pooling_v2_desc_t *d,
                               const_dnnl_primitive_desc_t hint)
{
	dnnl_status_t s = np_rt_pd_create(rt, x, pd, d, NULL, hint);
	return s ? s : dnnl_primitive_create(p, *pd);
}

static dnnl_status_t pool_prepare_fwd(pool_state *ps, const np_xnode *x,
                                      const pool_geom *g, np_rt *rt,
                                      dnnl_primitive_desc_t *pd)
{
	dnnl_engine_t eng = np_rt_engine(rt);
	dnnl_memory_desc_t src, dst;
	dnnl_dims_t strides, dil, pl, pr, kernel;
	dnnl_pooling_v2_desc_t d;
	pool_md(&src, x->in[0]);
	pool_dst_md(&dst, x);
	np_window_dnnl(&g->win, strides, dil, pl, pr);
	memcpy(kernel, g->win.kernel, sizeof(int64_t) * (size_t)g->win.n);
	dnnl_prop_kind_t prop = x->in[0]->needs_grad ? dnnl_forward_training
	                                             : dnnl_forward_inference;
	dnnl_status_t s = dnnl_pooling_v2_forward_desc_init(
		&d, prop, g->alg, &src, &dst, strides, kernel, dil, pl, pr);
	if (!s)
		s = pool_make(rt, x, &ps->fwd, pd, &d, NULL);
	if (!s)
		s = dnnl_memory_create(&ps->src, &src, eng, x->in[0]->data);
	if (!s)
		s = pool_y_edge(&ps->dst, &ps->y, &ps->y_out, &dst, x->out[0],
		                x->out[0]->data, true, eng);
	const dnnl_memory_desc_t *ws = s ? NULL
		: dnnl_primitive_desc_query_md(*pd, dnnl_query_workspace_md, 0);
	if (ws && ws->ndims > 0)
		s = dnnl_memory_create(&ps->ws, ws, eng, DNNL_MEMORY_ALLOCATE);
	return s;
}

static dnnl_status_t pool_prepare_bwd(pool_state *ps, const np_xnode *x,
                                      const pool_geom *g, np_rt *rt,
                                      const_dnnl_primitive_desc_t hint)
{
	dnnl_engine_t eng = np_rt_engine(rt);
	dnnl_memory_desc_t src, dst;
	dnnl_dims_t strides, dil, pl, pr, kernel;
	dnnl_pooling_v2_desc_t d;
	dnnl_primitive_desc_t pd = NULL;
	pool_md(&src, x->in[0]);
	pool_dst_md(&dst, x);
	np_window_dnnl(&g->win, strides, dil, pl, pr);
	memcpy(kernel, g->win.kernel, sizeof(int64_t) * (size_t)g->win.n);
	dnnl_status_t s = dnnl_pooling_v2_backward_desc_init(
		&d, g->alg, &src, &dst, strides, kernel, dil, pl, pr);
	if (!s)
		s = pool_make(rt, x, &ps->bwd, &pd, &d, hint);
	if (!s)
		s = dnnl_memory_create(&ps->dsrc, &src, eng, DNNL_MEMORY_NONE);
	if (!s)
		s = pool_y_edge(&ps->ddst, &ps->dy, &ps->dy_in, &dst, x->out[0],
		                DNNL_MEMORY_NONE, false, eng);
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	return s;
}

static np_status pool_prepare(np_xnode *x, np_rt *rt, np_error *err)
{
	pool_geom g;
	dnnl_primitive_desc_t fwd_pd = NULL;
	np_status st = pool_geometry(x, &g, err);
	if (st)
		return st;
	pool_state *ps = calloc(1, sizeof *ps);
	if (!ps)
		return np_rt_fail_node(err, NP_ERR_NOMEM, x, "out of memory");
	x->state = ps;
	st = np_rt_dnnl(pool_prepare_fwd(ps, x, &g, rt, &fwd_pd), x,
	                "creating the pooling", err);
	if (!st && x->in[0]->needs_grad)
		st = np_rt_dnnl(pool_prepare_bwd(ps, x, &g, rt, fwd_pd), x,
		                "creating the pooling backward", err);
	if (fwd_pd)
		dnnl_primitive_desc_destroy(fwd_pd);
	return st;
}

/* ------------------------------------------------------------- run */

static np_status pool_forward(np_xnode *x, np_rt *rt, bool training,
                              np_error *err)
{
	const pool_state *ps = x->state;
	dnnl_exec_arg_t args[3] = {
		{DNNL_ARG_SRC, ps->src}, {DNNL_ARG_DST, ps->dst},
		{DNNL_ARG_WORKSPACE, ps->ws},
	};
	(void)training;
	dnnl_status_t s = dnnl_primitive_execute(ps->fwd, np_rt_stream(rt),
	                                         ps->ws ? 3 : 2, args);
	if (!s && ps->y_out)
		s = np_rt_reorder_run(ps->y_out, ps->dst, ps->y, np_rt_stream(rt));
	return np_rt_dnnl(s, x, "running the pooling", err);
}

static np_status pool_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	const pool_state *ps = x->state;
	np_rtensor *X = x->in[0];
	float *g = np_rt_grad_target(rt, X);
	if (!g)
		return np_rt_grad_oom(err, x, X);
	dnnl_exec_arg_t args[3] = {
		{DNNL_ARG_DIFF_DST, ps->ddst}, {DNNL_ARG_DIFF_SRC, ps->dsrc},
		{DNNL_ARG_WORKSPACE, ps->ws},
	};
	dnnl_status_t s = dnnl_memory_set_data_handle(ps->dsrc, g);
	if (!s)
		s = dnnl_memory_set_data_handle(ps->dy ? ps->dy : ps->ddst,
		                                x->out[0]->grad);
	if (!s && ps->dy_in)
		s = np_rt_reorder_run(ps->dy_in, ps->dy, ps->ddst, np_rt_stream(rt));
	if (!s)
		s = dnnl_primitive_execute(ps->bwd, np_rt_stream(rt),
		                           ps->ws ? 3 : 2, args);
	np_rt_grad_done(rt, X, g);
	return np_rt_dnnl(s, x, "running the pooling backward", err);
}

static void pool_destroy(np_xnode *x)
{
	pool_state *ps = x->state;
	if (!ps)
		return;
	dnnl_memory_t mems[] = {ps->src, ps->dst, ps->ws, ps->dsrc, ps->ddst,
	                        ps->y, ps->dy};
	for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
		if (mems[i])
			dnnl_memory_destroy(mems[i]);
	if (ps->y_out)
		dnnl_primitive_destroy(ps->y_out);
	if (ps->dy_in)
		dnnl_primitive_destroy(ps->dy_in);
	if (ps->fwd)
		dnnl_primitive_destroy(ps->fwd);
	if (ps->bwd)
		dnnl_primitive_destroy(ps->bwd);
	free(ps);
	x->state = NULL;
}

const np_op np_op_maxpool = {
	.name = "MaxPool",
	.infer = pool_infer,
	.prepare = pool_prepare,
	.forward = pool_forward,
	.backward = pool_backward,
	.destroy = pool_destroy,
	.layout = NP_LAYOUT_ANY,
	.bf16_values = np_rt_bf16_always,
	NP_OP_NO_WEIGHT,
	.out_overwritable = true,    /* backward: dY and the workspace */
};

const np_op np_op_averagepool = {
	.name = "AveragePool",
	.infer = pool_infer,
	.prepare = pool_prepare,
	.forward = pool_forward,
	.backward = pool_backward,
	.destroy = pool_destroy,
	.layout = NP_LAYOUT_ANY,
	.bf16_values = np_rt_bf16_always,
	NP_OP_NO_WEIGHT,
	.out_overwritable = true,    /* backward: dY and the workspace */
};

const np_op np_op_globalaveragepool = {
	.name = "GlobalAveragePool",
	.infer = pool_infer,
	.prepare = pool_prepare,
	.forward = pool_forward,
	.backward = pool_backward,
	.destroy = pool_destroy,
	.layout = NP_LAYOUT_ANY,
	.bf16_values = np_rt_bf16_always,
	NP_OP_NO_WEIGHT,
	.out_overwritable = true,    /* backward: dY and the workspace */
};
