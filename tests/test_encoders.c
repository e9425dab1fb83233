/* test_encoders.c - NEPENTHE on transformer encoders (DESIGN.md section
 * 13) on tiny hand-built graphs:
 *
 *   x [B, T, K] -> MatMul W1 [K, H] -> Add b1 -> GELU -> MatMul W2 [H, K]
 *               -> Add b2 -> Add(x, .)                      (an MLP block)
 *
 * the way PyTorch exports nn.Linear on [B, T, C] and the erf GELU.
 *  - layers: the GELU's neurons are z's last axis (H of them), its
 *    producer fc1, its only prunable weight W1 (not fc2's W2); a Gemm
 *    layer keeps axis 1;
 *  - profile: states per hidden feature over every batch x token
 *    position, against a count done here in double from the same
 *    weights (inputs drawn so no |z| is below 1e-3), for several batch
 *    sizes and thread counts;
 *  - linearize, all OFF (b1 = -8: GELU(z) < 1e-14): the MLP branch is its
 *    output bias b2, added by the residual: one Add left, and the output
 *    equals x + b2 computed here;
 *  - linearize + fold_gemm, all ON (b1 = +8: GELU(z) = z to 1e-14): the
 *    GELU goes and fc1, fc2 fold into one MatMul plus the bias Add; the
 *    output equals x + ((x W1 + b1) W2 + b2) computed here in double;
 *  - linearize, mixed states with Relu (exact): folded into the producer
 *    MatMul + bias Add (W1's columns and b1 scaled), output unchanged;
 *  - fold_gemm alone on MatMul + Add -> MatMul + Add: exact.
 * Tolerance: |a-b| <= 1e-5 max|b| + 1e-6 (graphkit's gk_close). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "graphkit.h"
#include "layers.h"
#include "nepenthe.h"
#include "ops.h"
#include "pass.h"
#include "tap.h"

enum { B = 2, T = 3, K = 4, H = 6 };

/* PyTorch's erf GELU: (x * (1 + Erf(x / sqrt 2))) * 0.5; the root Mul is
 * named name. */
static np_value *gelu_erf(gk *k, const char *name, np_value *x)
{
	char buf[64];
	snprintf(buf, sizeof buf, "%s/div", name);
	np_value *d = gk_op(k, "Div", np_arena_printf(k->m->arena, "%s", buf),
	                    GK_IN(x, gk_scalar(k, NULL, 1.4142135f)));
	np_value *e = gk_op(k, "Erf", np_arena_printf(k->m->arena, "%s/erf", name), GK_IN(d));
	np_value *a = gk_op(k, "Add", np_arena_printf(k->m->arena, "%s/add", name),
	                    GK_IN(e, gk_scalar(k, NULL, 1.0f)));
	np_value *m = gk_op(k, "Mul", np_arena_printf(k->m->arena, "%s/mul", name), GK_IN(x, a));
	return gk_op(k, "Mul", name, GK_IN(m, gk_scalar(k, NULL, 0.5f)));
}

typedef struct block {
	np_value *x, *W1, *b1, *W2, *b2, *z, *y;
} block;

/* The MLP block above; act: "gelu" or "Relu"; b1 filled with bias1. */
static void build_block(gk *k, block *b, const char *act, float bias1)
{
	b->x = gk_input(k, "x", GK_SHAPE(B, T, K));
	b->W1 = gk_weight(k, "W1", GK_SHAPE(K, H), -0.3f, 0.3f);
	b->b1 = gk_weight(k, "b1", GK_SHAPE(H), bias1, bias1);
	b->W2 = gk_weight(k, "W2", GK_SHAPE(H, K), -0.5f, 0.5f);
	b->b2 = gk_weight(k, "b2", GK_SHAPE(K), -1.0f, 1.0f);
	np_value *h = gk_op(k, "MatMul", "fc1", GK_IN(b->x, b->W1));
	b->z = gk_op(k, "Add", "fc1/bias", GK_IN(h, b->b1));
	np_value *g = strcmp(act, "gelu") == 0 ? gelu_erf(k, "act", b->z)
	                                       : gk_op(k, act, "act", GK_IN(b->z));
	np_value *o = gk_op(k, "MatMul", "fc2", GK_IN(g, b->W2));
	np_value *r = gk_op(k, "Add", "fc2/bias", GK_IN(o, b->b2));
	b->y = gk_op(k, "Add", "residual", GK_IN(b->x, r));
	gk_output(k, b->y);
}

