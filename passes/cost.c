/* cost.c - the fold cost model;
 * see cost.h.  Shapes come from the runtime's inference (shapes.h). */
#include "cost.h"

#include <stdlib.h>
#include <string.h>

#include "pass.h"

/* ------------------------------------------------------------ helpers */

static const np_shape *in_shape(const np_shapes *s, const np_node *n, int i)
{
	return i < n->n_inputs ? np_shape_get(s, n->inputs[i]) : NULL;
}

/* Product of dims [from, to); -1 if one is unknown. */
static int64_t dims_prod(const np_shape *s, int from, int to)
{
	int64_t p = 1;
	for (int i = from; i < to; i++) {
		if (s->dims[i] < 0)
			return -1;
		p *= s->dims[i];
	}
	return p;
}

static bool in_list(const char *op, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(op, *list) == 0)
			return true;
	return false;
}

/* Output 0 has the shape of input 0. */
static const char *const same_shape_ops[] = {
	"BatchNormalization", "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid",
	"Tanh", "HardSigmoid", "HardSwish", "Erf", "Sqrt", "Gelu", "Softmax",
	"LogSoftmax", "Identity", "Dropout", "Cast", "Neg", "Abs", "Exp", "Log",
	"Elu", "Selu", "Softplus", "Softsign", "LRN",
	"InstanceNormalization", "LayerNormalization", "Reciprocal", "Floor",
	"Ceil", "Round", "Sign", "Not", NULL
};

/* Numpy-style broadcast of every input. */
static const char *const broadcast_ops[] = {
	"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean",
	"Where", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
	"And", "Or", "Xor", "Mod", NULL
};

/* --------------------------------------------------------------- cost */

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

/* Elements per example of v's shape (dim 0 is the batch). */
static int64_t per_example(const np_shape *o)
{
	if (!o)
		return -1;
	return o->rank >= 1 ? dims_prod(o, 1, o->rank) : 1;
}

static int64_t conv_flops(const np_node *n, const np_shapes *s)
{
	const np_shape *w = in_shape(s, n, 1);
	const np_shape *y = n->n_outputs ? np_shape_get(s, n->outputs[0]) : NULL;
	if (!w || !y || y->rank < 3 || w->rank != y->rank)
		return -1;
	int64_t wn = dims_prod(w, 0, w->rank), pix = dims_prod(y, 2, y->rank);
	return wn < 0 || pix < 0 ? -1 : 2 * wn * pix;
}

static int64_t gemm_flops(const np_node *n, const np_shapes *s)
{
	const np_shape *b = in_shape(s, n, 1);
	if (!b || b->rank != 2 || b->dims[0] < 0 || b->dims[1] < 0)
		return -1;
	return 2 * b->dims[0] * b->dims[1];       /* one row per example */
}

/* MatMul: rows per example = the output's dims between the batch and
 * the last (1 for [N, n]). */
static int64_t matmul_flops(const np_node *n, const np_shapes *s)
{
	const np_shape *a = in_shape(s, n, 0);
	const np_shape *y = n->n_outputs ? np_shape_get(s, n->outputs[0]) : NULL;
	if (!a || !y || a->rank < 1 || y->rank < 1)
		return -1;
	int64_t k = a->dims[a->rank - 1], cols = y->dims[y->rank - 1];
	int64_t rows = y->rank >= 3 ? dims_prod(y, 1, y->rank - 1) : 1;
	if (k < 0 || cols < 0 || rows < 0)
		return -1;
	return 2 * rows * k * cols;
}

np_cost np_node_cost(const np_node *n, const np_shapes *s)
{
	np_cost c = {0, init_bytes(n)};
	const np_shape *y = n->n_outputs ? np_shape_get(s, n->outputs[0]) : NULL;
	if (np_node_is(n, "Conv"))
		c.flops = conv_flops(n, s);
	else if (np_node_is(n, "Gemm"))
		c.flops = gemm_flops(n, s);
	else if (np_node_is(n, "MatMul"))
		c.flops = matmul_flops(n, s);
	else if (np_node_is(n, "BatchNormalization"))
		c.flops = y ? 2 * per_example(y) : -1;
	else if (!n->domain[0] && (in_list(n->op_type, broadcast_ops) ||
	                           in_list(n->op_type, same_shape_ops)))
		c.flops = y ? per_example(y) : -1;
	if (c.flops < 0)
		c.flops = -1;      /* unknown; parameter bytes still counted */
	return c;
}

