/* movement.c - ops that move elements without arithmetic: Transpose,
 * Slice, Split, Expand.
 *
 * Transformer exports use them for attention heads (Reshape + Transpose),
 * Swin's cyclic shift (torch.roll: two Slices and a Concat), its window
 * partition, q/k/v unpacking (Split) and masks (Expand).  Every one is a
 * strided walk: each output element reads one input element at an
 * offset that is linear in its index, so forward is one walk and the
 * gradient the same walk backwards (a scatter into distinct positions:
 * Transpose, Slice, Split), except Expand's, where several outputs read
 * one input and the gradient is a sum (np_rt_sum_to).  Any element type
 * moves (shape arithmetic on int64, masks in bool); gradients are float. */
#include "ops.h"

#include <stdlib.h>
#include <string.h>

#define R NP_RT_MAX_RANK
/* Split's outputs at most (q, k, v are three). */
#define MAX_SPLIT 64

/* MOVED_PARAM: a float initializer that is transposed, sliced or
 * expanded before its use (a weight exported as W.t(), the q/k/v rows of
 * nn.MultiheadAttention's packed in_proj_weight when the exporter does
 * not fold them) is a parameter when its readers train what they read:
 * trainable_via_output, as Identity's copies.  Split has several outputs,
 * which that rule does not follow (rt.h). */

/* ------------------------------------------------------------ walks */

/* Element (i_0 .. i_{rank-1}) of the walk reads src + soff + sum i_k
 * sstr[k] and writes dst + doff + sum i_k dstr[k] (strides in
 * elements, any sign). */
typedef struct mv_walk {
	int rank;
	int64_t dims[R], sstr[R], dstr[R];
	int64_t soff, doff;
} mv_walk;

static void mv_dense_strides(const int64_t *dims, int rank, int64_t *str)
{
	int64_t s = 1;
	for (int i = rank - 1; i >= 0; i--) {
		str[i] = s;
		s *= dims[i];
	}
}

/* A walk over dims whose destination is dense (forward outputs). */
static void mv_walk_init(mv_walk *w, int rank, const int64_t *dims)
{
	memset(w, 0, sizeof *w);
	w->rank = rank;
	memcpy(w->dims, dims, sizeof(int64_t) * (size_t)rank);
	mv_dense_strides(dims, rank, w->dstr);
	if (rank == 0) {             /* a scalar: one element */
		w->rank = 1;
		w->dims[0] = 1;
	}
}

/* The walk read the other way: the destination's strides become the
 * source's (a gradient going back to the input). */
static mv_walk mv_reverse(const mv_walk *w)
{
	mv_walk r = *w;
	memcpy(r.sstr, w->dstr, sizeof r.sstr);
	memcpy(r.dstr, w->sstr, sizeof r.dstr);
	r.soff = w->doff;
	r.doff = w->soff;
	return r;
}

static void mv_row(const char *s, int64_t ss, char *d, int64_t ds,
                   int64_t n, size_t es)
{
	switch (es) {
	case 4:
		for (int64_t i = 0; i < n; i++)
			((float *)d)[i * ds] = ((const float *)s)[i * ss];
		break;
	case 8:
		for (int64_t i = 0; i < n; i++)
			((int64_t *)d)[i * ds] = ((const int64_t *)s)[i * ss];
		break;
	default:
		for (int64_t i = 0; i < n; i++)
			memcpy(d + (size_t)(i * ds) * es, s + (size_t)(i * ss) * es, es);
		break;
	}
}

/* Runs the walk; rows (all axes but the last) spread over the threads.
 * Every destination element is written by one row only. */
