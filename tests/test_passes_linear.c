/* test_passes_linear.c - untie, linearize, eliminate, fold_residual, dce on
 * tiny hand-built graphs.
 *
 * Every numerical case runs the model through the runtime before and after
 * the pass on random inputs and compares every graph output at
 * |a-b| <= 1e-5 * max|b| + 1e-6.  For linearize, the inputs are drawn so
 * that the planned states really hold (checked on z before the pass):
 * then the rectifier and its affine map agree exactly and so must the
 * rewritten graph.  The pass manager sorts and verifies the graph after
 * each pass; the test verifies again.  TAP output. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphkit.h"
#include "nepenthe.h"
#include "pass.h"
#include "ops.h"
#include "tap.h"

enum { ON = NP_STATE_ON, OFF = NP_STATE_OFF, HI = NP_STATE_OFF_HI };

/* ------------------------------------------------------------ inputs */

typedef struct inputs {
	np_rt_input v[4];
	int n;
} inputs;

/* Random data for graph input x (declared shape), uniform in [lo, hi]. */
static float *add_input(gk *k, inputs *in, const np_value *x, float lo, float hi)
{
	np_rt_input *r = &in->v[in->n++];
	r->name = x->name;
	r->dtype = NP_FLOAT;
	r->rank = x->rank;
	int64_t n = 1;
	for (int d = 0; d < x->rank; d++)
		n *= r->dims[d] = x->dims[d].value;
	float *p = gk_random(k, n, lo, hi);
	r->data = p;
	return p;
}

/* Redraw channel c (axis 1) of input i in [lo, hi]. */
static void channel_range(gk *k, inputs *in, int i, int64_t c, float lo, float hi)
{
	np_rt_input *r = &in->v[i];
	int64_t inner = 1;
	for (int d = 2; d < r->rank; d++)
		inner *= r->dims[d];
	float *p = (float *)r->data;
	for (int64_t nn = 0; nn < r->dims[0]; nn++)
		for (int64_t j = 0; j < inner; j++)
			p[(nn * r->dims[1] + c) * inner + j] = gk_uniform(k, lo, hi);
}

static void inputs_free(inputs *in)
{
	for (int i = 0; i < in->n; i++)
		free((void *)in->v[i].data);
	in->n = 0;
}

/* Range of z per state for inputs that are summed (two halves). */
static void state_range(int st, float *lo, float *hi)
{
	*lo = st == ON ? 0.2f : st == OFF ? -2.0f : 6.5f;
	*hi = st == ON ? 2.5f : st == OFF ? -0.2f : 9.0f;
}

/* ------------------------------------------------------------ checks */

static np_pass_log LOG;

static np_pass_ctx new_ctx(const np_linearize_plan *plan)
{
	np_pass_log_free(&LOG);
	np_pass_ctx ctx = {.fold = NP_FOLD_EXACT, .log = &LOG, .linearize = plan};
	return ctx;
}

/* Every output of m on in, malloc'd; NULL on failure (reported). */
static float **run_all(const char *what, np_model *m, inputs *in, int64_t *n)
{
	np_error err = {0};
	int no = m->graph->n_outputs;
	float **y = calloc((size_t)no + 1, sizeof *y);
	for (int i = 0; i < no; i++) {
		y[i] = gk_run(m, in->v, in->n, i, &n[i], &err);
		if (!y[i]) {
			ok(0, "%s: runtime: %s", what, err.msg);
			for (int j = 0; j < i; j++)
				free(y[j]);
			free(y);
			return NULL;
		}
	}
	return y;
}

static void free_all(float **y, int n)
{
	for (int i = 0; y && i < n; i++)
		free(y[i]);
	free(y);
}

/* Run passes on k->m; compare every output before and after. */
static bool check_pass(const char *what, gk *k, const char *passes, np_pass_ctx *ctx,
                       inputs *in)
{
	np_error err = {0};
	int no = k->g->n_outputs;
	int64_t nb[8] = {0}, na[8] = {0};
	float **before = run_all(what, k->m, in, nb);
	if (!before)
		return false;
	np_status st = np_run_passes(k->m, passes, ctx, &err);
	bool good = ok(st == NP_OK, "%s: %s runs (%s)", what, passes, st == NP_OK ? "ok" : err.msg);
	if (good)
		good = ok(np_graph_verify(k->g, &err) == NP_OK, "%s: graph verifies %s", what,
		          err.msg);
	float **after = good ? run_all(what, k->m, in, na) : NULL;
	for (int i = 0; after && i < no; i++) {
		double worst = 0;
		bool same = nb[i] == na[i] && gk_close(after[i], before[i], nb[i], &worst);
		good &= ok(same, "%s: output %d matches (%lld elements, max diff %.3g)", what, i,
		           (long long)nb[i], worst);
	}
	good &= after != NULL;
	free_all(before, no);
	free_all(after, no);
	return good;
}

/* The planned states hold on z (the rectifier's input) for these inputs. */
static bool states_hold(const char *what, gk *k, const char *rect, const uint8_t *st,
                        int64_t C, float hi, inputs *in)
{
	np_error err = {0};
	np_node *r = gk_find_node(k->g, rect);
	np_rt *rt = r ? np_rt_new(k->m, 1, &err) : NULL;
	/* Watched, or Relu would write over it in place (rt.h, WATCH). */
	bool good = rt && np_rt_watch(rt, r->inputs[0]->name, &err) == NP_OK &&
	            np_rt_run(rt, in->v, in->n, NP_RT_INFER, &err) == NP_OK;
	const np_rtensor *z = good ? np_rt_value(rt, r->inputs[0]->name) : NULL;
	good = z && z->rank >= 2 && z->dims[1] == C;
	int64_t inner = 1;
	for (int d = 2; good && d < z->rank; d++)
		inner *= z->dims[d];
	for (int64_t i = 0; good && i < z->nelem; i++) {
		float v = ((const float *)z->data)[i];
		int s = st[(i / inner) % C];
		good = s == ON ? v > 0 && v < hi : s == OFF ? v < 0 : v > hi;
	}
	np_rt_free(rt);
	return ok(good, "%s: planned states hold on the rectifier input", what);
}

