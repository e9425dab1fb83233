/* test_passes_fold.c - fold_bn, fold_gemm, fold_conv and the cost model.
 *
 * Each case is a tiny hand-built graph run through the runtime before and
 * after the pass on random inputs: the outputs must agree to
 * |a-b| <= 1e-5 * max|b| + 1e-6, the graph must verify, the graph output
 * names stay, the kept node has the expected name and op and its
 * doc_string names what was folded.  Refused cases check the log's reason
 * and that nothing changed.  The cost model is checked against numbers
 * worked out by hand. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fold.h"
#include "graphkit.h"
#include "nepenthe.h"
#include "pass.h"
#include "tap.h"

#define BATCH 3          /* dynamic dims of the inputs at run time */

/* ------------------------------------------------------------ helpers */

static np_value *bn(gk *k, const char *name, np_value *x, int64_t c)
{
	np_value *in[5] = {
		x,
		gk_weight(k, NULL, GK_SHAPE(c), 0.5f, 1.5f),
		gk_weight(k, NULL, GK_SHAPE(c), -1.0f, 1.0f),
		gk_weight(k, NULL, GK_SHAPE(c), -1.0f, 1.0f),
		gk_weight(k, NULL, GK_SHAPE(c), 0.5f, 2.0f),
	};
	np_node *n = gk_node(k, "BatchNormalization", name, in, 5);
	np_node_set_attr_float(n, "epsilon", 1e-3f);
	return gk_done(k, n);
}

typedef struct convp {
	int64_t cout, cin, k, stride, pad, dil, group;
	bool bias;
} convp;

/* A 2-D conv with a square kernel; weight named NAME.weight. */
static np_value *conv(gk *k, const char *name, np_value *x, convp p)
{
	if (!p.stride)
		p.stride = 1;
	if (!p.dil)
		p.dil = 1;
	if (!p.group)
		p.group = 1;
	const char *wn = np_arena_printf(k->m->arena, "%s.weight", name);
	const char *bn_ = np_arena_printf(k->m->arena, "%s.bias", name);
	np_value *in[3] = {x,
	                   gk_weight(k, wn, GK_SHAPE(p.cout, p.cin / p.group, p.k, p.k), -1, 1),
	                   p.bias ? gk_weight(k, bn_, GK_SHAPE(p.cout), -1, 1) : NULL};
	np_node *n = gk_node(k, "Conv", name, in, p.bias ? 3 : 2);
	gk_set_ints(n, "kernel_shape", GK_SHAPE(p.k, p.k));
	gk_set_ints(n, "strides", GK_SHAPE(p.stride, p.stride));
	gk_set_ints(n, "pads", GK_SHAPE(p.pad, p.pad, p.pad, p.pad));
	gk_set_ints(n, "dilations", GK_SHAPE(p.dil, p.dil));
	if (p.group != 1)
		np_node_set_attr_int(n, "group", p.group);
	return gk_done(k, n);
}

typedef struct gemmp {
	int64_t k, n;
	bool trans_a, trans_b, bias, bias_row, bias_scalar;
	float alpha, beta;           /* 0: attribute absent */
} gemmp;

static np_value *gemm(gk *k, const char *name, np_value *x, gemmp p)
{
	const char *wn = np_arena_printf(k->m->arena, "%s.weight", name);
	np_value *w = p.trans_b ? gk_weight(k, wn, GK_SHAPE(p.n, p.k), -1, 1)
	                        : gk_weight(k, wn, GK_SHAPE(p.k, p.n), -1, 1);
	np_value *c = NULL;
	if (p.bias_scalar)
		c = gk_weight(k, NULL, GK_SHAPE(1), -1, 1);
	else if (p.bias_row)
		c = gk_weight(k, NULL, GK_SHAPE(1, p.n), -1, 1);
	else if (p.bias)
		c = gk_weight(k, NULL, GK_SHAPE(p.n), -1, 1);
	np_value *in[3] = {x, w, c};
	np_node *n = gk_node(k, "Gemm", name, in, c ? 3 : 2);
	if (p.trans_a)
		np_node_set_attr_int(n, "transA", 1);
	if (p.trans_b)
		np_node_set_attr_int(n, "transB", 1);
	if (p.alpha != 0)
		np_node_set_attr_float(n, "alpha", p.alpha);
	if (p.beta != 0)
		np_node_set_attr_float(n, "beta", p.beta);
	return gk_done(k, n);
}

static np_value *matmul(gk *k, const char *name, np_value *x, int64_t kk, int64_t n)
{
	const char *wn = np_arena_printf(k->m->arena, "%s.weight", name);
	return gk_op(k, "MatMul", name, GK_IN(x, gk_weight(k, wn, GK_SHAPE(kk, n), -1, 1)));
}

/* ---------------------------------------------------------- the check */

typedef struct expect {
	const char *passes;
	np_fold_policy policy;
	int nodes;                   /* live nodes after the pass */
	const char *kept, *kept_op;  /* a node expected after, or NULL */
	const char *doc;             /* substring of its doc_string */
	const char *refused;         /* a REFUSED entry saying this; no change
	                              * ("": only no change, e.g. --fold none) */
	/* Only these output positions must match (approximate folds):
	 * NULL = all. */
	bool (*compare_at)(int64_t i, const np_rtensor *shape_of);
} expect;

typedef struct run_out {
	float *y;
	int64_t n;
	np_rtensor shape;            /* dims of output 0 */
} run_out;

static bool run(np_model *m, const np_rt_input *in, int n_in, run_out *o,
                np_error *err)
{
	memset(o, 0, sizeof *o);
	np_rt *rt = np_rt_new(m, 1, err);
	if (!rt)
		return false;
	bool good = np_rt_run(rt, in, n_in, NP_RT_INFER, err) == NP_OK;
	if (good) {
		const np_rtensor *y = np_rt_output(rt, 0);
		o->n = y->nelem;
		o->shape = *y;
		o->y = malloc(sizeof(float) * (size_t)(y->nelem + 1));
		memcpy(o->y, y->data, sizeof(float) * (size_t)y->nelem);
	}
	np_rt_free(rt);
	return good;
}

static bool compare(const run_out *a, const run_out *b, const expect *e,
                    double *worst)
{
	if (a->n != b->n)
		return false;
	if (!e->compare_at)
		return gk_close(a->y, b->y, a->n, worst);
	double mx = 0, w = 0;
	for (int64_t i = 0; i < b->n; i++)
		mx = fmax(mx, fabs((double)b->y[i]));
	int64_t checked = 0;
	for (int64_t i = 0; i < b->n; i++)
		if (e->compare_at(i, &b->shape)) {
			w = fmax(w, fabs((double)a->y[i] - (double)b->y[i]));
			checked++;
		}
	*worst = w;
	return checked > 0 && w <= 1e-5 * mx + 1e-6;
}

/* Some output outside compare_at differs beyond the tolerance. */
static bool border_differs(const run_out *a, const run_out *b, const expect *e)
{
	double mx = 0;
	for (int64_t i = 0; i < b->n; i++)
		mx = fmax(mx, fabs((double)b->y[i]));
	for (int64_t i = 0; i < b->n && a->n == b->n; i++)
		if (!e->compare_at(i, &b->shape) &&
		    fabs((double)a->y[i] - (double)b->y[i]) > 1e-5 * mx + 1e-6)
			return true;
	return false;
}

