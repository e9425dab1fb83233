/* fold_const.c - replace a branch that computes a per-channel constant by
 * that constant.
 *
 * A value is a per-channel constant (PCC) c[ch] when it is the same along
 * every axis but the channel axis 1 (exactly, borders included):
 *   - Conv with an all-zero weight: its bias (or 0), whatever it reads;
 *   - Conv reading an all-zero PCC: its bias (its zero padding equals its
 *     zero input, so the borders agree);
 *   - Conv reading a nonzero PCC with no padding: b + sum over the kernel
 *     of W * c (with padding the borders would differ: refused);
 *   - Gemm with an all-zero B, or reading an all-zero PCC: beta * C;
 *   - BatchNormalization (inference form), Relu, LeakyRelu, Clip, Identity
 *     of a PCC, and Add/Sub/Mul/Div of a PCC with a per-channel float
 *     initializer that does not widen it.
 * Zero weights come from NEPENTHE: an all-OFF Relu linearizes to s=0, t=0,
 * which folds into its producer (DESIGN.md section 6).  The weights must be
 * initializers; a NaN or Inf reaching a zero-weight Conv would have made
 * NaN, which the constant does not reproduce (never seen in practice).
 *
 * Rewrite: a PCC v read by an element-wise Add/Sub/Mul whose other operand
 * has v's full static shape (so the output shape cannot change) reads a new
 * initializer "<v>_const" of shape [1, C, 1, ...] instead; every reader of
 * v must qualify and v must not be a graph output, so v's branch dies, and
 * the branch must cost more than the C new parameters.  An Add (or x - v)
 * of an all-zero PCC becomes Identity of the other operand when the shapes
 * are equal (eliminate removes it).  The dead branch is removed at once,
 * each node noted as folded into the reader, so the passes after this one
 * in a round do not consider it (dce drops its initializers).  Shapes come
 * from cost.c's static propagation; unknown shapes: nothing is done. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fold.h"
#include "ops.h"
#include "pass.h"

#define PASS "fold_const"
#define MAX_DEPTH 64                 /* producers followed up a branch */

typedef struct pcc {
	double *c;                   /* malloc'd, n values */
	int64_t n;                   /* channels */
	bool zero;                   /* every c[ch] == 0 */
	const np_node *root;         /* where the constant starts */
	const char *root_what;       /* "zero-weight Conv" ... */
	const np_node *last;         /* the value's producer */
	bool bias_of;                /* last reads zeros: the value is its bias */
} pcc;

enum { PCC_NOMEM = -1, PCC_NO = 0, PCC_YES = 1 };

static int pcc_of(const np_value *v, const np_shapes *s, pcc *p, int depth);

static void pcc_free(pcc *p)
{
	free(p->c);
	p->c = NULL;
}

static bool all_zero(const np_tensor *t)
{
	const float *d = t->data;
	for (int64_t i = 0; i < t->nelem; i++)
		if (d[i] != 0.0f)
			return false;
	return true;
}

/* p->c = n zeros (keeps root and the other fields). */
static int pcc_alloc(pcc *p, int64_t n)
{
	free(p->c);
	p->n = n;
	p->c = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
	return p->c ? PCC_YES : PCC_NOMEM;
}

static void pcc_root(pcc *p, const np_node *n, const char *what)
{
	p->root = n;
	p->root_what = what;
}

/* Finish: the value's producer and the zero flag. */
static int pcc_done(pcc *p, const np_node *n, bool bias_of)
{
	p->last = n;
	p->bias_of = bias_of;
	p->zero = true;
	for (int64_t i = 0; i < p->n; i++)
		p->zero &= p->c[i] == 0.0;
	return PCC_YES;
}

/* The optional per-output bias of a Conv: true if absent or M floats. */
static bool conv_bias(const np_node *n, int64_t m, const float **b)
{
	*b = NULL;
	if (n->n_inputs < 3 || !n->inputs[2])
		return true;
	const np_tensor *t = np_fold_tensor(n->inputs[2]);
	if (!t || t->nelem != m)
		return false;
	*b = t->data;
	return true;
}

