/* cmd_data.c - the commands that run the model on data: eval, finetune. */
#include "commands.h"

#include <stdio.h>
#include <stdlib.h>

#include "json.h"
#include "onnx_io.h"
#include "progress.h"
#include "rt.h"
#include "session.h"
#include "train.h"

np_status np_cmd_eval(const np_cli *c, np_error *err)
{
	np_session s = {0};
	np_dataset d = {0};
	np_eval_result r;
	np_status st = np_session_open(&s, c, err);
	if (st == NP_OK)
		st = np_session_data(&s, c, c->data, &d, err);
	if (st == NP_OK && !d.y)
		st = np_fail(err, NP_ERR_USAGE, "eval needs labelled data ('%s' has none)",
		             c->data);
	if (st == NP_OK)
		st = np_evaluate(s.rt, &d, c->batch, NULL, &r, err);
	if (st == NP_OK) {
		if (c->json) {
			np_json j;
			np_json_init(&j, stdout);
			np_json_begin_object(&j, NULL);
			np_json_double(&j, "top1", r.top1);
			np_json_double(&j, "loss", r.loss);
			np_json_int(&j, "n", r.n);
			np_json_end(&j);
		} else if (!c->quiet) {
			printf("top-1 %.2f%%  loss %.4f  (%lld examples of %s)\n", r.top1,
			       r.loss, (long long)r.n, c->data);
		}
	}
	np_dataset_free(&d);
	np_session_close(&s);
	return st;
}

/* Test top-1 of the session's current weights, or -1 without --test. */
static np_status np_score(const np_session *s, const np_dataset *test,
                          const np_cli *c, double *top1, np_error *err)
{
	np_eval_result r;
	*top1 = -1;
	if (!test->x)
		return NP_OK;
	np_status st = np_evaluate(s->rt, test, c->batch, NULL, &r, err);
	if (st == NP_OK)
		*top1 = r.top1;
	return st;
}

static void np_finetune_report(const np_cli *c, double before, double after,
                               double loss, double seconds, int64_t images)
{
	double rate = seconds > 0 ? (double)images / seconds : 0;
	if (c->json) {
		np_json j;
		np_json_init(&j, stdout);
		np_json_begin_object(&j, NULL);
		np_json_int(&j, "epochs", c->train.epochs);
		np_json_int(&j, "images", images);
		np_json_double(&j, "seconds", seconds);
		np_json_double(&j, "img_per_s", rate);
		np_json_double(&j, "loss", loss);
		if (before >= 0) {
			np_json_double(&j, "test_top1_before", before);
			np_json_double(&j, "test_top1", after);
		}
		np_json_end(&j);
		return;
	}
	if (c->quiet)
		return;
	printf("fine-tuned %d epoch(s), %lld images in %.1f s (%.0f img/s), last epoch loss %.4f\n",
	       c->train.epochs, (long long)images, seconds, rate, loss);
	if (before >= 0)
		printf("test top-1 %.2f%% -> %.2f%%\n", before, after);
	printf("wrote %s\n", c->output);
}

np_status np_cmd_finetune(const np_cli *c, np_error *err)
{
	np_session s = {0};
	np_dataset train = {0}, test = {0};
	float *teacher = NULL;
	double before = -1, after = -1, loss = 0, t0 = 0, seconds = 0;
	np_status st = np_session_open(&s, c, err);
	/* Equal parameters the exporter stored once train separately. */
	if (st == NP_OK)
		st = np_session_untie(&s, c, NULL, err);
	if (st == NP_OK)
		st = np_session_data(&s, c, c->data, &train, err);
	if (st == NP_OK && c->test)
		st = np_session_data(&s, c, c->test, &test, err);
	if (st == NP_OK)
		st = np_score(&s, &test, c, &before, err);
	if (st == NP_OK && !train.y) {
		int64_t classes;
		st = np_predict(s.rt, &train, c->batch, &teacher, &classes, err);
	}
	if (st == NP_OK) {
		np_progress p;
		/* stderr: --json (stdout) keeps its progress; only -q silences it. */
		np_progress_begin(&p, "finetune", "img", c->train.batch, c->quiet);
		p.epochs = c->train.epochs;
		np_train_opts o = c->train;
		np_loss_watch w = {.p = &p};
		o.progress = np_loss_watch_step;
		o.progress_ctx = &w;
		t0 = np_now();
		st = np_train(s.rt, &train, &o, teacher, &c->dopts, &loss, err);
		if (st == NP_OK)
			st = np_loss_watch_check(&w, "fine-tuning", err);
		seconds = np_now() - t0;
		np_progress_end(&p);
	}
	if (st == NP_OK)
		st = np_rt_store(s.rt, s.m, err);
	if (st == NP_OK)
		st = np_score(&s, &test, c, &after, err);
	if (st == NP_OK) {
		np_save_opts so = {.external_data = c->external_data};
		st = np_onnx_save(s.m, c->output, &so, err);
		if (st != NP_OK && !err->file[0])
			snprintf(err->file, sizeof err->file, "%s", c->output);
	}
	if (st == NP_OK)
		np_finetune_report(c, before, after, loss, seconds,
		                   train.n * c->train.epochs);
	free(teacher);
	np_dataset_free(&test);
	np_dataset_free(&train);
	np_session_close(&s);
	return st;
}
