/* layernorm.c - LayerNormalization (opset 17) on oneDNN's
 * layer_normalization primitive, forward and backward.
 *
 * ONNX normalises over the axes from `axis` on; oneDNN over the last
 * one: the plain tensor is viewed [outer, inner] with inner the product
 * of the normalised axes, which is the same memory.  Scale and B (the
 * nn.LayerNorm's weight and bias, trained) must have inner elements: a
 * broadcast scale is refused.  Statistics are always computed from the
 * input (LayerNorm has no running ones), so training and inference are
 * one forward_training primitive whose mean and variance backward reads.
 * The optional Mean and InvStdDev outputs are filled from them; no
 * gradient flows back through those two (exporters never read them). */
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct ln_state {
	float eps;
	int64_t outer, inner;
	float *mean, *var;           /* [outer], the batch's statistics */
	float *zero_shift;           /* [inner] zeros when B is absent */
	dnnl_primitive_t fwd, bwd;
	dnnl_memory_t src, dst, scale, shift, mmean, mvar;
	dnnl_memory_t dsrc, ddst, dscale, dshift;
} ln_state;

/* ------------------------------------------------------------ infer */

static np_status ln_axis(const np_xnode *x, int *axis, np_error *err)
{
	return np_rt_norm_axis(x, np_node_attr_int(x->node, "axis", -1),
	                       x->in[0]->rank, axis, err);
}

static int64_t ln_inner(const np_rtensor *X, int axis)
{
	int64_t p = 1;
	for (int i = axis; i < X->rank; i++)
		p *= X->dims[i];
	return p;
}

static np_status ln_check(const np_xnode *x, int *axis, np_error *err)
{
	const np_rtensor *X = x->in[0];
	if (x->n_in < 2 || !X || !x->in[1])
		return np_rt_fail_node(err, NP_ERR_INVALID, x, "X and Scale are required");
	if (X->rank < 1)
		return np_rt_fail_node(err, NP_ERR_INVALID, x, "X is a scalar");
	np_status st = ln_axis(x, axis, err);
	if (st)
		return st;
	int64_t inner = ln_inner(X, *axis);
	for (int i = 0; i < 3 && i < x->n_in; i++) {
		const np_rtensor *t = x->in[i];
		if (!t)
			continue;
		if (t->dtype != NP_FLOAT)
			return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
			                       "input %d is %s (float only)", i,
			                       np_dtype_name(t->dtype));
		if (i > 0 && t->nelem != inner)
			return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
			                       "input %d has %lld elements, not the %lld "
			                       "normalised (a broadcast scale or bias)",
			                       i, (long long)t->nelem, (long long)inner);
	}
	return NP_OK;
}

static np_status ln_infer(np_xnode *x, np_error *err)
{
	int axis;
	np_status st = ln_check(x, &axis, err);
	if (st)
		return st;
	const np_rtensor *X = x->in[0];
	for (int k = 0; k < x->n_out && k < 3; k++) {
		np_rtensor *o = x->out[k];
		if (!o)
			continue;
		o->dtype = NP_FLOAT;
		o->rank = X->rank;
		memcpy(o->dims, X->dims, sizeof(int64_t) * (size_t)X->rank);
		for (int i = axis; k > 0 && i < X->rank; i++)
			o->dims[i] = 1;          /* Mean, InvStdDev */
	}
	return NP_OK;
}

/* ---------------------------------------------------------- prepare */

static void ln_mds(const ln_state *s, dnnl_memory_desc_t *data,
                   dnnl_memory_desc_t *stat, dnnl_memory_desc_t *vec)
{
	dnnl_dims_t d = {s->outer, s->inner}, o = {s->outer}, c = {s->inner};
	dnnl_memory_desc_init_by_tag(data, 2, d, dnnl_f32, dnnl_ab);
	dnnl_memory_desc_init_by_tag(stat, 1, o, dnnl_f32, dnnl_a);
	dnnl_memory_desc_init_by_tag(vec, 1, c, dnnl_f32, dnnl_a);
}

static dnnl_status_t ln_make(np_rt *rt, const np_xnode *x, dnnl_primitive_t *p,
                             dnnl_primitive_desc_t *pd, const_dnnl_op_desc_t d,
                             const_dnnl_primitive_desc_t hint)
{
	dnnl_status_t st = np_rt_pd_create(rt, x, pd, d, NULL, hint);
	return st ? st : dnnl_primitive_create(p, *pd);
}

