/* emit.c - from the chosen iterate to the model nepenc writes
 * (DESIGN.md sections 5 and 6): linearize the zero-entropy layers, keep
 * only what passes the theta check, fold, and verify every fold against
 * the runtime's own linearized model. */
#include "nepenthe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_io.h"
#include "progress.h"
#include "top1.h"

/* At most this many validation examples for the fold check. */
#define NP_VERIFY_EXAMPLES 256
/* DESIGN 6: max abs logit difference <= 1e-4 * max |logit|. */
#define NP_VERIFY_RTOL 1e-4

/* The gap a fold may make (np_nepenthe_opts.verify_rtol). */
static double np_verify_rtol(const np_nepenthe_opts *o)
{
	return o->verify_rtol > 0 ? o->verify_rtol : NP_VERIFY_RTOL;
}

/* The fold passes, in order; run in rounds until nothing changes. */
static const char *const np_fold_passes[] = {"fold_bn", "fold_const", "fold_gemm",
                                             "fold_conv", "fold_residual"};
#define NP_N_FOLD_PASSES (int)(sizeof np_fold_passes / sizeof np_fold_passes[0])
#define NP_FOLD_ROUNDS 3

/* ------------------------------------------------------- evaluation */

/* Validation top-1 of m (section 5's theta check). */
static np_status np_val_top1(const np_model *m, const np_run_data *d,
                             const np_nepenthe_opts *o, double *top1, np_error *err)
{
	return np_model_top1(m, d->val, o->batch, d->teacher_val, o->threads, o->quiet,
	                     top1, err);
}

static np_status np_model_logits(const np_model *m, const np_dataset *sample,
                                 const np_nepenthe_opts *o, float **z, np_error *err)
{
	np_rt *rt = np_rt_new((np_model *)m, o->threads, err);
	if (!rt)
		return err->status;
	int64_t classes;
	np_status st = np_predict(rt, sample, o->batch, z, &classes, err);
	np_rt_free(rt);
	return st;
}

/* max |a-b| / max |b| over n logits. */
static double np_logit_gap(const float *a, const float *b, int64_t n)
{
	double diff = 0, scale = 0;
	for (int64_t i = 0; i < n; i++) {
		diff = fmax(diff, fabs((double)a[i] - b[i]));
		scale = fmax(scale, fabs((double)b[i]));
	}
	return scale > 0 ? diff / scale : diff;
}

/* ------------------------------------------------------ linearizing */

static void np_plan_free(np_linearize_plan *p)
{
	for (int i = 0; i < p->n; i++)
		free(p->v[i].state);
	free(p->v);
	memset(p, 0, sizeof *p);
}

static np_status np_plan_build(const np_layers *ls, const np_profile *prof,
                               const int *order, int n_use, double eps,
                               np_linearize_plan *p, np_error *err)
{
	p->v = calloc((size_t)n_use + 1, sizeof(np_linearize_layer));
	if (!p->v)
		return np_fail(err, NP_ERR_NOMEM, "out of memory");
	for (int k = 0; k < n_use; k++) {
		const np_layer *L = &ls->v[order[k]];
		const np_layer_profile *lp = &prof->l[order[k]];
		np_linearize_layer *ll = &p->v[p->n++];
		ll->rectifier = L->rectifier->name;
		ll->kind = L->kind;
		ll->neurons = lp->neurons;
		ll->approximate = eps > 0 || L->kind == NP_RECT_GELU || L->kind == NP_RECT_SILU;
		ll->state = malloc((size_t)lp->neurons + 1);
		if (!ll->state)
			return np_fail(err, NP_ERR_NOMEM, "out of memory");
		for (int64_t i = 0; i < lp->neurons; i++)
			ll->state[i] = (uint8_t)np_neuron_state(lp, i);
	}
	return NP_OK;
}

static const np_profile *np_sort_profile;

static int np_cmp_by_entropy(const void *a, const void *b)
{
	double x = np_sort_profile->l[*(const int *)a].H_layer;
	double y = np_sort_profile->l[*(const int *)b].H_layer;
	if (x != y)
		return x < y ? -1 : 1;
	return *(const int *)a - *(const int *)b;
}

