/* fold_gemm.c - Gemm/MatMul -> Gemm/MatMul chains with nothing nonlinear
 * between them, into one node.
 *
 * Each node is first put in plain form y = op(x) P + c (P = alpha op(B),
 * c = beta C, a row), then (x P1 + c1) P2 + c2 = x (P1 P2) + (c1 P2 + c2):
 * exact.  A Flatten or Reshape between the two that keeps [N, K] as
 * [N, K] is transparent and goes too; a Flatten of the graph input before
 * the first layer is not between them and stays.  The merged node keeps
 * the second node's name and output value (folding into the classifier is
 * allowed), is a MatMul when both were MatMuls, else a Gemm.
 *
 * Encoders (PyTorch's nn.Linear on [B, T, C]) write a linear as MatMul
 * then an Add of a bias broadcast along the last axis: the first node
 * may be such a pair (its bias is its c; nothing may sit between it and
 * the second node), and a MatMul second node's bias Add after it, if
 * any, takes the merged bias c1 P2 (else a new Add after the merged
 * MatMul does): MatMul(x, W1) + b1 -> MatMul(., W2) + b2 becomes
 * MatMul(x, W1 W2) + (b1 W2 + b2).
 * Done only when the merged node costs no more FLOPs and no more
 * parameter bytes than the pair (784->1024->512 yes, 1000->10->1000 no). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fold.h"
#include "ops.h"
#include "pass.h"

#define PASS "fold_gemm"
#define MAX_CHAIN 8                  /* Flatten/Reshape nodes between */

/* One node in plain form: y = op(x) P + c, P is k x n. */
typedef struct lin {
	np_node *n;
	bool gemm, trans_a, trans_b;
	int64_t k, cols;
	float alpha, beta;
	const float *w;              /* B as stored */
	const float *c;              /* bias (1 or cols values), or NULL */
	int64_t c_n;
} lin;

static double lin_p(const lin *l, int64_t i, int64_t j)
{
	return (double)l->alpha * (l->trans_b ? l->w[j * l->k + i] : l->w[i * l->cols + j]);
}

static double lin_c(const lin *l, int64_t j)
{
	return l->c ? (double)l->beta * l->c[l->c_n == 1 ? 0 : j] : 0.0;
}

/* Read n into plain form; NULL on success, else why not. */
static const char *lin_read(np_node *n, lin *l)
{
	memset(l, 0, sizeof *l);
	l->n = n;
	l->gemm = np_node_kind(n) == NP_OPK_Gemm;
	l->alpha = l->gemm ? np_node_attr_float(n, "alpha", 1.0f) : 1.0f;
	l->beta = l->gemm ? np_node_attr_float(n, "beta", 1.0f) : 1.0f;
	l->trans_a = l->gemm && np_node_attr_int(n, "transA", 0);
	l->trans_b = l->gemm && np_node_attr_int(n, "transB", 0);
	const np_tensor *w = np_fold_tensor(n->n_inputs > 1 ? n->inputs[1] : NULL);
	if (!w || w->rank != 2)
		return "its weight is not a 2-D float initializer";
	l->w = w->data;
	l->k = w->dims[l->trans_b ? 1 : 0];
	l->cols = w->dims[l->trans_b ? 0 : 1];
	const np_value *cv = l->gemm && n->n_inputs > 2 ? n->inputs[2] : NULL;
	if (!cv)
		return NULL;
	const np_tensor *c = np_fold_tensor(cv);
	l->c = c ? c->data : NULL;
	l->c_n = c ? c->nelem : 0;
	if (!c || !(l->c_n == 1 || (l->c_n == l->cols && (c->rank <= 1 || c->dims[0] == 1))))
		return "its bias is not a per-column float initializer";
	return NULL;
}

/* --------------------------------------------------------- the chain */

typedef struct chain {
	lin a, b;                    /* first and second node */
	np_node *a_add;              /* the first node's bias Add, or NULL */
	int a_bias;                  /* its bias operand (0 or 1) */
	np_node *mid[MAX_CHAIN];     /* Flatten/Reshape between, in order */
	int n_mid;
} chain;

/* A Reshape target read from an initializer or a Constant. */
static const np_shape *const_target(const np_node *r, const np_shapes *s)
{
	const np_value *t = r->n_inputs > 1 ? r->inputs[1] : NULL;
	if (!t || !(t->init || np_node_kind(t->producer) == NP_OPK_Constant))
		return NULL;
	const np_shape *sh = np_shape_get(s, t);
	return sh && sh->n_val >= 0 ? sh : NULL;
}

