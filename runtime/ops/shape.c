/* shape.c - shape and data-movement ops: Constant, Shape, Gather,
 * Unsqueeze, Squeeze, Concat, Reshape, Flatten, Identity, Dropout, Cast.
 *
 * Exporters emit these mostly for shape arithmetic on int64 tensors, which
 * the planner folds at plan time; the ones left at run time move float
 * data (Flatten before a Gemm, Concat of branches), so the copies are
 * plain memcpy and the backward passes copy, split or scatter-add. */
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

static int64_t np_opset_of(const np_xnode *x)
{
	return np_model_opset(x->node->graph->model, "");
}

static size_t np_esize(const np_rtensor *t)
{
	return np_dtype_size(t->dtype);
}

static int64_t np_prod(const int64_t *dims, int from, int to)
{
	int64_t p = 1;
	for (int i = from; i < to; i++)
		p *= dims[i];
	return p;
}

static void np_copy_shape(np_rtensor *out, const np_rtensor *in)
{
	out->rank = in->rank;
	memcpy(out->dims, in->dims, sizeof(int64_t) * (size_t)in->rank);
}

/* Input i exists and has a dtype the runtime can move bytes of. */
static np_status np_need_input(const np_xnode *x, int i, np_error *err)
{
	if (i >= x->n_in || !x->in[i])
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "input %d is missing", i);
	if (np_esize(x->in[i]) == 0)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "input '%s' has element type %s",
		                       x->in[i]->name, np_dtype_name(x->in[i]->dtype));
	return NP_OK;
}

static bool np_has_output(const np_xnode *x, int k)
{
	return k < x->n_out && x->out[k];
}

static np_status np_check_rank(const np_xnode *x, int rank, np_error *err)
{
	if (rank > NP_RT_MAX_RANK)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "output rank %d exceeds the runtime's %d",
		                       rank, NP_RT_MAX_RANK);
	return NP_OK;
}

/* Axes from the "axes" attribute (opset < 13) or input 1 (>= 13). */
static np_status np_axes(const np_xnode *x, int64_t *axes, int *n,
                         bool *given, np_error *err)
{
	*n = 0;
	*given = false;
	if (np_opset_of(x) < 13) {
		int cnt = 0;
		const int64_t *a = np_node_attr_ints(x->node, "axes", &cnt);
		if (!a)
			return NP_OK;
		if (cnt > NP_RT_MAX_RANK)
			return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
			                       "%d axes is too many", cnt);
		memcpy(axes, a, sizeof(int64_t) * (size_t)cnt);
		*n = cnt;
		*given = true;
		return NP_OK;
	}
	if (x->n_in < 2 || !x->in[1])
		return NP_OK;
	*given = true;
	return np_rt_const_ints(x, 1, axes, NP_RT_MAX_RANK, n, err);
}

static void np_copy_data(np_rtensor *out, const np_rtensor *in)
{
	if (in->nelem > 0 && out->data != in->data)
		memcpy(out->data, in->data, (size_t)in->nelem * np_esize(in));
}

/* Backward of an op whose output is its input rearranged without change
 * of order (Reshape & co): the gradient is the same bytes. */
static np_status np_grad_copy(const np_xnode *x, np_rt *rt, np_rtensor *in,
                              const np_rtensor *out, np_error *err)
{
	if (!in || !in->needs_grad || in->dtype != NP_FLOAT)
		return NP_OK;
	float *g = np_rt_grad_target(rt, in);
	if (!g)
		return np_rt_grad_oom(err, x, in);
	if (in->nelem > 0) {
		if (out->grad && out->dtype == NP_FLOAT)
			memcpy(g, out->grad, sizeof(float) * (size_t)in->nelem);
		else
			memset(g, 0, sizeof(float) * (size_t)in->nelem);
	}
	np_rt_grad_done(rt, in, g);
	return NP_OK;
}

/* An input that needs grad but whose output carries none (Shape, Cast to
 * int): it contributes zero, said explicitly so the bookkeeping of
 * several consumers stays exact. */
static np_status np_grad_zero(const np_xnode *x, np_rt *rt, np_rtensor *in,
                              np_error *err)
{
	if (!in || !in->needs_grad || in->dtype != NP_FLOAT)
		return NP_OK;
	float *g = np_rt_grad_target(rt, in);
	if (!g)
		return np_rt_grad_oom(err, x, in);
	if (in->nelem > 0)
		memset(g, 0, sizeof(float) * (size_t)in->nelem);
	np_rt_grad_done(rt, in, g);
	return NP_OK;
}

/* Nothing to build: these ops are plain loops. */
static np_status np_no_prepare(np_xnode *x, np_rt *rt, np_error *err)
{
	(void)x, (void)rt, (void)err;
	return NP_OK;
}