/* Clone stored and linearize the first n_use layers of order. */
static np_status np_linearized(const np_model *stored, const np_layers *ls,
                               const np_profile *prof, const int *order, int n_use,
                               const np_nepenthe_opts *o, np_run *run,
                               np_model **out, np_error *err)
{
	np_linearize_plan plan = {0};
	np_model *m = np_model_clone(stored, err);
	np_status st = m ? np_plan_build(ls, prof, order, n_use, o->entropy_eps, &plan, err)
	                 : err->status;
	if (st == NP_OK) {
		np_pass_ctx ctx = {.fold = o->fold, .log = &run->log, .linearize = &plan};
		st = np_run_passes(m, "linearize", &ctx, err);
	}
	np_plan_free(&plan);
	if (st != NP_OK) {
		np_model_free(m);
		return st;
	}
	*out = m;
	return NP_OK;
}

/* An encoder's GELU or SiLU (neurons on z's last axis, DESIGN section
 * 13): at zero entropy its maps (all OFF: the MLP branch is its output
 * bias; all ON: fc1 and fc2 fold into one) are approximations that only
 * --fold approx makes, its accuracy gate deciding.  A CNN's or an MLP's
 * GELU keeps section 6's rule (the theta check, whatever the fold). */
static bool np_needs_fold_approx(const np_layer *L)
{
	return L->axis < 0 && (L->kind == NP_RECT_GELU || L->kind == NP_RECT_SILU);
}

/* Linearize the removable layers; while the result misses the bar, undo
 * the layer with the highest entropy (section 5). */
static np_status np_choose_linearized(const np_model *stored, const np_layers *ls,
                                      const np_profile *prof, const np_run_data *d,
                                      const np_nepenthe_opts *o, double bar,
                                      np_run *run, np_model **out, int *removed,
                                      np_error *err)
{
	int *order = malloc(sizeof(int) * ((size_t)ls->n + 1)), n_use = 0;
	if (!order)
		return np_fail(err, NP_ERR_NOMEM, "out of memory");
	for (int l = 0; l < ls->n; l++) {
		if (!np_layer_removable(&prof->l[l], o->entropy_eps))
			continue;
		if (np_needs_fold_approx(&ls->v[l]) && o->fold != NP_FOLD_APPROX) {
			np_pass_log_add(&run->log, (np_model *)stored, NP_LOG_REFUSED, "linearize",
			                ls->v[l].rectifier->name, NULL,
			                "zero entropy, but linearizing an encoder's %s is an "
			                "approximation: only with --fold approx",
			                np_layer_kind_label(&ls->v[l]));
			continue;
		}
		order[n_use++] = l;
	}
	np_sort_profile = prof;
	qsort(order, (size_t)n_use, sizeof(int), np_cmp_by_entropy);
	np_status st = NP_OK;
	for (;;) {
		int mark = run->log.n;
		np_model *m = NULL;
		double top1 = 0;
		st = np_linearized(stored, ls, prof, order, n_use, o, run, &m, err);
		if (st == NP_OK && n_use > 0)
			st = np_val_top1(m, d, o, &top1, err);
		if (st != NP_OK) {
			np_model_free(m);
			break;
		}
		if (n_use == 0 || top1 >= bar) {
			*out = m;
			break;
		}
		np_model_free(m);
		np_pass_log_truncate(&run->log, mark);
		const char *name = ls->v[order[n_use - 1]].rectifier->name;
		np_pass_log_add(&run->log, (np_model *)stored, NP_LOG_UNDONE, "linearize",
		                name, NULL, "validation top-1 %.2f%% with it linearized, "
		                "below the bar %.2f%%", top1, bar);
		n_use--;
	}
	*removed = n_use;
	free(order);
	return st;
}

/* ---------------------------------------------------------- folding */

static np_status np_fold_all(np_model *m, const np_nepenthe_opts *o, np_run *run,
                             const char *const *passes, int n, np_error *err)
{
	np_pass_ctx ctx = {.fold = o->fold, .log = &run->log};
	np_status st = np_run_passes(m, "eliminate", &ctx, err);
	for (int round = 0; st == NP_OK && round < NP_FOLD_ROUNDS; round++) {
		ctx.changes = 0;
		for (int i = 0; st == NP_OK && i < n; i++)
			st = np_run_passes(m, passes[i], &ctx, err);
		if (st == NP_OK)
			st = np_run_passes(m, "eliminate,dce", &ctx, err);
		if (ctx.changes == 0)
			break;
	}
	return st;
}

/* What every fold is checked against: the linearized model's logits on
 * a validation sample. */