static void mv_run(const mv_walk *w, const void *src, void *dst, size_t es)
{
	int last = w->rank - 1;
	int64_t rows = 1, len = w->dims[last];
	for (int a = 0; a < last; a++)
		rows *= w->dims[a];
	#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		int64_t so = w->soff, dof = w->doff, rem = r;
		for (int a = last - 1; a >= 0; a--) {
			int64_t i = rem % w->dims[a];
			rem /= w->dims[a];
			so += i * w->sstr[a];
			dof += i * w->dstr[a];
		}
		mv_row((const char *)src + (size_t)so * es, w->sstr[last],
		       (char *)dst + (size_t)dof * es, w->dstr[last], len, es);
	}
}

static size_t mv_esize(const np_rtensor *t)
{
	return np_dtype_size(t->dtype);
}

static np_status mv_need_input(const np_xnode *x, int i, np_error *err)
{
	if (i >= x->n_in || !x->in[i])
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "input %d is missing", i);
	if (mv_esize(x->in[i]) == 0)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "input '%s' has element type %s",
		                       x->in[i]->name, np_dtype_name(x->in[i]->dtype));
	return NP_OK;
}

static bool mv_wants_grad(const np_rtensor *t)
{
	return t && t->needs_grad && t->dtype == NP_FLOAT;
}

/* The gradient of input 0 from output 0's by the reversed walk w, which
 * writes every element of the input when `covers`, else into zeros. */
static np_status mv_grad_walk(np_xnode *x, np_rt *rt, const mv_walk *w,
                              bool covers, np_error *err)
{
	np_rtensor *in = x->in[0];
	const np_rtensor *out = x->out[0];
	if (!mv_wants_grad(in))
		return NP_OK;
	float *g = np_rt_grad_target(rt, in);
	if (!g)
		return np_rt_grad_oom(err, x, in);
	if (!covers || !out->grad)
		memset(g, 0, sizeof(float) * (size_t)in->nelem);
	if (out->grad && out->nelem > 0) {
		mv_walk r = mv_reverse(w);
		mv_run(&r, out->grad, g, sizeof(float));
	}
	np_rt_grad_done(rt, in, g);
	return NP_OK;
}

/* ---------------------------------------------------------- Transpose */

/* perm: the attribute, or the axes reversed (ONNX's default). */
static np_status tr_perm(const np_xnode *x, int *perm, np_error *err)
{
	int rank = x->in[0]->rank, n = 0;
	const int64_t *p = np_node_attr_ints(x->node, "perm", &n);
	bool seen[R] = {false};
	if (!p) {
		for (int i = 0; i < rank; i++)
			perm[i] = rank - 1 - i;
		return NP_OK;
	}
	if (n != rank)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "perm has %d entries for rank %d", n, rank);
	for (int i = 0; i < n; i++) {
		if (p[i] < 0 || p[i] >= rank || seen[p[i]])
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "perm is not a permutation of 0..%d",
			                       rank - 1);
		seen[p[i]] = true;
		perm[i] = (int)p[i];
	}
	return NP_OK;
}

static np_status transpose_infer(np_xnode *x, np_error *err)
{
	int perm[R];
	np_status st = mv_need_input(x, 0, err);
	if (!st)
		st = tr_perm(x, perm, err);
	if (st)
		return st;
	const np_rtensor *in = x->in[0];
	np_rtensor *o = x->out[0];
	o->dtype = in->dtype;
	o->rank = in->rank;
	for (int i = 0; i < in->rank; i++)
		o->dims[i] = in->dims[perm[i]];
	return NP_OK;
}

/* Output axis i walks the input's axis perm[i]. */
static void tr_walk(const np_xnode *x, mv_walk *w)
{
	int perm[R];
	int64_t istr[R];
	np_error e = {0};
	const np_rtensor *in = x->in[0];
	tr_perm(x, perm, &e);        /* valid: infer checked it */
	mv_dense_strides(in->dims, in->rank, istr);
	mv_walk_init(w, x->out[0]->rank, x->out[0]->dims);
	for (int i = 0; i < in->rank; i++)
		w->sstr[i] = istr[perm[i]];
}

