/* session.c - open a model with its runtime, load data that fits it;
 * see session.h. */
#include "session.h"

#include <stdio.h>

#include "depfile.h"
#include "dist.h"
#include "onnx_io.h"
#include "pass.h"
#include "train.h"

void np_session_close(np_session *s)
{
	np_rt_free(s->rt);
	np_model_free(s->m);
}

np_model *np_cli_load_model(const np_cli *c, np_error *err)
{
	np_model *m = np_onnx_load(c->model, err);
	if (m && c->deps)
		np_deps_add_model(c->deps, m);
	return m;
}

np_status np_session_load(np_session *s, const np_cli *c, np_error *err)
{
	s->m = np_cli_load_model(c, err);
	np_status st = s->m ? NP_OK : err->status;
	if (st == NP_OK) {
		s->eval_progress.quiet = c->quiet;
		st = np_model_io(s->m, &s->input, &s->classes, err);
	}
	/* Data-parallel: every rank learns of any rank's failure here
	 * (runtime/dist.h), so none waits for it later. */
	return np_dist_agree(st, err);
}

np_status np_session_start(np_session *s, const np_cli *c, np_error *err)
{
	s->rt = np_rt_new(s->m, c->threads, err);
	np_status st = s->rt ? NP_OK : err->status;
	if (st == NP_OK) {
		np_rt_set_progress(s->rt, np_progress_rt, &s->eval_progress);
		st = np_rt_set_bf16(s->rt, c->bf16, err);
	}
	return np_dist_agree(st, err);
}

np_status np_session_open(np_session *s, const np_cli *c, np_error *err)
{
	np_status st = np_session_load(s, c, err);
	return st == NP_OK ? np_session_start(s, c, err) : st;
}

np_status np_session_untie(np_session *s, const np_cli *c,
                           struct np_pass_log *log, np_error *err)
{
	np_pass_ctx ctx = {.fold = (np_fold_policy)c->fold, .log = log};
	return np_run_passes(s->m, "untie", &ctx, err);
}

/* Images of a folder are converted to the model's channels (grey or
 * RGB) when its input says them: [N, C, H, W] with C 1 or 3. */
static int np_model_channels(const np_value *in)
{
	if (!in || !in->has_shape || in->rank != 4)
		return 0;
	int64_t c = in->dims[1].value;
	return c == 1 || c == 3 ? (int)c : 0;
}

/* Load a data spec and check it fits the model. */
np_status np_session_data(const np_session *s, const np_cli *c,
                          const char *spec, np_dataset *d, np_error *err)
{
	const np_value *in = s->input ? np_graph_find(s->m->graph, s->input)
	                              : NULL;
	np_data_opts o = c->dopts;
	o.channels = np_model_channels(in);
	np_status st = np_data_load(spec, &o, d, err);
	if (st != NP_OK)
		return np_dist_agree(st, err);
	/* --skip-bad-images: said once, on stderr, whatever the output
	 * (and by rank 0 of a data-parallel run). */
	if (d->skipped && np_dist_rank() == 0)
		fprintf(stderr, "nepenc: %s: skipped %lld image%s that do%s not decode "
		        "(first: %s)\n", spec, (long long)d->skipped,
		        d->skipped == 1 ? "" : "s", d->skipped == 1 ? "es" : "",
		        d->skip_note ? d->skip_note : "?");
	st = np_dataset_check_model(d, s->m, err);
	if (st == NP_OK && d->y)
		st = np_dataset_check_labels(d, s->classes, err);
	return np_dist_agree(st, err);
}
