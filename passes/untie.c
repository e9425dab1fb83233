/* untie.c - give every copy of a shared parameter its own initializer.
 *
 * torch.onnx.export stores equal parameters once and recreates the other
 * copies with Identity(initializer).  In PyTorch those were separate
 * trainable tensors, so fine-tuning must update them separately: each
 * Identity whose input is a float initializer becomes an initializer of
 * its own, holding a copy, under the Identity's output name (the same
 * np_value, so consumers and graph outputs are untouched).  Runs before
 * training.
 */
#include "ops.h"
#include "pass.h"

#include <string.h>

/* Make out (the Identity's output, now without a producer) an initializer
 * holding a copy of src. */
static np_status np_untie_copy(np_model *m, np_value *out, const np_tensor *src,
                               np_error *err)
{
	np_graph *g = m->graph;
	np_tensor *t = np_model_new_tensor(m, src->dtype, src->rank, src->dims, err);
	if (!t)
		return err->status;
	if (src->nbytes)
		memcpy(t->data, src->data, src->nbytes);
	t->name = out->name;
	t->doc_string = src->doc_string;
	out->init = t;
	out->has_type = out->has_shape = true;
	out->dtype = t->dtype;
	out->rank = t->rank;
	out->dims = np_arena_alloc(m->arena, sizeof(np_dim) * (size_t)(t->rank + 1));
	for (int i = 0; i < t->rank; i++)
		out->dims[i].value = t->dims[i];
	if (g->n_initializers == g->cap_initializers) {
		int cap = g->cap_initializers ? g->cap_initializers * 2 : 8;
		g->initializers = np_arena_grow(m->arena, g->initializers,
		                                sizeof(np_value *) * (size_t)g->cap_initializers,
		                                sizeof(np_value *) * (size_t)cap);
		g->cap_initializers = cap;
	}
	g->initializers[g->n_initializers++] = out;
	return NP_OK;
}

static bool np_untie_candidate(const np_node *n)
{
	if (np_node_kind(n) != NP_OPK_Identity || n->n_inputs != 1 || n->n_outputs != 1)
		return false;
	const np_value *in = n->inputs[0], *out = n->outputs[0];
	/* A graph input with a default initializer can be overridden by the
	 * caller: the copy would not follow it. */
	return in && out && np_init_floats(in) && !in->is_input && !out->is_input;
}

static np_status np_untie_run(np_model *m, np_pass_ctx *ctx, np_error *err)
{
	np_graph *g = m->graph;
	for (int i = 0; i < g->n_nodes; i++) {
		np_node *n = g->nodes[i];
		if (!np_untie_candidate(n))
			continue;
		np_value *in = n->inputs[0], *out = n->outputs[0];
		np_graph_remove_node(g, n);
		i--;
		np_status st = np_untie_copy(m, out, in->init, err);
		if (st != NP_OK)
			return st;
		np_pass_log_add(ctx->log, m, NP_LOG_REMOVED, "untie", n->name, NULL,
		                "Identity of initializer '%s' replaced by a copy '%s'",
		                in->name, out->name);
		ctx->changes++;
	}
	return NP_OK;
}

const np_pass np_pass_untie = {
	"untie",
	"give each Identity(initializer) copy its own trainable initializer",
	np_untie_run
};