/* c[o] = b[o] + sum over W[o, i, taps] * x[i-th input channel of o]. */
static void conv_of_const(const np_tensor *w, int64_t group, const double *x,
                          const float *b, double *c)
{
	int64_t m = w->dims[0], cin_g = w->dims[1], taps = w->nelem / (m * cin_g);
	const float *wd = w->data;
	for (int64_t o = 0; o < m; o++) {
		int64_t i0 = (o / (m / group)) * cin_g;
		double acc = b ? b[o] : 0.0;
		for (int64_t i = 0; i < cin_g; i++)
			for (int64_t t = 0; t < taps; t++)
				acc += (double)wd[(o * cin_g + i) * taps + t] * x[i0 + i];
		c[o] = acc;
	}
}

static int pcc_conv(const np_node *n, const np_shapes *s, pcc *p, int depth)
{
	const np_tensor *w = np_fold_tensor(n->n_inputs > 1 ? n->inputs[1] : NULL);
	const float *b;
	if (!w || w->rank < 3 || w->dims[0] < 1 || w->dims[1] < 1 ||
	    !conv_bias(n, w->dims[0], &b))
		return PCC_NO;
	int64_t m = w->dims[0];
	np_conv_geom g;
	if (np_conv_geom_get(n, &g) || m % g.group)
		return PCC_NO;
	/* Zero input first: it names the branch's origin (NEPENTHE also
	 * prunes the weights that read a dead layer to zero). */
	bool zero_w = all_zero(w);
	pcc x = {0};
	int r = pcc_of(n->inputs[0], s, &x, depth + 1);
	if (r == PCC_NOMEM)
		return r;
	bool zero_in = r == PCC_YES && x.zero;
	bool padded = g.same;
	for (int i = 0; i < 2 * g.nsp; i++)
		padded |= g.pads[i] != 0;
	if (!zero_w && !zero_in &&
	    (r != PCC_YES || padded || x.n != w->dims[1] * g.group)) {
		pcc_free(&x);                /* padded: the borders would differ */
		return PCC_NO;
	}
	if (zero_w && !zero_in)
		pcc_root(p, n, "zero-weight Conv");
	else
		pcc_root(p, x.root, x.root_what);
	if (pcc_alloc(p, m) != PCC_YES) {
		pcc_free(&x);
		return PCC_NOMEM;
	}
	if (zero_w || zero_in) {
		for (int64_t o = 0; b && o < m; o++)
			p->c[o] = b[o];
	} else {
		conv_of_const(w, g.group, x.c, b, p->c);
	}
	pcc_free(&x);
	return pcc_done(p, n, zero_w || zero_in);
}

/* Gemm: Y = alpha A B + beta C is beta C when A B is zero. */
static int pcc_gemm(const np_node *n, const np_shapes *s, pcc *p, int depth)
{
	const np_tensor *w = np_fold_tensor(n->n_inputs > 1 ? n->inputs[1] : NULL);
	if (!w || w->rank != 2)
		return PCC_NO;
	int64_t cols = np_node_attr_int(n, "transB", 0) ? w->dims[0] : w->dims[1];
	const np_tensor *c = NULL;
	if (n->n_inputs > 2 && n->inputs[2]) {
		c = np_fold_tensor(n->inputs[2]);
		if (!c || !(c->nelem == 1 || (c->nelem == cols &&
		                              (c->rank == 1 || (c->rank == 2 && c->dims[0] == 1)))))
			return PCC_NO;           /* C varies along the rows */
	}
	if (all_zero(w)) {
		pcc_root(p, n, "Gemm with zero B");
	} else {
		pcc x = {0};
		int r = pcc_of(n->inputs[0], s, &x, depth + 1);
		bool zero = r == PCC_YES && x.zero;
		if (r == PCC_YES)
			pcc_root(p, x.root, x.root_what);
		pcc_free(&x);
		if (!zero)
			return r == PCC_NOMEM ? r : PCC_NO;
	}
	if (pcc_alloc(p, cols) != PCC_YES)
		return PCC_NOMEM;
	double beta = np_node_attr_float(n, "beta", 1.0f);
	const float *cd = c ? c->data : NULL;
	for (int64_t j = 0; cd && j < cols; j++)
		p->c[j] = beta * cd[c->nelem == 1 ? 0 : j];
	return pcc_done(p, n, true);
}

