/* layers.c - find rectified layers; see layers.h. */
#include "layers.h"

#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *np_rect_kind_name(np_rect_kind k)
{
	static const char *names[] = {"relu", "leaky_relu", "prelu", "clip",
	                              "gelu", "silu"};
	return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
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
	if (np_node_kind(p) == NP_OPK_Constant) {
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
		for (int u = 0; u < v->n_uses; u++) {
			const np_op *op = np_node_op(v->uses[u].node);
			stat |= op && np_op_input_bit(op->state, v->uses[u].index);
		}
		if (stat)
			continue;
		total += v->init->nelem;
		/* torch.onnx.export stores equal parameters once and recreates
		 * the others with Identity: each copy is a parameter of its own. */
		for (int u = 0; u < v->n_uses; u++)
			if (np_node_kind(v->uses[u].node) == NP_OPK_Identity)
				total += v->init->nelem;
	}
	return total;
}

/* ----------------------------------------------------- rectifiers */

const char *np_layer_kind_label(const np_layer *L)
{
	switch (L->form) {
	case NP_FORM_ERF: return "gelu(erf pattern)";
	case NP_FORM_TANH: return "gelu(tanh pattern)";
	case NP_FORM_SIGMOID: return "silu(pattern)";
	case NP_FORM_OP: break;
	}
	if (L->kind == NP_RECT_CLIP)
		return L->clip_max == 6.0f ? "relu6" : "clip";
	if (L->kind == NP_RECT_GELU &&
	    strcmp(np_node_attr_string(L->rectifier, "approximate", "none"), "tanh") == 0)
		return "gelu(tanh)";
	return np_rect_kind_name(L->kind);
}

/* Nodes of a decomposed rectifier being matched; the root (the node
 * producing the activation) is nodes[0]. */
#define NP_PAT_MAX 12

typedef struct np_pat {
	np_node *nodes[NP_PAT_MAX];
	int n;
} np_pat;

static bool np_pat_add(np_pat *P, np_node *n)
{
	for (int i = 0; i < P->n; i++)
		if (P->nodes[i] == n)
			return true;
	if (P->n == NP_PAT_MAX)
		return false;
	P->nodes[P->n++] = n;
	return true;
}

static bool np_pat_has(const np_pat *P, const np_node *n)
{
	for (int i = 0; i < P->n; i++)
		if (P->nodes[i] == n)
			return true;
	return false;
}

/* Is v a scalar constant equal to want?  Exporters write the constants
 * of GELU rounded to float (1.4142135, 0.7978846) or as double. */
static bool np_is_const(const np_value *v, double want)
{
	double x;
	return np_value_scalar(v, &x) && fabs(x - want) <= 1e-5 * fabs(want);
}

/* v's producer if it is a one-output op node of the pattern kind. */
static np_node *np_producer_op(const np_value *v, np_op_kind op, int n_in)
{
	np_node *p = v ? v->producer : NULL;
	return np_node_kind(p) == op && p->n_inputs == n_in && p->n_outputs == 1 &&
	       p->outputs[0] == v ? p : NULL;
}

/* The other operand of a binary node (op) one of whose operands is the
 * constant c: either position for Mul/Add, the divisor for Div. */
static np_value *np_const_operand(np_node *n, np_op_kind op, double c)
{
	if (np_node_kind(n) != op || n->n_inputs != 2)
		return NULL;
	if (np_is_const(n->inputs[1], c))
		return n->inputs[0];
	if (op != NP_OPK_Div && np_is_const(n->inputs[0], c))
		return n->inputs[1];
	return NULL;
}

/* v == x^3 as Pow(x, 3), Mul(x, Mul(x, x)) or Mul(Mul(x, x), x). */
static bool np_match_cube(np_value *v, np_value *x, np_pat *P)
{
	np_node *n = np_producer_op(v, NP_OPK_Pow, 2);
	if (n)
		return n->inputs[0] == x && np_is_const(n->inputs[1], 3.0) && np_pat_add(P, n);
	if (!(n = np_producer_op(v, NP_OPK_Mul, 2)))
		return false;
	for (int k = 0; k < 2; k++) {
		np_node *sq = np_producer_op(n->inputs[1 - k], NP_OPK_Mul, 2);
		if (n->inputs[k] == x && sq && sq->inputs[0] == x && sq->inputs[1] == x)
			return np_pat_add(P, n) && np_pat_add(P, sq);
	}
	return false;
}

