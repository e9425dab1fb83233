/* cmd_compile.c - the main job: `nepenc MODEL -o OUT [options]`.
 *
 *   load -> untie -> dense accuracy -> NEPENTHE loop (profile, mask,
 *   fine-tune, validate, backoff) -> fresh profile of the chosen iterate
 *   -> linearize, fold, verify -> metadata -> atomic write -> report,
 *   plot, summary.
 * With --passes none the model is only written back through the IR.
 */
#include "config.h"

#include "commands.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "json.h"
#include "layers.h"
#include "nepenthe.h"
#include "onnx_io.h"
#include "plot.h"
#include "progress.h"
#include "report.h"
#include "session.h"
#include "top1.h"

/* The data of a run, owned here. */
typedef struct np_compile_data {
	np_dataset all, val_own, test;   /* loaded */
	np_dataset train, val;           /* views */
	float *teacher_train, *teacher_val, *teacher_test;
	np_run_data rd;
} np_compile_data;

static void np_compile_data_free(np_compile_data *cd)
{
	np_dataset_free(&cd->all);
	np_dataset_free(&cd->val_own);
	np_dataset_free(&cd->test);
	free(cd->teacher_train);
	free(cd->teacher_val);
	free(cd->teacher_test);
}

/* --data, split into training and validation parts (section 5): --val,
 * or the last 1/12 of --data; --limit then keeps the first N of the
 * training part. */
static np_status np_compile_load(const np_session *s, const np_cli *c,
                                 np_compile_data *cd, np_error *err)
{
	np_cli whole = *c;
	whole.dopts.limit = 0;
	np_status st = np_session_data(s, &whole, c->data, &cd->all, err);
	if (st == NP_OK && c->val) {
		st = np_session_data(s, &whole, c->val, &cd->val_own, err);
		cd->train = np_dataset_slice(&cd->all, 0, cd->all.n);
		cd->val = np_dataset_slice(&cd->val_own, 0, cd->val_own.n);
	} else if (st == NP_OK) {
		int64_t nv = cd->all.n / 12;
		if (nv < 1 || cd->all.n - nv < 1)
			return np_fail_file(err, NP_ERR_INVALID, c->data,
			                    "%lld examples are too few to keep 1/12 for validation",
			                    (long long)cd->all.n);
		cd->train = np_dataset_slice(&cd->all, 0, cd->all.n - nv);
		cd->val = np_dataset_slice(&cd->all, cd->all.n - nv, nv);
	}
	if (st == NP_OK && c->dopts.limit > 0 && c->dopts.limit < cd->train.n)
		cd->train = np_dataset_slice(&cd->train, 0, c->dopts.limit);
	if (st == NP_OK && c->test)
		st = np_session_data(s, &whole, c->test, &cd->test, err);
	if (st != NP_OK)
		return st;
	/* Without labels: distil the input model (section 5). */
	int64_t classes;
	if (!cd->train.y)
		st = np_predict(s->rt, &cd->train, c->batch, &cd->teacher_train, &classes, err);
	if (st == NP_OK && !cd->val.y)
		st = np_predict(s->rt, &cd->val, c->batch, &cd->teacher_val, &classes, err);
	if (st == NP_OK && cd->test.spec && !cd->test.y)
		st = np_predict(s->rt, &cd->test, c->batch, &cd->teacher_test, &classes, err);
	cd->rd = (np_run_data){&cd->train, &cd->val, cd->test.spec ? &cd->test : NULL,
	                       cd->teacher_train, cd->teacher_val, cd->teacher_test};
	return st;
}

static void np_compile_opts(const np_cli *c, np_nepenthe_opts *o)
{
	memset(o, 0, sizeof *o);
	o->zeta = c->zeta;
	o->theta = c->theta;
	o->entropy_eps = c->entropy_eps;
	o->max_iter = c->max_iter;
	o->backoff = c->backoff;
	o->mask.method = (np_method)c->method;
	o->mask.criterion = (np_criterion)c->criterion;
	o->mask.no_entropy_budget = c->no_entropy_budget;
	o->mask.no_neuron_selection = c->no_neuron_selection;
	o->mask.min_live = c->min_live;
	o->easier_map = (np_easier_map)c->easier_map;
	o->bf16 = c->bf16;
	o->train = c->train;
	o->profile.batch = c->batch;
	o->profile.no_dont_care = c->no_dont_care;
	o->batch = c->batch;
	o->fold = (np_fold_policy)c->fold;
	o->dopts = &c->dopts;
	o->threads = c->threads;
	o->quiet = c->quiet;   /* progress and iteration lines: stderr, also with --json */
	o->verbose = c->verbose;
}

