/* test_ops.c - the runtime's op table (runtime/ops.def, runtime/ops.c).
 *
 * Each op's name is written twice: in its ops.def line, which np_op_find
 * looks up, and in its np_op's .name (runtime/ops/), which messages and
 * the planner use.  For every ops.def line: the np_op's .name is that
 * name, np_op_find finds that np_op under it (default domain, and as
 * "ai.onnx"), and the name is on no other line; hooks every op needs
 * are set.
 *
 * The facts (rt.h, FACTS) against a table written here from the ONNX
 * operator spec, not copied from runtime/ops/: an op not in the table
 * must state no fact.  np_node_kind and np_op_name against ops.def.
 * weight_geom on hand-built Conv (grouped, 1-D), Gemm (transA, transB)
 * and MatMul (2-D, stacked) nodes with answers worked out by hand. */
#include <stdio.h>
#include <string.h>

#include "graphkit.h"
#include "ops.h"
#include "tap.h"

typedef struct op_line {
	const char *name;       /* as ops.def writes it */
	const np_op *op;
} op_line;

static const op_line lines[] = {
#define NP_OP(name, sym) {#name, &sym},
#include "ops.def"
#undef NP_OP
};
#define N_LINES ((int)(sizeof lines / sizeof lines[0]))

/* ------------------------------------------------------------ facts */

typedef struct spec {
	const char *name;
	unsigned flags;
	int weight, bias;            /* inputs; -1 none */
	unsigned trainable, nonscalar, via_output, state;
	unsigned plan_values;        /* inputs the spec says are axes,
	                              * shapes, splits or bounds */
} spec;