typedef struct np_verify {
	np_dataset sample;
	float *ref;
	int64_t n_logits;
} np_verify;

/* Largest relative logit gap between m and the reference. */
static np_status np_check(const np_model *m, const np_verify *v,
                          const np_nepenthe_opts *o, double *gap, np_error *err)
{
	float *z = NULL;
	np_status st = np_model_logits(m, &v->sample, o, &z, err);
	if (st == NP_OK)
		*gap = np_logit_gap(z, v->ref, v->n_logits);
	free(z);
	return st;
}

/* Folds undone after a failed check: never tried again. */
typedef struct np_skips {
	int *pass;                   /* index in np_fold_passes */
	char **name;                 /* the fold's candidate node (malloc'd) */
	const char **view;           /* scratch: the names of one pass */
	int n, cap;
} np_skips;

static void np_skips_free(np_skips *sk)
{
	for (int i = 0; i < sk->n; i++)
		free(sk->name[i]);
	free(sk->pass);
	free(sk->name);
	free(sk->view);
	memset(sk, 0, sizeof *sk);
}

static np_status np_skips_add(np_skips *sk, int pass, const char *name, np_error *err)
{
	if (sk->n == sk->cap) {
		int cap = sk->cap ? 2 * sk->cap : 8;
		int *p = realloc(sk->pass, sizeof(int) * (size_t)cap);
		if (p)
			sk->pass = p;
		char **nm = p ? realloc(sk->name, sizeof(char *) * (size_t)cap) : NULL;
		if (nm)
			sk->name = nm;
		const char **v = nm ? realloc(sk->view, sizeof(char *) * (size_t)cap) : NULL;
		if (!v)
			return np_fail(err, NP_ERR_NOMEM, "out of memory");
		sk->view = v;
		sk->cap = cap;
	}
	if (!(sk->name[sk->n] = strdup(name ? name : "")))
		return np_fail(err, NP_ERR_NOMEM, "out of memory");
	sk->pass[sk->n++] = pass;
	return NP_OK;
}

/* The candidates of pass i not to fold at, in sk->view. */
static int np_skips_of(np_skips *sk, int pass)
{
	int k = 0;
	for (int i = 0; i < sk->n; i++)
		if (sk->pass[i] == pass)
			sk->view[k++] = sk->name[i];
	return k;
}

/* One fold of pass i on a clone of *cur (then eliminate and dce), kept
 * if the check passes, else undone, reported and skipped from then on.
 * *folded: a fold was made (kept or not); *kept: it was kept. */
static np_status np_fold_one(np_model **cur, int i, np_skips *sk, const np_verify *v,
                             const np_nepenthe_opts *o, np_run *run, bool *folded,
                             bool *kept, np_error *err)
{
	int mark = run->log.n;
	double gap = 0;
	*folded = *kept = false;
	np_model *m = np_model_clone(*cur, err);
	if (!m)
		return err->status;
	np_pass_ctx ctx = {.fold = o->fold, .log = &run->log, .max_folds = 1,
	                   .skip = sk->view, .n_skip = np_skips_of(sk, i)};
	np_status st = np_run_passes(m, np_fold_passes[i], &ctx, err);
	if (st == NP_OK && ctx.folds > 0) {
		*folded = true;
		st = np_run_passes(m, "eliminate,dce", &ctx, err);
		if (st == NP_OK)
			st = np_check(m, v, o, &gap, err);
	}
	if (st != NP_OK || !*folded || gap <= np_verify_rtol(o)) {
		if (st == NP_OK && *folded) {
			np_model_free(*cur);
			*cur = m;
			*kept = true;
		} else {
			np_model_free(m);
		}
		return st;
	}
	/* Undo this fold only (DESIGN section 6), naming it as it was
	 * logged: its first "folded" entry. */
	const char *node = ctx.folded_at, *into = NULL;
	for (int k = mark; k < run->log.n; k++)
		if (run->log.v[k].kind == NP_LOG_FOLDED) {
			node = run->log.v[k].node;
			into = run->log.v[k].into;
			break;
		}
	np_pass_log undone = {0};
	np_pass_log_add(&undone, m, NP_LOG_UNDONE, np_fold_passes[i], node, into,
	                "the folded model's logits differ by %.3g of their scale "
	                "(allowed %.0e)", gap, np_verify_rtol(o));
	st = np_skips_add(sk, i, ctx.folded_at, err);
	np_model_free(m);
	np_pass_log_truncate(&run->log, mark);
	for (int k = 0; k < undone.n; k++)
		np_pass_log_add(&run->log, *cur, undone.v[k].kind, undone.v[k].pass,
		                undone.v[k].node, undone.v[k].into, "%s", undone.v[k].why);
	np_pass_log_free(&undone);
	return st;
}

