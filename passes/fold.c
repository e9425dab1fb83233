/* fold.c - what the folding passes share; see fold.h. */
#include "fold.h"

#include "ops.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------ conv geometry */

const char *np_conv_geom_get(const np_node *conv, np_conv_geom *g)
{
	memset(g, 0, sizeof *g);
	const np_value *w = conv->n_inputs > 1 ? conv->inputs[1] : NULL;
	int nk = 0, ns = 0, nd = 0, np_ = 0;
	const int64_t *ks = np_node_attr_ints(conv, "kernel_shape", &nk);
	if (ks)
		g->nsp = nk;
	else if (w && w->init && w->init->rank >= 3)
		g->nsp = w->init->rank - 2;
	else
		return "kernel size unknown";
	if (g->nsp > NP_MAX_RANK - 2)
		return "too many spatial axes";
	const int64_t *st = np_node_attr_ints(conv, "strides", &ns);
	const int64_t *dl = np_node_attr_ints(conv, "dilations", &nd);
	const int64_t *pd = np_node_attr_ints(conv, "pads", &np_);
	if ((st && ns != g->nsp) || (dl && nd != g->nsp) ||
	    (pd && np_ != 2 * g->nsp))
		return "strides, dilations or pads do not match the kernel rank";
	for (int i = 0; i < g->nsp; i++) {
		g->kernel[i] = ks ? ks[i] : w->init->dims[2 + i];
		g->stride[i] = st ? st[i] : 1;
		g->dil[i] = dl ? dl[i] : 1;
		g->pads[i] = pd ? pd[i] : 0;
		g->pads[g->nsp + i] = pd ? pd[g->nsp + i] : 0;
		if (g->kernel[i] < 1 || g->stride[i] < 1 || g->dil[i] < 1)
			return "kernel, stride or dilation < 1";
	}
	g->group = np_node_attr_int(conv, "group", 1);
	if (g->group < 1)
		return "group < 1";
	const char *ap = np_node_attr_string(conv, "auto_pad", "NOTSET");
	if (strcmp(ap, "VALID") == 0) {
		memset(g->pads, 0, sizeof g->pads);
	} else if (strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0) {
		g->same = true;
	} else if (strcmp(ap, "NOTSET") != 0) {
		return "unknown auto_pad";
	}
	return NULL;
}

/* ------------------------------------- helpers the fold passes share */

np_status np_fold_run(np_model *m, np_pass_ctx *ctx, np_fold_fn fn,
                      np_error *err)
{
	if (ctx->fold == NP_FOLD_NONE)
		return NP_OK;
	np_pass_log refused = {0};
	for (;;) {
		np_shapes s;
		np_pass_log_free(&refused);
		if (ctx->max_folds > 0 && ctx->folds >= ctx->max_folds)
			break;
		if (np_shapes_infer(m->graph, &s, err) != NP_OK)
			return err->status;
		int r = NP_TRY_NONE;
		for (int i = 0; i < m->graph->n_nodes && r == NP_TRY_NONE; i++) {
			np_node *n = m->graph->nodes[i];
			if (!np_pass_may_fold(ctx, n))
				continue;
			r = fn(m, ctx, n, &s, &refused, err);
			if (r == NP_TRY_DONE)
				np_pass_folded(ctx, n);
		}
		np_shapes_free(&s);
		if (r == NP_TRY_ERROR) {
			np_pass_log_free(&refused);
			return err->status ? err->status : NP_ERR_INVALID;
		}
		if (r == NP_TRY_NONE)
			break;
	}
	for (int i = 0; i < refused.n; i++) {
		const np_log_entry *e = &refused.v[i];
		np_pass_log_add(ctx->log, m, e->kind, e->pass, e->node, e->into,
		                "%s", e->why ? e->why : "");
	}
	np_pass_log_free(&refused);
	return NP_OK;
}