static np_status transpose_forward(np_xnode *x, np_rt *rt, bool training,
                                   np_error *err)
{
	(void)rt, (void)training, (void)err;
	mv_walk w;
	tr_walk(x, &w);
	if (x->out[0]->nelem > 0)
		mv_run(&w, x->in[0]->data, x->out[0]->data, mv_esize(x->in[0]));
	return NP_OK;
}

static np_status transpose_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	mv_walk w;
	tr_walk(x, &w);
	return mv_grad_walk(x, rt, &w, true, err);
}

const np_op np_op_transpose = {
	.name = "Transpose",
	.infer = transpose_infer,
	.forward = transpose_forward,
	.backward = transpose_backward,
	.layout = NP_LAYOUT_PLAIN,
	NP_OP_NO_WEIGHT,
	.trainable_via_output = 0x1,        /* MOVED_PARAM */
};

/* -------------------------------------------------------------- Slice */

/* Per input axis: the first element, the step and how many. */
typedef struct sl_geom {
	int64_t start[R], step[R], count[R];
} sl_geom;

/* starts, ends, axes, steps: inputs 1..4 from opset 10, attributes
 * (no steps) before. */
typedef struct sl_args {
	int64_t starts[R], ends[R], axes[R], steps[R];
	int n;
} sl_args;

static np_status sl_attr_args(const np_xnode *x, sl_args *a, np_error *err)
{
	int ns = 0, ne = 0, na = 0;
	const int64_t *s = np_node_attr_ints(x->node, "starts", &ns);
	const int64_t *e = np_node_attr_ints(x->node, "ends", &ne);
	const int64_t *ax = np_node_attr_ints(x->node, "axes", &na);
	if (!s || !e || ns != ne || (ax && na != ns) || ns > R)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "starts, ends and axes must have one entry "
		                       "per sliced axis");
	a->n = ns;
	for (int i = 0; i < ns; i++) {
		a->starts[i] = s[i];
		a->ends[i] = e[i];
		a->axes[i] = ax ? ax[i] : i;
		a->steps[i] = 1;
	}
	return NP_OK;
}

/* Optional input i (axes, steps): its values, or dflt(k) when absent. */
static np_status sl_opt_input(const np_xnode *x, int i, int64_t *v, int n,
                              bool index_default, np_error *err)
{
	int got = 0;
	if (i >= x->n_in || !x->in[i]) {
		for (int k = 0; k < n; k++)
			v[k] = index_default ? k : 1;
		return NP_OK;
	}
	np_status st = np_rt_const_ints(x, i, v, R, &got, err);
	if (!st && got != n)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "input %d has %d entries, starts %d", i, got, n);
	return st;
}

static np_status sl_input_args(const np_xnode *x, sl_args *a, np_error *err)
{
	int ne = 0;
	if (x->n_in < 3 || !x->in[1] || !x->in[2])
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "starts and ends are required");
	np_status st = np_rt_const_ints(x, 1, a->starts, R, &a->n, err);
	if (!st)
		st = np_rt_const_ints(x, 2, a->ends, R, &ne, err);
	if (!st && ne != a->n)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "starts has %d entries, ends %d", a->n, ne);
	if (!st)
		st = sl_opt_input(x, 3, a->axes, a->n, true, err);
	if (!st)
		st = sl_opt_input(x, 4, a->steps, a->n, false, err);
	return st;
}