static const np_log_entry *find_log(const np_pass_log *log, np_log_kind kind,
                                    const char *text)
{
	for (int i = 0; i < log->n; i++)
		if (log->v[i].kind == kind &&
		    (!text || (log->v[i].why && strstr(log->v[i].why, text))))
			return &log->v[i];
	return NULL;
}

static void check_case(const char *what, void (*build)(gk *), const expect *e)
{
	gk k;
	np_error err = {0};
	gk_init(&k, 13, 7);
	build(&k);
	if (np_graph_verify(k.g, &err) != NP_OK) {
		ok(0, "%s: bad test model: %s", what, err.msg);
		gk_free(&k);
		return;
	}
	np_rt_input in[4];
	float *data[4] = {0};
	int n_in = gk_random_inputs(&k, in, data, BATCH);
	run_out before, after;
	if (!run(k.m, in, n_in, &before, &err)) {
		ok(0, "%s: runtime before: %s", what, err.msg);
		goto out;
	}
	const char *names[4];
	int n_out = k.g->n_outputs;
	for (int i = 0; i < n_out && i < 4; i++)
		names[i] = k.g->outputs[i]->name;

	np_pass_log log = {0};
	np_pass_ctx ctx = {.fold = e->policy, .log = &log};
	np_status st = np_run_passes(k.m, e->passes, &ctx, &err);
	ok(st == NP_OK, "%s: %s runs (%s)", what, e->passes, st ? err.msg : "ok");
	ok(np_graph_verify(k.g, &err) == NP_OK, "%s: graph verifies", what);
	bool same_names = k.g->n_outputs == n_out;
	for (int i = 0; same_names && i < n_out && i < 4; i++)
		same_names = strcmp(k.g->outputs[i]->name, names[i]) == 0;
	ok(same_names, "%s: graph output names unchanged", what);
	ok(k.g->n_nodes == e->nodes, "%s: %d nodes after (expected %d)", what,
	   k.g->n_nodes, e->nodes);
	if (e->refused && !*e->refused) {
		ok(ctx.changes == 0 && !find_log(&log, NP_LOG_FOLDED, NULL),
		   "%s: nothing folded", what);
	} else if (e->refused) {
		const np_log_entry *r = find_log(&log, NP_LOG_REFUSED, e->refused);
		ok(ctx.changes == 0 && r, "%s: refused: %s", what,
		   r ? r->why : "(no such log entry)");
	} else {
		ok(ctx.changes > 0 && find_log(&log, NP_LOG_FOLDED, NULL),
		   "%s: folded (%d changes)", what, ctx.changes);
	}
	if (e->kept) {
		np_node *kn = gk_find_node(k.g, e->kept);
		ok(kn && strcmp(kn->op_type, e->kept_op) == 0,
		   "%s: kept node %s is a %s", what, e->kept, e->kept_op);
		if (e->doc)
			ok(kn && kn->doc_string && strstr(kn->doc_string, e->doc),
			   "%s: doc_string '%s' names '%s'", what,
			   kn && kn->doc_string ? kn->doc_string : "", e->doc);
	}
	if (!run(k.m, in, n_in, &after, &err)) {
		ok(0, "%s: runtime after: %s", what, err.msg);
	} else {
		double worst = 0, mx = 0;
		for (int64_t i = 0; i < before.n; i++)
			mx = fmax(mx, fabs((double)before.y[i]));
		bool same = compare(&after, &before, e, &worst);
		ok(same && mx > 0,
		   "%s: same outputs before and after (max |diff| %.3g, max |y| %.3g%s)",
		   what, worst, mx, e->compare_at ? ", interior" : "");
		if (e->compare_at)
			ok(border_differs(&after, &before, e),
			   "%s: border outputs do differ (the fold is approximate)", what);
		free(after.y);
	}
	np_pass_log_free(&log);
	free(before.y);
out:
	for (int i = 0; i < n_in; i++)
		free(data[i]);
	gk_free(&k);
}

/* ------------------------------------------------------ fold_bn cases */

static void conv_bn_bias(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *c = conv(k, "conv", x, (convp){.cout = 6, .cin = 4, .k = 3, .pad = 1, .bias = true});
	gk_output(k, bn(k, "bn", c, 6));
}

static void conv_bn_nobias(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *c = conv(k, "conv", x, (convp){.cout = 6, .cin = 4, .k = 3, .stride = 2});
	gk_output(k, bn(k, "bn", c, 6));
}

static void conv_bn_groups(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *c = conv(k, "conv", x, (convp){.cout = 6, .cin = 4, .k = 3, .pad = 1, .group = 2});
	gk_output(k, bn(k, "bn", c, 6));
}

static void conv_bn_depthwise(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *c = conv(k, "conv", x, (convp){.cout = 4, .cin = 4, .k = 3, .pad = 1,
	                                         .group = 4, .bias = true});
	gk_output(k, bn(k, "bn", c, 4));
}

/* Two convs share one weight: each BN folds, the first into a copy. */
static void conv_bn_shared_weight(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 3, 5, 5));
	np_value *c1 = conv(k, "conv1", x, (convp){.cout = 3, .cin = 3, .k = 3, .pad = 1});
	np_node *n2 = gk_node(k, "Conv", "conv2", GK_IN(bn(k, "bn1", c1, 3), c1->producer->inputs[1]));
	gk_set_ints(n2, "pads", GK_SHAPE(1, 1, 1, 1));
	gk_output(k, bn(k, "bn2", gk_done(k, n2), 3));
}

static void conv_bn_two_readers(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *c = conv(k, "conv", x, (convp){.cout = 6, .cin = 4, .k = 3, .pad = 1, .bias = true});
	np_value *b = bn(k, "bn", c, 6);
	gk_output(k, gk_op(k, "Add", "add", GK_IN(b, c)));
}

static void conv_bn_training(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *c = conv(k, "conv", x, (convp){.cout = 6, .cin = 4, .k = 3, .pad = 1});
	np_value *in[5] = {
		c, gk_weight(k, NULL, GK_SHAPE(6), 0.5f, 1.5f), gk_weight(k, NULL, GK_SHAPE(6), -1, 1),
		gk_weight(k, NULL, GK_SHAPE(6), -1, 1), gk_weight(k, NULL, GK_SHAPE(6), 0.5f, 2),
	};
	/* Scale from a graph input: not a constant. */
	in[1] = gk_input(k, "scale", GK_SHAPE(6));
	gk_output(k, gk_op(k, "BatchNormalization", "bn", in, 5));
}

/* PyTorch shares equal initializers through Identity nodes. */
static void conv_bn_identity_param(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *c = conv(k, "conv", x, (convp){.cout = 6, .cin = 4, .k = 3, .pad = 1});
	np_value *b = bn(k, "bn", c, 6);
	np_node *n = b->producer;
	np_node_set_input(n, 2, gk_op(k, "Identity", "share", GK_IN(n->inputs[2])));
	np_error err = {0};
	np_graph_toposort(k->g, &err);
	gk_output(k, b);
}

static void gemm_bn_transb1(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 5));
	np_value *g = gemm(k, "fc", x, (gemmp){.k = 5, .n = 3, .trans_b = true, .bias = true,
	                                        .alpha = 0.8f, .beta = 1.7f});
	gk_output(k, bn(k, "bn", g, 3));
}

static void gemm_bn_transb0(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 5));
	np_value *g = gemm(k, "fc", x, (gemmp){.k = 5, .n = 3, .bias_row = true, .beta = 0.6f});
	gk_output(k, bn(k, "bn", g, 3));
}