/* NULL if Flatten/Reshape node r keeps its [N, k] input as [N, k]. */
static const char *transparent(const np_node *r, const np_shapes *s, int64_t k)
{
	const np_shape *x = np_shape_get(s, r->inputs[0]);
	if (!x || x->rank != 2)
		return "the tensor between is not known to be 2-D";
	if (np_node_kind(r) == NP_OPK_Flatten) {
		int64_t axis = np_node_attr_int(r, "axis", 1);
		return axis == 1 || axis == -1 ? NULL : "Flatten axis is not 1";
	}
	const np_shape *t = const_target(r, s);
	if (!t)
		return "Reshape target is not a constant";
	bool zero_copies = !np_node_attr_int(r, "allowzero", 0);
	bool keeps_n = t->n_val == 2 && ((t->val[0] == 0 && zero_copies) ||
	                                 t->val[0] == -1);
	bool keeps_k = t->n_val == 2 && (t->val[1] == k || (t->val[1] == -1 &&
	                                                   t->val[0] == 0 && zero_copies));
	return keeps_n && keeps_k ? NULL : "Reshape changes the [N, K] shape";
}

/* A node this pass folds: Gemm or MatMul. */
static bool is_gemm_or_matmul(const np_node *n)
{
	np_op_kind k = np_node_kind(n);
	return k == NP_OPK_Gemm || k == NP_OPK_MatMul;
}

/* Operand k of Add node a: a float initializer of n values broadcast
 * along the last axis ([n], [1, n] ...). */
static bool last_axis_bias(const np_node *a, int k, int64_t n)
{
	const np_tensor *t = np_fold_tensor(a->inputs[k]);
	return t && t->rank >= 1 && t->nelem == n && t->dims[t->rank - 1] == n;
}

/* Is p = Add(MatMul(...), bias) with the bias a float initializer
 * broadcast along the last axis (its size checked later)?  The MatMul, or
 * NULL; *k the bias operand. */
static np_node *bias_add_matmul(const np_node *p, int *k)
{
	if (np_node_kind(p) != NP_OPK_Add || p->n_inputs != 2 || p->n_outputs != 1)
		return NULL;
	for (int i = 0; i < 2; i++) {
		const np_value *x = p->inputs[1 - i];
		const np_tensor *t = np_fold_tensor(p->inputs[i]);
		if (x && np_node_kind(x->producer) == NP_OPK_MatMul && t && t->rank >= 1 &&
		    t->nelem == t->dims[t->rank - 1]) {
			*k = i;
			return x->producer;
		}
	}
	return NULL;
}

/* Walk back from the second node's input through single-use Flatten and
 * Reshape nodes to a Gemm/MatMul (or MatMul + bias Add right before
 * the second node).  0: not a candidate; 1: found (c->a.n set, c->mid
 * in graph order). */
static int walk_back(np_node *second, chain *c)
{
	np_value *v = second->inputs[0];
	np_node *mm = v && v->producer ? bias_add_matmul(v->producer, &c->a_bias) : NULL;
	if (mm) {
		c->a_add = v->producer;
		c->a.n = mm;
		return 1;
	}
	for (;;) {
		if (!v || !v->producer)
			return 0;
		np_node *p = v->producer;
		if (is_gemm_or_matmul(p)) {
			c->a.n = p;
			break;
		}
		np_op_kind k = np_node_kind(p);
		if (!(k == NP_OPK_Flatten || k == NP_OPK_Reshape) || c->n_mid == MAX_CHAIN)
			return 0;
		c->mid[c->n_mid++] = p;
		v = p->inputs[0];
	}
	for (int i = 0; i < c->n_mid / 2; i++) {
		np_node *t = c->mid[i];
		c->mid[i] = c->mid[c->n_mid - 1 - i];
		c->mid[c->n_mid - 1 - i] = t;
	}
	return 1;
}

/* NULL if every value from the first node to the second has exactly one
 * reader (the next node) and is not a graph output. */
static const char *single_path(const chain *c)
{
	const np_node *from = c->a.n;
	if (c->a_add) {
		if (from->n_outputs != 1 || !np_value_single_use(from->outputs[0], c->a_add))
			return "the first node's output has another reader or is a graph output";
		from = c->a_add;
	}
	for (int i = 0; i <= c->n_mid; i++) {
		const np_node *to = i < c->n_mid ? c->mid[i] : c->b.n;
		if (from->n_outputs != 1 || !np_value_single_use(from->outputs[0], to))
			return "the first node's output has another reader or is a graph output";
		from = to;
	}
	return NULL;
}