static int pcc_bn(const np_node *n, const np_shapes *s, pcc *p, int depth)
{
	if (n->n_inputs != 5 || np_node_attr_int(n, "training_mode", 0) != 0 ||
	    np_node_attr_int(n, "spatial", 1) == 0)
		return PCC_NO;
	for (int k = 1; k < n->n_outputs; k++)
		if (n->outputs[k] && (n->outputs[k]->n_uses || n->outputs[k]->is_output))
			return PCC_NO;
	const float *q[4];
	for (int i = 0; i < 4; i++) {
		const np_tensor *t = np_fold_tensor(n->inputs[i + 1]);
		if (!t || (i && t->nelem != np_fold_tensor(n->inputs[1])->nelem))
			return PCC_NO;
		q[i] = t->data;
	}
	int r = pcc_of(n->inputs[0], s, p, depth + 1);
	if (r != PCC_YES)
		return r;
	if (p->n != np_fold_tensor(n->inputs[1])->nelem)
		return PCC_NO;
	double eps = np_node_attr_float(n, "epsilon", 1e-5f);
	for (int64_t ch = 0; ch < p->n; ch++)
		p->c[ch] = (p->c[ch] - q[2][ch]) * q[0][ch] / sqrt((double)q[3][ch] + eps) +
		           q[1][ch];
	return pcc_done(p, n, false);
}

/* A scalar bound of Clip (input k, opset >= 11, or attribute). */
static bool clip_bound(const np_node *n, int k, const char *attr, double dflt,
                       double *out)
{
	*out = np_node_attr_float(n, attr, (float)dflt);
	if (n->n_inputs <= k || !n->inputs[k])
		return true;
	const np_tensor *t = np_fold_tensor(n->inputs[k]);
	if (!t || t->nelem != 1)
		return false;
	*out = ((const float *)t->data)[0];
	return true;
}

/* Relu, LeakyRelu, Clip, Identity: applied to each channel's value. */
static int pcc_unary(const np_node *n, const np_shapes *s, pcc *p, int depth)
{
	double lo = -INFINITY, hi = INFINITY;
	np_op_kind kind = np_node_kind(n);
	bool clip = kind == NP_OPK_Clip;
	if (clip && (!clip_bound(n, 1, "min", -INFINITY, &lo) ||
	             !clip_bound(n, 2, "max", INFINITY, &hi)))
		return PCC_NO;
	int r = pcc_of(n->inputs[0], s, p, depth + 1);
	if (r != PCC_YES)
		return r;
	double alpha = np_node_attr_float(n, "alpha", 0.01f);
	for (int64_t ch = 0; ch < p->n; ch++) {
		double x = p->c[ch];
		if (kind == NP_OPK_Relu)
			x = x > 0 ? x : 0;
		else if (kind == NP_OPK_LeakyRelu)
			x = x < 0 ? alpha * x : x;
		else if (clip)
			x = fmin(fmax(x, lo), hi);
		p->c[ch] = x;
	}
	return pcc_done(p, n, p->bias_of && kind == NP_OPK_Identity);
}

/* t broadcasts against a value of rank r with c channels as a per-channel
 * constant that does not widen it: dims 1 except maybe axis 1 (c). */
static bool per_channel(const np_tensor *t, int r, int64_t c)
{
	if (t->rank > r)
		return false;
	for (int i = 0; i < t->rank; i++) {
		int axis = r - t->rank + i;
		if (t->dims[i] != 1 && !(axis == 1 && t->dims[i] == c))
			return false;
	}
	return true;
}

/* Add/Sub/Mul/Div of a PCC and a per-channel initializer. */
static int pcc_arith(const np_node *n, const np_shapes *s, pcc *p, int depth)
{
	if (n->n_inputs != 2 || !n->inputs[0] || !n->inputs[1])
		return PCC_NO;
	int k = np_fold_tensor(n->inputs[1]) ? 0 : 1;     /* the PCC operand */
	const np_tensor *t = np_fold_tensor(n->inputs[1 - k]);
	const np_shape *xs = np_shape_get(s, n->inputs[k]);
	if (!t || !xs)
		return PCC_NO;
	int r = pcc_of(n->inputs[k], s, p, depth + 1);
	if (r != PCC_YES)
		return r;
	if (!per_channel(t, xs->rank, p->n))
		return PCC_NO;
	const float *td = t->data;
	np_op_kind kind = np_node_kind(n);
	for (int64_t ch = 0; ch < p->n; ch++) {
		double a = p->c[ch], b = td[t->nelem == 1 ? 0 : ch];
		if (k == 1) {
			double tmp = a;
			a = b;
			b = tmp;
		}
		p->c[ch] = kind == NP_OPK_Add ? a + b : kind == NP_OPK_Sub ? a - b :
		           kind == NP_OPK_Mul ? a * b : a / b;
	}
	return pcc_done(p, n, false);
}