np_node *np_fold_rebuild(np_model *m, np_node *keep, const char *op_type,
                         np_value **in, int n_in, np_value *out,
                         bool copy_attrs)
{
	np_graph *g = m->graph;
	np_graph_remove_node(g, keep);
	np_node *n = np_graph_new_node(g, op_type, keep->domain, keep->name,
	                               in, n_in, &out, 1);
	n->doc_string = keep->doc_string;
	if (copy_attrs && keep->n_attrs) {
		n->attrs = np_arena_memdup(m->arena, keep->attrs,
		                           sizeof(np_attr) * (size_t)keep->n_attrs);
		n->n_attrs = keep->n_attrs;
	}
	np_graph_insert_node(g, n);
	return n;
}

/* Carry the "folded:" and "linearized:" notes of a doc_string. */
static void carry_notes(np_model *m, np_node *kept, const char *doc)
{
	while (doc && *doc) {
		const char *end = strstr(doc, "; ");
		size_t len = end ? (size_t)(end - doc) : strlen(doc);
		if (strncmp(doc, "folded:", 7) == 0 || strncmp(doc, "linearized:", 11) == 0) {
			char *seg = np_arena_alloc(m->arena, len + 1);
			memcpy(seg, doc, len);
			np_node_doc_append(m, kept, seg);
		}
		doc = end ? end + 2 : NULL;
	}
}

void np_fold_note(np_model *m, np_pass_ctx *ctx, const char *pass,
                  np_node *kept, const np_node *folded, const char *why)
{
	char *text = np_arena_printf(m->arena, "folded: %s (%s)",
	                             folded->name ? folded->name : "?",
	                             folded->op_type);
	np_node_doc_append(m, kept, text);
	carry_notes(m, kept, folded->doc_string);
	if (why)
		np_pass_log_add(ctx->log, m, NP_LOG_FOLDED, pass, folded->name,
		                kept->name, "%s", why);
	else
		np_pass_log_add(ctx->log, m, NP_LOG_FOLDED, pass, folded->name,
		                kept->name, NULL);
	ctx->changes++;
}

const np_tensor *np_fold_tensor(const np_value *v)
{
	for (int hops = 0; v && v->producer && hops < 16; hops++) {
		const np_node *p = v->producer;
		if (np_node_kind(p) != NP_OPK_Identity || p->n_inputs != 1)
			return NULL;
		v = p->inputs[0];
	}
	return v && !v->is_input && np_init_floats(v) ? v->init : NULL;
}

const float *np_fold_const(const np_value *v)
{
	const np_tensor *t = np_fold_tensor(v);
	return t ? t->data : NULL;
}

np_value *np_fold_new_init(np_model *m, const char *base, int rank,
                           const int64_t *dims, np_error *err)
{
	return np_new_float_init(m, base, rank, dims, err);
}

float *np_fold_writable(np_model *m, np_node *n, int i, np_error *err)
{
	np_value *v = n->inputs[i];
	if (!v || v->is_input || !np_init_floats(v)) {
		np_fail(err, NP_ERR_INVALID, "input '%s' is not a float initializer "
		        "(node %s, op %s)", v ? v->name : "?", n->name, n->op_type);
		return NULL;
	}
	if (v->n_uses == 1 && !v->is_output)
		return v->init->data;
	np_value *c = np_fold_new_init(m, v->name, v->init->rank, v->init->dims, err);
	if (!c)
		return NULL;
	memcpy(c->init->data, v->init->data, v->init->nbytes);
	np_node_set_input(n, i, c);
	return c->init->data;
}

/* The node is unlinked while its lists change. */
void np_fold_put_input(np_graph *g, np_node *n, int i, np_value *v)
{
	if (i < n->n_inputs) {
		np_node_set_input(n, i, v);
		return;
	}
	bool linked = n->id >= 0 && !n->removed;
	if (linked)
		np_graph_remove_node(g, n);
	np_value **in = np_arena_alloc(g->model->arena, sizeof(np_value *) * (size_t)(i + 2));
	memcpy(in, n->inputs, sizeof(np_value *) * (size_t)n->n_inputs);
	in[i] = v;
	n->inputs = in;
	n->n_inputs = i + 1;
	if (linked)
		np_graph_insert_node(g, n);
}