static bool log_has(np_log_kind kind, const char *node, const char *needle)
{
	for (int i = 0; i < LOG.n; i++)
		if (LOG.v[i].kind == kind && (!node || (LOG.v[i].node &&
		                                        strcmp(LOG.v[i].node, node) == 0)) &&
		    (!needle || (LOG.v[i].why && strstr(LOG.v[i].why, needle))))
			return true;
	return false;
}

/* One-layer plan. */
typedef struct plan1 {
	np_linearize_plan plan;
	np_linearize_layer layer;
} plan1;

static void make_plan(plan1 *p, const char *rect, np_rect_kind kind, int64_t C,
                      const uint8_t *states)
{
	memset(p, 0, sizeof *p);
	p->layer.rectifier = rect;
	p->layer.kind = kind;
	p->layer.neurons = C;
	p->layer.state = (uint8_t *)states;
	p->layer.approximate = kind == NP_RECT_GELU || kind == NP_RECT_SILU;
	p->plan.v = &p->layer;
	p->plan.n = 1;
}

/* Linearize rect in k; states must hold; outputs compared. */
static bool linearize_case(const char *what, gk *k, const char *rect, np_rect_kind kind,
                           int64_t C, const uint8_t *states, float hi, inputs *in)
{
	plan1 p;
	make_plan(&p, rect, kind, C, states);
	np_pass_ctx ctx = new_ctx(&p.plan);
	if (!states_hold(what, k, rect, states, C, hi, in))
		return false;
	bool good = check_pass(what, k, "linearize", &ctx, in);
	good &= ok(log_has(NP_LOG_LINEARIZED, rect, NULL), "%s: logged as linearized", what);
	good &= ok(!gk_find_node(k->g, rect), "%s: rectifier %s is gone", what, rect);
	return good;
}

/* Weight of a Conv/Gemm producer: rows (dim 0 = channel) signed by state. */
static void signed_rows(gk *k, np_value *w, const uint8_t *st, float on_lo, float on_hi,
                        float hi_lo, float hi_hi)
{
	float *p = w->init->data;
	int64_t C = w->init->dims[0], per = w->init->nelem / C;
	for (int64_t c = 0; c < C; c++)
		for (int64_t j = 0; j < per; j++)
			p[c * per + j] = st[c] == ON ? gk_uniform(k, on_lo, on_hi)
			               : st[c] == OFF ? -gk_uniform(k, on_lo, on_hi)
			               : gk_uniform(k, hi_lo, hi_hi);
}

/* Columns (dim 1) of a [K, N] weight signed by state. */
static void signed_cols(gk *k, np_value *w, const uint8_t *st, float lo, float hi,
                        float hi_lo, float hi_hi)
{
	float *p = w->init->data;
	int64_t K = w->init->dims[0], N = w->init->dims[1];
	for (int64_t r = 0; r < K; r++)
		for (int64_t c = 0; c < N; c++)
			p[r * N + c] = st[c] == ON ? gk_uniform(k, lo, hi)
			             : st[c] == OFF ? -gk_uniform(k, lo, hi)
			             : gk_uniform(k, hi_lo, hi_hi);
}

static np_value *clip6(gk *k, const char *name, np_value *z)
{
	np_value *lo = gk_scalar(k, NULL, 0.0f), *hi = gk_scalar(k, NULL, 6.0f);
	return gk_op(k, "Clip", name, GK_IN(z, lo, hi));
}

static np_node *conv(gk *k, const char *name, np_value *x, np_value *w, np_value *b,
                     int pad)
{
	np_node *n = b ? gk_node(k, "Conv", name, GK_IN(x, w, b))
	               : gk_node(k, "Conv", name, GK_IN(x, w));
	gk_set_ints(n, "pads", GK_SHAPE(pad, pad, pad, pad));
	return n;
}

/* -------------------------------------------------- producer folds */

static void t_conv_producer(np_rect_kind kind)
{
	const char *what = kind == NP_RECT_RELU ? "Relu into Conv producer"
	                 : kind == NP_RECT_LEAKY_RELU ? "LeakyRelu(0.1) into Conv producer"
	                 : "SiLU into Conv producer";
	static const uint8_t st[4] = {ON, OFF, ON, OFF};
	gk k;
	gk_init(&k, 13, 11 + kind);
	inputs in = {0};
	np_value *x = gk_input(&k, "x", GK_SHAPE(2, 3, 6, 6));
	add_input(&k, &in, x, 0.1f, 1.0f);
	np_value *w = gk_weight(&k, "w", GK_SHAPE(4, 3, 3, 3), 0, 1);
	np_value *b = gk_floats(&k, "b", GK_SHAPE(4), NULL);
	signed_rows(&k, w, st, 0.01f, 0.5f, 0, 0);
	float big = kind == NP_RECT_SILU ? 30.0f : 0.5f;
	for (int c = 0; c < 4; c++)
		((float *)b->init->data)[c] = st[c] == ON ? big : -big;
	np_value *z = gk_done(&k, conv(&k, "conv", x, w, b, 1));
	np_value *y;
	const char *rect = "act";
	if (kind == NP_RECT_LEAKY_RELU) {
		np_node *n = gk_node(&k, "LeakyRelu", "act", GK_IN(z));
		np_node_set_attr_float(n, "alpha", 0.1f);
		y = gk_done(&k, n);
	} else if (kind == NP_RECT_SILU) {
		np_value *s = gk_op(&k, "Sigmoid", "sig", GK_IN(z));
		y = gk_op(&k, "Mul", "act", GK_IN(z, s));
	} else {
		y = gk_op(&k, "Relu", "act", GK_IN(z));
	}
	gk_output(&k, y);
	if (linearize_case(what, &k, rect, kind, 4, st, INFINITY, &in)) {
		np_node *c = gk_find_node(k.g, "conv");
		ok(c && c->outputs[0] == y && k.g->n_nodes == 1,
		   "%s: the Conv alone produces the output '%s'", what, y->name);
		if (kind == NP_RECT_SILU)
			ok(log_has(NP_LOG_LINEARIZED, "act", "approximate") && !gk_count_op(k.g, "Sigmoid"),
			   "%s: pattern removed, logged as approximate", what);
	}
	inputs_free(&in);
	gk_free(&k);
}