/* arg == sqrt(2/pi) * (x + 0.044715 * x^3); x is found here.  NULL if
 * not. */
static np_value *np_match_tanh_arg(np_value *arg, np_pat *P)
{
	np_node *m = np_producer_op(arg, NP_OPK_Mul, 2);
	np_value *s = np_const_operand(m, NP_OPK_Mul, 0.7978845608028654);
	np_node *a = np_producer_op(s, NP_OPK_Add, 2);
	if (!a)
		return NULL;
	for (int k = 0; k < 2; k++) {
		np_value *x = a->inputs[k];
		np_node *c = np_producer_op(a->inputs[1 - k], NP_OPK_Mul, 2);
		np_value *cube = np_const_operand(c, NP_OPK_Mul, 0.044715);
		if (cube && np_match_cube(cube, x, P))
			return np_pat_add(P, m) && np_pat_add(P, a) && np_pat_add(P, c) ? x : NULL;
	}
	return NULL;
}

/* b == 1 + Erf(x / sqrt 2) (or x * 1/sqrt 2), or 1 + Tanh(tanh arg);
 * x is found here, *form set.  NULL if not. */
static np_value *np_match_bracket(np_value *b, np_pat *P, np_rect_form *form)
{
	np_node *add = np_producer_op(b, NP_OPK_Add, 2);
	np_value *t = np_const_operand(add, NP_OPK_Add, 1.0);
	np_node *f = NULL;
	np_value *x = NULL;
	if ((f = np_producer_op(t, NP_OPK_Erf, 1)) != NULL) {
		np_value *arg = f->inputs[0];
		np_node *d = np_producer_op(arg, NP_OPK_Div, 2);
		np_node *m = np_producer_op(arg, NP_OPK_Mul, 2);
		x = d ? np_const_operand(d, NP_OPK_Div, 1.4142135623730951)
		      : np_const_operand(m, NP_OPK_Mul, 0.7071067811865476);
		if (!x || !np_pat_add(P, d ? d : m))
			return NULL;
		*form = NP_FORM_ERF;
	} else if ((f = np_producer_op(t, NP_OPK_Tanh, 1)) != NULL) {
		x = np_match_tanh_arg(f->inputs[0], P);
		*form = NP_FORM_TANH;
	}
	return x && np_pat_add(P, f) && np_pat_add(P, add) ? x : NULL;
}

/* Values computed inside the pattern are read only inside it and are no
 * graph outputs: then the pattern is one function of x. */
static bool np_pat_private(const np_pat *P)
{
	for (int i = 1; i < P->n; i++) {
		const np_value *v = P->nodes[i]->outputs[0];
		if (v->is_output)
			return false;
		for (int u = 0; u < v->n_uses; u++)
			if (!np_pat_has(P, v->uses[u].node))
				return false;
	}
	return true;
}

/* Factors {a, b, c} of x * 0.5 * B: which is which, any order.  x is the
 * value the bracket B is a function of. */
static np_value *np_match_gelu_factors(np_value *const f[3], np_pat *P,
                                       np_rect_form *form)
{
	for (int ib = 0; ib < 3; ib++) {
		np_pat Q = *P;
		np_value *x = np_match_bracket(f[ib], &Q, form);
		np_value *o1 = f[(ib + 1) % 3], *o2 = f[(ib + 2) % 3];
		if (x && ((o1 == x && np_is_const(o2, 0.5)) ||
		          (o2 == x && np_is_const(o1, 0.5)))) {
			*P = Q;
			return x;
		}
	}
	return NULL;
}

/* GELU as exporters decompose it: root n = Mul of the three factors x,
 * 0.5 and B = 1 + Erf(...) or 1 + Tanh(...), grouped either way by two
 * Muls (PyTorch: (x * B) * 0.5; TensorFlow: (0.5 * x) * B). */