static int64_t sl_clamp(int64_t v, int64_t lo, int64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* ONNX's rule: negative start/end count from the end, then clamp to
 * [0, dim] going forward or [-1, dim-1] (end) going backward. */
static void sl_axis(sl_geom *g, int ax, int64_t dim, int64_t s, int64_t e,
                    int64_t step)
{
	if (s < 0)
		s += dim;
	if (e < 0)
		e += dim;
	if (step > 0) {
		s = sl_clamp(s, 0, dim);
		e = sl_clamp(e, 0, dim);
		g->count[ax] = e > s ? (e - s + step - 1) / step : 0;
	} else {
		s = sl_clamp(s, 0, dim - 1);
		e = sl_clamp(e, -1, dim - 1);
		g->count[ax] = s > e ? (s - e - step - 1) / -step : 0;
	}
	g->start[ax] = g->count[ax] > 0 ? s : 0;
	g->step[ax] = step;
}

static np_status sl_geometry(const np_xnode *x, sl_geom *g, np_error *err)
{
	const np_rtensor *in = x->in[0];
	sl_args a;
	bool seen[R] = {false};
	np_status st = np_model_opset(x->node->graph->model, "") < 10
	               ? sl_attr_args(x, &a, err) : sl_input_args(x, &a, err);
	if (st)
		return st;
	for (int i = 0; i < in->rank; i++) {
		g->start[i] = 0;
		g->step[i] = 1;
		g->count[i] = in->dims[i];
	}
	for (int k = 0; k < a.n; k++) {
		int ax;
		if ((st = np_rt_norm_axis(x, a.axes[k], in->rank, &ax, err)))
			return st;
		if (seen[ax] || a.steps[k] == 0)
			return np_rt_fail_node(err, NP_ERR_INVALID, x, "axis %d is %s", ax,
			                       seen[ax] ? "repeated" : "sliced with step 0");
		seen[ax] = true;
		sl_axis(g, ax, in->dims[ax], a.starts[k], a.ends[k], a.steps[k]);
	}
	return NP_OK;
}

static np_status slice_infer(np_xnode *x, np_error *err)
{
	sl_geom g;
	np_status st = mv_need_input(x, 0, err);
	if (!st)
		st = sl_geometry(x, &g, err);
	if (st)
		return st;
	np_rtensor *o = x->out[0];
	o->dtype = x->in[0]->dtype;
	o->rank = x->in[0]->rank;
	memcpy(o->dims, g.count, sizeof(int64_t) * (size_t)o->rank);
	return NP_OK;
}

static np_status sl_walk(const np_xnode *x, mv_walk *w, np_error *err)
{
	sl_geom g;
	int64_t istr[R];
	const np_rtensor *in = x->in[0];
	np_status st = sl_geometry(x, &g, err);
	if (st)
		return st;
	mv_dense_strides(in->dims, in->rank, istr);
	mv_walk_init(w, x->out[0]->rank, x->out[0]->dims);
	for (int i = 0; i < in->rank; i++) {
		w->sstr[i] = g.step[i] * istr[i];
		w->soff += g.start[i] * istr[i];
	}
	return NP_OK;
}

static np_status slice_forward(np_xnode *x, np_rt *rt, bool training,
                               np_error *err)
{
	(void)rt, (void)training;
	mv_walk w;
	np_status st = sl_walk(x, &w, err);
	if (!st && x->out[0]->nelem > 0)
		mv_run(&w, x->in[0]->data, x->out[0]->data, mv_esize(x->in[0]));
	return st;
}

/* The slice's elements are distinct input elements: scattered into
 * zeros, the rest of the input gets none. */
static np_status slice_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	mv_walk w;
	np_status st = sl_walk(x, &w, err);
	return st ? st : mv_grad_walk(x, rt, &w, false, err);
}

const np_op np_op_slice = {
	.name = "Slice",
	.infer = slice_infer,
	.forward = slice_forward,
	.backward = slice_backward,
	.layout = NP_LAYOUT_PLAIN,
	NP_OP_NO_WEIGHT,
	.trainable_via_output = 0x1,        /* MOVED_PARAM */
	.plan_values = 0x1e,                /* starts, ends, axes, steps */
};

/* -------------------------------------------------------------- Split */

typedef struct sp_geom {
	int axis, n;
	int64_t part[MAX_SPLIT];
	int64_t dim;                 /* the input's size along the axis */
	int64_t outer, inner;        /* elements before and after the axis */
} sp_geom;

/* The parts: input 1 (opset 13+), the attribute before; absent, equal
 * parts, one per output (opset 18's num_outputs: the last one smaller). */
