/* test_easier.c - `--method easier` (nepenthe/easier.c) on a tiny
 * hand-built graph whose layer entropies and fates are known by hand:
 *
 *   x [N,3], uniform in [-1, 1]
 *   reluB(x1 + 0.5)  -> * 0.001 -> logit 0   ON 75%: H = 0.811 bits
 *   reluA(x0 - 0.9)  -> * 10    -> logit 0   ON  5%: H = 0.286 bits
 *   reluC(x0 - 2)    -> * 5     -> logit 0   always OFF: H = 0
 *   logits = that + [0.5, 0.2 + 0.05 x2]
 *
 * The input model always predicts class 0 (logit 0 >= 0.5 > 0.25), and
 * without labels "accuracy" is agreement with it.  EASIER must take C
 * first (zero entropy: its exact map, all OFF, changes nothing), then A
 * (lowest entropy left): A as the identity lets x0 - 0.9 < 0 through,
 * which flips most predictions, so the step misses the bar and is undone,
 * A kept; then B, whose identity moves logit 0 by at most 0.0015:
 * accepted.  The fourth step finds nothing left.  With --easier-map
 * majority, A's neuron goes to its majority state (OFF, 0), which changes
 * no prediction: accepted.  Then the chosen model is emitted and the
 * removed count read off it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphkit.h"
#include "nepenthe.h"
#include "tap.h"

#define N_EX 400

/* x -> Gemm (weight picks feature f, bias b) -> Relu -> Gemm (1 -> 2,
 * [g, 0]): the branch's contribution to the logits. */
static np_value *branch(gk *k, const char *tag, np_value *x, int f, float b, float g)
{
	float w[3] = {0, 0, 0}, w2[2] = {g, 0};
	w[f] = 1;
	np_value *in[3] = {x, gk_floats(k, np_arena_printf(k->m->arena, "%s1.weight", tag),
	                                GK_SHAPE(3, 1), w),
	                   gk_floats(k, np_arena_printf(k->m->arena, "%s1.bias", tag),
	                             GK_SHAPE(1), &b)};
	np_value *z = gk_op(k, "Gemm", np_arena_printf(k->m->arena, "gemm%s", tag), in, 3);
	np_value *r = gk_op(k, "Relu", np_arena_printf(k->m->arena, "relu%s", tag), GK_IN(z));
	return gk_op(k, "Gemm", np_arena_printf(k->m->arena, "out%s", tag),
	             GK_IN(r, gk_floats(k, np_arena_printf(k->m->arena, "%s2.weight", tag),
	                                GK_SHAPE(1, 2), w2)));
}

static np_model *three_branches(void)
{
	gk k;
	gk_init(&k, 13, 5);
	np_value *x = gk_input(&k, "x", GK_SHAPE(-1, 3));
	np_value *b = branch(&k, "B", x, 1, 0.5f, 0.001f);
	np_value *a = branch(&k, "A", x, 0, -0.9f, 10.0f);
	np_value *c = branch(&k, "C", x, 0, -2.0f, 5.0f);
	float wd[6] = {0, 0, 0, 0, 0, 0.05f}, bd[2] = {0.5f, 0.2f};
	np_value *in[3] = {x, gk_floats(&k, "D.weight", GK_SHAPE(3, 2), wd),
	                   gk_floats(&k, "D.bias", GK_SHAPE(2), bd)};
	np_value *d = gk_op(&k, "Gemm", "gemmD", in, 3);
	np_value *s = gk_op(&k, "Add", "add1", GK_IN(b, a));
	s = gk_op(&k, "Add", "add2", GK_IN(s, c));
	np_value *y = gk_op(&k, "Add", "logits", GK_IN(s, d));
	gk_declare(&k, y, GK_SHAPE(-1, 2));
	gk_output(&k, y);
	return k.m;
}

static bool has_node(const np_model *m, const char *name)
{
	return m && gk_find_node(m->graph, name) != NULL;
}

/* One EASIER run on the graph; fills run and res.  epochs 1 at lr 0: the
 * fine-tuning path runs (distillation: the data has no labels) and
 * leaves the weights as they are, so the outcome is known. */
static np_status easier_run(np_model *m, np_easier_map map, int max_iter, np_run *run,
                            np_easier_result *res, np_layers *ls, float **teacher,
                            np_dataset *d, np_error *err)
{
	np_rt *rt = np_rt_new(m, 1, err);
	int64_t classes = 0;
	np_status st = rt ? np_predict(rt, d, 64, teacher, &classes, err) : err->status;
	np_rt_free(rt);
	if (st == NP_OK)
		st = np_find_layers(m, ls, err);
	if (st != NP_OK)
		return st;
	run->layers = ls->n;
	run->layer_names = calloc((size_t)ls->n + 1, sizeof(char *));
	for (int l = 0; l < ls->n; l++)
		run->layer_names[l] = ls->v[l].rectifier->name;
	run->dense_val = 100;
	np_run_data rd = {.train = d, .val = d, .teacher_train = *teacher,
	                  .teacher_val = *teacher};
	np_nepenthe_opts o = {.theta = 0.99, .max_iter = max_iter, .batch = 64,
	                      .threads = 1, .quiet = true, .easier_map = map,
	                      .fold = NP_FOLD_EXACT};
	o.mask.method = NP_METHOD_EASIER;
	o.train = (np_train_opts){.epochs = 1, .batch = 32, .temperature = 4,
	                          .sgd = {.lr = 0, .momentum = 0.9f}};
	o.profile.batch = 64;
	st = np_easier_loop(m, ls, &rd, &o, run, res, err);
	np_model *out = NULL;
	if (st == NP_OK)
		st = np_nepenthe_emit(res->model, &res->layers, &res->profile, &rd, &o,
		                      o.theta * run->dense_val, run, &out, err);
	np_model_free(out);
	return st;
}

