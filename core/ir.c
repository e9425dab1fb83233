/* ir.c - the IR's model, graph and use-def mutation API; see ir.h. */
#include "ir.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- dtypes */

static const struct {
	const char *name;
	size_t size;
} np_dtypes[NP_DTYPE_MAX + 1] = {
	[NP_UNDEFINED] = {"undefined", 0}, [NP_FLOAT] = {"float", 4},
	[NP_UINT8] = {"uint8", 1},         [NP_INT8] = {"int8", 1},
	[NP_UINT16] = {"uint16", 2},       [NP_INT16] = {"int16", 2},
	[NP_INT32] = {"int32", 4},         [NP_INT64] = {"int64", 8},
	[NP_STRING] = {"string", 0},       [NP_BOOL] = {"bool", 1},
	[NP_FLOAT16] = {"float16", 2},     [NP_DOUBLE] = {"double", 8},
	[NP_UINT32] = {"uint32", 4},       [NP_UINT64] = {"uint64", 8},
	[NP_COMPLEX64] = {"complex64", 8}, [NP_COMPLEX128] = {"complex128", 16},
	[NP_BFLOAT16] = {"bfloat16", 2},
};

size_t np_dtype_size(int dtype)
{
	return dtype >= 0 && dtype <= NP_DTYPE_MAX ? np_dtypes[dtype].size : 0;
}

const char *np_dtype_name(int dtype)
{
	return dtype >= 0 && dtype <= NP_DTYPE_MAX ? np_dtypes[dtype].name
	                                           : "unknown";
}

int64_t np_dims_product(const int64_t *dims, int rank)
{
	int64_t n = 1;
	for (int i = 0; i < rank; i++) {
		if (dims[i] < 0)
			return -1;
		if (dims[i] != 0 && n > INT64_MAX / dims[i])
			return -1;
		n *= dims[i];
	}
	return n;
}

/* -------------------------------------------------------------- model */

np_model *np_model_new(void)
{
	np_arena *a = np_arena_new();
	if (!a)
		return NULL;
	np_model *m = np_arena_alloc(a, sizeof *m);
	m->arena = a;
	m->graph = np_arena_alloc(a, sizeof *m->graph);
	m->graph->model = m;
	return m;
}

void np_model_free(np_model *m)
{
	if (!m)
		return;
	for (np_tensor *t = m->tensors; t; t = t->next_in_model)
		free(t->data);
	np_arena_free(m->arena);
}

static bool np_is_default_domain(const char *d)
{
	return !d || !*d || strcmp(d, "ai.onnx") == 0;
}

int64_t np_model_opset(const np_model *m, const char *domain)
{
	bool dflt = np_is_default_domain(domain);
	for (int i = 0; i < m->n_opsets; i++) {
		const char *d = m->opsets[i].domain;
		if (dflt ? np_is_default_domain(d) : d && strcmp(d, domain) == 0)
			return m->opsets[i].version;
	}
	return 0;
}

void np_model_set_metadata(np_model *m, const char *key, const char *value)
{
	for (int i = 0; i < m->n_metadata; i++)
		if (strcmp(m->metadata[i].key, key) == 0) {
			m->metadata[i].value = np_arena_strdup(m->arena, value);
			return;
		}
	m->metadata = np_arena_grow(m->arena, m->metadata,
	                            sizeof(np_kv) * (size_t)m->n_metadata,
	                            sizeof(np_kv) * (size_t)(m->n_metadata + 1));
	m->metadata[m->n_metadata].key = np_arena_strdup(m->arena, key);
	m->metadata[m->n_metadata].value = np_arena_strdup(m->arena, value);
	m->n_metadata++;
}

const char *np_model_get_metadata(const np_model *m, const char *key)
{
	for (int i = 0; i < m->n_metadata; i++)
		if (strcmp(m->metadata[i].key, key) == 0)
			return m->metadata[i].value;
	return NULL;
}

