/* bn.c - BatchNormalization on oneDNN, inference and training.
 *
 * Inference normalises with the running statistics (in[3], in[4]).
 * Training (the runtime's NP_RT_TRAIN, or the ONNX training_mode
 * attribute) normalises with the batch statistics, keeps them for
 * backward, and in NP_RT_TRAIN updates the running statistics in place as
 * PyTorch does: running = momentum * running + (1 - momentum) * batch, the
 * variance taken unbiased (n / (n - 1)) while normalising with the biased
 * one.  ONNX's momentum is PyTorch's 1 - momentum (0.9 for 0.1).
 */
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct bn_state {
	float eps, momentum;
	bool training_mode;          /* ONNX attribute: always batch stats */
	bool used_batch;             /* the last forward used batch stats */
	int64_t n, c, inner;         /* batch, channels, spatial size */
	float *batch_mean, *batch_var;   /* [c], biased variance */
	bool direct;                 /* runs bn_direct_* (below), no oneDNN */
	int64_t nblk;                /* direct: blocks of BN_ROWS rows */
	float *part;                 /* direct: [nblk, 2, c] block sums */
	double *tot;                 /* direct: [2, c] their totals */
	float *coef;                 /* direct: [5, c] per-channel factors */
	dnnl_primitive_t fwd_infer, fwd_train, bwd;
	dnnl_memory_t src, dst, scale, shift, mean, var, bmean, bvar;
	dnnl_memory_t dsrc, ddst, dscale, dshift;
} bn_state;

/* ------------------------------------------------------------ infer */

static np_status bn_check_inputs(const np_xnode *x, np_error *err)
{
	if (x->n_in != 5)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "BatchNormalization takes 5 inputs, got %d", x->n_in);
	const np_rtensor *X = x->in[0];
	if (X->rank < 2 || X->rank > 5)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "input of rank %d (2 to 5 supported)", X->rank);
	for (int i = 0; i < 5; i++) {
		const np_rtensor *t = x->in[i];
		if (!t || t->dtype != NP_FLOAT)
			return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
			                       "input %d must be float", i);
		if (i > 0 && (t->rank != 1 || t->dims[0] != X->dims[1]))
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "input %d must have shape [%lld]", i,
			                       (long long)X->dims[1]);
		if (i > 2 && t->needs_grad)
			return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
			                       "gradients through the mean and var inputs are not supported");
	}
	return NP_OK;
}

/* The extra outputs exist only as running mean/var of training_mode
 * (opset 14+); the older mean/var/saved_* training outputs are refused. */
static np_status bn_check_attrs(const np_xnode *x, np_error *err)
{
	int64_t opset = np_model_opset(x->node->graph->model, "");
	bool extra = false;
	for (int k = 1; k < x->n_out; k++)
		extra |= x->out[k] != NULL;
	if (opset < 9 && np_node_attr_int(x->node, "spatial", 1) != 1)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "attribute spatial=0 is not supported");
	int64_t tm = np_node_attr_int(x->node, "training_mode", 0);
	if (tm != 0 && tm != 1)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "attribute training_mode=%lld must be 0 or 1",
		                       (long long)tm);
	if (extra && (opset < 14 || !tm))
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "statistics outputs are supported only with training_mode=1 (opset 14+)");
	if (x->n_out > 3)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "BatchNormalization has at most 3 outputs here, got %d",
		                       x->n_out);
	return NP_OK;
}

static np_status bn_infer(np_xnode *x, np_error *err)
{
	np_status st = bn_check_inputs(x, err);
	if (!st)
		st = bn_check_attrs(x, err);
	if (st)
		return st;
	np_rtensor *Y = x->out[0];
	Y->dtype = NP_FLOAT;
	Y->rank = x->in[0]->rank;
	memcpy(Y->dims, x->in[0]->dims, sizeof(int64_t) * (size_t)Y->rank);
	for (int k = 1; k < x->n_out; k++) {
		if (!x->out[k])
			continue;
		x->out[k]->dtype = NP_FLOAT;
		x->out[k]->rank = 1;
		x->out[k]->dims[0] = x->in[0]->dims[1];
	}
	return NP_OK;
}

/* --------------------------------------- direct bf16 channels-last */