/* Fold one fold at a time, checking each: a fold that fails the check is
 * undone alone, the others stay. */
static np_status np_fold_one_by_one(np_model **cur, const np_verify *v,
                                    const np_nepenthe_opts *o, np_run *run,
                                    np_error *err)
{
	np_skips sk = {0};
	np_pass_ctx ctx = {.fold = o->fold, .log = &run->log};
	int mark = run->log.n;
	double gap = 0;
	np_model *m = np_model_clone(*cur, err);
	np_status st = m ? np_run_passes(m, "eliminate", &ctx, err) : err->status;
	if (st == NP_OK)
		st = np_check(m, v, o, &gap, err);
	if (st == NP_OK && gap <= np_verify_rtol(o)) {
		np_model_free(*cur);
		*cur = m;
	} else {
		np_model_free(m);
		np_pass_log_truncate(&run->log, mark);
		if (st == NP_OK)
			np_pass_log_add(&run->log, *cur, NP_LOG_UNDONE, "eliminate", NULL, NULL,
			                "removing the identity maps changed the logits by "
			                "%.3g of their scale (allowed %.0e)", gap,
			                np_verify_rtol(o));
	}
	/* Rounds: a fold of a later pass can make one of an earlier possible. */
	bool again = true;
	for (int round = 0; st == NP_OK && again && round < NP_FOLD_ROUNDS; round++) {
		again = false;
		for (int i = 0; st == NP_OK && i < NP_N_FOLD_PASSES; i++) {
			bool folded = true, kept = false;
			while (st == NP_OK && folded) {
				st = np_fold_one(cur, i, &sk, v, o, run, &folded, &kept, err);
				again |= kept;
			}
		}
	}
	np_skips_free(&sk);
	return st;
}

/* The approximate merges (--fold approx) logged from entry mark on, as
 * "undone" entries in out: the bar was missed with them. */
static void np_approx_undone(const np_pass_log *log, int mark, double top1, double bar,
                             np_model *m, np_pass_log *out)
{
	for (int k = mark; k < log->n; k++) {
		const np_log_entry *e = &log->v[k];
		if (e->kind == NP_LOG_FOLDED && e->why && strncmp(e->why, "approximate", 11) == 0)
			np_pass_log_add(out, m, NP_LOG_UNDONE, e->pass, e->node, e->into,
			                "--fold approx: validation top-1 %.2f%% with the "
			                "approximate merges, below the bar %.2f%%; folded "
			                "exactly instead", top1, bar);
	}
}

/* Fold the linearized model; verify against it (section 6). */
static np_status np_fold_verified(const np_model *lin, const np_run_data *d,
                                  const np_nepenthe_opts *o, double bar, np_run *run,
                                  np_model **out, np_error *err)
{
	const char *input;
	int64_t classes;
	np_status st = np_model_io(lin, &input, &classes, err);
	if (st != NP_OK)
		return st;
	int64_t n = d->val->n < NP_VERIFY_EXAMPLES ? d->val->n : NP_VERIFY_EXAMPLES;
	np_verify v = {np_dataset_slice(d->val, 0, n), NULL, n * classes};
	if ((st = np_model_logits(lin, &v.sample, o, &v.ref, err)) != NP_OK)
		return st;
	int mark = run->log.n;
	double gap = 0, top1 = 0;
	np_model *m = np_model_clone(lin, err);
	st = m ? np_fold_all(m, o, run, np_fold_passes, NP_N_FOLD_PASSES, err) : err->status;
	if (st == NP_OK)
		st = np_check(m, &v, o, &gap, err);
	/* --fold approx merges inexact pairs: the theta bar decides. */
	bool approx = o->fold == NP_FOLD_APPROX;
	if (st == NP_OK && approx)
		st = np_val_top1(m, d, o, &top1, err);
	bool good = st == NP_OK && (approx ? top1 >= bar : gap <= np_verify_rtol(o));
	if (st == NP_OK && !good) {
		np_pass_log undone = {0};
		if (approx)
			np_approx_undone(&run->log, mark, top1, bar, m, &undone);
		np_model_free(m);
		np_pass_log_truncate(&run->log, mark);
		for (int k = 0; k < undone.n; k++)
			np_pass_log_add(&run->log, NULL, undone.v[k].kind, undone.v[k].pass,
			                undone.v[k].node, undone.v[k].into, "%s", undone.v[k].why);
		np_pass_log_free(&undone);
		np_nepenthe_opts exact = *o;
		exact.fold = approx ? NP_FOLD_EXACT : o->fold;
		m = np_model_clone(lin, err);
		st = m ? np_fold_one_by_one(&m, &v, &exact, run, err) : err->status;
	}
	free(v.ref);
	if (st != NP_OK) {
		np_model_free(m);
		return st;
	}
	*out = m;
	return NP_OK;
}

