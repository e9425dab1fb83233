/* session.c - open a model with its runtime, load data that fits it;
 * see session.h. */
#include "session.h"

#include "depfile.h"
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
	if (!s->m)
		return err->status;
	s->eval_progress.quiet = c->quiet;
	return np_model_io(s->m, &s->input, &s->classes, err);
}

np_status np_session_start(np_session *s, const np_cli *c, np_error *err)
{
	s->rt = np_rt_new(s->m, c->threads, err);
	if (!s->rt)
		return err->status;
	np_rt_set_progress(s->rt, np_progress_rt, &s->eval_progress);
	return np_rt_set_bf16(s->rt, c->bf16, err);
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

/* Load a data spec and check it fits the model. */
np_status np_session_data(const np_session *s, const np_cli *c,
                          const char *spec, np_dataset *d, np_error *err)
{
	np_status st = np_data_load(spec, &c->dopts, d, err);
	if (st != NP_OK)
		return st;
	st = np_dataset_check_input(d, np_graph_find(s->m->graph, s->input), err);
	if (st == NP_OK && d->y)
		st = np_dataset_check_labels(d, s->classes, err);
	return st;
}