/* oneDNN 2.6's bf16 batch normalisation (bnorm_jit:avx512_core_bf16)
 * takes as long as its f32 one on half the bytes: MobileNet-V2's bf16
 * training step spent as much in it as the f32 step (147 against 162 ms
 * for 8 steps of 128), a quarter of the step.  On bf16 channels-last
 * values (the layout AMX gives) it is the loops below, forward and
 * backward, batch or running statistics.  The tensor is a matrix
 * [rows = N*H*W, c]: each row is one position's channels and every loop
 * runs across channels in SIMD lanes.  Sums over rows are taken per
 * block of BN_ROWS rows in f32 and the blocks added in order in double:
 * one order whatever the thread count.  A clamp after the node (Relu,
 * ReLU6) is applied here when the planner fuses it (rt.h, PLANS):
 * forward clamps, backward masks the clamp's output gradient where the
 * normalised value was outside (lo, hi), as PyTorch's hardtanh does.
 * Compiled for AVX-512 (ops.h, NP_BF16_SIMD). */

#define BN_ROWS 64

/* The clamp applied after normalising: none is (-inf, inf). */
typedef struct bn_clamp {
	float lo, hi;
} bn_clamp;

static bool bn_direct_fits(const np_xnode *x)
{
	const np_rtensor *X = x->in[0], *Y = x->out[0];
	return X->rank == 4 && X->nelem > 0 && np_rt_is_bf16(X) &&
	       np_rt_tag(X) == dnnl_acdb && np_rt_is_bf16(Y) &&
	       np_rt_tag(Y) == dnnl_acdb && np_bf16_simd_cpu();
}

static bn_clamp bn_clamp_of(const np_xnode *x)
{
	bn_clamp cl = {-INFINITY, INFINITY};
	const np_xnode *c = x->clamp_next;
	if (c && !c->op->clamp(c, &cl.lo, &cl.hi))
		cl = (bn_clamp){-INFINITY, INFINITY};   /* the planner asked */
	return cl;
}

static inline float bn_clamp_value(float v, bn_clamp cl)
{
	return v < cl.lo ? cl.lo : v > cl.hi ? cl.hi : v;
}

/* The rows of block b: [*r0, return value). */
static int64_t bn_block(int64_t b, int64_t rows, int64_t *r0)
{
	*r0 = b * BN_ROWS;
	return *r0 + BN_ROWS < rows ? *r0 + BN_ROWS : rows;
}

/* part[b] = two sums over block b's rows, [2, c]: without dy, of
 * u = x - center and of u * u; with dy, of d and of d * (x - center),
 * d = dy where the clamp passed (lo < x * a + sh < hi), else 0. */
NP_BF16_SIMD
static void bn_direct_sums(const uint16_t *x, const uint16_t *dy,
                           const float *center, const float *a,
                           const float *sh, bn_clamp cl, int64_t rows,
                           int64_t c, int64_t nblk, float *part)
{
	#pragma omp parallel for schedule(static)
	for (int64_t b = 0; b < nblk; b++) {
		float *su = part + b * 2 * c, *sv = su + c;
		int64_t r0, r1 = bn_block(b, rows, &r0);
		memset(su, 0, sizeof(float) * 2 * (size_t)c);
		for (int64_t r = r0; r < r1; r++) {
			const uint16_t *xr = x + r * c, *dr = dy ? dy + r * c : NULL;
			if (!dr) {
				#pragma omp simd
				for (int64_t k = 0; k < c; k++) {
					float u = np_f32_of(xr[k]) - center[k];
					su[k] += u;
					sv[k] += u * u;
				}
				continue;
			}
			#pragma omp simd
			for (int64_t k = 0; k < c; k++) {
				float xv = np_f32_of(xr[k]), v = xv * a[k] + sh[k];
				float d = v > cl.lo && v < cl.hi ? np_f32_of(dr[k]) : 0.0f;
				su[k] += d;
				sv[k] += d * (xv - center[k]);
			}
		}
	}
}

/* The block sums added in block order: u[k], v[k] (double). */
static void bn_direct_total(const float *part, int64_t c, int64_t nblk,
                            double *u, double *v)
{
	for (int64_t k = 0; k < c; k++)
		u[k] = v[k] = 0;
	for (int64_t b = 0; b < nblk; b++)
		for (int64_t k = 0; k < c; k++) {
			u[k] += part[b * 2 * c + k];
			v[k] += part[b * 2 * c + c + k];
		}
}