static void gemm_bn_nobias(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 5));
	np_value *g = gemm(k, "fc", x, (gemmp){.k = 5, .n = 3, .trans_b = true});
	gk_output(k, bn(k, "bn", g, 3));
}

static void gemm_bn_scalar_bias(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 5));
	np_value *g = gemm(k, "fc", x, (gemmp){.k = 5, .n = 3, .bias_scalar = true, .beta = 2});
	gk_output(k, bn(k, "bn", g, 3));
}

static void matmul_bn(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 5));
	gk_output(k, bn(k, "bn", matmul(k, "mm", x, 5, 3), 3));
}

static void matmul3d_bn(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 3, 5));
	gk_output(k, bn(k, "bn", matmul(k, "mm", x, 5, 4), 3));
}

static void fold_bn_cases(void)
{
	check_case("Conv+BN (bias)", conv_bn_bias,
	           &(expect){"fold_bn", NP_FOLD_EXACT, 1, "conv", "Conv",
	                     "folded: bn (BatchNormalization)", NULL, NULL});
	check_case("Conv+BN (no bias, stride 2)", conv_bn_nobias,
	           &(expect){"fold_bn", NP_FOLD_EXACT, 1, "conv", "Conv",
	                     "folded: bn (BatchNormalization)", NULL, NULL});
	check_case("Conv+BN (group 2)", conv_bn_groups,
	           &(expect){"fold_bn", NP_FOLD_EXACT, 1, "conv", "Conv",
	                     "folded: bn (BatchNormalization)", NULL, NULL});
	check_case("Conv+BN (depthwise)", conv_bn_depthwise,
	           &(expect){"fold_bn", NP_FOLD_EXACT, 1, "conv", "Conv",
	                     "folded: bn (BatchNormalization)", NULL, NULL});
	check_case("Conv+BN twice, shared weight", conv_bn_shared_weight,
	           &(expect){"fold_bn", NP_FOLD_EXACT, 2, "conv2", "Conv",
	                     "folded: bn2 (BatchNormalization)", NULL, NULL});
	check_case("Conv+BN, BN shift through Identity", conv_bn_identity_param,
	           &(expect){"fold_bn", NP_FOLD_EXACT, 2, "conv", "Conv",
	                     "folded: bn (BatchNormalization)", NULL, NULL});
	check_case("Conv+BN, conv output read twice", conv_bn_two_readers,
	           &(expect){"fold_bn", NP_FOLD_EXACT, 3, "conv", "Conv", NULL,
	                     "another reader", NULL});
	check_case("Conv+BN, scale not constant", conv_bn_training,
	           &(expect){"fold_bn", NP_FOLD_EXACT, 2, "conv", "Conv", NULL,
	                     "not a float initializer", NULL});
	check_case("Conv+BN, --fold none", conv_bn_bias,
	           &(expect){"fold_bn", NP_FOLD_NONE, 2, "bn", "BatchNormalization",
	                     NULL, "", NULL});
	check_case("Gemm+BN (transB 1, alpha, beta)", gemm_bn_transb1,
	           &(expect){"fold_bn", NP_FOLD_EXACT, 1, "fc", "Gemm",
	                     "folded: bn (BatchNormalization)", NULL, NULL});
	check_case("Gemm+BN (transB 0, [1,N] bias)", gemm_bn_transb0,
	           &(expect){"fold_bn", NP_FOLD_EXACT, 1, "fc", "Gemm",
	                     "folded: bn (BatchNormalization)", NULL, NULL});
	check_case("Gemm+BN (no bias)", gemm_bn_nobias,
	           &(expect){"fold_bn", NP_FOLD_EXACT, 1, "fc", "Gemm",
	                     "folded: bn (BatchNormalization)", NULL, NULL});
	check_case("Gemm+BN (scalar bias, beta 2)", gemm_bn_scalar_bias,
	           &(expect){"fold_bn", NP_FOLD_EXACT, 1, "fc", "Gemm",
	                     "folded: bn (BatchNormalization)", NULL, NULL});
	check_case("MatMul+BN (becomes Gemm)", matmul_bn,
	           &(expect){"fold_bn", NP_FOLD_EXACT, 1, "mm", "Gemm",
	                     "folded: bn (BatchNormalization)", NULL, NULL});
	check_case("MatMul 3-D + BN refused", matmul3d_bn,
	           &(expect){"fold_bn", NP_FOLD_EXACT, 2, "mm", "MatMul", NULL,
	                     "not known to be 2-D", NULL});
}

/* ---------------------------------------------------- fold_gemm cases */

static void gemm_gemm_plain(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 6));
	np_value *h = gemm(k, "fc1", x, (gemmp){.k = 6, .n = 8, .trans_b = true, .bias = true});
	gk_output(k, gemm(k, "fc2", h, (gemmp){.k = 8, .n = 4, .trans_b = true, .bias = true}));
}

static void gemm_gemm_attrs(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(6, -1));         /* transA: [K, N] */
	np_value *h = gemm(k, "fc1", x, (gemmp){.k = 6, .n = 8, .trans_a = true,
	                                         .bias_row = true, .alpha = 0.7f, .beta = 1.3f});
	gk_output(k, gemm(k, "fc2", h, (gemmp){.k = 8, .n = 4, .bias_scalar = true,
	                                        .alpha = 1.5f, .beta = 0.5f}));
}

static void gemm_gemm_one_bias(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 6));
	np_value *h = gemm(k, "fc1", x, (gemmp){.k = 6, .n = 8, .bias = true, .beta = 0.25f});
	gk_output(k, gemm(k, "fc2", h, (gemmp){.k = 8, .n = 4, .trans_b = true, .alpha = 2}));
}

static void matmul_matmul(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 6));
	gk_output(k, matmul(k, "mm2", matmul(k, "mm1", x, 6, 8), 8, 4));
}

static void matmul_matmul_3d(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 2, 6));
	gk_output(k, matmul(k, "mm2", matmul(k, "mm1", x, 6, 8), 8, 4));
}

static void gemm_matmul(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 6));
	np_value *h = gemm(k, "fc1", x, (gemmp){.k = 6, .n = 8, .trans_b = true, .bias = true});
	gk_output(k, matmul(k, "mm2", h, 8, 4));
}

static void gemm_flatten_gemm(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 2, 3));
	np_value *f0 = gk_op(k, "Flatten", "flat0", GK_IN(x));
	np_value *h = gemm(k, "fc1", f0, (gemmp){.k = 6, .n = 8, .trans_b = true, .bias = true});
	np_value *f = gk_op(k, "Flatten", "flat", GK_IN(h));
	gk_output(k, gemm(k, "fc2", f, (gemmp){.k = 8, .n = 4, .trans_b = true, .bias = true}));
}

static void gemm_reshape_gemm(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 6));
	np_value *h = gemm(k, "fc1", x, (gemmp){.k = 6, .n = 8, .trans_b = true, .bias = true});
	np_value *r = gk_op(k, "Reshape", "reshape", GK_IN(h, gk_ints(k, "shape", GK_SHAPE(0, -1))));
	gk_output(k, gemm(k, "fc2", r, (gemmp){.k = 8, .n = 4, .trans_b = true, .bias = true}));
}

