/* nepenthe.c - the NEPENTHE iteration loop (DESIGN.md section 5, paper
 * Alg. 1) with nepenc's backoff. */
#include "nepenthe.h"
#include "loop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "progress.h"
#include "top1.h"

/* Everything needed to go back to an iterate: weights, BN statistics,
 * masks and the optimiser's state (momentum; AdamW's moments and step
 * counts). */
typedef struct np_snapshot {
	float **data, **momentum, **second;
	int64_t *steps;
	uint8_t **mask;
	int n;
} np_snapshot;

static void np_snapshot_free(np_snapshot *s)
{
	/* Any of the three arrays may be missing after a failed take. */
	for (int i = 0; i < s->n; i++) {
		if (s->data)
			free(s->data[i]);
		if (s->momentum)
			free(s->momentum[i]);
		if (s->second)
			free(s->second[i]);
		if (s->mask)
			free(s->mask[i]);
	}
	free(s->data);
	free(s->momentum);
	free(s->second);
	free(s->steps);
	free(s->mask);
	memset(s, 0, sizeof *s);
}

static void *np_dup(const void *p, size_t n, bool *ok)
{
	if (!p)
		return NULL;
	void *q = malloc(n ? n : 1);
	if (!q)
		*ok = false;
	else
		memcpy(q, p, n);
	return q;
}

static np_status np_snapshot_take(np_rt *rt, np_snapshot *s, np_error *err)
{
	np_snapshot_free(s);
	int n = np_rt_n_params(rt);
	s->data = calloc((size_t)n + 1, sizeof(float *));
	s->momentum = calloc((size_t)n + 1, sizeof(float *));
	s->second = calloc((size_t)n + 1, sizeof(float *));
	s->steps = calloc((size_t)n + 1, sizeof(int64_t));
	s->mask = calloc((size_t)n + 1, sizeof(uint8_t *));
	s->n = n;
	bool ok = s->data && s->momentum && s->second && s->steps && s->mask;
	for (int i = 0; ok && i < n; i++) {
		np_param *p = np_rt_param(rt, i);
		size_t fb = sizeof(float) * (size_t)p->nelem;
		s->data[i] = np_dup(p->data, fb, &ok);
		s->momentum[i] = np_dup(p->momentum, fb, &ok);
		s->second[i] = np_dup(p->second, fb, &ok);
		s->steps[i] = p->steps;
		s->mask[i] = np_dup(p->mask, (size_t)p->nelem, &ok);
	}
	return ok ? NP_OK : np_fail(err, NP_ERR_NOMEM, "out of memory saving an iterate");
}

static np_status np_snapshot_restore(np_rt *rt, const np_snapshot *s, np_error *err)
{
	for (int i = 0; i < s->n; i++) {
		np_param *p = np_rt_param(rt, i);
		size_t fb = sizeof(float) * (size_t)p->nelem;
		memcpy(p->data, s->data[i], fb);
		if (p->momentum && s->momentum[i])
			memcpy(p->momentum, s->momentum[i], fb);
		/* AdamW's buffers exist from its first step on: none in the
		 * snapshot means no step yet. */
		if (p->second && s->second[i])
			memcpy(p->second, s->second[i], fb);
		else if (p->second)
			memset(p->second, 0, fb);
		p->steps = s->steps[i];
		if (s->mask[i]) {
			if (!p->mask && !(p->mask = malloc((size_t)p->nelem + 1)))
				return np_fail(err, NP_ERR_NOMEM, "out of memory restoring masks");
			memcpy(p->mask, s->mask[i], (size_t)p->nelem);
		} else {
			free(p->mask);
			p->mask = NULL;
		}
	}
	np_rt_apply_masks(rt);
	return NP_OK;
}

