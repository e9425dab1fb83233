/* easier.c - EASIER (DESIGN.md section 11, after arXiv 2404.18949):
 * depth reduction one rectified layer at a time.
 *
 * Each step profiles the current model, linearizes the layer of lowest
 * entropy not tried yet (its exact affine map at zero entropy, else the
 * identity or the neurons' majority states: np_easier_map), fine-tunes,
 * and checks validation top-1 against theta x dense.  A step that misses
 * the bar is undone and its layer kept for good; the next step tries the
 * next layer.
 *
 * NEPENTHE's loop (nepenthe.c) masks weights inside one runtime; here
 * every step changes the graph, so each candidate is a model of its own
 * (the linearize pass on a clone) trained by a runtime of its own.  The
 * optimiser's momentum therefore starts afresh at every step, and there
 * are no masks.  At most one runtime lives at a time: the current model
 * is profiled by a runtime freed before the candidate's is made, which
 * keeps the peak memory of a step that of one model (ResNet-18's
 * training plan is over a gigabyte). */
#include "loop.h"
#include "nepenthe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_io.h"
#include "progress.h"
#include "top1.h"

const char *np_easier_map_name(np_easier_map m)
{
	switch (m) {
	case NP_MAP_MAJORITY: return "majority";
	case NP_MAP_EXACT: return "exact";
	default: return "identity";
	}
}

void np_easier_result_free(np_easier_result *res)
{
	np_profile_free(&res->profile);
	np_layers_free(&res->layers);
	np_model_free(res->model);
	memset(res, 0, sizeof *res);
}

/* The loop's state. */
typedef struct np_easier {
	const np_layers *ls;         /* the input model's layers */
	const np_run_data *d;
	const np_nepenthe_opts *o;
	np_run *run;
	double bar;
	np_model *cur;               /* owned: the last accepted model */
	bool *kept;                  /* ls->n: tried, never again */
} np_easier;

/* A runtime for m with the command's threads and precision. */
static np_status np_easier_rt(const np_nepenthe_opts *o, np_model *m, np_rt **out,
                              np_error *err)
{
	np_rt *rt = np_rt_new(m, o->threads, err);
	if (!rt)
		return err->status;
	np_status st = o->bf16 ? np_rt_set_bf16(rt, true, err) : NP_OK;
	if (st != NP_OK) {
		np_rt_free(rt);
		return st;
	}
	*out = rt;
	return NP_OK;
}

/* Index in ls of the layer whose rectifier is named name, -1 if none.
 * Node names are unique (the loader makes them so) and passes never
 * rename a rectifier, so the name follows a layer from model to model. */
static int np_input_index(const np_layers *ls, const char *name)
{
	for (int i = 0; name && i < ls->n; i++)
		if (ls->v[i].rectifier->name && strcmp(ls->v[i].rectifier->name, name) == 0)
			return i;
	return -1;
}

static bool np_has_node(const np_model *m, const char *name)
{
	for (int i = 0; i < m->graph->n_nodes; i++)
		if (strcmp(m->graph->nodes[i]->name, name) == 0)
			return true;
	return false;
}

/* ---------------------------------------------------------- profiles */

/* b = a with its arrays duplicated (b's arrays are NULL or its own, so
 * np_profile_free can free b after a failure). */
static np_status np_lp_copy(const np_layer_profile *a, np_layer_profile *b, np_error *err)
{
	size_t n = (size_t)(a->neurons > 0 ? a->neurons : 0);
	size_t nc = n * (size_t)a->n_states;
	*b = *a;
	b->counts = malloc(sizeof(int64_t) * (nc + 1));
	b->dont_care = malloc(sizeof(int64_t) * (n + 1));
	b->H = malloc(sizeof(double) * (n + 1));
	if (!b->counts || !b->dont_care || !b->H)
		return np_fail(err, NP_ERR_NOMEM, "out of memory copying a profile");
	if (a->counts)
		memcpy(b->counts, a->counts, sizeof(int64_t) * nc);
	if (a->dont_care)
		memcpy(b->dont_care, a->dont_care, sizeof(int64_t) * n);
	if (a->H)
		memcpy(b->H, a->H, sizeof(double) * n);
	return NP_OK;
}

/* prof, over cl (the layers of the current model), spread over the
 * input's layers ls: the report and the plot index every profile by the
 * input's layers; one an earlier step removed is absent. */
static np_status np_profile_spread(const np_layers *ls, const np_layers *cl,
                                   const np_profile *prof, np_profile *out,
                                   np_error *err)
{
	out->l = calloc((size_t)ls->n + 1, sizeof(np_layer_profile));
	if (!out->l)
		return np_fail(err, NP_ERR_NOMEM, "out of memory spreading a profile");
	out->n = ls->n;
	for (int i = 0; i < ls->n; i++) {
		out->l[i].absent = true;
		out->l[i].n_states = 2;
	}
	for (int j = 0; j < cl->n; j++) {
		int i = np_input_index(ls, cl->v[j].rectifier->name);
		np_status st = i < 0 ? NP_OK : np_lp_copy(&prof->l[j], &out->l[i], err);
		if (st != NP_OK)
			return st;
	}
	return NP_OK;
}

