/* cost.h - the cost model the folding passes share, and their helpers.
 *
 * A fold is done only when the merged node is not more expensive than the
 * pair it replaces (DESIGN.md section 6): both its FLOPs and its parameter
 * bytes must be <= the pair's.  FLOPs count multiply-adds twice, per
 * example: the batch axis (dim 0) is left out, so the numbers do not
 * depend on the batch a shape was declared with.  Bias adds are not
 * counted (they are the same order on both sides and never decide).
 *
 * Convolution costs need spatial sizes: they come from the runtime's one
 * shape inference (runtime/shapes.h: the ops' own infer(), constant shape
 * arithmetic folded), with a dynamic batch unknown (-1) and left out.
 *
 *   np_shapes s;
 *   if (np_shapes_infer(g, &s, err) != NP_OK) return err->status;
 *   np_cost c = np_node_cost(conv, &s);       c.flops < 0: unknown
 *   np_shapes_free(&s);
 */
#ifndef NEPENC_COST_H
#define NEPENC_COST_H

#include <stdbool.h>
#include <stdint.h>

#include "ir.h"
#include "pass.h"
#include "shapes.h"
#include "status.h"

/* --------------------------------------------------------------- cost */

typedef struct np_cost {
	int64_t flops;               /* per example; -1 = unknown */
	int64_t param_bytes;         /* bytes of the initializers it reads */
} np_cost;

/* Cost of one node: Conv, Gemm, MatMul, BatchNormalization exactly;
 * element-wise ops one FLOP per output element; others 0 FLOPs. */
np_cost np_node_cost(const np_node *n, const np_shapes *s);
/* A float conv: c_out x c_in_per_group x taps weights, out_pixels output
 * positions per example, optional bias. */
np_cost np_cost_conv(int64_t c_out, int64_t c_in_per_group, int64_t taps,
                     int64_t out_pixels, bool bias);
/* rows x k times k x n (float weights), optional bias of n. */
np_cost np_cost_matmul(int64_t rows, int64_t k, int64_t n, bool bias);
/* a + b; unknown if either is. */
np_cost np_cost_sum(np_cost a, np_cost b);
/* True when both are known and a is not more expensive than b in
 * FLOPs nor in parameter bytes. */
bool np_cost_le(np_cost a, np_cost b);

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

#endif
