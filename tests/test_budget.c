/* test_budget.c - the no-collapse budget, `--min-live F` (nepenthe/mask.c),
 * on a tiny MLP masked step after step at a large zeta:
 *
 *   x [N,8] -> Gemm (transB, W1 [6,8]) -> Relu -> Gemm (W2 [8,6]; a
 *   neuron is a column) -> Relu -> Gemm (W3 [6,3]: no layer) -> logits
 *
 * With the floor, after every step every neuron of every layer keeps at
 * least max(1, ceil(F x its weights)) live weights, so no layer is ever
 * emptied, and the step removes the whole budget B = floor(zeta x live
 * weights of L) as long as the layers' room above their floors allows
 * (what a layer at its floor cannot take goes to the others).  Without
 * the floor, the same steps empty a layer: the collapse the option
 * exists for. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphkit.h"
#include "nepenthe.h"
#include "tap.h"

#define N_EX 256
#define STEPS 8
#define ZETA 0.7
#define FLOOR 0.25

static np_model *mlp(void)
{
	gk k;
	gk_init(&k, 13, 21);
	np_value *x = gk_input(&k, "x", GK_SHAPE(-1, 8));
	np_value *in1[3] = {x, gk_weight(&k, "W1", GK_SHAPE(6, 8), -1, 1),
	                    gk_weight(&k, "b1", GK_SHAPE(6), -0.2f, 0.2f)};
	np_node *g1 = gk_node(&k, "Gemm", "fc1", in1, 3);
	np_node_set_attr_int(g1, "transB", 1);
	np_value *r1 = gk_op(&k, "Relu", "relu1", GK_IN(gk_done(&k, g1)));
	/* W2 scaled up: its score I(2) is the larger, so the softmax sends
	 * most of each budget to layer 1, which is what empties it. */
	np_value *in2[3] = {r1, gk_weight(&k, "W2", GK_SHAPE(6, 8), -3, 3),
	                    gk_weight(&k, "b2", GK_SHAPE(8), -0.2f, 0.2f)};
	np_value *r2 = gk_op(&k, "Relu", "relu2", GK_IN(gk_op(&k, "Gemm", "fc2", in2, 3)));
	np_value *y = gk_op(&k, "Gemm", "fc3", GK_IN(r2, gk_weight(&k, "W3", GK_SHAPE(8, 3), -1, 1)));
	gk_declare(&k, y, GK_SHAPE(-1, 3));
	gk_output(&k, y);
	return k.m;
}

/* Live weights per neuron of layer l's weight (one weight per layer). */
static void live_per_neuron(np_rt *rt, const np_layer *L, int64_t *live, int64_t *per,
                            int64_t *neurons)
{
	np_param *p = np_rt_param_by_name(rt, L->weights[0]->name);
	const np_tensor *t = L->weights[0]->init;
	bool rows = strcmp(L->producers[0]->op_type, "Gemm") == 0 &&
	            np_node_attr_int(L->producers[0], "transB", 0);
	*neurons = rows ? t->dims[0] : t->dims[1];
	*per = t->nelem / *neurons;
	memset(live, 0, sizeof(int64_t) * (size_t)*neurons);
	for (int64_t i = 0; i < t->nelem; i++)
		live[rows ? i / *per : i % *neurons] += !p->mask || p->mask[i];
}

/* The room above the floors of the candidates (neurons with H > 0). */
static int64_t room_of(np_rt *rt, const np_layers *ls, const np_profile *pr, double F)
{
	int64_t room = 0, live[16], per, n;
	for (int l = 0; l < ls->n; l++) {
		if (!(pr->l[l].H_layer > 0))
			continue;
		live_per_neuron(rt, &ls->v[l], live, &per, &n);
		int64_t fl = (int64_t)ceil(F * (double)per);
		for (int64_t j = 0; j < n; j++)
			if (pr->l[l].H[j] > 0 && live[j] > (fl > 1 ? fl : 1))
				room += live[j] - (fl > 1 ? fl : 1);
	}
	return room;
}

typedef struct outcome {
	bool floors_held;            /* every neuron >= its floor, every step */
	bool budget_spent;           /* removed = min(B, room) every step */
	int emptied_at;              /* first step leaving a layer empty, 0: none */
	int steps;
	char why[160];
} outcome;

