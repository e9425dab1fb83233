/* eltwise.c - unary elementwise ops: Relu, LeakyRelu, Clip, Sigmoid, Tanh,
 * HardSigmoid, HardSwish, Erf, Sqrt, Gelu.
 *
 * Elementwise ops ignore shape, so the tensor is viewed as one flat vector.
 * oneDNN 2.6 eltwise primitives run forward and backward where an algorithm
 * exists; HardSigmoid and Erf have none and are OpenMP loops.  The
 * *_use_dst_for_bwd algorithms are used where the derivative is a function
 * of y alone (Relu, Sigmoid, Tanh, Sqrt). */
#include "ops.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum elt_kind {
	ELT_RELU, ELT_LEAKYRELU, ELT_CLIP, ELT_SIGMOID, ELT_TANH,
	ELT_HARDSIGMOID, ELT_HARDSWISH, ELT_ERF, ELT_SQRT, ELT_GELU,
	ELT_N
} elt_kind;

static const char *const elt_names[ELT_N] = {
	"Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh",
	"HardSigmoid", "HardSwish", "Erf", "Sqrt", "Gelu"
};

/* Kinds whose derivative is a function of y alone: elt_fn_of gives them
 * the *_use_dst_for_bwd algorithm, so backward never reads x. */
static bool elt_bwd_from_dst(elt_kind k)
{
	return k == ELT_RELU || k == ELT_SIGMOID || k == ELT_TANH || k == ELT_SQRT;
}

/* The oneDNN function of an op: alg 0 means a hand-written loop. */
typedef struct elt_fn {
	elt_kind kind;
	dnnl_alg_kind_t alg;
	float alpha, beta;
} elt_fn;

typedef struct elt_state {
	elt_fn fn;
	dnnl_primitive_t fwd, bwd;
	dnnl_memory_t src, dst, diff_dst, diff_src;
} elt_state;

static elt_kind elt_kind_of(const np_xnode *x)
{
	for (int k = 0; k < ELT_N; k++)
		if (strcmp(x->op->name, elt_names[k]) == 0)
			return (elt_kind)k;
	return ELT_N;
}

static bool elt_is_opset11_clip(const np_xnode *x)
{
	return np_model_opset(x->node->graph->model, "") >= 11;
}

/* Clip's bounds: attributes before opset 11, optional scalar inputs from
 * opset 11 on; an absent bound is infinite. */
static void clip_bounds(const np_xnode *x, float *lo, float *hi)
{
	*lo = -INFINITY;
	*hi = INFINITY;
	if (!elt_is_opset11_clip(x)) {
		*lo = np_node_attr_float(x->node, "min", -FLT_MAX);
		*hi = np_node_attr_float(x->node, "max", FLT_MAX);
		return;
	}
	if (x->n_in > 1 && x->in[1])
		*lo = *(const float *)x->in[1]->data;
	if (x->n_in > 2 && x->in[2])
		*hi = *(const float *)x->in[2]->data;
}

static np_status gelu_alg(const np_xnode *x, dnnl_alg_kind_t *alg,
                          np_error *err)
{
	const char *approx = np_node_attr_string(x->node, "approximate", "none");
	if (strcmp(approx, "none") == 0)
		*alg = dnnl_eltwise_gelu_erf;
	else if (strcmp(approx, "tanh") == 0)
		*alg = dnnl_eltwise_gelu_tanh;
	else
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "attribute approximate=%s is not supported",
		                       approx);
	return NP_OK;
}

/* The function to compute, from the op and its attributes.  Clip reads its
 * bound inputs, so call it only when their data is valid. */
