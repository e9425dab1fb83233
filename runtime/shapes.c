/* shapes.c - the one shape inference, by the ops' infer(); see shapes.h. */
#include "shapes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "rt.h"

/* One walk over the graph with the unknown input dims set to `probe`. */
typedef struct np_walk {
	const np_graph *g;
	np_rt *rt;                   /* bare: folds constants */
	np_rtensor *t;               /* by value id */
	bool *known;                 /* by value id: t[id] has a shape */
	np_xnode *x;                 /* by node index; in/out owned */
	int64_t probe;
	bool probed;                 /* some input dim was not declared */
	char bad[1024];
} np_walk;

static void *np_walk_alloc(size_t bytes)
{
	size_t n = (bytes + 63) / 64 * 64;
	void *p = aligned_alloc(64, n ? n : 64);
	if (p)
		memset(p, 0, n ? n : 64);
	return p;
}

/* Initializers are constants; graph inputs take their declared shape
 * (an undeclared batch = 1, other undeclared dims = probe) and, when not float, zeros: the runtime
 * treats those as plan-time constants (token ids, axes). */
static np_status np_walk_values(np_walk *w, np_error *err)
{
	for (int i = 0; i < w->g->n_values; i++) {
		const np_value *v = w->g->values[i];
		np_rtensor *t = &w->t[i];
		t->name = v->name;
		if (v->init) {
			if (v->init->rank > NP_RT_MAX_RANK)
				continue;
			t->dtype = v->init->dtype;
			t->rank = v->init->rank;
			memcpy(t->dims, v->init->dims, sizeof(int64_t) * (size_t)t->rank);
			t->nelem = v->init->nelem;
			t->data = v->init->data;
			t->is_const = t->borrowed = true;
			w->known[i] = true;
		} else if (v->is_input && v->has_shape && v->rank <= NP_RT_MAX_RANK) {
			t->dtype = v->has_type && v->dtype ? v->dtype : NP_FLOAT;
			t->rank = v->rank;
			for (int d = 0; d < v->rank; d++) {
				bool batch = d == 0;      /* taken as 1 (shapes.h) */
				t->dims[d] = v->dims[d].value >= 0 ? v->dims[d].value
				             : batch ? 1 : w->probe;
				w->probed |= v->dims[d].value < 0 && !batch;
			}
			t->nelem = np_dims_product(t->dims, t->rank);
			if (t->nelem < 0)
				continue;
			if (t->dtype != NP_FLOAT && np_dtype_size(t->dtype)) {
				t->data = np_walk_alloc((size_t)t->nelem * np_dtype_size(t->dtype));
				if (!t->data)
					return np_fail(err, NP_ERR_NOMEM, "out of memory for shapes");
				t->is_const = true;
			}
			w->known[i] = true;
		}
	}
	return NP_OK;
}

static np_status np_walk_fold(np_walk *w, np_xnode *x, np_error *err)
{
	for (int k = 0; k < x->n_out; k++) {
		np_rtensor *t = x->out[k];
		if (!t)
			continue;
		size_t es = np_dtype_size(t->dtype);
		t->nelem = np_dims_product(t->dims, t->rank);
		if (!es || t->dtype == NP_STRING || t->nelem < 0 ||
		    (uint64_t)t->nelem > ((uint64_t)1 << 40) / es)
			return NP_ERR_UNSUPPORTED;
		if (!(t->data = np_walk_alloc((size_t)t->nelem * es)))
			return np_fail(err, NP_ERR_NOMEM, "out of memory for shapes");
	}
	np_status st = x->op->prepare ? x->op->prepare(x, w->rt, err) : NP_OK;
	if (st == NP_OK)
		st = x->op->forward(x, w->rt, false, err);
	dnnl_stream_wait(np_rt_stream(w->rt));
	for (int k = 0; st == NP_OK && k < x->n_out; k++)
		if (x->out[k])
			x->out[k]->is_const = true;
	return st;
}

