/* train.c - evaluation and fine-tuning loops; see train.h. */
#include "train.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

np_status np_model_io(const np_model *m, const char **input, int64_t *classes,
                      np_error *err)
{
	const np_graph *g = m->graph;
	const np_value *in = NULL;
	for (int i = 0; i < g->n_inputs; i++) {
		if (g->inputs[i]->init)
			continue;
		if (in)
			return np_fail(err, NP_ERR_UNSUPPORTED,
			               "the model has several inputs ('%s', '%s'); "
			               "training and evaluation need one", in->name,
			               g->inputs[i]->name);
		in = g->inputs[i];
	}
	if (!in)
		return np_fail(err, NP_ERR_INVALID, "the model has no input");
	if (g->n_outputs < 1)
		return np_fail(err, NP_ERR_INVALID, "the model has no output");
	const np_value *out = g->outputs[0];
	if (!out->has_shape || out->rank != 2 || out->dims[1].value <= 0)
		return np_fail(err, NP_ERR_UNSUPPORTED,
		               "output '%s' is not declared as [N, classes]", out->name);
	*input = in->name;
	*classes = out->dims[1].value;
	return NP_OK;
}

/* Run one batch forward; the output must be [n, classes]. */
static np_status np_forward_batch(np_rt *rt, const char *input, const np_dataset *d,
                                  const float *x, int64_t n, np_rt_mode mode,
                                  int64_t classes, const float **logits,
                                  np_error *err)
{
	np_rt_input in = {.name = input, .dtype = NP_FLOAT, .rank = d->rank + 1, .data = x};
	in.dims[0] = n;
	memcpy(in.dims + 1, d->dims, sizeof(int64_t) * (size_t)d->rank);
	np_status st = np_rt_run(rt, &in, 1, mode, err);
	if (st != NP_OK)
		return st;
	const np_rtensor *y = np_rt_output(rt, 0);
	if (y->dtype != NP_FLOAT || y->rank != 2 || y->dims[0] != n || y->dims[1] != classes)
		return np_fail(err, NP_ERR_INVALID,
		               "output '%s' is not [%lld, %lld] at run time", y->name,
		               (long long)n, (long long)classes);
	*logits = y->data;
	return NP_OK;
}

/* log-softmax of z[0..c) at temperature T into out; returns nothing. */
static void np_log_softmax(const float *z, int64_t c, double T, double *out)
{
	double mx = -DBL_MAX;
	for (int64_t k = 0; k < c; k++)
		if (z[k] / T > mx)
			mx = z[k] / T;
	double s = 0;
	for (int64_t k = 0; k < c; k++)
		s += exp(z[k] / T - mx);
	double lse = mx + log(s);
	for (int64_t k = 0; k < c; k++)
		out[k] = z[k] / T - lse;
}

static int64_t np_argmax(const float *z, int64_t c)
{
	int64_t best = 0;
	for (int64_t k = 1; k < c; k++)
		if (z[k] > z[best])
			best = k;
	return best;
}

/* Loss of one example and, if grad, d loss / d z scaled by 1/batch.
 * Labels: cross-entropy.  Teacher t: T^2 * KL(softmax(t/T) || softmax(z/T)),
 * whose gradient is T * (softmax(z/T) - softmax(t/T)). */
static double np_example_loss(const float *z, int64_t c, int32_t label,
                              const float *t, double T, float *grad,
                              double scale, double *tmp)
{
	double loss = 0;
	if (!t) {
		np_log_softmax(z, c, 1.0, tmp);
		loss = -tmp[label];
		if (grad)
			for (int64_t k = 0; k < c; k++)
				grad[k] = (float)((exp(tmp[k]) - (k == label)) * scale);
		return loss;
	}
	double *ls = tmp, *lt = tmp + c;
	np_log_softmax(z, c, T, ls);
	np_log_softmax(t, c, T, lt);
	for (int64_t k = 0; k < c; k++)
		loss += exp(lt[k]) * (lt[k] - ls[k]);
	if (grad)
		for (int64_t k = 0; k < c; k++)
			grad[k] = (float)(T * (exp(ls[k]) - exp(lt[k])) * scale);
	return loss * T * T;
}

/* Sequential batches of d through the model in inference mode; each
 * batch's logits go to fn(ctx, first, n, y, z).  Progress per batch. */
typedef np_status (*np_batch_fn)(void *ctx, int64_t first, int64_t n,
                                 const int32_t *y, const float *z,
                                 np_error *err);