static bool undone_logged(const np_run *run, const char *node)
{
	for (int i = 0; i < run->log.n; i++) {
		const np_log_entry *e = &run->log.v[i];
		if (e->kind == NP_LOG_UNDONE && e->pass && strcmp(e->pass, "easier") == 0 &&
		    e->node && strcmp(e->node, node) == 0)
			return true;
	}
	return false;
}

static void test_identity(np_model *m, np_dataset *d)
{
	np_error err = {0};
	np_run run = {0};
	np_easier_result res = {0};
	np_layers ls = {0};
	float *teacher = NULL;
	np_status st = easier_run(m, NP_MAP_IDENTITY, 6, &run, &res, &ls, &teacher, d, &err);
	if (!ok(st == NP_OK && ls.n == 3, "identity: the loop and the emission ran on "
	        "3 layers %s", err.msg))
		goto out;
	/* Layers in graph order: B, A, C (1-based 1, 2, 3). */
	const np_profile *p0 = &run.it[0].profile;
	ok(p0->n == 3 && p0->l[2].H_layer == 0 && p0->l[1].H_layer > 0.2 &&
	   p0->l[1].H_layer < 0.4 && p0->l[0].H_layer > 0.7 && p0->l[0].H_layer < 0.9,
	   "identity: entropies C 0, A %.3f (~0.29), B %.3f (~0.81)",
	   p0->n == 3 ? p0->l[1].H_layer : -1, p0->n == 3 ? p0->l[0].H_layer : -1);
	ok(run.n_it == 4, "identity: 3 steps and a 4th that finds nothing left (%d "
	   "iterations)", run.n_it);
	if (run.n_it < 3)
		goto out;
	const np_iteration *it = run.it;
	ok(it[0].layer == 3 && it[0].map == NP_MAP_EXACT && it[0].accepted &&
	   it[0].val_top1 == 100,
	   "identity: step 1 takes C, at zero entropy, by its exact map: nothing "
	   "changes (layer %d, %s, val %.2f%%)", it[0].layer,
	   np_easier_map_name(it[0].map), it[0].val_top1);
	ok(it[1].layer == 2 && it[1].map == NP_MAP_IDENTITY && !it[1].accepted &&
	   it[1].val_top1 < 99 && it[1].profile.l[2].absent &&
	   it[1].profile.l[1].H_layer < it[1].profile.l[0].H_layer,
	   "identity: step 2 takes A, the lowest entropy left (C absent), as the "
	   "identity: val %.2f%%, below the bar, undone", it[1].val_top1);
	ok(it[2].layer == 1 && it[2].accepted && it[2].val_top1 == 100,
	   "identity: step 3 tries the next, B: val %.2f%%, accepted", it[2].val_top1);
	ok(run.n_it < 4 || (run.it[3].exhausted && run.it[3].layer == 0),
	   "identity: step 4: A was kept, nothing is left to try");
	ok(run.chosen == 3 && has_node(res.model, "reluA") && !has_node(res.model, "reluB") &&
	   !has_node(res.model, "reluC") && res.layers.n == 1,
	   "identity: the chosen model (step %d) has reluA only", run.chosen);
	ok(undone_logged(&run, "reluA"), "identity: the log says step 2 was undone");
	ok(run.final_profile.n == 3 && run.final_profile.l[0].absent &&
	   !run.final_profile.l[1].absent && run.final_profile.l[2].absent,
	   "identity: the final profile spreads over the input's layers, B and C absent");
	ok(run.removed == 2 && run.gone && run.gone[0] == NP_GONE_EASIER &&
	   run.gone[1] == NP_GONE_NO && run.gone[2] == NP_GONE_EASIER,
	   "identity: emitted, 2 of 3 removed, both by EASIER steps (removed %d)",
	   run.removed);
out:
	np_easier_result_free(&res);
	np_run_free(&run);
	np_layers_free(&ls);
	free(teacher);
}

static void test_majority(np_model *m, np_dataset *d)
{
	np_error err = {0};
	np_run run = {0};
	np_easier_result res = {0};
	np_layers ls = {0};
	float *teacher = NULL;
	np_status st = easier_run(m, NP_MAP_MAJORITY, 2, &run, &res, &ls, &teacher, d, &err);
	ok(st == NP_OK && run.n_it == 2 && run.it[1].layer == 2 &&
	   run.it[1].map == NP_MAP_MAJORITY && run.it[1].accepted && run.chosen == 2 &&
	   !has_node(res.model, "reluA") && has_node(res.model, "reluB"),
	   "majority: step 2 sends A's neuron to its majority state, OFF: accepted "
	   "(max-iter 2 stops before B) %s", err.msg);
	np_easier_result_free(&res);
	np_run_free(&run);
	np_layers_free(&ls);
	free(teacher);
}

int main(void)
{
	np_model *m = three_branches();
	gk k = {.rng = 99};
	np_dataset d = {.n = N_EX, .rank = 1, .dims = {3}, .example_size = 3};
	d.x = gk_random(&k, N_EX * 3, -1, 1);
	test_identity(m, &d);
	test_majority(m, &d);
	free(d.x);
	np_model_free(m);
	return done_testing();
}