np_tensor *np_model_new_tensor(np_model *m, int dtype, int rank,
                               const int64_t *dims, np_error *err)
{
	if (rank < 0 || rank > NP_MAX_RANK) {
		np_fail(err, NP_ERR_UNSUPPORTED, "tensor rank %d is over %d",
		        rank, NP_MAX_RANK);
		return NULL;
	}
	int64_t n = np_dims_product(dims, rank);
	size_t esize = np_dtype_size(dtype);
	if (n < 0 || (esize && (uint64_t)n > SIZE_MAX / esize)) {
		np_fail(err, NP_ERR_INVALID, "tensor dims overflow");
		return NULL;
	}
	np_tensor *t = np_arena_alloc(m->arena, sizeof *t);
	t->dtype = dtype;
	t->rank = rank;
	t->dims = np_arena_memdup(m->arena, dims, sizeof(int64_t) * (size_t)rank);
	t->nelem = n;
	if (dtype == NP_STRING) {
		t->strings = np_arena_alloc(m->arena, sizeof(uint8_t *) * (size_t)n);
		t->string_lens = np_arena_alloc(m->arena, sizeof(size_t) * (size_t)n);
	} else if (esize && n > 0) {
		t->nbytes = (size_t)n * esize;
		t->data = calloc(1, t->nbytes);
		if (!t->data) {
			np_fail(err, NP_ERR_NOMEM, "out of memory for a tensor of %zu bytes",
			        t->nbytes);
			return NULL;
		}
	}
	t->next_in_model = m->tensors;
	m->tensors = t;
	return t;
}

void np_tensor_set_data(np_tensor *t, void *data, size_t nbytes)
{
	if (t->data != data)
		free(t->data);
	t->data = data;
	t->nbytes = nbytes;
}

/* -------------------------------------------------------- value names */

static uint64_t np_hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;     /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static void np_hash_put(np_graph *g, np_value *v)
{
	size_t mask = g->hash_cap - 1;
	size_t i = (size_t)np_hash_str(v->name) & mask;
	while (g->hash[i])
		i = (i + 1) & mask;
	g->hash[i] = v;
}

static void np_hash_grow(np_graph *g)
{
	size_t cap = g->hash_cap ? g->hash_cap * 2 : 64;
	g->hash = np_arena_alloc(g->model->arena, sizeof(np_value *) * cap);
	g->hash_cap = cap;
	for (int i = 0; i < g->n_values; i++)
		np_hash_put(g, g->values[i]);
}

np_value *np_graph_find(const np_graph *g, const char *name)
{
	if (!g->hash_cap || !name)
		return NULL;
	size_t mask = g->hash_cap - 1;
	for (size_t i = (size_t)np_hash_str(name) & mask; g->hash[i];
	     i = (i + 1) & mask)
		if (strcmp(g->hash[i]->name, name) == 0)
			return g->hash[i];
	return NULL;
}

/* Append p to an arena array *arr of *n elements with capacity *cap. */
static void np_push(np_arena *a, void ***arr, int *n, int *cap, void *p)
{
	if (*n == *cap) {
		int ncap = *cap ? *cap * 2 : 8;
		*arr = np_arena_grow(a, *arr, sizeof(void *) * (size_t)*cap,
		                     sizeof(void *) * (size_t)ncap);
		*cap = ncap;
	}
	(*arr)[(*n)++] = p;
}

np_value *np_graph_new_value(np_graph *g, const char *name, np_error *err)
{
	if (!name || !*name) {
		np_fail(err, NP_ERR_INVALID, "value with an empty name");
		return NULL;
	}
	if (np_graph_find(g, name)) {
		np_fail(err, NP_ERR_INVALID, "value '%s' is defined twice", name);
		return NULL;
	}
	np_value *v = np_arena_alloc(g->model->arena, sizeof *v);
	v->name = np_arena_strdup(g->model->arena, name);
	v->id = g->n_values;
	np_push(g->model->arena, (void ***)&g->values, &g->n_values,
	        &g->cap_values, v);
	if ((size_t)g->n_values * 2 > g->hash_cap)
		np_hash_grow(g);
	else
		np_hash_put(g, v);
	return v;
}