/* Infer node i; its outputs stay unknown when its op or an input is. */
static np_status np_walk_node(np_walk *w, int i, np_error *err)
{
	const np_node *n = w->g->nodes[i];
	np_xnode *x = &w->x[i];
	x->node = n;
	x->op = np_op_find(n->domain, n->op_type);
	if (!x->op)
		return NP_OK;
	x->n_in = n->n_inputs;
	x->n_out = n->n_outputs;
	x->in = calloc((size_t)n->n_inputs + 1, sizeof *x->in);
	x->out = calloc((size_t)n->n_outputs + 1, sizeof *x->out);
	if (!x->in || !x->out)
		return np_fail(err, NP_ERR_NOMEM, "out of memory for shapes");
	bool all_const = true, shape_read = x->op == &np_op_shape;
	for (int k = 0; k < n->n_inputs; k++) {
		const np_value *v = n->inputs[k];
		if (!v)
			continue;
		if (v->id < 0 || v->id >= w->g->n_values || !w->known[v->id])
			return NP_OK;
		x->in[k] = &w->t[v->id];
		all_const &= x->in[k]->is_const || shape_read;
	}
	for (int k = 0; k < n->n_outputs; k++)
		if (n->outputs[k])
			x->out[k] = &w->t[n->outputs[k]->id];
	np_error e = {0};
	np_status st = x->op->infer(x, &e);
	if (st == NP_ERR_NOMEM)
		return np_fail(err, st, "%s", e.msg);
	if (st != NP_OK) {
		if (!w->bad[0])
			snprintf(w->bad, sizeof w->bad, "%s", e.msg);
		return NP_OK;
	}
	for (int k = 0; k < n->n_outputs; k++) {
		np_rtensor *t = x->out[k];
		if (!t || t->rank > NP_RT_MAX_RANK)
			continue;
		/* Readers' infer() may use nelem (Reshape's -1). */
		t->nelem = np_dims_product(t->dims, t->rank);
		w->known[n->outputs[k]->id] = t->nelem >= 0;
	}
	if (all_const) {
		st = np_walk_fold(w, x, &e);
		if (st == NP_ERR_NOMEM)
			return np_fail(err, st, "%s", e.msg[0] ? e.msg : "out of memory");
		/* A constant that does not fold here keeps its shape: the
		 * runtime reports it when it plans. */
	}
	return NP_OK;
}

static void np_walk_free(np_walk *w)
{
	for (int i = 0; w->x && i < w->g->n_nodes; i++) {
		np_xnode *x = &w->x[i];
		if (x->op && x->op->destroy && x->state)
			x->op->destroy(x);
		free(x->in);
		free(x->out);
	}
	for (int i = 0; w->t && i < w->g->n_values; i++)
		if (!w->t[i].borrowed)
			free(w->t[i].data);
	free(w->x);
	free(w->t);
	free(w->known);
}

static np_status np_walk_run(np_walk *w, np_error *err)
{
	const np_graph *g = w->g;
	w->t = calloc((size_t)g->n_values + 1, sizeof *w->t);
	w->known = calloc((size_t)g->n_values + 1, sizeof *w->known);
	w->x = calloc((size_t)g->n_nodes + 1, sizeof *w->x);
	if (!w->t || !w->known || !w->x)
		return np_fail(err, NP_ERR_NOMEM, "out of memory for shapes");
	np_status st = np_walk_values(w, err);
	for (int i = 0; st == NP_OK && i < g->n_nodes; i++)
		st = np_walk_node(w, i, err);
	return st;
}

static void np_shape_unknown(np_shape *o)
{
	memset(o, 0, sizeof *o);
	o->rank = -1;
	o->n_val = -1;
}

