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
	np_rt_report_progress(rt, 0, d->n);
	for (int64_t i = 0; i < d->n; i += batch) {
		int64_t n = d->n - i < batch ? d->n - i : batch;
		const float *z;
		st = np_forward_batch(rt, input, d, d->x + i * d->example_size, n,
		                      NP_RT_INFER, *classes, &z, err);
		if (st != NP_OK) {
			free(out);
			return st;
		}
		memcpy(out + i * *classes, z, sizeof(float) * (size_t)(n * *classes));
		np_rt_report_progress(rt, i + n, d->n);
	}
	*logits = out;
	return NP_OK;
}

np_status np_evaluate(np_rt *rt, const np_dataset *d, int64_t batch,
                      const float *teacher, np_eval_result *res, np_error *err)
{
	if (!teacher && !d->y)
		return np_fail(err, NP_ERR_INVALID, "no labels to evaluate against");
	float *z;
	int64_t c;
	np_status st = np_predict(rt, d, batch, &z, &c, err);
	if (st != NP_OK)
		return st;
	double *tmp = malloc(sizeof(double) * (size_t)(2 * c));
	if (!tmp) {
		free(z);
		return np_fail(err, NP_ERR_NOMEM, "out of memory");
	}
	int64_t hits = 0;
	double loss = 0;
	for (int64_t i = 0; i < d->n; i++) {
		const float *zi = z + i * c, *ti = teacher ? teacher + i * c : NULL;
		int64_t want = ti ? np_argmax(ti, c) : d->y[i];
		hits += np_argmax(zi, c) == want;
		loss += np_example_loss(zi, c, (int32_t)want, ti, 1.0, NULL, 1.0, tmp);
	}
	res->n = d->n;
	res->top1 = d->n ? 100.0 * (double)hits / (double)d->n : 0.0;
	res->loss = d->n ? loss / (double)d->n : 0.0;
	free(tmp);
	free(z);
	return NP_OK;
}

static float np_lr_at(const np_train_opts *o, int epoch, int64_t step,
                      int64_t steps_per_epoch)
{
	switch (o->schedule) {
	case NP_LR_STEP:
		return o->sgd.lr * powf(o->gamma, (float)(epoch / (o->step_epochs > 0 ? o->step_epochs : 1)));
	case NP_LR_COSINE: {
		double total = (double)o->epochs * (double)steps_per_epoch;
		double t = (double)epoch * (double)steps_per_epoch + (double)step;
		return (float)(0.5 * o->sgd.lr * (1.0 + cos(3.14159265358979323846 * t / total)));
	}
	default:
		return o->sgd.lr;
	}
}

np_status np_train(np_rt *rt, const np_dataset *d, const np_train_opts *o,
                   const float *teacher, const np_data_opts *dopts,
                   double *last_loss, np_error *err)
{
	const char *input;
	int64_t c;
	np_status st = np_model_io(np_rt_model(rt), &input, &c, err);
	if (st != NP_OK)
		return st;
	if (!d->y && !teacher)
		return np_fail(err, NP_ERR_INVALID, "no labels and no teacher to train on");
	int64_t B = o->batch, steps = (d->n + B - 1) / B;
	int64_t *perm = malloc(sizeof(int64_t) * (size_t)(d->n + 1));
	float *x = malloc(sizeof(float) * (size_t)(B * d->example_size));
	int32_t *y = malloc(sizeof(int32_t) * (size_t)B);
	float *t = teacher ? malloc(sizeof(float) * (size_t)(B * c)) : NULL;
	double *tmp = malloc(sizeof(double) * (size_t)(2 * c));
	np_rng rng;
	np_rng_seed(&rng, o->seed);
	if (!perm || !x || !y || !tmp || (teacher && !t)) {
		st = np_fail(err, NP_ERR_NOMEM, "out of memory for training batches");
		goto done;
	}
	double T = o->temperature > 0 ? o->temperature : 4.0, epoch_loss = 0;
	for (int e = 0; e < o->epochs && st == NP_OK; e++) {
		np_rng_permutation(&rng, perm, d->n);
		epoch_loss = 0;
		for (int64_t s = 0; s < steps && st == NP_OK; s++) {
			int64_t first = s * B, n = d->n - first < B ? d->n - first : B;
			np_dataset_gather(d, perm + first, n, x, y,
			                  o->augment.flip || o->augment.shift ? &o->augment : NULL,
			                  &rng, dopts);
			for (int64_t i = 0; teacher && i < n; i++)
				memcpy(t + i * c, teacher + perm[first + i] * c, sizeof(float) * (size_t)c);
			const float *z;
			st = np_forward_batch(rt, input, d, x, n, NP_RT_TRAIN, c, &z, err);
			if (st != NP_OK)
				break;
			float *g = np_rt_output_grad(rt, 0);
			double loss = 0;
			for (int64_t i = 0; i < n; i++)
				loss += np_example_loss(z + i * c, c, y[i], teacher ? t + i * c : NULL,
				                        T, g + i * c, 1.0 / (double)n, tmp);
			epoch_loss += loss / (double)n;
			if ((st = np_rt_backward(rt, err)) != NP_OK)
				break;
			np_sgd sgd = o->sgd;
			sgd.lr = np_lr_at(o, e, s, steps);
			np_rt_sgd_step(rt, &sgd);
			if (o->progress)
				o->progress(o->progress_ctx, e * steps + s + 1, o->epochs * steps,
				            loss / (double)n);
		}
	}
	if (last_loss)
		*last_loss = steps ? epoch_loss / (double)steps : 0;
done:
	free(perm);
	free(x);
	free(y);
	free(t);
	free(tmp);
	return st;
}