static np_status elt_fn_of(const np_xnode *x, elt_fn *fn, np_error *err)
{
	const np_node *n = x->node;
	memset(fn, 0, sizeof *fn);
	fn->kind = elt_kind_of(x);
	/* The kinds of elt_bwd_from_dst get the *_use_dst_for_bwd algs. */
	switch (fn->kind) {
	case ELT_RELU: fn->alg = dnnl_eltwise_relu_use_dst_for_bwd; break;
	case ELT_LEAKYRELU:
		/* Negative slopes are allowed: only the src-based relu
		 * derivative is valid then. */
		fn->alg = dnnl_eltwise_relu;
		fn->alpha = np_node_attr_float(n, "alpha", 0.01f);
		break;
	case ELT_CLIP:
		fn->alg = dnnl_eltwise_clip_v2;
		clip_bounds(x, &fn->alpha, &fn->beta);
		break;
	case ELT_SIGMOID: fn->alg = dnnl_eltwise_logistic_use_dst_for_bwd; break;
	case ELT_TANH: fn->alg = dnnl_eltwise_tanh_use_dst_for_bwd; break;
	case ELT_HARDSIGMOID:
		fn->alpha = np_node_attr_float(n, "alpha", 0.2f);
		fn->beta = np_node_attr_float(n, "beta", 0.5f);
		break;
	case ELT_HARDSWISH: fn->alg = dnnl_eltwise_hardswish; break;
	case ELT_ERF: break;
	case ELT_SQRT: fn->alg = dnnl_eltwise_sqrt_use_dst_for_bwd; break;
	case ELT_GELU: return gelu_alg(x, &fn->alg, err);
	case ELT_N:
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "not an elementwise op");
	}
	return NP_OK;
}

/* ------------------------------------------------------------ infer */

static np_status clip_check_bound(const np_xnode *x, int i, np_error *err)
{
	const np_rtensor *t = x->n_in > i ? x->in[i] : NULL;
	if (!t)
		return NP_OK;
	if (t->dtype != NP_FLOAT || t->nelem != 1)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "input %d must be a float scalar", i);
	return NP_OK;
}

static np_status elt_infer(np_xnode *x, np_error *err)
{
	const np_rtensor *in = x->in[0];
	elt_fn fn;
	if (!in || in->dtype != NP_FLOAT)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "input type %s is not supported (float only)",
		                       in ? np_dtype_name(in->dtype) : "(none)");
	if (elt_kind_of(x) == ELT_CLIP) {
		if (clip_check_bound(x, 1, err) || clip_check_bound(x, 2, err))
			return err->status;
	} else {
		/* Clip's bounds may not be readable yet; the others parse
		 * their attributes here to refuse bad ones early. */
		if (elt_fn_of(x, &fn, err))
			return err->status;
	}
	np_rtensor *out = x->out[0];
	out->dtype = NP_FLOAT;
	out->rank = in->rank;
	memcpy(out->dims, in->dims, sizeof out->dims);
	return NP_OK;
}

/* ----------------------------------------------------------- prepare */

static void elt_free_prims(elt_state *s)
{
	dnnl_primitive_destroy(s->fwd);
	dnnl_primitive_destroy(s->bwd);
	dnnl_memory_destroy(s->src);
	dnnl_memory_destroy(s->dst);
	dnnl_memory_destroy(s->diff_dst);
	dnnl_memory_destroy(s->diff_src);
	s->fwd = s->bwd = NULL;
	s->src = s->dst = s->diff_dst = s->diff_src = NULL;
}

/* The tensor as one flat vector, in its storage type (x and y share
 * it: rt.h, PRECISION). */
static void elt_flat_md(dnnl_memory_desc_t *md, const np_rtensor *t)
{
	dnnl_dims_t dims = {t->nelem};
	dnnl_memory_desc_init_by_tag(md, 1, dims, np_rt_float_type(t), dnnl_a);
}

static np_status elt_make_primitive(const np_xnode *x, np_rt *rt,
                                    const_dnnl_op_desc_t desc,
                                    const_dnnl_primitive_desc_t hint,
                                    dnnl_primitive_desc_t *pd,
                                    dnnl_primitive_t *p, np_error *err)
{
	if (np_rt_dnnl(np_rt_pd_create(rt, x, pd, desc, NULL, hint),
	               x, "eltwise primitive descriptor", err))
		return err->status;
	return np_rt_dnnl(dnnl_primitive_create(p, *pd), x,
	                  "eltwise primitive", err);
}

/* Backward is built only when a gradient will be asked for. */
static bool elt_wants_bwd(const np_xnode *x)
{
	return x->in[0]->needs_grad && x->out[0]->grad;
}