static np_status np_infer_pass(np_rt *rt, const np_dataset *d, int64_t batch,
                               int64_t classes, np_batch_fn fn, void *ctx,
                               np_error *err)
{
	const char *input;
	int64_t c;
	np_status st = np_model_io(np_rt_model(rt), &input, &c, err);
	np_batches *b = NULL;
	if (st == NP_OK)
		st = np_batches_open(d, NULL, d->n, batch, NULL, NULL, NULL, &b, err);
	if (st != NP_OK)
		return st;
	np_rt_report_progress(rt, 0, d->n);
	for (int64_t i = 0; st == NP_OK;) {
		const float *x, *z;
		const int32_t *y;
		int64_t n;
		st = np_batches_next(b, &x, &y, &n, err);
		if (st != NP_OK || n == 0)
			break;
		st = np_forward_batch(rt, input, d, x, n, NP_RT_INFER, classes, &z, err);
		if (st == NP_OK)
			st = fn(ctx, i, n, y, z, err);
		i += n;
		np_rt_report_progress(rt, i, d->n);
	}
	np_batches_close(b);
	return st;
}

typedef struct np_logits_ctx {
	float *out;
	int64_t classes;
} np_logits_ctx;

static np_status np_keep_logits(void *ctx, int64_t first, int64_t n,
                                const int32_t *y, const float *z, np_error *err)
{
	np_logits_ctx *c = ctx;
	(void)y;
	(void)err;
	memcpy(c->out + first * c->classes, z, sizeof(float) * (size_t)(n * c->classes));
	return NP_OK;
}

np_status np_predict(np_rt *rt, const np_dataset *d, int64_t batch,
                     float **logits, int64_t *classes, np_error *err)
{
	const char *input;
	np_status st = np_model_io(np_rt_model(rt), &input, classes, err);
	if (st != NP_OK)
		return st;
	float *out = malloc(sizeof(float) * (size_t)(d->n * *classes + 1));
	if (!out)
		return np_fail(err, NP_ERR_NOMEM, "out of memory for %lld logits",
		               (long long)d->n);
	np_logits_ctx c = {out, *classes};
	st = np_infer_pass(rt, d, batch, *classes, np_keep_logits, &c, err);
	if (st != NP_OK) {
		free(out);
		return st;
	}
	*logits = out;
	return NP_OK;
}

/* Hits and loss, added up batch by batch in example order (the order
 * the sums always had), so no logits of the whole set are kept. */
typedef struct np_score_ctx {
	const float *teacher;
	int64_t classes, hits;
	double loss, *tmp;
} np_score_ctx;

static np_status np_score_batch(void *ctx, int64_t first, int64_t n,
                                const int32_t *y, const float *z, np_error *err)
{
	np_score_ctx *s = ctx;
	int64_t c = s->classes;
	(void)err;
	for (int64_t k = 0; k < n; k++) {
		const float *zi = z + k * c;
		const float *ti = s->teacher ? s->teacher + (first + k) * c : NULL;
		int64_t want = ti ? np_argmax(ti, c) : y[k];
		s->hits += np_argmax(zi, c) == want;
		s->loss += np_example_loss(zi, c, (int32_t)want, ti, 1.0, NULL, 1.0, s->tmp);
	}
	return NP_OK;
}

np_status np_evaluate(np_rt *rt, const np_dataset *d, int64_t batch,
                      const float *teacher, np_eval_result *res, np_error *err)
{
	if (!teacher && !d->y)
		return np_fail(err, NP_ERR_INVALID, "no labels to evaluate against");
	const char *input;
	int64_t c;
	np_status st = np_model_io(np_rt_model(rt), &input, &c, err);
	if (st != NP_OK)
		return st;
	np_score_ctx s = {.teacher = teacher, .classes = c};
	s.tmp = malloc(sizeof(double) * (size_t)(2 * c));
	if (!s.tmp)
		return np_fail(err, NP_ERR_NOMEM, "out of memory");
	st = np_infer_pass(rt, d, batch, c, np_score_batch, &s, err);
	if (st == NP_OK) {
		res->n = d->n;
		res->top1 = d->n ? 100.0 * (double)s.hits / (double)d->n : 0.0;
		res->loss = d->n ? s.loss / (double)d->n : 0.0;
	}
	free(s.tmp);
	return st;
}

float np_train_lr(const np_train_opts *o, int64_t t, int64_t steps_per_epoch)
{
	double base = o->sgd.lr;
	int64_t w = o->warmup > 0 ? o->warmup : 0;
	int64_t total = (int64_t)o->epochs * steps_per_epoch;
	switch (o->schedule) {
	case NP_LR_STEP: {
		int64_t epoch = steps_per_epoch > 0 ? t / steps_per_epoch : 0;
		int k = o->step_epochs > 0 ? o->step_epochs : 1;
		base *= pow((double)o->gamma, (double)(epoch / k));
		break;
	}
	case NP_LR_COSINE:
		/* Its clock starts when the warmup ends. */
		if (t >= w && total > w)
			base *= 0.5 * (1.0 + cos(3.14159265358979323846 *
			                         (double)(t - w) / (double)(total - w)));
		break;
	default:
		break;
	}
	if (t < w)
		base *= (double)(t + 1) / (double)w;
	return (float)base;
}