/* From the ONNX spec (Operators.md), input order as it lists them. */
static const spec specs[] = {
	/* Conv(X, W, B), Gemm(A, B, C): linear in the data for a fixed
	 * weight.  Any float initializer a linear op reads is a parameter
	 * (nepenc always trained them all; PyTorch would, for an
	 * nn.Parameter used as data). */
	{"Conv", NP_OPF_LINEAR, 1, 2, 0x7, 0, 0, 0, 0},
	{"Gemm", NP_OPF_LINEAR, 1, 2, 0x7, 0, 0, 0, 0},
	/* MatMul(A, B): no bias input; x @ W or W @ x. */
	{"MatMul", NP_OPF_LINEAR | NP_OPF_WEIGHT_EITHER, 1, -1, 0x3, 0, 0, 0, 0},
	/* BatchNormalization(X, scale, B, input_mean, input_var): the mean
	 * and variance are running statistics, updated in training mode. */
	{"BatchNormalization", NP_OPF_CHANNEL_AFFINE, 1, 2, 0x6, 0, 0, 0x18, 0},
	{"Relu", NP_OPF_RECTIFIER, -1, -1, 0, 0, 0, 0, 0},
	{"LeakyRelu", NP_OPF_RECTIFIER, -1, -1, 0, 0, 0, 0, 0},
	/* PRelu(X, slope): the slope is learned (torch.nn.PReLU). */
	{"PRelu", NP_OPF_RECTIFIER, -1, -1, 0x2, 0, 0, 0, 0},
	/* Clip(input, min, max): the bounds are constants (ReLU6's 6). */
	{"Clip", NP_OPF_RECTIFIER, -1, -1, 0, 0, 0, 0, 0},
	{"Gelu", NP_OPF_RECTIFIER, -1, -1, 0, 0, 0, 0, 0},
	/* A(B): a tensor added is a bias (a MatMul's), a scalar a constant. */
	{"Add", NP_OPF_ARITH, -1, -1, 0, 0x3, 0, 0, 0},
	{"Sub", NP_OPF_ARITH, -1, -1, 0, 0, 0, 0, 0},
	/* A tensor multiplied in is a learned scale (nn.LayerNorm's weight
	 * in the decomposed pattern of opsets < 17), a scalar a constant. */
	{"Mul", NP_OPF_ARITH, -1, -1, 0, 0x3, 0, 0, 0},
	{"Div", NP_OPF_ARITH, -1, -1, 0, 0, 0, 0, 0},
	{"Identity", NP_OPF_PASS, -1, -1, 0, 0, 0x1, 0, 0},
	{"Dropout", NP_OPF_PASS, -1, -1, 0, 0, 0, 0, 0},
	{"Flatten", NP_OPF_RESHAPE, -1, -1, 0, 0, 0, 0, 0},
	/* Reshape(data, shape), Expand(input, shape), Squeeze and
	 * Unsqueeze(data, axes), Split(input, split), Slice(data, starts,
	 * ends, axes, steps), Reduce*(data, axes), ConstantOfShape(input),
	 * Range(start, limit, delta): inputs that decide the output's shape,
	 * so the plan needs their values. */
	{"Reshape", NP_OPF_RESHAPE, -1, -1, 0, 0, 0, 0, 0x2},
	{"Shape", NP_OPF_SHAPE_READ, -1, -1, 0, 0, 0, 0, 0},
	/* LayerNormalization(X, Scale, B): nn.LayerNorm's weight and bias,
	 * trained; no running statistics. */
	{"LayerNormalization", 0, 1, 2, 0x6, 0, 0, 0, 0},
	/* Data movement, comparisons, generators and reductions: no weight,
	 * nothing trained, nothing a pass walks through (their indices,
	 * shapes and axes are constants, not parameters).  Split(input, split)
	 * has several outputs, which trainable_via_output does not follow. */
	{"Split", 0, -1, -1, 0, 0, 0, 0, 0x2},
	{"Squeeze", 0, -1, -1, 0, 0, 0, 0, 0x2},
	{"Unsqueeze", 0, -1, -1, 0, 0, 0, 0, 0x2},
	/* Transpose(data, ...), Slice(data, ...), Expand(input, shape): an
	 * initializer moved before its use (W.t(), rows of a packed
	 * in_proj_weight) is trained where its readers train it. */
	{"Transpose", 0, -1, -1, 0, 0, 0x1, 0, 0},
	{"Slice", 0, -1, -1, 0, 0, 0x1, 0, 0x1e},
	{"Expand", 0, -1, -1, 0, 0, 0x1, 0, 0x2},
	/* Gather(data, indices): a float table read by index is an
	 * nn.Embedding's weight (or a relative-position bias table);
	 * indices select rows along "axis" (token ids, checked against
	 * the table by the data loader). */
	{"Gather", NP_OPF_INDEX_ROWS, -1, -1, 0x1, 0, 0, 0, 0},
	/* Concat(inputs...): a float tensor joined to the activations is a
	 * learned token (a ViT's class token), any input. */
	{"Concat", 0, -1, -1, 0, 0xffffffffu, 0, 0, 0},
	{"Range", 0, -1, -1, 0, 0, 0, 0, 0x7},
	{"ConstantOfShape", 0, -1, -1, 0, 0, 0, 0, 0x1},
	{"Equal", 0, -1, -1, 0, 0, 0, 0, 0},
	{"Less", 0, -1, -1, 0, 0, 0, 0, 0},
	{"LessOrEqual", 0, -1, -1, 0, 0, 0, 0, 0},
	{"Greater", 0, -1, -1, 0, 0, 0, 0, 0},
	{"GreaterOrEqual", 0, -1, -1, 0, 0, 0, 0, 0},
	{"Not", 0, -1, -1, 0, 0, 0, 0, 0},
	{"Where", 0, -1, -1, 0, 0, 0, 0, 0},
	{"ReduceMean", 0, -1, -1, 0, 0, 0, 0, 0x2},
	{"ReduceSum", 0, -1, -1, 0, 0, 0, 0, 0x2},
	{"ReduceMax", 0, -1, -1, 0, 0, 0, 0, 0x2},
};
#define N_SPECS ((int)(sizeof specs / sizeof specs[0]))

static const spec *spec_of(const char *name)
{
	static const spec none = {NULL, 0, -1, -1, 0, 0, 0, 0, 0};
	for (int i = 0; i < N_SPECS; i++)
		if (strcmp(specs[i].name, name) == 0)
			return &specs[i];
	return &none;
}

