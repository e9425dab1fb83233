/* ops.c - the op table: one line per op in ops.def. */
#include "ops.h"

#include <string.h>

static const np_op *const np_ops[] = {
#define NP_OP(name, sym) &sym,
#include "ops.def"
#undef NP_OP
};

/* Both tables come from the same ops.def lines, so they cannot differ in
 * length, and an index into them is an np_op_kind (as the assertion
 * below says); what can differ is an op's .name (written in runtime/ops/)
 * and its ops.def name: tests/test_ops.c checks every entry. */
static const char *const np_op_names[] = {
#define NP_OP(name, sym) #name,
#include "ops.def"
#undef NP_OP
};
_Static_assert(sizeof np_ops / sizeof np_ops[0] == NP_OPK_COUNT &&
               sizeof np_op_names / sizeof np_op_names[0] == NP_OPK_COUNT,
               "np_op_kind indexes the op table");

/* Table index of (domain, op_type), which is also its np_op_kind. */
static np_op_kind np_op_lookup(const char *domain, const char *op_type)
{
	if (domain && *domain && strcmp(domain, "ai.onnx") != 0)
		return NP_OPK_NONE;
	for (int i = 0; i < NP_OPK_COUNT; i++)
		if (strcmp(np_op_names[i], op_type) == 0)
			return (np_op_kind)i;
	return NP_OPK_NONE;
}

const np_op *np_op_find(const char *domain, const char *op_type)
{
	np_op_kind k = np_op_lookup(domain, op_type);
	return k == NP_OPK_NONE ? NULL : np_ops[k];
}

np_op_kind np_node_kind(const np_node *n)
{
	return n ? np_op_lookup(n->domain, n->op_type) : NP_OPK_NONE;
}

const np_op *np_node_op(const np_node *n)
{
	np_op_kind k = np_node_kind(n);
	return k == NP_OPK_NONE ? NULL : np_ops[k];
}

const char *np_op_name(np_op_kind k)
{
	return k > NP_OPK_NONE && k < NP_OPK_COUNT ? np_op_names[k] : NULL;
}

unsigned np_node_flags(const np_node *n)
{
	const np_op *op = np_node_op(n);
	return op ? op->flags : 0;
}

bool np_node_weight_geom(const np_node *n, int rank, const int64_t *dims,
                         np_weight_geom *g)
{
	const np_op *op = np_node_op(n);
	return op && op->weight_geom && op->weight_geom(n, rank, dims, g);
}

np_status np_rt_broadcast_shape(const np_xnode *x, const np_rtensor *a,
                                const np_rtensor *b, np_rtensor *out,
                                np_error *err)
{
	int r = a->rank > b->rank ? a->rank : b->rank;
	for (int i = 0; i < r; i++) {
		int ia = i - (r - a->rank), ib = i - (r - b->rank);
		int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
		if (da != db && da != 1 && db != 1)
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "shapes do not broadcast at axis %d (%lld vs %lld)",
			                       i, (long long)da, (long long)db);
		out->dims[i] = da == 1 ? db : da;
	}
	out->rank = r;
	return NP_OK;
}

int64_t np_shape_per_example(const np_shape *s)
{
	if (!s)
		return -1;
	int64_t p = 1;
	for (int i = 1; i < s->rank; i++) {
		if (s->dims[i] < 0)
			return -1;
		p *= s->dims[i];
	}
	return p;
}

int64_t np_flops_per_element(const np_node *n, const np_shape *const *in,
                             int n_in, const np_shape *out)
{
	(void)n, (void)in, (void)n_in;
	return np_shape_per_example(out);
}

np_status np_rt_const_ints(const np_xnode *x, int i, int64_t *v, int max,
                           int *n, np_error *err)
{
	const np_rtensor *t = x->in[i];
	*n = 0;
	/* The planner decides from the fact whether integer model inputs
	 * are constants (exec.c, np_ints_reach_plan_values): an op reading
	 * an input here must say so in its table entry. */
	if (!np_op_input_bit(x->op->plan_values, i))
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "reads input %d at plan time, which its op "
		                       "table entry does not say (plan_values)", i);
	if (!t->is_const)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "input '%s' must be known at plan time", t->name);
	if ((t->dtype != NP_INT64 && t->dtype != NP_INT32) || t->rank > 1)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "input '%s' must be a 1-D int64 tensor", t->name);
	if (t->nelem > max)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "input '%s' has %lld entries, more than %d",
		                       t->name, (long long)t->nelem, max);
	for (int64_t k = 0; k < t->nelem; k++)
		v[k] = t->dtype == NP_INT64 ? ((const int64_t *)t->data)[k]
		                            : ((const int32_t *)t->data)[k];
	*n = (int)t->nelem;
	return NP_OK;
}

np_status np_rt_norm_axis(const np_xnode *x, int64_t axis, int rank,
                          int *out, np_error *err)
{
	*out = 0;
	if (axis < -rank || axis >= rank)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "axis %lld is out of range for rank %d",
		                       (long long)axis, rank);
	*out = (int)(axis < 0 ? axis + rank : axis);
	return NP_OK;
}

void np_rt_bcast_strides(const np_rtensor *t, int rank, const int64_t *dims,
                         int64_t *str)
{
	int pad = rank - t->rank;
	int64_t s = 1;
	for (int i = rank - 1; i >= 0; i--) {
		int j = i - pad;
		str[i] = j >= 0 && t->dims[j] != 1 && dims[i] != 1 ? s : 0;
		if (j >= 0)
			s *= t->dims[j];
	}
}

/* The sum over the reduced axes (red[0..nr), sizes rd, strides rs in
 * src) of the elements at src + base, in row-major order. */
static float np_sum_axes(const float *src, int64_t base, int nr,
                         const int64_t *rd, const int64_t *rs, int64_t count)
{
	int64_t idx[NP_RT_MAX_RANK] = {0}, off = base;
	float sum = 0.0f;
	for (int64_t k = 0; k < count; k++) {
		sum += src[off];
		for (int a = nr - 1; a >= 0; a--) {
			off += rs[a];
			if (++idx[a] < rd[a])
				break;
			off -= rs[a] * rd[a];
			idx[a] = 0;
		}
	}
	return sum;
}

void np_rt_sum_to(const float *src, int rank, const int64_t *dims,
                  const np_rtensor *t, float *dst)
{
	int64_t tstr[NP_RT_MAX_RANK], sstr[NP_RT_MAX_RANK];
	int64_t kd[NP_RT_MAX_RANK], ks[NP_RT_MAX_RANK];
	int64_t rd[NP_RT_MAX_RANK], rs[NP_RT_MAX_RANK], count = 1;
	int nk = 0, nr = 0;
	int64_t s = 1;
	np_rt_bcast_strides(t, rank, dims, tstr);
	for (int i = rank - 1; i >= 0; i--) {
		sstr[i] = s;
		s *= dims[i];
	}
	for (int i = 0; i < rank; i++) {
		if (tstr[i] || dims[i] == 1) {
			kd[nk] = dims[i];
			ks[nk++] = sstr[i];
		} else {
			rd[nr] = dims[i];
			rs[nr++] = sstr[i];
			count *= dims[i];
		}
	}
	int64_t n = t->nelem;
	#pragma omp parallel for schedule(static)
	for (int64_t e = 0; e < n; e++) {
		int64_t base = 0, rem = e;
		for (int k = nk - 1; k >= 0; k--) {
			base += (rem % kd[k]) * ks[k];
			rem /= kd[k];
		}
		dst[e] = np_sum_axes(src, base, nr, rd, rs, count);
	}
}