/* y = clamp(x * a + sh). */
NP_BF16_SIMD
static void bn_direct_norm(const uint16_t *x, const float *a,
                           const float *sh, bn_clamp cl,
                           int64_t rows, int64_t c, uint16_t *y)
{
	#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		const uint16_t *xr = x + r * c;
		uint16_t *yr = y + r * c;
		#pragma omp simd
		for (int64_t k = 0; k < c; k++)
			yr[k] = np_bf16_of(bn_clamp_value(np_f32_of(xr[k]) * a[k] + sh[k], cl));
	}
}

/* dx = d * ga + x * gq + gsh, d as in bn_direct_sums. */
NP_BF16_SIMD
static void bn_direct_grad(const uint16_t *x, const uint16_t *dy,
                           const float *a, const float *sh,
                           bn_clamp cl, const float *ga,
                           const float *gq, const float *gsh,
                           int64_t rows, int64_t c, uint16_t *dx)
{
	#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		const uint16_t *xr = x + r * c, *dr = dy + r * c;
		uint16_t *gr = dx + r * c;
		#pragma omp simd
		for (int64_t k = 0; k < c; k++) {
			float xv = np_f32_of(xr[k]), v = xv * a[k] + sh[k];
			float d = v > cl.lo && v < cl.hi ? np_f32_of(dr[k]) : 0.0f;
			gr[k] = np_bf16_of(d * ga[k] + xv * gq[k] + gsh[k]);
		}
	}
}

/* Batch statistics of X into b->batch_mean and b->batch_var (biased),
 * in one pass of sums around K, the mean of the first block's rows (the
 * shift keeps E[(x-K)^2] - E[x-K]^2 from cancelling). */
static void bn_direct_stats(const np_xnode *x, bn_state *b)
{
	int64_t c = b->c, rows = b->n * b->inner, r0;
	int64_t n0 = bn_block(0, rows, &r0);      /* the first block's rows */
	const uint16_t *X = x->in[0]->data;
	double *u = b->tot, *v = u + c;
	float *K = b->coef + 2 * c;
	for (int64_t k = 0; k < c; k++)
		K[k] = 0;
	bn_clamp none = {-INFINITY, INFINITY};
	bn_direct_sums(X, NULL, K, NULL, NULL, none, n0, c, 1, b->part);
	for (int64_t k = 0; k < c; k++)
		K[k] = b->part[k] / (float)n0;
	bn_direct_sums(X, NULL, K, NULL, NULL, none, rows, c, b->nblk, b->part);
	bn_direct_total(b->part, c, b->nblk, u, v);
	for (int64_t k = 0; k < c; k++) {
		double m = u[k] / (double)rows, var = v[k] / (double)rows - m * m;
		b->batch_mean[k] = (float)(K[k] + m);
		b->batch_var[k] = (float)(var > 0 ? var : 0);
	}
}

/* The statistics the last forward used (batch or running). */
static void bn_used_stats(const np_xnode *x, const bn_state *b,
                          const float **mean, const float **var)
{
	*mean = b->used_batch ? b->batch_mean : x->in[3]->data;
	*var = b->used_batch ? b->batch_var : x->in[4]->data;
}

/* The map forward applies per channel, x * a + sh, into coef[0, 2c). */
static void bn_direct_map(const np_xnode *x, const bn_state *b)
{
	const float *scale = x->in[1]->data, *shift = x->in[2]->data;
	const float *mean, *var;
	float *a = b->coef, *sh = a + b->c;
	bn_used_stats(x, b, &mean, &var);
	for (int64_t k = 0; k < b->c; k++) {
		a[k] = scale[k] / sqrtf(var[k] + b->eps);
		sh[k] = shift[k] - mean[k] * a[k];
	}
}

static void bn_direct_forward(const np_xnode *x, bn_state *b)
{
	if (b->used_batch)
		bn_direct_stats(x, b);
	bn_direct_map(x, b);
	bn_direct_norm(x->in[0]->data, b->coef, b->coef + b->c, bn_clamp_of(x),
	               b->n * b->inner, b->c, x->out[0]->data);
}

/* With xhat = (x - mean) * inv, d the gradient reaching the normalised
 * value (the clamp's output gradient, masked), g = sum d * xhat and
 * s = sum d over the M = rows positions: dscale = g, dshift = s, and
 * with batch statistics dx = scale * inv * (d - s / M - xhat * g / M)
 * = d * ga + x * gq + gsh (ga = scale * inv, gq = -ga * inv * g / M,
 * gsh = -gq * mean - ga * s / M); with running ones (constants) dx =
 * d * ga. */