/* Profile the current model (a runtime of its own, freed after). */
static np_status np_easier_profile(const np_easier *e, const np_layers *cl,
                                   np_profile *out, np_error *err)
{
	np_rt *rt = NULL;
	np_profile_opts po = e->o->profile;
	po.quiet = e->o->quiet;
	po.input_norms = false;
	np_status st = np_easier_rt(e->o, e->cur, &rt, err);
	if (st == NP_OK)
		st = np_profile_run(rt, cl, e->d->train, &po, out, err);
	np_rt_free(rt);
	return st;
}

/* ------------------------------------------------------------- a step */

/* The layer of cl to try: the lowest entropy among those not kept (ties:
 * the lower index in the input); -1 when every layer left was tried. */
static int np_easier_pick(const np_easier *e, const np_layers *cl, const np_profile *cp)
{
	int best = -1, best_i = -1;
	for (int j = 0; j < cl->n; j++) {
		int i = np_input_index(e->ls, cl->v[j].rectifier->name);
		if (i < 0 || e->kept[i])
			continue;
		double h = cp->l[j].H_layer, hb = best < 0 ? 0 : cp->l[best].H_layer;
		if (best < 0 || h < hb || (h == hb && i < best_i)) {
			best = j;
			best_i = i;
		}
	}
	return best;
}

/* A clone of the current model with layer L linearized by map. */
static np_status np_easier_linearize(const np_easier *e, const np_layer *L,
                                     const np_layer_profile *lp, np_easier_map map,
                                     np_model **out, np_error *err)
{
	np_linearize_layer ll = {.rectifier = L->rectifier->name, .kind = L->kind,
	                         .neurons = lp->neurons};
	np_linearize_plan plan = {&ll, 1};
	/* Exact only at zero entropy, and not even then for GELU and SiLU
	 * (whose OFF state is taken as 0: DESIGN section 6). */
	ll.approximate = map != NP_MAP_EXACT || L->kind == NP_RECT_GELU ||
	                 L->kind == NP_RECT_SILU;
	ll.state = malloc((size_t)(lp->neurons > 0 ? lp->neurons : 0) + 1);
	np_model *m = ll.state ? np_model_clone(e->cur, err) : NULL;
	np_status st = m ? NP_OK : ll.state ? err->status
	             : np_fail(err, NP_ERR_NOMEM, "out of memory linearizing");
	for (int64_t k = 0; st == NP_OK && k < lp->neurons; k++)
		ll.state[k] = (uint8_t)(map == NP_MAP_IDENTITY ? NP_STATE_ON
		                                               : np_neuron_state(lp, k));
	if (st == NP_OK) {
		np_pass_ctx ctx = {.fold = e->o->fold, .log = &e->run->log, .linearize = &plan};
		st = np_run_passes(m, "linearize", &ctx, err);
	}
	free(ll.state);
	if (st != NP_OK) {
		np_model_free(m);
		return st;
	}
	*out = m;
	return NP_OK;
}

/* Fine-tune candidate m and score it on validation. */
static np_status np_easier_train(const np_easier *e, np_model *m, np_iteration *it,
                                 np_error *err)
{
	np_rt *rt = NULL;
	np_status st = np_easier_rt(e->o, m, &rt, err);
	if (st == NP_OK)
		st = np_loop_finetune(rt, e->d, e->o, it->index, err);
	if (st == NP_OK)
		st = np_top1(rt, e->d->val, e->o->batch, e->d->teacher_val, &it->val_top1, err);
	it->accepted = st == NP_OK && it->val_top1 >= e->bar;
	/* Only a kept step's weights matter; the model owns them from here. */
	if (st == NP_OK && it->accepted)
		st = np_rt_store(rt, m, err);
	np_rt_free(rt);
	return st;
}

/* Linearize layer L of the current model, fine-tune, validate; keep the
 * result or undo it (the log loses the step's entries and says why). */
static np_status np_easier_try(np_easier *e, const np_layer *L, const np_layer_profile *lp,
                               np_iteration *it, np_error *err)
{
	int i = np_input_index(e->ls, L->rectifier->name);
	const char *name = e->ls->v[i].rectifier->name;   /* outlives e->cur */
	int mark = e->run->log.n;
	np_model *m = NULL;
	it->layer = i + 1;
	it->map = lp->H_layer == 0 ? NP_MAP_EXACT : e->o->easier_map;
	e->kept[i] = true;           /* tried: never again, whatever happens */
	np_status st = np_easier_linearize(e, L, lp, it->map, &m, err);
	/* linearize keeps a rectifier it cannot replace safely, logging why:
	 * then there is nothing to fine-tune. */
	bool gone = st == NP_OK && !np_has_node(m, name);
	it->refused = st == NP_OK && !gone;
	if (st == NP_OK && gone)
		st = np_easier_train(e, m, it, err);
	if (st == NP_OK && it->accepted) {
		np_model_free(e->cur);
		e->cur = m;
		e->run->chosen = it->index;
		return NP_OK;
	}
	np_model_free(m);
	if (st == NP_OK && gone) {
		np_pass_log_truncate(&e->run->log, mark);
		np_pass_log_add(&e->run->log, NULL, NP_LOG_UNDONE, "easier", name, NULL,
		                "EASIER step %d (%s map): validation top-1 %.2f%% after "
		                "fine-tuning, below the bar %.2f%%; the layer is kept",
		                it->index, np_easier_map_name(it->map), it->val_top1, e->bar);
	}
	return st;
}

