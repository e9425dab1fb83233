/* compare.c - comparisons and selection with numpy broadcasting: Equal,
 * Less, LessOrEqual, Greater, GreaterOrEqual, Not, Where.
 *
 * Exporters build attention masks with them: nn.MultiheadAttention's
 * key_padding_mask becomes Where(mask, -inf, 0) added to the scores, and
 * shape checks compare int64 shapes (Equal) before an Expand.  The
 * comparisons and Not have bool outputs, so no gradient flows through
 * them (backward adds nothing); Where passes its output's gradient to X
 * where the condition holds and to Y elsewhere, summed over the axes
 * each is broadcast along. */
#include "ops.h"

#include <stdlib.h>
#include <string.h>

#define R NP_RT_MAX_RANK
/* np_rt_scratch slot for Where's masked gradient before its reduction. */
#define WHERE_SCRATCH 0

typedef enum cmp_kind {
	CMP_EQ, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_N
} cmp_kind;

static const char *const cmp_names[CMP_N] = {
	"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"
};

static cmp_kind cmp_kind_of(const np_xnode *x)
{
	for (int k = 0; k < CMP_N; k++)
		if (strcmp(x->op->name, cmp_names[k]) == 0)
			return (cmp_kind)k;
	return CMP_N;
}

/* ---------------------------------------------------- broadcast walks */

/* Up to three operands read along the output's axes (0 strides where
 * broadcast), the output dense. */
typedef struct bc_walk {
	int rank, n_ops;
	int64_t dims[R], str[3][R];
	int64_t rows, len;
} bc_walk;

static void bc_init(bc_walk *w, const np_rtensor *out,
                    const np_rtensor *const *ops, int n_ops)
{
	memset(w, 0, sizeof *w);
	w->n_ops = n_ops;
	w->rank = out->rank > 0 ? out->rank : 1;
	w->dims[0] = 1;
	memcpy(w->dims, out->dims, sizeof(int64_t) * (size_t)out->rank);
	for (int k = 0; k < n_ops; k++)
		if (out->rank > 0)
			np_rt_bcast_strides(ops[k], out->rank, out->dims, w->str[k]);
	w->rows = 1;
	for (int a = 0; a < w->rank - 1; a++)
		w->rows *= w->dims[a];
	w->len = w->dims[w->rank - 1];
}

/* The operands' offsets at the start of row r. */
static void bc_row(const bc_walk *w, int64_t r, int64_t *off)
{
	for (int k = 0; k < w->n_ops; k++)
		off[k] = 0;
	for (int a = w->rank - 2; a >= 0; a--) {
		int64_t i = r % w->dims[a];
		r /= w->dims[a];
		for (int k = 0; k < w->n_ops; k++)
			off[k] += i * w->str[k][a];
	}
}

/* --------------------------------------------------------- comparison */

static bool cmp_is_real(int dtype)
{
	return dtype == NP_FLOAT || dtype == NP_DOUBLE;
}

static bool cmp_dtype_ok(int dtype)
{
	switch (dtype) {
	case NP_FLOAT: case NP_DOUBLE: case NP_BOOL:
	case NP_INT8: case NP_INT16: case NP_INT32: case NP_INT64:
	case NP_UINT8: case NP_UINT16: case NP_UINT32:
		return true;
	default:
		return false;
	}
}

static double cmp_real(const void *p, int dtype, int64_t i)
{
	return dtype == NP_FLOAT ? ((const float *)p)[i] : ((const double *)p)[i];
}

/* Every supported integer type fits int64 exactly. */
static int64_t cmp_int(const void *p, int dtype, int64_t i)
{
	switch (dtype) {
	case NP_BOOL: case NP_UINT8: return ((const uint8_t *)p)[i];
	case NP_INT8: return ((const int8_t *)p)[i];
	case NP_INT16: return ((const int16_t *)p)[i];
	case NP_UINT16: return ((const uint16_t *)p)[i];
	case NP_INT32: return ((const int32_t *)p)[i];
	case NP_UINT32: return ((const uint32_t *)p)[i];
	default: return ((const int64_t *)p)[i];
	}
}