static dnnl_status_t ln_prepare_fwd(ln_state *s, const np_xnode *x, np_rt *rt,
                                    dnnl_primitive_desc_t *pd)
{
	dnnl_engine_t eng = np_rt_engine(rt);
	dnnl_memory_desc_t data, stat, vec;
	dnnl_layer_normalization_desc_t d;
	const np_rtensor *B = x->n_in > 2 ? x->in[2] : NULL;
	ln_mds(s, &data, &stat, &vec);
	dnnl_status_t st = dnnl_layer_normalization_forward_desc_init(
		&d, dnnl_forward_training, &data, &stat, s->eps,
		dnnl_use_scale | dnnl_use_shift);
	if (!st)
		st = ln_make(rt, x, &s->fwd, pd, &d, NULL);
	if (!st)
		st = dnnl_memory_create(&s->src, &data, eng, x->in[0]->data);
	if (!st)
		st = dnnl_memory_create(&s->dst, &data, eng, x->out[0]->data);
	if (!st)
		st = dnnl_memory_create(&s->scale, &vec, eng, x->in[1]->data);
	if (!st)
		st = dnnl_memory_create(&s->shift, &vec, eng,
		                        B ? B->data : s->zero_shift);
	if (!st)
		st = dnnl_memory_create(&s->mmean, &stat, eng, s->mean);
	if (!st)
		st = dnnl_memory_create(&s->mvar, &stat, eng, s->var);
	return st;
}

/* Gradients that no input wants still need a place to go: oneDNN's own
 * buffers (DNNL_MEMORY_ALLOCATE). */
static dnnl_status_t ln_prepare_bwd(ln_state *s, const np_xnode *x, np_rt *rt,
                                    const_dnnl_primitive_desc_t hint)
{
	dnnl_engine_t eng = np_rt_engine(rt);
	dnnl_memory_desc_t data, stat, vec;
	dnnl_layer_normalization_desc_t d;
	dnnl_primitive_desc_t pd = NULL;
	const np_rtensor *B = x->n_in > 2 ? x->in[2] : NULL;
	ln_mds(s, &data, &stat, &vec);
	dnnl_status_t st = dnnl_layer_normalization_backward_desc_init(
		&d, dnnl_backward, &data, &data, &stat, s->eps,
		dnnl_use_scale | dnnl_use_shift);
	if (!st)
		st = ln_make(rt, x, &s->bwd, &pd, &d, hint);
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (!st)
		st = dnnl_memory_create(&s->ddst, &data, eng, DNNL_MEMORY_NONE);
	if (!st)
		st = dnnl_memory_create(&s->dsrc, &data, eng, x->in[0]->needs_grad
		                        ? DNNL_MEMORY_NONE : DNNL_MEMORY_ALLOCATE);
	if (!st)
		st = dnnl_memory_create(&s->dscale, &vec, eng, x->in[1]->needs_grad
		                        ? DNNL_MEMORY_NONE : DNNL_MEMORY_ALLOCATE);
	if (!st)
		st = dnnl_memory_create(&s->dshift, &vec, eng, B && B->needs_grad
		                        ? DNNL_MEMORY_NONE : DNNL_MEMORY_ALLOCATE);
	return st;
}

static bool ln_any_grad(const np_xnode *x)
{
	bool any = false;
	for (int i = 0; i < 3 && i < x->n_in; i++)
		any |= x->in[i] && x->in[i]->needs_grad;
	return any && x->out[0]->grad;
}

static np_status ln_prepare(np_xnode *x, np_rt *rt, np_error *err)
{
	int axis;
	ln_state *s = calloc(1, sizeof *s);
	if (!s)
		return np_rt_fail_node(err, NP_ERR_NOMEM, x, "out of memory");
	x->state = s;
	if (ln_axis(x, &axis, err))
		return err->status;
	s->eps = np_node_attr_float(x->node, "epsilon", 1e-5f);
	s->inner = ln_inner(x->in[0], axis);
	s->outer = s->inner ? x->in[0]->nelem / s->inner : 0;
	if (x->in[0]->nelem == 0)
		return NP_OK;
	s->mean = calloc((size_t)s->outer, sizeof(float));
	s->var = calloc((size_t)s->outer, sizeof(float));
	s->zero_shift = calloc((size_t)s->inner, sizeof(float));
	if (!s->mean || !s->var || !s->zero_shift)
		return np_rt_fail_node(err, NP_ERR_NOMEM, x, "out of memory");
	dnnl_primitive_desc_t pd = NULL;
	np_status st = np_rt_dnnl(ln_prepare_fwd(s, x, rt, &pd), x,
	                          "creating the layer normalization", err);
	if (!st && ln_any_grad(x))
		st = np_rt_dnnl(ln_prepare_bwd(s, x, rt, pd), x,
		                "creating the layer normalization backward", err);
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	return st;
}

/* ---------------------------------------------------------- forward */

/* Mean and InvStdDev = 1 / sqrt(var + eps), one per normalised row. */
static void ln_stat_outputs(const np_xnode *x, const ln_state *s)
{
	if (x->n_out > 1 && x->out[1])
		memcpy(x->out[1]->data, s->mean, sizeof(float) * (size_t)s->outer);
	if (x->n_out > 2 && x->out[2]) {
		float *inv = x->out[2]->data;
		for (int64_t i = 0; i < s->outer; i++)
			inv[i] = 1.0f / sqrtf(s->var[i] + s->eps);
	}
}