/* ------------------------------------------------- what was removed */

/* Did the log's last word on node name say it was linearized? */
static bool np_logged_linearized(const np_pass_log *log, const char *name)
{
	bool lin = false;
	for (int k = 0; k < log->n; k++)
		if (log->v[k].node && strcmp(log->v[k].node, name) == 0) {
			if (log->v[k].kind == NP_LOG_LINEARIZED)
				lin = true;
			else if (log->v[k].kind == NP_LOG_UNDONE)
				lin = false;
		}
	return lin;
}

/* Did an accepted EASIER step remove layer `layer` (0-based)? */
static bool np_easier_removed(const np_run *run, int layer)
{
	for (int k = 0; k < run->n_it; k++)
		if (run->it[k].layer == layer + 1 && run->it[k].accepted)
			return true;
	return false;
}

static bool np_layers_have(const np_layers *ls, const char *name)
{
	for (int j = 0; name && j < ls->n; j++)
		if (ls->v[j].rectifier->name && strcmp(ls->v[j].rectifier->name, name) == 0)
			return true;
	return false;
}

/* run->removed and run->gone from the model written: a layer is removed
 * when its rectifier is not in out, whatever took it (DESIGN section 11):
 * linearized here, by an EASIER step, or folded away with a branch that
 * became a constant.  Without the run's layer names (callers that only
 * emit), the count is stored's layers minus out's. */
static np_status np_count_removed(const np_layers *stored_ls, np_model *out,
                                  np_run *run, np_error *err)
{
	np_layers ol = {0};
	np_status st = np_find_layers(out, &ol, err);
	if (st != NP_OK)
		return st;
	if (!run->layer_names) {
		run->removed = stored_ls->n - ol.n;
		np_layers_free(&ol);
		return NP_OK;
	}
	free(run->gone);
	run->gone = calloc((size_t)run->layers + 1, 1);
	if (!run->gone) {
		np_layers_free(&ol);
		return np_fail(err, NP_ERR_NOMEM, "out of memory");
	}
	run->removed = 0;
	for (int i = 0; i < run->layers; i++) {
		const char *name = run->layer_names[i];
		if (np_layers_have(&ol, name))
			continue;
		run->gone[i] = np_easier_removed(run, i) ? NP_GONE_EASIER
		             : name && np_logged_linearized(&run->log, name) ? NP_GONE_LINEARIZED
		             : NP_GONE_FOLDED;
		run->removed++;
	}
	np_layers_free(&ol);
	return NP_OK;
}

np_status np_nepenthe_emit(const np_model *stored, const np_layers *ls,
                           const np_profile *prof, const np_run_data *d,
                           const np_nepenthe_opts *o, double bar, np_run *run,
                           np_model **out, np_error *err)
{
	np_model *lin = NULL, *m = NULL;
	int linearized = 0;
	np_status st = np_choose_linearized(stored, ls, prof, d, o, bar, run, &lin,
	                                    &linearized, err);
	if (st != NP_OK)
		return st;
	if (o->fold == NP_FOLD_NONE) {
		np_pass_ctx ctx = {.fold = o->fold, .log = &run->log};
		st = np_run_passes(lin, "eliminate,dce", &ctx, err);
		m = lin;
		lin = NULL;
	} else {
		st = np_fold_verified(lin, d, o, bar, run, &m, err);
	}
	np_model_free(lin);
	if (st == NP_OK)
		st = np_count_removed(ls, m, run, err);
	if (st != NP_OK) {
		np_model_free(m);
		return st;
	}
	*out = m;
	return NP_OK;
}