/* 12 -> 16 -> 8 -> 4: both folds happen, into fc3 (the classifier). */
static void gemm_chain3(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 12));
	np_value *h = gemm(k, "fc1", x, (gemmp){.k = 12, .n = 16, .trans_b = true, .bias = true});
	h = gemm(k, "fc2", h, (gemmp){.k = 16, .n = 8, .trans_b = true, .bias = true});
	gk_output(k, gemm(k, "fc3", h, (gemmp){.k = 8, .n = 4, .trans_b = true, .bias = true}));
}

/* 10 -> 1000 -> 10: the merged 10x10 is far cheaper. */
static void gemm_wide_narrow(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 10));
	np_value *h = gemm(k, "fc1", x, (gemmp){.k = 10, .n = 1000, .trans_b = true, .bias = true});
	gk_output(k, gemm(k, "fc2", h, (gemmp){.k = 1000, .n = 10, .trans_b = true, .bias = true}));
}

/* 100 -> 10 -> 100: the merged 100x100 costs more: refused. */
static void gemm_bottleneck(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 100));
	np_value *h = gemm(k, "fc1", x, (gemmp){.k = 100, .n = 10, .trans_b = true, .bias = true});
	gk_output(k, gemm(k, "fc2", h, (gemmp){.k = 10, .n = 100, .trans_b = true, .bias = true}));
}

static void gemm_two_readers(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 6));
	np_value *h = gemm(k, "fc1", x, (gemmp){.k = 6, .n = 8, .trans_b = true, .bias = true});
	np_value *y = gemm(k, "fc2", h, (gemmp){.k = 8, .n = 4, .trans_b = true, .bias = true});
	gk_output(k, y);
	gk_output(k, h);
}

static void gemm_reshape_changes(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 6));
	np_value *h = gemm(k, "fc1", x, (gemmp){.k = 6, .n = 8, .trans_b = true, .bias = true});
	np_value *r = gk_op(k, "Reshape", "reshape", GK_IN(h, gk_ints(k, "shape", GK_SHAPE(-1, 4))));
	gk_output(k, matmul(k, "mm2", r, 4, 3));
}

static void fold_gemm_cases(void)
{
	check_case("Gemm->Gemm", gemm_gemm_plain,
	           &(expect){"fold_gemm", NP_FOLD_EXACT, 1, "fc2", "Gemm",
	                     "folded: fc1 (Gemm)", NULL, NULL});
	check_case("Gemm->Gemm (transA, alpha, beta, [1,N] and scalar bias)", gemm_gemm_attrs,
	           &(expect){"fold_gemm", NP_FOLD_EXACT, 1, "fc2", "Gemm",
	                     "folded: fc1 (Gemm)", NULL, NULL});
	check_case("Gemm->Gemm (first bias only, transB 0/1)", gemm_gemm_one_bias,
	           &(expect){"fold_gemm", NP_FOLD_EXACT, 1, "fc2", "Gemm",
	                     "folded: fc1 (Gemm)", NULL, NULL});
	check_case("MatMul->MatMul", matmul_matmul,
	           &(expect){"fold_gemm", NP_FOLD_EXACT, 1, "mm2", "MatMul",
	                     "folded: mm1 (MatMul)", NULL, NULL});
	check_case("MatMul->MatMul (3-D input)", matmul_matmul_3d,
	           &(expect){"fold_gemm", NP_FOLD_EXACT, 1, "mm2", "MatMul",
	                     "folded: mm1 (MatMul)", NULL, NULL});
	check_case("Gemm->MatMul", gemm_matmul,
	           &(expect){"fold_gemm", NP_FOLD_EXACT, 1, "mm2", "Gemm",
	                     "folded: fc1 (Gemm)", NULL, NULL});
	check_case("Flatten->Gemm->Flatten->Gemm (first Flatten stays)", gemm_flatten_gemm,
	           &(expect){"fold_gemm", NP_FOLD_EXACT, 2, "fc2", "Gemm",
	                     "folded: flat (Flatten)", NULL, NULL});
	check_case("Gemm->Reshape[0,-1]->Gemm", gemm_reshape_gemm,
	           &(expect){"fold_gemm", NP_FOLD_EXACT, 1, "fc2", "Gemm",
	                     "folded: reshape (Reshape)", NULL, NULL});
	check_case("Gemm->Gemm->Gemm into the classifier", gemm_chain3,
	           &(expect){"fold_gemm", NP_FOLD_EXACT, 1, "fc3", "Gemm",
	                     "folded: fc1 (Gemm)", NULL, NULL});
	check_case("10->1000->10", gemm_wide_narrow,
	           &(expect){"fold_gemm", NP_FOLD_EXACT, 1, "fc2", "Gemm",
	                     "folded: fc1 (Gemm)", NULL, NULL});
	check_case("100->10->100 refused (more expensive)", gemm_bottleneck,
	           &(expect){"fold_gemm", NP_FOLD_EXACT, 2, "fc2", "Gemm", NULL,
	                     "FLOPs", NULL});
	check_case("Gemm->Gemm, hidden is a graph output", gemm_two_readers,
	           &(expect){"fold_gemm", NP_FOLD_EXACT, 2, "fc1", "Gemm", NULL,
	                     "another reader", NULL});
	check_case("Gemm->Reshape[-1,4]->MatMul refused", gemm_reshape_changes,
	           &(expect){"fold_gemm", NP_FOLD_EXACT, 3, "mm2", "MatMul", NULL,
	                     "changes the [N, K] shape", NULL});
	check_case("Gemm->Gemm, --fold none", gemm_gemm_plain,
	           &(expect){"fold_gemm", NP_FOLD_NONE, 2, "fc1", "Gemm", NULL, "", NULL});
}

/* ---------------------------------------------------- fold_conv cases */

static void conv3_conv1(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 7, 6));
	np_value *a = conv(k, "convA", x, (convp){.cout = 6, .cin = 4, .k = 3, .pad = 1, .bias = true});
	gk_output(k, conv(k, "convB", a, (convp){.cout = 3, .cin = 6, .k = 1, .bias = true}));
}

static void conv_s2_conv3(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 1, 13, 13));
	np_value *a = conv(k, "convA", x, (convp){.cout = 8, .cin = 1, .k = 3, .stride = 2,
	                                          .pad = 1, .bias = true});
	gk_output(k, conv(k, "convB", a, (convp){.cout = 2, .cin = 8, .k = 3, .bias = true}));
}

static void dw_pw(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *a = conv(k, "dw", x, (convp){.cout = 4, .cin = 4, .k = 3, .pad = 1,
	                                       .group = 4, .bias = true});
	gk_output(k, conv(k, "pw", a, (convp){.cout = 1, .cin = 4, .k = 1, .bias = true}));
}

static void dw_pw_wide(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *a = conv(k, "dw", x, (convp){.cout = 4, .cin = 4, .k = 3, .pad = 1,
	                                       .group = 4, .bias = true});
	gk_output(k, conv(k, "pw", a, (convp){.cout = 8, .cin = 4, .k = 1, .bias = true}));
}

static void grouped_pair(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *a = conv(k, "convA", x, (convp){.cout = 4, .cin = 4, .k = 3, .pad = 1,
	                                          .group = 2, .bias = true});
	gk_output(k, conv(k, "convB", a, (convp){.cout = 4, .cin = 4, .k = 1, .group = 2}));
}

/* 1x1 then a dilated 3x3: the merged 5x5 kernel has holes (zeros). */
static void conv1_dilated(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 1, 9, 9));
	np_value *a = conv(k, "convA", x, (convp){.cout = 4, .cin = 1, .k = 1, .bias = true});
	gk_output(k, conv(k, "convB", a, (convp){.cout = 1, .cin = 4, .k = 3, .dil = 2}));
}

