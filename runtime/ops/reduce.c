/* reduce.c - ReduceMean, ReduceSum, ReduceMax over any set of axes, with
 * their gradients.
 *
 * Exporters emit them for LayerNorm before opset 17 (ReduceMean over the
 * last axis, twice), for token pooling (x.mean(1)) and for attention's
 * numerics (ReduceMax).  The axes are an attribute, or input 1 from the
 * opset where ONNX moved them (ReduceSum 13, the others 18).
 *
 * Each output element sums (or maximises) its own input elements in a
 * fixed order, in double, one thread per output element: no shared
 * accumulators, so results do not depend on the thread count.  Backward
 * walks the same elements: each input element belongs to exactly one
 * output, so the writes never collide.  ReduceMax's gradient is split
 * evenly between tied maxima, as PyTorch's amax. */
#include "ops.h"

#include <math.h>
#include <string.h>

#define R NP_RT_MAX_RANK

typedef enum rd_kind { RD_MEAN, RD_SUM, RD_MAX, RD_N } rd_kind;

static const char *const rd_names[RD_N] = {"ReduceMean", "ReduceSum", "ReduceMax"};

static rd_kind rd_kind_of(const np_xnode *x)
{
	for (int k = 0; k < RD_N; k++)
		if (strcmp(x->op->name, rd_names[k]) == 0)
			return (rd_kind)k;
	return RD_N;
}

/* The input's axes split into kept ones (indexing outputs, in order) and
 * reduced ones, with the input's strides. */
typedef struct rd_geom {
	int nk, nr;
	int64_t kd[R], ks[R], rd[R], rs[R];
	int64_t count;               /* input elements per output */
	bool reduce[R];              /* by input axis */
	bool identity;               /* empty axes with noop_with_empty_axes */
} rd_geom;

/* The axes: input 1 from the opset where they moved there, else the
 * attribute.  given=false: reduce over all axes (or none, noop). */
static np_status rd_axes(const np_xnode *x, int64_t *axes, int *n,
                         bool *given, np_error *err)
{
	int64_t moved = rd_kind_of(x) == RD_SUM ? 13 : 18;
	*n = 0;
	*given = false;
	if (np_model_opset(x->node->graph->model, "") >= moved) {
		if (x->n_in < 2 || !x->in[1])
			return NP_OK;
		*given = true;
		return np_rt_const_ints(x, 1, axes, R, n, err);
	}
	const int64_t *a = np_node_attr_ints(x->node, "axes", n);
	if (!a)
		return NP_OK;
	if (*n > R)
		return np_rt_fail_node(err, NP_ERR_INVALID, x, "%d axes", *n);
	memcpy(axes, a, sizeof(int64_t) * (size_t)*n);
	*given = true;
	return NP_OK;
}

static np_status rd_mark(const np_xnode *x, rd_geom *g, np_error *err)
{
	const np_rtensor *in = x->in[0];
	int64_t axes[R];
	int n;
	bool given;
	np_status st = rd_axes(x, axes, &n, &given, err);
	if (st)
		return st;
	memset(g, 0, sizeof *g);
	g->identity = n == 0 && np_node_attr_int(x->node, "noop_with_empty_axes", 0);
	for (int i = 0; i < in->rank; i++)
		g->reduce[i] = n == 0 && !g->identity;
	for (int k = 0; k < n; k++) {
		int a;
		if ((st = np_rt_norm_axis(x, axes[k], in->rank, &a, err)))
			return st;
		g->reduce[a] = true;
	}
	return NP_OK;
}

static np_status rd_geometry(const np_xnode *x, rd_geom *g, np_error *err)
{
	const np_rtensor *in = x->in[0];
	np_status st = rd_mark(x, g, err);
	if (st)
		return st;
	int64_t s = 1, str[R];
	for (int i = in->rank - 1; i >= 0; i--) {
		str[i] = s;
		s *= in->dims[i];
	}
	g->count = 1;
	for (int i = 0; i < in->rank; i++) {
		if (g->reduce[i]) {
			g->rd[g->nr] = in->dims[i];
			g->rs[g->nr++] = str[i];
			g->count *= in->dims[i];
		} else {
			g->kd[g->nk] = in->dims[i];
			g->ks[g->nk++] = str[i];
		}
	}
	return NP_OK;
}

static np_status rd_infer(np_xnode *x, np_error *err)
{
	const np_rtensor *in = x->in[0];
	rd_geom g;
	if (!in || in->dtype != NP_FLOAT)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "input type %s is not supported (float only)",
		                       in ? np_dtype_name(in->dtype) : "(none)");
	np_status st = rd_geometry(x, &g, err);
	if (st)
		return st;
	bool keep = np_node_attr_int(x->node, "keepdims", 1) != 0;
	np_rtensor *o = x->out[0];
	o->dtype = NP_FLOAT;
	o->rank = 0;
	for (int i = 0; i < in->rank; i++)
		if (!g.reduce[i] || keep)
			o->dims[o->rank++] = g.reduce[i] ? 1 : in->dims[i];
	return NP_OK;
}