static np_status np_copy_forward(np_xnode *x, np_rt *rt, bool training,
                                 np_error *err)
{
	(void)rt, (void)training, (void)err;
	np_copy_data(x->out[0], x->in[0]);
	return NP_OK;
}

static np_status np_copy_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	return np_grad_copy(x, rt, x->in[0], x->out[0], err);
}

/* ----------------------------------------------------------- Constant */

/* The tensor to emit: the "value" attribute, or a value_float(s) /
 * value_int(s) attribute (opset 12+) wrapped in a stack tensor. */
typedef struct np_const_src {
	int dtype;
	int rank;
	int64_t n;
	const void *data;
	const int64_t *dims;
} np_const_src;

static np_status np_constant_src(const np_xnode *x, np_const_src *s,
                                 np_error *err)
{
	const np_node *n = x->node;
	const np_attr *a;
	memset(s, 0, sizeof *s);
	if (np_node_attr(n, "sparse_value"))
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "sparse_value constants are not supported");
	if (np_node_attr(n, "value_string") || np_node_attr(n, "value_strings"))
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "string constants are not supported");
	if ((a = np_node_attr(n, "value")) && a->type == NP_ATTR_TENSOR && a->t) {
		s->dtype = a->t->dtype;
		s->rank = a->t->rank;
		s->dims = a->t->dims;
		s->n = a->t->nelem;
		s->data = a->t->data;
		if (np_dtype_size(s->dtype) == 0)
			return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
			                       "constant of element type %s is not supported",
			                       np_dtype_name(s->dtype));
		if (s->n > 0 && (!s->data || a->t->nbytes <
		                 (size_t)s->n * np_dtype_size(s->dtype)))
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "constant tensor has no payload");
		return NP_OK;
	}
	if ((a = np_node_attr(n, "value_float")) && a->type == NP_ATTR_FLOAT) {
		*s = (np_const_src){NP_FLOAT, 0, 1, &a->f, NULL};
		return NP_OK;
	}
	if ((a = np_node_attr(n, "value_int")) && a->type == NP_ATTR_INT) {
		*s = (np_const_src){NP_INT64, 0, 1, &a->i, NULL};
		return NP_OK;
	}
	if ((a = np_node_attr(n, "value_floats")) && a->type == NP_ATTR_FLOATS) {
		*s = (np_const_src){NP_FLOAT, 1, a->n, a->floats, NULL};
		return NP_OK;
	}
	if ((a = np_node_attr(n, "value_ints")) && a->type == NP_ATTR_INTS) {
		*s = (np_const_src){NP_INT64, 1, a->n, a->ints, NULL};
		return NP_OK;
	}
	return np_rt_fail_node(err, NP_ERR_INVALID, x,
	                       "Constant has no value attribute");
}

static np_status constant_infer(np_xnode *x, np_error *err)
{
	np_const_src s;
	np_status st = np_constant_src(x, &s, err);
	if (st != NP_OK)
		return st;
	if ((st = np_check_rank(x, s.rank, err)) != NP_OK)
		return st;
	np_rtensor *o = x->out[0];
	o->dtype = s.dtype;
	o->rank = s.rank;
	for (int i = 0; i < s.rank; i++)
		o->dims[i] = s.dims ? s.dims[i] : s.n;
	return NP_OK;
}

static np_status constant_forward(np_xnode *x, np_rt *rt, bool training,
                                  np_error *err)
{
	(void)rt, (void)training;
	np_const_src s;
	np_status st = np_constant_src(x, &s, err);
	if (st != NP_OK)
		return st;
	if (s.n > 0)
		memcpy(x->out[0]->data, s.data, (size_t)s.n * np_dtype_size(s.dtype));
	return NP_OK;
}

const np_op np_op_constant = {
	.name = "Constant",
	.infer = constant_infer,
	.prepare = np_no_prepare,
	.forward = constant_forward,
	.layout = NP_LAYOUT_PLAIN,
	NP_OP_NO_WEIGHT,
};

/* -------------------------------------------------------------- Shape */

/* Opset 15's start/end, clamped like Python slicing. */
static void np_shape_range(const np_xnode *x, int rank, int *start, int *end)
{
	int64_t s = np_node_attr_int(x->node, "start", 0);
	int64_t e = np_node_attr_int(x->node, "end", rank);
	if (s < 0)
		s += rank;
	if (e < 0)
		e += rank;
	s = s < 0 ? 0 : s > rank ? rank : s;
	e = e < 0 ? 0 : e > rank ? rank : e;
	*start = (int)s;
	*end = (int)(e > s ? e : s);
}