/* PCC_YES with *p filled (p->c malloc'd) when v is a per-channel
 * constant; PCC_NO; PCC_NOMEM. */
static int pcc_of(const np_value *v, const np_shapes *s, pcc *p, int depth)
{
	memset(p, 0, sizeof *p);
	const np_node *n = v ? v->producer : NULL;
	if (!n || depth > MAX_DEPTH || v->producer_index != 0 || n->n_inputs < 1 ||
	    !n->inputs[0])
		return PCC_NO;
	int r = PCC_NO;
	switch (np_node_kind(n)) {
	case NP_OPK_Conv:
		r = pcc_conv(n, s, p, depth);
		break;
	case NP_OPK_Gemm:
		r = pcc_gemm(n, s, p, depth);
		break;
	case NP_OPK_BatchNormalization:
		r = pcc_bn(n, s, p, depth);
		break;
	case NP_OPK_Relu: case NP_OPK_LeakyRelu: case NP_OPK_Clip: case NP_OPK_Identity:
		r = pcc_unary(n, s, p, depth);
		break;
	case NP_OPK_Add: case NP_OPK_Sub: case NP_OPK_Mul: case NP_OPK_Div:
		r = pcc_arith(n, s, p, depth);
		break;
	default:
		break;
	}
	if (r != PCC_YES)
		pcc_free(p);
	return r;
}

/* ----------------------------------------------------------- rewrite */

/* Why v's branch is a constant, for the log and the doc_strings. */
static const char *pcc_why(np_model *m, const pcc *p)
{
	const char *root = p->root ? p->root->name : "?";
	if (p->root == p->last)
		return np_arena_printf(m->arena, "%s %s outputs a per-channel constant "
		                       "(its bias)", p->root_what, root);
	if (p->bias_of)
		return np_arena_printf(m->arena, "branch of %s %s is the constant bias "
		                       "of %s", p->root_what, root, p->last->name);
	return np_arena_printf(m->arena, "branch of %s %s is a per-channel constant "
	                       "after %s (%s)", p->root_what, root, p->last->name,
	                       p->last->op_type);
}

static bool same_shape(const np_shape *a, const np_shape *b)
{
	if (!a || !b || a->rank != b->rank)
		return false;
	for (int i = 0; i < a->rank; i++)
		if (a->dims[i] < 0 || a->dims[i] != b->dims[i])
			return false;
	return true;
}

/* The element-wise readers this pass rewrites: Add, Sub, Mul (top
 * comment). */
static bool add_sub_mul(const np_node *n)
{
	np_op_kind k = np_node_kind(n);
	return k == NP_OPK_Add || k == NP_OPK_Sub || k == NP_OPK_Mul;
}

/* The reader u (an element-wise node reading v at index k) keeps its
 * output shape with v replaced by a [1, C, 1...] constant. */
static bool reader_ok(const np_use *u, const np_value *v, const np_shapes *s)
{
	const np_node *n = u->node;
	if (u->index < 0 || u->index > 1 || n->n_inputs != 2 || n->n_outputs != 1 ||
	    !add_sub_mul(n))
		return false;
	const np_value *other = n->inputs[1 - u->index];
	const np_shape *vs = np_shape_get(s, v);
	return other && other != v && same_shape(np_shape_get(s, other), vs) &&
	       same_shape(np_shape_get(s, n->outputs[0]), vs);
}

/* Cost of the nodes that die once v has no reader: v's producer, then
 * producers whose outputs all lose their last reader.  left[] counts the
 * readers still live, by value id (0 = not yet touched: n_uses). */