/* Rows per example of the first node's output (MatMul with rank > 2). */
static int64_t rows_of(const chain *c, const np_shapes *s)
{
	if (c->a.gemm)
		return 1;
	const np_shape *y = np_shape_get(s, c->a.n->outputs[0]);
	if (!y)
		return -1;
	int64_t r = 1;
	for (int i = 1; i < y->rank - 1; i++)
		r = y->dims[i] < 0 || r < 0 ? -1 : r * y->dims[i];
	return r;
}

static bool has_bias(const chain *c)
{
	return c->a.c || c->b.c;
}

/* NULL if the chain folds, else why not (into buf for cost refusals). */
static const char *check(chain *c, const np_shapes *s, char *buf, size_t len)
{
	const char *why = lin_read(c->a.n, &c->a);
	if (!why && c->a_add) {
		if (!last_axis_bias(c->a_add, c->a_bias, c->a.cols))
			why = "the first node's bias Add does not add one value per column";
		const np_tensor *t = np_fold_tensor(c->a_add->inputs[c->a_bias]);
		c->a.c = t ? t->data : NULL;
		c->a.c_n = t ? t->nelem : 0;
	}
	if (!why)
		why = lin_read(c->b.n, &c->b);
	if (!why && c->b.trans_a)
		why = "the second node has transA=1";
	if (!why)
		why = single_path(c);
	for (int i = 0; !why && i < c->n_mid; i++)
		why = transparent(c->mid[i], s, c->a.cols);
	if (!why && c->a.cols != c->b.k)
		why = "inner dimensions differ";
	if (why)
		return why;
	np_cost pair = np_cost_sum(np_node_cost(c->a.n, s), np_node_cost(c->b.n, s));
	if (c->a_add)
		pair = np_cost_sum(pair, np_node_cost(c->a_add, s));
	np_cost merged = np_cost_matmul(rows_of(c, s), c->a.k, c->b.cols, has_bias(c));
	if (pair.flops < 0 || merged.flops < 0)
		return "shapes unknown: cannot compare costs";
	if (!np_cost_le(merged, pair)) {
		snprintf(buf, len, "merged %lldx%lld would cost %lld FLOPs and %lld "
		         "parameter bytes vs %lld and %lld for the pair",
		         (long long)c->a.k, (long long)c->b.cols,
		         (long long)merged.flops, (long long)merged.param_bytes,
		         (long long)pair.flops, (long long)pair.param_bytes);
		return buf;
	}
	return NULL;
}

/* ---------------------------------------------------------------- fold */

/* W = P1 P2 stored [k, n] (or [n, k] when trans), bias c1 P2 + c2. */
static bool merge(const chain *c, float *w, bool trans, float *bias)
{
	const lin *a = &c->a, *b = &c->b;
	int64_t k = a->k, h = a->cols, n = b->cols;
	double *p2 = malloc(sizeof(double) * (size_t)(h * n));
	double *row = malloc(sizeof(double) * (size_t)n);
	if (!p2 || !row) {
		free(p2);
		free(row);
		return false;
	}
	for (int64_t t = 0; t < h; t++)
		for (int64_t j = 0; j < n; j++)
			p2[t * n + j] = lin_p(b, t, j);
	for (int64_t i = 0; i < k; i++) {
		memset(row, 0, sizeof(double) * (size_t)n);
		for (int64_t t = 0; t < h; t++) {
			double pa = lin_p(a, i, t);
			for (int64_t j = 0; j < n; j++)
				row[j] += pa * p2[t * n + j];
		}
		for (int64_t j = 0; j < n; j++)
			w[trans ? j * k + i : i * n + j] = (float)row[j];
	}
	for (int64_t j = 0; bias && j < n; j++) {
		double sum = lin_c(b, j);
		for (int64_t t = 0; t < h; t++)
			sum += lin_c(a, t) * p2[t * n + j];
		bias[j] = (float)sum;
	}
	free(p2);
	free(row);
	return true;
}

