/* test_optim.c - TAP: the optimizer step (np_rt_sgd_step: SGD and AdamW)
 * and the learning-rate schedule with warmup (np_train_lr) against
 * PyTorch's torch.optim.AdamW / SGD under LambdaLR, several steps, with
 * weight decay and a mask (tests/fixtures/optim_reference.h, made by
 * tests/make-optim-reference.py); and which float initializers training
 * moves (the op table's trainable facts: issue 13's LayerNorm weight in
 * the decomposed pattern, class token, position embedding).
 *
 * Tolerances: the rate within 1e-6 relative (nepenc's is a float,
 * PyTorch's a double); weights within 5e-7 absolute (|w| < 1; PyTorch
 * computes the same float operations, vectorised, and its rate is a
 * double: a few ulps over 12 steps; 3e-8 measured).  Pruned entries: exactly 0 in the
 * weight, its gradient and both moments. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graphkit.h"
#include "rt.h"
#include "tap.h"
#include "train.h"

#include "fixtures/optim_reference.h"

#define N_ALL (OPTIM_N_W + OPTIM_N_B)

static double w0(int k) { return 0.5 * sin(k + 1); }
static double grad(int k, int t) { return 0.1 * cos(0.7 * k + t) + 0.02 * (t + 1); }

/* y = Gemm(x, W, b, transB=1): W [3,4] and b [3] are parameters. */
static void gemm_model(gk *k)
{
	gk_init(k, 13, 1);
	np_value *x = gk_input(k, "x", GK_SHAPE(2, 4));
	np_value *W = gk_weight(k, "W", GK_SHAPE(3, 4), -1, 1);
	np_value *b = gk_weight(k, "b", GK_SHAPE(3), -1, 1);
	np_node *n = gk_node(k, "Gemm", "gemm", GK_IN(x, W, b));
	np_node_set_attr_int(n, "transB", 1);
	gk_output(k, gk_done(k, n));
}

static bool is_masked(int i)
{
	for (size_t m = 0; m < sizeof optim_masked / sizeof optim_masked[0]; m++)
		if (optim_masked[m] == i)
			return true;
	return false;
}

static void run_case(const optim_case *c)
{
	gk k;
	gemm_model(&k);
	np_error err = {0};
	np_rt *rt = np_rt_new(k.m, 1, &err);
	np_param *W = rt ? np_rt_param_by_name(rt, "W") : NULL;
	np_param *b = rt ? np_rt_param_by_name(rt, "b") : NULL;
	if (!ok(W && b && W->trainable && b->trainable, "%s: W and b are trained %s",
	        c->name, err.msg)) {
		np_rt_free(rt);
		gk_free(&k);
		return;
	}
	/* The pruned entries start nonzero, with nonzero gradients: the step
	 * must zero them. */
	W->mask = malloc((size_t)W->nelem);   /* the rt frees it */
	if (!W->mask)
		gk_die("mask", NULL);
	for (int i = 0; i < OPTIM_N_W; i++) {
		W->data[i] = (float)w0(i);
		W->mask[i] = !is_masked(i);
	}
	for (int i = 0; i < OPTIM_N_B; i++)
		b->data[i] = (float)w0(OPTIM_N_W + i);
	np_train_opts o = {
		.epochs = c->epochs,
		.sgd = {.lr = c->lr, .momentum = c->momentum, .weight_decay = c->weight_decay,
		        .optimizer = c->adamw ? NP_OPTIM_ADAMW : NP_OPTIM_SGD,
		        .beta1 = c->beta1, .beta2 = c->beta2, .eps = c->eps},
		.schedule = c->schedule == 2 ? NP_LR_COSINE :
		            c->schedule == 1 ? NP_LR_STEP : NP_LR_CONSTANT,
		.step_epochs = c->step_epochs,
		.gamma = c->gamma,
		.warmup = c->warmup,
	};
	int steps = c->epochs * c->steps_per_epoch;
	double lr_err = 0, w_err = 0;
	bool zeros = true, good = true;
	for (int t = 0; t < steps && good; t++) {
		np_sgd s = o.sgd;
		s.lr = np_train_lr(&o, t, c->steps_per_epoch);
		lr_err = fmax(lr_err, fabs(s.lr - c->lrs[t]) / c->lrs[t]);
		for (int i = 0; i < N_ALL; i++)
			*(i < OPTIM_N_W ? &W->grad[i] : &b->grad[i - OPTIM_N_W]) = (float)grad(i, t);
		good = np_rt_sgd_step(rt, &s, &err) == NP_OK;
		for (int i = 0; good && i < N_ALL; i++) {
			float got = i < OPTIM_N_W ? W->data[i] : b->data[i - OPTIM_N_W];
			w_err = fmax(w_err, fabs(got - c->w[t * N_ALL + i]));
		}
		for (int i = 0; good && i < OPTIM_N_W; i++)
			if (is_masked(i))
				zeros = zeros && W->data[i] == 0.0f && W->grad[i] == 0.0f &&
				        W->momentum[i] == 0.0f &&
				        (!c->adamw || (W->second && W->second[i] == 0.0f));
	}
	ok(good, "%s: %d steps ran %s", c->name, steps, err.msg);
	ok(lr_err <= 1e-6, "%s: the rate of every step is PyTorch's LambdaLR's "
	   "(warmup %d), relative error %.2g", c->name, c->warmup, lr_err);
	ok(w_err <= 5e-7, "%s: the weights after every step are PyTorch's %s's, "
	   "max error %.2g", c->name, c->adamw ? "AdamW" : "SGD", w_err);
	ok(zeros, "%s: pruned weights, their gradients and moments exact zeros",
	   c->name);
	if (c->adamw)
		ok(W->steps == steps && b->steps == steps,
		   "%s: AdamW counted %lld and %lld steps (want %d)", c->name,
		   (long long)W->steps, (long long)b->steps, steps);
	np_rt_free(rt);
	gk_free(&k);
}

