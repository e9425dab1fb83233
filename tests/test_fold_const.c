/* test_fold_const.c - fold_const: branches that are per-channel constants.
 *
 * Each case is a tiny hand-built graph run through the runtime before and
 * after the passes on random inputs: every graph output must keep its
 * name and shape and agree to |a-b| <= 1e-5 * max|b| + 1e-6; the graph
 * must verify; the node counts are checked, and the log says what was
 * replaced (or why not). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphkit.h"
#include "pass.h"
#include "tap.h"

#define BATCH 3          /* dynamic dims of the inputs at run time */
#define MAX_OUT 4

/* ------------------------------------------------------------ helpers */

typedef struct convp {
	int64_t cout, cin, k, pad;
	bool bias, zero_w, zero_b;   /* weights / bias all zeros */
} convp;

/* A 2-D conv, square kernel, stride 1; weight named NAME.weight. */
static np_value *conv(gk *k, const char *name, np_value *x, convp p)
{
	const char *wn = np_arena_printf(k->m->arena, "%s.weight", name);
	const char *bn = np_arena_printf(k->m->arena, "%s.bias", name);
	np_value *w = p.zero_w ? gk_floats(k, wn, GK_SHAPE(p.cout, p.cin, p.k, p.k), NULL)
	                       : gk_weight(k, wn, GK_SHAPE(p.cout, p.cin, p.k, p.k), -1, 1);
	np_value *b = !p.bias ? NULL : p.zero_b ? gk_floats(k, bn, GK_SHAPE(p.cout), NULL)
	                                        : gk_weight(k, bn, GK_SHAPE(p.cout), -1, 1);
	np_value *in[3] = {x, w, b};
	np_node *n = gk_node(k, "Conv", name, in, b ? 3 : 2);
	gk_set_ints(n, "kernel_shape", GK_SHAPE(p.k, p.k));
	gk_set_ints(n, "pads", GK_SHAPE(p.pad, p.pad, p.pad, p.pad));
	return gk_done(k, n);
}

static np_value *bn(gk *k, const char *name, np_value *x, int64_t c, bool zero_scale)
{
	np_value *in[5] = {
		x,
		zero_scale ? gk_floats(k, NULL, GK_SHAPE(c), NULL)
		           : gk_weight(k, NULL, GK_SHAPE(c), 0.5f, 1.5f),
		zero_scale ? gk_floats(k, NULL, GK_SHAPE(c), NULL)
		           : gk_weight(k, NULL, GK_SHAPE(c), -1.0f, 1.0f),
		gk_weight(k, NULL, GK_SHAPE(c), -1.0f, 1.0f),
		gk_weight(k, NULL, GK_SHAPE(c), 0.5f, 2.0f),
	};
	np_node *n = gk_node(k, "BatchNormalization", name, in, 5);
	np_node_set_attr_float(n, "epsilon", 1e-3f);
	return gk_done(k, n);
}

typedef struct expect {
	const char *passes;
	np_fold_policy policy;
	int nodes, convs;            /* live nodes and Conv nodes after */
	const char *folded;          /* a FOLDED entry saying this, or NULL */
	const char *refused;         /* a REFUSED entry saying this, or NULL */
	bool unchanged;              /* no change at all */
	bool no_refusal;             /* no REFUSED entry at all */
	const char *doc_node, *doc;  /* node whose doc_string names doc */
} expect;

typedef struct outs {
	float *y[MAX_OUT];
	np_rtensor shape[MAX_OUT];
	int n;
} outs;

static void outs_free(outs *o)
{
	for (int i = 0; i < o->n; i++)
		free(o->y[i]);
	o->n = 0;
}

static bool run_all(np_model *m, const np_rt_input *in, int n_in, outs *o,
                    np_error *err)
{
	memset(o, 0, sizeof *o);
	np_rt *rt = np_rt_new(m, 1, err);
	if (!rt)
		return false;
	bool good = np_rt_run(rt, in, n_in, NP_RT_INFER, err) == NP_OK;
	for (int i = 0; good && i < m->graph->n_outputs && i < MAX_OUT; i++) {
		const np_rtensor *y = np_rt_output(rt, i);
		o->shape[i] = *y;
		o->y[i] = malloc(sizeof(float) * (size_t)(y->nelem + 1));
		memcpy(o->y[i], y->data, sizeof(float) * (size_t)y->nelem);
		o->n++;
	}
	np_rt_free(rt);
	return good;
}

