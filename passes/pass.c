/* pass.c - the pass manager and helpers shared by passes; see pass.h. */
#include "pass.h"

#include "cost.h"
#include "ops.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NP_PASS(name, sym) extern const np_pass sym;
#include "passes.def"
#undef NP_PASS

static const np_pass *const np_passes[] = {
#define NP_PASS(name, sym) &sym,
#include "passes.def"
#undef NP_PASS
};
#define NP_N_PASSES ((int)(sizeof np_passes / sizeof np_passes[0]))

const np_pass *np_pass_find(const char *name)
{
	for (int i = 0; i < NP_N_PASSES; i++)
		if (strcmp(np_passes[i]->name, name) == 0)
			return np_passes[i];
	return NULL;
}

const np_pass *const *np_pass_list(int *n)
{
	*n = NP_N_PASSES;
	return np_passes;
}

/* ------------------------------------------------------ shape checks */

/* A value something reads or the graph outputs, with a live source. */
static bool np_value_live(const np_value *v)
{
	bool source = v->init || v->is_input || (v->producer && !v->producer->removed);
	return source && (v->n_uses > 0 || v->is_output);
}

static bool np_dim_differs(int64_t a, int64_t b)
{
	return a >= 0 && b >= 0 && a != b;
}

/* The shape a value records (value_info, graph input/output), as
 * np_shape; false if it records none. */
static bool np_recorded_shape(const np_value *v, np_shape *o)
{
	if (!v->has_shape || v->init || v->rank > NP_MAX_RANK)
		return false;
	o->rank = v->rank;
	for (int i = 0; i < v->rank; i++)
		o->dims[i] = v->dims[i].value;
	return true;
}

/* Whether g's shapes agree: every node's op accepts its inputs' shapes
 * (the inference's own check, s->bad), and recorded shapes match the
 * inferred ones (the batch axis of a value of rank >= 2 excepted:
 * inference takes a dynamic batch as 1).  NULL if they do, else why not
 * in buf. */
static const char *np_shapes_bad(const np_graph *g, const np_shapes *s, char *buf,
                                 size_t len)
{
	char dr[128], di[128];
	if (s->bad[0])
		return snprintf(buf, len, "%s", s->bad), buf;
	for (int i = 0; i < g->n_values; i++) {
		const np_value *v = g->values[i];
		const np_shape *inf = np_shape_get(s, v);
		np_shape rec;
		if (!inf || !np_value_live(v) || !np_recorded_shape(v, &rec))
			continue;
		bool bad = rec.rank != inf->rank;
		for (int k = rec.rank >= 2 ? 1 : 0; !bad && k < rec.rank; k++)
			bad = np_dim_differs(rec.dims[k], inf->dims[k]);
		if (bad) {
			np_shape_str(dr, sizeof dr, &rec);
			np_shape_str(di, sizeof di, inf);
			return snprintf(buf, len, "value '%s' is declared %s but computes to %s",
			                v->name, dr, di), buf;
		}
	}
	return NULL;
}

/* After a pass: shapes that held before still hold, and every value that
 * was there before and still is keeps its shape. */
static const char *np_shapes_changed(const np_graph *g, const np_shapes *before,
                                     bool consistent_before, const np_shapes *after,
                                     char *buf, size_t len)
{
	if (consistent_before && np_shapes_bad(g, after, buf, len))
		return buf;
	char d0[128], d1[128];
	for (int i = 0; i < g->n_values && i < before->n; i++) {
		const np_value *v = g->values[i];
		const np_shape *b = np_shape_get(before, v), *a = np_shape_get(after, v);
		if (!a || !b || !np_value_live(v))
			continue;
		bool bad = a->rank != b->rank;
		for (int k = 0; !bad && k < a->rank; k++)
			bad = np_dim_differs(a->dims[k], b->dims[k]);
		if (bad) {
			np_shape_str(d0, sizeof d0, b);
			np_shape_str(d1, sizeof d1, a);
			return snprintf(buf, len, "value '%s' was %s and is now %s", v->name,
			                d0, d1), buf;
		}
	}
	return NULL;
}

np_status np_run_pass(np_model *m, const np_pass *p, np_pass_ctx *ctx, np_error *err)
{
	np_shapes before = {0}, after = {0};
	char why[1024];
	np_status st = np_shapes_infer(m->graph, &before, err);
	bool consistent = st == NP_OK && !np_shapes_bad(m->graph, &before, why, sizeof why);
	if (st == NP_OK)
		st = p->run(m, ctx, err);
	np_error verr = {0};
	if (st == NP_OK && (np_graph_toposort(m->graph, &verr) != NP_OK ||
	                    np_graph_verify(m->graph, &verr) != NP_OK))
		st = np_fail(err, NP_ERR_INVALID, "pass %s broke the graph: %s", p->name,
		             verr.msg);
	if (st == NP_OK)
		st = np_shapes_infer(m->graph, &after, err);
	if (st == NP_OK && np_shapes_changed(m->graph, &before, consistent, &after, why,
	                                     sizeof why))
		st = np_fail(err, NP_ERR_INVALID, "pass %s broke the shapes: %s", p->name, why);
	np_shapes_free(&before);
	np_shapes_free(&after);
	return st;
}

