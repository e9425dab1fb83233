/* inspect.c - `nepenc inspect`; see inspect.h. */
#include "inspect.h"

#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "layers.h"

typedef struct np_op_count {
	const char *op;
	int count;
} np_op_count;

static int np_cmp_op_count(const void *a, const void *b)
{
	const np_op_count *x = a, *y = b;
	if (x->count != y->count)
		return y->count - x->count;
	return strcmp(x->op, y->op);
}

/* Node count per op type, most frequent first; *n_out entries (malloc). */
static np_op_count *np_count_ops(const np_graph *g, int *n_out)
{
	np_op_count *c = calloc((size_t)g->n_nodes + 1, sizeof *c);
	int n = 0;
	for (int i = 0; c && i < g->n_nodes; i++) {
		int k = 0;
		while (k < n && strcmp(c[k].op, g->nodes[i]->op_type) != 0)
			k++;
		if (k == n)
			c[n++].op = g->nodes[i]->op_type;
		c[k].count++;
	}
	if (c)
		qsort(c, (size_t)n, sizeof *c, np_cmp_op_count);
	*n_out = n;
	return c;
}

/* "[N,1,28,28]" into buf. */
static const char *np_shape_str(const np_value *v, char *buf, size_t len)
{
	if (!v->has_shape)
		return "[?]";
	size_t o = (size_t)snprintf(buf, len, "[");
	for (int i = 0; i < v->rank && o < len; i++) {
		const np_dim *d = &v->dims[i];
		if (d->param)
			o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? "," : "", d->param);
		else if (d->value >= 0)
			o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? "," : "",
			                      (long long)d->value);
		else
			o += (size_t)snprintf(buf + o, len - o, "%s?", i ? "," : "");
	}
	if (o < len)
		snprintf(buf + o, len - o, "]");
	return buf;
}

static void np_json_values(np_json *j, const char *key, np_value **v, int n)
{
	char buf[256];
	np_json_begin_array(j, key);
	for (int i = 0; i < n; i++) {
		np_json_begin_object(j, NULL);
		np_json_string(j, "name", v[i]->name);
		np_json_string(j, "dtype", np_dtype_name(v[i]->dtype));
		np_json_string(j, "shape", np_shape_str(v[i], buf, sizeof buf));
		np_json_end(j);
	}
	np_json_end(j);
}

/* Graph inputs that are not initializers (IR < 4 lists both). */
static int np_real_inputs(const np_graph *g, np_value **dst)
{
	int n = 0;
	for (int i = 0; i < g->n_inputs; i++)
		if (!g->inputs[i]->init)
			dst[n++] = g->inputs[i];
	return n;
}

static void np_inspect_json(const np_model *m, const np_layers *ls,
                            const np_op_count *ops, int n_ops, int depth,
                            np_value **in, FILE *out)
{
	const np_graph *g = m->graph;
	np_json j;
	np_json_init(&j, out);
	np_json_begin_object(&j, NULL);
	np_json_int(&j, "opset", np_model_opset(m, ""));
	np_json_int(&j, "ir_version", m->ir_version);
	np_json_string(&j, "producer", m->producer_name);
	int n_in = np_real_inputs(g, in);
	np_json_values(&j, "inputs", in, n_in);
	np_json_values(&j, "outputs", g->outputs, g->n_outputs);
	np_json_int(&j, "nodes", g->n_nodes);
	np_json_begin_object(&j, "ops");
	for (int i = 0; i < n_ops; i++)
		np_json_int(&j, ops[i].op, ops[i].count);
	np_json_end(&j);
	np_json_int(&j, "params", np_model_param_count(m));
	np_json_int(&j, "depth", depth);
	np_json_begin_array(&j, "rectified_layers");
	for (int i = 0; i < ls->n; i++) {
		const np_layer *L = &ls->v[i];
		np_json_begin_object(&j, NULL);
		np_json_string(&j, "rectifier", L->rectifier->name);
		/* kind names the form too (e.g. "gelu(erf pattern)"); family
		 * is the kind of `nepenc profile` and the report ("gelu"). */
		np_json_string(&j, "kind", np_layer_kind_label(L));
		np_json_string(&j, "family", np_rect_kind_name(L->kind));
		np_json_begin_array(&j, "producers");
		for (int k = 0; k < L->n_producers; k++)
			np_json_string(&j, NULL, L->producers[k]->name);
		np_json_end(&j);
		np_json_int(&j, "neurons", L->neurons);
		/* 1, or -1: the last axis (an encoder's MLP, [B, T, C]) */
		np_json_int(&j, "neuron_axis", L->axis);
		np_json_int(&j, "weights", L->n_prunable);
		np_json_end(&j);
	}
	np_json_end(&j);
	np_json_end(&j);
}

