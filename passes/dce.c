/* dce.c - dead-code elimination: remove nodes none of whose outputs reach
 * a graph output, then initializers nothing reads (graph inputs stay).
 * Every removal is logged by name. */
#include "pass.h"

#include <stdlib.h>
#include <string.h>

static np_status np_dce_run(np_model *m, np_pass_ctx *ctx, np_error *err)
{
	np_graph *g = m->graph;
	int n_nodes = g->n_nodes, n_init = g->n_initializers;
	/* Snapshots, to name what np_graph_dead_code removed. */
	np_node **nodes = malloc(sizeof(np_node *) * (size_t)(n_nodes + 1));
	np_value **inits = malloc(sizeof(np_value *) * (size_t)(n_init + 1));
	if (!nodes || !inits) {
		free(nodes);
		free(inits);
		return np_fail(err, NP_ERR_NOMEM, "out of memory in dead-code elimination");
	}
	memcpy(nodes, g->nodes, sizeof(np_node *) * (size_t)n_nodes);
	memcpy(inits, g->initializers, sizeof(np_value *) * (size_t)n_init);
	np_graph_dead_code(g);
	for (int i = 0; i < n_nodes; i++)
		if (nodes[i]->removed) {
			np_pass_log_add(ctx->log, m, NP_LOG_REMOVED, "dce", nodes[i]->name, NULL,
			                "dead %s: no output reaches a graph output",
			                nodes[i]->op_type);
			ctx->changes++;
		}
	/* Both lists keep their order, so one merge walk finds the gaps. */
	for (int i = 0, k = 0; i < n_init; i++) {
		if (k < g->n_initializers && g->initializers[k] == inits[i]) {
			k++;
			continue;
		}
		np_pass_log_add(ctx->log, m, NP_LOG_REMOVED, "dce", inits[i]->name, NULL,
		                "unused initializer");
		ctx->changes++;
	}
	free(nodes);
	free(inits);
	return NP_OK;
}

const np_pass np_pass_dce = {
	"dce",
	"remove nodes that reach no graph output and initializers nothing reads",
	np_dce_run
};
