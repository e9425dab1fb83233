/* graphkit.h - a tiny-graph builder for the pass tests (header only).
 *
 * Builds IR models by hand with ir.h and runs them with the runtime:
 *
 *   gk k;  gk_init(&k, 13, seed);
 *   np_value *x = gk_input(&k, "x", GK_SHAPE(2, 3, 5, 5));
 *   np_value *w = gk_weight(&k, "w", GK_SHAPE(4, 3, 3, 3), -1, 1);
 *   np_node *n = gk_node(&k, "Conv", "conv", GK_IN(x, w));
 *   gk_set_ints(n, "pads", GK_SHAPE(1, 1, 1, 1));
 *   gk_output(&k, gk_done(&k, n));
 *   float *y = gk_run(k.m, inputs, n_in, 0, &ny, &err);   // malloc'd copy
 *   ...
 *   gk_free(&k);
 *
 * Every value made by gk_node is named like its node.  Random numbers come
 * from splitmix64, so tests are deterministic across platforms.  Helpers
 * abort the test program on an IR error (tests only, never library code).
 */
#ifndef NEPENC_TESTS_GRAPHKIT_H
#define NEPENC_TESTS_GRAPHKIT_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"
#include "rt.h"

typedef struct gk {
	np_model *m;
	np_graph *g;
	uint64_t rng;
	int n;               /* counter for generated names */
} gk;

/* (rank, dims) argument pair from a list of dims. */
#define GK_DIMS(...) ((int64_t[]){__VA_ARGS__})
#define GK_RANK(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define GK_SHAPE(...) GK_RANK(__VA_ARGS__), GK_DIMS(__VA_ARGS__)
/* (inputs, count) argument pair from a list of values (NULL allowed). */
#define GK_IN(...) ((np_value *[]){__VA_ARGS__}), \
	((int)(sizeof((np_value *[]){__VA_ARGS__}) / sizeof(np_value *)))

static inline void gk_die(const char *what, const np_error *err)
{
	fprintf(stderr, "graphkit: %s: %s\n", what, err ? err->msg : "");
	exit(99);
}

static inline void gk_init(gk *k, int opset, uint64_t seed)
{
	memset(k, 0, sizeof *k);
	k->m = np_model_new();
	k->g = k->m->graph;
	k->m->ir_version = 8;
	k->m->opsets = np_arena_alloc(k->m->arena, sizeof(np_opset));
	k->m->opsets[0] = (np_opset){"", opset};
	k->m->n_opsets = 1;
	k->rng = seed * 0x2545f4914f6cdd1dULL + 1;
}

static inline void gk_free(gk *k)
{
	np_model_free(k->m);
	k->m = NULL;
	k->g = NULL;
}