/* Clip(0,6) with an OFF+ channel: the folded channel is the constant 6
 * (a bias created on a Conv that had none). */
static void t_clip_conv_producer(void)
{
	const char *what = "Clip(0,6) OFF+ into Conv producer";
	static const uint8_t st[3] = {ON, HI, OFF};
	gk k;
	gk_init(&k, 13, 21);
	inputs in = {0};
	np_value *x = gk_input(&k, "x", GK_SHAPE(2, 3, 5, 5));
	add_input(&k, &in, x, 0.1f, 1.0f);
	np_value *w = gk_weight(&k, "w", GK_SHAPE(3, 3, 3, 3), 0, 1);
	signed_rows(&k, w, st, 0.01f, 0.2f, 3.0f, 4.0f);
	np_value *z = gk_done(&k, conv(&k, "conv", x, w, NULL, 0));
	np_value *y = clip6(&k, "clip", z);
	gk_output(&k, y);
	if (linearize_case(what, &k, "clip", NP_RECT_CLIP, 3, st, 6.0f, &in)) {
		int64_t n;
		np_error err = {0};
		float *out = gk_run(k.m, in.v, in.n, 0, &n, &err);
		bool six = out != NULL;
		for (int64_t i = 0; six && i < n; i++) {
			int c = (int)((i / 9) % 3);
			six = c == 1 ? out[i] == 6.0f : c == 2 ? out[i] == 0.0f : true;
		}
		ok(six, "%s: OFF+ channel is exactly 6, OFF channel exactly 0", what);
		np_node *c = gk_find_node(k.g, "conv");
		ok(c && c->n_inputs == 3 && c->inputs[2], "%s: bias created", what);
		free(out);
	}
	inputs_free(&in);
	gk_free(&k);
}

static void t_gemm_producer(int transB)
{
	char what[64];
	snprintf(what, sizeof what, "%s into Gemm producer (transB %d)",
	         transB ? "Clip OFF+, no C," : "Relu", transB);
	static const uint8_t st_relu[5] = {ON, OFF, OFF, ON, ON};
	static const uint8_t st_clip[5] = {HI, OFF, ON, ON, HI};
	const uint8_t *st = transB ? st_clip : st_relu;
	gk k;
	gk_init(&k, 13, 31 + transB);
	inputs in = {0};
	np_value *x = gk_input(&k, "x", GK_SHAPE(3, 6));
	add_input(&k, &in, x, 0.1f, 1.0f);
	np_value *B = gk_weight(&k, "B", GK_SHAPE(6, 5), 0, 1);
	signed_cols(&k, B, st, 0.01f, 0.5f, 11.0f, 12.0f);
	np_node *g;
	if (transB) {
		/* store B^T */
		np_value *Bt = gk_floats(&k, "Bt", GK_SHAPE(5, 6), NULL);
		for (int r = 0; r < 6; r++)
			for (int c = 0; c < 5; c++)
				((float *)Bt->init->data)[c * 6 + r] = ((float *)B->init->data)[r * 5 + c];
		g = gk_node(&k, "Gemm", "gemm", GK_IN(x, Bt));
		np_node_set_attr_int(g, "transB", 1);
	} else {
		np_value *C = gk_weight(&k, "C", GK_SHAPE(5), 0.1f, 0.2f);
		for (int c = 0; c < 5; c++)
			if (st[c] == OFF)
				((float *)C->init->data)[c] *= -1;
		g = gk_node(&k, "Gemm", "gemm", GK_IN(x, B, C));
		np_node_set_attr_float(g, "alpha", 0.9f);
		np_node_set_attr_float(g, "beta", 1.5f);
	}
	np_value *z = gk_done(&k, g);
	np_value *y = transB ? clip6(&k, "act", z) : gk_op(&k, "Relu", "act", GK_IN(z));
	gk_output(&k, y);
	if (linearize_case(what, &k, "act", transB ? NP_RECT_CLIP : NP_RECT_RELU, 5, st, 6.0f,
	                   &in))
		ok(k.g->n_nodes == 1 && gk_find_node(k.g, "gemm")->outputs[0] == y,
		   "%s: the Gemm alone produces the output", what);
	inputs_free(&in);
	gk_free(&k);
}