/* Same outputs, same shapes. */
static bool same_outs(const outs *a, const outs *b, double *worst)
{
	*worst = 0;
	if (a->n != b->n)
		return false;
	for (int i = 0; i < a->n; i++) {
		const np_rtensor *x = &a->shape[i], *y = &b->shape[i];
		if (x->rank != y->rank || x->nelem != y->nelem ||
		    memcmp(x->dims, y->dims, sizeof(int64_t) * (size_t)x->rank))
			return false;
		double w = 0;
		bool close = gk_close(a->y[i], b->y[i], x->nelem, &w);
		*worst = fmax(*worst, w);
		if (!close)
			return false;
	}
	return true;
}

static const np_log_entry *find_log(const np_pass_log *log, np_log_kind kind,
                                    const char *text)
{
	for (int i = 0; i < log->n; i++)
		if (log->v[i].kind == kind && log->v[i].why && strstr(log->v[i].why, text))
			return &log->v[i];
	return NULL;
}

static void check_log(const char *what, const np_pass_log *log, const expect *e,
                      int changes)
{
	if (e->folded) {
		const np_log_entry *f = find_log(log, NP_LOG_FOLDED, e->folded);
		ok(changes > 0 && f, "%s: folded: %s", what, f ? f->why : "(no such entry)");
	}
	if (e->refused) {
		const np_log_entry *r = find_log(log, NP_LOG_REFUSED, e->refused);
		ok(r != NULL, "%s: refused: %s", what, r ? r->why : "(no such entry)");
	}
	if (e->unchanged)
		ok(changes == 0, "%s: nothing changed (%d changes)", what, changes);
	for (int i = 0; e->no_refusal && i <= log->n; i++)
		if (i == log->n || log->v[i].kind == NP_LOG_REFUSED) {
			ok(i == log->n, "%s: nothing refused (%s)", what,
			   i < log->n ? log->v[i].why : "ok");
			break;
		}
}

static void check_case(const char *what, void (*build)(gk *), const expect *e)
{
	gk k;
	np_error err = {0};
	gk_init(&k, 13, 11);
	build(&k);
	if (np_graph_verify(k.g, &err) != NP_OK) {
		ok(0, "%s: bad test model: %s", what, err.msg);
		gk_free(&k);
		return;
	}
	np_rt_input in[4];
	float *data[4] = {0};
	int n_in = gk_random_inputs(&k, in, data, BATCH);
	outs before, after;
	const char *names[MAX_OUT];
	int n_out = k.g->n_outputs;
	for (int i = 0; i < n_out && i < MAX_OUT; i++)
		names[i] = k.g->outputs[i]->name;
	if (!run_all(k.m, in, n_in, &before, &err)) {
		ok(0, "%s: runtime before: %s", what, err.msg);
		goto out;
	}
	np_pass_log log = {0};
	np_pass_ctx ctx = {.fold = e->policy, .log = &log};
	np_status st = np_run_passes(k.m, e->passes, &ctx, &err);
	ok(st == NP_OK, "%s: %s runs (%s)", what, e->passes, st ? err.msg : "ok");
	ok(np_graph_verify(k.g, &err) == NP_OK, "%s: graph verifies", what);
	bool same_names = k.g->n_outputs == n_out;
	for (int i = 0; same_names && i < n_out && i < MAX_OUT; i++)
		same_names = strcmp(k.g->outputs[i]->name, names[i]) == 0;
	ok(same_names, "%s: graph output names unchanged", what);
	int convs = gk_count_op(k.g, "Conv");
	ok(k.g->n_nodes == e->nodes && convs == e->convs,
	   "%s: %d nodes, %d Conv after (expected %d, %d)", what, k.g->n_nodes,
	   convs, e->nodes, e->convs);
	check_log(what, &log, e, ctx.changes);
	if (e->doc_node) {
		np_node *dn = gk_find_node(k.g, e->doc_node);
		ok(dn && dn->doc_string && strstr(dn->doc_string, e->doc),
		   "%s: doc_string of %s names '%s' (%s)", what, e->doc_node, e->doc,
		   dn && dn->doc_string ? dn->doc_string : "none");
	}
	if (!run_all(k.m, in, n_in, &after, &err)) {
		ok(0, "%s: runtime after: %s", what, err.msg);
	} else {
		double worst = 0;
		ok(same_outs(&after, &before, &worst),
		   "%s: same outputs and shapes before and after (max |diff| %.3g)",
		   what, worst);
		outs_free(&after);
	}
	np_pass_log_free(&log);
	outs_free(&before);
out:
	for (int i = 0; i < n_in; i++)
		free(data[i]);
	gk_free(&k);
}