/* -1, 0, 1 as a < b, a == b, a > b; 2 when unordered (NaN). */
static int cmp_order(const np_rtensor *a, int64_t i, const np_rtensor *b,
                     int64_t j)
{
	if (cmp_is_real(a->dtype)) {
		double u = cmp_real(a->data, a->dtype, i);
		double v = cmp_real(b->data, b->dtype, j);
		return u < v ? -1 : u > v ? 1 : u == v ? 0 : 2;
	}
	int64_t u = cmp_int(a->data, a->dtype, i), v = cmp_int(b->data, b->dtype, j);
	return u < v ? -1 : u > v ? 1 : 0;
}

static bool cmp_holds(cmp_kind k, int order)
{
	switch (k) {
	case CMP_EQ: return order == 0;
	case CMP_LT: return order == -1;
	case CMP_LE: return order == -1 || order == 0;
	case CMP_GT: return order == 1;
	case CMP_GE: return order == 1 || order == 0;
	default: return false;
	}
}

static np_status cmp_infer(np_xnode *x, np_error *err)
{
	const np_rtensor *a = x->in[0], *b = x->n_in > 1 ? x->in[1] : NULL;
	if (!a || !b)
		return np_rt_fail_node(err, NP_ERR_INVALID, x, "two inputs are required");
	if (a->dtype != b->dtype || !cmp_dtype_ok(a->dtype) ||
	    (a->dtype == NP_BOOL && cmp_kind_of(x) != CMP_EQ))
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "input types %s and %s are not supported",
		                       np_dtype_name(a->dtype), np_dtype_name(b->dtype));
	np_status st = np_rt_broadcast_shape(x, a, b, x->out[0], err);
	if (!st)
		x->out[0]->dtype = NP_BOOL;
	return st;
}

static np_status cmp_forward(np_xnode *x, np_rt *rt, bool training,
                             np_error *err)
{
	(void)rt, (void)training, (void)err;
	const np_rtensor *ops[2] = {x->in[0], x->in[1]};
	cmp_kind k = cmp_kind_of(x);
	uint8_t *y = x->out[0]->data;
	bc_walk w;
	if (x->out[0]->nelem == 0)
		return NP_OK;
	bc_init(&w, x->out[0], ops, 2);
	#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < w.rows; r++) {
		int64_t off[3];
		bc_row(&w, r, off);
		for (int64_t i = 0; i < w.len; i++) {
			int o = cmp_order(ops[0], off[0] + i * w.str[0][w.rank - 1],
			                  ops[1], off[1] + i * w.str[1][w.rank - 1]);
			y[r * w.len + i] = cmp_holds(k, o);
		}
	}
	return NP_OK;
}

/* A bool output carries no gradient: nothing to add (the planner zeroes
 * a gradient no consumer wrote). */
static np_status no_grad_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	(void)x, (void)rt, (void)err;
	return NP_OK;
}

#define CMP_OP(sym, op_name) \
	const np_op sym = { .name = op_name, .infer = cmp_infer, \
	                    .forward = cmp_forward, \
	                    .backward = no_grad_backward, \
	                    .layout = NP_LAYOUT_PLAIN, NP_OP_NO_WEIGHT };

CMP_OP(np_op_equal, "Equal")
CMP_OP(np_op_less, "Less")
CMP_OP(np_op_lessorequal, "LessOrEqual")
CMP_OP(np_op_greater, "Greater")
CMP_OP(np_op_greaterorequal, "GreaterOrEqual")

/* ---------------------------------------------------------------- Not */

static np_status not_infer(np_xnode *x, np_error *err)
{
	const np_rtensor *a = x->in[0];
	if (!a || a->dtype != NP_BOOL)
		return np_rt_fail_node(err, NP_ERR_INVALID, x, "input must be bool");
	np_rtensor *o = x->out[0];
	o->dtype = NP_BOOL;
	o->rank = a->rank;
	memcpy(o->dims, a->dims, sizeof(int64_t) * (size_t)a->rank);
	return NP_OK;
}

static np_status not_forward(np_xnode *x, np_rt *rt, bool training,
                             np_error *err)
{
	(void)rt, (void)training, (void)err;
	const uint8_t *a = x->in[0]->data;
	uint8_t *y = x->out[0]->data;
	for (int64_t i = 0; i < x->in[0]->nelem; i++)
		y[i] = !a[i];
	return NP_OK;
}

const np_op np_op_not = {
	.name = "Not",
	.infer = not_infer,
	.forward = not_forward,
	.backward = no_grad_backward,
	.layout = NP_LAYOUT_PLAIN,
	NP_OP_NO_WEIGHT,
};