static void t_matmul_producer(bool clip)
{
	const char *what = clip ? "Clip OFF+ into MatMul producer (+Add)"
	                        : "Relu into MatMul producer";
	static const uint8_t st_relu[4] = {OFF, ON, OFF, ON};
	static const uint8_t st_clip[4] = {HI, ON, OFF, ON};
	const uint8_t *st = clip ? st_clip : st_relu;
	gk k;
	gk_init(&k, 13, 41 + clip);
	inputs in = {0};
	np_value *x = gk_input(&k, "x", GK_SHAPE(3, 5));
	add_input(&k, &in, x, 0.1f, 1.0f);
	np_value *W = gk_weight(&k, "W", GK_SHAPE(5, 4), 0, 1);
	signed_cols(&k, W, st, 0.01f, 0.5f, 13.0f, 14.0f);
	np_value *z = gk_op(&k, "MatMul", "mm", GK_IN(x, W));
	np_value *y = clip ? clip6(&k, "act", z) : gk_op(&k, "Relu", "act", GK_IN(z));
	gk_output(&k, y);
	if (linearize_case(what, &k, "act", clip ? NP_RECT_CLIP : NP_RECT_RELU, 4, st, 6.0f, &in))
		ok(clip ? (gk_count_op(k.g, "Add") == 1 && k.g->n_nodes == 2)
		        : (k.g->n_nodes == 1 && gk_find_node(k.g, "mm")->outputs[0] == y),
		   "%s: %s", what, clip ? "MatMul + Add" : "the MatMul alone");
	inputs_free(&in);
	gk_free(&k);
}

static void t_bn_producer(void)
{
	const char *what = "Relu into BatchNormalization producer";
	static const uint8_t st[3] = {OFF, ON, OFF};
	gk k;
	gk_init(&k, 13, 51);
	inputs in = {0};
	np_value *x = gk_input(&k, "x", GK_SHAPE(2, 3, 4, 4));
	add_input(&k, &in, x, -1.0f, 1.0f);
	np_value *w = gk_weight(&k, "w", GK_SHAPE(3, 3, 3, 3), -0.2f, 0.2f);
	np_value *h = gk_done(&k, conv(&k, "conv", x, w, NULL, 1));
	np_value *scale = gk_weight(&k, "scale", GK_SHAPE(3), 0.01f, 0.02f);
	np_value *bias = gk_floats(&k, "bias", GK_SHAPE(3), (float[]){-1, 1, -1});
	np_value *mean = gk_weight(&k, "mean", GK_SHAPE(3), -0.1f, 0.1f);
	np_value *var = gk_weight(&k, "var", GK_SHAPE(3), 0.5f, 1.0f);
	np_value *z = gk_op(&k, "BatchNormalization", "bn", GK_IN(h, scale, bias, mean, var));
	gk_output(&k, gk_op(&k, "Relu", "relu", GK_IN(z)));
	if (linearize_case(what, &k, "relu", NP_RECT_RELU, 3, st, INFINITY, &in))
		ok(gk_count_op(k.g, "BatchNormalization") == 1 && k.g->n_nodes == 2,
		   "%s: Conv + BN remain", what);
	inputs_free(&in);
	gk_free(&k);
}

/* -------------------------------------------------- consumer folds */

/* z = Add(a, b): a residual join, no producer to fold into; a and b are
 * drawn so that each channel of z is in its state's range. */
static np_value *join(gk *k, inputs *in, const uint8_t *st, int64_t C, int64_t H)
{
	np_value *a = gk_input(k, "ja", GK_SHAPE(2, C, H, H));
	np_value *b = gk_input(k, "jb", GK_SHAPE(2, C, H, H));
	add_input(k, in, a, 0, 1);
	add_input(k, in, b, 0, 1);
	for (int64_t c = 0; c < C; c++) {
		float lo, hi;
		state_range(st[c], &lo, &hi);
		channel_range(k, in, 0, c, lo / 2, hi / 2);
		channel_range(k, in, 1, c, lo / 2, hi / 2);
	}
	return gk_op(k, "Add", "join", GK_IN(a, b));
}

static void t_conv_consumer_scale(void)
{
	const char *what = "Relu into grouped Conv consumer (s only)";
	static const uint8_t st[4] = {ON, OFF, OFF, ON};
	gk k;
	gk_init(&k, 13, 61);
	inputs in = {0};
	np_value *z = join(&k, &in, st, 4, 5);
	np_value *r = gk_op(&k, "Relu", "relu", GK_IN(z));
	np_value *w = gk_weight(&k, "w", GK_SHAPE(6, 2, 3, 3), -1, 1);
	np_value *b = gk_weight(&k, "b", GK_SHAPE(6), -1, 1);
	np_node *c = conv(&k, "conv", r, w, b, 1);
	np_node_set_attr_int(c, "group", 2);
	gk_output(&k, gk_done(&k, c));
	if (linearize_case(what, &k, "relu", NP_RECT_RELU, 4, st, INFINITY, &in))
		ok(k.g->n_nodes == 2 && gk_find_node(k.g, "conv")->inputs[0] == z,
		   "%s: the Conv reads the join directly", what);
	inputs_free(&in);
	gk_free(&k);
}

static void t_conv_consumer_shift(void)
{
	const char *what = "Clip OFF+ into unpadded Conv consumer (s and t)";
	static const uint8_t st[3] = {HI, ON, OFF};
	gk k;
	gk_init(&k, 13, 71);
	inputs in = {0};
	np_value *z = join(&k, &in, st, 3, 5);
	np_value *r = clip6(&k, "clip", z);
	np_value *w = gk_weight(&k, "w", GK_SHAPE(2, 3, 3, 3), -1, 1);
	gk_output(&k, gk_done(&k, conv(&k, "conv", r, w, NULL, 0)));
	if (linearize_case(what, &k, "clip", NP_RECT_CLIP, 3, st, 6.0f, &in))
		ok(k.g->n_nodes == 2 && gk_find_node(k.g, "conv")->n_inputs == 3,
		   "%s: Conv got a bias, nothing else added", what);
	inputs_free(&in);
	gk_free(&k);
}

