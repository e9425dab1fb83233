/* test_rectifiers.c - rectifiers as exporters write them (layers.c), on
 * tiny hand-built graphs:
 *
 *   - the decomposed erf GELU in PyTorch's order ((x * B) * 0.5, B = 1 +
 *     Erf(x / sqrt 2)) and TensorFlow's ((x * 0.5) * B, x * 0.7071...),
 *     the tanh approximation (cube by Pow or by Muls), SiLU x*Sigmoid(x),
 *     each with its constant operands in both positions and as
 *     initializers, Constant nodes (value tensor, value_float);
 *   - Clip with min/max attributes (opset 10) and inputs (opset 13, max
 *     omitted), Gelu op (opset 20), HardSwish/HardSigmoid not rectifiers;
 *   - near misses that must not match: a wrong constant, an intermediate
 *     value read outside the pattern or a graph output, an Erf of another
 *     value;
 *   - the profiler counts a pattern's x, and linearize replaces the whole
 *     pattern (outputs before and after compared through the runtime at
 *     |a-b| <= 1e-5 * max|b| + 1e-6, inputs drawn so that the planned
 *     states hold far from 0, where GELU and SiLU are exactly 0 or x in
 *     float).
 * TAP output. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "graphkit.h"
#include "layers.h"
#include "nepenthe.h"
#include "pass.h"
#include "tap.h"

enum { ON = NP_STATE_ON, OFF = NP_STATE_OFF };

/* ------------------------------------------------------- constants */

/* How a pattern's constant operands are written. */
typedef enum cmode {
	C_INIT,          /* scalar initializer */
	C_NODE,          /* Constant node, value = float tensor */
	C_NODE_FLOAT     /* Constant node, value_float */
} cmode;

static const char *cmode_name(cmode c)
{
	return c == C_INIT ? "initializers" : c == C_NODE ? "Constant nodes"
	                                                  : "Constant value_float";
}

static np_value *constant(gk *k, cmode mode, float v)
{
	if (mode == C_INIT)
		return gk_scalar(k, NULL, v);
	np_node *n = gk_node(k, "Constant", NULL, NULL, 0);
	if (mode == C_NODE_FLOAT) {
		np_node_set_attr_float(n, "value_float", v);
		return gk_done(k, n);
	}
	np_error err = {0};
	np_tensor *t = np_model_new_tensor(k->m, NP_FLOAT, 0, NULL, &err);
	if (!t)
		gk_die("tensor", &err);
	*(float *)t->data = v;
	n->attrs = np_arena_alloc(k->m->arena, sizeof(np_attr));
	n->attrs[0].name = "value";
	n->attrs[0].type = NP_ATTR_TENSOR;
	n->attrs[0].t = t;
	n->n_attrs = 1;
	return gk_done(k, n);
}

/* Binary op with a constant: op(a, c) or, swapped, op(c, a). */
static np_value *with_const(gk *k, const char *op, const char *name, np_value *a,
                            np_value *c, bool swap)
{
	return swap ? gk_op(k, op, name, GK_IN(c, a)) : gk_op(k, op, name, GK_IN(a, c));
}

/* ------------------------------------------------------- patterns */

/* What to build after z; perturbations make near misses. */
typedef enum shape {
	ERF_TORCH,       /* ((x * (1 + Erf(x / sqrt2))) * 0.5 */
	ERF_TF,          /* (x * 0.5) * (1 + Erf(x * 0.7071)) */
	ERF_NESTED,      /* x * (0.5 * (1 + Erf(x / sqrt2))) */
	TANH_TORCH,      /* 0.5 * (x * (1 + Tanh(k1 * (x + k2 * (x * (x * x)))))) */
	TANH_POW,        /* (0.5 * x) * (1 + Tanh(k1 * (k2 * Pow(x, 3) + x))) */
	SILU             /* x * Sigmoid(x) */
} shape;

static const char *shape_name(shape s)
{
	static const char *n[] = {"erf GELU (PyTorch order)", "erf GELU (TensorFlow order)",
	                          "erf GELU (x * (0.5 * B))", "tanh GELU (PyTorch, Mul cube)",
	                          "tanh GELU (Pow cube)", "SiLU"};
	return n[s];
}

static const char *shape_label(shape s)
{
	return s <= ERF_NESTED ? "gelu(erf pattern)" : s == SILU ? "silu(pattern)"
	                                                          : "gelu(tanh pattern)";
}

