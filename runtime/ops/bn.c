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
	if (b->used_batch)
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
	.flags = NP_OPF_CHANNEL_AFFINE,
	.weight_input = 1,           /* scale */
	.bias_input = 2,             /* B */
	.trainable = 0x6,
	.state = 0x18,               /* input_mean, input_var */
	.flops = bn_flops,
	.out_overwritable = true,    /* backward: X, statistics, dY */
};