static np_cost dead_cost(const np_node *n, const np_shapes *s, int *left)
{
	np_cost c = np_node_cost(n, s);
	for (int i = 0; i < n->n_inputs; i++) {
		const np_value *u = n->inputs[i];
		if (!u || !u->producer || u->id < 0 || u->id >= s->n)
			continue;
		if (!left[u->id])
			left[u->id] = u->n_uses + 1;
		if (--left[u->id] > 1 || u->is_output)
			continue;
		const np_node *q = u->producer;
		bool dies = true;
		for (int k = 0; k < q->n_outputs && dies; k++) {
			const np_value *o = q->outputs[k];
			dies = !o || (!o->is_output && (o->id < s->n && left[o->id] ?
			                                 left[o->id] == 1 : o->n_uses == 0));
		}
		if (dies)
			c = np_cost_sum(c, dead_cost(q, s, left));
	}
	return c;
}

/* NULL if replacing every reader of v by C constants is not more
 * expensive than v's branch, else why not. */
static const char *pays(const np_value *v, int64_t c, const np_shapes *s,
                        char *buf, size_t len)
{
	const np_node *n = v->producer;
	for (int k = 0; k < n->n_outputs; k++)
		if (n->outputs[k] && n->outputs[k] != v &&
		    (n->outputs[k]->n_uses || n->outputs[k]->is_output))
			return "its producer has other outputs in use";
	int *left = calloc((size_t)s->n + 1, sizeof(int));
	if (!left)
		return "out of memory for the cost model";
	np_cost dead = dead_cost(n, s, left);
	free(left);
	np_cost added = {0, 4 * c};
	if (dead.flops < 0)
		return "shapes unknown: cannot compare costs";
	if (np_cost_le(added, dead))
		return NULL;
	snprintf(buf, len, "the constant (%lld parameter bytes) would cost more than "
	         "the branch it replaces (%lld FLOPs, %lld bytes)", (long long)added.param_bytes,
	         (long long)dead.flops, (long long)dead.param_bytes);
	return buf;
}

/* Remove p if none of its outputs is read any more, then its producers
 * likewise: the dead branch goes now, not at the next dce, so that later
 * passes of the same round do not consider it.  Noted in kept. */
static void drop_branch(np_model *m, np_pass_ctx *ctx, np_node *p, np_node *kept,
                        const char *why)
{
	if (!p || p->removed || p->n_implicit)
		return;
	for (int k = 0; k < p->n_outputs; k++)
		if (p->outputs[k] && (p->outputs[k]->n_uses || p->outputs[k]->is_output))
			return;
	np_graph_remove_node(m->graph, p);
	np_fold_note(m, ctx, PASS, kept, p, why);
	for (int i = 0; i < p->n_inputs; i++)       /* inputs stay after removal */
		if (p->inputs[i])
			drop_branch(m, ctx, p->inputs[i]->producer, kept, why);
}

/* Every reader of v reads the constant instead. */
static np_status replace_readers(np_model *m, np_pass_ctx *ctx, np_value *v,
                                 const pcc *p, const np_shapes *s, np_error *err)
{
	int rank = np_shape_get(s, v)->rank;
	int64_t dims[NP_MAX_RANK];
	for (int i = 0; i < rank; i++)
		dims[i] = i == 1 ? p->n : 1;
	np_value *c = np_new_float_init(m, np_arena_printf(m->arena, "%s_const", v->name),
	                                rank, dims, err);
	if (!c)
		return err->status;
	float *cd = c->init->data;
	for (int64_t ch = 0; ch < p->n; ch++)
		cd[ch] = (float)p->c[ch];
	const char *why = pcc_why(m, p);
	const char *note = np_arena_printf(m->arena, "constant: %s replaced by %s: %s",
	                                   v->name, c->name, why);
	np_node *first = v->uses[0].node;
	while (v->n_uses > 0) {
		np_use u = v->uses[0];
		np_node_set_input(u.node, u.index, c);
		np_node_doc_append(m, u.node, note);
		np_pass_log_add(ctx->log, m, NP_LOG_FOLDED, PASS, p->last->name,
		                u.node->name, "%s replaced by the per-channel constant "
		                "%s: %s", v->name, c->name, why);
	}
	ctx->changes++;
	drop_branch(m, ctx, v->producer, first, np_arena_printf(m->arena,
	            "on the constant branch replaced by %s", c->name));
	return NP_OK;
}