static float *random_x(gk *k, np_rt_input *in, const block *b, float lo, float hi)
{
	float *x = gk_random(k, B * T * K, lo, hi);
	*in = (np_rt_input){b->x->name, NP_FLOAT, 3, {B, T, K}, x};
	return x;
}

/* z = x W1 + b1 and y = x + (act(z) W2 + b2) in double; act: 0 zero,
 * 1 identity, 2 relu. */
static void reference(const block *b, const float *x, int act, double *z, double *y)
{
	const float *W1 = b->W1->init->data, *b1 = b->b1->init->data;
	const float *W2 = b->W2->init->data, *b2 = b->b2->init->data;
	for (int r = 0; r < B * T; r++) {
		double a[H];
		for (int h = 0; h < H; h++) {
			double s = b1[h];
			for (int c = 0; c < K; c++)
				s += (double)x[r * K + c] * W1[c * H + h];
			if (z)
				z[r * H + h] = s;
			a[h] = act == 0 ? 0.0 : act == 1 ? s : s > 0 ? s : 0.0;
		}
		for (int c = 0; y && c < K; c++) {
			double s = b2[c];
			for (int h = 0; h < H; h++)
				s += a[h] * W2[h * K + c];
			y[r * K + c] = x[r * K + c] + s;
		}
	}
}

static bool close_to(const char *what, const float *got, const double *want, int64_t n)
{
	float *w = malloc(sizeof(float) * (size_t)n);
	for (int64_t i = 0; i < n; i++)
		w[i] = (float)want[i];
	double worst = 0;
	bool good = gk_close(got, w, n, &worst);
	free(w);
	return ok(good, "%s (max diff %.3g)", what, worst);
}

/* The rewritten model of k on in: ok if it runs (the test named runs),
 * then its output against want (close_to, named same). */
static void runs_close_to(gk *k, const np_rt_input *in, const char *runs,
                          const char *same, const double *want)
{
	np_error err = {0};
	int64_t n = 0;
	float *y = gk_run(k->m, in, 1, 0, &n, &err);
	if (ok(y && n == B * T * K, "%s", runs))
		close_to(same, y, want, n);
	free(y);
}

static np_pass_log LOG;

static bool log_has(np_log_kind kind, const char *needle)
{
	for (int i = 0; i < LOG.n; i++)
		if (LOG.v[i].kind == kind && LOG.v[i].why && strstr(LOG.v[i].why, needle))
			return true;
	return false;
}

/* Run passes with a one-layer plan (states of H neurons; NULL: none). */
static bool run_passes(gk *k, const char *passes, np_rect_kind kind, const uint8_t *st)
{
	np_linearize_layer layer = {.rectifier = "act", .kind = kind, .neurons = H,
	                            .state = (uint8_t *)st,
	                            .approximate = kind == NP_RECT_GELU};
	np_linearize_plan plan = {&layer, 1};
	np_pass_log_free(&LOG);
	np_pass_ctx ctx = {.fold = NP_FOLD_APPROX, .log = &LOG,
	                   .linearize = st ? &plan : NULL};
	np_error err = {0};
	np_status s = np_run_passes(k->m, passes, &ctx, &err);
	bool good = ok(s == NP_OK, "%s runs (%s)", passes, s == NP_OK ? "ok" : err.msg);
	return good && ok(np_graph_verify(k->g, &err) == NP_OK, "graph verifies %s", err.msg);
}

/* ------------------------------------------------------------ layers */