np_value *np_graph_new_unique_value(np_graph *g, const char *base)
{
	if (!np_graph_find(g, base))
		return np_graph_new_value(g, base, NULL);
	for (int i = 1;; i++) {
		char *name = np_arena_printf(g->model->arena, "%s_%d", base, i);
		if (!np_graph_find(g, name))
			return np_graph_new_value(g, name, NULL);
	}
}

static bool np_node_name_used(const np_graph *g, const char *name)
{
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i]->name && strcmp(g->nodes[i]->name, name) == 0)
			return true;
	return false;
}

const char *np_graph_unique_node_name(np_graph *g, const char *base)
{
	if (!np_node_name_used(g, base))
		return np_arena_strdup(g->model->arena, base);
	for (int i = 1;; i++) {
		char *name = np_arena_printf(g->model->arena, "%s_%d", base, i);
		if (!np_node_name_used(g, name))
			return name;
	}
}

np_value *np_graph_add_initializer(np_graph *g, const char *name,
                                   np_tensor *t, np_error *err)
{
	np_value *v = np_graph_new_value(g, name, err);
	if (!v)
		return NULL;
	t->name = v->name;
	v->init = t;
	v->has_type = true;
	v->has_shape = true;
	v->dtype = t->dtype;
	v->rank = t->rank;
	v->dims = np_arena_alloc(g->model->arena, sizeof(np_dim) * (size_t)(t->rank + 1));
	for (int i = 0; i < t->rank; i++)
		v->dims[i].value = t->dims[i];
	np_push(g->model->arena, (void ***)&g->initializers, &g->n_initializers,
	        &g->cap_initializers, v);
	return v;
}

/* --------------------------------------------------------------- uses */

static void np_add_use(np_arena *a, np_value *v, np_node *n, int index)
{
	if (v->n_uses == v->cap_uses) {
		int ncap = v->cap_uses ? v->cap_uses * 2 : 4;
		v->uses = np_arena_grow(a, v->uses, sizeof(np_use) * (size_t)v->cap_uses,
		                        sizeof(np_use) * (size_t)ncap);
		v->cap_uses = ncap;
	}
	v->uses[v->n_uses++] = (np_use){n, index};
}

static void np_drop_use(np_value *v, const np_node *n, int index)
{
	for (int i = 0; i < v->n_uses; i++)
		if (v->uses[i].node == n && v->uses[i].index == index) {
			memmove(&v->uses[i], &v->uses[i + 1],
			        sizeof(np_use) * (size_t)(v->n_uses - i - 1));
			v->n_uses--;
			return;
		}
}

/* -------------------------------------------------------------- nodes */

np_node *np_graph_new_node(np_graph *g, const char *op_type,
                           const char *domain, const char *name,
                           np_value **in, int n_in,
                           np_value **out, int n_out)
{
	np_arena *a = g->model->arena;
	np_node *n = np_arena_alloc(a, sizeof *n);
	n->graph = g;
	n->op_type = np_arena_strdup(a, op_type);
	n->domain = np_arena_strdup(a, domain ? domain : "");
	n->name = name ? np_arena_strdup(a, name) : NULL;
	n->inputs = np_arena_alloc(a, sizeof(np_value *) * (size_t)(n_in + 1));
	if (n_in)
		memcpy(n->inputs, in, sizeof(np_value *) * (size_t)n_in);
	n->n_inputs = n_in;
	n->outputs = np_arena_alloc(a, sizeof(np_value *) * (size_t)(n_out + 1));
	if (n_out)
		memcpy(n->outputs, out, sizeof(np_value *) * (size_t)n_out);
	n->n_outputs = n_out;
	n->id = -1;
	return n;
}

static void np_renumber(np_graph *g, int from)
{
	for (int i = from; i < g->n_nodes; i++)
		g->nodes[i]->id = i;
}