/* One epoch's steps over the batches of perm. */
typedef struct np_epoch {
	np_rt *rt;
	const np_dataset *d;
	const np_train_opts *o;
	const char *input;
	const float *teacher;
	const int64_t *perm;
	int64_t c, steps;
	float *t;                      /* teacher rows of the batch */
	double *tmp, T, loss;
	int e;
} np_epoch;

static np_status np_train_step(np_epoch *ep, int64_t s, const float *x,
                               const int32_t *y, int64_t n, np_error *err)
{
	const np_train_opts *o = ep->o;
	int64_t c = ep->c, first = s * o->batch;
	for (int64_t i = 0; ep->teacher && i < n; i++)
		memcpy(ep->t + i * c, ep->teacher + ep->perm[first + i] * c,
		       sizeof(float) * (size_t)c);
	const float *z;
	np_status st = np_forward_batch(ep->rt, ep->input, ep->d, x, n, NP_RT_TRAIN,
	                                c, &z, err);
	if (st != NP_OK)
		return st;
	float *g = np_rt_output_grad(ep->rt, 0);
	double loss = 0;
	for (int64_t i = 0; i < n; i++)
		loss += np_example_loss(z + i * c, c, y ? y[i] : 0,
		                        ep->teacher ? ep->t + i * c : NULL, ep->T,
		                        g + i * c, 1.0 / (double)n, ep->tmp);
	ep->loss += loss / (double)n;
	if ((st = np_rt_backward(ep->rt, err)) != NP_OK)
		return st;
	np_sgd sgd = o->sgd;
	sgd.lr = np_train_lr(o, (int64_t)ep->e * ep->steps + s, ep->steps);
	if ((st = np_rt_sgd_step(ep->rt, &sgd, err)) != NP_OK)
		return st;
	if (o->progress)
		o->progress(o->progress_ctx, ep->e * ep->steps + s + 1,
		            o->epochs * ep->steps, loss / (double)n);
	return NP_OK;
}

static np_status np_train_epoch(np_epoch *ep, np_rng *rng,
                                const np_data_opts *dopts, np_error *err)
{
	const np_train_opts *o = ep->o;
	np_batches *b;
	np_status st = np_batches_open(ep->d, ep->perm, ep->d->n, o->batch,
	                               o->augment.flip || o->augment.shift ? &o->augment : NULL,
	                               rng, dopts, &b, err);
	ep->loss = 0;
	for (int64_t s = 0; st == NP_OK && s < ep->steps; s++) {
		const float *x;
		const int32_t *y;
		int64_t n;
		st = np_batches_next(b, &x, &y, &n, err);
		if (st == NP_OK)
			st = np_train_step(ep, s, x, y, n, err);
	}
	np_batches_close(b);
	return st;
}

np_status np_train(np_rt *rt, const np_dataset *d, const np_train_opts *o,
                   const float *teacher, const np_data_opts *dopts,
                   double *last_loss, np_error *err)
{
	np_epoch ep = {.rt = rt, .d = d, .o = o, .teacher = teacher};
	np_status st = np_model_io(np_rt_model(rt), &ep.input, &ep.c, err);
	if (st != NP_OK)
		return st;
	if (!d->y && !teacher)
		return np_fail(err, NP_ERR_INVALID, "no labels and no teacher to train on");
	int64_t B = o->batch, c = ep.c;
	ep.steps = (d->n + B - 1) / B;
	int64_t *perm = malloc(sizeof(int64_t) * (size_t)(d->n + 1));
	ep.t = teacher ? malloc(sizeof(float) * (size_t)(B * c)) : NULL;
	ep.tmp = malloc(sizeof(double) * (size_t)(2 * c));
	ep.perm = perm;
	np_rng rng;
	np_rng_seed(&rng, o->seed);
	if (!perm || !ep.tmp || (teacher && !ep.t)) {
		st = np_fail(err, NP_ERR_NOMEM, "out of memory for training batches");
		goto done;
	}
	ep.T = o->temperature > 0 ? o->temperature : 4.0;
	for (int e = 0; e < o->epochs && st == NP_OK; e++) {
		np_rng_permutation(&rng, perm, d->n);
		ep.e = e;
		st = np_train_epoch(&ep, &rng, dopts, err);
	}
	if (last_loss)
		*last_loss = ep.steps ? ep.loss / (double)ep.steps : 0;
done:
	free(perm);
	free(ep.t);
	free(ep.tmp);
	return st;
}