double np_loop_sparsity(np_rt *rt, const np_layers *ls)
{
	int64_t total = 0, pruned = 0;
	for (int l = 0; l < ls->n; l++)
		for (int k = 0; k < ls->v[l].n_weights; k++) {
			np_param *p = np_rt_param_by_name(rt, ls->v[l].weights[k]->name);
			if (!p)
				continue;
			total += p->nelem;
			for (int64_t i = 0; p->mask && i < p->nelem; i++)
				pruned += !p->mask[i];
		}
	return total ? (double)pruned / (double)total : 0.0;
}

static int np_zero_entropy_layers(const np_profile *p, double eps)
{
	int k = 0;
	for (int l = 0; l < p->n; l++)
		k += np_layer_removable(&p->l[l], eps);
	return k;
}

np_status np_loop_finetune(np_rt *rt, const np_run_data *d, const np_nepenthe_opts *o,
                           int it, np_error *err)
{
	if (o->train.epochs == 0)
		return NP_OK;
	char what[64];
	snprintf(what, sizeof what, "iteration %d: fine-tune", it);
	np_progress p;
	np_progress_begin(&p, what, "img", o->train.batch, o->quiet);
	p.epochs = o->train.epochs;
	p.note = np_decode_note;
	p.note_ctx = (void *)d->train;
	np_train_opts t = o->train;
	t.seed = o->train.seed + (uint64_t)it;   /* a new shuffle each iteration */
	np_loss_watch w = {.p = &p};
	t.progress = np_loss_watch_step;
	t.progress_ctx = &w;
	np_status st = np_train(rt, d->train, &t, d->teacher_train, o->dopts, NULL, err);
	if (st == NP_OK) {
		snprintf(what, sizeof what, "iteration %d: fine-tuning", it);
		st = np_loss_watch_check(&w, what, err);
	}
	np_progress_end(&p);
	return st;
}

np_iteration *np_run_add_iteration(np_run *run, np_error *err)
{
	np_iteration *v = realloc(run->it, sizeof(np_iteration) * (size_t)(run->n_it + 1));
	if (!v) {
		np_fail(err, NP_ERR_NOMEM, "out of memory");
		return NULL;
	}
	run->it = v;
	np_iteration *it = &run->it[run->n_it++];
	memset(it, 0, sizeof *it);
	it->index = run->n_it;
	return it;
}

/* One iteration: profile, mask, fine-tune, validate.  Fills it. */
static np_status np_iterate(np_rt *rt, const np_layers *ls, const np_run_data *d,
                            const np_nepenthe_opts *o, double zeta, np_iteration *it,
                            np_error *err)
{
	double t0 = np_now();
	it->zeta = zeta;
	np_profile_opts po = o->profile;
	po.quiet = o->quiet;
	/* Wanda scores with the activations of the current weights: collected
	 * in the same pass, on the same data, at every pruning step. */
	po.input_norms = o->mask.criterion == NP_CRIT_WANDA;
	np_status st = np_profile_run(rt, ls, d->train, &po, &it->profile, err);
	if (st != NP_OK)
		return st;
	it->mask = calloc((size_t)ls->n + 1, sizeof(np_mask_layer_stat));
	if (!it->mask)
		return np_fail(err, NP_ERR_NOMEM, "out of memory");
	np_mask_opts mo = o->mask;
	mo.zeta = zeta;
	mo.input_norms = po.input_norms ? it->profile.norms.v : NULL;
	if ((st = np_mask_step(rt, ls, &it->profile, &mo, it->mask, err)) != NP_OK)
		return st;
	it->sparsity = np_loop_sparsity(rt, ls);
	int64_t removed = 0;
	for (int l = 0; l < ls->n; l++)
		removed += it->mask[l].removed;
	if (removed == 0) {
		it->exhausted = true;
		it->seconds = np_now() - t0;
		return NP_OK;
	}
	if ((st = np_loop_finetune(rt, d, o, it->index, err)) != NP_OK)
		return st;
	st = np_top1(rt, d->val, o->batch, d->teacher_val, &it->val_top1, err);
	it->seconds = np_now() - t0;
	return st;
}