void np_graph_insert_node(np_graph *g, np_node *n)
{
	np_arena *a = g->model->arena;
	int pos = g->n_nodes;
	for (int o = 0; o < n->n_outputs; o++) {
		np_value *v = n->outputs[o];
		if (!v)
			continue;
		v->producer = n;
		v->producer_index = o;
		for (int u = 0; u < v->n_uses; u++)
			if (v->uses[u].node->id >= 0 && v->uses[u].node->id < pos)
				pos = v->uses[u].node->id;
	}
	for (int i = 0; i < n->n_inputs; i++)
		if (n->inputs[i])
			np_add_use(a, n->inputs[i], n, i);
	for (int i = 0; i < n->n_implicit; i++)
		np_add_use(a, n->implicit[i], n, -1);
	if (g->n_nodes == g->cap_nodes) {
		int ncap = g->cap_nodes ? g->cap_nodes * 2 : 16;
		g->nodes = np_arena_grow(a, g->nodes, sizeof(np_node *) * (size_t)g->cap_nodes,
		                         sizeof(np_node *) * (size_t)ncap);
		g->cap_nodes = ncap;
	}
	memmove(&g->nodes[pos + 1], &g->nodes[pos],
	        sizeof(np_node *) * (size_t)(g->n_nodes - pos));
	g->nodes[pos] = n;
	g->n_nodes++;
	n->removed = false;
	np_renumber(g, pos);
}

void np_graph_remove_node(np_graph *g, np_node *n)
{
	if (n->removed || n->id < 0)
		return;
	for (int i = 0; i < n->n_inputs; i++)
		if (n->inputs[i])
			np_drop_use(n->inputs[i], n, i);
	for (int i = 0; i < n->n_implicit; i++)
		np_drop_use(n->implicit[i], n, -1);
	for (int o = 0; o < n->n_outputs; o++)
		if (n->outputs[o] && n->outputs[o]->producer == n)
			n->outputs[o]->producer = NULL;
	int pos = n->id;
	memmove(&g->nodes[pos], &g->nodes[pos + 1],
	        sizeof(np_node *) * (size_t)(g->n_nodes - pos - 1));
	g->n_nodes--;
	n->removed = true;
	n->id = -1;
	np_renumber(g, pos);
}

void np_node_set_input(np_node *n, int i, np_value *v)
{
	np_value *old = n->inputs[i];
	if (old == v)
		return;
	bool linked = n->id >= 0 && !n->removed;
	if (old && linked)
		np_drop_use(old, n, i);
	n->inputs[i] = v;
	if (v && linked)
		np_add_use(n->graph->model->arena, v, n, i);
}

void np_value_replace_uses(np_value *from, np_value *to)
{
	if (from == to)
		return;
	while (from->n_uses > 0) {
		np_use u = from->uses[from->n_uses - 1];
		if (u.index >= 0) {
			np_node_set_input(u.node, u.index, to);
		} else {
			for (int i = 0; i < u.node->n_implicit; i++)
				if (u.node->implicit[i] == from)
					u.node->implicit[i] = to;
			from->n_uses--;
			np_add_use(u.node->graph->model->arena, to, u.node, -1);
		}
	}
}

void np_node_replace_output(np_node *n, np_value *from, np_value *to)
{
	np_graph *g = n->graph;
	np_graph_remove_node(g, n);
	np_value_replace_uses(from, to);
	for (int k = 0; k < n->n_outputs; k++)
		if (n->outputs[k] == from)
			n->outputs[k] = to;
	np_graph_insert_node(g, n);
}

/* ---------------------------------------------------------- ordering */

/* Min-heap of node indices, so that ready nodes leave in original order. */
typedef struct np_heap {
	int *a;
	int n;
} np_heap;

static void np_heap_push(np_heap *h, int x)
{
	int i = h->n++;
	h->a[i] = x;
	while (i > 0 && h->a[(i - 1) / 2] > h->a[i]) {
		int p = (i - 1) / 2, t = h->a[p];
		h->a[p] = h->a[i];
		h->a[i] = t;
		i = p;
	}
}