/* Add(x, 0) or Sub(x, 0) with the 0 a zero PCC: Identity of x. */
static bool zero_operand(const np_node *n, int k, const pcc *p, const np_shapes *s)
{
	if (!p->zero || n->n_outputs != 1 ||
	    !(np_node_kind(n) == NP_OPK_Add || (np_node_kind(n) == NP_OPK_Sub && k == 1)))
		return false;
	const np_value *x = n->inputs[1 - k];
	const np_shape *xs = np_shape_get(s, x);
	return x != n->inputs[k] && same_shape(xs, np_shape_get(s, n->outputs[0])) &&
	       same_shape(xs, np_shape_get(s, n->inputs[k]));
}

static void to_identity(np_model *m, np_pass_ctx *ctx, np_node *n, int k,
                        const pcc *p)
{
	np_value *x = n->inputs[1 - k], *zero = n->inputs[k], *y = n->outputs[0];
	const char *why = pcc_why(m, p);
	np_node *id = np_fold_rebuild(m, n, np_op_name(NP_OPK_Identity), &x, 1, y, false);
	np_node_doc_append(m, id, np_arena_printf(m->arena, "constant: %s (%s) "
	                   "reads %s, all zeros: %s", n->name, n->op_type, zero->name, why));
	np_pass_log_add(ctx->log, m, NP_LOG_FOLDED, PASS, p->last->name, n->name,
	                "%s is all zeros (%s): %s %s is the identity", zero->name, why,
	                n->op_type, n->name);
	ctx->changes++;
	drop_branch(m, ctx, zero->producer, id, np_arena_printf(m->arena,
	            "on the all-zero branch read by %s", n->name));
}

/* Why operand v of n cannot be replaced, NULL if it can. */
static const char *refusal(const np_value *v, const pcc *p, const np_shapes *s,
                           char *buf, size_t len)
{
	const np_shape *vs = np_shape_get(s, v);
	if (!vs || vs->rank < 2 || vs->dims[1] != p->n)
		return "its shape is unknown or its channel axis does not match";
	for (int i = 0; i < vs->rank; i++)
		if (vs->dims[i] < 0)
			return "its shape is not fully known";
	if (v->is_output)
		return "it is a graph output (its branch stays)";
	for (int i = 0; i < v->n_uses; i++)
		if (!reader_ok(&v->uses[i], v, s))
			return add_sub_mul(v->uses[i].node) ?
			       "a reader's other operand does not have its full shape" :
			       "a reader is not an element-wise Add/Sub/Mul";
	return pays(v, p->n, s, buf, len);
}

static int try_const(np_model *m, np_pass_ctx *ctx, np_node *n,
                     const np_shapes *s, np_pass_log *refused, np_error *err)
{
	if (!add_sub_mul(n) || n->n_inputs != 2 || !n->inputs[0] || !n->inputs[1])
		return NP_TRY_NONE;
	for (int k = 0; k < 2; k++) {
		np_value *v = n->inputs[k];
		pcc p;
		int r = pcc_of(v, s, &p, 0);
		if (r == PCC_NOMEM) {
			np_fail(err, NP_ERR_NOMEM, "out of memory evaluating the constant '%s' "
			        "(node %s, op %s)", v->name, n->name, n->op_type);
			return NP_TRY_ERROR;
		}
		if (r != PCC_YES)
			continue;
		if (zero_operand(n, k, &p, s)) {
			to_identity(m, ctx, n, k, &p);
			pcc_free(&p);
			return NP_TRY_DONE;
		}
		char buf[256];
		const char *why = refusal(v, &p, s, buf, sizeof buf);
		if (why) {
			if (v->uses[0].node == n)    /* once per value */
				np_pass_log_add(refused, m, NP_LOG_REFUSED, PASS, p.last->name,
				                n->name, "%s is a per-channel constant, not "
				                "replaced: %s", v->name, why);
			pcc_free(&p);
			continue;
		}
		np_status st = replace_readers(m, ctx, v, &p, s, err);
		pcc_free(&p);
		return st == NP_OK ? NP_TRY_DONE : NP_TRY_ERROR;
	}
	return NP_TRY_NONE;
}

static np_status run(np_model *m, np_pass_ctx *ctx, np_error *err)
{
	return np_fold_run(m, ctx, try_const, err);
}

const np_pass np_pass_fold_const = {
	"fold_const",
	"replace a branch that is a per-channel constant (zero-weight Conv ...) "
	"read by Add/Sub/Mul by that constant",
	run
};