static np_status fold(np_model *m, np_pass_ctx *ctx, chain *c, np_error *err)
{
	bool gemm = c->a.gemm || c->b.gemm, bias = has_bias(c);
	bool trans = c->b.gemm && c->b.trans_b;    /* keep the classifier's layout */
	int64_t dims[2] = {trans ? c->b.cols : c->a.k, trans ? c->a.k : c->b.cols};
	const char *wname = np_arena_printf(m->arena, "%s_folded", c->b.n->inputs[1]->name);
	np_value *w = np_fold_new_init(m, wname, 2, dims, err);
	np_value *b = NULL;
	if (w && bias)
		b = np_fold_new_init(m, np_arena_printf(m->arena, "%s_bias", wname),
		                     1, &c->b.cols, err);
	if (!w || (bias && !b))
		return err->status;
	if (!merge(c, w->init->data, trans, b ? b->init->data : NULL))
		return np_fail(err, NP_ERR_NOMEM, "out of memory merging %s into %s "
		               "(node %s, op %s)", c->a.n->name, c->b.n->name,
		               c->b.n->name, c->b.n->op_type);
	np_value *in[3] = {c->a.n->inputs[0], w, b};
	np_value *y = c->b.n->outputs[0];
	/* Two MatMuls with a bias: the merged MatMul has none of its own; its
	 * bias goes into the Add after it, or a new one. */
	np_node *b_add = NULL;
	int b_bias = 0;
	if (!gemm && b) {
		np_node *j = y->n_uses == 1 && !y->is_output ? y->uses[0].node : NULL;
		if (j && bias_add_matmul(j, &b_bias) == c->b.n &&
		    last_axis_bias(j, b_bias, c->b.cols))
			b_add = j;
	}
	np_value *mid = NULL;
	if (!gemm && b && !b_add) {
		mid = np_graph_new_unique_value(m->graph, np_arena_printf(m->arena, "%s_folded",
		                                                          y->name));
		if (!mid)
			return np_fail(err, NP_ERR_NOMEM, "out of memory");
	}
	np_graph_remove_node(m->graph, c->b.n);
	for (int i = 0; i < c->n_mid; i++)
		np_graph_remove_node(m->graph, c->mid[i]);
	if (c->a_add)
		np_graph_remove_node(m->graph, c->a_add);
	np_graph_remove_node(m->graph, c->a.n);
	np_node *kept = np_fold_rebuild(m, c->b.n, np_op_name(gemm ? NP_OPK_Gemm : NP_OPK_MatMul),
	                                in, gemm && b ? 3 : 2, mid ? mid : y, false);
	if (b_add) {
		/* b2' = b2 + (b1 P2 + b2 - b2): merge() already added b2 = 0
		 * (a MatMul has no c), so add the Add's own bias. */
		const np_tensor *t2 = np_fold_tensor(b_add->inputs[b_bias]);
		float *nb = b->init->data;
		for (int64_t j = 0; j < c->b.cols; j++)
			nb[j] += ((const float *)t2->data)[j];
		np_value *shaped = np_fold_new_init(m, np_arena_printf(m->arena, "%s_bias",
		                                    wname), t2->rank, t2->dims, err);
		if (!shaped)
			return err->status;
		memcpy(shaped->init->data, nb, sizeof(float) * (size_t)c->b.cols);
		np_fold_put_input(m->graph, b_add, b_bias, shaped);
	} else if (mid) {
		np_value *ins[2] = {mid, b};
		const char *an = np_graph_unique_node_name(m->graph, np_arena_printf(m->arena,
		                                           "%s/bias", c->b.n->name));
		np_node *add = np_graph_new_node(m->graph, np_op_name(NP_OPK_Add), "", an,
		                                 ins, 2, &y, 1);
		np_graph_insert_node(m->graph, add);
	}
	if (gemm && c->a.trans_a)
		np_node_set_attr_int(kept, "transA", 1);
	if (trans)
		np_node_set_attr_int(kept, "transB", 1);
	np_fold_note(m, ctx, PASS, kept, c->a.n, NULL);
	if (c->a_add)
		np_fold_note(m, ctx, PASS, kept, c->a_add, "the first node's bias");
	for (int i = 0; i < c->n_mid; i++)
		np_fold_note(m, ctx, PASS, kept, c->mid[i], "transparent between the pair");
	return NP_OK;
}

static int try_gemm(np_model *m, np_pass_ctx *ctx, np_node *n,
                    const np_shapes *s, np_pass_log *refused, np_error *err)
{
	if (!is_gemm_or_matmul(n) || n->n_inputs < 2)
		return NP_TRY_NONE;
	chain c = {.b = {.n = n}};
	if (!walk_back(n, &c))
		return NP_TRY_NONE;
	char buf[256];
	const char *why = check(&c, s, buf, sizeof buf);
	if (why) {
		np_pass_log_add(refused, m, NP_LOG_REFUSED, PASS, c.a.n->name, n->name,
		                "%s", why);
		return NP_TRY_NONE;
	}
	return fold(m, ctx, &c, err) == NP_OK ? NP_TRY_DONE : NP_TRY_ERROR;
}

static np_status run(np_model *m, np_pass_ctx *ctx, np_error *err)
{
	return np_fold_run(m, ctx, try_gemm, err);
}

const np_pass np_pass_fold_gemm = {
	"fold_gemm",
	"merge Gemm/MatMul -> Gemm/MatMul chains with nothing nonlinear between",
	run
};
