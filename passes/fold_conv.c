/* fold_conv.c - Conv A -> Conv B into one Conv.
 *
 * Z = A(X) read by B at z = s_b y + d_b j, with z read from X at
 * s_a z + d_a t, makes Y a conv of X with taps u = s_a d_b j + d_a t:
 * kernel extent d_a(k_a-1) + s_a d_b(k_b-1) + 1 per axis (dense, dilation
 * 1: holes are zeros), stride s_a s_b, A's padding, weights
 * W[o,i,u] = sum over c and the (j,t) hitting u of W_b[o,c,j] W_a[c,i,t],
 * bias b[o] = b_b[o] + sum_{c,j} W_b[o,c,j] b_a[c].  Exact when B has no
 * padding.  Groups: equal groups stay grouped; otherwise (A depthwise,
 * B pointwise ...) the result is a dense conv, and the cost model decides.
 *
 * B padded: its zero padding of Z is lost (the merged conv pads X by
 * s_a p_b more instead, where Z would have been b_a + A's response to
 * zeros), so only the interior is exact.  Refused under NP_FOLD_EXACT;
 * under NP_FOLD_APPROX merged, and the caller checks accuracy.  Done only
 * when the merged conv costs no more FLOPs (at B's output size) and no
 * more parameter bytes than the pair; A's output must have B as its only
 * reader.  The merged node keeps B's name and output value. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fold.h"
#include "ops.h"
#include "pass.h"

#define PASS "fold_conv"
#define PADDED_WHY "B is padded: merging loses the intermediate zero padding"

typedef struct conv {
	np_node *n;
	np_conv_geom g;
	const np_tensor *w;          /* [M, C/group, k...] */
	const float *wd, *bias;      /* bias may be NULL */
	int64_t m, cin;              /* output and input channels */
} conv;

typedef struct pair {
	conv a, b;
	bool padded;                 /* B pads: border-inexact */
	int nsp;
	int64_t group;               /* of the result */
	int64_t kernel[NP_MAX_RANK], stride[NP_MAX_RANK];
	int64_t pads[2 * NP_MAX_RANK];
	int64_t taps;                /* product of kernel */
} pair;

/* NULL if n is a Conv with float initializer weights, else why not. */
static const char *conv_read(np_node *n, conv *c)
{
	memset(c, 0, sizeof *c);
	c->n = n;
	const np_value *b = n->n_inputs > 2 ? n->inputs[2] : NULL;
	c->w = np_fold_tensor(n->n_inputs > 1 ? n->inputs[1] : NULL);
	if (!c->w || c->w->rank < 3)
		return "a weight is not a float initializer";
	c->wd = c->w->data;
	const char *why = np_conv_geom_get(n, &c->g);
	if (why)
		return why;
	if (c->g.same)
		return "auto_pad SAME is not folded";
	if (c->g.nsp != c->w->rank - 2)
		return "kernel_shape does not match the weight";
	for (int i = 0; i < c->g.nsp; i++)
		if (c->g.kernel[i] != c->w->dims[2 + i])
			return "kernel_shape does not match the weight";
	c->m = c->w->dims[0];
	c->cin = c->w->dims[1] * c->g.group;
	if (c->m % c->g.group)
		return "output channels not divisible by group";
	if (b) {
		const np_tensor *bt = np_fold_tensor(b);
		c->bias = bt ? bt->data : NULL;
		if (!bt || bt->nelem != c->m)
			return "a bias is not a float initializer of M values";
	}
	return NULL;
}

/* The merged conv's geometry; NULL if it folds exactly (or approximately
 * when allowed), else why not. */
static const char *compose(pair *p, np_fold_policy policy)
{
	const conv *a = &p->a, *b = &p->b;
	if (a->g.nsp != b->g.nsp)
		return "spatial ranks differ";
	if (b->cin != a->m)
		return "channels do not match";
	p->nsp = a->g.nsp;
	p->padded = false;
	for (int i = 0; i < 2 * p->nsp; i++)
		p->padded |= b->g.pads[i] != 0;
	if (p->padded && policy != NP_FOLD_APPROX)
		return PADDED_WHY;
	p->group = a->g.group == b->g.group ? a->g.group : 1;
	p->taps = 1;
	for (int i = 0; i < p->nsp; i++) {
		int64_t sa = a->g.stride[i];
		p->kernel[i] = a->g.dil[i] * (a->g.kernel[i] - 1) +
		               sa * b->g.dil[i] * (b->g.kernel[i] - 1) + 1;
		p->stride[i] = sa * b->g.stride[i];
		p->pads[i] = a->g.pads[i] + sa * b->g.pads[i];
		p->pads[p->nsp + i] = a->g.pads[p->nsp + i] + sa * b->g.pads[p->nsp + i];
		p->taps *= p->kernel[i];
	}
	return NULL;
}

