/* test_gradcheck.c - the runtime's backward against central finite
 * differences.
 *
 * Each case is a tiny model built by hand in which every float tensor is
 * an initializer, so the runtime treats it as a trainable parameter and
 * computes its gradient.  With a fixed random r, loss = sum(r * y): the
 * analytic gradient comes from np_rt_output_grad(rt, 0) = r and
 * np_rt_backward(); the numeric one re-runs the forward pass with each
 * (sampled) weight moved by +-h.  Inputs are drawn away from kinks (ReLU
 * at 0, Clip bounds, MaxPool ties) so both agree to float precision.
 * The kink check reads a rectifier's input, so it runs on a plan that
 * watches it (runtime/rt.h, WATCH); the gradients then come from the plan
 * training gets, with Relu and Add writing over their inputs in place.
 *
 * One TAP line per (case, parameter). */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"
#include "rt.h"
#include "tap.h"

#define H 1e-2           /* finite-difference step (float32) */
#define RTOL 1e-2
#define ATOL 1e-4        /* float32 rounding of the loss over 2h */
#define MAX_PROBES 48    /* elements checked per parameter */
#define MARGIN 0.05f     /* distance kept from a kink */

/* ---------------------------------------------------------- builder */

typedef struct gc {
	np_model *m;
	np_graph *g;
	uint64_t rng;
	int n_vals;
	/* A value that must stay MARGIN away from zero (a rectifier's input);
	 * the case is re-drawn with another seed until it does. */
	const char *kink_value;
	float kink_at[2];
	int n_kinks;
	/* Values the planner must keep in nChw16c (runtime/rt.h, LAYOUT). */
	const char *blocked[4];
	int n_blocked;
	/* Unwatched, values a consumer must write over in place, and values
	 * it must not (runtime/rt.h, PLANS). */
	const char *inplace[4];
	int n_inplace;
	const char *kept[4];
	int n_kept;
} gc;

