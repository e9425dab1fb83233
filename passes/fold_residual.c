/* fold_residual.c - fold an identity shortcut into the convolution beside
 * it:  y = Add(x, Conv(x))  ->  y = Conv'(x),  W'[c, c, centre] += 1.
 *
 * Exact when the Conv reads x itself, keeps its shape and reads x at the
 * same position through its centre tap: stride 1, dilation 1, group 1,
 * C_in == C_out, every kernel extent odd with 'same' padding (k-1)/2 on
 * both sides (the centre tap never reads the padding), including the
 * pointwise case (1x1, no padding).  The Conv's output must have no other
 * reader.  Cost: the Add disappears and the weights keep their shape, so
 * the result is never more expensive.  The folded Conv keeps its name and
 * produces the Add's output value.  Candidates that fail a condition are
 * logged as refused, with the reason.
 */
#include "ops.h"
#include "pass.h"

#include <stdlib.h>
#include <string.h>

/* Why Conv c (reading x) cannot absorb the shortcut, NULL if it can. */
static const char *np_residual_refusal(const np_node *c, const np_value *x)
{
	if (c->inputs[0] != x)
		return "the Conv does not read the shortcut input";
	const np_value *w = c->n_inputs > 1 ? c->inputs[1] : NULL;
	if (!np_init_floats(w) || w->init->rank < 3)
		return "the Conv weight is not a float initializer";
	const np_tensor *wt = w->init;
	int sp = wt->rank - 2;
	if (wt->dims[0] != wt->dims[1] || np_node_attr_int(c, "group", 1) != 1)
		return "C_in != C_out or group != 1";
	int n;
	const int64_t *v = np_node_attr_ints(c, "strides", &n);
	for (int i = 0; v && i < n; i++)
		if (v[i] != 1)
			return "stride != 1";
	v = np_node_attr_ints(c, "dilations", &n);
	for (int i = 0; v && i < n; i++)
		if (v[i] != 1)
			return "dilation != 1";
	for (int d = 0; d < sp; d++)
		if (wt->dims[2 + d] % 2 == 0)
			return "even kernel extent";
	const char *ap = np_node_attr_string(c, "auto_pad", "NOTSET");
	if (strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0)
		return NULL;     /* odd kernel, stride 1: (k-1)/2 on each side */
	bool valid = strcmp(ap, "VALID") == 0;
	if (!valid && strcmp(ap, "NOTSET") != 0)
		return "unknown auto_pad";
	const int64_t *pads = valid ? NULL : np_node_attr_ints(c, "pads", &n);
	if (pads && n != 2 * sp)
		return "malformed pads";
	for (int d = 0; d < sp; d++) {
		int64_t want = (wt->dims[2 + d] - 1) / 2;
		int64_t b = pads ? pads[d] : 0, e = pads ? pads[d + sp] : 0;
		if (b != want || e != want)
			return "padding is not symmetric 'same' padding";
	}
	return NULL;
}

/* W[c, c, centre] += 1, on a private copy if the weight is shared. */
static np_status np_add_centre(np_model *m, np_node *c, np_error *err)
{
	np_value *w = c->inputs[1];
	if (!np_value_single_use(w, c) || w->is_input) {
		np_value *cp = np_new_float_init(m, w->name, w->init->rank, w->init->dims, err);
		if (!cp)
			return err->status;
		memcpy(cp->init->data, w->init->data, sizeof(float) * (size_t)w->init->nelem);
		np_node_set_input(c, 1, cp);
		w = cp;
	}
	const np_tensor *wt = w->init;
	int64_t C = wt->dims[0], ksz = wt->nelem / (C * C), centre = 0;
	for (int d = 2; d < wt->rank; d++)
		centre = centre * wt->dims[d] + (wt->dims[d] - 1) / 2;
	float *p = wt->data;
	for (int64_t ch = 0; ch < C; ch++)
		p[(ch * C + ch) * ksz + centre] += 1.0f;
	return NP_OK;
}

/* Add a: one input x, the other Conv(x) read only by a.  The Conv, or NULL. */
static np_node *np_residual_conv(const np_node *a, np_value **x)
{
	if (np_node_kind(a) != NP_OPK_Add || a->n_inputs != 2 || a->n_outputs != 1 ||
	    !a->inputs[0] || !a->inputs[1] || a->inputs[0] == a->inputs[1])
		return NULL;
	for (int k = 0; k < 2; k++) {
		np_value *v = a->inputs[k];
		np_node *c = v->producer;
		if (np_node_kind(c) == NP_OPK_Conv && c->n_inputs >= 2 && c->n_outputs == 1 &&
		    c->inputs[0] == a->inputs[1 - k] && np_value_single_use(v, a)) {
			*x = a->inputs[1 - k];
			return c;
		}
	}
	return NULL;
}

static np_status np_fold_residual_run(np_model *m, np_pass_ctx *ctx, np_error *err)
{
	np_graph *g = m->graph;
	int n = g->n_nodes;
	/* Walk a snapshot: moving a Conv reorders graph->nodes. */
	np_node **nodes = malloc(sizeof(np_node *) * (size_t)(n + 1));
	if (!nodes)
		return np_fail(err, NP_ERR_NOMEM, "out of memory folding residuals");
	memcpy(nodes, g->nodes, sizeof(np_node *) * (size_t)n);
	np_status st = NP_OK;
	for (int i = 0; i < n && st == NP_OK; i++) {
		np_node *a = nodes[i];
		np_value *x = NULL;
		np_node *c = a->removed || !np_pass_may_fold(ctx, a) ? NULL
		             : np_residual_conv(a, &x);
		if (!c)
			continue;
		const char *why = np_residual_refusal(c, x);
		if (why) {
			np_pass_log_add(ctx->log, m, NP_LOG_REFUSED, "fold_residual", a->name, c->name,
			                "identity shortcut not folded: %s", why);
			continue;
		}
		st = np_add_centre(m, c, err);
		if (st != NP_OK)
			break;
		np_value *y = a->outputs[0];
		np_graph_remove_node(g, a);
		np_graph_remove_node(g, c);
		c->outputs[0] = y;           /* the Add's value keeps its name */
		np_graph_insert_node(g, c);
		np_node_doc_append(m, c, np_arena_printf(m->arena,
		                   "folded: %s (Add, identity shortcut)", a->name));
		np_pass_log_add(ctx->log, m, NP_LOG_FOLDED, "fold_residual", a->name, c->name,
		                "identity shortcut into the centre tap of %s", c->name);
		ctx->changes++;
		np_pass_folded(ctx, a);
	}
	free(nodes);
	return st;
}

const np_pass np_pass_fold_residual = {
	"fold_residual",
	"fold y = x + Conv(x) into one Conv (identity added to the centre tap)",
	np_fold_residual_run
};