static void check_facts(const op_line *l)
{
	const spec *sp = spec_of(l->name);
	const np_op *op = l->op;
	ok(op->flags == sp->flags, "%s: flags 0x%x (spec 0x%x)", l->name, op->flags,
	   sp->flags);
	ok(op->weight_input == sp->weight && op->bias_input == sp->bias,
	   "%s: weight input %d, bias input %d (spec %d, %d)", l->name,
	   op->weight_input, op->bias_input, sp->weight, sp->bias);
	ok(op->trainable == sp->trainable && op->trainable_nonscalar == sp->nonscalar &&
	   op->trainable_via_output == sp->via_output && op->state == sp->state,
	   "%s: trained inputs 0x%x, if not scalar 0x%x, via output 0x%x, state 0x%x",
	   l->name, op->trainable, op->trainable_nonscalar, op->trainable_via_output,
	   op->state);
	ok(op->plan_values == sp->plan_values, "%s: inputs read at plan time 0x%x "
	   "(spec 0x%x)", l->name, op->plan_values, sp->plan_values);
	ok(!op->weight_geom == !(op->flags & NP_OPF_LINEAR),
	   "%s: weight_geom set exactly for a linear op", l->name);
}

static void check_kinds(void)
{
	gk k;
	gk_init(&k, 13, 1);
	for (int i = 0; i < N_LINES; i++) {
		np_node *n = gk_node(&k, lines[i].name, NULL, NULL, 0);
		ok(np_node_kind(n) == (np_op_kind)i && np_node_op(n) == lines[i].op &&
		   np_op_name((np_op_kind)i) && strcmp(np_op_name((np_op_kind)i), lines[i].name) == 0,
		   "kind %d: np_node_kind, np_node_op and np_op_name agree with ops.def's %s",
		   i, lines[i].name);
	}
	np_node *other = gk_node(&k, "Relu", NULL, NULL, 0);
	other->domain = "com.example";
	np_node *unknown = gk_node(&k, "NoSuchOp", NULL, NULL, 0);
	ok(np_node_kind(other) == NP_OPK_NONE && np_node_kind(unknown) == NP_OPK_NONE &&
	   np_node_kind(NULL) == NP_OPK_NONE && !np_node_op(unknown) &&
	   np_node_flags(other) == 0, "np_node_kind: other domain, unknown op, NULL");
	ok(N_LINES == NP_OPK_COUNT && !np_op_name(NP_OPK_NONE) && !np_op_name(NP_OPK_COUNT),
	   "np_op_name: one kind per ops.def line, none outside");
	gk_free(&k);
}

/* ------------------------------------------------------ weight_geom */

static bool geom_is(const np_weight_geom *g, int out_axis, int64_t out_ch,
                    int64_t K, int64_t groups, int in_axis, int batch_axes)
{
	return g->out_axis == out_axis && g->out_ch == out_ch && g->K == K &&
	       g->groups == groups && g->in_axis == in_axis && g->batch_axes == batch_axes;
}