/* Cost of the merged conv vs the pair, at B's output size. */
static const char *cheaper(const pair *p, const np_shapes *s, char *buf, size_t len)
{
	const np_shape *y = np_shape_get(s, p->b.n->outputs[0]);
	int64_t pix = -1;
	if (y && y->rank == p->nsp + 2) {
		pix = 1;
		for (int i = 2; i < y->rank; i++)
			pix = y->dims[i] < 0 || pix < 0 ? -1 : pix * y->dims[i];
	}
	np_cost pr = np_cost_sum(np_node_cost(p->a.n, s), np_node_cost(p->b.n, s));
	np_cost mg = np_cost_conv(p->b.m, p->a.cin / p->group, p->taps, pix,
	                          p->a.bias || p->b.bias);
	if (pr.flops < 0 || mg.flops < 0)
		return "shapes unknown: cannot compare costs";
	if (np_cost_le(mg, pr))
		return NULL;
	snprintf(buf, len, "merged conv (%lld taps) would cost %lld FLOPs and %lld "
	         "parameter bytes vs %lld and %lld for the pair", (long long)p->taps,
	         (long long)mg.flops, (long long)mg.param_bytes,
	         (long long)pr.flops, (long long)pr.param_bytes);
	return buf;
}

/* ---------------------------------------------------------------- fold */

/* Flat offset, in the merged kernel, of each tap of a kernel with dims
 * k[] placed at step[] per axis. */
static void tap_offsets(const pair *p, const int64_t *k, const int64_t *step,
                        int64_t *off, int64_t n)
{
	for (int64_t f = 0; f < n; f++) {
		int64_t rest = f, o = 0, inner = 1;
		for (int d = p->nsp - 1; d >= 0; d--) {
			o += (rest % k[d]) * step[d] * inner;
			rest /= k[d];
			inner *= p->kernel[d];
		}
		off[f] = o;
	}
}

/* W and bias of the merged conv (bias may be NULL). */
static bool merge(const pair *p, float *w, float *bias)
{
	const conv *a = &p->a, *b = &p->b;
	int64_t ka = 1, kb = 1, step_a[NP_MAX_RANK], step_b[NP_MAX_RANK];
	for (int d = 0; d < p->nsp; d++) {
		ka *= a->g.kernel[d];
		kb *= b->g.kernel[d];
		step_a[d] = a->g.dil[d];
		step_b[d] = a->g.stride[d] * b->g.dil[d];
	}
	int64_t *off_a = malloc(sizeof(int64_t) * (size_t)ka);
	int64_t *off_b = malloc(sizeof(int64_t) * (size_t)kb);
	double *acc = calloc((size_t)p->taps, sizeof(double));
	if (!off_a || !off_b || !acc) {
		free(off_a);
		free(off_b);
		free(acc);
		return false;
	}
	tap_offsets(p, a->g.kernel, step_a, off_a, ka);
	tap_offsets(p, b->g.kernel, step_b, off_b, kb);
	int64_t cb = b->w->dims[1], ca = a->w->dims[1];       /* per group */
	int64_t ma_g = a->m / a->g.group, mb_g = b->m / b->g.group;
	int64_t cin_r = a->cin / p->group, mr_g = b->m / p->group;
	for (int64_t o = 0; o < b->m; o++) {
		int64_t i0 = p->group > 1 ? (o / mr_g) * cin_r : 0;
		double bsum = b->bias ? b->bias[o] : 0.0;
		for (int64_t i = 0; i < cin_r; i++) {
			memset(acc, 0, sizeof(double) * (size_t)p->taps);
			for (int64_t cl = 0; cl < cb; cl++) {
				int64_t c = (o / mb_g) * cb + cl;       /* A's output channel */
				int64_t il = i0 + i - (c / ma_g) * ca;  /* its input, in A's group */
				if (il < 0 || il >= ca)
					continue;
				const float *wb = b->wd + (o * cb + cl) * kb;
				const float *wa = a->wd + (c * ca + il) * ka;
				for (int64_t j = 0; j < kb; j++)
					for (int64_t t = 0; t < ka; t++)
						acc[off_b[j] + off_a[t]] += (double)wb[j] * wa[t];
			}
			for (int64_t u = 0; u < p->taps; u++)
				w[(o * cin_r + i) * p->taps + u] = (float)acc[u];
		}
		for (int64_t cl = 0; a->bias && cl < cb; cl++)
			for (int64_t j = 0; j < kb; j++)
				bsum += (double)b->wd[(o * cb + cl) * kb + j] *
				        a->bias[(o / mb_g) * cb + cl];
		if (bias)
			bias[o] = (float)bsum;
	}
	free(off_a);
	free(off_b);
	free(acc);
	return true;
}