static int np_heap_pop(np_heap *h)
{
	int top = h->a[0];
	h->a[0] = h->a[--h->n];
	for (int i = 0;;) {
		int l = 2 * i + 1, r = l + 1, m = i;
		if (l < h->n && h->a[l] < h->a[m])
			m = l;
		if (r < h->n && h->a[r] < h->a[m])
			m = r;
		if (m == i)
			break;
		int t = h->a[m];
		h->a[m] = h->a[i];
		h->a[i] = t;
		i = m;
	}
	return top;
}

/* Producers inside the graph that node n waits for (one per input slot
 * and implicit use: the count matches the decrements below). */
static int np_pending_inputs(const np_node *n)
{
	int k = 0;
	for (int i = 0; i < n->n_inputs; i++)
		if (n->inputs[i] && n->inputs[i]->producer)
			k++;
	for (int i = 0; i < n->n_implicit; i++)
		if (n->implicit[i]->producer)
			k++;
	return k;
}

np_status np_graph_toposort(np_graph *g, np_error *err)
{
	int n = g->n_nodes;
	if (n == 0)
		return NP_OK;
	int *pending = calloc((size_t)n, sizeof(int));
	np_heap heap = {calloc((size_t)n, sizeof(int)), 0};
	np_node **order = calloc((size_t)n, sizeof(np_node *));
	if (!pending || !heap.a || !order) {
		free(pending), free(heap.a), free(order);
		return np_fail(err, NP_ERR_NOMEM, "out of memory sorting the graph");
	}
	np_renumber(g, 0);
	for (int i = 0; i < n; i++)
		if ((pending[i] = np_pending_inputs(g->nodes[i])) == 0)
			np_heap_push(&heap, i);
	int done = 0;
	while (heap.n > 0) {
		np_node *nd = g->nodes[np_heap_pop(&heap)];
		order[done++] = nd;
		for (int o = 0; o < nd->n_outputs; o++) {
			np_value *v = nd->outputs[o];
			if (!v || v->producer != nd)
				continue;
			for (int u = 0; u < v->n_uses; u++) {
				int c = v->uses[u].node->id;
				if (c >= 0 && --pending[c] == 0)
					np_heap_push(&heap, c);
			}
		}
	}
	np_status st = NP_OK;
	if (done < n) {
		for (int i = 0; i < n; i++)
			if (pending[i] > 0) {
				st = np_fail(err, NP_ERR_INVALID,
				             "graph has a cycle through node %s (op %s)",
				             g->nodes[i]->name ? g->nodes[i]->name : "?",
				             g->nodes[i]->op_type);
				break;
			}
	} else {
		memcpy(g->nodes, order, sizeof(np_node *) * (size_t)n);
		np_renumber(g, 0);
	}
	free(pending), free(heap.a), free(order);
	return st;
}

/* -------------------------------------------------- dead-code removal */

static void np_mark_live(np_value *v, bool *live)
{
	/* Iterative walk: graphs can be thousands of nodes deep. */
	np_node *n = v->producer;
	if (!n || live[n->id])
		return;
	int cap = 64, top = 0;
	np_node **stack = malloc(sizeof(np_node *) * (size_t)cap);
	if (!stack)
		return;
	live[n->id] = true;
	stack[top++] = n;
	while (top > 0) {
		np_node *cur = stack[--top];
		for (int i = 0; i < cur->n_inputs + cur->n_implicit; i++) {
			np_value *in = i < cur->n_inputs ? cur->inputs[i]
			                                 : cur->implicit[i - cur->n_inputs];
			np_node *p = in ? in->producer : NULL;
			if (!p || live[p->id])
				continue;
			live[p->id] = true;
			if (top == cap) {
				cap *= 2;
				np_node **s2 = realloc(stack, sizeof(np_node *) * (size_t)cap);
				if (!s2)
					break;
				stack = s2;
			}
			stack[top++] = p;
		}
	}
	free(stack);
}