static void check_geom(void)
{
	gk k;
	gk_init(&k, 13, 2);
	np_weight_geom g;
	/* Conv, 6 input channels in 2 groups -> 8 outputs, 3x3. */
	np_node *conv = gk_node(&k, "Conv", NULL, NULL, 0);
	np_node_set_attr_int(conv, "group", 2);
	ok(np_node_weight_geom(conv, GK_SHAPE(8, 3, 3, 3), &g) &&
	   geom_is(&g, 0, 8, 6, 2, 1, 0),
	   "Conv group 2, W [8,3,3,3]: outputs on axis 0 (8), 6 input channels on "
	   "X's axis 1, 2 groups");
	np_node *conv1d = gk_node(&k, "Conv", NULL, NULL, 0);
	ok(np_node_weight_geom(conv1d, GK_SHAPE(4, 3, 5), &g) && geom_is(&g, 0, 4, 3, 1, 1, 0),
	   "Conv 1-D, W [4,3,5]: 4 outputs, 3 input channels");
	ok(!np_node_weight_geom(conv1d, GK_SHAPE(4, 3), &g), "Conv: a 2-D weight does not fit");
	ok(np_node_weight_geom(conv1d, GK_SHAPE(4, 3, 5), &g) && !g.y_last,
	   "Conv: Y [N, C, ...] holds the output channels on axis 1");
	np_node_set_attr_int(conv, "group", 0);
	ok(!np_node_weight_geom(conv, GK_SHAPE(8, 3, 3, 3), &g), "Conv: group 0 does not fit");

	/* Gemm: A [M, K] x B [K, N]; transB stores B as [N, K]. */
	np_node *gemm = gk_node(&k, "Gemm", NULL, NULL, 0);
	ok(np_node_weight_geom(gemm, GK_SHAPE(5, 7), &g) && geom_is(&g, 1, 7, 5, 1, 1, 0),
	   "Gemm, B [5,7]: 7 output columns on B's axis 1, A's 5 columns");
	np_node_set_attr_int(gemm, "transB", 1);
	ok(np_node_weight_geom(gemm, GK_SHAPE(7, 5), &g) && geom_is(&g, 0, 7, 5, 1, 1, 0),
	   "Gemm transB=1, B [7,5]: 7 outputs on B's axis 0, 5 features");
	np_node_set_attr_int(gemm, "transA", 1);
	ok(np_node_weight_geom(gemm, GK_SHAPE(7, 5), &g) && geom_is(&g, 0, 7, 5, 1, 0, 0),
	   "Gemm transA=1 transB=1: A [K,M] has its features on axis 0");
	ok(!np_node_weight_geom(gemm, GK_SHAPE(2, 7, 5), &g), "Gemm: a 3-D B does not fit");
	ok(np_node_weight_geom(gemm, GK_SHAPE(7, 5), &g) && !g.y_last,
	   "Gemm: Y [M, N] holds the output columns on axis 1");

	/* MatMul: x [..., K] @ W [..., K, N]. */
	np_node *mm = gk_node(&k, "MatMul", NULL, NULL, 0);
	ok(np_node_weight_geom(mm, GK_SHAPE(5, 7), &g) && geom_is(&g, 1, 7, 5, 1, -1, 0),
	   "MatMul, W [5,7]: 7 outputs on W's last axis, x's last axis 5 features");
	ok(np_node_weight_geom(mm, GK_SHAPE(3, 5, 7), &g) && geom_is(&g, 2, 7, 5, 1, -1, 1),
	   "MatMul, W [3,5,7]: 3 stacked matrices (one batch axis)");
	ok(!np_node_weight_geom(mm, GK_SHAPE(5), &g), "MatMul: a 1-D W does not fit");
	ok(np_node_weight_geom(mm, GK_SHAPE(5, 7), &g) && g.y_last,
	   "MatMul: Y [..., T, N] holds the output columns on its last axis "
	   "(x [B, T, K] @ W [K, N]: every token is a sample)");

	np_node *relu = gk_node(&k, "Relu", NULL, NULL, 0);
	ok(!np_node_weight_geom(relu, GK_SHAPE(5, 7), &g), "Relu: no weight geometry");
	gk_free(&k);
}

/* ------------------------------------------------------------ flops */

static np_shape shape_of(int rank, const int64_t *dims)
{
	np_shape s = {.rank = rank, .dtype = NP_FLOAT, .n_val = -1};
	memcpy(s.dims, dims, sizeof(int64_t) * (size_t)rank);
	return s;
}

/* The cost facts of the transformer ops, per example ([N, 5, 16]: 80
 * elements): LayerNormalization's 8 per element (mean, variance,
 * normalise, scale, shift), a reduction's one per input element, and
 * none for pure data movement. */