static void bn_direct_backward(const np_xnode *x, const bn_state *b,
                               void *dx, float *dscale, float *dshift)
{
	int64_t c = b->c, rows = b->n * b->inner;
	const np_xnode *z = x->clamp_next ? x->clamp_next : x;
	const uint16_t *X = x->in[0]->data;
	const uint16_t *dy = (const void *)z->out[0]->grad;
	const float *scale = x->in[1]->data, *mean, *var;
	double *u = b->tot, *v = u + c;
	float *a = b->coef, *sh = a + c, *ga = sh + c, *gq = ga + c, *gsh = gq + c;
	bn_clamp cl = bn_clamp_of(x);
	bn_used_stats(x, b, &mean, &var);
	bn_direct_map(x, b);
	bn_direct_sums(X, dy, mean, a, sh, cl, rows, c, b->nblk, b->part);
	bn_direct_total(b->part, c, b->nblk, u, v);
	for (int64_t k = 0; k < c; k++) {
		float inv = 1 / sqrtf(var[k] + b->eps);
		double g = v[k] * inv, s = u[k];
		if (dscale)
			dscale[k] = (float)g;
		if (dshift)
			dshift[k] = (float)s;
		ga[k] = scale[k] * inv;
		gq[k] = b->used_batch ? (float)(-ga[k] * inv * g / (double)rows) : 0;
		gsh[k] = b->used_batch
		         ? (float)(-gq[k] * mean[k] - ga[k] * s / (double)rows) : 0;
	}
	if (dx)
		bn_direct_grad(X, dy, a, sh, cl, ga, gq, gsh, rows, c, dx);
}

/* np_op.absorbs_clamp: the loops above apply one. */
static bool bn_absorbs_clamp(const np_xnode *x)
{
	return bn_direct_fits(x);
}

/* ---------------------------------------------------------- prepare */

static dnnl_status_t bn_make(np_rt *rt, const np_xnode *x,
                             dnnl_primitive_t *p, dnnl_primitive_desc_t *pd,
                             const dnnl_batch_normalization_desc_t *d,
                             const_dnnl_primitive_desc_t hint)
{
	dnnl_status_t s = np_rt_pd_create(rt, x, pd, d, NULL, hint);
	return s ? s : dnnl_primitive_create(p, *pd);
}

/* A [c] memory on buf (DNNL_MEMORY_ALLOCATE: oneDNN's own buffer). */
static dnnl_status_t bn_vec(dnnl_memory_t *m, const bn_state *b,
                            dnnl_engine_t eng, void *buf)
{
	dnnl_memory_desc_t md;
	dnnl_dims_t d = {b->c};
	dnnl_memory_desc_init_by_strides(&md, 1, d, dnnl_f32, NULL);
	return dnnl_memory_create(m, &md, eng, buf);
}

static dnnl_status_t bn_prepare_fwd(bn_state *b, const np_xnode *x,
                                    np_rt *rt, dnnl_primitive_desc_t *train_pd)
{
	dnnl_engine_t eng = np_rt_engine(rt);
	const unsigned ss = dnnl_use_scale | dnnl_use_shift;
	dnnl_memory_desc_t md;
	dnnl_batch_normalization_desc_t d;
	dnnl_primitive_desc_t pd = NULL;
	np_rt_md(&md, x->in[0]);
	dnnl_status_t s = dnnl_batch_normalization_forward_desc_init(
		&d, dnnl_forward_inference, &md, b->eps, ss | dnnl_use_global_stats);
	if (!s)
		s = bn_make(rt, x, &b->fwd_infer, &pd, &d, NULL);
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (!s)
		s = dnnl_batch_normalization_forward_desc_init(
			&d, dnnl_forward_training, &md, b->eps, ss);
	if (!s)
		s = bn_make(rt, x, &b->fwd_train, train_pd, &d, NULL);
	if (!s)
		s = dnnl_memory_create(&b->src, &md, eng, x->in[0]->data);
	if (!s)
		s = dnnl_memory_create(&b->dst, &md, eng, x->out[0]->data);
	void *bufs[] = {x->in[1]->data, x->in[2]->data, x->in[3]->data,
	                x->in[4]->data, b->batch_mean, b->batch_var};
	dnnl_memory_t *mems[] = {&b->scale, &b->shift, &b->mean, &b->var,
	                         &b->bmean, &b->bvar};
	for (int i = 0; !s && i < 6; i++)
		s = bn_vec(mems[i], b, eng, bufs[i]);
	return s;
}

