/* fold_bn.c - BatchNormalization (inference form) into the Conv, Gemm or
 * MatMul that produces its input.
 *
 * With s = scale / sqrt(var + eps), BN(z) = (z - mean) * s + B, so for a
 * producer z = W x + b:  W'[o] = W[o] * s[o],  b' = (b - mean) * s + B.
 * Exact (up to float rounding).  The kept node keeps its name and now
 * produces the BN's output value; a bias is created when absent (a 2-D
 * MatMul becomes a Gemm to carry it).  Not folded: BN in training mode or
 * with outputs beyond Y in use, parameters that are not initializers, a
 * producer whose output has another reader or is a graph output, a Gemm
 * bias that is not per column, a MatMul whose output is not 2-D (BN's
 * channel axis 1 would not be the MatMul's columns). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fold.h"
#include "ops.h"
#include "pass.h"

#define PASS "fold_bn"

typedef struct bn_fold {
	np_node *bn, *p;             /* the BN and its producer */
	const float *scale, *shift, *mean, *var;
	int64_t c;                   /* channels */
	double eps;
	bool columns;                /* channels on the weight's last axis
	                              * (Gemm transB=0, MatMul), else axis 0 */
	float gemm_beta;
} bn_fold;

/* -------------------------------------------------------------- checks */

/* NULL if the BN itself can be folded, else why not. */
static const char *check_bn(bn_fold *f)
{
	np_node *bn = f->bn;
	if (np_node_attr_int(bn, "training_mode", 0) != 0)
		return "training_mode=1";
	if (np_node_attr_int(bn, "spatial", 1) == 0)
		return "spatial=0 (per-element statistics)";
	for (int k = 1; k < bn->n_outputs; k++)
		if (bn->outputs[k] && (bn->outputs[k]->n_uses || bn->outputs[k]->is_output))
			return "its training outputs are in use";
	if (bn->n_inputs != 5 || bn->n_outputs < 1 || !bn->outputs[0])
		return "not the 5-input inference form";
	const float **p[4] = {&f->scale, &f->shift, &f->mean, &f->var};
	for (int i = 0; i < 4; i++) {
		*p[i] = np_fold_const(bn->inputs[i + 1]);
		if (!*p[i])
			return "a parameter is not a float initializer";
		int64_t len = np_fold_tensor(bn->inputs[i + 1])->nelem;
		if (i == 0)
			f->c = len;
		else if (len != f->c)
			return "its parameters differ in length";
	}
	f->eps = np_node_attr_float(bn, "epsilon", 1e-5f);
	return NULL;
}

/* A float initializer read directly (the fold rewrites it). */
static bool direct(const np_value *v)
{
	return v && !v->is_input && np_init_floats(v);
}

/* A bias input that holds one value per output channel (or a scalar). */
static bool per_channel_bias(const np_value *b, int64_t c)
{
	if (!b)
		return true;
	if (!direct(b))
		return false;
	const np_tensor *t = b->init;
	return t->nelem == 1 || (t->nelem == c && (t->rank <= 1 || t->dims[0] == 1));
}

/* NULL if the producer's weights can absorb the BN, else why not.  The
 * weight's channels and other axis are its op's weight_geom; what else
 * each op needs is said per op. */
static const char *check_producer(bn_fold *f, const np_shapes *s)
{
	np_node *p = f->p;
	np_op_kind kind = np_node_kind(p);
	const np_value *w = p->n_inputs > 1 ? p->inputs[1] : NULL;
	const np_value *b = p->n_inputs > 2 ? p->inputs[2] : NULL;
	if (!direct(w))
		return "the producer's weight is not a float initializer";
	const np_tensor *wt = w->init;
	np_weight_geom g;
	bool fits = np_node_weight_geom(p, wt->rank, wt->dims, &g);
	f->columns = fits && g.out_axis != 0;
	if (kind == NP_OPK_Conv) {
		if (!fits || g.out_ch != f->c)
			return "conv output channels do not match";
		if (b && (!direct(b) || b->init->nelem != f->c))
			return "conv bias is not a float initializer of C values";
		return NULL;
	}
	if (wt->rank != 2 || !fits)
		return "the weight is not 2-D";
	if (kind == NP_OPK_Gemm) {
		f->gemm_beta = np_node_attr_float(p, "beta", 1.0f);
		if (g.out_ch != f->c)
			return "Gemm output columns do not match";
		if (!per_channel_bias(b, f->c))
			return "Gemm bias is not per column";
		return NULL;
	}
	/* MatMul(X, W): only [N, K] x [K, C], where BN's axis 1 is C. */
	const np_shape *x = np_shape_get(s, p->inputs[0]);
	if (!x || x->rank != 2)
		return "MatMul input is not known to be 2-D (BatchNormalization's "
		       "channel axis would not be the MatMul's columns)";
	if (g.out_ch != f->c)
		return "MatMul output columns do not match";
	return NULL;
}

/* ---------------------------------------------------------------- fold */

/* New bias after BN: beta_in * b * s + shift - mean * s. */
static void fold_bias(const bn_fold *f, const double *sc, const float *b,
                      int64_t b_n, double beta_in, float *out)
{
	for (int64_t o = 0; o < f->c; o++) {
		double bo = b ? beta_in * b[b_n == 1 ? 0 : o] : 0.0;
		out[o] = (float)((bo - f->mean[o]) * sc[o] + f->shift[o]);
	}
}