static void np_easier_say(const np_easier *e, const np_iteration *it)
{
	if (e->o->quiet)
		return;
	if (it->exhausted) {
		fprintf(stderr, "nepenc: iteration %d: every rectified layer left was "
		        "tried\n", it->index);
		return;
	}
	const np_layer *L = &e->ls->v[it->layer - 1];
	if (it->refused) {
		fprintf(stderr, "nepenc: iteration %d: layer %d %s could not be "
		        "linearized (see the report's passes): kept\n", it->index,
		        it->layer, L->rectifier->name);
		return;
	}
	fprintf(stderr, "nepenc: iteration %d: layer %d %s (%s, H %.4f bits) "
	        "linearized, %s map: validation top-1 %.2f%% (bar %.2f%%) %s\n",
	        it->index, it->layer, L->rectifier->name, np_layer_kind_label(L),
	        it->profile.l[it->layer - 1].H_layer, np_easier_map_name(it->map),
	        it->val_top1, e->bar, it->accepted ? "accepted"
	        : "failed: undone, the layer is kept");
	for (int l = 0; e->o->verbose && l < it->profile.n; l++)
		if (!it->profile.l[l].absent)
			fprintf(stderr, "nepenc: iteration %d:   layer %d %s: H %.4f bits, "
			        "%lld/%lld neurons at zero entropy\n", it->index, l + 1,
			        e->ls->v[l].rectifier->name, it->profile.l[l].H_layer,
			        (long long)it->profile.l[l].zero_neurons,
			        (long long)it->profile.l[l].neurons);
}

/* One step: profile, pick, try.  it->exhausted when nothing is left. */
static np_status np_easier_step(np_easier *e, np_iteration *it, np_error *err)
{
	double t0 = np_now();
	np_layers cl = {0};
	np_profile cp = {0};
	np_status st = np_find_layers(e->cur, &cl, err);
	if (st == NP_OK)
		st = np_easier_profile(e, &cl, &cp, err);
	if (st == NP_OK)
		st = np_profile_spread(e->ls, &cl, &cp, &it->profile, err);
	int j = st == NP_OK ? np_easier_pick(e, &cl, &cp) : -1;
	if (st == NP_OK && j < 0)
		it->exhausted = true;
	else if (st == NP_OK)
		st = np_easier_try(e, &cl.v[j], &cp.l[j], it, err);
	it->seconds = np_now() - t0;
	/* cl borrows the model the step started from, which an accepted step
	 * has freed: only its arrays are released here. */
	np_layers_free(&cl);
	np_profile_free(&cp);
	return st;
}

/* The chosen model's layers and fresh profile (res), spread into run. */
static np_status np_easier_final(np_easier *e, np_easier_result *res, np_error *err)
{
	np_status st = np_find_layers(e->cur, &res->layers, err);
	if (st == NP_OK)
		st = np_easier_profile(e, &res->layers, &res->profile, err);
	if (st == NP_OK)
		st = np_profile_spread(e->ls, &res->layers, &res->profile,
		                       &e->run->final_profile, err);
	return st;
}

np_status np_easier_loop(const np_model *in, const np_layers *ls, const np_run_data *d,
                         const np_nepenthe_opts *o, np_run *run,
                         np_easier_result *res, np_error *err)
{
	np_easier e = {.ls = ls, .d = d, .o = o, .run = run,
	               .bar = o->theta * run->dense_val};
	memset(res, 0, sizeof *res);
	e.kept = calloc((size_t)ls->n + 1, sizeof(bool));
	np_status st = e.kept ? NP_OK : np_fail(err, NP_ERR_NOMEM, "out of memory");
	if (st == NP_OK && !(e.cur = np_model_clone(in, err)))
		st = err->status;
	run->chosen = 0;
	while (st == NP_OK && run->n_it < o->max_iter) {
		np_iteration *it = np_run_add_iteration(run, err);
		if (!it) {
			st = err->status;
			break;
		}
		if ((st = np_easier_step(&e, it, err)) != NP_OK)
			break;
		np_easier_say(&e, it);
		if (it->exhausted)
			break;
	}
	if (st == NP_OK)
		st = np_easier_final(&e, res, err);
	if (st == NP_OK) {
		res->model = e.cur;          /* res->layers borrow it */
		e.cur = NULL;
	} else {
		np_easier_result_free(res);
	}
	np_model_free(e.cur);
	free(e.kept);
	run->sparsity = 0;           /* EASIER masks no weight */
	return st;
}