static np_status shape_infer(np_xnode *x, np_error *err)
{
	if (x->n_in < 1 || !x->in[0])
		return np_rt_fail_node(err, NP_ERR_INVALID, x, "input 0 is missing");
	int s, e;
	np_shape_range(x, x->in[0]->rank, &s, &e);
	x->out[0]->dtype = NP_INT64;
	x->out[0]->rank = 1;
	x->out[0]->dims[0] = e - s;
	return NP_OK;
}

static np_status shape_forward(np_xnode *x, np_rt *rt, bool training,
                               np_error *err)
{
	(void)rt, (void)training, (void)err;
	int s, e;
	np_shape_range(x, x->in[0]->rank, &s, &e);
	int64_t *o = x->out[0]->data;
	for (int i = s; i < e; i++)
		o[i - s] = x->in[0]->dims[i];
	return NP_OK;
}

static np_status shape_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	return np_grad_zero(x, rt, x->in[0], err);
}

const np_op np_op_shape = {
	.name = "Shape",
	.infer = shape_infer,
	.prepare = np_no_prepare,
	.forward = shape_forward,
	.backward = shape_backward,
	.layout = NP_LAYOUT_PLAIN,
	.flags = NP_OPF_SHAPE_READ,
	NP_OP_NO_WEIGHT,
};

/* ------------------------------------------------------------- Gather */

typedef struct np_gather_geom {
	int64_t outer, axis_dim, inner, n_idx;
} np_gather_geom;

static np_gather_geom np_gather_geometry(const np_xnode *x, int axis)
{
	const np_rtensor *d = x->in[0];
	return (np_gather_geom){np_prod(d->dims, 0, axis), d->dims[axis],
	                        np_prod(d->dims, axis + 1, d->rank),
	                        x->in[1]->nelem};
}

static int np_gather_axis(const np_xnode *x)
{
	int64_t a = np_node_attr_int(x->node, "axis", 0);
	return (int)(a < 0 ? a + x->in[0]->rank : a);
}

static np_status gather_infer(np_xnode *x, np_error *err)
{
	np_status st;
	if ((st = np_need_input(x, 0, err)) != NP_OK ||
	    (st = np_need_input(x, 1, err)) != NP_OK)
		return st;
	const np_rtensor *d = x->in[0], *idx = x->in[1];
	if (idx->dtype != NP_INT64 && idx->dtype != NP_INT32)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "indices must be int32 or int64, not %s",
		                       np_dtype_name(idx->dtype));
	if (d->rank < 1)
		return np_rt_fail_node(err, NP_ERR_INVALID, x, "data is a scalar");
	int axis;
	if ((st = np_rt_norm_axis(x, np_node_attr_int(x->node, "axis", 0), d->rank,
	                       &axis, err)) != NP_OK)
		return st;
	int r = d->rank + idx->rank - 1;
	if ((st = np_check_rank(x, r, err)) != NP_OK)
		return st;
	np_rtensor *o = x->out[0];
	o->dtype = d->dtype;
	o->rank = r;
	int k = 0;
	for (int i = 0; i < axis; i++)
		o->dims[k++] = d->dims[i];
	for (int i = 0; i < idx->rank; i++)
		o->dims[k++] = idx->dims[i];
	for (int i = axis + 1; i < d->rank; i++)
		o->dims[k++] = d->dims[i];
	return NP_OK;
}

/* Index j of the indices tensor, made non-negative; -1 if out of range. */
static int64_t np_gather_index(const np_rtensor *idx, int64_t j, int64_t dim)
{
	int64_t v = idx->dtype == NP_INT64 ? ((const int64_t *)idx->data)[j]
	                                   : ((const int32_t *)idx->data)[j];
	if (v < 0)
		v += dim;
	return v >= 0 && v < dim ? v : -1;
}

static np_status gather_forward(np_xnode *x, np_rt *rt, bool training,
                                np_error *err)
{
	(void)rt, (void)training;
	np_gather_geom g = np_gather_geometry(x, np_gather_axis(x));
	size_t es = np_esize(x->in[0]), chunk = (size_t)g.inner * es;
	const char *src = x->in[0]->data;
	char *dst = x->out[0]->data;
	for (int64_t j = 0; j < g.n_idx; j++) {
		int64_t v = np_gather_index(x->in[1], j, g.axis_dim);
		if (v < 0)
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "index %lld is out of range for a dimension of %lld",
			                       (long long)(x->in[1]->dtype == NP_INT64
			                       ? ((const int64_t *)x->in[1]->data)[j]
			                       : ((const int32_t *)x->in[1]->data)[j]),
			                       (long long)g.axis_dim);
		for (int64_t o = 0; o < g.outer; o++)
			memcpy(dst + (size_t)(o * g.n_idx + j) * chunk,
			       src + (size_t)(o * g.axis_dim + v) * chunk, chunk);
	}
	return NP_OK;
}