int np_graph_dead_code(np_graph *g)
{
	int removed = 0;
	if (g->n_nodes > 0) {
		bool *live = calloc((size_t)g->n_nodes, sizeof(bool));
		if (!live)
			return 0;
		np_renumber(g, 0);
		for (int i = 0; i < g->n_outputs; i++)
			np_mark_live(g->outputs[i], live);
		/* Remove from the back so producers lose their uses first. */
		int n = g->n_nodes;
		np_node **doomed = malloc(sizeof(np_node *) * (size_t)n);
		int k = 0;
		for (int i = 0; doomed && i < n; i++)
			if (!live[i])
				doomed[k++] = g->nodes[i];
		for (int i = k - 1; i >= 0; i--)
			np_graph_remove_node(g, doomed[i]);
		removed = k;
		free(doomed);
		free(live);
	}
	int w = 0;
	for (int i = 0; i < g->n_initializers; i++) {
		np_value *v = g->initializers[i];
		if (v->n_uses > 0 || v->is_output || v->is_input)
			g->initializers[w++] = v;
	}
	g->n_initializers = w;
	w = 0;
	for (int i = 0; i < g->n_value_info; i++) {
		np_value *v = g->value_info[i];
		if (v->producer || v->is_input || v->init)
			g->value_info[w++] = v;
	}
	g->n_value_info = w;
	return removed;
}

/* ---------------------------------------------------------- checking */

static bool np_has_use(const np_value *v, const np_node *n, int index)
{
	for (int i = 0; i < v->n_uses; i++)
		if (v->uses[i].node == n && v->uses[i].index == index)
			return true;
	return false;
}

static bool np_is_defined_before(const np_value *v, const np_node *n)
{
	if (v->producer)
		return !v->producer->removed && v->producer->id < n->id;
	return v->is_input || v->init || v->is_sparse_init;
}

np_status np_graph_verify(const np_graph *g, np_error *err)
{
	for (int i = 0; i < g->n_nodes; i++) {
		const np_node *n = g->nodes[i];
		const char *nm = n->name ? n->name : "?";
		if (n->id != i || n->removed)
			return np_fail(err, NP_ERR_INVALID, "node list out of sync (node %s, op %s)",
			               nm, n->op_type);
		for (int k = 0; k < n->n_inputs; k++) {
			const np_value *v = n->inputs[k];
			if (!v)
				continue;
			if (!np_has_use(v, n, k))
				return np_fail(err, NP_ERR_INVALID,
				               "input '%s' lacks its use record (node %s, op %s)",
				               v->name, nm, n->op_type);
			if (!np_is_defined_before(v, n))
				return np_fail(err, NP_ERR_INVALID,
				               "input '%s' is not defined before use (node %s, op %s)",
				               v->name, nm, n->op_type);
		}
		for (int k = 0; k < n->n_outputs; k++)
			if (n->outputs[k] && n->outputs[k]->producer != n)
				return np_fail(err, NP_ERR_INVALID,
				               "output '%s' has another producer (node %s, op %s)",
				               n->outputs[k]->name, nm, n->op_type);
	}
	for (int i = 0; i < g->n_values; i++) {
		const np_value *v = g->values[i];
		if (np_graph_find(g, v->name) != v)
			return np_fail(err, NP_ERR_INVALID, "value '%s' is not findable by name",
			               v->name);
		for (int u = 0; u < v->n_uses; u++) {
			const np_node *n = v->uses[u].node;
			int k = v->uses[u].index;
			bool ok = !n->removed && (k < 0 || (k < n->n_inputs && n->inputs[k] == v));
			if (!ok)
				return np_fail(err, NP_ERR_INVALID, "value '%s' has a stale use", v->name);
		}
	}
	for (int i = 0; i < g->n_outputs; i++) {
		const np_value *v = g->outputs[i];
		if (!v->producer && !v->is_input && !v->init && !v->is_sparse_init)
			return np_fail(err, NP_ERR_INVALID,
			               "graph output '%s' is not produced by any node, input or initializer",
			               v->name);
	}
	return NP_OK;
}