/* Which initializers are parameters: a small pre-norm token model as
 * the exporters write it at opset 13.
 *   t = Concat(Expand(cls, shape), x, axis 1) + pos        class token,
 *   n = (t - mean) / sqrt(var + eps) * ln_w + ln_b         position emb.,
 *   y = Gelu-ish: n * 0.5                                  LayerNorm
 * cls [1,1,4], pos [1,3,4], ln_w [4], ln_b [4] trained; the scalars (eps,
 * 2, 0.5) and the int64 shape are not. */
static void trainable_facts(void)
{
	gk k;
	gk_init(&k, 13, 2);
	np_value *x = gk_input(&k, "x", GK_SHAPE(2, 2, 4));
	np_value *cls = gk_weight(&k, "cls", GK_SHAPE(1, 1, 4), -1, 1);
	np_value *shape = gk_ints(&k, "shape", 3, GK_DIMS(2, 1, 4));
	np_value *pos = gk_weight(&k, "pos", GK_SHAPE(1, 3, 4), -1, 1);
	np_value *lnw = gk_weight(&k, "ln_w", GK_SHAPE(4), -1, 1);
	np_value *lnb = gk_weight(&k, "ln_b", GK_SHAPE(4), -1, 1);
	np_value *two = gk_scalar(&k, "two", 2.0f);
	np_value *eps = gk_scalar(&k, "eps", 1e-5f);
	np_value *half = gk_scalar(&k, "half", 0.5f);
	np_value *e = gk_op(&k, "Expand", "expand", GK_IN(cls, shape));
	np_node *cat = gk_node(&k, "Concat", "concat", GK_IN(e, x));
	np_node_set_attr_int(cat, "axis", 1);
	np_value *t = gk_op(&k, "Add", "addpos", GK_IN(gk_done(&k, cat), pos));
	np_node *rm = gk_node(&k, "ReduceMean", "mean", GK_IN(t));
	gk_set_ints(rm, "axes", 1, GK_DIMS(-1));
	np_value *d = gk_op(&k, "Sub", "sub", GK_IN(t, gk_done(&k, rm)));
	np_value *p = gk_op(&k, "Pow", "pow", GK_IN(d, two));
	np_node *rv = gk_node(&k, "ReduceMean", "var", GK_IN(p));
	gk_set_ints(rv, "axes", 1, GK_DIMS(-1));
	np_value *ve = gk_op(&k, "Add", "veps", GK_IN(gk_done(&k, rv), eps));
	np_value *sd = gk_op(&k, "Sqrt", "sqrt", GK_IN(ve));
	np_value *nh = gk_op(&k, "Div", "div", GK_IN(d, sd));
	np_value *sc = gk_op(&k, "Mul", "scale", GK_IN(nh, lnw));
	np_value *sh = gk_op(&k, "Add", "shift", GK_IN(sc, lnb));
	gk_output(&k, gk_op(&k, "Mul", "half_out", GK_IN(sh, half)));
	np_error err = {0};
	np_rt *rt = np_rt_new(k.m, 1, &err);
	ok(rt != NULL, "token model: runtime made %s", err.msg);
	static const struct {
		const char *name;
		bool trained;
	} want[] = {{"cls", true}, {"pos", true}, {"ln_w", true}, {"ln_b", true},
	            {"two", false}, {"eps", false}, {"half", false}};
	for (size_t i = 0; rt && i < sizeof want / sizeof want[0]; i++) {
		np_param *pp = np_rt_param_by_name(rt, want[i].name);
		ok(pp && pp->trainable == want[i].trained, "token model: '%s' %s",
		   want[i].name, want[i].trained ? "trained" : "a constant");
	}
	ok(rt && !np_rt_param_by_name(rt, "shape"),
	   "token model: the int64 shape is no parameter");
	/* And the gradients reach them: one backward moves every one. */
	bool moved = false;
	if (rt) {
		float xs[16];
		for (int i = 0; i < 16; i++)
			xs[i] = (float)sin(i * 0.9);
		np_rt_input in = {"x", NP_FLOAT, 3, {2, 2, 4}, xs};
		moved = np_rt_run(rt, &in, 1, NP_RT_TRAIN, &err) == NP_OK;
		if (moved) {
			const np_rtensor *y = np_rt_output(rt, 0);
			float *g = np_rt_output_grad(rt, 0);
			for (int64_t i = 0; i < y->nelem; i++)
				g[i] = (float)cos(0.3 * (double)i);
			moved = np_rt_backward(rt, &err) == NP_OK;
		}
		for (int i = 0; moved && i < 4; i++) {
			np_param *pp = np_rt_param_by_name(rt, want[i].name);
			double s = 0;
			for (int64_t j = 0; pp && pp->grad && j < pp->nelem; j++)
				s += fabs(pp->grad[j]);
			moved = s > 0;
		}
	}
	ok(moved, "token model: cls, pos, ln_w, ln_b get nonzero gradients %s",
	   err.msg);
	np_rt_free(rt);
	gk_free(&k);
}

int main(void)
{
	for (size_t i = 0; i < sizeof optim_cases / sizeof optim_cases[0]; i++)
		run_case(&optim_cases[i]);
	trainable_facts();
	return done_testing();
}