static void conv_padded(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 2, 8, 7));
	np_value *a = conv(k, "convA", x, (convp){.cout = 4, .cin = 2, .k = 3, .bias = true});
	gk_output(k, conv(k, "convB", a, (convp){.cout = 3, .cin = 4, .k = 3, .pad = 1, .bias = true}));
}

/* B 3x3 pad 1 stride 1: outputs whose window stays inside Z. */
static bool interior_1(int64_t i, const np_rtensor *y)
{
	int64_t w = y->dims[3], h = y->dims[2];
	int64_t col = i % w, row = (i / w) % h;
	return col >= 1 && col <= w - 2 && row >= 1 && row <= h - 2;
}

static void conv_two_readers(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *a = conv(k, "convA", x, (convp){.cout = 6, .cin = 4, .k = 3, .pad = 1, .bias = true});
	np_value *b = conv(k, "convB", a, (convp){.cout = 6, .cin = 6, .k = 1, .bias = true});
	gk_output(k, gk_op(k, "Add", "add", GK_IN(a, b)));
}

/* MobileNet-V2 order once the expand layer is linear: 1x1 expand, then
 * the padded 3x3 depthwise.  Not exact (the depthwise's zero padding of
 * the expand output is not the expand's response to zero padding). */
static void pw_dw_padded(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *a = conv(k, "expand", x, (convp){.cout = 8, .cin = 4, .k = 1, .bias = true});
	gk_output(k, conv(k, "dw", a, (convp){.cout = 8, .cin = 8, .k = 3, .pad = 1,
	                                      .group = 8, .bias = true}));
}

/* Depthwise with channel multiplier 2 and stride 2, then pointwise to 1
 * channel: the dense 3x3 result (36 weights) is cheaper than the pair
 * (72 + 8). */
static void dw_mult_s2_pw(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 9, 9));
	np_value *a = conv(k, "dw", x, (convp){.cout = 8, .cin = 4, .k = 3, .stride = 2,
	                                       .pad = 1, .group = 4, .bias = true});
	gk_output(k, conv(k, "pw", a, (convp){.cout = 1, .cin = 8, .k = 1, .bias = true}));
}

/* Depthwise 3x3 then a depthwise 1x1 (a per-channel scale): equal groups,
 * so the result stays depthwise (36 weights, not the 144 of a dense
 * conv, which the cost model would refuse). */
static void dw_dw1(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *a = conv(k, "dw", x, (convp){.cout = 4, .cin = 4, .k = 3, .pad = 1,
	                                       .group = 4, .bias = true});
	gk_output(k, conv(k, "dw1", a, (convp){.cout = 4, .cin = 4, .k = 1, .group = 4,
	                                       .bias = true}));
}

/* 1-D depthwise (3 channels, kernel 2) then pointwise to M channels.  Per
 * output position the pair costs 2*(3*2) + 2*(M*3) FLOPs, the dense
 * merged conv 2*(M*3*2): M = 2 ties (12 + 12 = 24, fewer parameter bytes:
 * merged, "not more expensive"); M = 3 costs more (36 > 30: refused). */
static void dw1d_pw(gk *k, int64_t m)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 3, 10));
	np_value *in[3] = {x, gk_weight(k, "dw.weight", GK_SHAPE(3, 1, 2), -1, 1),
	                   gk_weight(k, "dw.bias", GK_SHAPE(3), -1, 1)};
	np_node *a = gk_node(k, "Conv", "dw", in, 3);
	np_node_set_attr_int(a, "group", 3);
	np_value *za = gk_done(k, a);
	np_value *in2[3] = {za, gk_weight(k, "pw.weight", GK_SHAPE(m, 3, 1), -1, 1),
	                    gk_weight(k, "pw.bias", GK_SHAPE(m), -1, 1)};
	gk_output(k, gk_op(k, "Conv", "pw", in2, 3));
}

static void dw1d_pw2(gk *k)
{
	dw1d_pw(k, 2);
}

static void dw1d_pw3(gk *k)
{
	dw1d_pw(k, 3);
}

static void fold_conv_cases(void)
{
	check_case("Conv 3x3 -> Conv 1x1", conv3_conv1,
	           &(expect){"fold_conv", NP_FOLD_EXACT, 1, "convB", "Conv",
	                     "folded: convA (Conv)", NULL, NULL});
	check_case("Conv 3x3 s2 -> Conv 3x3 (7x7 s2 kernel)", conv_s2_conv3,
	           &(expect){"fold_conv", NP_FOLD_EXACT, 1, "convB", "Conv",
	                     "folded: convA (Conv)", NULL, NULL});
	check_case("depthwise 3x3 -> pointwise (dense result)", dw_pw,
	           &(expect){"fold_conv", NP_FOLD_EXACT, 1, "pw", "Conv",
	                     "folded: dw (Conv)", NULL, NULL});
	check_case("depthwise 3x3 -> pointwise x8 refused (dense costs more)", dw_pw_wide,
	           &(expect){"fold_conv", NP_FOLD_EXACT, 2, "pw", "Conv", NULL,
	                     "FLOPs", NULL});
	check_case("1x1 expand -> padded depthwise refused under exact", pw_dw_padded,
	           &(expect){"fold_conv", NP_FOLD_EXACT, 2, "dw", "Conv", NULL,
	                     "B is padded: merging loses the intermediate zero padding", NULL});
	check_case("depthwise x2 stride 2 -> pointwise (dense result)", dw_mult_s2_pw,
	           &(expect){"fold_conv", NP_FOLD_EXACT, 1, "pw", "Conv",
	                     "folded: dw (Conv)", NULL, NULL});
	check_case("depthwise 3x3 -> depthwise 1x1 (stays depthwise)", dw_dw1,
	           &(expect){"fold_conv", NP_FOLD_EXACT, 1, "dw1", "Conv",
	                     "folded: dw (Conv)", NULL, NULL});
	check_case("1-D depthwise -> pointwise x2: equal FLOPs, merged", dw1d_pw2,
	           &(expect){"fold_conv", NP_FOLD_EXACT, 1, "pw", "Conv",
	                     "folded: dw (Conv)", NULL, NULL});
	check_case("1-D depthwise -> pointwise x3: more FLOPs, refused", dw1d_pw3,
	           &(expect){"fold_conv", NP_FOLD_EXACT, 2, "pw", "Conv", NULL,
	                     "would cost 324 FLOPs and 84 parameter bytes vs 270 and 84", NULL});
	check_case("group 2 -> group 2 pointwise (stays grouped)", grouped_pair,
	           &(expect){"fold_conv", NP_FOLD_EXACT, 1, "convB", "Conv",
	                     "folded: convA (Conv)", NULL, NULL});
	check_case("Conv 1x1 -> dilated 3x3 (dense 5x5)", conv1_dilated,
	           &(expect){"fold_conv", NP_FOLD_EXACT, 1, "convB", "Conv",
	                     "folded: convA (Conv)", NULL, NULL});
	check_case("Conv -> padded Conv refused under exact", conv_padded,
	           &(expect){"fold_conv", NP_FOLD_EXACT, 2, "convB", "Conv", NULL,
	                     "B is padded: merging loses the intermediate zero padding", NULL});
	check_case("Conv -> padded Conv merged under approx", conv_padded,
	           &(expect){"fold_conv", NP_FOLD_APPROX, 1, "convB", "Conv",
	                     "approximate at the borders", NULL, interior_1});
	check_case("Conv -> Conv, A read twice", conv_two_readers,
	           &(expect){"fold_conv", NP_FOLD_EXACT, 3, "convA", "Conv", NULL,
	                     "another reader", NULL});
	check_case("Conv -> Conv, --fold none", conv3_conv1,
	           &(expect){"fold_conv", NP_FOLD_NONE, 2, "convA", "Conv", NULL, "", NULL});
}