/* Scatter-add: repeated indices each add their share. */
static np_status gather_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	np_rtensor *d = x->in[0];
	if (!d->needs_grad || d->dtype != NP_FLOAT)
		return NP_OK;
	np_gather_geom g = np_gather_geometry(x, np_gather_axis(x));
	float *gd = np_rt_grad_target(rt, d);
	if (!gd)
		return np_rt_grad_oom(err, x, d);
	const float *go = x->out[0]->grad;
	if (d->nelem > 0)
		memset(gd, 0, sizeof(float) * (size_t)d->nelem);
	for (int64_t j = 0; go && j < g.n_idx; j++) {
		int64_t v = np_gather_index(x->in[1], j, g.axis_dim);
		for (int64_t o = 0; o < g.outer; o++) {
			float *t = gd + (o * g.axis_dim + v) * g.inner;
			const float *s = go + (o * g.n_idx + j) * g.inner;
			for (int64_t i = 0; i < g.inner; i++)
				t[i] += s[i];
		}
	}
	np_rt_grad_done(rt, d, gd);
	return NP_OK;
}

const np_op np_op_gather = {
	.name = "Gather",
	.infer = gather_infer,
	.prepare = np_no_prepare,
	.forward = gather_forward,
	.backward = gather_backward,
	.layout = NP_LAYOUT_PLAIN,
	.flags = NP_OPF_INDEX_ROWS,
	NP_OP_NO_WEIGHT,
	/* A float table read by index is an nn.Embedding's weight, or
	 * Swin's relative-position bias table: trained (scatter-add). */
	.trainable = 0x1,
};

/* ---------------------------------------------------------- Unsqueeze */

static np_status unsqueeze_infer(np_xnode *x, np_error *err)
{
	np_status st;
	if ((st = np_need_input(x, 0, err)) != NP_OK)
		return st;
	const np_rtensor *in = x->in[0];
	int64_t axes[NP_RT_MAX_RANK];
	int n;
	bool given;
	if ((st = np_axes(x, axes, &n, &given, err)) != NP_OK)
		return st;
	if (!given)
		return np_rt_fail_node(err, NP_ERR_INVALID, x, "axes are missing");
	int r = in->rank + n;
	if ((st = np_check_rank(x, r, err)) != NP_OK)
		return st;
	bool added[NP_RT_MAX_RANK] = {false};
	for (int i = 0; i < n; i++) {
		int a;
		if ((st = np_rt_norm_axis(x, axes[i], r, &a, err)) != NP_OK)
			return st;
		if (added[a])
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "axis %lld is repeated", (long long)axes[i]);
		added[a] = true;
	}
	np_rtensor *o = x->out[0];
	o->dtype = in->dtype;
	o->rank = r;
	for (int i = 0, k = 0; i < r; i++)
		o->dims[i] = added[i] ? 1 : in->dims[k++];
	return NP_OK;
}

const np_op np_op_unsqueeze = {
	.name = "Unsqueeze",
	.infer = unsqueeze_infer,
	.prepare = np_no_prepare,
	.forward = np_copy_forward,
	.backward = np_copy_backward,
	.layout = NP_LAYOUT_PLAIN,
	NP_OP_NO_WEIGHT,
	.plan_values = 0x2,                 /* axes (opset >= 13) */
};

/* ------------------------------------------------------------ Squeeze */

static np_status squeeze_infer(np_xnode *x, np_error *err)
{
	np_status st;
	if ((st = np_need_input(x, 0, err)) != NP_OK)
		return st;
	const np_rtensor *in = x->in[0];
	int64_t axes[NP_RT_MAX_RANK];
	int n;
	bool given, drop[NP_RT_MAX_RANK] = {false};
	if ((st = np_axes(x, axes, &n, &given, err)) != NP_OK)
		return st;
	for (int i = 0; i < n; i++) {
		int a;
		if ((st = np_rt_norm_axis(x, axes[i], in->rank, &a, err)) != NP_OK)
			return st;
		if (in->dims[a] != 1)
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "cannot squeeze axis %d of size %lld",
			                       a, (long long)in->dims[a]);
		drop[a] = true;
	}
	for (int i = 0; !given && i < in->rank; i++)
		drop[i] = in->dims[i] == 1;
	np_rtensor *o = x->out[0];
	o->dtype = in->dtype;
	o->rank = 0;
	for (int i = 0; i < in->rank; i++)
		if (!drop[i])
			o->dims[o->rank++] = in->dims[i];
	return NP_OK;
}

