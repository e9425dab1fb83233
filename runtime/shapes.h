/* shapes.h - the one shape inference: every value's shape, computed by
 * the ops' own infer() (the planner's first step), for the passes, the
 * cost model and linearize.
 *
 *   np_shapes s;
 *   if (np_shapes_infer(g, &s, err) != NP_OK) return err->status;   OOM only
 *   if (s.bad[0]) ... the graph's shapes do not agree: s.bad says where
 *   const np_shape *x = np_shape_get(&s, value);                NULL: unknown
 *   np_shapes_free(&s);
 *
 * Graph inputs take their declared shapes.  A dynamic leading dim is the
 * batch, taken as 1: shapes come out per example, as the cost model
 * counts, and constants built from them broadcast over any batch.  Any
 * other declared dim that is not a number (a symbolic length, free
 * spatial sizes) is probed: the graph is inferred with it as 1 and again
 * as 2, and every dim that differs between the two comes out -1
 * (unknown); the rest are exact.  (When the second probe fails, say a
 * Reshape to a literal length, the first one's dims stand.)
 * Constant subgraphs are folded as the planner folds them, by the ops'
 * forward(): the Shape -> Gather -> Concat -> Reshape arithmetic of
 * exporters, so Reshape targets are known; small int64 constants are kept
 * in np_shape.val.  A node the op table does not have, or one reading an
 * unknown value, leaves its outputs unknown (their declared shapes, if
 * any, stand in); a node whose op refuses its inputs' shapes (a Conv
 * whose weight reads other channels, operands that do not broadcast) is
 * an inconsistency: the first is described in bad, its outputs unknown.
 *
 * OWNERSHIP: np_shapes owns v; np_shapes_free() frees it.  Nothing else
 * is kept: the graph may change afterwards (values created later are
 * unknown to np_shape_get).
 */
#ifndef NEPENC_SHAPES_H
#define NEPENC_SHAPES_H

#include <stdbool.h>
#include <stdint.h>

#include "ir.h"
#include "status.h"

typedef struct np_shape {
	int rank;                    /* -1: unknown */
	int64_t dims[NP_MAX_RANK];   /* -1: this dim unknown (see probing) */
	int dtype;                   /* np_dtype */
	/* A small int64 constant (shape arithmetic, Reshape targets): its
	 * n_val values; -1 when the value is not a known constant. */
	int n_val;
	int64_t val[NP_MAX_RANK];
} np_shape;

typedef struct np_shapes {
	np_shape *v;                 /* malloc'd, indexed by np_value.id */
	int n;                       /* graph->n_values when inferred */
	char bad[1024];              /* first inconsistency, "" if none */
} np_shapes;

/* Shapes of every value of g.  Fails only when out of memory. */
np_status np_shapes_infer(const np_graph *g, np_shapes *s, np_error *err);
void np_shapes_free(np_shapes *s);
/* The shape of v, NULL when its rank is unknown. */
const np_shape *np_shape_get(const np_shapes *s, const np_value *v);
/* "[1,64,?,?]" into buf. */
void np_shape_str(char *buf, size_t len, const np_shape *s);

#endif