static np_status ln_forward(np_xnode *x, np_rt *rt, bool training,
                            np_error *err)
{
	ln_state *s = x->state;
	(void)training;
	if (!s->fwd)
		return NP_OK;
	dnnl_stream_t stream = np_rt_stream(rt);
	dnnl_exec_arg_t args[6] = {
		{DNNL_ARG_SRC, s->src}, {DNNL_ARG_DST, s->dst},
		{DNNL_ARG_SCALE, s->scale}, {DNNL_ARG_SHIFT, s->shift},
		{DNNL_ARG_MEAN, s->mmean}, {DNNL_ARG_VARIANCE, s->mvar},
	};
	dnnl_status_t st = dnnl_primitive_execute(s->fwd, stream, 6, args);
	if (!st && x->n_out > 1)
		st = dnnl_stream_wait(stream);      /* the CPU reads the stats */
	if (!st)
		ln_stat_outputs(x, s);
	return np_rt_dnnl(st, x, "running the layer normalization", err);
}

/* --------------------------------------------------------- backward */

static np_status ln_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	ln_state *s = x->state;
	np_rtensor *t[3] = {x->in[0], x->in[1], x->n_in > 2 ? x->in[2] : NULL};
	dnnl_memory_t m[3] = {s->dsrc, s->dscale, s->dshift};
	float *g[3] = {NULL, NULL, NULL};
	if (!s->fwd)
		return NP_OK;
	if (!s->bwd)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "backward was not prepared");
	dnnl_status_t st = dnnl_memory_set_data_handle(s->ddst, x->out[0]->grad);
	for (int i = 0; i < 3; i++) {
		if (!t[i] || !t[i]->needs_grad)
			continue;
		if (!(g[i] = np_rt_grad_target(rt, t[i]))) {
			for (int k = 0; k < i; k++)
				if (g[k])
					np_rt_grad_done(rt, t[k], g[k]);
			return np_rt_grad_oom(err, x, t[i]);
		}
		if (!st)
			st = dnnl_memory_set_data_handle(m[i], g[i]);
	}
	dnnl_exec_arg_t args[9] = {
		{DNNL_ARG_SRC, s->src}, {DNNL_ARG_MEAN, s->mmean},
		{DNNL_ARG_VARIANCE, s->mvar}, {DNNL_ARG_DIFF_DST, s->ddst},
		{DNNL_ARG_SCALE, s->scale}, {DNNL_ARG_SHIFT, s->shift},
		{DNNL_ARG_DIFF_SRC, s->dsrc}, {DNNL_ARG_DIFF_SCALE, s->dscale},
		{DNNL_ARG_DIFF_SHIFT, s->dshift},
	};
	if (!st)
		st = dnnl_primitive_execute(s->bwd, np_rt_stream(rt), 9, args);
	if (!st)
		st = dnnl_stream_wait(np_rt_stream(rt));
	for (int i = 0; i < 3; i++)
		if (g[i])
			np_rt_grad_done(rt, t[i], g[i]);
	return np_rt_dnnl(st, x, "running the layer normalization backward", err);
}

static void ln_destroy(np_xnode *x)
{
	ln_state *s = x->state;
	if (!s)
		return;
	dnnl_memory_t mems[] = {s->src, s->dst, s->scale, s->shift, s->mmean,
	                        s->mvar, s->dsrc, s->ddst, s->dscale, s->dshift};
	for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
		if (mems[i])
			dnnl_memory_destroy(mems[i]);
	if (s->fwd)
		dnnl_primitive_destroy(s->fwd);
	if (s->bwd)
		dnnl_primitive_destroy(s->bwd);
	free(s->mean);
	free(s->var);
	free(s->zero_shift);
	free(s);
	x->state = NULL;
}

/* Per element: the mean and the variance (a subtraction, a square, two
 * sums), normalising (subtract, multiply), scale and shift: 8. */
static int64_t ln_flops(const np_node *n, const np_shape *const *in, int n_in,
                        const np_shape *out)
{
	int64_t e = np_flops_per_element(n, in, n_in, out);
	return e < 0 ? -1 : 8 * e;
}

const np_op np_op_layernorm = {
	.name = "LayerNormalization",
	.infer = ln_infer,
	.prepare = ln_prepare,
	.forward = ln_forward,
	.backward = ln_backward,
	.destroy = ln_destroy,
	.layout = NP_LAYOUT_PLAIN,
	.weight_input = 1,           /* Scale */
	.bias_input = 2,             /* B */
	.trainable = 0x6,
	.flops = ln_flops,
};