const np_op np_op_squeeze = {
	.name = "Squeeze",
	.infer = squeeze_infer,
	.prepare = np_no_prepare,
	.forward = np_copy_forward,
	.backward = np_copy_backward,
	.layout = NP_LAYOUT_PLAIN,
	NP_OP_NO_WEIGHT,
	.plan_values = 0x2,                 /* axes (opset >= 13) */
};

/* ------------------------------------------------------------- Concat */

static int np_concat_axis(const np_xnode *x)
{
	int64_t a = np_node_attr_int(x->node, "axis", 0);
	return (int)(a < 0 ? a + x->in[0]->rank : a);
}

static np_status concat_infer(np_xnode *x, np_error *err)
{
	np_status st;
	if (x->n_in < 1)
		return np_rt_fail_node(err, NP_ERR_INVALID, x, "Concat has no inputs");
	for (int i = 0; i < x->n_in; i++)
		if ((st = np_need_input(x, i, err)) != NP_OK)
			return st;
	const np_rtensor *a = x->in[0];
	if (!np_node_attr(x->node, "axis"))
		return np_rt_fail_node(err, NP_ERR_INVALID, x, "axis attribute is missing");
	int axis;
	if ((st = np_rt_norm_axis(x, np_node_attr_int(x->node, "axis", 0), a->rank,
	                       &axis, err)) != NP_OK)
		return st;
	np_rtensor *o = x->out[0];
	np_copy_shape(o, a);
	o->dtype = a->dtype;
	o->dims[axis] = 0;
	for (int i = 0; i < x->n_in; i++) {
		const np_rtensor *b = x->in[i];
		if (b->dtype != a->dtype || b->rank != a->rank)
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "input '%s' differs in type or rank from '%s'",
			                       b->name, a->name);
		for (int k = 0; k < a->rank; k++)
			if (k != axis && b->dims[k] != a->dims[k])
				return np_rt_fail_node(err, NP_ERR_INVALID, x,
				                       "input '%s' has %lld at axis %d, '%s' has %lld",
				                       b->name, (long long)b->dims[k], k,
				                       a->name, (long long)a->dims[k]);
		o->dims[axis] += b->dims[axis];
	}
	return NP_OK;
}

/* Output = outer blocks, each the inputs' rows side by side. */
static np_status concat_forward(np_xnode *x, np_rt *rt, bool training,
                                np_error *err)
{
	(void)rt, (void)training, (void)err;
	const np_rtensor *o = x->out[0];
	int axis = np_concat_axis(x);
	int64_t outer = np_prod(o->dims, 0, axis);
	size_t es = np_esize(o), orow = (size_t)np_prod(o->dims, axis, o->rank) * es;
	size_t off = 0;
	for (int i = 0; i < x->n_in; i++) {
		const np_rtensor *t = x->in[i];
		size_t row = (size_t)np_prod(t->dims, axis, t->rank) * es;
		for (int64_t k = 0; row && k < outer; k++)
			memcpy((char *)o->data + (size_t)k * orow + off,
			       (const char *)t->data + (size_t)k * row, row);
		off += row;
	}
	return NP_OK;
}

static np_status concat_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	const np_rtensor *o = x->out[0];
	int axis = np_concat_axis(x);
	int64_t outer = np_prod(o->dims, 0, axis);
	int64_t orow = np_prod(o->dims, axis, o->rank), off = 0;
	for (int i = 0; i < x->n_in; i++) {
		np_rtensor *t = x->in[i];
		int64_t row = np_prod(t->dims, axis, t->rank);
		if (t->needs_grad && t->dtype == NP_FLOAT) {
			float *g = np_rt_grad_target(rt, t);
			if (!g)
				return np_rt_grad_oom(err, x, t);
			for (int64_t k = 0; row && k < outer; k++) {
				if (o->grad)
					memcpy(g + k * row, o->grad + k * orow + off,
					       sizeof(float) * (size_t)row);
				else
					memset(g + k * row, 0, sizeof(float) * (size_t)row);
			}
			np_rt_grad_done(rt, t, g);
		}
		off += row;
	}
	return NP_OK;
}

const np_op np_op_concat = {
	.name = "Concat",
	.infer = concat_infer,
	.prepare = np_no_prepare,
	.forward = concat_forward,
	.backward = concat_backward,
	.layout = NP_LAYOUT_PLAIN,
	NP_OP_NO_WEIGHT,
	/* A float tensor joined to the activations is a learned token (a
	 * ViT's class token, often through Expand to the batch): trained,
	 * whichever input it is.  Shape arithmetic concatenates integers,
	 * which are never parameters. */
	.trainable_nonscalar = ~0u,
};

/* ------------------------------------------------------------ Reshape */