/* Conv+BN then Conv 1x1: both passes in a row. */
static void conv_bn_conv(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 3, 6, 6));
	np_value *a = conv(k, "convA", x, (convp){.cout = 6, .cin = 3, .k = 3, .pad = 1});
	np_value *b = bn(k, "bnA", a, 6);
	gk_output(k, conv(k, "convB", b, (convp){.cout = 2, .cin = 6, .k = 1, .bias = true}));
}

/* Gemm -> BN -> Gemm: fold_bn leaves a Gemm -> Gemm chain. */
static void gemm_bn_gemm(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 6));
	np_value *h = gemm(k, "fc1", x, (gemmp){.k = 6, .n = 8, .trans_b = true, .bias = true});
	h = bn(k, "bn1", h, 8);
	gk_output(k, gemm(k, "fc2", h, (gemmp){.k = 8, .n = 4, .trans_b = true, .bias = true}));
}

/* 1-D convs: kernel 3 stride 2 pad 1, then kernel 2 (merged extent 5). */
static void conv1d_pair(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 2, 11));
	np_value *in[3] = {x, gk_weight(k, "a.weight", GK_SHAPE(5, 2, 3), -1, 1),
	                   gk_weight(k, "a.bias", GK_SHAPE(5), -1, 1)};
	np_node *a = gk_node(k, "Conv", "convA", in, 3);
	gk_set_ints(a, "strides", GK_SHAPE(2));
	gk_set_ints(a, "pads", GK_SHAPE(1, 1));
	np_value *za = gk_done(k, a);
	np_value *in2[2] = {za, gk_weight(k, "b.weight", GK_SHAPE(1, 5, 2), -1, 1)};
	gk_output(k, gk_op(k, "Conv", "convB", in2, 2));
}

static void pipeline_cases(void)
{
	check_case("Gemm+BN -> Gemm (fold_bn,fold_gemm)", gemm_bn_gemm,
	           &(expect){"fold_bn,fold_gemm", NP_FOLD_EXACT, 1, "fc2", "Gemm",
	                     "folded: bn1 (BatchNormalization)", NULL, NULL});
	check_case("Conv1d k3 s2 -> Conv1d k2", conv1d_pair,
	           &(expect){"fold_conv", NP_FOLD_EXACT, 1, "convB", "Conv",
	                     "folded: convA (Conv)", NULL, NULL});
	check_case("Conv+BN -> Conv 1x1 (fold_bn,fold_conv)", conv_bn_conv,
	           &(expect){"fold_bn,fold_conv", NP_FOLD_EXACT, 1, "convB", "Conv",
	                     "folded: bnA (BatchNormalization)", NULL, NULL});
}

/* ------------------------------------------------------------- costs */

static np_value *scalar_i64(gk *k, const char *name, int64_t x)
{
	np_error err = {0};
	np_tensor *t = np_model_new_tensor(k->m, NP_INT64, 0, NULL, &err);
	memcpy(t->data, &x, sizeof x);
	return np_graph_add_initializer(k->g, name, t, &err);
}

static void cost_build(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 10, 10));
	np_value *c = conv(k, "conv", x, (convp){.cout = 8, .cin = 4, .k = 3, .stride = 2,
	                                         .pad = 1, .bias = true});
	np_value *b = bn(k, "bn", c, 8);
	np_node *mp = gk_node(k, "MaxPool", "pool", GK_IN(b));
	gk_set_ints(mp, "kernel_shape", GK_SHAPE(2, 2));
	gk_set_ints(mp, "strides", GK_SHAPE(2, 2));
	np_node_set_attr_int(mp, "ceil_mode", 1);
	np_value *p = gk_done(k, mp);                              /* [1,8,3,3] */
	/* view(x.size(0), -1): Shape -> Gather -> Unsqueeze -> Concat -> Reshape */
	np_value *sh = gk_op(k, "Shape", "shape", GK_IN(p));
	np_value *n0 = gk_op(k, "Gather", "gather", GK_IN(sh, scalar_i64(k, "zero", 0)));
	np_value *u = gk_op(k, "Unsqueeze", "unsq", GK_IN(n0, gk_ints(k, "ax0", GK_SHAPE(0))));
	np_node *cn = gk_node(k, "Concat", "cat", GK_IN(u, gk_ints(k, "m1", GK_SHAPE(-1))));
	np_node_set_attr_int(cn, "axis", 0);
	np_value *cat = gk_done(k, cn);
	np_value *r = gk_op(k, "Reshape", "view", GK_IN(p, cat));  /* [1,72] */
	np_value *g = gemm(k, "fc", r, (gemmp){.k = 72, .n = 10, .trans_b = true, .bias = true});
	gk_output(k, g);
	np_value *x2 = gk_input(k, "seq", GK_SHAPE(-1, 3, 7));
	gk_output(k, matmul(k, "mm", x2, 7, 5));
}

static void cost_cases(void)
{
	gk k;
	np_error err = {0};
	gk_init(&k, 13, 3);
	cost_build(&k);
	np_shapes s;
	ok(np_shapes_infer(k.g, &s, &err) == NP_OK, "cost: shapes infer");
	const np_shape *y = np_shape_get(&s, np_graph_find(k.g, "conv"));
	ok(y && y->rank == 4 && y->dims[0] == 1 && y->dims[1] == 8 && y->dims[2] == 5 &&
	   y->dims[3] == 5, "cost: conv output [1,8,5,5] (batch 1)");
	const np_shape *p = np_shape_get(&s, np_graph_find(k.g, "pool"));
	ok(p && p->rank == 4 && p->dims[2] == 3 && p->dims[3] == 3,
	   "cost: MaxPool ceil_mode 5x5 -> 3x3");
	const np_shape *v = np_shape_get(&s, np_graph_find(k.g, "view"));
	ok(v && v->rank == 2 && v->dims[0] == 1 && v->dims[1] == 72,
	   "cost: Reshape through Shape/Gather/Unsqueeze/Concat -> [1,72]");

	/* Conv: 2 * 8*4*9 weights * 25 pixels; (288 + 8) floats. */
	np_cost c = np_node_cost(gk_find_node(k.g, "conv"), &s);
	ok(c.flops == 14400 && c.param_bytes == 1184, "cost: conv %lld FLOPs %lld bytes "
	   "(14400, 1184)", (long long)c.flops, (long long)c.param_bytes);
	/* BN: 2 per element of 8x5x5; 4 vectors of 8. */
	c = np_node_cost(gk_find_node(k.g, "bn"), &s);
	ok(c.flops == 400 && c.param_bytes == 128, "cost: bn %lld FLOPs %lld bytes (400, 128)",
	   (long long)c.flops, (long long)c.param_bytes);
	/* Gemm: 2 * 72*10; (720 + 10) floats. */
	c = np_node_cost(gk_find_node(k.g, "fc"), &s);
	ok(c.flops == 1440 && c.param_bytes == 2920, "cost: gemm %lld FLOPs %lld bytes "
	   "(1440, 2920)", (long long)c.flops, (long long)c.param_bytes);
	/* MatMul [N,3,7] x [7,5]: 3 rows per example: 2*3*7*5. */
	c = np_node_cost(gk_find_node(k.g, "mm"), &s);
	ok(c.flops == 210 && c.param_bytes == 140, "cost: matmul %lld FLOPs %lld bytes "
	   "(210, 140)", (long long)c.flops, (long long)c.param_bytes);
	/* 784->1024->512 vs 784x512; 1000->10->1000 vs 1000x1000. */
	np_cost pair = np_cost_sum(np_cost_matmul(1, 784, 1024, true),
	                           np_cost_matmul(1, 1024, 512, true));
	ok(np_cost_le(np_cost_matmul(1, 784, 512, true), pair),
	   "cost: 784->1024->512 merges (%lld <= %lld FLOPs)",
	   (long long)np_cost_matmul(1, 784, 512, true).flops, (long long)pair.flops);
	pair = np_cost_sum(np_cost_matmul(1, 1000, 10, true), np_cost_matmul(1, 10, 1000, true));
	ok(!np_cost_le(np_cost_matmul(1, 1000, 1000, true), pair),
	   "cost: 1000->10->1000 does not (%lld > %lld FLOPs)",
	   (long long)np_cost_matmul(1, 1000, 1000, true).flops, (long long)pair.flops);
	ok(np_cost_conv(3, 4, 9, 42, true).flops == 2 * 3 * 4 * 9 * 42 &&
	   np_cost_conv(3, 4, 9, 42, true).param_bytes == 4 * (108 + 3),
	   "cost: np_cost_conv by hand");
	ok(!np_cost_le((np_cost){-1, 0}, (np_cost){5, 5}), "cost: unknown never cheaper");
	np_shapes_free(&s);
	gk_free(&k);
}

