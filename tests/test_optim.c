/* test_optim.c - TAP: which float initializers training moves (the op
 * table's trainable facts: issue 13's LayerNorm weight in the decomposed
 * pattern, class token, position embedding). */
#include <math.h>

#include "graphkit.h"
#include "rt.h"
#include "tap.h"

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
	trainable_facts();
	return done_testing();
}