/* nepenthe.* metadata and a graph doc_string summarising the run. */
static void np_stamp(np_model *m, const np_run *run, const np_cli *c)
{
	char buf[128];
	snprintf(buf, sizeof buf, "%.2f", run->dense_val);
	np_model_set_metadata(m, "nepenthe.dense_val_top1", buf);
	snprintf(buf, sizeof buf, "%.2f", run->final_val);
	np_model_set_metadata(m, "nepenthe.val_top1", buf);
	if (run->final_test >= 0) {
		snprintf(buf, sizeof buf, "%.2f", run->dense_test);
		np_model_set_metadata(m, "nepenthe.dense_test_top1", buf);
		snprintf(buf, sizeof buf, "%.2f", run->final_test);
		np_model_set_metadata(m, "nepenthe.test_top1", buf);
	}
	snprintf(buf, sizeof buf, "%d/%d", run->removed, run->layers);
	np_model_set_metadata(m, "nepenthe.removed_layers", buf);
	snprintf(buf, sizeof buf, "%.4f", run->sparsity);
	np_model_set_metadata(m, "nepenthe.sparsity", buf);
	snprintf(buf, sizeof buf, "%g", c->zeta);
	np_model_set_metadata(m, "nepenthe.zeta", buf);
	snprintf(buf, sizeof buf, "%g", c->theta);
	np_model_set_metadata(m, "nepenthe.theta", buf);
	snprintf(buf, sizeof buf, "%d", run->chosen);
	np_model_set_metadata(m, "nepenthe.iterations", buf);
	np_model_set_metadata(m, "nepenthe.method", np_method_name((np_method)c->method));
	np_model_set_metadata(m, "nepenthe.version", PACKAGE_VERSION);
	bool easier = c->method == NP_METHOD_EASIER;
	m->graph->doc_string = np_arena_printf(m->arena,
		"nepenc %s: %s theta %g; removed %d of %d rectified layers; "
		"%d -> %d nodes, longest path %d -> %d; %.1f%% of prunable weights pruned; "
		"validation top-1 %.2f%% (dense %.2f%%)", PACKAGE_VERSION,
		easier ? np_arena_printf(m->arena, "EASIER (%s map)",
		                         np_easier_map_name((np_easier_map)c->easier_map))
		       : np_arena_printf(m->arena, "%s zeta %g", c->method == NP_METHOD_IMP
		                         ? "IMP" : "NEPENTHE", c->zeta), c->theta,
		run->removed, run->layers, run->nodes_before, run->nodes_after,
		run->depth_before, run->depth_after, 100.0 * run->sparsity, run->final_val,
		run->dense_val);
}

/* The layers removed by an approximate linearization (report.h's
 * fate); their names, comma-separated, into buf (may be NULL). */
static int np_run_approximated(const np_run *run, char *buf, size_t len)
{
	int n = 0;
	size_t at = 0;
	if (buf && len)
		buf[0] = '\0';
	for (int i = 0; i < run->layers; i++) {
		np_layer_fate f;
		np_layer_fate_of(run, i, &f);
		if (!(f.linearized && f.approximate))
			continue;
		n++;
		const char *name = run->layer_names && run->layer_names[i] ? run->layer_names[i] : "?";
		if (buf && at < len) {
			int w = snprintf(buf + at, len - at, "%s%s", n > 1 ? ", " : "", name);
			at += w > 0 ? (size_t)w : 0;
		}
	}
	return n;
}