static np_status elt_build_bwd(const np_xnode *x, np_rt *rt, elt_state *s,
                               const dnnl_memory_desc_t *md,
                               const_dnnl_primitive_desc_t fwd_pd,
                               np_error *err)
{
	dnnl_eltwise_desc_t d;
	dnnl_primitive_desc_t pd = NULL;
	np_status st = np_rt_dnnl(dnnl_eltwise_backward_desc_init(
	        &d, s->fn.alg, md, md, s->fn.alpha, s->fn.beta),
	        x, "eltwise backward descriptor", err);
	if (!st)
		st = elt_make_primitive(x, rt, &d, fwd_pd, &pd, &s->bwd, err);
	dnnl_primitive_desc_destroy(pd);
	if (st)
		return st;
	dnnl_engine_t eng = np_rt_engine(rt);
	if (np_rt_dnnl(dnnl_memory_create(&s->diff_dst, md, eng,
	                                  x->out[0]->grad), x, "memory", err) ||
	    np_rt_dnnl(dnnl_memory_create(&s->diff_src, md, eng,
	                                  DNNL_MEMORY_NONE), x, "memory", err))
		return err->status;
	return NP_OK;
}

static np_status elt_build(const np_xnode *x, np_rt *rt, elt_state *s,
                           np_error *err)
{
	dnnl_memory_desc_t md;
	dnnl_eltwise_desc_t d;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_engine_t eng = np_rt_engine(rt);
	elt_flat_md(&md, x->in[0]);
	np_status st = np_rt_dnnl(dnnl_eltwise_forward_desc_init(
	        &d, dnnl_forward_training, s->fn.alg, &md, s->fn.alpha,
	        s->fn.beta), x, "eltwise descriptor", err);
	if (!st)
		st = elt_make_primitive(x, rt, &d, NULL, &pd, &s->fwd, err);
	if (!st && elt_wants_bwd(x))
		st = elt_build_bwd(x, rt, s, &md, pd, err);
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

/* Clip's bounds are ordinary inputs (often scalar initializers, hence
 * parameters): they are read when valid, and the primitive is rebuilt
 * when they change. */
static bool clip_bounds_known(const np_xnode *x)
{
	for (int i = 1; i < x->n_in && i < 3; i++)
		if (x->in[i] && !x->in[i]->is_const && !x->in[i]->is_param)
			return false;
	return true;
}

static np_status elt_prepare(np_xnode *x, np_rt *rt, np_error *err)
{
	elt_state *s = calloc(1, sizeof *s);
	if (!s)
		return np_rt_fail_node(err, NP_ERR_NOMEM, x, "out of memory");
	x->state = s;
	s->fn.kind = elt_kind_of(x);
	if (x->in[0]->nelem == 0)
		return NP_OK;
	if (s->fn.kind == ELT_CLIP && !clip_bounds_known(x))
		return NP_OK;
	if (elt_fn_of(x, &s->fn, err))
		return err->status;
	return s->fn.alg ? elt_build(x, rt, s, err) : NP_OK;
}

static bool clip_bounds_train(const np_xnode *x);

/* bf16 values (rt.h, PRECISION) where oneDNN computes the op: not
 * HardSigmoid and Erf (loops over floats here), nor a Clip whose bounds
 * come at run time or train (their gradients are a loop over x). */
static bool elt_bf16_values(const np_xnode *x)
{
	elt_kind k = elt_kind_of(x);
	return k != ELT_HARDSIGMOID && k != ELT_ERF && k != ELT_N &&
	       (k != ELT_CLIP || (clip_bounds_known(x) && !clip_bounds_train(x)));
}

/* np_op.clamp (rt.h, PLANS: fused clamps): Relu, and a Clip whose
 * bounds are known now, ordered, and take no gradient. */
static bool elt_clamp(const np_xnode *x, float *lo, float *hi)
{
	switch (elt_kind_of(x)) {
	case ELT_RELU:
		*lo = 0.0f;
		*hi = INFINITY;
		return true;
	case ELT_CLIP:
		if (!clip_bounds_known(x) || clip_bounds_train(x))
			return false;
		clip_bounds(x, lo, hi);
		return *lo <= *hi;
	default:
		return false;
	}
}

/* y may be written over x (rt.h, PLANS) when backward reads y only:
 * oneDNN's eltwise runs in place, and y is what backward keeps. */
static unsigned elt_inplace(const np_xnode *x)
{
	return elt_bwd_from_dst(elt_kind_of(x)) ? 1u : 0u;
}

static void elt_destroy(np_xnode *x)
{
	elt_state *s = x->state;
	if (!s)
		return;
	elt_free_prims(s);
	free(s);
	x->state = NULL;
}

/* ----------------------------------------------------------- forward */

static void hardsigmoid_fwd(const float *in, float *out, int64_t n,
                            float alpha, float beta)
{
	#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++)
		out[i] = fmaxf(0.0f, fminf(1.0f, alpha * in[i] + beta));
}

static void erf_fwd(const float *in, float *out, int64_t n)
{
	#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++)
		out[i] = erff(in[i]);
}

static np_status clip_refresh(const np_xnode *x, np_rt *rt, elt_state *s,
                              np_error *err)
{
	float lo, hi;
	clip_bounds(x, &lo, &hi);
	/* Bitwise, so a NaN bound does not rebuild on every run. */
	if (s->fwd && memcmp(&lo, &s->fn.alpha, sizeof lo) == 0 &&
	    memcmp(&hi, &s->fn.beta, sizeof hi) == 0)
		return NP_OK;
	elt_free_prims(s);
	if (elt_fn_of(x, &s->fn, err))
		return err->status;
	return elt_build(x, rt, s, err);
}

static np_status elt_forward(np_xnode *x, np_rt *rt, bool training,
                             np_error *err)
{
	elt_state *s = x->state;
	const float *in = x->in[0]->data;
	float *out = x->out[0]->data;
	int64_t n = x->in[0]->nelem;
	(void)training;
	if (n == 0)
		return NP_OK;
	if (s->fn.kind == ELT_CLIP && clip_refresh(x, rt, s, err))
		return err->status;
	if (s->fn.kind == ELT_HARDSIGMOID) {
		hardsigmoid_fwd(in, out, n, s->fn.alpha, s->fn.beta);
		return NP_OK;
	}
	if (s->fn.kind == ELT_ERF) {
		erf_fwd(in, out, n);
		return NP_OK;
	}
	dnnl_exec_arg_t args[] = {
		{DNNL_ARG_SRC, s->src}, {DNNL_ARG_DST, s->dst},
	};
	return np_rt_dnnl(dnnl_primitive_execute(s->fwd, np_rt_stream(rt), 2,
	                                         args),
	                  x, "eltwise forward", err);
}

/* ---------------------------------------------------------- backward */

static void hardsigmoid_bwd(const float *in, const float *dy, float *dx,
                            int64_t n, float alpha, float beta)
{
	#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++) {
		float v = alpha * in[i] + beta;
		dx[i] = v > 0.0f && v < 1.0f ? alpha * dy[i] : 0.0f;
	}
}

