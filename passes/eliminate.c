/* eliminate.c - remove nodes that compute their input unchanged:
 *   - Identity (not of an initializer: untie turns those into copies);
 *   - Dropout in inference form (mask output unused, training_mode absent
 *     or a constant false);
 *   - Mul/Div by ones, Add/Sub of zeros, when the constant's broadcast
 *     cannot change the other input's shape (a scalar, or a declared
 *     shape that covers the constant's).
 * Readers of the removed node's output read its input instead.  When
 * that output is a graph output its name is kept: the input's producer is
 * made to produce it.  A node is kept when that is impossible (its input
 * is a graph input, an initializer or another graph output).
 */
#include "pass.h"

#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "ops.h"

/* Let readers of y read x and drop n; false (nothing changed) when the
 * graph output y cannot keep its name. */
static bool np_bypass(np_graph *g, np_node *n, np_value *x, np_value *y)
{
	if (!y->is_output) {
		np_graph_remove_node(g, n);
		np_value_replace_uses(y, x);
		return true;
	}
	if (x->is_output || x->is_input || x->init || !x->producer)
		return false;
	np_graph_remove_node(g, n);
	np_node_replace_output(x->producer, x, y);
	return true;
}

/* Dropout that is the identity: no used mask, not in training mode. */
static bool np_dropout_inference(const np_node *n)
{
	if (n->n_outputs > 1 && n->outputs[1] &&
	    (n->outputs[1]->n_uses || n->outputs[1]->is_output))
		return false;
	if (n->n_inputs > 2 && n->inputs[2]) {
		const np_value *tm = n->inputs[2];
		if (!tm->init || tm->init->nelem != 1 || tm->init->dtype != NP_BOOL)
			return false;
		return *(const uint8_t *)tm->init->data == 0;
	}
	return true;
}

/* Every element of the constant v equals want. */
static bool np_const_all(const np_value *v, float want)
{
	const float *p = np_init_floats(v);
	if (p) {
		for (int64_t i = 0; i < v->init->nelem; i++)
			if (p[i] != want)
				return false;
		return true;
	}
	double d;
	return v->producer && np_value_scalar(v, &d) && d == (double)want;
}

/* Broadcasting c against x leaves x's shape (and the result is x). */
static bool np_broadcast_keeps(const np_value *x, const np_value *c)
{
	int crank;
	const int64_t *cd = NULL;
	if (c->init) {
		crank = c->init->rank;
		cd = c->init->dims;
	} else {
		crank = 0;             /* a scalar Constant (np_value_scalar) */
		if (c->has_shape && c->rank > 0)
			return false;
	}
	if (crank == 0)
		return true;
	if (!x->has_shape || x->rank < crank)
		return false;
	for (int d = 0; d < crank; d++) {
		int64_t xd = x->dims[x->rank - crank + d].value;
		if (cd[d] != 1 && cd[d] != xd)
			return false;
	}
	return true;
}

/* The input that Mul/Div/Add/Sub n passes through unchanged, or NULL. */
static np_value *np_neutral_operand(const np_node *n)
{
	if (n->n_inputs != 2 || !n->inputs[0] || !n->inputs[1] || n->n_outputs != 1)
		return NULL;
	np_op_kind k = np_node_kind(n);
	bool mul = k == NP_OPK_Mul, add = k == NP_OPK_Add;
	bool div = k == NP_OPK_Div, sub = k == NP_OPK_Sub;
	float unit = mul || div ? 1.0f : 0.0f;
	/* Commutative ops: the constant may be either operand. */
	for (int i = 1; i >= ((mul || add) ? 0 : 1); i--) {
		np_value *x = n->inputs[1 - i], *c = n->inputs[i];
		if ((mul || add || div || sub) && x->init == NULL && np_const_all(c, unit) &&
		    np_broadcast_keeps(x, c))
			return x;
	}
	return NULL;
}

static const char *np_eliminate_what(np_node *n, np_value **x)
{
	*x = NULL;
	np_op_kind k = np_node_kind(n);
	if (k == NP_OPK_Identity && n->n_inputs == 1 && n->inputs[0] &&
	    !n->inputs[0]->init) {
		*x = n->inputs[0];
		return "identity";
	}
	if (k == NP_OPK_Dropout && n->n_inputs >= 1 && n->inputs[0] &&
	    np_dropout_inference(n)) {
		*x = n->inputs[0];
		return "Dropout in inference form";
	}
	*x = np_neutral_operand(n);
	return *x ? "neutral constant operand" : NULL;
}

static np_status np_eliminate_run(np_model *m, np_pass_ctx *ctx, np_error *err)
{
	np_graph *g = m->graph;
	int n = g->n_nodes;
	/* Walk a snapshot: bypassing reorders graph->nodes. */
	np_node **nodes = malloc(sizeof(np_node *) * (size_t)(n + 1));
	if (!nodes)
		return np_fail(err, NP_ERR_NOMEM, "out of memory eliminating nodes");
	memcpy(nodes, g->nodes, sizeof(np_node *) * (size_t)n);
	for (int i = 0; i < n; i++) {
		np_node *nd = nodes[i];
		np_value *x;
		const char *why = nd->removed ? NULL : np_eliminate_what(nd, &x);
		if (!why || !nd->outputs[0])
			continue;
		if (!np_bypass(g, nd, x, nd->outputs[0]))
			continue;
		np_pass_log_add(ctx->log, m, NP_LOG_REMOVED, "eliminate", nd->name, NULL,
		                "%s (%s)", why, nd->op_type);
		ctx->changes++;
	}
	free(nodes);
	return NP_OK;
}

const np_pass np_pass_eliminate = {
	"eliminate",
	"remove Identity, inference Dropout and multiply-by-one/add-zero nodes",
	np_eliminate_run
};