static void np_summary(const np_run *run, const np_cli *c)
{
	if (c->json) {
		np_json j;
		np_json_init(&j, stdout);
		np_json_begin_object(&j, NULL);
		np_json_string(&j, "method", np_method_name(run->method));
		np_json_double(&j, "dense_top1", run->final_test >= 0 ? run->dense_test : run->dense_val);
		np_json_double(&j, "top1", run->final_test >= 0 ? run->final_test : run->final_val);
		np_json_string(&j, "split", run->final_test >= 0 ? "test" : "validation");
		np_json_double(&j, "dense_val_top1", run->dense_val);
		np_json_double(&j, "val_top1", run->final_val);
		np_json_int(&j, "removed", run->removed);
		np_json_int(&j, "layers", run->layers);
		np_json_int(&j, "nodes_before", run->nodes_before);
		np_json_int(&j, "nodes_after", run->nodes_after);
		np_json_int(&j, "depth_before", run->depth_before);
		np_json_int(&j, "depth_after", run->depth_after);
		np_json_double(&j, "sparsity", run->sparsity);
		if (run->logits_compared) {
			np_json_double(&j, "logit_max_abs_diff", run->logit_max_abs);
			np_json_double(&j, "logit_mean_abs_diff", run->logit_mean_abs);
		}
		np_json_int(&j, "approximated", np_run_approximated(run, NULL, 0));
		np_json_int(&j, "iterations", run->n_it);
		np_json_int(&j, "chosen", run->chosen);
		np_json_double(&j, "seconds", run->seconds);
		np_json_end(&j);
		return;
	}
	if (c->quiet)
		return;
	printf("\n%-28s %12s %12s\n", "", "input", "output");
	printf("%-28s %11.2f%% %11.2f%%\n", "validation top-1", run->dense_val, run->final_val);
	if (run->final_test >= 0)
		printf("%-28s %11.2f%% %11.2f%%\n", "test top-1", run->dense_test, run->final_test);
	printf("%-28s %12d %12d\n", "rectified layers", run->layers, run->layers - run->removed);
	printf("%-28s %12d %12d\n", "nodes", run->nodes_before, run->nodes_after);
	printf("%-28s %12d %12d\n", "longest path (nodes)", run->depth_before, run->depth_after);
	printf("%-28s %12s %11.2f%%\n", "sparsity (prunable weights)", "0", 100.0 * run->sparsity);
	printf("layers removed %d/%d after %d iteration(s) (kept iterate %d), %.1f s\n",
	       run->removed, run->layers, run->n_it, run->chosen, run->seconds);
	char names[512];
	int approx = np_run_approximated(run, names, sizeof names);
	if (approx > 0)
		printf("approximated %d layer(s): %s\n", approx, names);
	if (run->logits_compared)
		printf("logits moved (validation, input vs output): max |diff| %.4g, "
		       "mean |diff| %.4g\n", run->logit_max_abs, run->logit_mean_abs);
	printf("wrote %s\n", c->output);
}

/* NEPENTHE and IMP: mask in the session's runtime; the chosen iterate's
 * weights go back into the session's model, which is emitted. */
static np_status np_compile_masking(np_session *s, const np_layers *ls,
                                    np_compile_data *cd, const np_nepenthe_opts *o,
                                    np_run *run, np_model **out, np_error *err)
{
	double bar = o->theta * run->dense_val;
	np_status st = np_nepenthe_loop(s->rt, ls, &cd->rd, o, run, err);
	if (st == NP_OK)
		st = np_rt_store(s->rt, s->m, err);
	np_profile_opts po = o->profile;
	po.quiet = o->quiet;
	if (st == NP_OK)
		st = np_profile_run(s->rt, ls, cd->rd.train, &po, &run->final_profile, err);
	if (st == NP_OK)
		st = np_nepenthe_emit(s->m, ls, &run->final_profile, &cd->rd, o, bar, run, out, err);
	return st;
}