static np_value *np_match_gelu(np_node *n, np_pat *P, np_rect_form *form)
{
	if (np_node_kind(n) != NP_OPK_Mul || n->n_inputs != 2 || n->n_outputs != 1)
		return NULL;
	for (int k = 0; k < 2; k++) {
		np_node *inner = np_producer_op(n->inputs[1 - k], NP_OPK_Mul, 2);
		if (!inner)
			continue;
		np_value *f[3] = {n->inputs[k], inner->inputs[0], inner->inputs[1]};
		P->n = 1;
		P->nodes[0] = n;
		if (!np_pat_add(P, inner))
			continue;
		np_value *x = np_match_gelu_factors(f, P, form);
		if (x && np_pat_private(P))
			return x;
	}
	return NULL;
}

/* SiLU: Mul(x, Sigmoid(x)) in either order. */
static np_value *np_match_silu(np_node *n, np_pat *P)
{
	if (np_node_kind(n) != NP_OPK_Mul || n->n_inputs != 2 || n->n_outputs != 1)
		return NULL;
	for (int k = 0; k < 2; k++) {
		np_value *x = n->inputs[k];
		np_node *sig = np_producer_op(n->inputs[1 - k], NP_OPK_Sigmoid, 1);
		P->n = 1;
		P->nodes[0] = n;
		if (sig && sig->inputs[0] == x && np_pat_add(P, sig) && np_pat_private(P))
			return x;
	}
	return NULL;
}

/* Clip with min 0 from attributes (opset < 11) or constant inputs (an
 * omitted max is +inf); false if the bounds are not constants. */
static bool np_match_clip(const np_model *m, const np_node *n, np_layer *L)
{
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
	if (lo != 0.0 || !(hi > 0.0))
		return false;
	L->kind = NP_RECT_CLIP;
	L->clip_min = (float)lo;
	L->clip_max = (float)hi;
	return true;
}

static int np_cmp_node_id(const void *a, const void *b)
{
	int x = (*(np_node *const *)a)->id, y = (*(np_node *const *)b)->id;
	return (x > y) - (x < y);
}

/* The rectifier's nodes P and input x; NP_MATCH_NOMEM when out of memory. */
enum { NP_MATCH_NO, NP_MATCH_YES, NP_MATCH_NOMEM };

static int np_set_pattern(np_layer *L, np_value *x, const np_pat *P)
{
	L->z = x;
	L->pattern = malloc(sizeof(np_node *) * (size_t)P->n);
	if (!L->pattern)
		return NP_MATCH_NOMEM;
	memcpy(L->pattern, P->nodes, sizeof(np_node *) * (size_t)P->n);
	L->n_pattern = P->n;
	qsort(L->pattern, (size_t)L->n_pattern, sizeof(np_node *), np_cmp_node_id);
	return NP_MATCH_YES;
}

/* A one-node rectifier (NP_OPF_RECTIFIER): its kind and parameters;
 * false for a Clip whose min is not 0 (and a rectifier op this file
 * does not know yet). */
static bool np_match_rectifier_op(const np_model *m, const np_node *n, np_layer *L)
{
	switch (np_node_kind(n)) {
	case NP_OPK_Relu:
		L->kind = NP_RECT_RELU;
		return true;
	case NP_OPK_LeakyRelu:
		L->kind = NP_RECT_LEAKY_RELU;
		L->slope = np_node_attr_float(n, "alpha", 0.01f);
		return true;
	case NP_OPK_PRelu:
		L->kind = NP_RECT_PRELU;
		return true;
	case NP_OPK_Gelu:
		L->kind = NP_RECT_GELU;
		return true;
	case NP_OPK_Clip:
		return np_match_clip(m, n, L);
	default:
		return false;
	}
}