typedef struct miss {
	float sqrt2, one, half, k2;   /* 0: the right constant */
	bool leak;                    /* an intermediate value read outside */
	bool leak_output;             /* an intermediate value a graph output */
	bool other_x;                 /* the Erf/Tanh/Sigmoid sees another value */
} miss;

static float pick(float wrong, float right)
{
	return wrong != 0 ? wrong : right;
}

/* Build shape s on z (y: another value for other_x); returns the
 * activation, *n_nodes the compute nodes of the pattern, *leak the value
 * to read outside when mi->leak. */
static np_value *build(gk *k, shape s, np_value *z, np_value *y, cmode cm, bool swap,
                       const miss *mi, int *n_nodes, np_value **leak)
{
	np_value *xa = mi->other_x ? y : z;   /* argument of Erf/Tanh/Sigmoid */
	np_value *one = constant(k, cm, pick(mi->one, 1.0f));
	np_value *half = constant(k, cm, pick(mi->half, 0.5f));
	np_value *b, *e;
	if (s == SILU) {
		np_value *sg = gk_op(k, "Sigmoid", "sig", GK_IN(xa));
		*leak = sg;
		*n_nodes = 2;
		return swap ? gk_op(k, "Mul", "act", GK_IN(sg, z)) : gk_op(k, "Mul", "act", GK_IN(z, sg));
	}
	if (s <= ERF_NESTED) {
		np_value *arg;
		if (s == ERF_TF) {
			float inv = pick(mi->sqrt2 ? 1.0f / mi->sqrt2 : 0, 0.70710678f);
			arg = with_const(k, "Mul", "scale", xa, constant(k, cm, inv), swap);
		} else {
			np_value *c = constant(k, cm, pick(mi->sqrt2, 1.4142135f));
			arg = gk_op(k, "Div", "scale", GK_IN(xa, c));
		}
		e = gk_op(k, "Erf", "erf", GK_IN(arg));
		*n_nodes = 5;
	} else {
		np_value *cube;
		if (s == TANH_POW) {
			cube = gk_op(k, "Pow", "cube", GK_IN(xa, constant(k, cm, 3.0f)));
			*n_nodes = 8;
		} else {
			np_value *sq = gk_op(k, "Mul", "sq", GK_IN(xa, xa));
			cube = swap ? gk_op(k, "Mul", "cube", GK_IN(sq, xa)) : gk_op(k, "Mul", "cube", GK_IN(xa, sq));
			*n_nodes = 9;
		}
		np_value *c = with_const(k, "Mul", "k2", cube, constant(k, cm, pick(mi->k2, 0.044715f)), !swap);
		np_value *in = swap ? gk_op(k, "Add", "inner", GK_IN(c, xa))
		                    : gk_op(k, "Add", "inner", GK_IN(xa, c));
		np_value *arg = with_const(k, "Mul", "k1", in, constant(k, cm, 0.7978846f), !swap);
		e = gk_op(k, "Tanh", "tanh", GK_IN(arg));
	}
	b = with_const(k, "Add", "bracket", e, one, swap);
	*leak = e;
	if (s == ERF_TORCH || s == TANH_TORCH) {
		np_value *m = swap ? gk_op(k, "Mul", "xb", GK_IN(b, z)) : gk_op(k, "Mul", "xb", GK_IN(z, b));
		return with_const(k, "Mul", "act", m, half, s == TANH_TORCH ? !swap : swap);
	}
	if (s == ERF_NESTED) {
		np_value *hb = with_const(k, "Mul", "hb", b, half, swap);
		return swap ? gk_op(k, "Mul", "act", GK_IN(hb, z)) : gk_op(k, "Mul", "act", GK_IN(z, hb));
	}
	np_value *h = with_const(k, "Mul", "xh", z, half, swap);
	return swap ? gk_op(k, "Mul", "act", GK_IN(b, h)) : gk_op(k, "Mul", "act", GK_IN(h, b));
}

/* x [2,4] -> Gemm -> z -> pattern -> output; y a second input. */
static void pattern_graph(gk *k, shape s, cmode cm, bool swap, const miss *mi,
                          np_value **z, np_value **act, int *n_nodes)
{
	np_value *x = gk_input(k, "x", GK_SHAPE(2, 4));
	np_value *y = gk_input(k, "y", GK_SHAPE(2, 3));
	np_value *w = gk_weight(k, "w", GK_SHAPE(4, 3), -1, 1);
	*z = gk_op(k, "Gemm", "gemm", GK_IN(x, w));
	np_value *leak = NULL;
	*act = build(k, s, *z, y, cm, swap, mi, n_nodes, &leak);
	gk_output(k, *act);
	if (mi->leak)
		gk_output(k, gk_op(k, "Neg", "outside", GK_IN(leak)));
	if (mi->leak_output)
		gk_output(k, leak);
}

