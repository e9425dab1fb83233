/* fold.h - what the folding passes share (fold_bn, fold_const, fold_gemm,
 * fold_conv, linearize): the fold driver, node rebuilding, notes, access
 * to the initializers a fold rewrites, and Conv geometry.  Their cost
 * model is cost.h, their shapes runtime/shapes.h.
 */
#ifndef NEPENC_FOLD_H
#define NEPENC_FOLD_H

#include <stdbool.h>
#include <stdint.h>

#include "cost.h"
#include "ir.h"
#include "pass.h"
#include "shapes.h"
#include "status.h"

/* -------------------------------------------------- conv attributes */

typedef struct np_conv_geom {
	int nsp;                     /* spatial axes: weight rank - 2 */
	int64_t group;
	int64_t kernel[NP_MAX_RANK];
	int64_t stride[NP_MAX_RANK];
	int64_t dil[NP_MAX_RANK];
	int64_t pads[2 * NP_MAX_RANK]; /* ONNX order: begins, then ends */
	bool same;                   /* auto_pad SAME_UPPER/SAME_LOWER */
} np_conv_geom;

/* Read a Conv's attributes (kernel from kernel_shape or the weight's
 * dims; auto_pad VALID as zero pads).  NULL on success, else why not (a
 * static string). */
const char *np_conv_geom_get(const np_node *conv, np_conv_geom *g);

/* ------------------------------------- helpers the fold passes share */

/* One fold attempt at node n (the node a fold would keep): returns
 * NP_TRY_DONE after rewriting the graph, NP_TRY_NONE when n is not a
 * candidate or the fold was refused (a refusal is recorded in refused
 * with np_pass_log_add), NP_TRY_ERROR with err set. */
enum { NP_TRY_ERROR = -1, NP_TRY_NONE = 0, NP_TRY_DONE = 1 };
typedef int (*np_fold_fn)(np_model *m, np_pass_ctx *ctx, np_node *n,
                          const np_shapes *s, np_pass_log *refused,
                          np_error *err);

/* Drive a fold: scan the graph in order, restart after every fold (with
 * fresh shapes) until nothing folds; then copy the refusals of the last
 * scan into ctx->log, so each refused pair is reported once.  Does
 * nothing under NP_FOLD_NONE.  Honours ctx->max_folds and ctx->skip (the
 * candidate n given to fn is what a skip entry names); stopped by
 * max_folds, it logs no refusals (its last scan was not complete). */
np_status np_fold_run(np_model *m, np_pass_ctx *ctx, np_fold_fn fn,
                      np_error *err);

/* Replace node keep by a new node of op_type with the same name, domain,
 * doc_string (and attributes when copy_attrs) reading in[] and producing
 * out, which must have no producer (remove its old producer first).  keep
 * is removed from the graph if still there.  Returns the new node. */
np_node *np_fold_rebuild(np_model *m, np_node *keep, const char *op_type,
                         np_value **in, int n_in, np_value *out,
                         bool copy_attrs);

/* Record that folded (op and name) went into kept: "folded: NAME (OP)"
 * appended to kept's doc_string, with the "folded:"/"linearized:" notes
 * folded carried; an NP_LOG_FOLDED entry (why may be NULL); a change. */
void np_fold_note(np_model *m, np_pass_ctx *ctx, const char *pass,
                  np_node *kept, const np_node *folded, const char *why);

/* The float initializer v reads, through Identity nodes (exporters
 * share equal initializers that way): NULL if none, or if it is also a
 * graph input (overridable).  For reading only. */
const np_tensor *np_fold_tensor(const np_value *v);
const float *np_fold_const(const np_value *v);     /* its payload */
/* Writable payload of input i of n (a float initializer, read directly):
 * in place when n is its only reader, else a copy that n now reads. */
float *np_fold_writable(np_model *m, np_node *n, int i, np_error *err);
/* A new float initializer named after base (unique), zero-filled. */
np_value *np_fold_new_init(np_model *m, const char *base, int rank,
                           const int64_t *dims, np_error *err);

/* Set input i of n to v, growing the input list when i is past its end
 * (an optional bias). */
void np_fold_put_input(np_graph *g, np_node *n, int i, np_value *v);

#endif