/* Gradients that no input wants still need a place to go. */
static dnnl_status_t bn_prepare_bwd(bn_state *b, const np_xnode *x,
                                    np_rt *rt, const_dnnl_primitive_desc_t hint)
{
	dnnl_engine_t eng = np_rt_engine(rt);
	dnnl_memory_desc_t md;
	dnnl_batch_normalization_desc_t d;
	dnnl_primitive_desc_t pd = NULL;
	np_rt_md(&md, x->in[0]);
	dnnl_status_t s = dnnl_batch_normalization_backward_desc_init(
		&d, dnnl_backward, &md, &md, b->eps, dnnl_use_scale | dnnl_use_shift);
	if (!s)
		s = bn_make(rt, x, &b->bwd, &pd, &d, hint);
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (!s)
		s = dnnl_memory_create(&b->dsrc, &md, eng, x->in[0]->needs_grad
		                       ? DNNL_MEMORY_NONE : DNNL_MEMORY_ALLOCATE);
	if (!s)
		s = dnnl_memory_create(&b->ddst, &md, eng, DNNL_MEMORY_NONE);
	if (!s)
		s = bn_vec(&b->dscale, b, eng, x->in[1]->needs_grad
		           ? DNNL_MEMORY_NONE : DNNL_MEMORY_ALLOCATE);
	if (!s)
		s = bn_vec(&b->dshift, b, eng, x->in[2]->needs_grad
		           ? DNNL_MEMORY_NONE : DNNL_MEMORY_ALLOCATE);
	return s;
}

static np_status bn_prepare(np_xnode *x, np_rt *rt, np_error *err)
{
	const np_rtensor *X = x->in[0];
	bn_state *b = calloc(1, sizeof *b);
	if (!b)
		return np_rt_fail_node(err, NP_ERR_NOMEM, x, "out of memory");
	x->state = b;
	b->eps = np_node_attr_float(x->node, "epsilon", 1e-5f);
	b->momentum = np_node_attr_float(x->node, "momentum", 0.9f);
	b->training_mode = np_node_attr_int(x->node, "training_mode", 0) != 0;
	b->n = X->dims[0];
	b->c = X->dims[1];
	b->inner = b->n > 0 && b->c > 0 ? X->nelem / (b->n * b->c) : 0;
	b->batch_mean = calloc((size_t)b->c + 1, sizeof(float));
	b->batch_var = calloc((size_t)b->c + 1, sizeof(float));
	if (!b->batch_mean || !b->batch_var)
		return np_rt_fail_node(err, NP_ERR_NOMEM, x, "out of memory");
	if ((b->direct = bn_direct_fits(x))) {
		b->nblk = (b->n * b->inner + BN_ROWS - 1) / BN_ROWS;
		b->part = malloc(sizeof(float) * 2 * (size_t)(b->c * b->nblk + 1));
		b->tot = malloc(sizeof(double) * 2 * (size_t)(b->c + 1));
		b->coef = malloc(sizeof(float) * 5 * (size_t)(b->c + 1));
		if (!b->part || !b->tot || !b->coef)
			return np_rt_fail_node(err, NP_ERR_NOMEM, x, "out of memory");
		return NP_OK;
	}
	if (x->clamp_next)           /* the planner asked bn_absorbs_clamp */
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "a fused clamp without the direct kernels");
	dnnl_primitive_desc_t train_pd = NULL;
	bool any_grad = X->needs_grad || x->in[1]->needs_grad || x->in[2]->needs_grad;
	np_status st = np_rt_dnnl(bn_prepare_fwd(b, x, rt, &train_pd), x,
	                          "creating the batch normalization", err);
	if (!st && any_grad)
		st = np_rt_dnnl(bn_prepare_bwd(b, x, rt, train_pd), x,
		                "creating the batch normalization backward", err);
	if (train_pd)
		dnnl_primitive_desc_destroy(train_pd);
	return st;
}

/* ---------------------------------------------------------- forward */