static void t_pattern(shape s, cmode cm, bool swap)
{
	char desc[160];
	snprintf(desc, sizeof desc, "%s, %s, %s", shape_name(s), cmode_name(cm),
	         swap ? "constants first" : "constants second");
	gk k;
	gk_init(&k, 13, 1);
	miss none = {0};
	np_value *z, *act;
	int n_nodes;
	pattern_graph(&k, s, cm, swap, &none, &z, &act, &n_nodes);
	np_layers ls = {0};
	np_error err = {0};
	np_status st = np_find_layers(k.m, &ls, &err);
	const np_layer *L = ls.n == 1 ? &ls.v[0] : NULL;
	ok(st == NP_OK && L, "%s: one layer (%d)", desc, ls.n);
	if (L) {
		ok(L->z == z && L->out == act,
		   "%s: z is the pattern's x '%s', out its last value '%s'", desc,
		   L->z->name, L->out->name);
		ok(strcmp(np_layer_kind_label(L), shape_label(s)) == 0 &&
		   L->kind == (s == SILU ? NP_RECT_SILU : NP_RECT_GELU),
		   "%s: kind %s", desc, np_layer_kind_label(L));
		ok(L->n_pattern == n_nodes, "%s: %d pattern nodes (want %d)", desc,
		   L->n_pattern, n_nodes);
		ok(L->n_producers == 1 && strcmp(L->producers[0]->name, "gemm") == 0 &&
		   L->neurons == 3 && L->n_prunable == 12,
		   "%s: producer gemm, 3 neurons, 12 weights", desc);
	}
	np_layers_free(&ls);
	gk_free(&k);
}

static void t_near_miss(shape s, const char *why, miss mi)
{
	gk k;
	gk_init(&k, 13, 2);
	np_value *z, *act;
	int n_nodes;
	pattern_graph(&k, s, C_INIT, false, &mi, &z, &act, &n_nodes);
	np_layers ls = {0};
	np_error err = {0};
	np_status st = np_find_layers(k.m, &ls, &err);
	ok(st == NP_OK && ls.n == 0, "%s with %s: not a rectifier (%d layers%s%s)",
	   shape_name(s), why, ls.n, ls.n ? ", " : "", ls.n ? np_layer_kind_label(&ls.v[0]) : "");
	np_layers_free(&ls);
	gk_free(&k);
}

/* ----------------------------------------------------- single ops */

/* z = Gemm; then op; the label wanted, or NULL for no layer. */
typedef enum clipcase {
	CLIP_ATTR6, CLIP_ATTR_MIN, CLIP_INPUTS6, CLIP_NODES6, CLIP_NO_MAX,
	CLIP_NULL_MAX, CLIP_NEG_MIN, GELU_OP, GELU_OP_TANH, HARDSWISH, HARDSIGMOID,
	HARDSWISH_MUL
} opcase;