static void np_inspect_text(const np_model *m, const np_layers *ls,
                            const np_op_count *ops, int n_ops, int depth,
                            FILE *out)
{
	const np_graph *g = m->graph;
	char buf[256];
	fprintf(out, "opset:       %lld (ir_version %lld)\n",
	        (long long)np_model_opset(m, ""), (long long)m->ir_version);
	if (m->producer_name && *m->producer_name)
		fprintf(out, "producer:    %s %s\n", m->producer_name,
		        m->producer_version ? m->producer_version : "");
	for (int i = 0; i < g->n_inputs; i++)
		if (!g->inputs[i]->init)
			fprintf(out, "input:       %s %s %s\n", g->inputs[i]->name,
			        np_dtype_name(g->inputs[i]->dtype),
			        np_shape_str(g->inputs[i], buf, sizeof buf));
	for (int i = 0; i < g->n_outputs; i++)
		fprintf(out, "output:      %s %s %s\n", g->outputs[i]->name,
		        np_dtype_name(g->outputs[i]->dtype),
		        np_shape_str(g->outputs[i], buf, sizeof buf));
	fprintf(out, "nodes:       %d, longest path %d\n", g->n_nodes, depth);
	for (int i = 0; i < n_ops; i++)
		fprintf(out, "  %-22s %d\n", ops[i].op, ops[i].count);
	fprintf(out, "parameters:  %lld\n", (long long)np_model_param_count(m));
	fprintf(out, "rectified layers: %d\n", ls->n);
	if (ls->n == 0)
		return;
	fprintf(out, "  %3s  %-28s %-18s %8s %10s  %s\n", "#", "rectifier", "kind",
	        "neurons", "weights", "producers");
	for (int i = 0; i < ls->n; i++) {
		const np_layer *L = &ls->v[i];
		fprintf(out, "  %3d  %-28s %-18s %8lld %10lld  ", i + 1, L->rectifier->name,
		        np_layer_kind_label(L), (long long)L->neurons,
		        (long long)L->n_prunable);
		for (int k = 0; k < L->n_producers; k++)
			fprintf(out, "%s%s", k ? ", " : "", L->producers[k]->name);
		fprintf(out, "%s\n", L->n_producers ? "" : "(none)");
	}
}

np_status np_inspect(const np_model *m, FILE *out, bool json, np_error *err)
{
	np_layers ls = {0};
	np_status st = np_find_layers(m, &ls, err);
	if (st != NP_OK) {
		np_layers_free(&ls);
		return st;
	}
	/* Everything that allocates comes before the first line printed: a
	 * failure prints nothing but the error. */
	int n_ops = 0;
	np_op_count *ops = np_count_ops(m->graph, &n_ops);
	int depth = np_graph_depth(m->graph);
	np_value **in = malloc(sizeof(np_value *) * ((size_t)m->graph->n_inputs + 1));
	if (!ops || depth < 0 || !in)
		st = np_fail(err, NP_ERR_NOMEM, "out of memory");
	else if (json)
		np_inspect_json(m, &ls, ops, n_ops, depth, in, out);
	else
		np_inspect_text(m, &ls, ops, n_ops, depth, out);
	free(in);
	free(ops);
	np_layers_free(&ls);
	return st;
}