int np_graph_depth(const np_graph *g)
{
	if (g->n_nodes == 0)
		return 0;
	int *depth = calloc((size_t)g->n_nodes, sizeof(int));
	if (!depth)
		return -1;
	for (int i = 0; i < g->n_nodes; i++) {
		const np_node *n = g->nodes[i];
		int d = 0;
		for (int k = 0; k < n->n_inputs + n->n_implicit; k++) {
			const np_value *v = k < n->n_inputs ? n->inputs[k]
			                                    : n->implicit[k - n->n_inputs];
			if (v && v->producer && v->producer->id < i && depth[v->producer->id] > d)
				d = depth[v->producer->id];
		}
		depth[i] = d + 1;
	}
	int best = 0;
	for (int i = 0; i < g->n_outputs; i++) {
		const np_node *p = g->outputs[i]->producer;
		if (p && depth[p->id] > best)
			best = depth[p->id];
	}
	free(depth);
	return best;
}

/* --------------------------------------------------------- attributes */

const np_attr *np_node_attr(const np_node *n, const char *name)
{
	for (int i = 0; i < n->n_attrs; i++)
		if (strcmp(n->attrs[i].name, name) == 0)
			return &n->attrs[i];
	return NULL;
}

int64_t np_node_attr_int(const np_node *n, const char *name, int64_t dflt)
{
	const np_attr *a = np_node_attr(n, name);
	return a && a->type == NP_ATTR_INT ? a->i : dflt;
}

float np_node_attr_float(const np_node *n, const char *name, float dflt)
{
	const np_attr *a = np_node_attr(n, name);
	return a && a->type == NP_ATTR_FLOAT ? a->f : dflt;
}

const char *np_node_attr_string(const np_node *n, const char *name,
                                const char *dflt)
{
	const np_attr *a = np_node_attr(n, name);
	if (!a || a->type != NP_ATTR_STRING)
		return dflt;
	char *s = np_arena_alloc(n->graph->model->arena, a->s.len + 1);
	if (a->s.len)
		memcpy(s, a->s.data, a->s.len);
	return s;
}

const int64_t *np_node_attr_ints(const np_node *n, const char *name,
                                 int *n_out)
{
	const np_attr *a = np_node_attr(n, name);
	if (!a || a->type != NP_ATTR_INTS) {
		*n_out = 0;
		return NULL;
	}
	*n_out = a->n;
	return a->ints;
}

/* The attribute called name, created (appended) if absent, reset. */
static np_attr *np_attr_slot(np_node *n, const char *name, int type)
{
	np_arena *a = n->graph->model->arena;
	np_attr *at = (np_attr *)np_node_attr(n, name);
	if (!at) {
		n->attrs = np_arena_grow(a, n->attrs, sizeof(np_attr) * (size_t)n->n_attrs,
		                         sizeof(np_attr) * (size_t)(n->n_attrs + 1));
		at = &n->attrs[n->n_attrs++];
	}
	memset(at, 0, sizeof *at);
	at->name = np_arena_strdup(a, name);
	at->type = type;
	return at;
}

void np_node_set_attr_int(np_node *n, const char *name, int64_t v)
{
	np_attr_slot(n, name, NP_ATTR_INT)->i = v;
}

void np_node_set_attr_float(np_node *n, const char *name, float v)
{
	np_attr_slot(n, name, NP_ATTR_FLOAT)->f = v;
}

void np_node_set_attr_ints(np_node *n, const char *name,
                           const int64_t *v, int count)
{
	np_attr *at = np_attr_slot(n, name, NP_ATTR_INTS);
	at->n = count;
	at->ints = np_arena_memdup(n->graph->model->arena, v,
	                           sizeof(int64_t) * (size_t)count);
}

void np_node_set_attr_string(np_node *n, const char *name, const char *v)
{
	np_attr *at = np_attr_slot(n, name, NP_ATTR_STRING);
	at->s.len = strlen(v);
	at->s.data = np_arena_memdup(n->graph->model->arena, v, at->s.len);
}

void np_node_remove_attr(np_node *n, const char *name)
{
	const np_attr *at = np_node_attr(n, name);
	if (!at)
		return;
	int i = (int)(at - n->attrs);
	memmove(&n->attrs[i], &n->attrs[i + 1],
	        sizeof(np_attr) * (size_t)(n->n_attrs - i - 1));
	n->n_attrs--;
}
