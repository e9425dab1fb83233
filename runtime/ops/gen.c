/* gen.c - ops that make a tensor from scalars and a shape: Range,
 * ConstantOfShape.
 *
 * Exporters emit them for position ids (torch.arange(seq_len): Range
 * over a length taken from Shape) and for masks and fills
 * (ConstantOfShape of a computed shape).  Their output shapes depend on
 * input values, so those inputs must be known at plan time (constants,
 * Shape arithmetic the planner folds, or non-float graph inputs, which
 * are part of a plan's signature); in practice both ops fold away.  No
 * gradient: their float inputs, if any, are constants. */
#include "ops.h"

#include <math.h>
#include <string.h>

#define R NP_RT_MAX_RANK

/* -------------------------------------------------------------- Range */

static bool range_dtype_ok(int dtype)
{
	return dtype == NP_FLOAT || dtype == NP_DOUBLE || dtype == NP_INT16 ||
	       dtype == NP_INT32 || dtype == NP_INT64;
}

/* Scalar input i as a double (exact for the integers Range sees). */
static double range_scalar(const np_rtensor *t)
{
	switch (t->dtype) {
	case NP_FLOAT: return *(const float *)t->data;
	case NP_DOUBLE: return *(const double *)t->data;
	case NP_INT16: return *(const int16_t *)t->data;
	case NP_INT32: return *(const int32_t *)t->data;
	default: return (double)*(const int64_t *)t->data;
	}
}

static np_status range_infer(np_xnode *x, np_error *err)
{
	if (x->n_in < 3 || !x->in[0] || !x->in[1] || !x->in[2])
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "start, limit and delta are required");
	int dt = x->in[0]->dtype;
	for (int i = 0; i < 3; i++) {
		const np_rtensor *t = x->in[i];
		if (t->dtype != dt || !range_dtype_ok(dt) || t->nelem != 1)
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "start, limit and delta must be scalars "
			                       "of one numeric type");
		if (!t->is_const)
			return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
			                       "input '%s' must be known at plan time "
			                       "(the output's length depends on it)",
			                       t->name);
	}
	double start = range_scalar(x->in[0]), limit = range_scalar(x->in[1]);
	double delta = range_scalar(x->in[2]);
	if (delta == 0 || !isfinite(start) || !isfinite(limit) || !isfinite(delta))
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "delta is 0 or a bound is not finite");
	double n = ceil((limit - start) / delta);
	if (n > (double)((int64_t)1 << 40))
		return np_rt_fail_node(err, NP_ERR_INVALID, x, "range is too long");
	np_rtensor *o = x->out[0];
	o->dtype = dt;
	o->rank = 1;
	o->dims[0] = n > 0 ? (int64_t)n : 0;
	return NP_OK;
}

/* start + i * delta, as numpy's arange (and ONNX's reference). */
static np_status range_forward(np_xnode *x, np_rt *rt, bool training,
                               np_error *err)
{
	(void)rt, (void)training, (void)err;
	const np_rtensor *s = x->in[0], *d = x->in[2];
	np_rtensor *o = x->out[0];
	for (int64_t i = 0; i < o->nelem; i++) {
		switch (o->dtype) {
		case NP_FLOAT:
			((float *)o->data)[i] = *(const float *)s->data +
			                        (float)i * *(const float *)d->data;
			break;
		case NP_DOUBLE:
			((double *)o->data)[i] = *(const double *)s->data +
			                         (double)i * *(const double *)d->data;
			break;
		case NP_INT16:
			((int16_t *)o->data)[i] = (int16_t)(*(const int16_t *)s->data +
			                          i * *(const int16_t *)d->data);
			break;
		case NP_INT32:
			((int32_t *)o->data)[i] = (int32_t)(*(const int32_t *)s->data +
			                          i * *(const int32_t *)d->data);
			break;
		default:
			((int64_t *)o->data)[i] = *(const int64_t *)s->data +
			                          i * *(const int64_t *)d->data;
			break;
		}
	}
	return NP_OK;
}

const np_op np_op_range = {
	.name = "Range",
	.infer = range_infer,
	.forward = range_forward,
	.layout = NP_LAYOUT_PLAIN,
	NP_OP_NO_WEIGHT,
	.plan_values = 0x7,                 /* start, limit, delta */
};

/* ---------------------------------------------------- ConstantOfShape */

/* The fill: the one-element 'value' tensor, float 0 by default. */
static np_status cos_value(const np_xnode *x, int *dtype, const void **v,
                           np_error *err)
{
	static const float zero = 0.0f;
	const np_attr *a = np_node_attr(x->node, "value");
	*dtype = NP_FLOAT;
	*v = &zero;
	if (!a)
		return NP_OK;
	if (a->type != NP_ATTR_TENSOR || !a->t || a->t->nelem != 1 || !a->t->data)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "value must be a one-element tensor");
	if (np_dtype_size(a->t->dtype) == 0 || a->t->dtype == NP_STRING)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "a value of type %s is not supported",
		                       np_dtype_name(a->t->dtype));
	*dtype = a->t->dtype;
	*v = a->t->data;
	return NP_OK;
}

static np_status cos_infer(np_xnode *x, np_error *err)
{
	int dtype, n = 0;
	const void *v;
	np_rtensor *o = x->out[0];
	if (x->n_in < 1 || !x->in[0])
		return np_rt_fail_node(err, NP_ERR_INVALID, x, "input is missing");
	np_status st = cos_value(x, &dtype, &v, err);
	if (!st)
		st = np_rt_const_ints(x, 0, o->dims, R, &n, err);
	if (st)
		return st;
	for (int i = 0; i < n; i++)
		if (o->dims[i] < 0)
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "shape entry %d is %lld", i,
			                       (long long)o->dims[i]);
	o->rank = n;
	o->dtype = dtype;
	return NP_OK;
}

static np_status cos_forward(np_xnode *x, np_rt *rt, bool training,
                             np_error *err)
{
	(void)rt, (void)training;
	int dtype;
	const void *v;
	np_status st = cos_value(x, &dtype, &v, err);
	np_rtensor *o = x->out[0];
	size_t es = np_dtype_size(dtype);
	for (int64_t i = 0; !st && i < o->nelem; i++)
		memcpy((char *)o->data + (size_t)i * es, v, es);
	return st;
}

const np_op np_op_constantofshape = {
	.name = "ConstantOfShape",
	.infer = cos_infer,
	.forward = cos_forward,
	.layout = NP_LAYOUT_PLAIN,
	NP_OP_NO_WEIGHT,
	.plan_values = 0x1,                 /* the shape */
};