static void t_layers(void)
{
	gk k;
	gk_init(&k, 13, 1);
	block b;
	build_block(&k, &b, "gelu", 0.0f);
	np_layers ls = {0};
	np_error err = {0};
	np_status st = np_find_layers(k.m, &ls, &err);
	bool found = ok(st == NP_OK && ls.n == 1, "encoder MLP: one rectified layer (%d)",
	                ls.n);
	if (found) {
		const np_layer *L = &ls.v[0];
		ok(L->kind == NP_RECT_GELU && L->form == NP_FORM_ERF && L->z == b.z,
		   "encoder MLP: the erf GELU, z = fc1's bias Add");
		ok(L->axis == -1 && L->neurons == H && np_layer_axis(L, 3) == 2,
		   "encoder MLP: %lld neurons on z's last axis (axis %d)",
		   (long long)L->neurons, L->axis);
		ok(L->n_producers == 1 && strcmp(L->producers[0]->name, "fc1") == 0 &&
		   L->n_weights == 1 && L->weights[0] == b.W1 && L->n_prunable == K * H,
		   "encoder MLP: producer fc1, prunable weights W1 only (%lld), not fc2's",
		   (long long)L->n_prunable);
	}
	np_layers_free(&ls);
	gk_free(&k);

	/* A Gemm layer ([N, C]) keeps axis 1. */
	gk_init(&k, 13, 2);
	np_value *x = gk_input(&k, "x", GK_SHAPE(3, 5));
	np_value *w = gk_weight(&k, "W", GK_SHAPE(5, 4), -1, 1);
	np_value *g = gk_op(&k, "Gemm", "gemm", GK_IN(x, w));
	gk_output(&k, gk_op(&k, "Relu", "act", GK_IN(g)));
	ok(np_find_layers(k.m, &ls, &err) == NP_OK && ls.n == 1 && ls.v[0].axis == 1 &&
	   ls.v[0].neurons == 4, "Gemm layer: 4 neurons on axis 1");
	np_layers_free(&ls);
	gk_free(&k);
}

/* ----------------------------------------------------------- profile */

enum { NX = 5 };                     /* examples */

static void t_profile(void)
{
	gk k;
	gk_init(&k, 13, 3);
	block b;
	build_block(&k, &b, "gelu", 0.0f);
	b.x->dims[0].value = -1;         /* a dynamic batch: any batch size */
	float *b1 = b.b1->init->data;
	for (int h = 0; h < H; h++)
		b1[h] = gk_uniform(&k, -0.4f, 0.4f);
	b1[1] = -100.0f;                 /* all OFF */
	b1[4] = 100.0f;                  /* all ON */
	/* NX examples of [T, K]; the count here, per hidden feature. */
	float *x = gk_random(&k, NX * T * K, -1, 1);
	double *z = malloc(sizeof(double) * NX * T * H);
	double closest = INFINITY;
	int64_t want[H][2] = {{0}};
	for (int e = 0; e < NX; e++) {
		/* reference() works on B * T rows: one example at a time */
		float *xe = x + e * T * K;
		for (int t = 0; t < T; t++)
			for (int h = 0; h < H; h++) {
				double s = b1[h];
				for (int c = 0; c < K; c++)
					s += (double)xe[t * K + c] * ((float *)b.W1->init->data)[c * H + h];
				z[(e * T + t) * H + h] = s;
				closest = fmin(closest, fabs(s));
				want[h][s > 0 ? NP_STATE_ON : NP_STATE_OFF]++;
			}
	}
	ok(closest > 1e-3, "profile: no pre-activation within 1e-3 of 0 (%.3g): "
	   "float and double agree on every state", closest);
	np_dataset d = {.n = NX, .rank = 2, .dims = {T, K}, .example_size = T * K, .x = x};
	static const int64_t batches[] = {1, 2, 5};
	static const int threads[] = {1, 2, 1};
	for (int r = 0; r < 3; r++) {
		np_error err = {0};
		np_layers ls = {0};
		np_profile p = {0};
		np_rt *rt = np_rt_new(k.m, threads[r], &err);
		np_profile_opts o = {.batch = batches[r], .quiet = true};
		np_status st = rt ? np_find_layers(k.m, &ls, &err) : err.status;
		if (st == NP_OK)
			st = np_profile_run(rt, &ls, &d, &o, &p, &err);
		if (!ok(st == NP_OK && p.n == 1 && p.l[0].neurons == H,
		        "profile [B, T, C], batch %lld, %d thread(s): runs, %d neurons (%s)",
		        (long long)batches[r], threads[r], H, st == NP_OK ? "ok" : err.msg)) {
			np_profile_free(&p);
			np_layers_free(&ls);
			np_rt_free(rt);
			continue;
		}
		const np_layer_profile *lp = &p.l[0];
		bool same = true;
		double Hsum = 0;
		for (int h = 0; h < H; h++) {
			same &= lp->counts[h * 2 + NP_STATE_OFF] == want[h][NP_STATE_OFF] &&
			        lp->counts[h * 2 + NP_STATE_ON] == want[h][NP_STATE_ON] &&
			        lp->dont_care[h] == 0;
			double n = (double)(want[h][0] + want[h][1]), Hh = 0;
			for (int s = 0; s < 2; s++)
				if (want[h][s] > 0 && want[h][s] < n)
					Hh -= want[h][s] / n * log2(want[h][s] / n);
			same &= fabs(lp->H[h] - Hh) <= 1e-12;
			Hsum += Hh;
		}
		ok(same, "profile [B, T, C], batch %lld, %d thread(s): ON/OFF counts of all "
		   "%d hidden features over %d examples x %d tokens equal the hand count",
		   (long long)batches[r], threads[r], H, NX, T);
		ok(lp->H[1] == 0 && lp->H[4] == 0 && lp->counts[1 * 2 + NP_STATE_OFF] == NX * T &&
		   lp->counts[4 * 2 + NP_STATE_ON] == NX * T && lp->zero_neurons >= 2 &&
		   fabs(lp->H_layer - Hsum / H) <= 1e-12,
		   "profile [B, T, C]: the all-OFF and all-ON features have H = 0, H(l) = "
		   "mean (%.4f)", lp->H_layer);
		np_profile_free(&p);
		np_layers_free(&ls);
		np_rt_free(rt);
	}
	free(z);
	free(x);
	gk_free(&k);
}