static void t_gemm_consumer_flatten(int transB)
{
	char what[80];
	snprintf(what, sizeof what, "%s into Gemm consumer through Flatten (transB %d)",
	         transB ? "Clip OFF+" : "Relu", transB);
	static const uint8_t st_relu[3] = {OFF, ON, ON};
	static const uint8_t st_clip[3] = {ON, HI, OFF};
	const uint8_t *st = transB ? st_clip : st_relu;
	gk k;
	gk_init(&k, 13, 81 + transB);
	inputs in = {0};
	np_value *z = join(&k, &in, st, 3, 2);
	np_value *r = transB ? clip6(&k, "act", z) : gk_op(&k, "Relu", "act", GK_IN(z));
	np_value *f = gk_op(&k, "Flatten", "flat", GK_IN(r));
	np_value *B = transB ? gk_weight(&k, "B", GK_SHAPE(5, 12), -1, 1)
	                     : gk_weight(&k, "B", GK_SHAPE(12, 5), -1, 1);
	np_value *C = transB ? gk_weight(&k, "C", GK_SHAPE(1, 5), -1, 1)
	                     : gk_weight(&k, "C", GK_SHAPE(5), -1, 1);
	np_node *g = gk_node(&k, "Gemm", "fc", GK_IN(f, B, C));
	np_node_set_attr_int(g, "transB", transB);
	np_node_set_attr_float(g, "alpha", 0.7f);
	gk_output(&k, gk_done(&k, g));
	if (linearize_case(what, &k, "act", transB ? NP_RECT_CLIP : NP_RECT_RELU, 3, st, 6.0f,
	                   &in))
		ok(k.g->n_nodes == 3 && !gk_count_op(k.g, "Mul"), "%s: Add, Flatten, Gemm remain",
		   what);
	inputs_free(&in);
	gk_free(&k);
}

/* ---------------------------------------------------- explicit node */

static void t_explicit_join(void)
{
	const char *what = "Relu at a residual join stays explicit (Mul)";
	static const uint8_t st[3] = {ON, OFF, ON};
	gk k;
	gk_init(&k, 13, 91);
	inputs in = {0};
	np_value *z = join(&k, &in, st, 3, 4);
	np_value *r = gk_op(&k, "Relu", "relu", GK_IN(z));
	gk_output(&k, gk_op(&k, "Add", "res", GK_IN(r, k.g->inputs[0])));
	if (linearize_case(what, &k, "relu", NP_RECT_RELU, 3, st, INFINITY, &in)) {
		np_node *m = gk_find_node(k.g, "relu/linear");
		ok(m && np_node_kind(m) == NP_OPK_Mul && m->inputs[1]->init->rank == 3 &&
		   m->inputs[1]->init->dims[0] == 3,
		   "%s: Mul 'relu/linear' with a [3,1,1] constant", what);
		ok(log_has(NP_LOG_LINEARIZED, "relu", "not folded"), "%s: logged 'not folded'", what);
	}
	inputs_free(&in);
	gk_free(&k);
}

static void t_prelu_explicit(void)
{
	const char *what = "PRelu per-channel OFF slopes (explicit, graph output)";
	static const uint8_t st[4] = {OFF, ON, OFF, OFF};
	gk k;
	gk_init(&k, 13, 101);
	inputs in = {0};
	np_value *z = join(&k, &in, st, 4, 3);
	np_value *slope = gk_floats(&k, "slope", GK_SHAPE(4, 1, 1),
	                            (float[]){0.25f, -0.5f, 0.125f, 2.0f});
	np_value *y = gk_op(&k, "PRelu", "prelu", GK_IN(z, slope));
	gk_output(&k, y);
	if (linearize_case(what, &k, "prelu", NP_RECT_PRELU, 4, st, INFINITY, &in)) {
		np_node *m = gk_find_node(k.g, "prelu/linear");
		const float *s = m ? m->inputs[1]->init->data : NULL;
		ok(s && s[0] == 0.25f && s[1] == 1.0f && s[2] == 0.125f && s[3] == 2.0f &&
		   m->outputs[0] == y, "%s: scale = {slope, 1, slope, slope}, output kept", what);
	}
	inputs_free(&in);
	gk_free(&k);
}

static void t_leaky_explicit_flat(void)
{
	const char *what = "LeakyRelu OFF slope on [N, C] (explicit, [C] constant)";
	static const uint8_t st[3] = {OFF, ON, OFF};
	gk k;
	gk_init(&k, 13, 111);
	inputs in = {0};
	np_value *a = gk_input(&k, "a", GK_SHAPE(4, 3));
	add_input(&k, &in, a, 0, 1);
	for (int c = 0; c < 3; c++) {
		float lo, hi;
		state_range(st[c], &lo, &hi);
		channel_range(&k, &in, 0, c, lo, hi);
	}
	np_node *n = gk_node(&k, "LeakyRelu", "lrelu", GK_IN(a));
	np_node_set_attr_float(n, "alpha", 0.2f);
	gk_output(&k, gk_done(&k, n));
	if (linearize_case(what, &k, "lrelu", NP_RECT_LEAKY_RELU, 3, st, INFINITY, &in)) {
		np_node *m = gk_find_node(k.g, "lrelu/linear");
		const float *s = m ? m->inputs[1]->init->data : NULL;
		ok(s && m->inputs[1]->init->rank == 1 && s[0] == 0.2f && s[1] == 1.0f &&
		   s[2] == 0.2f, "%s: scale [C] = {0.2, 1, 0.2}", what);
	}
	inputs_free(&in);
	gk_free(&k);
}

/* ------------------------------------------------------ all identity */