static void erf_bwd(const float *in, const float *dy, float *dx, int64_t n)
{
	const float two_over_sqrt_pi = 1.12837916709551257f;
	#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++)
		dx[i] = dy[i] * two_over_sqrt_pi * expf(-in[i] * in[i]);
}

static np_status elt_bwd_dnnl(np_xnode *x, np_rt *rt, elt_state *s,
                              float *g, np_error *err)
{
	/* The _use_dst_for_bwd algorithms read y, the others x. */
	bool from_dst = s->fn.alg >= dnnl_eltwise_relu_use_dst_for_bwd;
	if (!s->bwd)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "backward was not prepared");
	if (np_rt_dnnl(dnnl_memory_set_data_handle(s->diff_src, g), x,
	               "memory", err))
		return err->status;
	dnnl_exec_arg_t args[] = {
		{from_dst ? DNNL_ARG_DST : DNNL_ARG_SRC,
		 from_dst ? s->dst : s->src},
		{DNNL_ARG_DIFF_DST, s->diff_dst},
		{DNNL_ARG_DIFF_SRC, s->diff_src},
	};
	return np_rt_dnnl(dnnl_primitive_execute(s->bwd, np_rt_stream(rt), 3,
	                                         args),
	                  x, "eltwise backward", err);
}

/* d/dmin and d/dmax of Clip: the gradient of the clamped elements, with
 * oneDNN's convention that x == min is clamped and x == max passes. */