static np_status reshape_infer(np_xnode *x, np_error *err)
{
	np_status st;
	if ((st = np_need_input(x, 0, err)) != NP_OK)
		return st;
	if (x->n_in < 2 || !x->in[1])
		return np_rt_fail_node(err, NP_ERR_INVALID, x, "shape input is missing");
	const np_rtensor *in = x->in[0];
	int64_t shape[NP_RT_MAX_RANK];
	int n;
	if ((st = np_rt_const_ints(x, 1, shape, NP_RT_MAX_RANK, &n, err)) != NP_OK)
		return st;
	bool allowzero = np_node_attr_int(x->node, "allowzero", 0) != 0;
	int infer_at = -1;
	int64_t known = 1;
	np_rtensor *o = x->out[0];
	for (int i = 0; i < n; i++) {
		int64_t d = shape[i];
		if (d == 0 && !allowzero) {
			if (i >= in->rank)
				return np_rt_fail_node(err, NP_ERR_INVALID, x,
				                       "shape entry %d is 0 but the input has rank %d",
				                       i, in->rank);
			d = in->dims[i];
		} else if (d == -1) {
			if (infer_at >= 0)
				return np_rt_fail_node(err, NP_ERR_INVALID, x,
				                       "shape has more than one -1");
			infer_at = i;
			d = 1;
		} else if (d < 0) {
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "shape entry %d is %lld", i, (long long)d);
		}
		o->dims[i] = d;
		known *= d;
	}
	if (infer_at >= 0) {
		if (known == 0 || in->nelem % known != 0)
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "cannot infer the -1 of the shape: %lld elements",
			                       (long long)in->nelem);
		o->dims[infer_at] = in->nelem / known;
		known = in->nelem;
	}
	if (known != in->nelem)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "cannot reshape %lld elements into %lld",
		                       (long long)in->nelem, (long long)known);
	o->dtype = in->dtype;
	o->rank = n;
	return NP_OK;
}

const np_op np_op_reshape = {
	.name = "Reshape",
	.infer = reshape_infer,
	.prepare = np_no_prepare,
	.forward = np_copy_forward,
	.backward = np_copy_backward,
	.layout = NP_LAYOUT_PLAIN,
	.flags = NP_OPF_RESHAPE,
	NP_OP_NO_WEIGHT,
	.plan_values = 0x2,                 /* the shape */
};

/* ------------------------------------------------------------ Flatten */

static np_status flatten_infer(np_xnode *x, np_error *err)
{
	np_status st;
	if ((st = np_need_input(x, 0, err)) != NP_OK)
		return st;
	const np_rtensor *in = x->in[0];
	int64_t axis = np_node_attr_int(x->node, "axis", 1);
	if (axis < -in->rank || axis > in->rank)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "axis %lld is out of range for rank %d",
		                       (long long)axis, in->rank);
	if (axis < 0)
		axis += in->rank;
	np_rtensor *o = x->out[0];
	o->dtype = in->dtype;
	o->rank = 2;
	o->dims[0] = np_prod(in->dims, 0, (int)axis);
	o->dims[1] = np_prod(in->dims, (int)axis, in->rank);
	return NP_OK;
}

const np_op np_op_flatten = {
	.name = "Flatten",
	.infer = flatten_infer,
	.prepare = np_no_prepare,
	.forward = np_copy_forward,
	.backward = np_copy_backward,
	.layout = NP_LAYOUT_PLAIN,
	.flags = NP_OPF_RESHAPE,
	NP_OP_NO_WEIGHT,
};

/* ----------------------------------------------------------- Identity */

static np_status identity_infer(np_xnode *x, np_error *err)
{
	np_status st;
	if ((st = np_need_input(x, 0, err)) != NP_OK)
		return st;
	x->out[0]->dtype = x->in[0]->dtype;
	np_copy_shape(x->out[0], x->in[0]);
	return NP_OK;
}

const np_op np_op_identity = {
	.name = "Identity",
	.infer = identity_infer,
	.prepare = np_no_prepare,
	.forward = np_copy_forward,
	.backward = np_copy_backward,
	.layout = NP_LAYOUT_FLAT,
	.flags = NP_OPF_PASS,
	/* torch.onnx.export writes a shared parameter once, its copies as
	 * Identity(initializer): trained where the copies are.  A running
	 * variance reached that way stays state. */
	.trainable_via_output = 0x1,
	NP_OP_NO_WEIGHT,
};

/* ------------------------------------------------------------ Dropout */

/* nepenc keeps Dropout as identity in training too (the paper's models
 * are fine-tuned without it); a node that ONNX says must drop (an
 * explicit training_mode=true with ratio > 0, or is_test=0 before opset
 * 7) is refused rather than silently computed as identity. */