static void t_identity(bool graph_output)
{
	const char *what = graph_output ? "all-ON Relu before a graph output disappears"
	                                : "all-ON Relu inside the graph disappears";
	static const uint8_t st[3] = {ON, ON, ON};
	gk k;
	gk_init(&k, 13, 121 + graph_output);
	inputs in = {0};
	np_value *x = gk_input(&k, "x", GK_SHAPE(2, 2, 4, 4));
	add_input(&k, &in, x, 0.1f, 1.0f);
	np_value *w = gk_weight(&k, "w", GK_SHAPE(3, 2, 3, 3), 0.01f, 1);
	np_value *z = gk_done(&k, conv(&k, "conv", x, w, NULL, 1));
	np_value *r = gk_op(&k, "Relu", "relu", GK_IN(z));
	if (graph_output) {
		gk_output(&k, r);
	} else {
		np_value *w2 = gk_weight(&k, "w2", GK_SHAPE(2, 3, 1, 1), -1, 1);
		gk_output(&k, gk_done(&k, conv(&k, "conv2", r, w2, NULL, 0)));
	}
	if (linearize_case(what, &k, "relu", NP_RECT_RELU, 3, st, INFINITY, &in))
		ok(graph_output ? (k.g->n_nodes == 1 && gk_find_node(k.g, "conv")->outputs[0] == r)
		                : (k.g->n_nodes == 2 && gk_find_node(k.g, "conv2")->inputs[0] == z),
		   "%s: %s", what, graph_output ? "the Conv produces the output 'relu'"
		                                : "conv2 reads the Conv directly");
	inputs_free(&in);
	gk_free(&k);
}

/* --------------------------------------------------------- refusals */

static void t_refuse_shared_producer(void)
{
	const char *what = "Conv producer with a second reader: explicit Mul";
	static const uint8_t st[2] = {OFF, ON};
	gk k;
	gk_init(&k, 13, 131);
	inputs in = {0};
	np_value *x = gk_input(&k, "x", GK_SHAPE(2, 3, 4, 4));
	add_input(&k, &in, x, 0.1f, 1.0f);
	np_value *w = gk_weight(&k, "w", GK_SHAPE(2, 3, 3, 3), 0, 1);
	signed_rows(&k, w, st, 0.01f, 0.5f, 0, 0);
	float w0 = ((float *)w->init->data)[0];
	np_value *z = gk_done(&k, conv(&k, "conv", x, w, NULL, 1));
	np_value *r = gk_op(&k, "Relu", "relu", GK_IN(z));
	gk_output(&k, gk_op(&k, "Add", "sum", GK_IN(r, z)));
	if (linearize_case(what, &k, "relu", NP_RECT_RELU, 2, st, INFINITY, &in)) {
		np_node *c = gk_find_node(k.g, "conv");
		ok(gk_find_node(k.g, "relu/linear") && c && c->inputs[1] == w &&
		   ((float *)w->init->data)[0] == w0, "%s: Conv weight untouched, Mul present", what);
	}
	inputs_free(&in);
	gk_free(&k);
}

static void t_refuse_padded_consumer(void)
{
	const char *what = "shift t into a padded Conv consumer: refused, Mul+Add";
	static const uint8_t st[3] = {ON, HI, OFF};
	gk k;
	gk_init(&k, 13, 141);
	inputs in = {0};
	np_value *z = join(&k, &in, st, 3, 4);
	np_value *r = clip6(&k, "clip", z);
	np_value *w = gk_weight(&k, "w", GK_SHAPE(2, 3, 3, 3), -1, 1);
	float w0 = ((float *)w->init->data)[0];
	gk_output(&k, gk_done(&k, conv(&k, "conv", r, w, NULL, 1)));
	if (linearize_case(what, &k, "clip", NP_RECT_CLIP, 3, st, 6.0f, &in)) {
		np_node *c = gk_find_node(k.g, "conv");
		ok(gk_find_node(k.g, "clip/linear") && gk_find_node(k.g, "clip/shift") &&
		   c->inputs[1] == w && ((float *)w->init->data)[0] == w0 && c->n_inputs == 2,
		   "%s: Conv untouched", what);
	}
	inputs_free(&in);
	gk_free(&k);
}

/* Two layers in one plan, the second reading the first. */
static void t_two_layers(void)
{
	const char *what = "two layers in one plan (Conv-Relu-Conv-Relu)";
	static const uint8_t s1[3] = {ON, OFF, ON}, s2[2] = {ON, ON};
	gk k;
	gk_init(&k, 13, 151);
	inputs in = {0};
	np_value *x = gk_input(&k, "x", GK_SHAPE(1, 2, 4, 4));
	add_input(&k, &in, x, 0.1f, 1.0f);
	np_value *w1 = gk_weight(&k, "w1", GK_SHAPE(3, 2, 3, 3), 0, 1);
	signed_rows(&k, w1, s1, 0.01f, 0.5f, 0, 0);
	np_value *r1 = gk_op(&k, "Relu", "r1", GK_IN(gk_done(&k, conv(&k, "c1", x, w1, NULL, 1))));
	np_value *w2 = gk_weight(&k, "w2", GK_SHAPE(2, 3, 1, 1), 0.01f, 1);
	np_value *r2 = gk_op(&k, "Relu", "r2", GK_IN(gk_done(&k, conv(&k, "c2", r1, w2, NULL, 0))));
	gk_output(&k, r2);
	np_linearize_layer L[2] = {{"r1", NP_RECT_RELU, 3, (uint8_t *)s1, false},
	                           {"r2", NP_RECT_RELU, 2, (uint8_t *)s2, false}};
	np_linearize_plan plan = {L, 2};
	np_pass_ctx ctx = new_ctx(&plan);
	states_hold(what, &k, "r1", s1, 3, INFINITY, &in);
	if (check_pass(what, &k, "linearize", &ctx, &in))
		ok(k.g->n_nodes == 2 && !gk_count_op(k.g, "Relu"), "%s: two Convs remain", what);
	inputs_free(&in);
	gk_free(&k);
}