/* ------------------------------------------- emission: --fold approx */

/* x -> Conv 3x3 pad 1 -> Conv 3x3 pad 1 -> Flatten -> Gemm: the two
 * padded convs merge only under --fold approx (wrong at the borders). */
static void padded_pair(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 1, 6, 6));
	np_value *a = conv(k, "convA", x, (convp){.cout = 2, .cin = 1, .k = 3, .pad = 1});
	np_value *b = conv(k, "convB", a, (convp){.cout = 2, .cin = 2, .k = 3, .pad = 1});
	np_node *f = gk_node(k, "Flatten", "flat", GK_IN(b));
	np_node_set_attr_int(f, "axis", 1);
	np_value *in[3] = {gk_done(k, f), gk_weight(k, "fc.weight", GK_SHAPE(4, 72), -1, 1),
	                   gk_weight(k, "fc.bias", GK_SHAPE(4), -1, 1)};
	np_node *g = gk_node(k, "Gemm", "fc", in, 3);
	np_node_set_attr_int(g, "transB", 1);
	np_value *y = gk_done(k, g);
	gk_declare(k, y, GK_SHAPE(-1, 4));      /* [N, 4], as np_model_io wants */
	gk_output(k, y);
}

/* np_nepenthe_emit on padded_pair with no rectified layer, validation
 * against the model's own logits (top-1 = agreement, 100% dense) and the
 * bar given: the merge's fate and the log. */
static void emit_approx_case(double bar, bool want_merged)
{
	gk k;
	gk_init(&k, 13, 7);
	padded_pair(&k);
	np_error err = {0};
	np_dataset val = {.n = 64, .rank = 3, .dims = {1, 6, 6}, .example_size = 36};
	val.x = gk_random(&k, val.n * val.example_size, -1, 1);
	float *teacher = NULL;
	int64_t classes = 0;
	np_rt *rt = np_rt_new(k.m, 1, &err);
	np_status st = rt ? np_predict(rt, &val, 64, &teacher, &classes, &err) : err.status;
	np_rt_free(rt);
	np_layers ls = {0};
	np_profile prof = {0};
	np_run_data d = {.train = &val, .val = &val, .teacher_val = teacher};
	np_nepenthe_opts o = {.batch = 64, .threads = 1, .quiet = true, .fold = NP_FOLD_APPROX};
	np_run run = {0};
	np_model *out = NULL;
	if (st == NP_OK)
		st = np_nepenthe_emit(k.m, &ls, &prof, &d, &o, bar, &run, &out, &err);
	int undone = 0, approx_folds = 0;
	for (int i = 0; i < run.log.n; i++) {
		const np_log_entry *e = &run.log.v[i];
		undone += e->kind == NP_LOG_UNDONE && strcmp(e->pass, "fold_conv") == 0 &&
		          e->node && strcmp(e->node, "convA") == 0 && e->into &&
		          strcmp(e->into, "convB") == 0 && strstr(e->why, "--fold approx");
		approx_folds += e->kind == NP_LOG_FOLDED && strcmp(e->pass, "fold_conv") == 0;
	}
	int convs = out ? gk_count_op(out->graph, "Conv") : -1;
	if (want_merged)
		ok(st == NP_OK && convs == 1 && approx_folds == 1 && undone == 0,
		   "emit --fold approx, bar %.0f%%: the padded pair merged (%d Conv, %d "
		   "folded, %d undone) %s", bar, convs, approx_folds, undone, err.msg);
	else
		ok(st == NP_OK && convs == 2 && approx_folds == 0 && undone == 1,
		   "emit --fold approx, bar %.0f%%: the merge missed it, is undone and "
		   "reported (%d Conv, %d folded, %d undone entries) %s", bar, convs,
		   approx_folds, undone, err.msg);
	np_model_free(out);
	np_run_free(&run);
	free(teacher);
	free(val.x);
	gk_free(&k);
}

/* ------------------------------- emission: one fold undone, not all */

/* x[N,2,4,4] -> convA -> bnA \
 *            -> convB -> bnB -> Add -> Flatten -> fc: two Conv+BN folds.
 * bnA multiplies by exactly 2 (scale 2, mean 0, var 1, epsilon 0): its
 * fold scales convA's weights and bias by 2, which changes no bit of any
 * logit.  bnB has random statistics: its fold rounds differently. */
static void two_bn_pairs(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 2, 4, 4));
	np_value *a = conv(k, "convA", x, (convp){.cout = 2, .cin = 2, .k = 1, .bias = true});
	float two[2] = {2, 2}, zero[2] = {0, 0}, one[2] = {1, 1};
	np_value *in[5] = {a, gk_floats(k, NULL, GK_SHAPE(2), two),
	                   gk_floats(k, NULL, GK_SHAPE(2), zero),
	                   gk_floats(k, NULL, GK_SHAPE(2), zero),
	                   gk_floats(k, NULL, GK_SHAPE(2), one)};
	np_node *n = gk_node(k, "BatchNormalization", "bnA", in, 5);
	np_node_set_attr_float(n, "epsilon", 0.0f);
	np_value *ya = gk_done(k, n);
	np_value *b = conv(k, "convB", x, (convp){.cout = 2, .cin = 2, .k = 1, .bias = true});
	np_value *yb = bn(k, "bnB", b, 2);
	np_value *sum = gk_op(k, "Add", "add", GK_IN(ya, yb));
	np_node *f = gk_node(k, "Flatten", "flat", GK_IN(sum));
	np_node_set_attr_int(f, "axis", 1);
	np_value *fin[3] = {gk_done(k, f), gk_weight(k, "fc.weight", GK_SHAPE(4, 32), -1, 1),
	                    gk_weight(k, "fc.bias", GK_SHAPE(4), -1, 1)};
	np_node *g = gk_node(k, "Gemm", "fc", fin, 3);
	np_node_set_attr_int(g, "transB", 1);
	np_value *y = gk_done(k, g);
	gk_declare(k, y, GK_SHAPE(-1, 4));
	gk_output(k, y);
}