static np_status np_dropout_check(const np_xnode *x, bool at_run, np_error *err)
{
	int64_t opset = np_opset_of(x);
	if (opset < 7) {
		if (np_node_attr_int(x->node, "is_test", 0) == 0 &&
		    np_node_attr_float(x->node, "ratio", 0.5f) > 0)
			return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
			                       "Dropout with is_test=0 (training) is not supported");
		return NP_OK;
	}
	if (opset < 12 || x->n_in < 3 || !x->in[2])
		return NP_OK;
	const np_rtensor *t = x->in[2], *r = x->n_in > 1 ? x->in[1] : NULL;
	if (t->dtype != NP_BOOL || t->nelem != 1)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "training_mode must be a bool scalar");
	if (!t->is_const && !at_run)
		return NP_OK;
	if (!*(const uint8_t *)t->data)
		return NP_OK;
	double ratio = 0.5;
	if (r) {
		if (!r->is_const && !at_run)
			return NP_OK;       /* decided when the run knows it */
		if (r->dtype == NP_FLOAT && r->nelem == 1)
			ratio = *(const float *)r->data;
		else if (r->dtype == NP_DOUBLE && r->nelem == 1)
			ratio = *(const double *)r->data;
		else
			return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
			                       "ratio must be a float or double scalar");
	}
	if (ratio > 0)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "Dropout with training_mode=true and ratio %g is not "
		                       "supported (nepenc runs Dropout as identity)", ratio);
	return NP_OK;
}

static np_status dropout_infer(np_xnode *x, np_error *err)
{
	np_status st;
	if ((st = np_need_input(x, 0, err)) != NP_OK ||
	    (st = np_dropout_check(x, false, err)) != NP_OK)
		return st;
	x->out[0]->dtype = x->in[0]->dtype;
	np_copy_shape(x->out[0], x->in[0]);
	if (np_has_output(x, 1)) {
		/* The mask is bool from opset 10, the input's type before. */
		x->out[1]->dtype = np_opset_of(x) >= 10 ? NP_BOOL : x->in[0]->dtype;
		if (x->out[1]->dtype != NP_BOOL && x->out[1]->dtype != NP_FLOAT)
			return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
			                       "a %s mask is not supported",
			                       np_dtype_name(x->out[1]->dtype));
		np_copy_shape(x->out[1], x->in[0]);
	}
	return NP_OK;
}

static np_status dropout_forward(np_xnode *x, np_rt *rt, bool training,
                                 np_error *err)
{
	(void)rt, (void)training;
	np_status st = np_dropout_check(x, true, err);
	if (st != NP_OK)
		return st;
	np_copy_data(x->out[0], x->in[0]);
	if (np_has_output(x, 1)) {
		np_rtensor *m = x->out[1];
		if (m->dtype == NP_BOOL)
			memset(m->data, 1, (size_t)m->nelem);
		else
			for (int64_t i = 0; i < m->nelem; i++)
				((float *)m->data)[i] = 1.0f;
	}
	return NP_OK;
}

const np_op np_op_dropout = {
	.name = "Dropout",
	.infer = dropout_infer,
	.prepare = np_no_prepare,
	.forward = dropout_forward,
	.backward = np_copy_backward,
	.layout = NP_LAYOUT_PLAIN,
	.flags = NP_OPF_PASS,
	NP_OP_NO_WEIGHT,
};

/* --------------------------------------------------------------- Cast */

static bool np_cast_ok(int dtype)
{
	switch (dtype) {
	case NP_FLOAT: case NP_DOUBLE: case NP_BOOL:
	case NP_INT8: case NP_UINT8: case NP_INT16: case NP_UINT16:
	case NP_INT32: case NP_UINT32: case NP_INT64: case NP_UINT64:
		return true;
	default:
		return false;
	}
}

static bool np_is_real(int dtype)
{
	return dtype == NP_FLOAT || dtype == NP_DOUBLE;
}

static np_status cast_infer(np_xnode *x, np_error *err)
{
	np_status st;
	if (x->n_in < 1 || !x->in[0])
		return np_rt_fail_node(err, NP_ERR_INVALID, x, "input 0 is missing");
	const np_attr *to = np_node_attr(x->node, "to");
	if (!to || to->type != NP_ATTR_INT)
		return np_rt_fail_node(err, NP_ERR_INVALID, x, "attribute 'to' is missing");
	int from = x->in[0]->dtype;
	if (!np_cast_ok(from) || !np_cast_ok((int)to->i))
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "Cast from %s to %s is not supported",
		                       np_dtype_name(from), np_dtype_name((int)to->i));
	if ((st = np_check_rank(x, x->in[0]->rank, err)) != NP_OK)
		return st;
	x->out[0]->dtype = (int)to->i;
	np_copy_shape(x->out[0], x->in[0]);
	return NP_OK;
}