static np_status fold(np_model *m, np_pass_ctx *ctx, pair *p, np_error *err)
{
	int64_t dims[NP_MAX_RANK] = {p->b.m, p->a.cin / p->group};
	memcpy(dims + 2, p->kernel, sizeof(int64_t) * (size_t)p->nsp);
	const char *wname = np_arena_printf(m->arena, "%s_folded", p->b.n->inputs[1]->name);
	np_value *w = np_fold_new_init(m, wname, p->nsp + 2, dims, err);
	np_value *b = NULL;
	bool bias = p->a.bias || p->b.bias;
	if (w && bias)
		b = np_fold_new_init(m, np_arena_printf(m->arena, "%s_bias", wname),
		                     1, &p->b.m, err);
	if (!w || (bias && !b))
		return err->status;
	if (!merge(p, w->init->data, b ? b->init->data : NULL))
		return np_fail(err, NP_ERR_NOMEM, "out of memory merging %s into %s "
		               "(node %s, op %s)", p->a.n->name, p->b.n->name,
		               p->b.n->name, p->b.n->op_type);
	np_value *in[3] = {p->a.n->inputs[0], w, b};
	np_value *y = p->b.n->outputs[0];
	np_graph_remove_node(m->graph, p->b.n);
	np_graph_remove_node(m->graph, p->a.n);
	np_node *kept = np_fold_rebuild(m, p->b.n, np_op_name(NP_OPK_Conv), in,
	                                b ? 3 : 2, y, false);
	int64_t ones[NP_MAX_RANK];
	for (int i = 0; i < p->nsp; i++)
		ones[i] = 1;
	np_node_set_attr_ints(kept, "kernel_shape", p->kernel, p->nsp);
	np_node_set_attr_ints(kept, "strides", p->stride, p->nsp);
	np_node_set_attr_ints(kept, "pads", p->pads, 2 * p->nsp);
	np_node_set_attr_ints(kept, "dilations", ones, p->nsp);
	np_node_set_attr_int(kept, "group", p->group);
	if (p->padded)
		np_node_doc_append(m, kept, "approximate at the borders: the folded "
		                   "conv's input padding replaces the intermediate zero padding");
	np_fold_note(m, ctx, PASS, kept, p->a.n,
	             p->padded ? "approximate: " PADDED_WHY " (border outputs differ)" : NULL);
	return NP_OK;
}

static int try_conv(np_model *m, np_pass_ctx *ctx, np_node *n,
                    const np_shapes *s, np_pass_log *refused, np_error *err)
{
	if (np_node_kind(n) != NP_OPK_Conv || n->n_inputs < 2 || !n->inputs[0])
		return NP_TRY_NONE;
	np_node *an = n->inputs[0]->producer;
	if (!an || np_node_kind(an) != NP_OPK_Conv)
		return NP_TRY_NONE;
	pair p;
	char buf[256];
	const char *why = NULL;
	if (an->n_outputs != 1 || !np_value_single_use(an->outputs[0], n))
		why = "A's output has another reader or is a graph output";
	if (!why)
		why = conv_read(an, &p.a);
	if (!why)
		why = conv_read(n, &p.b);
	if (!why)
		why = compose(&p, ctx->fold);
	if (!why)
		why = cheaper(&p, s, buf, sizeof buf);
	if (why) {
		np_pass_log_add(refused, m, NP_LOG_REFUSED, PASS, an->name, n->name,
		                "%s", why);
		return NP_TRY_NONE;
	}
	return fold(m, ctx, &p, err) == NP_OK ? NP_TRY_DONE : NP_TRY_ERROR;
}

static np_status run(np_model *m, np_pass_ctx *ctx, np_error *err)
{
	return np_fold_run(m, ctx, try_conv, err);
}

const np_pass np_pass_fold_conv = {
	"fold_conv",
	"merge Conv -> Conv pairs (exact when the second has no padding)",
	run
};