static void check_flops(void)
{
	gk k;
	gk_init(&k, 17, 3);
	np_shape x = shape_of(3, (int64_t[]){2, 5, 16});
	np_shape m = shape_of(3, (int64_t[]){2, 5, 1});
	const np_shape *in[1] = {&x};
	np_node *ln = gk_node(&k, "LayerNormalization", NULL, NULL, 0);
	np_node *rm = gk_node(&k, "ReduceMean", NULL, NULL, 0);
	const np_op *lop = np_node_op(ln), *rop = np_node_op(rm);
	ok(lop && lop->flops && lop->flops(ln, in, 1, &x) == 8 * 80,
	   "LayerNormalization [N,5,16]: 8 FLOPs per element (640)");
	ok(rop && rop->flops && rop->flops(rm, in, 1, &m) == 80,
	   "ReduceMean [N,5,16] -> [N,5,1]: one FLOP per input element (80)");
	static const char *const movers[] = {
		"Transpose", "Slice", "Split", "Expand", "Range", "ConstantOfShape",
		"Equal", "Less", "Greater", "Not", "Where",
	};
	for (size_t i = 0; i < sizeof movers / sizeof movers[0]; i++) {
		const np_op *op = np_op_find("", movers[i]);
		ok(op && !op->flops, "%s: no arithmetic worth counting (flops NULL)",
		   movers[i]);
	}
	gk_free(&k);
}

/* plan_values at work: an int64 model input reaching Reshape's shape
 * through another op is planned as a constant (each new shape a new
 * plan, the right output); were it planned as data, Reshape would
 * refuse it ("must be known at plan time"). */
static void check_plan_values(void)
{
	gk k;
	gk_init(&k, 13, 1);
	np_value *x = gk_input(&k, "x", 2, (const int64_t[]){2, 6});
	np_value *s = gk_input(&k, "s", 1, (const int64_t[]){2});
	s->dtype = NP_INT64;
	np_value *t = gk_op(&k, "Identity", "t", &s, 1);
	np_value *y = gk_op(&k, "Reshape", "y", (np_value *[]){x, t}, 2);
	gk_output(&k, y);
	np_error err = {0};
	np_rt *rt = np_rt_new(k.m, 1, &err);
	if (!rt)
		gk_die("runtime", &err);
	static const int64_t shapes[][2] = {{3, 4}, {4, 3}, {12, 1}, {3, 4}};
	float xs[12];
	for (int i = 0; i < 12; i++)
		xs[i] = (float)i;
	for (int i = 0; i < 4; i++) {
		np_rt_input in[2] = {{"x", NP_FLOAT, 2, {2, 6}, xs},
		                     {"s", NP_INT64, 1, {2}, (void *)shapes[i]}};
		np_status st = np_rt_run(rt, in, 2, NP_RT_INFER, &err);
		const np_rtensor *o = st == NP_OK ? np_rt_output(rt, 0) : NULL;
		ok(o && o->rank == 2 && o->dims[0] == shapes[i][0] &&
		   o->dims[1] == shapes[i][1] && ((const float *)o->data)[11] == 11.0f,
		   "int64 input through Identity into Reshape's shape: %lldx%lld out%s%s",
		   (long long)shapes[i][0], (long long)shapes[i][1], o ? "" : ": ",
		   o ? "" : err.msg);
	}
	np_rt_free(rt);
	gk_free(&k);
}

int main(void)
{
	for (int i = 0; i < N_LINES; i++) {
		const op_line *l = &lines[i];
		ok(l->op->name && strcmp(l->op->name, l->name) == 0,
		   "ops.def %s: its np_op's .name is '%s'", l->name,
		   l->op->name ? l->op->name : "(null)");
		ok(np_op_find("", l->name) == l->op && np_op_find("ai.onnx", l->name) == l->op,
		   "ops.def %s: np_op_find finds it", l->name);
		int dup = 0;
		for (int k = 0; k < N_LINES; k++)
			dup += k != i && (strcmp(lines[k].name, l->name) == 0 || lines[k].op == l->op);
		ok(dup == 0, "ops.def %s: on one line only", l->name);
		ok(l->op->infer && l->op->forward, "ops.def %s: has infer and forward", l->name);
		check_facts(l);
	}
	for (int i = 0; i < N_SPECS; i++) {
		int found = 0;
		for (int k = 0; k < N_LINES; k++)
			found += strcmp(lines[k].name, specs[i].name) == 0;
		ok(found == 1, "spec table %s: an ops.def line", specs[i].name);
	}
	check_kinds();
	check_geom();
	check_flops();
	check_plan_values();
	ok(np_op_find("", "NoSuchOp") == NULL && np_op_find("com.example", "Relu") == NULL,
	   "np_op_find: unknown op and other domain not found");
	return done_testing();
}