static void t_single(opcase c)
{
	static const struct {
		const char *what, *label;
		int opset;
	} tab[] = {
		{"Clip min 0 max 6 as attributes (opset 10)", "relu6", 10},
		{"Clip min 0 attribute only (opset 10)", "clip", 10},
		{"Clip(0, 6) initializer inputs (opset 13)", "relu6", 13},
		{"Clip(0, 6) Constant node inputs (opset 13)", "relu6", 13},
		{"Clip(x, 0) max omitted (opset 13)", "clip", 13},
		{"Clip(x, 0, '') empty max (opset 13)", "clip", 13},
		{"Clip(-1, 6) (opset 13)", NULL, 13},
		{"Gelu op (opset 20)", "gelu", 20},
		{"Gelu approximate=tanh (opset 20)", "gelu(tanh)", 20},
		{"HardSwish", NULL, 14},
		{"HardSigmoid", NULL, 13},
		{"x * HardSigmoid(x) (PyTorch's HardSwish)", NULL, 13},
	};
	gk k;
	gk_init(&k, tab[c].opset, 3);
	np_value *x = gk_input(&k, "x", GK_SHAPE(2, 4));
	np_value *w = gk_weight(&k, "w", GK_SHAPE(4, 3), -1, 1);
	np_value *z = gk_op(&k, "Gemm", "gemm", GK_IN(x, w)), *y = NULL;
	np_node *n = NULL;
	switch (c) {
	case CLIP_ATTR6:
	case CLIP_ATTR_MIN:
		n = gk_node(&k, "Clip", "act", GK_IN(z));
		np_node_set_attr_float(n, "min", 0.0f);
		if (c == CLIP_ATTR6)
			np_node_set_attr_float(n, "max", 6.0f);
		break;
	case CLIP_INPUTS6:
		n = gk_node(&k, "Clip", "act", GK_IN(z, gk_scalar(&k, NULL, 0), gk_scalar(&k, NULL, 6)));
		break;
	case CLIP_NODES6:
		n = gk_node(&k, "Clip", "act", GK_IN(z, constant(&k, C_NODE, 0), constant(&k, C_NODE, 6)));
		break;
	case CLIP_NO_MAX:
		n = gk_node(&k, "Clip", "act", GK_IN(z, gk_scalar(&k, NULL, 0)));
		break;
	case CLIP_NULL_MAX:
		n = gk_node(&k, "Clip", "act", GK_IN(z, gk_scalar(&k, NULL, 0), NULL));
		break;
	case CLIP_NEG_MIN:
		n = gk_node(&k, "Clip", "act", GK_IN(z, gk_scalar(&k, NULL, -1), gk_scalar(&k, NULL, 6)));
		break;
	case GELU_OP:
	case GELU_OP_TANH:
		n = gk_node(&k, "Gelu", "act", GK_IN(z));
		if (c == GELU_OP_TANH)
			np_node_set_attr_string(n, "approximate", "tanh");
		break;
	case HARDSWISH:
		n = gk_node(&k, "HardSwish", "act", GK_IN(z));
		break;
	case HARDSIGMOID:
		n = gk_node(&k, "HardSigmoid", "act", GK_IN(z));
		break;
	case HARDSWISH_MUL:
		y = gk_op(&k, "HardSigmoid", "hsig", GK_IN(z));
		n = gk_node(&k, "Mul", "act", GK_IN(z, y));
		break;
	}
	gk_output(&k, gk_done(&k, n));
	np_layers ls = {0};
	np_error err = {0};
	np_status st = np_find_layers(k.m, &ls, &err);
	if (!tab[c].label) {
		ok(st == NP_OK && ls.n == 0, "%s: not a rectifier (%d layers)", tab[c].what, ls.n);
	} else {
		const np_layer *L = ls.n == 1 ? &ls.v[0] : NULL;
		ok(st == NP_OK && L && L->z == z && L->n_pattern == 1 &&
		   strcmp(np_layer_kind_label(L), tab[c].label) == 0,
		   "%s: one layer, kind %s (%s)", tab[c].what, tab[c].label,
		   L ? np_layer_kind_label(L) : "none");
		if (L && L->kind == NP_RECT_CLIP)
			ok(L->clip_min == 0 && L->clip_max == (strcmp(tab[c].label, "relu6") == 0 ? 6.0f : INFINITY),
			   "%s: bounds [%g, %g]", tab[c].what, L->clip_min, L->clip_max);
	}
	np_layers_free(&ls);
	gk_free(&k);
}

/* ----------------------------------------------------- the profile */