/* --------------------------------------------------------- rewrites */

static void t_all_off(void)
{
	gk k;
	gk_init(&k, 13, 4);
	block b;
	build_block(&k, &b, "gelu", -8.0f);
	np_rt_input in;
	float *x = random_x(&k, &in, &b, -1, 1);
	double z[B * T * H], want[B * T * K];
	reference(&b, x, 0, z, want);
	double zmax = -INFINITY;
	for (int i = 0; i < B * T * H; i++)
		zmax = fmax(zmax, z[i]);
	ok(zmax < -6, "all OFF: every z < -6 (max %.3g), GELU(z) < 1e-8", zmax);
	uint8_t st[H];
	memset(st, NP_STATE_OFF, sizeof st);
	if (run_passes(&k, "linearize,dce", NP_RECT_GELU, st)) {
		ok(k.g->n_nodes == 1 && gk_count_op(k.g, "Add") == 1 &&
		   k.g->nodes[0]->outputs[0] == b.y,
		   "all OFF: the MLP branch went; one Add (the residual) writes the output "
		   "(%d nodes)", k.g->n_nodes);
		ok(log_has(NP_LOG_LINEARIZED, "is its output bias"),
		   "all OFF: logged as the MLP branch replaced by its output bias");
		runs_close_to(&k, &in, "all OFF: the rewritten model runs",
		              "all OFF: output = x + b2", want);
	}
	free(x);
	gk_free(&k);
}

static void t_all_on(void)
{
	gk k;
	gk_init(&k, 13, 5);
	block b;
	build_block(&k, &b, "gelu", 8.0f);
	np_rt_input in;
	float *x = random_x(&k, &in, &b, -1, 1);
	double z[B * T * H], want[B * T * K];
	reference(&b, x, 1, z, want);
	double zmin = INFINITY;
	for (int i = 0; i < B * T * H; i++)
		zmin = fmin(zmin, z[i]);
	ok(zmin > 6, "all ON: every z > 6 (min %.3g), GELU(z) = z to 1e-8", zmin);
	uint8_t st[H];
	memset(st, NP_STATE_ON, sizeof st);
	if (run_passes(&k, "linearize,fold_gemm,dce", NP_RECT_GELU, st)) {
		ok(gk_count_op(k.g, "MatMul") == 1 && gk_count_op(k.g, "Add") == 2 &&
		   k.g->n_nodes == 3 && gk_count_op(k.g, "Erf") == 0,
		   "all ON: GELU gone, fc1 and fc2 one MatMul, its bias Add, the residual "
		   "(%d nodes)", k.g->n_nodes);
		runs_close_to(&k, &in, "all ON: the rewritten model runs",
		              "all ON: output = x + ((x W1 + b1) W2 + b2)", want);
	}
	free(x);
	gk_free(&k);
}