static double np_get_real(const void *p, int dtype, int64_t i)
{
	return dtype == NP_FLOAT ? ((const float *)p)[i] : ((const double *)p)[i];
}

static int64_t np_get_int(const void *p, int dtype, int64_t i)
{
	switch (dtype) {
	case NP_BOOL: return ((const uint8_t *)p)[i] != 0;
	case NP_UINT8: return ((const uint8_t *)p)[i];
	case NP_INT8: return ((const int8_t *)p)[i];
	case NP_INT16: return ((const int16_t *)p)[i];
	case NP_UINT16: return ((const uint16_t *)p)[i];
	case NP_INT32: return ((const int32_t *)p)[i];
	case NP_UINT32: return ((const uint32_t *)p)[i];
	case NP_UINT64: return (int64_t)((const uint64_t *)p)[i];
	default: return ((const int64_t *)p)[i];
	}
}

/* Integers wrap modulo 2^bits as C (and numpy) conversions do. */
static void np_put_int(void *p, int dtype, int64_t i, int64_t v)
{
	switch (dtype) {
	case NP_BOOL: ((uint8_t *)p)[i] = v != 0; break;
	case NP_UINT8: ((uint8_t *)p)[i] = (uint8_t)v; break;
	case NP_INT8: ((int8_t *)p)[i] = (int8_t)v; break;
	case NP_INT16: ((int16_t *)p)[i] = (int16_t)v; break;
	case NP_UINT16: ((uint16_t *)p)[i] = (uint16_t)v; break;
	case NP_INT32: ((int32_t *)p)[i] = (int32_t)v; break;
	case NP_UINT32: ((uint32_t *)p)[i] = (uint32_t)v; break;
	case NP_UINT64: ((uint64_t *)p)[i] = (uint64_t)v; break;
	case NP_FLOAT: ((float *)p)[i] = (float)v; break;
	case NP_DOUBLE: ((double *)p)[i] = (double)v; break;
	default: ((int64_t *)p)[i] = v; break;
	}
}

/* Real -> integer truncates toward zero; NaN and values outside int64
 * (undefined in C) become 0 and the int64 limits. */
static int64_t np_real_to_int(double v)
{
	if (isnan(v))
		return 0;
	if (v >= 9223372036854775807.0)
		return INT64_MAX;
	if (v <= -9223372036854775808.0)
		return INT64_MIN;
	return (int64_t)v;
}

static np_status cast_forward(np_xnode *x, np_rt *rt, bool training,
                              np_error *err)
{
	(void)rt, (void)training, (void)err;
	const np_rtensor *in = x->in[0];
	np_rtensor *o = x->out[0];
	int f = in->dtype, t = o->dtype;
	int64_t n = in->nelem;
	if (f == t) {
		np_copy_data(o, in);
	} else if (np_is_real(f) && t == NP_FLOAT) {
		for (int64_t i = 0; i < n; i++)
			((float *)o->data)[i] = (float)np_get_real(in->data, f, i);
	} else if (np_is_real(f) && t == NP_DOUBLE) {
		for (int64_t i = 0; i < n; i++)
			((double *)o->data)[i] = np_get_real(in->data, f, i);
	} else if (np_is_real(f) && t == NP_BOOL) {
		for (int64_t i = 0; i < n; i++)
			((uint8_t *)o->data)[i] = np_get_real(in->data, f, i) != 0;
	} else if (np_is_real(f)) {
		for (int64_t i = 0; i < n; i++)
			np_put_int(o->data, t, i, np_real_to_int(np_get_real(in->data, f, i)));
	} else if (f == NP_UINT64 && np_is_real(t)) {
		for (int64_t i = 0; i < n; i++) {
			double v = (double)((const uint64_t *)in->data)[i];
			if (t == NP_FLOAT)
				((float *)o->data)[i] = (float)v;
			else
				((double *)o->data)[i] = v;
		}
	} else {
		for (int64_t i = 0; i < n; i++)
			np_put_int(o->data, t, i, np_get_int(in->data, f, i));
	}
	return NP_OK;
}

/* Float -> float passes the gradient; through an integer or double the
 * gradient is zero (the runtime keeps float gradients only). */
static np_status cast_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	if (x->out[0]->dtype == NP_FLOAT)
		return np_grad_copy(x, rt, x->in[0], x->out[0], err);
	return np_grad_zero(x, rt, x->in[0], err);
}

const np_op np_op_cast = {
	.name = "Cast",
	.infer = cast_infer,
	.prepare = np_no_prepare,
	.forward = cast_forward,
	.backward = cast_backward,
	.layout = NP_LAYOUT_PLAIN,
	NP_OP_NO_WEIGHT,
};