static np_status sp_parts(const np_xnode *x, sp_geom *g, int64_t dim,
                          np_error *err)
{
	int n = 0;
	if (np_model_opset(x->node->graph->model, "") >= 13) {
		if (x->n_in > 1 && x->in[1])
			return np_rt_const_ints(x, 1, g->part, MAX_SPLIT, &g->n, err);
	} else {
		const int64_t *s = np_node_attr_ints(x->node, "split", &n);
		if (s) {
			if (n > MAX_SPLIT)
				return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
				                       "%d parts, more than %d", n, MAX_SPLIT);
			memcpy(g->part, s, sizeof(int64_t) * (size_t)n);
			g->n = n;
			return NP_OK;
		}
	}
	g->n = (int)np_node_attr_int(x->node, "num_outputs", x->n_out);
	if (g->n < 1 || g->n > MAX_SPLIT)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "%d outputs (1 to %d supported)", g->n, MAX_SPLIT);
	int64_t each = (dim + g->n - 1) / g->n;
	if (!np_node_attr(x->node, "num_outputs") && dim % g->n)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "%lld elements do not split into %d equal parts",
		                       (long long)dim, g->n);
	for (int k = 0; k < g->n; k++)
		g->part[k] = k < g->n - 1 ? each : dim - each * (g->n - 1);
	return NP_OK;
}

static np_status sp_geometry(const np_xnode *x, sp_geom *g, np_error *err)
{
	const np_rtensor *in = x->in[0];
	np_status st = np_rt_norm_axis(x, np_node_attr_int(x->node, "axis", 0),
	                               in->rank, &g->axis, err);
	if (!st)
		st = sp_parts(x, g, in->dims[g->axis], err);
	if (st)
		return st;
	int64_t sum = 0;
	for (int k = 0; k < g->n; k++) {
		if (g->part[k] < 0)
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "part %d has a negative size", k);
		sum += g->part[k];
	}
	if (g->n != x->n_out || sum != in->dims[g->axis])
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "%d parts summing to %lld for %d outputs and "
		                       "a dimension of %lld", g->n, (long long)sum,
		                       x->n_out, (long long)in->dims[g->axis]);
	g->dim = sum;
	g->outer = 1;
	g->inner = 1;
	for (int i = 0; i < g->axis; i++)
		g->outer *= in->dims[i];
	for (int i = g->axis + 1; i < in->rank; i++)
		g->inner *= in->dims[i];
	return NP_OK;
}

static np_status split_infer(np_xnode *x, np_error *err)
{
	sp_geom g;
	np_status st = mv_need_input(x, 0, err);
	if (!st && x->in[0]->rank < 1)
		return np_rt_fail_node(err, NP_ERR_INVALID, x, "input is a scalar");
	if (!st)
		st = sp_geometry(x, &g, err);
	if (st)
		return st;
	for (int k = 0; k < x->n_out; k++) {
		np_rtensor *o = x->out[k];
		if (!o)
			continue;
		o->dtype = x->in[0]->dtype;
		o->rank = x->in[0]->rank;
		memcpy(o->dims, x->in[0]->dims, sizeof(int64_t) * (size_t)o->rank);
		o->dims[g.axis] = g.part[k];
	}
	return NP_OK;
}

/* Part k of every outer row: its block of rows along the axis, copied
 * between the input (to_input: into it) and output k. */
static void sp_move(const sp_geom *g, int k, char *in, char *part,
                    size_t es, bool to_input)
{
	int64_t off = 0;
	for (int j = 0; j < k; j++)
		off += g->part[j];
	size_t row = (size_t)(g->part[k] * g->inner) * es;
	for (int64_t o = 0; row && o < g->outer; o++) {
		char *a = in + (size_t)((o * g->dim + off) * g->inner) * es;
		char *b = part + (size_t)o * row;
		if (to_input)
			memcpy(a, b, row);
		else
			memcpy(b, a, row);
	}
}