/* Scale the producer's weight columns/rows by sc (in place or a copy). */
static np_status scale_weight(np_model *m, const bn_fold *f, const double *sc,
                              np_error *err)
{
	float *w = np_fold_writable(m, f->p, 1, err);
	if (!w)
		return err->status;
	int64_t n = f->p->inputs[1]->init->nelem;
	for (int64_t i = 0; i < n; i++)
		w[i] = (float)(w[i] * (f->columns ? sc[i % f->c] : sc[i / (n / f->c)]));
	return NP_OK;
}

/* "conv1.weight" -> "conv1.bias"; otherwise NODE.bias. */
static const char *bias_name(np_model *m, const bn_fold *f)
{
	const char *w = f->p->inputs[1]->name;
	size_t len = strlen(w);
	if (len > 7 && strcmp(w + len - 7, ".weight") == 0)
		return np_arena_printf(m->arena, "%.*s.bias", (int)(len - 7), w);
	return np_arena_printf(m->arena, "%s.bias", f->p->name ? f->p->name : "bn");
}

/* The producer's bias after folding: rewritten in place when it already
 * has one value per channel, else a new initializer. */
static np_value *new_bias(np_model *m, bn_fold *f, const double *sc,
                          np_error *err)
{
	np_node *p = f->p;
	np_value *b = p->n_inputs > 2 ? p->inputs[2] : NULL;
	double beta_in = np_node_kind(p) == NP_OPK_Gemm ? f->gemm_beta : 1.0;
	if (b && b->init->nelem == f->c) {
		float *w = np_fold_writable(m, p, 2, err);
		if (!w)
			return NULL;
		fold_bias(f, sc, w, f->c, beta_in, w);
		return p->inputs[2];
	}
	np_value *nb = np_fold_new_init(m, bias_name(m, f), 1, &f->c, err);
	if (!nb)
		return NULL;
	fold_bias(f, sc, b ? np_init_floats(b) : NULL, 1, beta_in, nb->init->data);
	return nb;
}

static np_status fold(np_model *m, np_pass_ctx *ctx, bn_fold *f, np_error *err)
{
	double *sc = malloc(sizeof(double) * (size_t)f->c);
	if (!sc)
		return np_fail(err, NP_ERR_NOMEM, "out of memory (node %s, op %s)",
		               f->bn->name, f->bn->op_type);
	for (int64_t o = 0; o < f->c; o++)
		sc[o] = f->scale[o] / sqrt((double)f->var[o] + f->eps);
	np_value *bias = NULL;
	if (scale_weight(m, f, sc, err) == NP_OK)
		bias = new_bias(m, f, sc, err);
	free(sc);
	if (!bias)
		return err->status;
	np_node *p = f->p;
	np_value *in[3] = {p->inputs[0], p->inputs[1], bias};
	np_value *y = f->bn->outputs[0];
	bool matmul = np_node_kind(p) == NP_OPK_MatMul;
	np_graph_remove_node(m->graph, f->bn);
	np_node *kept = np_fold_rebuild(m, p, matmul ? np_op_name(NP_OPK_Gemm) : p->op_type,
	                                in, 3, y, true);
	if (np_node_kind(kept) == NP_OPK_Gemm)
		np_node_set_attr_float(kept, "beta", 1.0f);
	np_fold_note(m, ctx, PASS, kept, f->bn,
	             matmul ? "MatMul became a Gemm to carry the bias" : NULL);
	return NP_OK;
}

/* ----------------------------------------------------------------- try */

/* The folded pair is never more expensive: the producer keeps its FLOPs,
 * gains at most C bias values, and the BN's 4C parameters go. */
static bool cheaper(const bn_fold *f, const np_shapes *s)
{
	np_cost cp = np_node_cost(f->p, s), cb = np_node_cost(f->bn, s);
	bool has_bias = f->p->n_inputs > 2 && f->p->inputs[2] &&
	                f->p->inputs[2]->init->nelem == f->c;
	np_cost merged = {0, cp.param_bytes + (has_bias ? 0 : 4 * f->c)};
	np_cost pair = {cb.flops > 0 ? cb.flops : 0, cp.param_bytes + cb.param_bytes};
	return np_cost_le(merged, pair);
}

static int try_bn(np_model *m, np_pass_ctx *ctx, np_node *n,
                  const np_shapes *s, np_pass_log *refused, np_error *err)
{
	if (np_node_kind(n) != NP_OPK_BatchNormalization || n->n_inputs < 1 ||
	    !n->inputs[0])
		return NP_TRY_NONE;
	np_node *p = n->inputs[0]->producer;
	np_op_kind pk = np_node_kind(p);
	if (!(pk == NP_OPK_Conv || pk == NP_OPK_Gemm || pk == NP_OPK_MatMul) ||
	    p->n_outputs != 1)
		return NP_TRY_NONE;
	bn_fold f = {.bn = n, .p = p};
	const char *why = check_bn(&f);
	if (!why && !np_value_single_use(n->inputs[0], n))
		why = "the producer's output has another reader or is a graph output";
	if (!why)
		why = check_producer(&f, s);
	if (!why && !cheaper(&f, s))
		why = "the folded node would be more expensive";
	if (why) {
		np_pass_log_add(refused, m, NP_LOG_REFUSED, PASS, n->name, p->name,
		                "%s", why);
		return NP_TRY_NONE;
	}
	return fold(m, ctx, &f, err) == NP_OK ? NP_TRY_DONE : NP_TRY_ERROR;
}

static np_status run(np_model *m, np_pass_ctx *ctx, np_error *err)
{
	return np_fold_run(m, ctx, try_bn, err);
}

const np_pass np_pass_fold_bn = {
	"fold_bn",
	"fold BatchNormalization into the Conv, Gemm or MatMul before it",
	run
};