/* running = m * running + (1 - m) * batch, into out (may alias running). */
static void bn_blend(float *out, const float *running, const float *batch,
                     float m, float batch_scale, int64_t c)
{
	for (int64_t i = 0; i < c; i++)
		out[i] = m * running[i] + (1 - m) * batch[i] * batch_scale;
}

/* After a batch-statistics forward: the ONNX training_mode outputs (from
 * the biased variance, as the ONNX reference), then, when the runtime
 * trains, the running statistics PyTorch's way. */
static void bn_update_stats(const np_xnode *x, const bn_state *b, bool training)
{
	const float *rm = x->in[3]->data, *rv = x->in[4]->data;
	if (x->n_out > 1 && x->out[1])
		bn_blend(x->out[1]->data, rm, b->batch_mean, b->momentum, 1, b->c);
	if (x->n_out > 2 && x->out[2])
		bn_blend(x->out[2]->data, rv, b->batch_var, b->momentum, 1, b->c);
	if (!training || !x->in[3]->is_param || !x->in[4]->is_param)
		return;
	int64_t n = b->n * b->inner;
	float unbias = n > 1 ? (float)n / (float)(n - 1) : 1;
	bn_blend(x->in[3]->data, rm, b->batch_mean, b->momentum, 1, b->c);
	bn_blend(x->in[4]->data, rv, b->batch_var, b->momentum, unbias, b->c);
}

static np_status bn_forward(np_xnode *x, np_rt *rt, bool training,
                            np_error *err)
{
	bn_state *b = x->state;
	dnnl_stream_t stream = np_rt_stream(rt);
	b->used_batch = training || b->training_mode;
	if (b->direct) {
		bn_direct_forward(x, b);
		if (b->used_batch)
			bn_update_stats(x, b, training);
		return NP_OK;
	}
	dnnl_exec_arg_t args[6] = {
		{DNNL_ARG_SRC, b->src}, {DNNL_ARG_DST, b->dst},
		{DNNL_ARG_SCALE, b->scale}, {DNNL_ARG_SHIFT, b->shift},
		{DNNL_ARG_MEAN, b->used_batch ? b->bmean : b->mean},
		{DNNL_ARG_VARIANCE, b->used_batch ? b->bvar : b->var},
	};
	dnnl_status_t s = dnnl_primitive_execute(
		b->used_batch ? b->fwd_train : b->fwd_infer, stream, 6, args);
	if (!s && b->used_batch)
		s = dnnl_stream_wait(stream);       /* the CPU reads the stats */
	if (!s && b->used_batch)
		bn_update_stats(x, b, training);
	return np_rt_dnnl(s, x, "running the batch normalization", err);
}

/* --------------------------------------------------------- backward */

/* After an inference forward the statistics are constants and the op is
 * affine: dx = dy * scale * inv, dscale = sum dy * xhat, dB = sum dy. */
static void bn_backward_affine(const np_xnode *x, const bn_state *b,
                               float *dx, float *dscale, float *dshift)
{
	const void *X = x->in[0]->data, *dy = x->out[0]->grad;
	bool bf = np_rt_is_bf16(x->in[0]);        /* X, dy and dx alike */
	const float *scale = x->in[1]->data, *mean = x->in[3]->data;
	const float *var = x->in[4]->data;
	int64_t c = b->c, inner = b->inner, n = b->n;
	/* Element (i, ch, k) sits at base(i, ch) + k * step: plain NC...,
	 * nChw<blk>c (ch's block, then blk lanes per position), or
	 * channels-last (all channels per position). */
	int64_t blk = np_rt_blk(x->in[0]);
	bool nhwc = np_rt_tag(x->in[0]) == dnnl_acdb;
	int64_t step = nhwc ? c : blk;
	#pragma omp parallel for
	for (int64_t ch = 0; ch < c; ch++) {
		float inv = 1 / sqrtf(var[ch] + b->eps);
		double ss = 0, sb = 0;
		for (int64_t i = 0; i < n; i++) {
			int64_t o = nhwc ? i * c * inner + ch
			                 : ((i * c + ch - ch % blk) * inner) + ch % blk;
			for (int64_t j = o; j < o + inner * step; j += step) {
				float d = np_load(dy, j, bf);
				if (dx)
					np_store(dx, j, d * scale[ch] * inv, bf);
				ss += (double)d * (np_load(X, j, bf) - mean[ch]) * inv;
				sb += d;
			}
		}
		if (dscale)
			dscale[ch] = (float)ss;
		if (dshift)
			dshift[ch] = (float)sb;
	}
}

