/* softmax.c - Softmax, forward and backward, with oneDNN's softmax.
 *
 * Both ONNX semantics are one oneDNN softmax over the middle axis of a
 * [outer, D, inner] view of the plain tensor:
 *   opset < 13:  coerced to 2D at axis (default 1): D = prod(dims[axis:]),
 *                inner = 1;
 *   opset >= 13: one axis (default -1): D = dims[axis],
 *                inner = prod(dims[axis+1:]). */
#include "ops.h"

#include <stdlib.h>
#include <string.h>

typedef struct sm_state {
	dnnl_primitive_t fwd, bwd;
	dnnl_memory_t src, dst, diff_dst, diff_src;
} sm_state;

/* The [outer, D, inner] view of the input. */
static np_status sm_view(const np_xnode *x, int64_t v[3], np_error *err)
{
	const np_rtensor *in = x->in[0];
	bool per_axis = np_model_opset(x->node->graph->model, "") >= 13;
	int64_t given = np_node_attr_int(x->node, "axis", per_axis ? -1 : 1);
	int64_t axis = given;
	int r = in->rank;
	if (axis < 0)
		axis += r;
	/* The old semantics allow axis == rank (D = 1). */
	if (axis < 0 || axis > r || (per_axis && axis == r))
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "axis %lld is out of range for rank %d",
		                       (long long)given, r);
	v[0] = v[1] = v[2] = 1;
	for (int i = 0; i < r; i++) {
		int part = i < axis ? 0 : i == axis || !per_axis ? 1 : 2;
		v[part] *= in->dims[i];
	}
	return NP_OK;
}

static np_status sm_infer(np_xnode *x, np_error *err)
{
	const np_rtensor *in = x->in[0];
	int64_t v[3];
	if (in->dtype != NP_FLOAT)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "input type %s is not supported (float only)",
		                       np_dtype_name(in->dtype));
	if (sm_view(x, v, err))
		return err->status;
	np_rtensor *out = x->out[0];
	out->dtype = NP_FLOAT;
	out->rank = in->rank;
	memcpy(out->dims, in->dims, sizeof out->dims);
	return NP_OK;
}

/* 2D when inner is 1: the axis is then dense, oneDNN's fast case. */
static void sm_md(dnnl_memory_desc_t *md, const int64_t v[3])
{
	dnnl_dims_t dims = {v[0], v[1], v[2]};
	if (v[2] == 1)
		dnnl_memory_desc_init_by_tag(md, 2, dims, dnnl_f32, dnnl_ab);
	else
		dnnl_memory_desc_init_by_tag(md, 3, dims, dnnl_f32, dnnl_abc);
}

static np_status sm_primitive(const np_xnode *x, np_rt *rt,
                              const_dnnl_op_desc_t d,
                              const_dnnl_primitive_desc_t hint,
                              dnnl_primitive_desc_t *pd, dnnl_primitive_t *p,
                              np_error *err)
{
	if (np_rt_dnnl(dnnl_primitive_desc_create(pd, d, NULL, np_rt_engine(rt),
	                                          hint),
	               x, "softmax primitive descriptor", err))
		return err->status;
	return np_rt_dnnl(dnnl_primitive_create(p, *pd), x, "softmax primitive",
	                  err);
}

static np_status sm_build_bwd(const np_xnode *x, np_rt *rt, sm_state *s,
                              const dnnl_memory_desc_t *md,
                              const_dnnl_primitive_desc_t fwd_pd,
                              np_error *err)
{
	dnnl_softmax_desc_t d;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_engine_t eng = np_rt_engine(rt);
	np_status st = np_rt_dnnl(dnnl_softmax_backward_desc_init(&d, md, md, 1),
	                          x, "softmax backward descriptor", err);
	if (!st)
		st = sm_primitive(x, rt, &d, fwd_pd, &pd, &s->bwd, err);
	dnnl_primitive_desc_destroy(pd);
	if (st)
		return st;
	if (np_rt_dnnl(dnnl_memory_create(&s->diff_dst, md, eng,
	                                  x->out[0]->grad), x, "memory", err) ||
	    np_rt_dnnl(dnnl_memory_create(&s->diff_src, md, eng,
	                                  DNNL_MEMORY_NONE), x, "memory", err))
		return err->status;
	return NP_OK;
}

