/* layers.c - find rectified layers; see layers.h. */
#include "layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *np_rect_kind_name(np_rect_kind k)
{
	static const char *names[] = {"relu", "leaky_relu", "prelu", "clip",
	                              "gelu", "silu"};
	return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

static bool np_op_is(const np_node *n, const char *op)
{
	return n && (!n->domain[0] || strcmp(n->domain, "ai.onnx") == 0) &&
	       strcmp(n->op_type, op) == 0;
}

static bool np_is_float_dtype(int dt)
{
	return dt == NP_FLOAT || dt == NP_DOUBLE || dt == NP_FLOAT16 ||
	       dt == NP_BFLOAT16;
}

/* First element of a float/double/int tensor as double. */
static bool np_tensor_scalar(const np_tensor *t, double *out)
{
	if (!t || t->nelem != 1 || !t->data)
		return false;
	switch (t->dtype) {
	case NP_FLOAT: *out = *(const float *)t->data; return true;
	case NP_DOUBLE: *out = *(const double *)t->data; return true;
	case NP_INT64: *out = (double)*(const int64_t *)t->data; return true;
	case NP_INT32: *out = *(const int32_t *)t->data; return true;
	default: return false;
	}
}

bool np_value_scalar(const np_value *v, double *out)
{
	if (!v)
		return false;
	if (v->init)
		return np_tensor_scalar(v->init, out);
	const np_node *p = v->producer;
	if (np_op_is(p, "Constant")) {
		const np_attr *a = np_node_attr(p, "value");
		if (a && a->type == NP_ATTR_TENSOR)
			return np_tensor_scalar(a->t, out);
		if ((a = np_node_attr(p, "value_float")) && a->type == NP_ATTR_FLOAT) {
			*out = a->f;
			return true;
		}
	}
	return false;
}

int64_t np_model_param_count(const np_model *m)
{
	const np_graph *g = m->graph;
	int64_t total = 0;
	for (int i = 0; i < g->n_initializers; i++) {
		const np_value *v = g->initializers[i];
		if (!np_is_float_dtype(v->init->dtype))
			continue;
		bool stat = false;
		for (int u = 0; u < v->n_uses; u++)
			if (np_op_is(v->uses[u].node, "BatchNormalization") &&
			    v->uses[u].index >= 3)
				stat = true;
		if (stat)
			continue;
		total += v->init->nelem;
		/* torch.onnx.export stores equal parameters once and recreates
		 * the others with Identity: each copy is a parameter of its own. */
		for (int u = 0; u < v->n_uses; u++)
			if (np_op_is(v->uses[u].node, "Identity"))
				total += v->init->nelem;
	}
	return total;
}

/* ----------------------------------------------------- rectifiers */

/* If n (with its neighbours) is a rectifier, fill kind/z/out/pattern. */
static bool np_match_rectifier(const np_model *m, np_node *n, np_layer *L)
{
	memset(L, 0, sizeof *L);
	L->rectifier = n;
	L->out = n->n_outputs > 0 ? n->outputs[0] : NULL;
	L->z = n->n_inputs > 0 ? n->inputs[0] : NULL;
	if (!L->z || !L->out)
		return false;
	if (np_op_is(n, "Relu")) {
		L->kind = NP_RECT_RELU;
	} else if (np_op_is(n, "LeakyRelu")) {
		L->kind = NP_RECT_LEAKY_RELU;
		L->slope = np_node_attr_float(n, "alpha", 0.01f);
	} else if (np_op_is(n, "PRelu")) {
		L->kind = NP_RECT_PRELU;
	} else if (np_op_is(n, "Gelu")) {
		L->kind = NP_RECT_GELU;
	} else if (np_op_is(n, "Clip")) {
		double lo = -INFINITY, hi = INFINITY;
		if (np_model_opset(m, "") < 11) {
			lo = np_node_attr_float(n, "min", -INFINITY);
			hi = np_node_attr_float(n, "max", INFINITY);
		} else {
			if (n->n_inputs > 1 && n->inputs[1] && !np_value_scalar(n->inputs[1], &lo))
				return false;
			if (n->n_inputs > 2 && n->inputs[2] && !np_value_scalar(n->inputs[2], &hi))
				return false;
		}
		if (lo != 0.0)
			return false;
		L->kind = NP_RECT_CLIP;
		L->clip_min = (float)lo;
		L->clip_max = (float)hi;
	} else if (np_op_is(n, "Mul") && n->n_inputs == 2) {
		/* SiLU: Mul(x, Sigmoid(x)) in either order. */
		for (int k = 0; k < 2; k++) {
			np_value *x = n->inputs[k], *s = n->inputs[1 - k];
			np_node *sig = s ? s->producer : NULL;
			if (np_op_is(sig, "Sigmoid") && sig->inputs[0] == x &&
			    s->n_uses == 1 && !s->is_output) {
				L->kind = NP_RECT_SILU;
				L->z = x;
				L->pattern = malloc(sizeof(np_node *) * 2);
				if (!L->pattern)
					return false;
				L->pattern[0] = sig;
				L->pattern[1] = n;
				L->n_pattern = 2;
				return true;
			}
		}
		return false;
	} else {
		return false;
	}
	L->pattern = malloc(sizeof(np_node *));
	if (!L->pattern)
		return false;
	L->pattern[0] = n;
	L->n_pattern = 1;
	return true;
}

/* ------------------------------------------------------- producers */

static bool np_is_linear_producer(const np_node *n)
{
	return np_op_is(n, "Conv") || np_op_is(n, "Gemm") || np_op_is(n, "MatMul");
}

/* The node's weight initializer, or NULL (e.g. MatMul of two activations). */
static np_value *np_producer_weight(const np_node *n)
{
	if (np_op_is(n, "MatMul")) {
		for (int k = 1; k >= 0; k--)
			if (n->n_inputs > k && n->inputs[k] && n->inputs[k]->init)
				return n->inputs[k];
		return NULL;
	}
	return n->n_inputs > 1 && n->inputs[1] && n->inputs[1]->init ? n->inputs[1]
	                                                          : NULL;
}

/* Output channels of a producer, from its weight's shape. */
static int64_t np_producer_channels(const np_node *n)
{
	const np_value *w = np_producer_weight(n);
	if (!w || w->init->rank < 2)
		return -1;
	const np_tensor *t = w->init;
	if (np_op_is(n, "Conv"))
		return t->dims[0];
	if (np_op_is(n, "Gemm"))
		return np_node_attr_int(n, "transB", 0) ? t->dims[0] : t->dims[1];
	/* MatMul: x @ W gives W's last dim; W @ x is not a feature map. */
	return w == n->inputs[1] ? t->dims[t->rank - 1] : -1;
}

static bool np_walk_through(const np_node *n)
{
	return np_op_is(n, "BatchNormalization") || np_op_is(n, "Identity") ||
	       np_op_is(n, "Dropout") || np_op_is(n, "Flatten") ||
	       np_op_is(n, "Reshape");
}

typedef struct np_walk {
	np_node **stack;
	int n, cap;
	bool *seen;            /* per node id */
} np_walk;

static bool np_walk_push(np_walk *w, np_node *n)
{
	if (!n || w->seen[n->id])
		return true;
	w->seen[n->id] = true;
	if (w->n == w->cap) {
		int ncap = w->cap ? w->cap * 2 : 16;
		np_node **s = realloc(w->stack, sizeof(np_node *) * (size_t)ncap);
		if (!s)
			return false;
		w->stack = s;
		w->cap = ncap;
	}
	w->stack[w->n++] = n;
	return true;
}

static int np_cmp_node_id(const void *a, const void *b)
{
	int x = (*(np_node *const *)a)->id, y = (*(np_node *const *)b)->id;
	return (x > y) - (x < y);
}

/* Collect the producers of L->z, graph order. */
static np_status np_find_producers(const np_graph *g, np_layer *L, np_error *err)
{
	np_walk w = {0};
	w.seen = calloc((size_t)g->n_nodes + 1, sizeof(bool));
	L->producers = malloc(sizeof(np_node *) * ((size_t)g->n_nodes + 1));
	if (!w.seen || !L->producers)
		goto oom;
	if (!np_walk_push(&w, L->z->producer))
		goto oom;
	while (w.n > 0) {
		np_node *n = w.stack[--w.n];
		if (np_is_linear_producer(n)) {
			L->producers[L->n_producers++] = n;
		} else if (np_op_is(n, "Add")) {
			for (int k = 0; k < n->n_inputs; k++)
				if (n->inputs[k] && !np_walk_push(&w, n->inputs[k]->producer))
					goto oom;
		} else if (np_walk_through(n) && n->inputs[0]) {
			if (!np_walk_push(&w, n->inputs[0]->producer))
				goto oom;
		}
	}
	qsort(L->producers, (size_t)L->n_producers, sizeof(np_node *), np_cmp_node_id);
	free(w.stack);
	free(w.seen);
	return NP_OK;
oom:
	free(w.stack);
	free(w.seen);
	return np_fail(err, NP_ERR_NOMEM, "out of memory finding layers");
}

/* Channels of z from its declared shape (value_info), -1 if unknown. */
static int64_t np_value_channels(const np_value *z)
{
	if (!z->has_shape || z->rank < 2)
		return -1;
	return z->dims[1].value;   /* NCHW: axis 1; [N,F]: the last, also 1 */
}

np_status np_find_layers(const np_model *m, np_layers *out, np_error *err)
{
	const np_graph *g = m->graph;
	out->v = calloc((size_t)g->n_nodes + 1, sizeof(np_layer));
	out->n = 0;
	bool *claimed = calloc((size_t)g->n_values + 1, sizeof(bool));
	if (!out->v || !claimed) {
		free(claimed);
		return np_fail(err, NP_ERR_NOMEM, "out of memory finding layers");
	}
	for (int i = 0; i < g->n_nodes; i++) {
		np_layer *L = &out->v[out->n];
		if (!np_match_rectifier(m, g->nodes[i], L))
			continue;
		out->n++;
		np_status st = np_find_producers(g, L, err);
		if (st != NP_OK) {
			free(claimed);
			return st;
		}
		L->weights = malloc(sizeof(np_value *) * ((size_t)L->n_producers + 1));
		if (!L->weights) {
			free(claimed);
			return np_fail(err, NP_ERR_NOMEM, "out of memory finding layers");
		}
		L->neurons = -1;
		for (int k = 0; k < L->n_producers; k++) {
			np_value *wv = np_producer_weight(L->producers[k]);
			if (L->neurons < 0)
				L->neurons = np_producer_channels(L->producers[k]);
			if (!wv || claimed[wv->id] || !np_is_float_dtype(wv->init->dtype))
				continue;
			claimed[wv->id] = true;
			L->weights[L->n_weights++] = wv;
			L->n_prunable += wv->init->nelem;
		}
		if (L->neurons < 0)
			L->neurons = np_value_channels(L->z);
	}
	free(claimed);
	return NP_OK;
}

void np_layers_free(np_layers *ls)
{
	for (int i = 0; i < ls->n; i++) {
		free(ls->v[i].pattern);
		free(ls->v[i].producers);
		free(ls->v[i].weights);
	}
	free(ls->v);
	ls->v = NULL;
	ls->n = 0;
}