static double urand(gc *c)
{
	/* splitmix64: deterministic across platforms */
	uint64_t z = (c->rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return (double)(z >> 11) / 9007199254740992.0;
}

/* Uniform in [lo, hi], at least MARGIN from each kink. */
typedef struct dist {
	float lo, hi;
	int nk;
	float kinks[4];
	float min_abs;           /* also reject |v| below it */
} dist;

static const dist UNIT = {-1.0f, 1.0f, 0, {0}, 0};
static const dist NONZERO = {-1.0f, 1.0f, 1, {0.0f}, 0};
static const dist POSITIVE = {0.5f, 2.0f, 0, {0}, 0};

static float draw(gc *c, const dist *d)
{
	for (;;) {
		float v = (float)(d->lo + (d->hi - d->lo) * urand(c));
		bool ok_v = true;
		for (int k = 0; k < d->nk; k++)
			ok_v &= fabsf(v - d->kinks[k]) >= 2 * MARGIN;
		ok_v &= fabsf(v) >= d->min_abs;
		if (ok_v)
			return v;
	}
}

static np_value *param(gc *c, int rank, const int64_t *dims, const dist *d)
{
	np_error err = {0};
	char name[32];
	snprintf(name, sizeof name, "w%d", c->n_vals++);
	np_tensor *t = np_model_new_tensor(c->m, NP_FLOAT, rank, dims, &err);
	float *p = t->data;
	for (int64_t i = 0; i < t->nelem; i++)
		p[i] = draw(c, d);
	return np_graph_add_initializer(c->g, name, t, &err);
}

/* Distinct values 0.1 apart, shuffled: no near-ties for MaxPool. */
static np_value *param_distinct(gc *c, int rank, const int64_t *dims)
{
	np_value *v = param(c, rank, dims, &UNIT);
	float *p = v->init->data;
	int64_t n = v->init->nelem;
	for (int64_t i = 0; i < n; i++)
		p[i] = (float)(0.1 * (double)i - 0.05 * (double)n);
	for (int64_t i = n - 1; i > 0; i--) {
		int64_t j = (int64_t)(urand(c) * (double)(i + 1));
		float t = p[i];
		p[i] = p[j];
		p[j] = t;
	}
	return v;
}

static np_value *ints(gc *c, int n, const int64_t *vals)
{
	np_error err = {0};
	char name[32];
	int64_t dims[1] = {n};
	snprintf(name, sizeof name, "i%d", c->n_vals++);
	np_tensor *t = np_model_new_tensor(c->m, NP_INT64, 1, dims, &err);
	memcpy(t->data, vals, sizeof(int64_t) * (size_t)n);
	return np_graph_add_initializer(c->g, name, t, &err);
}

/* A node with one output, not yet inserted: set attributes, then done(). */
static np_node *node(gc *c, const char *op, np_value **in, int n_in)
{
	np_error err = {0};
	char name[32];
	snprintf(name, sizeof name, "%s_%d", op, c->n_vals++);
	np_value *out = np_graph_new_value(c->g, name, &err);
	return np_graph_new_node(c->g, op, "", name, in, n_in, &out, 1);
}

static np_value *done(gc *c, np_node *n)
{
	np_graph_insert_node(c->g, n);
	return n->outputs[0];
}

static np_value *op1(gc *c, const char *op, np_value *a)
{
	return done(c, node(c, op, &a, 1));
}

static np_value *op2(gc *c, const char *op, np_value *a, np_value *b)
{
	np_value *in[2] = {a, b};
	return done(c, node(c, op, in, 2));
}

static void set_output(gc *c, np_value *v)
{
	np_value **o = np_arena_alloc(c->m->arena, sizeof *o);
	o[0] = v;
	v->is_output = true;
	c->g->outputs = o;
	c->g->n_outputs = 1;
}

static void gc_init(gc *c, int opset, uint64_t seed)
{
	memset(c, 0, sizeof *c);
	c->m = np_model_new();
	c->g = c->m->graph;
	c->m->ir_version = 8;
	c->m->opsets = np_arena_alloc(c->m->arena, sizeof(np_opset));
	c->m->opsets[0] = (np_opset){"", opset};
	c->m->n_opsets = 1;
	c->rng = seed * 0x2545f4914f6cdd1dULL + 1;
}

#define DIMS(...) (int64_t[]){__VA_ARGS__}
#define RANK(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define P(d, ...) param(c, RANK(__VA_ARGS__), DIMS(__VA_ARGS__), d)
#define PD(...) param_distinct(c, RANK(__VA_ARGS__), DIMS(__VA_ARGS__))
#define INTS(...) ints(c, RANK(__VA_ARGS__), DIMS(__VA_ARGS__))

/* ------------------------------------------------------------ check */

static double loss(const np_rtensor *y, const float *r)
{
	double s = 0;
	const float *p = y->data;
	for (int64_t i = 0; i < y->nelem; i++)
		s += (double)r[i] * p[i];
	return s;
}

static bool kink_clear(gc *c, np_rt *rt)
{
	if (!c->kink_value)
		return true;
	const np_rtensor *t = np_rt_value(rt, c->kink_value);
	if (!t) {      /* watched: never written over */
		ok(0, "%s readable after a run that watches it", c->kink_value);
		return true;
	}
	if (t->dtype != NP_FLOAT)
		return true;
	for (int64_t i = 0; i < t->nelem; i++)
		for (int k = 0; k < c->n_kinks; k++)
			if (fabsf(((const float *)t->data)[i] - c->kink_at[k]) < MARGIN)
				return false;
	return true;
}

/* Forward + backward; returns the loss, NAN (err set) on failure. */
static double forward_loss(np_rt *rt, const float *r, np_error *err)
{
	if (np_rt_run(rt, NULL, 0, NP_RT_TRAIN, err) != NP_OK)
		return NAN;
	return loss(np_rt_output(rt, 0), r);
}

/* Compare one parameter's analytic gradient with finite differences at
 * up to MAX_PROBES elements. */
static void check_param(const char *what, np_rt *rt, np_param *p,
                        const float *grad, const float *r)
{
	np_error err = {0};
	double worst = 0, a_w = 0, n_w = 0;
	int64_t at = -1, step = p->nelem > MAX_PROBES ? p->nelem / MAX_PROBES + 1 : 1;
	for (int64_t i = 0; i < p->nelem; i += step) {
		float w = p->data[i];
		p->data[i] = w + (float)H;
		double lp = forward_loss(rt, r, &err);
		p->data[i] = w - (float)H;
		double lm = forward_loss(rt, r, &err);
		p->data[i] = w;
		if (isnan(lp) || isnan(lm)) {
			ok(0, "%s: d %s: forward failed: %s", what, p->value->name, err.msg);
			return;
		}
		/* the step actually taken in float */
		double h2 = (double)(w + (float)H) - (double)(w - (float)H);
		double num = (lp - lm) / h2, ana = grad[i];
		double excess = fabs(num - ana) - (ATOL + RTOL * fmax(fabs(num), fabs(ana)));
		if (at < 0 || excess > worst) {
			worst = excess;
			at = i;
			a_w = ana;
			n_w = num;
		}
	}
	ok(worst <= 0, "%s: d %s (%lld elements; worst [%lld] analytic %.6g, "
	   "numeric %.6g)", what, p->value->name, (long long)p->nelem,
	   (long long)at, a_w, n_w);
}

/* Every float initializer of a test model stands for an input whose
 * gradient we check, so all are trained except BN running statistics
 * (the runtime would freeze scalars such as Clip bounds by default). */
static np_status train_every_input(np_rt *rt, np_error *err)
{
	for (int i = 0; i < np_rt_n_params(rt); i++) {
		np_param *p = np_rt_param(rt, i);
		bool stat = false;
		for (int u = 0; u < p->value->n_uses; u++)
			stat |= strcmp(p->value->uses[u].node->op_type, "BatchNormalization") == 0 &&
			        p->value->uses[u].index >= 3;
		if (np_rt_set_trainable(rt, p, !stat, err) != NP_OK)
			return err->status;
	}
	return NP_OK;
}

/* The runtime's own choice of what to train (no train_every_input):
 * what finetune uses.  BN running statistics stay frozen however they are
 * reached (an Identity included), BN shifts and weights train, and a
 * training step plans and runs. */
static void default_trainable(const char *what, void (*build)(gc *))
{
	gc c;
	np_error err = {0};
	gc_init(&c, 13, 1);
	build(&c);
	np_rt *rt = np_rt_new(c.m, 1, &err);
	int stats = 0, trained = 0;
	for (int i = 0; rt && i < np_rt_n_params(rt); i++) {
		np_param *p = np_rt_param(rt, i);
		for (int u = 0; u < p->value->n_uses; u++) {
			const np_node *n = p->value->uses[u].node;
			int k = p->value->uses[u].index;
			if (strcmp(n->op_type, "BatchNormalization") != 0)
				continue;
			if (k >= 3) {
				stats++;
				ok(!p->trainable, "%s: %s (BN input %d) is state, not trained",
				   what, p->value->name, k);
			} else if (k >= 1) {
				trained++;
				ok(p->trainable, "%s: %s (BN input %d) is trained", what,
				   p->value->name, k);
			}
		}
	}
	ok(rt && stats > 0 && trained > 0, "%s: %d statistics, %d scale/shift "
	   "inputs seen", what, stats, trained);
	ok(rt && np_rt_run(rt, NULL, 0, NP_RT_TRAIN, &err) == NP_OK,
	   "%s: a training step with the default parameters plans and runs%s%s",
	   what, err.msg[0] ? ": " : "", err.msg);
	np_rt_free(rt);
	np_model_free(c.m);
}

static void small_net(gc *c);

/* The thread count is OpenMP's, per process: a runtime must run with its
 * own even after another was made with a different one (linearize makes
 * a single-threaded probe in the middle of the main job). */
static void threads_per_runtime(void)
{
	gc a, b;
	np_error err = {0};
	gc_init(&a, 13, 1);
	small_net(&a);
	gc_init(&b, 13, 2);
	small_net(&b);
	np_rt *two = np_rt_new(a.m, 2, &err);
	np_rt *one = two ? np_rt_new(b.m, 1, &err) : NULL;
	bool ran = one && np_rt_run(two, NULL, 0, NP_RT_TRAIN, &err) == NP_OK;
	int after_run = omp_get_max_threads();
	ran = ran && np_rt_run(one, NULL, 0, NP_RT_INFER, &err) == NP_OK &&
	      np_rt_backward(two, &err) == NP_OK;
	int after_backward = omp_get_max_threads();
	ok(ran && after_run == 2 && after_backward == 2,
	   "a 2-thread runtime runs and trains with 2 threads beside a 1-thread "
	   "one (got %d, %d)%s%s", after_run, after_backward,
	   err.msg[0] ? ": " : "", err.msg);
	np_rt_free(one);
	np_rt_free(two);
	np_model_free(a.m);
	np_model_free(b.m);
}

static bool np_plain_layout(void)
{
	const char *e = getenv("NEPENC_PLAIN_LAYOUT");
	return e && *e && strcmp(e, "0") != 0;
}

/* The first training run, watching the kink value for kink_clear. */
static bool first_runs(gc *c, np_rt *rt, np_error *err)
{
	if (c->kink_value && np_rt_watch(rt, c->kink_value, err) != NP_OK)
		return false;
	return np_rt_run(rt, NULL, 0, NP_RT_TRAIN, err) == NP_OK;
}

/* The watch taken back, a run on training's plan: the values the case
 * names are written over in place or kept. */
static bool unwatched_run(const char *what, gc *c, np_rt *rt, np_error *err)
{
	if (c->kink_value)
		np_rt_unwatch(rt, c->kink_value);
	if (np_rt_run(rt, NULL, 0, NP_RT_TRAIN, err) != NP_OK) {
		ok(0, "%s: runtime error unwatched: %s", what, err->msg);
		return false;
	}
	for (int i = 0; i < c->n_inplace; i++)
		ok(np_rt_value(rt, c->inplace[i]) == NULL,
		   "%s: %s written over in place (np_rt_value refuses it)", what,
		   c->inplace[i]);
	for (int i = 0; i < c->n_kept; i++)
		ok(np_rt_value(rt, c->kept[i]) != NULL,
		   "%s: %s not written over (a backward reads it)", what, c->kept[i]);
	return true;
}

/* Build with seeds 1, 2, ... until the kink values keep their margin,
 * then check every trainable parameter. */
/* ------------------------------------------------ backward's hooks */

/* np_rt_backward's hooks (rt.h): each trainable parameter's gradient as
 * it was when reported final, how often each was reported, in what
 * order, and how many after_node calls came. */
typedef struct hook_log {
	np_rt *rt;
	float **snap;                  /* by parameter index */
	int *seen;
	int *order, n;
	int after;
} hook_log;

static void hook_ready(void *ctx, int i)
{
	hook_log *h = ctx;
	np_param *p = np_rt_param(h->rt, i);
	if (h->seen[i]++ == 0) {
		h->snap[i] = malloc(sizeof(float) * (size_t)(p->nelem + 1));
		memcpy(h->snap[i], p->grad, sizeof(float) * (size_t)p->nelem);
	}
	if (h->n < np_rt_n_params(h->rt))
		h->order[h->n++] = i;
}

static void hook_after(void *ctx)
{
	((hook_log *)ctx)->after++;
}

static void hook_log_init(hook_log *h, np_rt *rt)
{
	int n = np_rt_n_params(rt);
	*h = (hook_log){.rt = rt};
	h->snap = calloc((size_t)n + 1, sizeof *h->snap);
	h->seen = calloc((size_t)n + 1, sizeof *h->seen);
	h->order = calloc((size_t)n + 1, sizeof *h->order);
	np_rt_set_backward_hooks(rt, &(np_rt_backward_hooks){hook_ready, hook_after, h});
}

static void hook_log_free(hook_log *h)
{
	np_rt_set_backward_hooks(h->rt, NULL);
	for (int i = 0; i < np_rt_n_params(h->rt); i++)
		free(h->snap[i]);
	free(h->snap);
	free(h->seen);
	free(h->order);
}

/* After a backward that succeeded: every trainable parameter reported
 * once, in np_rt_grad_order's order, its gradient then already what
 * backward left (the lowest-index reader's backward had run; a parameter
 * read by several nodes shows whether it waited for all of them). */
static void hook_log_check(const char *what, hook_log *h)
{
	np_rt *rt = h->rt;
	int n = np_rt_n_params(rt), want_n = 0, bad = -1;
	int *want = calloc((size_t)n + 1, sizeof *want);
	np_error err = {0};
	bool order_ok = np_rt_grad_order(rt, want, &want_n, &err) == NP_OK &&
	                want_n == h->n && memcmp(want, h->order, sizeof(int) * (size_t)h->n) == 0;
	for (int i = 0; i < n && bad < 0; i++) {
		np_param *p = np_rt_param(rt, i);
		if (p->trainable && (h->seen[i] != 1 ||
		                     memcmp(h->snap[i], p->grad, sizeof(float) * (size_t)p->nelem)))
			bad = i;
		else if (!p->trainable && h->seen[i])
			bad = i;
	}
	ok(order_ok && bad < 0 && h->after > 0,
	   "%s: backward's hooks: %d parameters reported final once each, in "
	   "np_rt_grad_order's order, with their final gradients%s%s", what, h->n,
	   order_ok ? "" : " (order differs)",
	   bad < 0 ? "" : " (one is not)");
	free(want);
	hook_log_free(h);
}

static void gradcheck(const char *what, int opset, void (*build)(gc *))
{
	for (uint64_t seed = 1; seed <= 40; seed++) {
		gc c;
		np_error err = {0};
		gc_init(&c, opset, seed);
		build(&c);
		if (np_graph_verify(c.g, &err) != NP_OK) {
			ok(0, "%s: bad test model: %s", what, err.msg);
			np_model_free(c.m);
			return;
		}
		np_rt *rt = np_rt_new(c.m, 1, &err);
		if (rt && train_every_input(rt, &err) != NP_OK) {
			ok(0, "%s: %s", what, err.msg);
			np_rt_free(rt);
			np_model_free(c.m);
			return;
		}
		if (!rt || !first_runs(&c, rt, &err)) {
			ok(0, "%s: runtime error: %s", what, err.msg);
			np_rt_free(rt);
			np_model_free(c.m);
			return;
		}
		if (!kink_clear(&c, rt)) {
			np_rt_free(rt);
			np_model_free(c.m);
			continue;
		}
		if (!unwatched_run(what, &c, rt, &err)) {
			np_rt_free(rt);
			np_model_free(c.m);
			return;
		}
		/* Blocked wherever the CPU's convolutions want a channel block
		 * (16 on AVX-512, 8 on AVX2: both divide 16); plain on SSE4.1
		 * and under NEPENC_PLAIN_LAYOUT. */
		bool want = np_rt_block(rt) > 0;
		if (want && np_plain_layout())
			ok(0, "%s: NEPENC_PLAIN_LAYOUT set, yet block %d", what,
			   np_rt_block(rt));
		for (int i = 0; i < c.n_blocked; i++)
			ok(np_rt_value_blocked(rt, c.blocked[i]) == want,
			   "%s: %s %s blocked (block %d)", what, c.blocked[i],
			   want ? "kept" : "not", np_rt_block(rt));
		const np_rtensor *y = np_rt_output(rt, 0);
		float *r = malloc(sizeof(float) * (size_t)(y->nelem + 1));
		for (int64_t i = 0; i < y->nelem; i++)
			r[i] = (float)(2 * urand(&c) - 1);
		memcpy(np_rt_output_grad(rt, 0), r, sizeof(float) * (size_t)y->nelem);
		hook_log hooks;
		hook_log_init(&hooks, rt);
		if (np_rt_backward(rt, &err) != NP_OK) {
			ok(0, "%s: backward error: %s", what, err.msg);
			hook_log_free(&hooks);
		} else {
			hook_log_check(what, &hooks);
			/* Keep the analytic grads: the probing runs may reuse buffers. */
			int n = np_rt_n_params(rt);
			float **saved = calloc((size_t)n + 1, sizeof *saved);
			for (int i = 0; i < n; i++) {
				np_param *p = np_rt_param(rt, i);
				if (!p->trainable || !p->grad)
					continue;
				saved[i] = malloc(sizeof(float) * (size_t)(p->nelem + 1));
				memcpy(saved[i], p->grad, sizeof(float) * (size_t)p->nelem);
			}
			for (int i = 0; i < n; i++)
				if (saved[i])
					check_param(what, rt, np_rt_param(rt, i), saved[i], r);
			for (int i = 0; i < n; i++)
				free(saved[i]);
			free(saved);
		}
		free(r);
		np_rt_free(rt);
		np_model_free(c.m);
		return;
	}
	ok(0, "%s: no seed kept the rectifier inputs away from the kink", what);
}

/* ------------------------------------------------------------- cases */

static void set_ints(np_node *n, const char *name, int k, const int64_t *v)
{
	np_node_set_attr_ints(n, name, v, k);
}
#define ATTR_INTS(n, name, ...) set_ints(n, name, RANK(__VA_ARGS__), DIMS(__VA_ARGS__))

static void conv_pads_strides(gc *c)
{
	np_value *in[3] = {P(&UNIT, 2, 3, 6, 5), P(&UNIT, 4, 3, 3, 3), P(&UNIT, 4)};
	np_node *n = node(c, "Conv", in, 3);
	ATTR_INTS(n, "pads", 1, 0, 1, 2);
	ATTR_INTS(n, "strides", 2, 1);
	set_output(c, done(c, n));
}

static void conv_groups_dilation(gc *c)
{
	np_value *in[2] = {P(&UNIT, 1, 4, 7, 7), P(&UNIT, 6, 2, 3, 3)};
	np_node *n = node(c, "Conv", in, 2);
	np_node_set_attr_int(n, "group", 2);
	ATTR_INTS(n, "dilations", 2, 2);
	ATTR_INTS(n, "pads", 1, 1, 1, 1);
	set_output(c, done(c, n));
}

static void conv_depthwise(gc *c)
{
	np_value *in[3] = {P(&UNIT, 2, 3, 5, 5), P(&UNIT, 3, 1, 3, 3), P(&UNIT, 3)};
	np_node *n = node(c, "Conv", in, 3);
	np_node_set_attr_int(n, "group", 3);
	ATTR_INTS(n, "pads", 1, 1, 1, 1);
	ATTR_INTS(n, "strides", 2, 2);
	set_output(c, done(c, n));
}

/* A depthwise Conv 3x3 with bias over x's ch channels, padded by its
 * dilation. */
static np_value *depthwise3x3(gc *c, np_value *x, int64_t ch, int64_t stride,
                              int64_t dilation)
{
	np_value *in[3] = {x, P(&UNIT, ch, 1, 3, 3), P(&UNIT, ch)};
	np_node *n = node(c, "Conv", in, 3);
	np_node_set_attr_int(n, "group", ch);
	ATTR_INTS(n, "pads", dilation, dilation, dilation, dilation);
	ATTR_INTS(n, "strides", stride, stride);
	ATTR_INTS(n, "dilations", dilation, dilation);
	return done(c, n);
}

/* MobileNet-V2's late depthwise convolutions: many channels, a map
 * smaller than the kernel.  oneDNN has no jit_dw backward weights for
 * them; conv.c computes the weight and bias gradients itself
 * (conv_dw_bw_direct), also strided and dilated. */
static void conv_depthwise_tiny(gc *c, int64_t side, int64_t stride,
                                int64_t dilation)
{
	np_value *x = P(&UNIT, 2, 32, side, side);
	set_output(c, depthwise3x3(c, x, 32, stride, dilation));
}

static void conv_depthwise_1x1_map(gc *c) { conv_depthwise_tiny(c, 1, 1, 1); }
static void conv_depthwise_2x2_map(gc *c) { conv_depthwise_tiny(c, 2, 1, 1); }
static void conv_depthwise_3x3_s2d2(gc *c) { conv_depthwise_tiny(c, 3, 2, 2); }

static void gemm_plain(gc *c)
{
	np_value *in[3] = {P(&UNIT, 3, 4), P(&UNIT, 4, 5), P(&UNIT, 5)};
	set_output(c, done(c, node(c, "Gemm", in, 3)));
}

static void gemm_trans(gc *c)
{
	np_value *in[3] = {P(&UNIT, 4, 3), P(&UNIT, 5, 4), P(&UNIT, 3, 5)};
	np_node *n = node(c, "Gemm", in, 3);
	np_node_set_attr_int(n, "transA", 1);
	np_node_set_attr_int(n, "transB", 1);
	np_node_set_attr_float(n, "alpha", 0.7f);
	np_node_set_attr_float(n, "beta", 1.3f);
	set_output(c, done(c, n));
}

static void gemm_transb_bias_row(gc *c)
{
	np_value *in[3] = {P(&UNIT, 3, 4), P(&UNIT, 5, 4), P(&UNIT, 1, 5)};
	np_node *n = node(c, "Gemm", in, 3);
	np_node_set_attr_int(n, "transB", 1);
	set_output(c, done(c, n));
}

static void matmul_2d(gc *c)
{
	set_output(c, op2(c, "MatMul", P(&UNIT, 3, 4), P(&UNIT, 4, 5)));
}

static void matmul_batched(gc *c)
{
	set_output(c, op2(c, "MatMul", P(&UNIT, 2, 3, 4), P(&UNIT, 2, 4, 5)));
}

static void matmul_broadcast(gc *c)
{
	set_output(c, op2(c, "MatMul", P(&UNIT, 2, 1, 3, 4), P(&UNIT, 3, 4, 2)));
}

static void add_bcast(gc *c) { set_output(c, op2(c, "Add", P(&UNIT, 2, 3, 4), P(&UNIT, 3, 1))); }
static void sub_bcast(gc *c) { set_output(c, op2(c, "Sub", P(&UNIT, 1, 3, 1), P(&UNIT, 2, 1, 4))); }
static void mul_bcast(gc *c) { set_output(c, op2(c, "Mul", P(&UNIT, 2, 3, 4), P(&UNIT, 4))); }
static void div_bcast(gc *c) { set_output(c, op2(c, "Div", P(&UNIT, 2, 3, 4), P(&POSITIVE, 2, 1, 4))); }
static void div_neg(gc *c)
{
	static const dist away = {-2.0f, -0.5f, 0, {0}, 0};
	set_output(c, op2(c, "Div", P(&UNIT, 3, 1), P(&away, 3, 4)));
}
static void pow_bcast(gc *c) { set_output(c, op2(c, "Pow", P(&POSITIVE, 2, 3), P(&POSITIVE, 3))); }
static void add_same(gc *c) { set_output(c, op2(c, "Add", P(&UNIT, 3, 4), P(&UNIT, 3, 4))); }

static void prelu(gc *c) { set_output(c, op2(c, "PRelu", P(&NONZERO, 2, 3, 2, 2), P(&UNIT, 3, 1, 1))); }
static void relu(gc *c) { set_output(c, op1(c, "Relu", P(&NONZERO, 2, 3, 4))); }

static void leakyrelu(gc *c)
{
	np_node *n = node(c, "LeakyRelu", (np_value *[]){P(&NONZERO, 3, 4)}, 1);
	np_node_set_attr_float(n, "alpha", 0.2f);
	set_output(c, done(c, n));
}

/* A float scalar from a Constant node: constant, so not a parameter. */
static np_value *const_float(gc *c, float v)
{
	np_node *n = node(c, "Constant", NULL, 0);
	np_node_set_attr_float(n, "value_float", v);
	return done(c, n);
}

static void clip11(gc *c)
{
	static const dist d = {-1.0f, 1.0f, 2, {-0.5f, 0.5f}, 0};
	np_value *in[3] = {P(&d, 3, 5), const_float(c, -0.5f), const_float(c, 0.5f)};
	set_output(c, done(c, node(c, "Clip", in, 3)));
}

/* Bounds as initializers (PyTorch's export): parameters with gradients. */
static void clip11_params(gc *c)
{
	static const dist d = {-1.0f, 1.0f, 2, {-0.5f, 0.5f}, 0};
	np_value *x = P(&d, 3, 5);
	np_error err = {0};
	np_tensor *lo = np_model_new_tensor(c->m, NP_FLOAT, 0, NULL, &err);
	np_tensor *hi = np_model_new_tensor(c->m, NP_FLOAT, 0, NULL, &err);
	*(float *)lo->data = -0.5f;
	*(float *)hi->data = 0.5f;
	np_value *in[3] = {x, np_graph_add_initializer(c->g, "lo", lo, &err),
	                   np_graph_add_initializer(c->g, "hi", hi, &err)};
	set_output(c, done(c, node(c, "Clip", in, 3)));
}

static void clip6(gc *c)
{
	static const dist d = {-1.0f, 1.0f, 2, {-0.4f, 0.6f}, 0};
	np_node *n = node(c, "Clip", (np_value *[]){P(&d, 3, 5)}, 1);
	np_node_set_attr_float(n, "min", -0.4f);
	np_node_set_attr_float(n, "max", 0.6f);
	set_output(c, done(c, n));
}

static void sigmoid(gc *c) { set_output(c, op1(c, "Sigmoid", P(&UNIT, 3, 4))); }
static void tanh_(gc *c) { set_output(c, op1(c, "Tanh", P(&UNIT, 3, 4))); }
static void erf_(gc *c) { set_output(c, op1(c, "Erf", P(&UNIT, 3, 4))); }
static void sqrt_(gc *c) { set_output(c, op1(c, "Sqrt", P(&POSITIVE, 3, 4))); }

static void hardsigmoid(gc *c)
{
	/* kinks where 0.2x + 0.5 hits 0 or 1: x = -2.5, 2.5 */
	static const dist d = {-4.0f, 4.0f, 2, {-2.5f, 2.5f}, 0};
	set_output(c, op1(c, "HardSigmoid", P(&d, 4, 5)));
}

static void hardswish(gc *c)
{
	static const dist d = {-4.0f, 4.0f, 2, {-3.0f, 3.0f}, 0};
	set_output(c, op1(c, "HardSwish", P(&d, 4, 5)));
}

static void gelu(gc *c)
{
	static const dist d = {-3.0f, 3.0f, 0, {0}, 0};
	set_output(c, op1(c, "Gelu", P(&d, 3, 5)));
}

static void gelu_tanh(gc *c)
{
	static const dist d = {-3.0f, 3.0f, 0, {0}, 0};
	np_node *n = node(c, "Gelu", (np_value *[]){P(&d, 3, 5)}, 1);
	np_node_set_attr_string(n, "approximate", "tanh");
	set_output(c, done(c, n));
}

static void softmax13(gc *c) { set_output(c, op1(c, "Softmax", P(&UNIT, 2, 3, 4))); }

static void softmax13_axis1(gc *c)
{
	np_node *n = node(c, "Softmax", (np_value *[]){P(&UNIT, 2, 3, 4)}, 1);
	np_node_set_attr_int(n, "axis", 1);
	set_output(c, done(c, n));
}

/* opset 11: axis 1 flattens [2,3,4] into [2,12] */
static void softmax11(gc *c) { set_output(c, op1(c, "Softmax", P(&UNIT, 2, 3, 4))); }

static void maxpool(gc *c)
{
	np_node *n = node(c, "MaxPool", (np_value *[]){PD(2, 2, 5, 5)}, 1);
	ATTR_INTS(n, "kernel_shape", 3, 3);
	ATTR_INTS(n, "strides", 2, 2);
	ATTR_INTS(n, "pads", 1, 1, 1, 1);
	set_output(c, done(c, n));
}

static void maxpool_overlap(gc *c)
{
	np_node *n = node(c, "MaxPool", (np_value *[]){PD(1, 2, 5, 4)}, 1);
	ATTR_INTS(n, "kernel_shape", 2, 2);
	set_output(c, done(c, n));
}

static void avgpool(gc *c)
{
	np_node *n = node(c, "AveragePool", (np_value *[]){P(&UNIT, 2, 2, 5, 5)}, 1);
	ATTR_INTS(n, "kernel_shape", 3, 3);
	ATTR_INTS(n, "strides", 2, 2);
	ATTR_INTS(n, "pads", 1, 1, 1, 1);
	set_output(c, done(c, n));
}

static void avgpool_include_pad(gc *c)
{
	np_node *n = node(c, "AveragePool", (np_value *[]){P(&UNIT, 1, 2, 4, 5)}, 1);
	ATTR_INTS(n, "kernel_shape", 2, 3);
	ATTR_INTS(n, "pads", 1, 1, 0, 1);
	np_node_set_attr_int(n, "count_include_pad", 1);
	set_output(c, done(c, n));
}

static void globalavgpool(gc *c) { set_output(c, op1(c, "GlobalAveragePool", P(&UNIT, 2, 3, 3, 4))); }

/* Training mode: batch statistics, so d x flows through mean and var. */
static void batchnorm(gc *c)
{
	static const dist var = {0.5f, 1.5f, 0, {0}, 0};
	np_value *in[5] = {P(&UNIT, 3, 2, 2, 3), P(&POSITIVE, 2), P(&UNIT, 2),
	                   P(&UNIT, 2), P(&var, 2)};
	np_node *n = node(c, "BatchNormalization", in, 5);
	np_node_set_attr_float(n, "epsilon", 1e-3f);
	set_output(c, done(c, n));
}

static void flatten(gc *c)
{
	np_node *n = node(c, "Flatten", (np_value *[]){P(&UNIT, 2, 3, 2, 2)}, 1);
	np_node_set_attr_int(n, "axis", 2);
	/* a Mul after it, so the shape op is not the last node */
	set_output(c, op2(c, "Mul", done(c, n), P(&UNIT, 1, 4)));
}

static void reshape(gc *c)
{
	np_value *r = op2(c, "Reshape", P(&UNIT, 2, 3, 4), INTS(0, -1, 2));
	set_output(c, op2(c, "Mul", r, P(&UNIT, 6, 1)));
}

static void concat(gc *c)
{
	np_value *in[3] = {P(&UNIT, 2, 1, 3), P(&UNIT, 2, 3, 3), P(&UNIT, 2, 2, 3)};
	np_node *n = node(c, "Concat", in, 3);
	np_node_set_attr_int(n, "axis", 1);
	set_output(c, op2(c, "Mul", done(c, n), P(&UNIT, 6, 1)));
}

static void gather(gc *c)
{
	np_node *n = node(c, "Gather", (np_value *[]){P(&UNIT, 3, 4, 2), INTS(3, -1, 0, 3)}, 2);
	np_node_set_attr_int(n, "axis", 1);
	set_output(c, op2(c, "Mul", done(c, n), P(&UNIT, 4, 1)));
}

static void squeeze_unsqueeze(gc *c)
{
	np_value *u = op2(c, "Unsqueeze", P(&UNIT, 3, 4), INTS(0, -1));
	np_value *s = op2(c, "Squeeze", op2(c, "Mul", u, P(&UNIT, 1, 3, 1, 1)), INTS(3));
	set_output(c, s);
}

/* Identity, Dropout (identity in training too) and Cast to float pass
 * the gradient through unchanged. */
static void identity_dropout_cast(gc *c)
{
	np_value *a = op1(c, "Dropout", op1(c, "Identity", P(&UNIT, 3, 4)));
	np_node *n = node(c, "Cast", &a, 1);
	np_node_set_attr_int(n, "to", NP_FLOAT);
	set_output(c, op2(c, "Mul", done(c, n), P(&UNIT, 4)));
}

/* PyTorch's x.view(x.size(0), -1): Shape -> Gather -> Unsqueeze ->
 * Concat -> Reshape.  Shape reads only x's shape, so the chain is known
 * at plan time even though x is not a constant. */
static void reshape_by_shape(gc *c)
{
	np_value *x = op2(c, "Mul", P(&UNIT, 2, 3, 2, 2), P(&UNIT, 3, 1, 1));
	np_node *g = node(c, "Gather", (np_value *[]){op1(c, "Shape", x), INTS(0)}, 2);
	np_value *n0 = op2(c, "Unsqueeze", op1(c, "Squeeze", done(c, g)), INTS(0));
	np_node *cat = node(c, "Concat", (np_value *[]){n0, INTS(-1)}, 2);
	np_node_set_attr_int(cat, "axis", 0);
	np_value *r = op2(c, "Reshape", x, done(c, cat));
	set_output(c, op2(c, "Mul", r, P(&UNIT, 12)));
}

/* y = Relu(Conv(x)) + x: x is read twice, so its gradient is the sum of
 * two contributions. */
static void residual(gc *c)
{
	np_value *x = P(&UNIT, 1, 2, 4, 4);
	np_value *in[3] = {x, P(&UNIT, 2, 2, 3, 3), P(&UNIT, 2)};
	np_node *n = node(c, "Conv", in, 3);
	ATTR_INTS(n, "pads", 1, 1, 1, 1);
	np_value *z = done(c, n);
	c->kink_value = z->name;
	c->n_kinks = 1;
	np_value *r = op1(c, "Relu", z);
	set_output(c, op2(c, "Add", r, x));
	c->inplace[c->n_inplace++] = z->name;
	c->kept[c->n_kept++] = r->name;    /* Relu's backward reads it */
}

/* Conv -> BN (training) -> Relu -> GlobalAveragePool -> Flatten -> Gemm. */
static void small_net(gc *c)
{
	static const dist var = {0.5f, 1.5f, 0, {0}, 0};
	np_value *in[2] = {P(&UNIT, 2, 2, 3, 3), P(&UNIT, 3, 2, 3, 3)};
	np_node *n = node(c, "Conv", in, 2);
	ATTR_INTS(n, "pads", 1, 1, 1, 1);
	np_value *bin[5] = {done(c, n), P(&POSITIVE, 3), P(&UNIT, 3), P(&UNIT, 3), P(&var, 3)};
	np_value *b = done(c, node(c, "BatchNormalization", bin, 5));
	c->kink_value = b->name;
	c->n_kinks = 1;
	np_value *f = op1(c, "Flatten", op1(c, "GlobalAveragePool", op1(c, "Relu", b)));
	np_value *gin[3] = {f, P(&UNIT, 3, 5), P(&UNIT, 5)};
	set_output(c, done(c, node(c, "Gemm", gin, 3)));
	c->inplace[c->n_inplace++] = b->name;
}

/* What torch.onnx.export makes of two BNs with equal tensors: one
 * initializer, read by the second BN through an Identity node (running
 * statistics of an untrained model; shifts tied by equal gradients in a
 * trained ResNet's block and its shortcut).  Statistics reached through
 * Identity stay state, not parameters; a shift reached so is trained. */
static void bn_through_identity(gc *c)
{
	static const dist var = {0.5f, 1.5f, 0, {0}, 0};
	np_value *in[2] = {P(&UNIT, 2, 2, 3, 3), P(&UNIT, 3, 2, 3, 3)};
	np_node *n = node(c, "Conv", in, 2);
	ATTR_INTS(n, "pads", 1, 1, 1, 1);
	np_value *z = done(c, n);
	np_value *shift = P(&UNIT, 3), *mean = P(&UNIT, 3), *v = P(&var, 3);
	np_value *b1in[5] = {z, P(&POSITIVE, 3), shift, mean, v};
	np_value *b1 = done(c, node(c, "BatchNormalization", b1in, 5));
	np_value *b2in[5] = {z, P(&POSITIVE, 3), op1(c, "Identity", shift),
	                     op1(c, "Identity", mean), op1(c, "Identity", v)};
	np_value *b2 = done(c, node(c, "BatchNormalization", b2in, 5));
	np_value *s = op2(c, "Add", b1, b2);
	c->kink_value = s->name;
	c->n_kinks = 1;
	np_value *f = op1(c, "Flatten", op1(c, "GlobalAveragePool", op1(c, "Relu", s)));
	np_value *gin[3] = {f, P(&UNIT, 3, 5), P(&UNIT, 5)};
	set_output(c, done(c, node(c, "Gemm", gin, 3)));
	/* BN -> Add -> Relu on one buffer, as in a ResNet block */
	c->inplace[c->n_inplace++] = b1->name;
	c->inplace[c->n_inplace++] = s->name;
	c->kept[c->n_kept++] = z->name;    /* BN's backward reads it */
}

/* Conv 3x3 (16 -> out_ch channels, batch images of side x side,
 * padded): where the nets below start. */
static np_value *conv3x3_in(gc *c, int64_t batch, int64_t side, int64_t out_ch)
{
	static const dist small = {-0.3f, 0.3f, 0, {0}, 0};
	np_value *in[2] = {P(&UNIT, batch, 16, side, side), P(&small, out_ch, 16, 3, 3)};
	np_node *n = node(c, "Conv", in, 2);
	ATTR_INTS(n, "pads", 1, 1, 1, 1);
	return done(c, n);
}

/* conv3x3_in (16 -> 16, 2 images of side x side) -> BatchNormalization,
 * its scale and shift drawn from the given distributions: the head of
 * the two nets below.  *conv: the Conv's output. */
static np_value *conv_bn(gc *c, int64_t side, const dist *scale,
                         const dist *shift, np_value **conv)
{
	static const dist var = {0.5f, 1.5f, 0, {0}, 0};
	*conv = conv3x3_in(c, 2, side, 16);
	np_value *bin[5] = {*conv, P(scale, 16), P(shift, 16), P(&UNIT, 16), P(&var, 16)};
	return done(c, node(c, "BatchNormalization", bin, 5));
}

/* 16 channels, so the activations between Conv, BN, Relu, Add and
 * MaxPool stay blocked (nChw16c or nChw8c, as the CPU wants): Conv -> BN -> Relu -> Conv -> Add
 * (residual: Relu's output read twice) -> AveragePool -> Sigmoid ->
 * GlobalAveragePool (plain output for Flatten) -> Flatten -> Gemm. */
static void blocked_net(gc *c)
{
	static const dist small = {-0.3f, 0.3f, 0, {0}, 0};
	/* BN's output scale * xhat + shift stays clear of Relu's kink when
	 * the scale is small and the shift is not (either sign). */
	static const dist scale = {0.05f, 0.1f, 0, {0}, 0};
	static const dist shift = {-1.5f, 1.5f, 0, {0}, 0.6f};
	np_value *z;
	np_node *n;
	np_value *b = conv_bn(c, 4, &scale, &shift, &z);
	c->kink_value = b->name;
	c->n_kinks = 1;
	np_value *r = op1(c, "Relu", b);
	np_value *in2[3] = {r, P(&small, 16, 16, 3, 3), P(&UNIT, 16)};
	n = node(c, "Conv", in2, 3);
	ATTR_INTS(n, "pads", 1, 1, 1, 1);
	np_value *z2 = done(c, n);
	np_value *s = op2(c, "Add", z2, r);
	n = node(c, "AveragePool", &s, 1);   /* MaxPool: argmax ties under h */
	ATTR_INTS(n, "kernel_shape", 2, 2);
	ATTR_INTS(n, "strides", 2, 2);
	np_value *a = done(c, n);
	np_value *m = op1(c, "Sigmoid", a);
	np_value *f = op1(c, "Flatten", op1(c, "GlobalAveragePool", m));
	np_value *gin[3] = {f, P(&UNIT, 16, 3), P(&UNIT, 3)};
	set_output(c, done(c, node(c, "Gemm", gin, 3)));
	c->blocked[c->n_blocked++] = z->name;
	c->blocked[c->n_blocked++] = r->name;
	c->blocked[c->n_blocked++] = s->name;
	c->blocked[c->n_blocked++] = m->name;
	/* in place on blocked buffers too */
	c->inplace[c->n_inplace++] = b->name;
	c->inplace[c->n_inplace++] = z2->name;
	c->inplace[c->n_inplace++] = a->name;
	c->kept[c->n_kept++] = r->name;
}

/* conv3x3_in -> Sigmoid: the blocked value the nets below start from. */
static np_value *conv_sigmoid_in(gc *c, int64_t batch, int64_t side,
                                 int64_t out_ch)
{
	return op1(c, "Sigmoid", conv3x3_in(c, batch, side, out_ch));
}

/* z -> Sigmoid -> GlobalAveragePool -> Flatten -> Gemm (ch -> 3): the
 * output; returns the Sigmoid's value. */
static np_value *sigmoid_gap_gemm(gc *c, np_value *z, int64_t ch)
{
	np_value *s = op1(c, "Sigmoid", z);
	np_value *f = op1(c, "Flatten", op1(c, "GlobalAveragePool", s));
	np_value *gin[3] = {f, P(&UNIT, ch, 3), P(&UNIT, 3)};
	set_output(c, done(c, node(c, "Gemm", gin, 3)));
	return s;
}

/* A 1x1 convolution (stride 1, no padding, no bias) between two blocked
 * values: channels-last, its weight gradient is one matmul on the
 * buffers (runtime/ops/conv.c, conv_prepare_bw_matmul).  Conv 3x3 ->
 * Sigmoid -> Conv 1x1 (16 -> 32) -> Sigmoid -> GlobalAveragePool ->
 * Flatten -> Gemm; smooth, so no kinks. */
static void conv1x1_net(gc *c)
{
	np_value *s1 = conv_sigmoid_in(c, 2, 4, 16);
	np_value *in2[2] = {s1, P(&UNIT, 32, 16, 1, 1)};
	np_value *z = done(c, node(c, "Conv", in2, 2));
	sigmoid_gap_gemm(c, z, 32);
	c->blocked[c->n_blocked++] = s1->name;
	c->blocked[c->n_blocked++] = z->name;
}

/* A depthwise convolution (with bias) between two blocked values, which
 * bf16 runs store in bf16 (rt.h, PRECISION).  Conv 3x3 (16 -> 32) ->
 * Sigmoid -> depthwise Conv 3x3 -> Sigmoid -> GlobalAveragePool ->
 * Flatten -> Gemm. */
static void depthwise_net_of(gc *c, int64_t batch, int64_t side,
                             int64_t stride, int64_t dilation)
{
	np_value *s1 = conv_sigmoid_in(c, batch, side, 32);
	np_value *s2 = sigmoid_gap_gemm(c, depthwise3x3(c, s1, 32, stride, dilation), 32);
	c->blocked[c->n_blocked++] = s1->name;
	c->blocked[c->n_blocked++] = s2->name;
}

static void depthwise_net(gc *c) { depthwise_net_of(c, 2, 5, 1, 1); }

/* Strided and dilated, on 9 images: in bf16 channels-last, more than
 * one block of conv_dw_bw_bf16's sums, the last one short. */
static void depthwise_net_s2d2(gc *c) { depthwise_net_of(c, 9, 6, 2, 2); }

/* BatchNormalization -> Clip(0, 1) (constant bounds), which bf16
 * channels-last runs fuse (rt.h, PLANS): Conv 3x3 -> BN -> Clip ->
 * Conv 3x3 -> Sigmoid -> GlobalAveragePool -> Flatten -> Gemm, on 6x6
 * maps: 72 positions, more than one block of the direct kernels' sums
 * (runtime/ops/bn.c).  BN's shifts keep its outputs 0.1 from both
 * bounds (scale * xhat stays within 0.09), on both sides of each, so
 * the mask passes and clamps. */
static void bn_clip_net(gc *c)
{
	static const dist small = {-0.3f, 0.3f, 0, {0}, 0};
	static const dist scale = {0.01f, 0.03f, 0, {0}, 0};
	static const dist shift = {-0.8f, 1.8f, 2, {0.0f, 1.0f}, 0};
	np_value *z;
	np_value *b = conv_bn(c, 6, &scale, &shift, &z);
	np_value *cin[3] = {b, const_float(c, 0.0f), const_float(c, 1.0f)};
	np_value *r = done(c, node(c, "Clip", cin, 3));
	np_value *in2[2] = {r, P(&small, 16, 16, 3, 3)};
	np_node *n = node(c, "Conv", in2, 2);
	ATTR_INTS(n, "pads", 1, 1, 1, 1);
	sigmoid_gap_gemm(c, done(c, n), 16);
	c->blocked[c->n_blocked++] = r->name;
}

/* The in-place rules (runtime/rt.h, PLANS): Relu writes over the Conv
 * output; Sigmoid may not write over Relu's output, nor Add over
 * Sigmoid's (their backward reads y: a wrong plan shows in the gradients
 * here), so Add writes over its second operand; Tanh over Add's. */
static void inplace_rules(gc *c)
{
	np_value *x = P(&UNIT, 2, 3, 4, 4);
	np_value *in[2] = {x, P(&UNIT, 4, 3, 3, 3)};
	np_node *n = node(c, "Conv", in, 2);
	ATTR_INTS(n, "pads", 1, 1, 1, 1);
	np_value *z = done(c, n);
	c->kink_value = z->name;
	c->n_kinks = 1;
	np_value *r = op1(c, "Relu", z);
	np_value *s = op1(c, "Sigmoid", r);
	np_value *in2[2] = {x, P(&UNIT, 4, 3, 1, 1)};
	np_value *z2 = done(c, node(c, "Conv", in2, 2));
	np_value *a = op2(c, "Add", s, z2);
	np_value *t = op1(c, "Tanh", a);
	np_value *f = op1(c, "Flatten", op1(c, "GlobalAveragePool", t));
	np_value *gin[3] = {f, P(&UNIT, 4, 3), P(&UNIT, 3)};
	set_output(c, done(c, node(c, "Gemm", gin, 3)));
	c->inplace[c->n_inplace++] = z->name;
	c->inplace[c->n_inplace++] = z2->name;
	c->inplace[c->n_inplace++] = a->name;
	c->kept[c->n_kept++] = r->name;
	c->kept[c->n_kept++] = s->name;
}

/* Conv -> OP(z, S[16,1,1]) -> Conv: the broadcast operand must keep the
 * activations plain (it is indexed as NCHW). */
static void bcast_between_convs(gc *c, const char *op)
{
	static const dist small = {-0.3f, 0.3f, 0, {0}, 0};
	np_value *in[2] = {P(&UNIT, 2, 1, 4, 4), P(&small, 16, 1, 3, 3)};
	np_node *n = node(c, "Conv", in, 2);
	ATTR_INTS(n, "pads", 1, 1, 1, 1);
	np_value *z = op2(c, op, done(c, n), P(&UNIT, 16, 1, 1));
	np_value *in2[2] = {z, P(&small, 8, 16, 3, 3)};
	n = node(c, "Conv", in2, 2);
	ATTR_INTS(n, "pads", 1, 1, 1, 1);
	set_output(c, done(c, n));
}
static void prelu_between_convs(gc *c) { bcast_between_convs(c, "PRelu"); }
static void mul_between_convs(gc *c) { bcast_between_convs(c, "Mul"); }
static void add_between_convs(gc *c) { bcast_between_convs(c, "Add"); }

/* ------------------------------------------------- transformer ops */

/* An int64 tensor of any shape (Gather's indices). */
static np_value *ints_shaped(gc *c, int rank, const int64_t *dims,
                             const int64_t *vals)
{
	np_error err = {0};
	char name[32];
	snprintf(name, sizeof name, "i%d", c->n_vals++);
	np_tensor *t = np_model_new_tensor(c->m, NP_INT64, rank, dims, &err);
	memcpy(t->data, vals, sizeof(int64_t) * (size_t)t->nelem);
	return np_graph_add_initializer(c->g, name, t, &err);
}

/* A bool tensor: a mask (nonzero entries of vals true). */
static np_value *bools(gc *c, int rank, const int64_t *dims, const int64_t *vals)
{
	np_error err = {0};
	char name[32];
	snprintf(name, sizeof name, "b%d", c->n_vals++);
	np_tensor *t = np_model_new_tensor(c->m, NP_BOOL, rank, dims, &err);
	for (int64_t i = 0; i < t->nelem; i++)
		((uint8_t *)t->data)[i] = vals[i] != 0;
	return np_graph_add_initializer(c->g, name, t, &err);
}

/* A node with n_out outputs, inserted. */
static np_node *node_n(gc *c, const char *op, np_value **in, int n_in, int n_out)
{
	np_error err = {0};
	np_value *out[8];
	char name[32];
	for (int k = 0; k < n_out; k++) {
		snprintf(name, sizeof name, "%s_%d", op, c->n_vals++);
		out[k] = np_graph_new_value(c->g, name, &err);
	}
	np_node *n = np_graph_new_node(c->g, op, "", name, in, n_in, out, n_out);
	np_graph_insert_node(c->g, n);
	return n;
}

static np_value *concat_axis(gc *c, np_value **in, int n, int axis)
{
	np_node *k = node(c, "Concat", in, n);
	np_node_set_attr_int(k, "axis", axis);
	return done(c, k);
}

static void transpose(gc *c)
{
	np_node *n = node(c, "Transpose", (np_value *[]){P(&UNIT, 2, 3, 4)}, 1);
	ATTR_INTS(n, "perm", 2, 0, 1);
	set_output(c, op2(c, "Mul", done(c, n), P(&UNIT, 4, 2, 3)));
}

/* Negative steps, negative and out-of-range bounds, axes given; the
 * elements not sliced get no gradient. */
static void slice_steps(gc *c)
{
	np_value *in[5] = {P(&UNIT, 4, 5, 6), INTS(-1, 1), INTS(-100, 100),
	                   INTS(0, -1), INTS(-2, 2)};
	np_value *s = done(c, node(c, "Slice", in, 5));
	set_output(c, op2(c, "Mul", s, P(&UNIT, 2, 5, 3)));
}

/* torch.roll(x, 1, dims=1) as exported: Concat(x[:, -1:], x[:, :-1]). */
static void roll_slice_concat(gc *c)
{
	np_value *x = P(&UNIT, 2, 4, 3);
	np_value *a[4] = {x, INTS(-1), INTS(INT64_MAX), INTS(1)};
	np_value *b[4] = {x, INTS(0), INTS(-1), INTS(1)};
	np_value *parts[2] = {done(c, node(c, "Slice", a, 4)),
	                      done(c, node(c, "Slice", b, 4))};
	set_output(c, op2(c, "Mul", concat_axis(c, parts, 2, 1), P(&UNIT, 4, 3)));
}

/* q, k, v = Split(x): parts of sizes 1, 3, 2, read out of order; the
 * middle one by nobody (its gradient is zero). */
static void split_parts(gc *c)
{
	np_node *n = node_n(c, "Split", (np_value *[]){P(&UNIT, 2, 6, 3), INTS(1, 3, 2)},
	                    2, 3);
	np_node_set_attr_int(n, "axis", 1);
	np_value *parts[2] = {n->outputs[2], n->outputs[0]};
	set_output(c, op2(c, "Mul", concat_axis(c, parts, 2, 1), P(&UNIT, 3, 3)));
}

/* Opset 11: the parts as an attribute. */
static void split_attr(gc *c)
{
	np_node *n = node_n(c, "Split", (np_value *[]){P(&UNIT, 4, 3)}, 1, 2);
	ATTR_INTS(n, "split", 1, 3);
	np_value *parts[2] = {n->outputs[1], n->outputs[0]};
	set_output(c, op2(c, "Mul", concat_axis(c, parts, 2, 0), P(&UNIT, 4, 3)));
}

/* [3,1] to [2,3,4]: each element read 8 times, its gradient their sum. */
static void expand(gc *c)
{
	np_value *e = op2(c, "Expand", P(&UNIT, 3, 1), INTS(2, 3, 4));
	set_output(c, op2(c, "Mul", e, P(&UNIT, 2, 3, 4)));
}

/* Where(mask [3,1], X [4], Y [2,1,4]): both operands broadcast. */
static void where_bcast(gc *c)
{
	np_value *in[3] = {bools(c, 2, DIMS(3, 1), DIMS(1, 0, 1)), P(&UNIT, 4),
	                   P(&UNIT, 2, 1, 4)};
	set_output(c, op2(c, "Mul", done(c, node(c, "Where", in, 3)),
	                  P(&UNIT, 2, 3, 4)));
}

/* LeakyReLU as Where(Greater(x, 0), x, 0.1 x): x reaches a comparison,
 * whose (empty) gradient must not disturb the other readers'. */
static void where_greater(gc *c)
{
	np_value *x = P(&NONZERO, 3, 4);
	np_value *cond = op2(c, "Greater", x, const_float(c, 0.0f));
	np_value *in[3] = {cond, x, op2(c, "Mul", x, const_float(c, 0.1f))};
	set_output(c, done(c, node(c, "Where", in, 3)));
}

/* nn.MultiheadAttention's key_padding_mask: scores + Where(mask, -1e4,
 * 0), softmax over keys, times V; Q K^T through Transpose. */
static void attention_masked(gc *c)
{
	np_value *q = P(&UNIT, 2, 3, 4), *k = P(&UNIT, 2, 3, 4), *v = P(&UNIT, 2, 3, 4);
	np_node *t = node(c, "Transpose", &k, 1);
	ATTR_INTS(t, "perm", 0, 2, 1);
	np_value *s = op2(c, "MatMul", q, done(c, t));
	np_value *m = bools(c, 3, DIMS(2, 1, 3), DIMS(0, 0, 1, 0, 1, 1));
	np_value *win[3] = {m, const_float(c, -1e4f), const_float(c, 0.0f)};
	np_value *a = op1(c, "Softmax", op2(c, "Add", s, done(c, node(c, "Where", win, 3))));
	set_output(c, op2(c, "MatMul", a, v));
}

static void reducemean_last(gc *c)
{
	np_node *n = node(c, "ReduceMean", (np_value *[]){P(&UNIT, 2, 3, 4)}, 1);
	ATTR_INTS(n, "axes", -1);
	set_output(c, op2(c, "Mul", done(c, n), P(&UNIT, 3, 1)));
}

/* Opset 18: the axes as input 1. */
static void reducemean18(gc *c)
{
	np_node *n = node(c, "ReduceMean", (np_value *[]){P(&UNIT, 2, 3, 4), INTS(0, 2)}, 2);
	np_node_set_attr_int(n, "keepdims", 0);
	set_output(c, op2(c, "Mul", done(c, n), P(&UNIT, 3)));
}

/* Opset 13: ReduceSum's axes are already an input. */
static void reducesum(gc *c)
{
	np_node *n = node(c, "ReduceSum", (np_value *[]){P(&UNIT, 2, 3, 4), INTS(1)}, 2);
	np_node_set_attr_int(n, "keepdims", 0);
	set_output(c, op2(c, "Mul", done(c, n), P(&UNIT, 2, 4)));
}

/* Distinct values: the maximum is unique and stays so under +-h. */
static void reducemax(gc *c)
{
	np_node *n = node(c, "ReduceMax", (np_value *[]){PD(2, 5, 3)}, 1);
	ATTR_INTS(n, "axes", 1);
	set_output(c, op2(c, "Mul", done(c, n), P(&UNIT, 1, 3)));
}

/* nn.LayerNorm(8) at opset 17: scale and bias trained. */
static void layernorm(gc *c)
{
	np_value *in[3] = {P(&UNIT, 2, 3, 8), P(&POSITIVE, 8), P(&UNIT, 8)};
	np_value *y = done(c, node(c, "LayerNormalization", in, 3));
	set_output(c, op2(c, "Mul", y, P(&UNIT, 3, 8)));
}

/* Over the last two axes (inner 12), no bias. */
static void layernorm_axis1(gc *c)
{
	np_value *in[2] = {P(&UNIT, 2, 3, 4), P(&POSITIVE, 3, 4)};
	np_node *n = node(c, "LayerNormalization", in, 2);
	np_node_set_attr_int(n, "axis", 1);
	np_node_set_attr_float(n, "epsilon", 1e-3f);
	set_output(c, op2(c, "Mul", done(c, n), P(&UNIT, 3, 4)));
}

/* nn.LayerNorm before opset 17, op by op: (x - mean) / sqrt(var + eps)
 * * w + b, the variance as ReduceMean(Pow(x - mean, 2)). */
static void layernorm_decomposed(gc *c)
{
	np_value *x = P(&UNIT, 2, 3, 6);
	np_node *m = node(c, "ReduceMean", &x, 1);
	ATTR_INTS(m, "axes", -1);
	np_value *d = op2(c, "Sub", x, done(c, m));
	np_value *sq = op2(c, "Pow", d, const_float(c, 2.0f));
	np_node *v = node(c, "ReduceMean", &sq, 1);
	ATTR_INTS(v, "axes", -1);
	np_value *sd = op1(c, "Sqrt", op2(c, "Add", done(c, v), const_float(c, 1e-5f)));
	np_value *y = op2(c, "Mul", op2(c, "Div", d, sd), P(&POSITIVE, 6));
	set_output(c, op2(c, "Mul", op2(c, "Add", y, P(&UNIT, 6)), P(&UNIT, 3, 6)));
}

/* nn.Embedding: a [10, 4] table read by [2, 3] token ids, some
 * repeated (1 three times, 3 twice): scatter-add into the table. */
static void embedding(gc *c)
{
	np_value *ids = ints_shaped(c, 2, DIMS(2, 3), DIMS(1, 3, 1, 7, 1, 3));
	np_value *e = op2(c, "Gather", P(&UNIT, 10, 4), ids);
	set_output(c, op2(c, "Mul", e, P(&UNIT, 3, 4)));
}

/* A shared [3,4] A against a stack of B [2,3,4,5]: dA sums the batch. */
static void matmul_bcast_a(gc *c)
{
	set_output(c, op2(c, "MatMul", P(&UNIT, 3, 4), P(&UNIT, 2, 3, 4, 5)));
}

/* 1-D operands: A [4] @ B [2,4,5] and A [2,3,4] @ B [4]. */
static void matmul_vec_a(gc *c)
{
	set_output(c, op2(c, "MatMul", P(&UNIT, 4), P(&UNIT, 2, 4, 5)));
}

static void matmul_vec_b(gc *c)
{
	set_output(c, op2(c, "MatMul", P(&UNIT, 2, 3, 4), P(&UNIT, 4)));
}

/* What exports compute from Shape, which must fold at plan time (Range
 * refuses a length it cannot know): position ids Range(0, T, 1) with T
 * read from x's shape, into an embedding table; and torch's expand
 * idiom, Where(Equal(shape, -1), 1, shape) over ConstantOfShape, as
 * Expand's target. */
static void shape_arith_positions(gc *c)
{
	np_value *x = P(&UNIT, 2, 5, 4);
	np_value *shp = op1(c, "Shape", x);
	np_node *cz = node(c, "ConstantOfShape", (np_value *[]){op1(c, "Shape", shp)}, 1);
	np_node *ci = node(c, "Cast", (np_value *[]){done(c, cz)}, 1);
	np_node_set_attr_int(ci, "to", NP_INT64);
	np_value *zi = done(c, ci);
	np_value *eq = op2(c, "Equal", shp, op2(c, "Sub", zi, INTS(1)));
	np_value *win[3] = {eq, op2(c, "Add", zi, INTS(1)), shp};
	np_value *tgt = done(c, node(c, "Where", win, 3));
	np_value *y = op2(c, "Add", x, op2(c, "Expand", P(&UNIT, 1, 1, 4), tgt));
	np_value *t = op2(c, "Gather", shp, ints_shaped(c, 0, NULL, DIMS(1)));
	np_value *rin[3] = {ints_shaped(c, 0, NULL, DIMS(0)), t,
	                    ints_shaped(c, 0, NULL, DIMS(1))};
	np_value *ids = done(c, node(c, "Range", rin, 3));
	np_value *pe = op2(c, "Gather", P(&UNIT, 6, 4), ids);
	set_output(c, op2(c, "Mul", op2(c, "Add", y, pe), P(&UNIT, 5, 4)));
}

/* Output and every gradient of one plan, for layout_parity(). */
/* How run_once() runs: precision and forward mode (bf16_parity). */
static bool run_bf16;
static np_rt_mode run_mode = NP_RT_TRAIN;
static char run_bf16_value[64];     /* a value asked to be bf16-stored */
static bool run_bf16_seen;          /* ... and it was */
static int run_fused;               /* clamps the plan fused (rt.h, PLANS) */
static bool run_nhwc;               /* activations were channels-last */

static double *run_once(void (*build)(gc *), int64_t *n, np_error *err)
{
	gc c;
	gc_init(&c, 13, 7);
	build(&c);
	np_rt *rt = np_rt_new(c.m, 1, err);
	double *v = NULL;
	if (rt && train_every_input(rt, err) == NP_OK &&
	    (!run_bf16 || np_rt_set_bf16(rt, true, err) == NP_OK) &&
	    np_rt_run(rt, NULL, 0, run_mode, err) == NP_OK) {
		run_bf16_seen = run_bf16_value[0] && np_rt_value_bf16(rt, run_bf16_value);
		run_fused = np_rt_fused_clamps(rt);
		run_nhwc = np_rt_block(rt) == 1;
		const np_rtensor *y = np_rt_output(rt, 0);
		float *g = np_rt_output_grad(rt, 0);
		for (int64_t i = 0; i < y->nelem; i++)
			g[i] = (float)(i % 7) - 3;
		if (np_rt_backward(rt, err) == NP_OK) {
			*n = y->nelem;
			for (int i = 0; i < np_rt_n_params(rt); i++)
				*n += np_rt_param(rt, i)->grad ? np_rt_param(rt, i)->nelem : 0;
			v = malloc(sizeof(double) * (size_t)(*n + 1));
			int64_t k = 0;
			for (int64_t i = 0; i < y->nelem; i++)
				v[k++] = ((const float *)y->data)[i];
			for (int i = 0; i < np_rt_n_params(rt); i++)
				for (int64_t j = 0; np_rt_param(rt, i)->grad && j < np_rt_param(rt, i)->nelem; j++)
					v[k++] = np_rt_param(rt, i)->grad[j];
		}
	}
	np_rt_free(rt);
	np_model_free(c.m);
	return v;
}

/* The largest |got[i] - want[i]| over n values; *scale: the largest
 * |want[i]|, what the difference is measured against. */
static double max_diff(const double *got, const double *want, int64_t n,
                       double *scale)
{
	double worst = 0;
	*scale = 0;
	for (int64_t i = 0; i < n; i++) {
		worst = fmax(worst, fabs(got[i] - want[i]));
		*scale = fmax(*scale, fabs(want[i]));
	}
	return worst;
}

/* bf16 storage (rt.h, PRECISION) against f32, the same layout: output
 * and gradients within bf16's rounding (8 significant bits, through a
 * few layers: 3% of the largest value), after a training forward and
 * after an inference one (BatchNormalization's backward on running
 * statistics, a loop over the stored values); kept: a value that must
 * be stored in bf16; clamps: how many clamps (Relu, Clip) follow a
 * BatchNormalization, which bf16 channels-last runs fuse into it
 * (rt.h, PLANS; the f32 run keeps them apart, so it is the reference
 * for the fused kernels). */
static void bf16_parity(const char *what, void (*build)(gc *), const char *kept,
                        int clamps)
{
	if (!np_rt_bf16_supported()) {
		char why[160];
		snprintf(why, sizeof why, "oneDNN runs %s, no bf16 (isa.test runs "
		         "this test under each ISA)", np_rt_isa_name());
		skip("bf16 storage vs f32", why);
		return;
	}
	for (int m = 0; m < 2; m++) {
		np_error err = {0};
		int64_t nf = 0, nb = 0;
		run_mode = m == 0 ? NP_RT_TRAIN : NP_RT_INFER;
		run_bf16 = false;
		double *f = run_once(build, &nf, &err);
		run_bf16 = true;
		snprintf(run_bf16_value, sizeof run_bf16_value, "%s", kept);
		run_bf16_seen = false;
		double *b = f ? run_once(build, &nb, &err) : NULL;
		run_bf16 = false;
		run_bf16_value[0] = 0;
		run_mode = NP_RT_TRAIN;
		const char *mode = m == 0 ? "training forward" : "inference forward";
		if (!f || !b || nf != nb) {
			ok(0, "%s: bf16 vs f32, %s: %s", what, mode,
			   err.msg[0] ? err.msg : "size differs");
		} else {
			double scale, worst = max_diff(b, f, nf, &scale);
			int want = run_nhwc ? clamps : 0;
			ok(run_bf16_seen && worst <= 3e-2 * fmax(scale, 1.0) &&
			   run_fused == want,
			   "%s: bf16 vs f32, %s: %s stored in bf16 %s, clamps fused "
			   "%d of %d (%s), output and gradients max |diff| %.3g "
			   "(scale %.3g)", what, mode, kept,
			   run_bf16_seen ? "yes" : "NO", run_fused, want,
			   run_nhwc ? "channels-last" : "blocked: none",
			   worst, scale);
		}
		free(f);
		free(b);
	}
}

/* The blocked layout against the plain one (whose ops the finite
 * differences above and the ONNX node tests check): the same output and
 * gradients to float rounding. */
static void layout_parity(const char *what, void (*build)(gc *))
{
	np_error err = {0};
	int64_t nb = 0, np_ = 0;
	const char *was = getenv("NEPENC_PLAIN_LAYOUT");
	char *saved = was ? strdup(was) : NULL;
	unsetenv("NEPENC_PLAIN_LAYOUT");
	double *b = run_once(build, &nb, &err);
	setenv("NEPENC_PLAIN_LAYOUT", "1", 1);
	double *p = b ? run_once(build, &np_, &err) : NULL;
	if (saved)
		setenv("NEPENC_PLAIN_LAYOUT", saved, 1);
	else
		unsetenv("NEPENC_PLAIN_LAYOUT");
	free(saved);
	if (!b || !p || nb != np_) {
		ok(0, "%s: blocked vs plain layout: %s", what, err.msg[0] ? err.msg : "size differs");
	} else {
		double scale, worst = max_diff(b, p, nb, &scale);
		ok(worst <= 1e-5 * fmax(scale, 1.0),
		   "%s: blocked vs plain layout, output and gradients: max |diff| %.3g (scale %.3g)",
		   what, worst, scale);
	}
	free(b);
	free(p);
}

int main(void)
{
	static const struct { const char *what; int opset; void (*build)(gc *); } cases[] = {
		{"Conv pads/strides/bias", 13, conv_pads_strides},
		{"Conv groups/dilation", 13, conv_groups_dilation},
		{"Conv depthwise/stride 2", 13, conv_depthwise},
		{"Conv depthwise, 32 channels, 1x1 map", 13, conv_depthwise_1x1_map},
		{"Conv depthwise, 32 channels, 2x2 map", 13, conv_depthwise_2x2_map},
		{"Conv depthwise, 32 channels, 3x3 map, stride 2, dilation 2", 13,
		 conv_depthwise_3x3_s2d2},
		{"Gemm", 13, gemm_plain},
		{"Gemm transA/transB/alpha/beta", 13, gemm_trans},
		{"Gemm transB, C [1,N]", 13, gemm_transb_bias_row},
		{"MatMul 2-D", 13, matmul_2d},
		{"MatMul batched", 13, matmul_batched},
		{"MatMul broadcast", 13, matmul_broadcast},
		{"Add same shape", 13, add_same},
		{"Add broadcast", 13, add_bcast},
		{"Sub broadcast both", 13, sub_bcast},
		{"Mul broadcast", 13, mul_bcast},
		{"Div broadcast", 13, div_bcast},
		{"Div negative divisor", 13, div_neg},
		{"Pow broadcast", 13, pow_bcast},
		{"PRelu", 13, prelu},
		{"Relu", 13, relu},
		{"LeakyRelu", 13, leakyrelu},
		{"Clip opset 11", 13, clip11},
		{"Clip opset 11, bounds as parameters", 13, clip11_params},
		{"Clip opset 6", 6, clip6},
		{"Sigmoid", 13, sigmoid},
		{"Tanh", 13, tanh_},
		{"HardSigmoid", 13, hardsigmoid},
		{"HardSwish", 14, hardswish},
		{"Erf", 13, erf_},
		{"Sqrt", 13, sqrt_},
		{"Gelu", 20, gelu},
		{"Gelu tanh", 20, gelu_tanh},
		{"Softmax opset 13", 13, softmax13},
		{"Softmax opset 13 axis 1", 13, softmax13_axis1},
		{"Softmax opset 11", 11, softmax11},
		{"MaxPool pads/strides", 13, maxpool},
		{"MaxPool overlapping", 13, maxpool_overlap},
		{"AveragePool pads/strides", 13, avgpool},
		{"AveragePool count_include_pad", 13, avgpool_include_pad},
		{"GlobalAveragePool", 13, globalavgpool},
		{"BatchNormalization training", 15, batchnorm},
		{"Flatten", 13, flatten},
		{"Reshape", 13, reshape},
		{"Concat", 13, concat},
		{"Gather", 13, gather},
		{"Unsqueeze/Squeeze", 13, squeeze_unsqueeze},
		{"Identity/Dropout/Cast", 13, identity_dropout_cast},
		{"Reshape by Shape arithmetic", 13, reshape_by_shape},
		{"residual Relu(Conv(x)) + x", 13, residual},
		{"Conv-BN-Relu-GAP-Gemm", 13, small_net},
		{"BN statistics and shift through Identity", 13, bn_through_identity},
		{"16 channels, blocked layout", 13, blocked_net},
		{"in place: Relu, Add, Tanh; not over Relu or Sigmoid", 13, inplace_rules},
		{"Transpose perm 2,0,1", 13, transpose},
		{"Slice negative steps, clamped bounds", 13, slice_steps},
		{"roll as Slice + Concat", 13, roll_slice_concat},
		{"Split input parts, one unread", 13, split_parts},
		{"Split opset 11 attribute", 11, split_attr},
		{"Expand [3,1] to [2,3,4]", 13, expand},
		{"Where, both operands broadcast", 16, where_bcast},
		{"Where(Greater(x, 0), x, 0.1x)", 16, where_greater},
		{"attention with a key padding mask", 13, attention_masked},
		{"ReduceMean last axis", 13, reducemean_last},
		{"ReduceMean opset 18 axes input", 18, reducemean18},
		{"ReduceSum axes input", 13, reducesum},
		{"ReduceMax", 13, reducemax},
		{"LayerNormalization scale, bias", 17, layernorm},
		{"LayerNormalization axis 1, no bias", 17, layernorm_axis1},
		{"LayerNorm decomposed (opset 13)", 13, layernorm_decomposed},
		{"Gather embedding, repeated ids", 13, embedding},
		{"MatMul A broadcast over B's batch", 13, matmul_bcast_a},
		{"MatMul 1-D A", 13, matmul_vec_a},
		{"MatMul 1-D B", 13, matmul_vec_b},
		{"position ids and expand from Shape", 13, shape_arith_positions},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		gradcheck(cases[i].what, cases[i].opset, cases[i].build);
	default_trainable("BN through Identity", bn_through_identity);
	threads_per_runtime();
	layout_parity("16 channels", blocked_net);
	layout_parity("Conv -> PRelu [16,1,1] -> Conv", prelu_between_convs);
	layout_parity("Conv -> Mul [16,1,1] -> Conv", mul_between_convs);
	layout_parity("Conv -> Add [16,1,1] -> Conv", add_between_convs);
	/* Channels-last, the layout of bf16 runs on AMX (rt.h, LAYOUT),
	 * forced on any CPU: finite differences and parity with plain. */
	setenv("NEPENC_CHANNELS_LAST", "1", 1);
	gradcheck("16 channels, channels-last layout", 13, blocked_net);
	gradcheck("Conv 1x1 between channels-last values", 13, conv1x1_net);
	gradcheck("depthwise Conv between channels-last values", 13, depthwise_net);
	layout_parity("Conv 1x1, channels-last", conv1x1_net);
	layout_parity("16 channels, channels-last", blocked_net);
	layout_parity("Conv -> Mul [16,1,1] -> Conv, channels-last", mul_between_convs);
	unsetenv("NEPENC_CHANNELS_LAST");
	bf16_parity("16 channels", blocked_net, "Relu_8", 1);
	bf16_parity("Conv 1x1", conv1x1_net, "Sigmoid_3", 0);
	bf16_parity("depthwise Conv", depthwise_net, "Sigmoid_3", 0);
	bf16_parity("depthwise Conv, stride 2, dilation 2, 9 images",
	            depthwise_net_s2d2, "Sigmoid_3", 0);
	bf16_parity("BatchNormalization + Clip", bn_clip_net, "Clip_10", 1);
	return done_testing();
}