/* EASIER: every step a model of its own; the chosen one is emitted. */
static np_status np_compile_easier(np_session *s, const np_layers *ls,
                                   np_compile_data *cd, const np_nepenthe_opts *o,
                                   np_run *run, np_model **out, np_error *err)
{
	np_easier_result res = {0};
	np_status st = np_easier_loop(s->m, ls, &cd->rd, o, run, &res, err);
	if (st == NP_OK)
		st = np_nepenthe_emit(res.model, &res.layers, &res.profile, &cd->rd, o,
		                      o->theta * run->dense_val, run, out, err);
	np_easier_result_free(&res);
	return st;
}

/* Could linearizing one of these layers be an approximation?  (GELU,
 * SiLU; any layer with --entropy-eps.) */
static bool np_may_approximate(const np_layers *ls, double eps)
{
	for (int l = 0; l < ls->n; l++)
		if (eps > 0 || ls->v[l].kind == NP_RECT_GELU || ls->v[l].kind == NP_RECT_SILU)
			return true;
	return false;
}

/* m's logits on val (malloc'd, val->n * classes), on a runtime of its
 * own. */
static np_status np_val_logits(np_model *m, const np_dataset *val, const np_cli *c,
                               float **z, np_error *err)
{
	np_rt *rt = np_rt_new(m, c->threads, err);
	if (!rt)
		return err->status;
	int64_t classes = 0;
	np_status st = np_predict(rt, val, c->batch, z, &classes, err);
	np_rt_free(rt);
	return st;
}

/* run->logit_*: out's validation logits against the input's (dense,
 * as many floats). */
static np_status np_logit_moved(np_model *out, const np_dataset *val, const float *dense,
                                int64_t n, const np_cli *c, np_run *run, np_error *err)
{
	float *z = NULL;
	np_status st = np_val_logits(out, val, c, &z, err);
	if (st != NP_OK)
		return st;
	double mx = 0, sum = 0;
	for (int64_t i = 0; i < n; i++) {
		double d = fabs((double)z[i] - dense[i]);
		mx = d > mx ? d : mx;
		sum += d;
	}
	free(z);
	run->logits_compared = true;
	run->logit_max_abs = mx;
	run->logit_mean_abs = n > 0 ? sum / (double)n : 0.0;
	return NP_OK;
}

/* The loop and the emission on a loaded session. */
static np_status np_compile_run(np_session *s, const np_cli *c, np_compile_data *cd,
                                np_run *run, np_model **out, np_error *err)
{
	np_nepenthe_opts o;
	np_compile_opts(c, &o);
	np_layers ls = {0};
	np_status st = np_find_layers(s->m, &ls, err);
	run->layers = ls.n;
	run->layer_names = calloc((size_t)ls.n + 1, sizeof(char *));
	run->layer_kinds = calloc((size_t)ls.n + 1, sizeof(char *));
	run->layer_labels = calloc((size_t)ls.n + 1, sizeof(char *));
	for (int l = 0; run->layer_names && run->layer_kinds && run->layer_labels &&
	                l < ls.n; l++) {
		run->layer_names[l] = ls.v[l].rectifier->name;
		run->layer_kinds[l] = np_rect_kind_name(ls.v[l].kind);
		run->layer_labels[l] = np_layer_kind_label(&ls.v[l]);
	}
	/* The input's validation logits, before the loop trains s->rt. */
	float *dense = NULL;
	const char *input = NULL;
	int64_t classes = 0;
	if (st == NP_OK && np_may_approximate(&ls, c->entropy_eps) &&
	    (st = np_model_io(s->m, &input, &classes, err)) == NP_OK)
		st = np_val_logits(s->m, cd->rd.val, c, &dense, err);
	if (st == NP_OK && o.mask.method == NP_METHOD_EASIER)
		st = np_compile_easier(s, &ls, cd, &o, run, out, err);
	else if (st == NP_OK)
		st = np_compile_masking(s, &ls, cd, &o, run, out, err);
	if (st == NP_OK && dense)
		st = np_logit_moved(*out, cd->rd.val, dense, cd->rd.val->n * classes, c, run,
		                    err);
	free(dense);
	np_layers_free(&ls);
	return st;
}