/* The declared shape of v, undeclared dims unknown. */
static void np_declared_shape(const np_value *v, np_shape *o)
{
	if (!v->has_shape || v->rank > NP_MAX_RANK)
		return;
	o->rank = v->rank;
	o->dtype = v->has_type ? v->dtype : NP_UNDEFINED;
	for (int i = 0; i < v->rank; i++)
		o->dims[i] = v->dims[i].value >= 0 ? v->dims[i].value : -1;
}

static void np_walk_collect(const np_walk *w, np_shapes *s)
{
	for (int i = 0; i < s->n; i++) {
		np_shape *o = &s->v[i];
		const np_rtensor *t = &w->t[i];
		np_shape_unknown(o);
		if (!w->known[i]) {
			np_declared_shape(w->g->values[i], o);
			continue;
		}
		o->rank = t->rank;
		o->dtype = t->dtype;
		memcpy(o->dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
		if (t->is_const && t->data && t->dtype == NP_INT64 &&
		    t->nelem <= NP_MAX_RANK) {
			o->n_val = (int)t->nelem;
			memcpy(o->val, t->data, sizeof(int64_t) * (size_t)t->nelem);
		}
	}
}

/* Dims (and constants) that differ between the probes are unknown. */
static void np_walk_merge(const np_walk *w2, np_shapes *s)
{
	for (int i = 0; i < s->n; i++) {
		np_shape *o = &s->v[i];
		const np_rtensor *t = &w2->t[i];
		if (o->rank < 0 || !w2->known[i] || t->rank != o->rank)
			continue;
		for (int d = 0; d < o->rank; d++)
			if (t->dims[d] != o->dims[d])
				o->dims[d] = -1;
		if (o->n_val >= 0 &&
		    !(t->is_const && t->data && t->nelem == o->n_val &&
		      memcmp(t->data, o->val, sizeof(int64_t) * (size_t)o->n_val) == 0))
			o->n_val = -1;
	}
}

np_status np_shapes_infer(const np_graph *g, np_shapes *s, np_error *err)
{
	memset(s, 0, sizeof *s);
	s->v = calloc((size_t)g->n_values + 1, sizeof *s->v);
	if (!s->v)
		return np_fail(err, NP_ERR_NOMEM, "out of memory for %d value shapes",
		               g->n_values);
	s->n = g->n_values;
	np_rt *rt = np_rt_new_bare(err);
	if (!rt) {
		np_shapes_free(s);
		return err->status;
	}
	np_walk w = {.g = g, .rt = rt, .probe = 1};
	np_status st = np_walk_run(&w, err);
	if (st == NP_OK) {
		np_walk_collect(&w, s);
		snprintf(s->bad, sizeof s->bad, "%s", w.bad);
	}
	if (st == NP_OK && w.probed) {
		np_walk w2 = {.g = g, .rt = rt, .probe = 2};
		st = np_walk_run(&w2, err);
		if (st == NP_OK && !w2.bad[0])
			np_walk_merge(&w2, s);
		np_walk_free(&w2);
	}
	np_walk_free(&w);
	np_rt_free(rt);
	if (st != NP_OK)
		np_shapes_free(s);
	return st;
}

void np_shapes_free(np_shapes *s)
{
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

const np_shape *np_shape_get(const np_shapes *s, const np_value *v)
{
	if (!v || v->id < 0 || v->id >= s->n || s->v[v->id].rank < 0)
		return NULL;
	return &s->v[v->id];
}

void np_shape_str(char *buf, size_t len, const np_shape *s)
{
	size_t o = 0;
	o += (size_t)snprintf(buf, len, "[");
	for (int i = 0; i < s->rank && o < len; i++)
		o += s->dims[i] < 0
		     ? (size_t)snprintf(buf + o, len - o, "%s?", i ? "," : "")
		     : (size_t)snprintf(buf + o, len - o, "%s%lld", i ? "," : "",
		                        (long long)s->dims[i]);
	if (o < len)
		snprintf(buf + o, len - o, "]");
}