/* With a verification tolerance no rounding passes, the folds together
 * fail; one by one, bnA's (exact) stays and bnB's alone is undone. */
static void emit_single_undo_case(void)
{
	gk k;
	gk_init(&k, 13, 11);
	two_bn_pairs(&k);
	np_error err = {0};
	np_dataset val = {.n = 32, .rank = 3, .dims = {2, 4, 4}, .example_size = 32};
	val.x = gk_random(&k, val.n * val.example_size, -1, 1);
	float *teacher = NULL;
	int64_t classes = 0;
	np_rt *rt = np_rt_new(k.m, 1, &err);
	np_status st = rt ? np_predict(rt, &val, 32, &teacher, &classes, &err) : err.status;
	np_rt_free(rt);
	np_layers ls = {0};
	np_profile prof = {0};
	np_run_data d = {.train = &val, .val = &val, .teacher_val = teacher};
	np_nepenthe_opts o = {.batch = 32, .threads = 1, .quiet = true,
	                      .fold = NP_FOLD_EXACT, .verify_rtol = 1e-30};
	np_run run = {0};
	np_model *out = NULL;
	if (st == NP_OK)
		st = np_nepenthe_emit(k.m, &ls, &prof, &d, &o, 0, &run, &out, &err);
	int folded_a = 0, undone_b = 0, others = 0;
	for (int i = 0; i < run.log.n; i++) {
		const np_log_entry *e = &run.log.v[i];
		bool on_a = e->node && strcmp(e->node, "bnA") == 0;
		bool on_b = e->node && strcmp(e->node, "bnB") == 0;
		folded_a += e->kind == NP_LOG_FOLDED && on_a;
		undone_b += e->kind == NP_LOG_UNDONE && on_b && strstr(e->why, "logits differ");
		others += (e->kind == NP_LOG_FOLDED && !on_a) ||
		          (e->kind == NP_LOG_UNDONE && !on_b);
	}
	int bns = out ? gk_count_op(out->graph, "BatchNormalization") : -1;
	const np_node *left = out ? gk_find_node(out->graph, "bnB") : NULL;
	ok(st == NP_OK && bns == 1 && left && folded_a == 1 && undone_b == 1 && others == 0,
	   "emit: a fold failing verification is undone alone (%d BN left: bnB %s; "
	   "bnA folded %d, bnB undone %d, other entries %d) %s", bns,
	   left ? "kept" : "gone", folded_a, undone_b, others, err.msg);
	np_model_free(out);
	np_run_free(&run);
	free(teacher);
	free(val.x);
	gk_free(&k);
}

/* ---------------------------------------- the pass manager's checks */

/* Passes that break a shape on purpose: replace a Gemm's weight by one of
 * other dims, through the mutation API (the use-def links stay right). */
static int64_t bad_dims[2];
static const char *bad_node;

static np_status break_weight(np_model *m, np_pass_ctx *ctx, np_error *err)
{
	(void)ctx;
	np_node *n = gk_find_node(m->graph, bad_node);
	np_value *w = np_new_float_init(m, "bad.weight", 2, bad_dims, err);
	if (!n || !w)
		return np_fail(err, NP_ERR_INVALID, "test pass: no node %s", bad_node);
	np_node_set_input(n, 1, w);
	return NP_OK;
}

/* fc1 made 5 wide and fc2 reading 5 features: consistent, but fc1's
 * output changed shape. */
static np_status narrow_hidden(np_model *m, np_pass_ctx *ctx, np_error *err)
{
	bad_node = "fc1";
	bad_dims[0] = 5, bad_dims[1] = 6;
	np_status st = break_weight(m, ctx, err);
	np_node *fc1 = gk_find_node(m->graph, "fc1");
	if (st == NP_OK)
		np_node_set_input(fc1, 2, np_new_float_init(m, "bad.bias", 1, bad_dims, err));
	bad_node = "fc2";
	bad_dims[0] = 4, bad_dims[1] = 5;
	return st == NP_OK ? break_weight(m, ctx, err) : st;
}

static np_status no_change(np_model *m, np_pass_ctx *ctx, np_error *err)
{
	(void)m, (void)ctx, (void)err;
	return NP_OK;
}

/* x[N,6] -> fc1 (6 -> 8) -> fc2 (8 -> 4), output declared [N, 4]. */
static void two_gemms(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 6));
	np_value *h = gemm(k, "fc1", x, (gemmp){.k = 6, .n = 8, .trans_b = true, .bias = true});
	np_value *y = gemm(k, "fc2", h, (gemmp){.k = 8, .n = 4, .trans_b = true});
	gk_declare(k, y, GK_SHAPE(-1, 4));
	gk_output(k, y);
}

static void shape_check_case(const char *what, const char *node, int64_t d0, int64_t d1,
                             const char *want)
{
	gk k;
	gk_init(&k, 13, 3);
	two_gemms(&k);
	np_pass_log log = {0};
	np_pass_ctx ctx = {.fold = NP_FOLD_EXACT, .log = &log};
	np_error err = {0};
	bad_node = node;
	bad_dims[0] = d0;
	bad_dims[1] = d1;
	np_pass p = {"break_shape", "test", !node ? no_change :
	             strcmp(node, "hidden") == 0 ? narrow_hidden : break_weight};
	np_status st = np_run_pass(k.m, &p, &ctx, &err);
	if (!want)
		ok(st == NP_OK, "pass manager: %s: accepted %s", what, err.msg);
	else
		ok(st == NP_ERR_INVALID && strstr(err.msg, "pass break_shape broke the shapes") &&
		   strstr(err.msg, want), "pass manager: %s: '%s'", what, err.msg);
	np_pass_log_free(&log);
	gk_free(&k);
}

static void pass_manager_cases(void)
{
	shape_check_case("a pass that changes nothing", NULL, 0, 0, NULL);
	shape_check_case("a weight swapped for one of the same dims", "fc2", 4, 8, NULL);
	shape_check_case("fc2 weight of 7 columns for 8 features", "fc2", 4, 7,
	                 "inner dimensions differ (8 vs 7) (node fc2, op Gemm)");
	/* fc1's bias is still 8 wide: fc1 is the first node its op refuses. */
	shape_check_case("fc1 made 5 wide", "fc1", 5, 6,
	                 "does not broadcast to [1,5] (node fc1, op Gemm)");
	shape_check_case("fc2 made 3 wide (declared [N,4])", "fc2", 3, 8,
	                 "value 'fc2' is declared [?,4] but computes to [1,3]");
	shape_check_case("fc1 and fc2 both made 5 wide", "hidden", 0, 0,
	                 "value 'fc1' was [1,8] and is now [1,5]");
}

static void emit_cases(void)
{
	emit_approx_case(0.0, true);
	emit_approx_case(100.0, false);
}

int main(void)
{
	fold_bn_cases();
	fold_gemm_cases();
	fold_conv_cases();
	pipeline_cases();
	cost_cases();
	pass_manager_cases();
	emit_cases();
	emit_single_undo_case();
	return done_testing();
}