static dnnl_status_t bn_backward_batch(const np_xnode *x, const bn_state *b,
                                       float *dx, float *dscale,
                                       float *dshift, dnnl_stream_t stream)
{
	/* oneDNN 2.6 insists on SHIFT although the gradient ignores it. */
	dnnl_exec_arg_t args[9] = {
		{DNNL_ARG_SRC, b->src}, {DNNL_ARG_MEAN, b->bmean},
		{DNNL_ARG_VARIANCE, b->bvar}, {DNNL_ARG_DIFF_DST, b->ddst},
		{DNNL_ARG_SCALE, b->scale}, {DNNL_ARG_SHIFT, b->shift},
		{DNNL_ARG_DIFF_SRC, b->dsrc}, {DNNL_ARG_DIFF_SCALE, b->dscale},
		{DNNL_ARG_DIFF_SHIFT, b->dshift},
	};
	/* NULL targets keep the sinks allocated in prepare. */
	dnnl_status_t s = dnnl_memory_set_data_handle(b->ddst, x->out[0]->grad);
	if (!s && dx)
		s = dnnl_memory_set_data_handle(b->dsrc, dx);
	if (!s && dscale)
		s = dnnl_memory_set_data_handle(b->dscale, dscale);
	if (!s && dshift)
		s = dnnl_memory_set_data_handle(b->dshift, dshift);
	if (!s)
		s = dnnl_primitive_execute(b->bwd, stream, 9, args);
	return s;
}

static np_status bn_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	const bn_state *b = x->state;
	np_rtensor *t[3] = {x->in[0], x->in[1], x->in[2]};
	float *g[3];
	for (int i = 0; i < 3; i++) {
		g[i] = t[i]->needs_grad ? np_rt_grad_target(rt, t[i]) : NULL;
		if (t[i]->needs_grad && !g[i])
			return np_rt_grad_oom(err, x, t[i]);
	}
	dnnl_status_t s = dnnl_success;
	if (b->direct)
		bn_direct_backward(x, b, g[0], g[1], g[2]);
	else if (b->used_batch)
		s = bn_backward_batch(x, b, g[0], g[1], g[2], np_rt_stream(rt));
	else
		bn_backward_affine(x, b, g[0], g[1], g[2]);
	for (int i = 0; i < 3; i++)
		if (g[i])
			np_rt_grad_done(rt, t[i], g[i]);
	return np_rt_dnnl(s, x, "running the batch normalization backward", err);
}

static void bn_destroy(np_xnode *x)
{
	bn_state *b = x->state;
	if (!b)
		return;
	dnnl_memory_t mems[] = {b->src, b->dst, b->scale, b->shift, b->mean,
	                        b->var, b->bmean, b->bvar, b->dsrc, b->ddst,
	                        b->dscale, b->dshift};
	for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
		if (mems[i])
			dnnl_memory_destroy(mems[i]);
	dnnl_primitive_t prims[] = {b->fwd_infer, b->fwd_train, b->bwd};
	for (size_t i = 0; i < sizeof prims / sizeof prims[0]; i++)
		if (prims[i])
			dnnl_primitive_destroy(prims[i]);
	free(b->batch_mean);
	free(b->batch_var);
	free(b->part);
	free(b->tot);
	free(b->coef);
	free(b);
	x->state = NULL;
}

/* A scale and a shift per element at inference. */
static int64_t bn_flops(const np_node *n, const np_shape *const *in, int n_in,
                        const np_shape *out)
{
	int64_t e = np_flops_per_element(n, in, n_in, out);
	return e < 0 ? -1 : 2 * e;
}

const np_op np_op_batchnorm = {
	.name = "BatchNormalization",
	.infer = bn_infer,
	.prepare = bn_prepare,
	.forward = bn_forward,
	.backward = bn_backward,
	.destroy = bn_destroy,
	.layout = NP_LAYOUT_SAME,
	.bf16_values = np_rt_bf16_always,
	.absorbs_clamp = bn_absorbs_clamp,
	.flags = NP_OPF_CHANNEL_AFFINE,
	.weight_input = 1,           /* scale */
	.bias_input = 2,             /* B */
	.trainable = 0x6,
	.state = 0x18,               /* input_mean, input_var */
	.flops = bn_flops,
	.out_overwritable = true,    /* backward: X, statistics, dY */
};