static np_status np_compile_outputs(np_model *out, const np_cli *c, np_run *run,
                                    np_error *err)
{
	np_stamp(out, run, c);
	np_save_opts so = {.external_data = c->external_data};
	np_status st = np_onnx_save(out, c->output, &so, err);
	if (st != NP_OK && !err->file[0])
		snprintf(err->file, sizeof err->file, "%s", c->output);
	if (st == NP_OK && c->report && (st = np_report_write(run, c->report, err)) != NP_OK &&
	    !err->file[0])
		snprintf(err->file, sizeof err->file, "%s", c->report);
	if (st == NP_OK && c->plot && (st = np_plot_write(run, c->plot, err)) != NP_OK &&
	    !err->file[0])
		snprintf(err->file, sizeof err->file, "%s", c->plot);
	return st;
}

static np_status np_compile_nepenthe(const np_cli *c, np_error *err)
{
	double t0 = np_now();
	np_session s = {0};
	np_compile_data cd = {0};
	np_run run = {0};
	np_model *out = NULL;
	np_status st = np_session_load(&s, c, err);
	run.model = c->model;
	if (st == NP_OK) {
		run.nodes_before = s.m->graph->n_nodes;
		run.depth_before = np_graph_depth(s.m->graph);
		/* Equal parameters the exporter stored once train separately. */
		st = run.depth_before < 0 ? np_fail(err, NP_ERR_NOMEM, "out of memory")
		                          : np_session_untie(&s, c, &run.log, err);
	}
	if (st == NP_OK)
		st = np_session_start(&s, c, err);
	if (st == NP_OK)
		st = np_compile_load(&s, c, &cd, err);
	if (st == NP_OK) {
		run.zeta = c->zeta, run.theta = c->theta, run.entropy_eps = c->entropy_eps;
		run.max_iter = c->max_iter, run.epochs = c->train.epochs, run.backoff = c->backoff;
		run.method = (np_method)c->method, run.criterion = (np_criterion)c->criterion;
		run.easier_map = (np_easier_map)c->easier_map, run.min_live = c->min_live;
		run.fold = (np_fold_policy)c->fold;
		st = np_model_top1(s.m, cd.rd.val, c->batch, cd.teacher_val, c->threads,
		                   c->quiet, &run.dense_val, err);
	}
	if (st == NP_OK)
		st = np_model_top1(s.m, cd.rd.test, c->batch, cd.teacher_test, c->threads,
		                   c->quiet, &run.dense_test, err);
	if (st == NP_OK)
		st = np_compile_run(&s, c, &cd, &run, &out, err);
	if (st == NP_OK)
		st = np_model_top1(out, cd.rd.val, c->batch, cd.teacher_val, c->threads,
		                   c->quiet, &run.final_val, err);
	if (st == NP_OK)
		st = np_model_top1(out, cd.rd.test, c->batch, cd.teacher_test, c->threads,
		                   c->quiet, &run.final_test, err);
	if (st == NP_OK) {
		run.nodes_after = out->graph->n_nodes;
		run.depth_after = np_graph_depth(out->graph);
		run.seconds = np_now() - t0;
		st = run.depth_after < 0 ? np_fail(err, NP_ERR_NOMEM, "out of memory")
		     /* Data-parallel: rank 0 writes; every rank learns how
		      * it went (runtime/dist.h). */
		     : np_dist_rank() == 0 ? np_compile_outputs(out, c, &run, err) : NP_OK;
		st = np_dist_agree(st, err);
	}
	if (st == NP_OK)
		np_summary(&run, c);
	np_model_free(out);
	np_run_free(&run);
	np_compile_data_free(&cd);
	np_session_close(&s);
	return st;
}

np_status np_cmd_compile(const np_cli *c, np_error *err)
{
	if (strcmp(c->passes, "none") != 0)
		return np_compile_nepenthe(c, err);
	np_model *m = np_cli_load_model(c, err);
	if (!m)
		return err->status;
	np_save_opts so = {.external_data = c->external_data};
	np_status st = NP_OK;
	if (np_dist_rank() == 0)
		st = np_onnx_save(m, c->output, &so, err);
	if (st != NP_OK && !err->file[0])
		snprintf(err->file, sizeof err->file, "%s", c->output);
	np_model_free(m);
	return np_dist_agree(st, err);
}