#define PASSES "fold_const,eliminate,dce"

/* -------------------------------------------------------------- cases */

/* x -> ZeroConv(pad 1) -> Conv(pad 1, bias) -> Add(x, .) -> Relu. */
static void resnet_block(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *z = conv(k, "c1", x, (convp){4, 4, 3, 1, true, true, true});
	np_value *c = conv(k, "c2", z, (convp){4, 4, 3, 1, true, false, false});
	np_value *a = gk_op(k, "Add", "add", GK_IN(x, c));
	gk_output(k, gk_op(k, "Relu", "relu", GK_IN(a)));
}

/* As NEPENTHE leaves it: c2's weights, reading a dead layer, pruned to
 * zero too; the log still names c1 as the origin. */
static void resnet_block_both_zero(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *z = conv(k, "c1", x, (convp){4, 4, 3, 1, true, true, true});
	np_value *c = conv(k, "c2", z, (convp){4, 4, 3, 1, true, true, false});
	np_value *a = gk_op(k, "Add", "add", GK_IN(x, c));
	gk_output(k, gk_op(k, "Relu", "relu", GK_IN(a)));
}

/* The same block as NEPENTHE's linearization leaves it: an all-OFF Relu linearized into
 * a BN with zero scale and shift, which fold_bn folds into c1. */
static void resnet_bn_block(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *z = conv(k, "c1", x, (convp){4, 4, 3, 1, true, false, false});
	z = bn(k, "b1", z, 4, true);
	np_value *c = conv(k, "c2", z, (convp){4, 4, 3, 1, true, false, false});
	c = bn(k, "b2", c, 4, false);
	np_value *a = gk_op(k, "Add", "add", GK_IN(c, x));
	gk_output(k, gk_op(k, "Relu", "relu", GK_IN(a)));
}

/* Zero weights, nonzero bias: c2's padded borders see 0, its interior
 * sees the bias, so c2's output is not constant. */
static void zero_conv_bias_padded(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *z = conv(k, "c1", x, (convp){4, 4, 3, 1, true, true, false});
	np_value *c = conv(k, "c2", z, (convp){4, 4, 3, 1, true, false, false});
	gk_output(k, gk_op(k, "Add", "add", GK_IN(x, c)));
}

/* The same with an unpadded c2: constant, b2 + sum W2 * b1. */
static void zero_conv_bias_unpadded(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *z = conv(k, "c1", x, (convp){5, 4, 3, 1, true, true, false});
	np_value *c = conv(k, "c2", z, (convp){4, 5, 1, 0, true, false, false});
	gk_output(k, gk_op(k, "Add", "add", GK_IN(c, x)));
}

/* A BN and a Relu after the constant. */
static void bn_after_const(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 5, 5));
	np_value *z = conv(k, "c1", x, (convp){4, 4, 3, 1, true, true, false});
	z = bn(k, "bn", z, 4, false);
	z = gk_op(k, "Relu", "r", GK_IN(z));
	gk_output(k, gk_op(k, "Sub", "sub", GK_IN(x, z)));
}

/* The constant is itself a graph output: it stays (so does its reader). */
static void const_is_output(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *z = conv(k, "c1", x, (convp){4, 4, 3, 1, true, true, true});
	np_value *c = conv(k, "c2", z, (convp){4, 4, 3, 1, true, false, false});
	gk_output(k, c);
	gk_output(k, gk_op(k, "Mul", "mul", GK_IN(x, c)));
}

/* The other operand broadcasts ([N,4,1,1]): the constant [1,4,1,1] would
 * shrink the output. */
static void other_broadcasts(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *p = gk_op(k, "GlobalAveragePool", "gap", GK_IN(x));
	np_value *z = conv(k, "c1", x, (convp){4, 4, 3, 1, true, true, false});
	gk_output(k, gk_op(k, "Add", "add", GK_IN(p, z)));
}

/* Add of an all-zero constant: Identity, then removed. */
static void zero_add(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *z = conv(k, "c1", x, (convp){4, 4, 3, 1, false, true, false});
	np_value *a = gk_op(k, "Add", "add", GK_IN(z, x));
	gk_output(k, gk_op(k, "Relu", "relu", GK_IN(a)));
}