/* Input offset of output element e's first input element. */
static int64_t rd_base(const rd_geom *g, int64_t e)
{
	int64_t base = 0;
	for (int k = g->nk - 1; k >= 0; k--) {
		base += (e % g->kd[k]) * g->ks[k];
		e /= g->kd[k];
	}
	return base;
}

/* Steps idx/off to output e's next input element (row-major over the
 * reduced axes). */
static void rd_next(const rd_geom *g, int64_t *idx, int64_t *off)
{
	for (int a = g->nr - 1; a >= 0; a--) {
		*off += g->rs[a];
		if (++idx[a] < g->rd[a])
			return;
		*off -= g->rs[a] * g->rd[a];
		idx[a] = 0;
	}
}

static float rd_one(const rd_geom *g, rd_kind k, const float *x, int64_t base)
{
	int64_t idx[R] = {0}, off = base;
	double acc = k == RD_MAX ? -INFINITY : 0.0;
	for (int64_t j = 0; j < g->count; j++) {
		double v = x[off];
		if (k != RD_MAX)
			acc += v;
		else if (v > acc || isnan(v))
			acc = isnan(acc) ? acc : v;
		rd_next(g, idx, &off);
	}
	if (k == RD_MEAN)
		acc = g->count ? acc / (double)g->count : NAN;
	return (float)acc;
}

static np_status rd_forward(np_xnode *x, np_rt *rt, bool training,
                            np_error *err)
{
	(void)rt, (void)training;
	rd_geom g;
	np_status st = rd_geometry(x, &g, err);
	const float *in = x->in[0]->data;
	float *y = x->out[0]->data;
	int64_t n = x->out[0]->nelem;
	rd_kind k = rd_kind_of(x);
	if (st)
		return st;
	if (g.identity) {
		memcpy(y, in, sizeof(float) * (size_t)n);
		return NP_OK;
	}
	#pragma omp parallel for schedule(static)
	for (int64_t e = 0; e < n; e++)
		y[e] = rd_one(&g, k, in, rd_base(&g, e));
	return NP_OK;
}

/* Output e's gradient dy spread over its input elements: all of them
 * (sum, mean: scaled), or the maxima, split evenly between ties. */
static void rd_spread(const rd_geom *g, rd_kind k, const float *x, float y,
                      float dy, int64_t base, float *gx)
{
	int64_t idx[R] = {0}, off = base, ties = 0;
	float share = k == RD_MEAN ? dy / (float)g->count : dy;
	if (k == RD_MAX) {
		for (int64_t j = 0; j < g->count; j++) {
			ties += x[off] == y;
			rd_next(g, idx, &off);
		}
		share = ties ? dy / (float)ties : 0.0f;
	}
	for (int64_t j = 0; j < g->count; j++) {
		gx[off] = k != RD_MAX || x[off] == y ? share : 0.0f;
		rd_next(g, idx, &off);
	}
}

static np_status rd_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	np_rtensor *in = x->in[0];
	const np_rtensor *o = x->out[0];
	rd_geom g;
	if (!in->needs_grad)
		return NP_OK;
	np_status st = rd_geometry(x, &g, err);
	if (st)
		return st;
	float *gx = np_rt_grad_target(rt, in);
	if (!gx)
		return np_rt_grad_oom(err, x, in);
	rd_kind k = rd_kind_of(x);
	if (!o->grad || g.count == 0)
		memset(gx, 0, sizeof(float) * (size_t)in->nelem);
	else if (g.identity)
		memcpy(gx, o->grad, sizeof(float) * (size_t)in->nelem);
	else {
		const float *xv = in->data, *y = o->data, *dy = o->grad;
		#pragma omp parallel for schedule(static)
		for (int64_t e = 0; e < o->nelem; e++)
			rd_spread(&g, k, xv, y[e], dy[e], rd_base(&g, e), gx);
	}
	np_rt_grad_done(rt, in, gx);
	return NP_OK;
}

/* One operation per input element. */
static int64_t rd_flops(const np_node *n, const np_shape *const *in, int n_in,
                        const np_shape *out)
{
	(void)n, (void)out;
	return n_in > 0 ? np_shape_per_example(in[0]) : -1;
}

#define RD_OP(sym, op_name) \
	const np_op sym = { .name = op_name, .infer = rd_infer, \
	                    .forward = rd_forward, .backward = rd_backward, \
	                    .layout = NP_LAYOUT_PLAIN, NP_OP_NO_WEIGHT, \
	                    .flops = rd_flops, \
	                    .plan_values = 0x2 /* axes, as an input */ };

RD_OP(np_op_reducemean, "ReduceMean")
RD_OP(np_op_reducesum, "ReduceSum")
RD_OP(np_op_reducemax, "ReduceMax")
