/* cost.c - the fold cost model;
 * see cost.h.  Shapes come from the runtime's inference (shapes.h). */
#include "cost.h"

#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "pass.h"

/* Inputs a flops fact sees: more (a long Concat) carry no arithmetic. */
#define NP_COST_MAX_INPUTS 16

np_cost np_cost_conv(int64_t c_out, int64_t c_in_per_group, int64_t taps,
                     int64_t out_pixels, bool bias)
{
	int64_t w = c_out * c_in_per_group * taps;
	np_cost c = {2 * w * out_pixels, 4 * (w + (bias ? c_out : 0))};
	if (out_pixels < 0)
		c.flops = -1;
	return c;
}

np_cost np_cost_matmul(int64_t rows, int64_t k, int64_t n, bool bias)
{
	np_cost c = {2 * rows * k * n, 4 * (k * n + (bias ? n : 0))};
	if (rows < 0)
		c.flops = -1;
	return c;
}

np_cost np_cost_sum(np_cost a, np_cost b)
{
	np_cost c = {a.flops + b.flops, a.param_bytes + b.param_bytes};
	if (a.flops < 0 || b.flops < 0)
		c.flops = -1;
	return c;
}

bool np_cost_le(np_cost a, np_cost b)
{
	return a.flops >= 0 && b.flops >= 0 && a.flops <= b.flops &&
	       a.param_bytes <= b.param_bytes;
}

static int64_t init_bytes(const np_node *n)
{
	int64_t b = 0;
	for (int i = 0; i < n->n_inputs; i++)
		if (n->inputs[i] && n->inputs[i]->init)
			b += (int64_t)n->inputs[i]->init->nbytes;
	return b;
}

np_cost np_node_cost(const np_node *n, const np_shapes *s)
{
	np_cost c = {0, init_bytes(n)};
	const np_op *op = np_node_op(n);
	if (!op || !op->flops)
		return c;
	const np_shape *in[NP_COST_MAX_INPUTS] = {0};
	int n_in = n->n_inputs < NP_COST_MAX_INPUTS ? n->n_inputs : NP_COST_MAX_INPUTS;
	for (int i = 0; i < n_in; i++)
		in[i] = np_shape_get(s, n->inputs[i]);
	const np_shape *y = n->n_outputs ? np_shape_get(s, n->outputs[0]) : NULL;
	c.flops = op->flops(n, in, n_in, y);
	if (c.flops < 0)
		c.flops = -1;      /* unknown; parameter bytes still counted */
	return c;
}