/* x [N,3] -> Gemm with B = I -> pattern: the profile counts x's signs. */
static void t_profile(shape s)
{
	gk k;
	gk_init(&k, 13, 4);
	np_value *x = gk_input(&k, "x", GK_SHAPE(-1, 3));
	float eye[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
	np_value *w = gk_floats(&k, "w", GK_SHAPE(3, 3), eye);
	np_value *z = gk_op(&k, "Gemm", "gemm", GK_IN(x, w));
	miss none = {0};
	np_value *leak;
	int n_nodes;
	gk_output(&k, build(&k, s, z, NULL, C_NODE, false, &none, &n_nodes, &leak));
	/* neuron 0: always ON; 1: OFF, OFF, ON, don't care; 2: always OFF */
	float data[12] = {1, -1, -2,  2, -3, -1,  3, 4, -5,  4, 0, -1};
	np_dataset d = {.n = 4, .rank = 1, .x = data, .example_size = 3};
	d.dims[0] = 3;
	np_error err = {0};
	np_layers ls = {0};
	np_profile p = {0};
	np_rt *rt = np_rt_new(k.m, 1, &err);
	np_status st = rt ? np_find_layers(k.m, &ls, &err) : err.status;
	np_profile_opts o = {.batch = 3, .quiet = true};
	if (st == NP_OK)
		st = np_profile_run(rt, &ls, &d, &o, &p, &err);
	bool good = st == NP_OK && p.n == 1 && p.l[0].neurons == 3;
	if (good) {
		const int64_t *c = p.l[0].counts;
		int ns = p.l[0].n_states;
		good = c[0 * ns + ON] == 4 && c[0 * ns + OFF] == 0 &&
		       c[1 * ns + ON] == 1 && c[1 * ns + OFF] == 2 && p.l[0].dont_care[1] == 1 &&
		       c[2 * ns + ON] == 0 && c[2 * ns + OFF] == 4 &&
		       p.l[0].H[0] == 0 && p.l[0].H[2] == 0 && p.l[0].H[1] > 0.9;
	}
	ok(good, "%s: the profile counts the pattern's input (%s)", shape_name(s),
	   st == NP_OK ? "ok" : err.msg);
	np_profile_free(&p);
	np_layers_free(&ls);
	np_rt_free(rt);
	gk_free(&k);
}

/* ---------------------------------------------------- linearize */

static np_pass_log LOG;

static bool log_has(const char *node, const char *needle)
{
	for (int i = 0; i < LOG.n; i++)
		if (LOG.v[i].kind == NP_LOG_LINEARIZED && LOG.v[i].node &&
		    strcmp(LOG.v[i].node, node) == 0 && LOG.v[i].why &&
		    strstr(LOG.v[i].why, needle))
			return true;
	return false;
}

/* Conv (biases +-30 by state) -> pattern -> [Conv consumer] -> output;
 * linearize with states {ON, OFF, ON, OFF} (or all ON); outputs equal. */
static void t_linearize(shape s, cmode cm, bool swap, bool consumer, bool all_on)
{
	char what[200];
	snprintf(what, sizeof what, "linearize %s (%s%s%s)", shape_name(s), cmode_name(cm),
	         consumer ? ", z read by a second Conv too" : "",
	         all_on ? ", every neuron ON" : "");
	uint8_t st[4] = {ON, OFF, ON, OFF};
	if (all_on)
		memset(st, ON, sizeof st);
	gk k;
	gk_init(&k, 13, 5 + s);
	np_value *x = gk_input(&k, "x", GK_SHAPE(2, 3, 5, 5));
	np_value *w = gk_weight(&k, "w", GK_SHAPE(4, 3, 3, 3), 0.01f, 0.5f);
	float bias[4];
	for (int c = 0; c < 4; c++)
		bias[c] = st[c] == ON ? 30.0f : -30.0f;
	np_value *b = gk_floats(&k, "b", GK_SHAPE(4), bias);
	np_node *cv = gk_node(&k, "Conv", "conv", GK_IN(x, w, b));
	gk_set_ints(cv, "pads", GK_SHAPE(1, 1, 1, 1));
	np_value *z = gk_done(&k, cv);
	miss none = {0};
	np_value *leak;
	int n_nodes;
	np_value *act = build(&k, s, z, NULL, cm, swap, &none, &n_nodes, &leak);
	np_value *w2 = gk_weight(&k, "head_w", GK_SHAPE(2, 4, 1, 1), -1, 1);
	gk_output(&k, gk_op(&k, "Conv", "head", GK_IN(act, w2)));
	if (consumer)     /* z no longer private: no fold into the producer */
		gk_output(&k, gk_op(&k, "Conv", "side", GK_IN(z, w2)));

	np_rt_input in = {.name = "x", .dtype = NP_FLOAT, .rank = 4,
	                  .dims = {2, 3, 5, 5}};
	float *xd = gk_random(&k, 150, -1, 1);
	in.data = xd;
	np_error err = {0};
	int no = k.g->n_outputs;
	float *before[2] = {0}, *after[2] = {0};
	int64_t nb[2] = {0}, na[2] = {0};
	for (int i = 0; i < no; i++)
		before[i] = gk_run(k.m, &in, 1, i, &nb[i], &err);

	np_linearize_layer layer = {.rectifier = "act", .kind = s == SILU ? NP_RECT_SILU : NP_RECT_GELU,
	                            .neurons = 4, .state = st, .approximate = true};
	np_linearize_plan plan = {.v = &layer, .n = 1};
	np_pass_log_free(&LOG);
	np_pass_ctx ctx = {.fold = NP_FOLD_EXACT, .log = &LOG, .linearize = &plan};
	np_status rc = np_run_passes(k.m, "linearize,dce", &ctx, &err);
	bool good = ok(rc == NP_OK && np_graph_verify(k.g, &err) == NP_OK, "%s: runs (%s)", what,
	               rc == NP_OK ? "ok" : err.msg);
	for (int i = 0; good && i < no; i++) {
		after[i] = gk_run(k.m, &in, 1, i, &na[i], &err);
		double worst = 0;
		good &= ok(before[i] && after[i] && nb[i] == na[i] &&
		           gk_close(after[i], before[i], nb[i], &worst),
		           "%s: output %d matches (max diff %.3g)", what, i, worst);
	}
	if (good) {
		int left = gk_count_op(k.g, "Erf") + gk_count_op(k.g, "Tanh") +
		           gk_count_op(k.g, "Sigmoid") + gk_count_op(k.g, "Mul") +
		           gk_count_op(k.g, "Div") + gk_count_op(k.g, "Pow") +
		           gk_count_op(k.g, "Add") + gk_count_op(k.g, "Constant");
		ok(left == 0 && !gk_find_node(k.g, "act"),
		   "%s: every node of the pattern is gone (%d left, %d nodes)", what, left,
		   k.g->n_nodes);
		ok(log_has("act", all_on ? "identity" : "approximate") &&
		   log_has("act", shape_label(s)),
		   "%s: logged as %s", what, all_on ? "an identity" : "approximate");
		if (!all_on && !consumer)
			ok(log_has("act", "folded into producer conv"), "%s: folded into the producer",
			   what);
		if (!all_on && consumer)
			ok(log_has("act", "folded into 1 consumer"), "%s: folded into the consumer",
			   what);
	}
	for (int i = 0; i < 2; i++) {
		free(before[i]);
		free(after[i]);
	}
	free(xd);
	gk_free(&k);
}

int main(void)
{
	for (shape s = ERF_TORCH; s <= SILU; s++)
		for (cmode cm = C_INIT; cm <= C_NODE_FLOAT; cm++)
			for (int swap = 0; swap < 2; swap++)
				t_pattern(s, cm, swap);

	t_near_miss(ERF_TORCH, "Div by 2", (miss){.sqrt2 = 2.0f});
	t_near_miss(ERF_TF, "Mul by 0.5 in the Erf", (miss){.sqrt2 = 2.0f});
	t_near_miss(ERF_TORCH, "Add 2", (miss){.one = 2.0f});
	t_near_miss(ERF_TORCH, "Mul 0.25", (miss){.half = 0.25f});
	t_near_miss(ERF_TF, "Mul 0.25", (miss){.half = 0.25f});
	t_near_miss(TANH_TORCH, "0.05 for 0.044715", (miss){.k2 = 0.05f});
	t_near_miss(TANH_POW, "Add 1.5", (miss){.one = 1.5f});
	t_near_miss(ERF_TORCH, "the Erf read outside", (miss){.leak = true});
	t_near_miss(ERF_TORCH, "the Erf a graph output", (miss){.leak_output = true});
	t_near_miss(TANH_TORCH, "the Tanh read outside", (miss){.leak = true});
	t_near_miss(ERF_NESTED, "the Erf a graph output", (miss){.leak_output = true});
	t_near_miss(SILU, "the Sigmoid read outside", (miss){.leak = true});
	t_near_miss(SILU, "the Sigmoid a graph output", (miss){.leak_output = true});
	t_near_miss(ERF_TORCH, "Erf of another value", (miss){.other_x = true});
	t_near_miss(TANH_POW, "Tanh of another value", (miss){.other_x = true});
	t_near_miss(SILU, "Sigmoid of another value", (miss){.other_x = true});

	for (opcase c = CLIP_ATTR6; c <= HARDSWISH_MUL; c++)
		t_single(c);

	t_profile(ERF_TORCH);
	t_profile(TANH_TORCH);
	t_profile(SILU);

	t_linearize(ERF_TORCH, C_NODE, false, false, false);
	t_linearize(ERF_TF, C_INIT, true, false, false);
	t_linearize(ERF_NESTED, C_NODE_FLOAT, false, true, false);
	t_linearize(TANH_TORCH, C_NODE, false, false, false);
	t_linearize(TANH_POW, C_INIT, true, true, false);
	t_linearize(SILU, C_INIT, true, true, false);
	t_linearize(ERF_TORCH, C_NODE, true, false, true);
	t_linearize(TANH_TORCH, C_INIT, false, true, true);
	np_pass_log_free(&LOG);
	return done_testing();
}