static np_status split_forward(np_xnode *x, np_rt *rt, bool training,
                               np_error *err)
{
	(void)rt, (void)training;
	sp_geom g;
	np_status st = sp_geometry(x, &g, err);
	for (int k = 0; !st && k < g.n; k++)
		if (x->out[k])
			sp_move(&g, k, x->in[0]->data, x->out[k]->data,
			        mv_esize(x->in[0]), false);
	return st;
}

/* The input's gradient is the outputs' gradients side by side (zeros for
 * an output nobody reads). */
static np_status split_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	sp_geom g;
	np_rtensor *in = x->in[0];
	if (!mv_wants_grad(in))
		return NP_OK;
	np_status st = sp_geometry(x, &g, err);
	if (st)
		return st;
	float *gr = np_rt_grad_target(rt, in);
	if (!gr)
		return np_rt_grad_oom(err, x, in);
	memset(gr, 0, sizeof(float) * (size_t)in->nelem);
	for (int k = 0; k < g.n; k++)
		if (x->out[k] && x->out[k]->grad)
			sp_move(&g, k, (char *)gr, (char *)x->out[k]->grad,
			        sizeof(float), true);
	np_rt_grad_done(rt, in, gr);
	return NP_OK;
}

const np_op np_op_split = {
	.name = "Split",
	.infer = split_infer,
	.forward = split_forward,
	.backward = split_backward,
	.layout = NP_LAYOUT_PLAIN,
	NP_OP_NO_WEIGHT,
	.plan_values = 0x2,                 /* split (opset >= 13) */
};

/* ------------------------------------------------------------- Expand */

static np_status expand_infer(np_xnode *x, np_error *err)
{
	np_rtensor shape = {0};
	np_status st = mv_need_input(x, 0, err);
	if (!st && (x->n_in < 2 || !x->in[1]))
		return np_rt_fail_node(err, NP_ERR_INVALID, x, "shape is missing");
	if (!st)
		st = np_rt_const_ints(x, 1, shape.dims, R, &shape.rank, err);
	for (int i = 0; !st && i < shape.rank; i++)
		if (shape.dims[i] < 0)
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "shape entry %d is %lld", i,
			                       (long long)shape.dims[i]);
	if (!st)
		st = np_rt_broadcast_shape(x, x->in[0], &shape, x->out[0], err);
	if (st)
		return st;
	x->out[0]->dtype = x->in[0]->dtype;
	return NP_OK;
}

static np_status expand_forward(np_xnode *x, np_rt *rt, bool training,
                                np_error *err)
{
	(void)rt, (void)training, (void)err;
	const np_rtensor *o = x->out[0];
	mv_walk w;
	mv_walk_init(&w, o->rank, o->dims);
	if (o->rank > 0)
		np_rt_bcast_strides(x->in[0], o->rank, o->dims, w.sstr);
	if (o->nelem > 0)
		mv_run(&w, x->in[0]->data, o->data, mv_esize(o));
	return NP_OK;
}

/* Each input element was read by every output along its broadcast axes:
 * its gradient is their sum. */
static np_status expand_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	np_rtensor *in = x->in[0];
	const np_rtensor *o = x->out[0];
	if (!mv_wants_grad(in))
		return NP_OK;
	float *g = np_rt_grad_target(rt, in);
	if (!g)
		return np_rt_grad_oom(err, x, in);
	if (o->grad)
		np_rt_sum_to(o->grad, o->rank, o->dims, in, g);
	else
		memset(g, 0, sizeof(float) * (size_t)in->nelem);
	np_rt_grad_done(rt, in, g);
	return NP_OK;
}

const np_op np_op_expand = {
	.name = "Expand",
	.infer = expand_infer,
	.forward = expand_forward,
	.backward = expand_backward,
	.layout = NP_LAYOUT_PLAIN,
	NP_OP_NO_WEIGHT,
	.trainable_via_output = 0x1,        /* MOVED_PARAM */
	.plan_values = 0x2,                 /* the shape */
};