/* -v: one line per layer: entropy and zero-entropy neurons before
 * masking, the score and budget of section 4, weights masked. */
static void np_say_layers(const np_layers *ls, const np_iteration *it)
{
	for (int l = 0; l < ls->n; l++) {
		const np_layer_profile *lp = &it->profile.l[l];
		const np_mask_layer_stat *ms = &it->mask[l];
		fprintf(stderr, "nepenc: iteration %d:   layer %d %s (%s): H %.4f bits, "
		        "%lld/%lld neurons at zero entropy; I %.4g, budget %lld, "
		        "masked %lld of %lld\n", it->index, l + 1,
		        ls->v[l].rectifier->name ? ls->v[l].rectifier->name : "?",
		        np_layer_kind_label(&ls->v[l]), lp->H_layer,
		        (long long)lp->zero_neurons, (long long)lp->neurons, ms->I,
		        (long long)ms->budget, (long long)ms->removed,
		        (long long)ms->nonzero_before);
	}
}

static void np_say_iteration(const np_nepenthe_opts *o, const np_layers *ls,
                             const np_iteration *it, double bar,
                             int zero_layers, int layers)
{
	if (o->quiet)
		return;
	if (o->verbose && it->mask)
		np_say_layers(ls, it);
	fprintf(stderr, "nepenc: iteration %d: zeta %.4g, sparsity %.2f%%, "
	        "validation top-1 %.2f%% (bar %.2f%%) %s; zero-entropy layers "
	        "before masking %d/%d\n", it->index, it->zeta, 100.0 * it->sparsity,
	        it->val_top1, bar, it->accepted ? "accepted" :
	        it->backoff ? "failed: back to the last good iterate, zeta halved" :
	        "failed: stop", zero_layers, layers);
}

np_status np_nepenthe_loop(np_rt *rt, const np_layers *ls, const np_run_data *d,
                           const np_nepenthe_opts *o, np_run *run, np_error *err)
{
	np_snapshot good = {0};
	double bar = o->theta * run->dense_val, zeta = o->zeta;
	int retries = 0;
	np_status st = np_snapshot_take(rt, &good, err);
	run->chosen = 0;
	while (st == NP_OK && run->n_it < o->max_iter) {
		np_iteration *it = np_run_add_iteration(run, err);
		if (!it) {
			st = err->status;
			break;
		}
		if ((st = np_iterate(rt, ls, d, o, zeta, it, err)) != NP_OK)
			break;
		if (it->exhausted) {
			if (!o->quiet)
				fprintf(stderr, "nepenc: iteration %d: nothing left to prune\n",
				        it->index);
			break;
		}
		it->accepted = it->val_top1 >= bar;
		it->backoff = !it->accepted && retries < o->backoff;
		np_say_iteration(o, ls, it, bar, np_zero_entropy_layers(&it->profile, o->entropy_eps),
		                 ls->n);
		if (it->accepted) {
			run->chosen = it->index;
			st = np_snapshot_take(rt, &good, err);
		} else if (it->backoff) {
			retries++;
			zeta /= 2;
			st = np_snapshot_restore(rt, &good, err);
		} else {
			break;
		}
	}
	if (st == NP_OK)
		st = np_snapshot_restore(rt, &good, err);
	run->sparsity = np_loop_sparsity(rt, ls);
	np_snapshot_free(&good);
	return st;
}

void np_run_free(np_run *run)
{
	for (int i = 0; i < run->n_it; i++) {
		np_profile_free(&run->it[i].profile);
		free(run->it[i].mask);
	}
	free(run->it);
	np_profile_free(&run->final_profile);
	np_pass_log_free(&run->log);
	free(run->gone);
	free(run->layer_names);
	free(run->layer_kinds);
	free(run->layer_labels);
	memset(run, 0, sizeof *run);
}