/* If n (with its neighbours) is a rectifier, fill kind/z/out/pattern. */
static int np_match_rectifier(const np_model *m, np_node *n, np_layer *L)
{
	memset(L, 0, sizeof *L);
	L->rectifier = n;
	L->out = n->n_outputs > 0 ? n->outputs[0] : NULL;
	L->z = n->n_inputs > 0 ? n->inputs[0] : NULL;
	if (!L->z || !L->out)
		return NP_MATCH_NO;
	np_pat P = {{0}, 0};
	np_value *x;
	if (np_node_flags(n) & NP_OPF_RECTIFIER) {
		if (!np_match_rectifier_op(m, n, L))
			return NP_MATCH_NO;
	} else if ((x = np_match_silu(n, &P)) != NULL) {
		L->kind = NP_RECT_SILU;
		L->form = NP_FORM_SIGMOID;
		return np_set_pattern(L, x, &P);
	} else if ((x = np_match_gelu(n, &P, &L->form)) != NULL) {
		L->kind = NP_RECT_GELU;
		return np_set_pattern(L, x, &P);
	} else {
		return NP_MATCH_NO;
	}
	P.nodes[0] = n;
	P.n = 1;
	return np_set_pattern(L, L->z, &P);
}

/* ------------------------------------------------------- producers */

static bool np_is_linear_producer(const np_node *n)
{
	return (np_node_flags(n) & NP_OPF_LINEAR) != 0;
}

/* Input i of n if it is an initializer, else NULL. */
static np_value *np_init_input(const np_node *n, int i)
{
	return i >= 0 && i < n->n_inputs && n->inputs[i] && n->inputs[i]->init ?
	       n->inputs[i] : NULL;
}

/* The node's weight initializer, or NULL (e.g. MatMul of two activations). */
static np_value *np_producer_weight(const np_node *n)
{
	const np_op *op = np_node_op(n);
	np_value *w = np_init_input(n, op->weight_input);
	if (!w && (op->flags & NP_OPF_WEIGHT_EITHER))
		w = np_init_input(n, 0);
	return w;
}

/* Output channels of a producer, from its weight's shape, and the axis
 * of its output holding them (1, or -1: the last). */
static int64_t np_producer_channels(const np_node *n, int *axis)
{
	const np_value *w = np_producer_weight(n);
	np_weight_geom g;
	/* W @ x (NP_OPF_WEIGHT_EITHER) is not a feature map. */
	if (!w || w != np_init_input(n, np_node_op(n)->weight_input) ||
	    !np_node_weight_geom(n, w->init->rank, w->init->dims, &g))
		return -1;
	*axis = g.y_last ? -1 : 1;
	return g.out_ch;
}

int np_layer_axis(const np_layer *L, int rank)
{
	return L->axis < 0 ? rank - 1 : L->axis;
}

/* Nodes a layer's neurons pass through unchanged in number. */
static bool np_walk_through(const np_node *n)
{
	return (np_node_flags(n) & (NP_OPF_CHANNEL_AFFINE | NP_OPF_PASS |
	                            NP_OPF_RESHAPE)) != 0;
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
		} else if (np_node_kind(n) == NP_OPK_Add) {
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

/* Channels of z from its declared shape (value_info) on the layer's
 * axis, -1 if unknown. */
static int64_t np_value_channels(const np_value *z, int axis)
{
	if (!z->has_shape || z->rank < 2)
		return -1;
	return z->dims[axis < 0 ? z->rank - 1 : axis].value;
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
		int hit = np_match_rectifier(m, g->nodes[i], L);
		if (hit == NP_MATCH_NOMEM) {
			free(claimed);
			return np_fail(err, NP_ERR_NOMEM, "out of memory finding layers");
		}
		if (hit == NP_MATCH_NO)
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
		L->axis = 1;
		for (int k = 0; k < L->n_producers; k++) {
			np_value *wv = np_producer_weight(L->producers[k]);
			if (L->neurons < 0)
				L->neurons = np_producer_channels(L->producers[k], &L->axis);
			if (!wv || claimed[wv->id] || !np_is_float_dtype(wv->init->dtype))
				continue;
			claimed[wv->id] = true;
			L->weights[L->n_weights++] = wv;
			L->n_prunable += wv->init->nelem;
		}
		if (L->neurons < 0)
			L->neurons = np_value_channels(L->z, L->axis);
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
