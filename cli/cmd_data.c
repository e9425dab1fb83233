/* cmd_data.c - the commands that run the model on data: eval, finetune. */
#include "commands.h"

#include <stdio.h>
#include <stdlib.h>

#include "dist.h"
#include "json.h"
#include "onnx_io.h"
#include "progress.h"
#include "rt.h"
#include "session.h"
#include "top1.h"
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
	s.eval_progress.note = np_decode_note;
	s.eval_progress.note_ctx = &d;
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

/* Top-1 on a split before and after fine-tuning; before < 0: no such
 * split. */
typedef struct np_split_score {
	double before, after;
} np_split_score;

static void np_finetune_report(const np_cli *c, np_split_score val, np_split_score test,
                               double loss, double seconds, const double comm[2],
                               int64_t images)
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
		/* Data-parallel runs: how many ranks, and rank 0's seconds of
		 * the training waiting for collectives (the all-reduce's
		 * exposed share, waits for slower ranks included), and with
		 * some collective in flight (overlapped or not; bench/scaling). */
		if (np_dist_size() > 1) {
			np_json_int(&j, "ranks", np_dist_size());
			np_json_double(&j, "comm_seconds", comm[0]);
			np_json_double(&j, "comm_total_seconds", comm[1]);
		}
		if (val.before >= 0) {
			np_json_double(&j, "val_top1_before", val.before);
			np_json_double(&j, "val_top1", val.after);
		}
		if (test.before >= 0) {
			np_json_double(&j, "test_top1_before", test.before);
			np_json_double(&j, "test_top1", test.after);
		}
		np_json_end(&j);
		return;
	}
	if (c->quiet)
		return;
	printf("fine-tuned %d epoch(s), %lld images in %.1f s (%.0f img/s), last epoch loss %.4f\n",
	       c->train.epochs, (long long)images, seconds, rate, loss);
	if (val.before >= 0)
		printf("validation top-1 %.2f%% -> %.2f%%\n", val.before, val.after);
	if (test.before >= 0)
		printf("test top-1 %.2f%% -> %.2f%%\n", test.before, test.after);
	printf("wrote %s\n", c->output);
}

/* Teacher logits of the input model for data without labels: fine-tuning
 * distils them, and a validation split without labels is scored as
 * agreement with them (as the main job does). */
static np_status np_teacher(const np_session *s, const np_dataset *d, const np_cli *c,
                            float **teacher, np_error *err)
{
	int64_t classes;
	if (!d->spec || d->y)
		return NP_OK;
	return np_predict(s->rt, d, c->batch, teacher, &classes, err);
}

np_status np_cmd_finetune(const np_cli *c, np_error *err)
{
	np_session s = {0};
	np_dataset train = {0}, val = {0}, test = {0};
	float *teacher = NULL, *teacher_val = NULL;
	np_split_score vs = {-1, -1}, ts = {-1, -1};
	double loss = 0, t0 = 0, seconds = 0, comm[2] = {0, 0};
	np_status st = np_session_load(&s, c, err);
	/* Equal parameters the exporter stored once train separately. */
	if (st == NP_OK)
		st = np_session_untie(&s, c, NULL, err);
	if (st == NP_OK)
		st = np_session_start(&s, c, err);
	if (st == NP_OK)
		st = np_session_data(&s, c, c->data, &train, err);
	/* --limit is of --data only (as in the main job). */
	np_cli whole = *c;
	whole.dopts.limit = 0;
	if (st == NP_OK && c->val)
		st = np_session_data(&s, &whole, c->val, &val, err);
	if (st == NP_OK && c->test)
		st = np_session_data(&s, &whole, c->test, &test, err);
	if (st == NP_OK)
		st = np_teacher(&s, &train, c, &teacher, err);
	if (st == NP_OK)
		st = np_teacher(&s, &val, c, &teacher_val, err);
	if (st == NP_OK && val.spec)
		st = np_top1(s.rt, &val, c->batch, teacher_val, &vs.before, err);
	if (st == NP_OK && test.spec)
		st = np_top1(s.rt, &test, c->batch, NULL, &ts.before, err);
	if (st == NP_OK) {
		np_progress p;
		/* stderr: --json (stdout) keeps its progress; only -q silences it. */
		np_progress_begin(&p, "finetune", "img", c->train.batch, c->quiet);
		p.epochs = c->train.epochs;
		p.note = np_decode_note;
		p.note_ctx = &train;
		np_train_opts o = c->train;
		np_loss_watch w = {.p = &p};
		o.progress = np_loss_watch_step;
		o.progress_ctx = &w;
		t0 = np_now();
		comm[0] = np_dist_comm_seconds();
		comm[1] = np_dist_comm_total_seconds();
		st = np_train(s.rt, &train, &o, teacher, &c->dopts, &loss, err);
		if (st == NP_OK)
			st = np_loss_watch_check(&w, "fine-tuning", err);
		seconds = np_now() - t0;
		comm[0] = np_dist_comm_seconds() - comm[0];
		comm[1] = np_dist_comm_total_seconds() - comm[1];
		np_progress_end(&p);
	}
	if (st == NP_OK)
		st = np_rt_store(s.rt, s.m, err);
	if (st == NP_OK && val.spec)
		st = np_top1(s.rt, &val, c->batch, teacher_val, &vs.after, err);
	if (st == NP_OK && test.spec)
		st = np_top1(s.rt, &test, c->batch, NULL, &ts.after, err);
	/* Data-parallel: every rank holds the same weights; rank 0 writes
	 * them, and the others learn how that went. */
	if (st == NP_OK) {
		if (np_dist_rank() == 0) {
			np_save_opts so = {.external_data = c->external_data};
			st = np_onnx_save(s.m, c->output, &so, err);
			if (st != NP_OK && !err->file[0])
				snprintf(err->file, sizeof err->file, "%s", c->output);
		}
		st = np_dist_agree(st, err);
	}
	if (st == NP_OK)
		np_finetune_report(c, vs, ts, loss, seconds, comm, train.n * c->train.epochs);
	free(teacher);
	free(teacher_val);
	np_dataset_free(&test);
	np_dataset_free(&val);
	np_dataset_free(&train);
	np_session_close(&s);
	return st;
}