/* Gemm with zero B: beta * C, rank 2. */
static void gemm_zero_b(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 6));
	np_value *in[3] = {x, gk_floats(k, "g.weight", GK_SHAPE(5, 6), NULL),
	                   gk_weight(k, "g.bias", GK_SHAPE(5), -1, 1)};
	np_node *g = gk_node(k, "Gemm", "g", in, 3);
	np_node_set_attr_int(g, "transB", 1);
	np_node_set_attr_float(g, "beta", 0.5f);
	np_value *c = gk_done(k, g);
	np_value *h = gk_op(k, "MatMul", "h", GK_IN(x, gk_weight(k, NULL, GK_SHAPE(6, 5), -1, 1)));
	gk_output(k, gk_op(k, "Mul", "mul", GK_IN(h, c)));
}

/* The constant has a reader that is not element-wise: the branch stays
 * anyway, so replacing the Add's operand would only add parameters. */
static void other_reader(gk *k)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(-1, 4, 6, 6));
	np_value *z = conv(k, "c1", x, (convp){4, 4, 3, 1, true, true, false});
	gk_output(k, gk_op(k, "Add", "add", GK_IN(x, z)));
	gk_output(k, conv(k, "c3", z, (convp){4, 4, 1, 0, false, false, false}));
}

int main(void)
{
	check_case("resnet block", resnet_block, &(expect){
		PASSES, NP_FOLD_EXACT, 2, 0,
		.folded = "branch of zero-weight Conv c1 is the constant bias of c2",
		.doc_node = "add", .doc = "constant: c2 replaced by c2_const"});
	/* The dead branch goes at once: fold_conv, next in the round, must
	 * not consider (and refuse) the padded c1 -> c2 pair. */
	check_case("resnet block, fold_conv after", resnet_block, &(expect){
		"fold_const,fold_conv", NP_FOLD_EXACT, 2, 0, .no_refusal = true,
		.folded = "on the constant branch replaced by c2_const"});
	check_case("resnet block, both convs zero", resnet_block_both_zero, &(expect){
		PASSES, NP_FOLD_EXACT, 2, 0,
		.folded = "branch of zero-weight Conv c1 is the constant bias of c2"});
	check_case("resnet block, --fold none", resnet_block, &(expect){
		PASSES, NP_FOLD_NONE, 4, 2, .unchanged = true});
	check_case("resnet block after fold_bn", resnet_bn_block, &(expect){
		"fold_bn," PASSES, NP_FOLD_EXACT, 2, 0,
		.folded = "branch of zero-weight Conv c1 is the constant bias of c2"});
	check_case("zero-weight conv with bias -> padded conv", zero_conv_bias_padded,
	           &(expect){PASSES, NP_FOLD_EXACT, 3, 2, .unchanged = true});
	check_case("zero-weight conv with bias -> unpadded conv", zero_conv_bias_unpadded,
	           &(expect){PASSES, NP_FOLD_EXACT, 1, 0,
	                     .folded = "is a per-channel constant after c2 (Conv)"});
	check_case("BN and Relu after a constant", bn_after_const, &(expect){
		PASSES, NP_FOLD_EXACT, 1, 0, .folded = "after r (Relu)",
		.doc_node = "sub", .doc = "constant: r replaced by r_const"});
	check_case("constant graph output", const_is_output, &(expect){
		PASSES, NP_FOLD_EXACT, 3, 2, .unchanged = true,
		.refused = "it is a graph output"});
	check_case("other operand broadcasts", other_broadcasts, &(expect){
		PASSES, NP_FOLD_EXACT, 3, 1, .unchanged = true,
		.refused = "does not have its full shape"});
	check_case("Add of zeros", zero_add, &(expect){
		PASSES, NP_FOLD_EXACT, 1, 0, .folded = "is the identity"});
	check_case("Gemm with zero B", gemm_zero_b, &(expect){
		PASSES, NP_FOLD_EXACT, 2, 0,
		.folded = "Gemm with zero B g outputs a per-channel constant"});
	check_case("constant with another reader", other_reader, &(expect){
		PASSES, NP_FOLD_EXACT, 3, 2, .unchanged = true,
		.refused = "a reader is not an element-wise Add/Sub/Mul"});
	return done_testing();
}