/* Relu, ON and OFF features: into the producer MatMul + bias Add. */
static void t_mixed_relu(void)
{
	static const uint8_t st[H] = {NP_STATE_ON, NP_STATE_OFF, NP_STATE_ON,
	                              NP_STATE_OFF, NP_STATE_OFF, NP_STATE_ON};
	gk k;
	gk_init(&k, 13, 6);
	block b;
	build_block(&k, &b, "Relu", 0.0f);
	float *w1 = b.W1->init->data, *b1 = b.b1->init->data;
	for (int c = 0; c < K; c++)
		for (int h = 0; h < H; h++)
			w1[c * H + h] = (st[h] == NP_STATE_ON ? 1 : -1) * gk_uniform(&k, 0.05f, 0.5f);
	for (int h = 0; h < H; h++)
		b1[h] = st[h] == NP_STATE_ON ? 0.1f : -0.1f;
	np_rt_input in;
	float *x = random_x(&k, &in, &b, 0.1f, 1.0f);   /* positive: signs hold */
	double want[B * T * K];
	reference(&b, x, 2, NULL, want);
	if (run_passes(&k, "linearize", NP_RECT_RELU, st)) {
		ok(gk_count_op(k.g, "Relu") == 0 && gk_count_op(k.g, "MatMul") == 2 &&
		   k.g->n_nodes == 5 && log_has(NP_LOG_LINEARIZED, "folded into producer fc1/bias"),
		   "mixed: Relu folded into fc1's MatMul + bias Add (%d nodes)", k.g->n_nodes);
		runs_close_to(&k, &in, "mixed: the rewritten model runs",
		              "mixed: output unchanged (Relu on these inputs is the map)", want);
	}
	free(x);
	gk_free(&k);
}

/* fold_gemm on MatMul + Add -> MatMul + Add with nothing between. */
static void t_fold_pair(void)
{
	gk k;
	gk_init(&k, 13, 7);
	block b;
	b.x = gk_input(&k, "x", GK_SHAPE(B, T, K));
	b.W1 = gk_weight(&k, "W1", GK_SHAPE(K, H), -0.5f, 0.5f);
	b.b1 = gk_weight(&k, "b1", GK_SHAPE(H), -1, 1);
	b.W2 = gk_weight(&k, "W2", GK_SHAPE(H, K), -0.5f, 0.5f);
	b.b2 = gk_weight(&k, "b2", GK_SHAPE(K), -1, 1);
	np_value *h = gk_op(&k, "MatMul", "fc1", GK_IN(b.x, b.W1));
	np_value *z = gk_op(&k, "Add", "fc1/bias", GK_IN(b.b1, h));   /* bias first */
	np_value *o = gk_op(&k, "MatMul", "fc2", GK_IN(z, b.W2));
	b.y = gk_op(&k, "Add", "fc2/bias", GK_IN(o, b.b2));
	gk_output(&k, b.y);
	np_rt_input in;
	float *x = random_x(&k, &in, &b, -1, 1);
	double want[B * T * K];
	reference(&b, x, 1, NULL, want);
	for (int i = 0; i < B * T * K; i++)
		want[i] -= x[i];                 /* no residual here */
	if (run_passes(&k, "fold_gemm,dce", NP_RECT_GELU, NULL)) {
		ok(k.g->n_nodes == 2 && gk_count_op(k.g, "MatMul") == 1 &&
		   k.g->nodes[1]->outputs[0] == b.y && log_has(NP_LOG_FOLDED, "first node's bias"),
		   "fold_gemm: MatMul + Add -> MatMul + Add is one MatMul and the Add "
		   "(%d nodes)", k.g->n_nodes);
		runs_close_to(&k, &in, "fold_gemm: the folded model runs",
		              "fold_gemm: output = (x W1 + b1) W2 + b2", want);
	}
	free(x);
	gk_free(&k);
}

int main(void)
{
	t_layers();
	t_profile();
	t_all_off();
	t_all_on();
	t_mixed_relu();
	t_fold_pair();
	np_pass_log_free(&LOG);
	return done_testing();
}
