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

#endif