static void clip_bound_grads(const np_xnode *x, const elt_state *s,
                             float *dlo, float *dhi)
{
	const float *in = x->in[0]->data, *dy = x->out[0]->grad;
	float lo = s->fn.alpha, hi = s->fn.beta, sum_lo = 0.0f, sum_hi = 0.0f;
	int64_t n = x->in[0]->nelem;
	#pragma omp parallel for reduction(+:sum_lo, sum_hi) schedule(static)
	for (int64_t i = 0; i < n; i++) {
		if (in[i] <= lo)
			sum_lo += dy[i];
		else if (in[i] > hi)
			sum_hi += dy[i];
	}
	*dlo = sum_lo;
	*dhi = sum_hi;
}

/* Does a Clip bound want a gradient (a trained bound, not a constant)? */
static bool clip_bounds_train(const np_xnode *x)
{
	for (int i = 1; i < x->n_in && i < 3; i++)
		if (x->in[i] && x->in[i]->needs_grad)
			return true;
	return false;
}

static np_status clip_backward_bounds(np_xnode *x, np_rt *rt, const elt_state *s,
                                      np_error *err)
{
	float d[2];
	if (!clip_bounds_train(x))
		return NP_OK;
	clip_bound_grads(x, s, &d[0], &d[1]);
	for (int i = 1; i < x->n_in && i < 3; i++) {
		np_rtensor *t = x->in[i];
		if (!t || !t->needs_grad)
			continue;
		float *g = np_rt_grad_target(rt, t);
		if (!g)
			return np_rt_grad_oom(err, x, t);
		g[0] = d[i - 1];
		np_rt_grad_done(rt, t, g);
	}
	return NP_OK;
}

static np_status elt_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	elt_state *s = x->state;
	np_rtensor *in = x->in[0];
	int64_t n = in->nelem;
	if (s->fn.kind == ELT_CLIP && n > 0 && clip_backward_bounds(x, rt, s, err))
		return err->status;
	if (!in->needs_grad || n == 0)
		return NP_OK;
	float *g = np_rt_grad_target(rt, in);
	if (!g)
		return np_rt_grad_oom(err, x, in);
	np_status st = NP_OK;
	if (s->fn.kind == ELT_HARDSIGMOID)
		hardsigmoid_bwd(in->data, x->out[0]->grad, g, n, s->fn.alpha,
		                s->fn.beta);
	else if (s->fn.kind == ELT_ERF)
		erf_bwd(in->data, x->out[0]->grad, g, n);
	else
		st = elt_bwd_dnnl(x, rt, s, g, err);
	np_rt_grad_done(rt, in, g);
	return st;
}

/* y_free: backward does not read y (np_op.out_overwritable): the ops
 * whose derivative comes from x (elt_bwd_from_dst false). */
#define ELT_OP(sym, op_name, op_flags, y_free) \
	const np_op sym = { .name = op_name, .infer = elt_infer, \
	                    .prepare = elt_prepare, .forward = elt_forward, \
	                    .backward = elt_backward, .destroy = elt_destroy, \
	                    .layout = NP_LAYOUT_FLAT, .flags = op_flags, \
	                    .bf16_values = elt_bf16_values, .clamp = elt_clamp, \
	                    NP_OP_NO_WEIGHT, .flops = np_flops_per_element, \
	                    .inplace = elt_inplace, .out_overwritable = y_free };

ELT_OP(np_op_relu, "Relu", NP_OPF_RECTIFIER, false)
ELT_OP(np_op_leakyrelu, "LeakyRelu", NP_OPF_RECTIFIER, true)
ELT_OP(np_op_clip, "Clip", NP_OPF_RECTIFIER, true)
ELT_OP(np_op_sigmoid, "Sigmoid", 0, false)
ELT_OP(np_op_tanh, "Tanh", 0, false)
ELT_OP(np_op_hardsigmoid, "HardSigmoid", 0, true)
ELT_OP(np_op_hardswish, "HardSwish", 0, true)
ELT_OP(np_op_erf, "Erf", 0, true)
ELT_OP(np_op_sqrt, "Sqrt", 0, false)
ELT_OP(np_op_gelu, "Gelu", NP_OPF_RECTIFIER, true)