/* -------------------------------------------------------------- Where */

static np_status where_infer(np_xnode *x, np_error *err)
{
	const np_rtensor *c = x->in[0];
	const np_rtensor *a = x->n_in > 1 ? x->in[1] : NULL;
	const np_rtensor *b = x->n_in > 2 ? x->in[2] : NULL;
	np_rtensor ab = {0};
	if (!c || !a || !b)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "three inputs are required");
	if (c->dtype != NP_BOOL)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "condition must be bool, not %s",
		                       np_dtype_name(c->dtype));
	if (a->dtype != b->dtype || np_dtype_size(a->dtype) == 0)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "input types %s and %s are not supported",
		                       np_dtype_name(a->dtype), np_dtype_name(b->dtype));
	np_status st = np_rt_broadcast_shape(x, a, b, &ab, err);
	if (!st)
		st = np_rt_broadcast_shape(x, c, &ab, x->out[0], err);
	if (!st)
		x->out[0]->dtype = a->dtype;
	return st;
}

static np_status where_forward(np_xnode *x, np_rt *rt, bool training,
                               np_error *err)
{
	(void)rt, (void)training, (void)err;
	const np_rtensor *ops[3] = {x->in[0], x->in[1], x->in[2]};
	const uint8_t *c = ops[0]->data;
	const char *a = ops[1]->data, *b = ops[2]->data;
	char *y = x->out[0]->data;
	size_t es = np_dtype_size(ops[1]->dtype);
	bc_walk w;
	if (x->out[0]->nelem == 0)
		return NP_OK;
	bc_init(&w, x->out[0], ops, 3);
	int l = w.rank - 1;
	#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < w.rows; r++) {
		int64_t off[3];
		bc_row(&w, r, off);
		for (int64_t i = 0; i < w.len; i++) {
			bool t = c[off[0] + i * w.str[0][l]];
			const char *s = t ? a + (size_t)(off[1] + i * w.str[1][l]) * es
			                  : b + (size_t)(off[2] + i * w.str[2][l]) * es;
			memcpy(y + (size_t)(r * w.len + i) * es, s, es);
		}
	}
	return NP_OK;
}

/* dy where the condition is (want) or is not (!want): output shape. */
static void where_mask(const np_xnode *x, bool want, float *t)
{
	const np_rtensor *ops[1] = {x->in[0]};
	const uint8_t *c = x->in[0]->data;
	const float *dy = x->out[0]->grad;
	bc_walk w;
	bc_init(&w, x->out[0], ops, 1);
	int l = w.rank - 1;
	#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < w.rows; r++) {
		int64_t off[3];
		bc_row(&w, r, off);
		for (int64_t i = 0; i < w.len; i++) {
			int64_t e = r * w.len + i;
			t[e] = (c[off[0] + i * w.str[0][l]] != 0) == want ? dy[e] : 0.0f;
		}
	}
}

static np_status where_grad_of(np_xnode *x, np_rt *rt, int i, np_error *err)
{
	np_rtensor *in = x->in[i];
	const np_rtensor *o = x->out[0];
	float *g = np_rt_grad_target(rt, in);
	if (!g)
		return np_rt_grad_oom(err, x, in);
	bool full = in->nelem == o->nelem;
	float *t = full ? g : np_rt_scratch(rt, WHERE_SCRATCH,
	                                    sizeof(float) * (size_t)o->nelem);
	if (!t)
		return np_rt_grad_oom(err, x, in);
	where_mask(x, i == 1, t);
	if (!full)
		np_rt_sum_to(t, o->rank, o->dims, in, g);
	np_rt_grad_done(rt, in, g);
	return NP_OK;
}

static np_status where_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	if (x->out[0]->nelem == 0 || !x->out[0]->grad)
		return NP_OK;
	for (int i = 1; i < 3; i++)
		if (x->in[i]->needs_grad && x->in[i]->dtype == NP_FLOAT &&
		    where_grad_of(x, rt, i, err))
			return err->status;
	return NP_OK;
}

const np_op np_op_where = {
	.name = "Where",
	.infer = where_infer,
	.forward = where_forward,
	.backward = where_backward,
	.layout = NP_LAYOUT_PLAIN,
	NP_OP_NO_WEIGHT,
};