static np_status sm_prepare(np_xnode *x, np_rt *rt, np_error *err)
{
	int64_t v[3];
	dnnl_memory_desc_t md;
	dnnl_softmax_desc_t d;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_engine_t eng = np_rt_engine(rt);
	sm_state *s = calloc(1, sizeof *s);
	if (!s)
		return np_rt_fail_node(err, NP_ERR_NOMEM, x, "out of memory");
	x->state = s;
	if (x->in[0]->nelem == 0)
		return NP_OK;
	if (sm_view(x, v, err))
		return err->status;
	sm_md(&md, v);
	np_status st = np_rt_dnnl(dnnl_softmax_forward_desc_init(
	        &d, dnnl_forward_training, &md, 1), x, "softmax descriptor", err);
	if (!st)
		st = sm_primitive(x, rt, &d, NULL, &pd, &s->fwd, err);
	if (!st && x->in[0]->needs_grad && x->out[0]->grad)
		st = sm_build_bwd(x, rt, s, &md, pd, err);
	dnnl_primitive_desc_destroy(pd);
	if (st)
		return st;
	if (np_rt_dnnl(dnnl_memory_create(&s->src, &md, eng, x->in[0]->data),
	               x, "memory", err) ||
	    np_rt_dnnl(dnnl_memory_create(&s->dst, &md, eng, x->out[0]->data),
	               x, "memory", err))
		return err->status;
	return NP_OK;
}

static np_status sm_forward(np_xnode *x, np_rt *rt, bool training,
                            np_error *err)
{
	sm_state *s = x->state;
	(void)training;
	if (!s->fwd)
		return NP_OK;
	dnnl_exec_arg_t args[] = {
		{DNNL_ARG_SRC, s->src}, {DNNL_ARG_DST, s->dst},
	};
	return np_rt_dnnl(dnnl_primitive_execute(s->fwd, np_rt_stream(rt), 2,
	                                         args),
	                  x, "softmax forward", err);
}

static np_status sm_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	sm_state *s = x->state;
	np_rtensor *in = x->in[0];
	if (!in->needs_grad || in->nelem == 0)
		return NP_OK;
	if (!s->bwd)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "backward was not prepared");
	float *g = np_rt_grad_target(rt, in);
	if (!g)
		return np_rt_grad_oom(err, x, in);
	dnnl_memory_set_data_handle(s->diff_src, g);
	dnnl_exec_arg_t args[] = {
		{DNNL_ARG_DST, s->dst}, {DNNL_ARG_DIFF_DST, s->diff_dst},
		{DNNL_ARG_DIFF_SRC, s->diff_src},
	};
	np_status st = np_rt_dnnl(dnnl_primitive_execute(s->bwd,
	                                                 np_rt_stream(rt), 3,
	                                                 args),
	                          x, "softmax backward", err);
	np_rt_grad_done(rt, in, g);
	return st;
}

static void sm_destroy(np_xnode *x)
{
	sm_state *s = x->state;
	if (!s)
		return;
	dnnl_primitive_destroy(s->fwd);
	dnnl_primitive_destroy(s->bwd);
	dnnl_memory_destroy(s->src);
	dnnl_memory_destroy(s->dst);
	dnnl_memory_destroy(s->diff_dst);
	dnnl_memory_destroy(s->diff_src);
	free(s);
	x->state = NULL;
}

const np_op np_op_softmax = {
	.name = "Softmax",
	.infer = sm_infer,
	.prepare = sm_prepare,
	.forward = sm_forward,
	.backward = sm_backward,
	.destroy = sm_destroy,
	.layout = NP_LAYOUT_PLAIN,
	NP_OP_NO_WEIGHT,
	.flops = np_flops_per_element,
	/* out_overwritable false:  backward reads y  */
};