static void check_step(np_rt *rt, const np_layers *ls, double F, int step, outcome *o)
{
	for (int l = 0; l < ls->n; l++) {
		int64_t live[16], per, n, total = 0;
		live_per_neuron(rt, &ls->v[l], live, &per, &n);
		int64_t fl = (int64_t)ceil(F * (double)per);
		for (int64_t j = 0; j < n; j++) {
			total += live[j];
			if (F > 0 && live[j] < (fl > 1 ? fl : 1) && o->floors_held) {
				o->floors_held = false;
				snprintf(o->why, sizeof o->why, "step %d: layer %d neuron %lld has "
				         "%lld live weights", step, l + 1, (long long)j,
				         (long long)live[j]);
			}
		}
		if (total == 0 && !o->emptied_at)
			o->emptied_at = step;
	}
}

static np_status run_steps(double F, outcome *o, np_error *err)
{
	memset(o, 0, sizeof *o);
	o->floors_held = o->budget_spent = true;
	np_model *m = mlp();
	gk k = {.rng = 5};
	np_dataset d = {.n = N_EX, .rank = 1, .dims = {8}, .example_size = 8};
	d.x = gk_random(&k, N_EX * 8, -1, 1);
	np_layers ls = {0};
	np_rt *rt = np_rt_new(m, 1, err);
	np_status st = rt ? np_find_layers(m, &ls, err) : err->status;
	for (int s = 1; st == NP_OK && s <= STEPS; s++) {
		np_profile pr = {0};
		np_profile_opts po = {.batch = 64, .quiet = true};
		np_mask_layer_stat stats[2] = {0};
		np_mask_opts mo = {.zeta = ZETA, .min_live = F};
		st = np_profile_run(rt, &ls, &d, &po, &pr, err);
		int64_t room = st == NP_OK ? room_of(rt, &ls, &pr, F) : 0, live_L = 0;
		for (int l = 0; st == NP_OK && l < ls.n; l++) {
			int64_t live[16], per, n;
			live_per_neuron(rt, &ls.v[l], live, &per, &n);
			for (int64_t j = 0; pr.l[l].H_layer > 0 && j < n; j++)
				live_L += live[j];
		}
		if (st == NP_OK)
			st = np_mask_step(rt, &ls, &pr, &mo, stats, err);
		int64_t B = (int64_t)floor(ZETA * (double)live_L);
		int64_t want = F > 0 && room < B ? room : B;
		if (st == NP_OK && F > 0 && stats[0].removed + stats[1].removed != want &&
		    o->budget_spent) {
			o->budget_spent = false;
			snprintf(o->why, sizeof o->why, "step %d: removed %lld + %lld, B %lld, "
			         "room %lld", s, (long long)stats[0].removed,
			         (long long)stats[1].removed, (long long)B, (long long)room);
		}
		if (st == NP_OK) {
			check_step(rt, &ls, F, s, o);
			o->steps = s;
		}
		np_profile_free(&pr);
	}
	np_layers_free(&ls);
	np_rt_free(rt);
	np_model_free(m);
	free(d.x);
	return st;
}

int main(void)
{
	np_error err = {0};
	outcome with, without;
	np_status st = run_steps(FLOOR, &with, &err);
	ok(st == NP_OK && with.steps == STEPS, "--min-live %g: %d masking steps at "
	   "zeta %g ran %s", FLOOR, with.steps, ZETA, err.msg);
	ok(with.floors_held && !with.emptied_at, "--min-live %g: every neuron keeps "
	   "max(1, ceil(F x its weights)) live weights after every step; no layer "
	   "emptied %s", FLOOR, with.why);
	ok(with.budget_spent, "--min-live %g: each step removes min(B, room above the "
	   "floors): the budget a capped layer cannot take goes to the other %s",
	   FLOOR, with.why);
	st = run_steps(0, &without, &err);
	ok(st == NP_OK && without.emptied_at > 0, "without --min-live the same steps "
	   "empty a layer (step %d): what the floor prevents %s", without.emptied_at,
	   err.msg);
	/* A floor of a single weight per neuron: F tiny. */
	st = run_steps(1e-6, &with, &err);
	ok(st == NP_OK && with.floors_held && !with.emptied_at,
	   "--min-live 1e-6: one live weight per neuron at least, every step %s", with.why);
	return done_testing();
}