/* --fold none: the map stays explicit even where it could fold. */
static void t_fold_none(void)
{
	const char *what = "fold none keeps an explicit Mul";
	static const uint8_t st[2] = {OFF, ON};
	gk k;
	gk_init(&k, 13, 201);
	inputs in = {0};
	np_value *x = gk_input(&k, "x", GK_SHAPE(2, 3, 4, 4));
	add_input(&k, &in, x, 0.1f, 1.0f);
	np_value *w = gk_weight(&k, "w", GK_SHAPE(2, 3, 3, 3), 0, 1);
	signed_rows(&k, w, st, 0.01f, 0.5f, 0, 0);
	np_value *z = gk_done(&k, conv(&k, "conv", x, w, NULL, 1));
	gk_output(&k, gk_op(&k, "Relu", "relu", GK_IN(z)));
	plan1 p;
	make_plan(&p, "relu", NP_RECT_RELU, 2, st);
	np_pass_ctx ctx = new_ctx(&p.plan);
	ctx.fold = NP_FOLD_NONE;
	if (states_hold(what, &k, "relu", st, 2, INFINITY, &in) &&
	    check_pass(what, &k, "linearize", &ctx, &in))
		ok(gk_find_node(k.g, "relu/linear") && k.g->n_nodes == 2, "%s: Conv + Mul", what);
	inputs_free(&in);
	gk_free(&k);
}

/* A PRelu whose slope is not per channel along axis 1: kept, logged. */
static void t_refuse_prelu_slope(void)
{
	const char *what = "PRelu slope along the last axis: rectifier kept";
	static const uint8_t st[2] = {OFF, ON};
	gk k;
	gk_init(&k, 13, 211);
	inputs in = {0};
	np_value *a = gk_input(&k, "a", GK_SHAPE(1, 2, 3, 3));
	add_input(&k, &in, a, -1, 1);
	np_value *slope = gk_floats(&k, "slope", GK_SHAPE(3), (float[]){0.1f, 0.2f, 0.3f});
	gk_output(&k, gk_op(&k, "PRelu", "prelu", GK_IN(a, slope)));
	plan1 p;
	make_plan(&p, "prelu", NP_RECT_PRELU, 2, st);
	np_pass_ctx ctx = new_ctx(&p.plan);
	if (check_pass(what, &k, "linearize", &ctx, &in))
		ok(gk_find_node(k.g, "prelu") && log_has(NP_LOG_REFUSED, "prelu", "axis 1"),
		   "%s: refusal logged", what);
	inputs_free(&in);
	gk_free(&k);
}

/* ------------------------------------------------------ fold_residual */

static void t_residual(int ksize, bool dilated)
{
	char what[64];
	snprintf(what, sizeof what, "residual %dx%d%s", ksize, ksize,
	         dilated ? " dilated (refused)" : "");
	gk k;
	gk_init(&k, 13, 161 + ksize + dilated);
	inputs in = {0};
	np_value *x = gk_input(&k, "x", GK_SHAPE(2, 4, 5, 5));
	add_input(&k, &in, x, -1, 1);
	np_value *w = gk_weight(&k, "w", GK_SHAPE(4, 4, ksize, ksize), -1, 1);
	np_value *b = gk_weight(&k, "b", GK_SHAPE(4), -1, 1);
	int pad = (ksize - 1) / 2 * (dilated ? 2 : 1);
	np_node *c = conv(&k, "conv", x, w, b, pad);
	if (dilated)
		gk_set_ints(c, "dilations", GK_SHAPE(2, 2));
	np_value *v = gk_done(&k, c);
	np_value *y = ksize == 1 ? gk_op(&k, "Add", "add", GK_IN(v, x))
	                         : gk_op(&k, "Add", "add", GK_IN(x, v));
	gk_output(&k, y);
	np_pass_ctx ctx = new_ctx(NULL);
	if (check_pass(what, &k, "fold_residual", &ctx, &in)) {
		if (dilated)
			ok(gk_count_op(k.g, "Add") == 1 && log_has(NP_LOG_REFUSED, "add", "dilation"),
			   "%s: Add kept, refusal logged", what);
		else
			ok(k.g->n_nodes == 1 && gk_find_node(k.g, "conv")->outputs[0] == y &&
			   log_has(NP_LOG_FOLDED, "add", NULL),
			   "%s: one Conv producing '%s', fold logged", what, y->name);
	}
	inputs_free(&in);
	gk_free(&k);
}

/* -------------------------------------------------------------- untie */