/* Uniform in [0, 1). */
static inline double gk_urand(gk *k)
{
	uint64_t z = (k->rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return (double)(z >> 11) / 9007199254740992.0;
}

static inline float gk_uniform(gk *k, float lo, float hi)
{
	return (float)(lo + (hi - lo) * gk_urand(k));
}

/* malloc'd array of n uniform floats. */
static inline float *gk_random(gk *k, int64_t n, float lo, float hi)
{
	float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
	for (int64_t i = 0; i < n; i++)
		p[i] = gk_uniform(k, lo, hi);
	return p;
}

static inline const char *gk_name(gk *k, const char *name, const char *base)
{
	if (name)
		return name;
	return np_arena_printf(k->m->arena, "%s%d", base, k->n++);
}

static inline void gk_append(gk *k, np_value ***arr, int *n, np_value *v)
{
	*arr = np_arena_grow(k->m->arena, *arr, sizeof(np_value *) * (size_t)*n,
	                     sizeof(np_value *) * (size_t)(*n + 1));
	(*arr)[(*n)++] = v;
}

/* Declare v a float tensor of the given shape (dims < 0: unknown), as a
 * value_info would. */
static inline void gk_declare(gk *k, np_value *v, int rank, const int64_t *dims)
{
	v->has_type = v->has_shape = true;
	v->dtype = NP_FLOAT;
	v->rank = rank;
	v->dims = np_arena_alloc(k->m->arena, sizeof(np_dim) * (size_t)(rank + 1));
	for (int i = 0; i < rank; i++)
		v->dims[i].value = dims[i];
}

/* A float graph input of the given shape (dims < 0: unknown). */
static inline np_value *gk_input(gk *k, const char *name, int rank,
                                 const int64_t *dims)
{
	np_error err = {0};
	np_value *v = np_graph_new_value(k->g, gk_name(k, name, "in"), &err);
	if (!v)
		gk_die("input", &err);
	v->is_input = true;
	gk_declare(k, v, rank, dims);
	gk_append(k, &k->g->inputs, &k->g->n_inputs, v);
	return v;
}

/* A float initializer holding vals (NULL: zeros). */
static inline np_value *gk_floats(gk *k, const char *name, int rank,
                                  const int64_t *dims, const float *vals)
{
	np_error err = {0};
	np_tensor *t = np_model_new_tensor(k->m, NP_FLOAT, rank, dims, &err);
	if (!t)
		gk_die("tensor", &err);
	if (vals)
		memcpy(t->data, vals, sizeof(float) * (size_t)t->nelem);
	np_value *v = np_graph_add_initializer(k->g, gk_name(k, name, "w"), t, &err);
	if (!v)
		gk_die("initializer", &err);
	return v;
}

/* A float initializer, uniform in [lo, hi]. */
static inline np_value *gk_weight(gk *k, const char *name, int rank,
                                  const int64_t *dims, float lo, float hi)
{
	np_value *v = gk_floats(k, name, rank, dims, NULL);
	float *p = v->init->data;
	for (int64_t i = 0; i < v->init->nelem; i++)
		p[i] = gk_uniform(k, lo, hi);
	return v;
}

/* A scalar (rank 0) float initializer. */
static inline np_value *gk_scalar(gk *k, const char *name, float x)
{
	return gk_floats(k, name, 0, NULL, &x);
}

/* A 1-D int64 initializer (shapes, axes, pads). */
static inline np_value *gk_ints(gk *k, const char *name, int n,
                                const int64_t *vals)
{
	np_error err = {0};
	int64_t d[1] = {n};
	np_tensor *t = np_model_new_tensor(k->m, NP_INT64, 1, d, &err);
	if (!t)
		gk_die("tensor", &err);
	memcpy(t->data, vals, sizeof(int64_t) * (size_t)n);
	np_value *v = np_graph_add_initializer(k->g, gk_name(k, name, "i"), t, &err);
	if (!v)
		gk_die("initializer", &err);
	return v;
}

/* A node named name (NULL: generated) with n_out outputs named name,
 * name:1, ...; not yet inserted: set attributes, then gk_done(). */
static inline np_node *gk_node_n(gk *k, const char *op, const char *name,
                                 np_value **in, int n_in, int n_out)
{
	np_error err = {0};
	name = gk_name(k, name, op);
	np_value *out[4] = {0};
	for (int i = 0; i < n_out && i < 4; i++) {
		const char *vn = i ? np_arena_printf(k->m->arena, "%s:%d", name, i) : name;
		out[i] = np_graph_new_value(k->g, vn, &err);
		if (!out[i])
			gk_die("node output", &err);
	}
	return np_graph_new_node(k->g, op, "", name, in, n_in, out, n_out);
}

static inline np_node *gk_node(gk *k, const char *op, const char *name,
                               np_value **in, int n_in)
{
	return gk_node_n(k, op, name, in, n_in, 1);
}

/* Insert the node; its first output. */
static inline np_value *gk_done(gk *k, np_node *n)
{
	np_graph_insert_node(k->g, n);
	return n->outputs[0];
}

/* A node without attributes, inserted; its output. */
static inline np_value *gk_op(gk *k, const char *op, const char *name,
                              np_value **in, int n_in)
{
	return gk_done(k, gk_node(k, op, name, in, n_in));
}

/* Append v to the graph outputs. */
static inline void gk_output(gk *k, np_value *v)
{
	v->is_output = true;
	gk_append(k, &k->g->outputs, &k->g->n_outputs, v);
}

static inline void gk_set_ints(np_node *n, const char *name, int count,
                               const int64_t *v)
{
	np_node_set_attr_ints(n, name, v, count);
}

/* Random inputs in [-1, 1] for every graph input of k, dynamic dims as
 * batch; data[i] (malloc'd, the caller frees) backs in[i].  Returns the
 * number of inputs. */
static inline int gk_random_inputs(gk *k, np_rt_input *in, float **data,
                                   int64_t batch)
{
	int n = k->g->n_inputs;
	for (int i = 0; i < n; i++) {
		np_value *v = k->g->inputs[i];
		int64_t total = 1;
		in[i] = (np_rt_input){v->name, NP_FLOAT, v->rank, {0}, NULL};
		for (int d = 0; d < v->rank; d++) {
			in[i].dims[d] = v->dims[d].value >= 0 ? v->dims[d].value : batch;
			total *= in[i].dims[d];
		}
		data[i] = gk_random(k, total, -1, 1);
		in[i].data = data[i];
	}
	return n;
}

/* Run m once in inference mode; a malloc'd copy of graph output `out`
 * (float), its element count in *nelem.  NULL with err set on failure. */
static inline float *gk_run(np_model *m, const np_rt_input *in, int n_in,
                            int out, int64_t *nelem, np_error *err)
{
	np_rt *rt = np_rt_new(m, 1, err);
	if (!rt)
		return NULL;
	float *copy = NULL;
	if (np_rt_run(rt, in, n_in, NP_RT_INFER, err) == NP_OK) {
		const np_rtensor *y = np_rt_output(rt, out);
		if (!y || y->dtype != NP_FLOAT) {
			np_fail(err, NP_ERR_INVALID, "output %d is not a float tensor", out);
		} else {
			copy = malloc(sizeof(float) * (size_t)(y->nelem + 1));
			memcpy(copy, y->data, sizeof(float) * (size_t)y->nelem);
			*nelem = y->nelem;
		}
	}
	np_rt_free(rt);
	return copy;
}

/* The unit-test tolerance: every |a-b| <= 1e-5 * max|b| + 1e-6.  *worst
 * (may be NULL) gets max|a-b|. */
static inline bool gk_close(const float *a, const float *b, int64_t n,
                            double *worst)
{
	double mx = 0, w = 0;
	for (int64_t i = 0; i < n; i++)
		mx = fmax(mx, fabs((double)b[i]));
	for (int64_t i = 0; i < n; i++)
		w = fmax(w, fabs((double)a[i] - (double)b[i]));
	if (worst)
		*worst = w;
	return w <= 1e-5 * mx + 1e-6;
}

/* The live node named name, NULL if none. */
static inline np_node *gk_find_node(const np_graph *g, const char *name)
{
	for (int i = 0; i < g->n_nodes; i++)
		if (strcmp(g->nodes[i]->name, name) == 0)
			return g->nodes[i];
	return NULL;
}

/* Live nodes of op_type op. */
static inline int gk_count_op(const np_graph *g, const char *op)
{
	int c = 0;
	for (int i = 0; i < g->n_nodes; i++)
		c += strcmp(g->nodes[i]->op_type, op) == 0;
	return c;
}

#endif
