/* ops.c - the op table: one line per op in ops.def. */
#include "ops.h"

#include <string.h>

static const np_op *const np_ops[] = {
#define NP_OP(name, sym) &sym,
#include "ops.def"
#undef NP_OP
};

/* Both tables come from the same ops.def lines, so they cannot differ in
 * length; what can differ is an op's .name (written in runtime/ops/) and
 * its ops.def name: tests/test_ops.c checks every entry. */
static const char *const np_op_names[] = {
#define NP_OP(name, sym) #name,
#include "ops.def"
#undef NP_OP
};

const np_op *np_op_find(const char *domain, const char *op_type)
{
	if (domain && *domain && strcmp(domain, "ai.onnx") != 0)
		return NULL;
	for (size_t i = 0; i < sizeof np_ops / sizeof np_ops[0]; i++)
		if (strcmp(np_op_names[i], op_type) == 0)
			return np_ops[i];
	return NULL;
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