static void t_untie(void)
{
	const char *what = "untie Identity(initializer)";
	gk k;
	gk_init(&k, 13, 171);
	inputs in = {0};
	np_value *x1 = gk_input(&k, "x1", GK_SHAPE(3, 4));
	np_value *x2 = gk_input(&k, "x2", GK_SHAPE(3, 4));
	add_input(&k, &in, x1, -1, 1);
	add_input(&k, &in, x2, -1, 1);
	np_value *W = gk_weight(&k, "W", GK_SHAPE(4, 2), -1, 1);
	np_value *W2 = gk_op(&k, "Identity", "tie", GK_IN(W));
	np_value *y1 = gk_op(&k, "MatMul", "m1", GK_IN(x1, W));
	np_value *y2 = gk_op(&k, "MatMul", "m2", GK_IN(x2, W2));
	gk_output(&k, gk_op(&k, "Add", "sum", GK_IN(y1, y2)));
	np_pass_ctx ctx = new_ctx(NULL);
	if (!check_pass(what, &k, "untie", &ctx, &in)) {
		inputs_free(&in);
		gk_free(&k);
		return;
	}
	ok(k.g->n_initializers == 2 && !gk_count_op(k.g, "Identity") && W2->init &&
	   k.g->initializers[1] == W2 && gk_find_node(k.g, "m2")->inputs[1] == W2,
	   "%s: two initializers, no Identity, m2 reads its own copy", what);
	/* One SGD step: the copies get different gradients and part ways. */
	np_error err = {0};
	np_rt *rt = np_rt_new(k.m, 1, &err);
	bool good = rt && np_rt_run(rt, in.v, in.n, NP_RT_TRAIN, &err) == NP_OK;
	if (good) {
		const np_rtensor *y = np_rt_output(rt, 0);
		float *g = np_rt_output_grad(rt, 0);
		for (int64_t i = 0; i < y->nelem; i++)
			g[i] = 1.0f;
		good = np_rt_backward(rt, &err) == NP_OK;
	}
	np_param *p1 = good ? np_rt_param_by_name(rt, "W") : NULL;
	np_param *p2 = good ? np_rt_param_by_name(rt, W2->name) : NULL;
	if (p1 && p2 && p1->trainable && p2->trainable) {
		np_sgd sgd = {.lr = 0.1f};
		good = np_rt_sgd_step(rt, &sgd, &err) == NP_OK &&
		       memcmp(p1->data, p2->data, sizeof(float) * 8) != 0;
	} else {
		good = false;
	}
	ok(good, "%s: the copies train independently %s", what, err.msg);
	np_rt_free(rt);
	inputs_free(&in);
	gk_free(&k);
}

/* ----------------------------------------------------------- eliminate */

static void t_eliminate(void)
{
	const char *what = "eliminate Identity, Dropout, Mul by 1, Add of 0";
	gk k;
	gk_init(&k, 13, 181);
	inputs in = {0};
	np_value *x = gk_input(&k, "x", GK_SHAPE(2, 3));
	add_input(&k, &in, x, -1, 1);
	np_value *a = gk_op(&k, "Identity", "id1", GK_IN(x));
	np_value *d = gk_op(&k, "Dropout", "drop", GK_IN(a));
	np_value *m = gk_op(&k, "Mul", "one", GK_IN(gk_scalar(&k, "uno", 1.0f), d));
	np_value *z = gk_op(&k, "Add", "zero", GK_IN(m, gk_scalar(&k, "nil", 0.0f)));
	np_value *r = gk_op(&k, "Relu", "relu", GK_IN(z));
	np_value *out = gk_op(&k, "Identity", "id2", GK_IN(r));
	gk_output(&k, out);
	gk_output(&k, gk_op(&k, "Identity", "pass", GK_IN(x)));   /* must stay */
	np_value *h = gk_op(&k, "Mul", "half", GK_IN(r, gk_scalar(&k, "h", 0.5f)));
	gk_output(&k, h);                                          /* must stay */
	np_pass_ctx ctx = new_ctx(NULL);
	if (check_pass(what, &k, "eliminate", &ctx, &in))
		ok(k.g->n_nodes == 3 && gk_find_node(k.g, "pass") &&
		   gk_find_node(k.g, "relu")->outputs[0] == out &&
		   gk_find_node(k.g, "relu")->inputs[0] == x && gk_find_node(k.g, "half"),
		   "%s: Relu reads x and produces '%s'; input->output Identity kept", what,
		   out->name);
	inputs_free(&in);
	gk_free(&k);
}

/* ----------------------------------------------------------------- dce */

static void t_dce(void)
{
	const char *what = "dce";
	gk k;
	gk_init(&k, 13, 191);
	inputs in = {0};
	np_value *x = gk_input(&k, "x", GK_SHAPE(2, 3));
	add_input(&k, &in, x, -1, 1);
	np_value *s = gk_op(&k, "Sigmoid", "dead1", GK_IN(x));
	gk_op(&k, "Mul", "dead2", GK_IN(s, gk_weight(&k, "wd", GK_SHAPE(3), -1, 1)));
	gk_weight(&k, "unused", GK_SHAPE(4), -1, 1);
	gk_output(&k, gk_op(&k, "Relu", "relu", GK_IN(x)));
	np_pass_ctx ctx = new_ctx(NULL);
	if (check_pass(what, &k, "dce", &ctx, &in))
		ok(k.g->n_nodes == 1 && k.g->n_initializers == 0 &&
		   log_has(NP_LOG_REMOVED, "dead1", NULL) && log_has(NP_LOG_REMOVED, "dead2", NULL) &&
		   log_has(NP_LOG_REMOVED, "unused", NULL) && log_has(NP_LOG_REMOVED, "wd", NULL),
		   "%s: dead nodes and initializers removed and logged", what);
	inputs_free(&in);
	gk_free(&k);
}

int main(void)
{
	t_conv_producer(NP_RECT_RELU);
	t_conv_producer(NP_RECT_LEAKY_RELU);
	t_conv_producer(NP_RECT_SILU);
	t_clip_conv_producer();
	t_gemm_producer(0);
	t_gemm_producer(1);
	t_matmul_producer(false);
	t_matmul_producer(true);
	t_bn_producer();
	t_conv_consumer_scale();
	t_conv_consumer_shift();
	t_gemm_consumer_flatten(0);
	t_gemm_consumer_flatten(1);
	t_explicit_join();
	t_prelu_explicit();
	t_leaky_explicit_flat();
	t_identity(true);
	t_identity(false);
	t_refuse_shared_producer();
	t_refuse_padded_consumer();
	t_two_layers();
	t_fold_none();
	t_refuse_prelu_slope();
	t_residual(3, false);
	t_residual(1, false);
	t_residual(3, true);
	t_untie();
	t_eliminate();
	t_dce();
	np_pass_log_free(&LOG);
	return done_testing();
}