np_status np_run_passes(np_model *m, const char *list, np_pass_ctx *ctx,
                        np_error *err)
{
	if (!list || strcmp(list, "none") == 0)
		return NP_OK;
	if (strcmp(list, "default") == 0) {
		for (int i = 0; i < NP_N_PASSES; i++) {
			np_status st = np_run_pass(m, np_passes[i], ctx, err);
			if (st != NP_OK)
				return st;
		}
		return NP_OK;
	}
	char buf[512];
	snprintf(buf, sizeof buf, "%s", list);
	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		const np_pass *p = np_pass_find(tok);
		if (!p)
			return np_fail(err, NP_ERR_USAGE, "unknown pass '%s'", tok);
		np_status st = np_run_pass(m, p, ctx, err);
		if (st != NP_OK)
			return st;
	}
	return NP_OK;
}

bool np_pass_may_fold(const np_pass_ctx *ctx, const np_node *n)
{
	if (ctx->max_folds > 0 && ctx->folds >= ctx->max_folds)
		return false;
	for (int i = 0; i < ctx->n_skip; i++)
		if (n->name && strcmp(ctx->skip[i], n->name) == 0)
			return false;
	return true;
}

void np_pass_folded(np_pass_ctx *ctx, const np_node *n)
{
	ctx->folds++;
	ctx->folded_at = n->name;
}

/* ------------------------------------------------------------------ log */

static bool np_same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool np_log_has(const np_pass_log *log, const char *pass,
                       const char *node, const char *into, const char *why)
{
	for (int i = 0; i < log->n; i++) {
		const np_log_entry *e = &log->v[i];
		if (e->kind == NP_LOG_REFUSED && np_same_str(e->pass, pass) &&
		    np_same_str(e->node, node) && np_same_str(e->into, into) &&
		    np_same_str(e->why ? e->why : "", why))
			return true;
	}
	return false;
}

void np_pass_log_add(np_pass_log *log, np_model *m, np_log_kind kind,
                     const char *pass, const char *node, const char *into,
                     const char *why_fmt, ...)
{
	if (!log)
		return;
	if (log->n == log->cap) {
		int cap = log->cap ? log->cap * 2 : 16;
		np_log_entry *v = realloc(log->v, sizeof *v * (size_t)cap);
		if (!v)
			return;
		log->v = v;
		log->cap = cap;
	}
	(void)m;
	char buf[512] = "";
	if (why_fmt) {
		va_list ap;
		va_start(ap, why_fmt);
		vsnprintf(buf, sizeof buf, why_fmt, ap);
		va_end(ap);
	}
	/* Fold rounds run the same passes again: a refusal already logged
	 * is not news. */
	if (kind == NP_LOG_REFUSED && np_log_has(log, pass, node, into, buf))
		return;
	np_log_entry *e = &log->v[log->n++];
	e->kind = kind;
	e->pass = pass;
	e->node = node ? strdup(node) : NULL;
	e->into = into ? strdup(into) : NULL;
	e->why = why_fmt ? strdup(buf) : NULL;
}

void np_pass_log_truncate(np_pass_log *log, int n)
{
	while (log->n > n) {
		np_log_entry *e = &log->v[--log->n];
		free((char *)e->node);
		free((char *)e->into);
		free((char *)e->why);
	}
}

void np_pass_log_free(np_pass_log *log)
{
	np_pass_log_truncate(log, 0);
	free(log->v);
	log->v = NULL;
	log->n = log->cap = 0;
}

void np_node_doc_append(np_model *m, np_node *n, const char *text)
{
	if (!n->doc_string || !*n->doc_string)
		n->doc_string = np_arena_strdup(m->arena, text);
	else
		n->doc_string = np_arena_printf(m->arena, "%s; %s", n->doc_string, text);
}

/* -------------------------------------------------------------- helpers */

float *np_init_floats(const np_value *v)
{
	return v && v->init && v->init->dtype == NP_FLOAT ? v->init->data : NULL;
}

np_value *np_new_float_init(np_model *m, const char *base, int rank,
                            const int64_t *dims, np_error *err)
{
	np_tensor *t = np_model_new_tensor(m, NP_FLOAT, rank, dims, err);
	if (!t)
		return NULL;
	const char *name = base;
	for (int i = 1; np_graph_find(m->graph, name); i++)
		name = np_arena_printf(m->arena, "%s_%d", base, i);
	return np_graph_add_initializer(m->graph, name, t, err);
}

bool np_value_single_use(const np_value *v, const np_node *n)
{
	return v && !v->is_output && v->n_uses == 1 && v->uses[0].node == n;
}
