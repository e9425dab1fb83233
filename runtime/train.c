/* train.c - evaluation and fine-tuning loops; see train.h. */
#include "train.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "ops.h"

np_status np_model_io(const np_model *m, const char **input, int64_t *classes,
                      np_error *err)
{
	const np_graph *g = m->graph;
	const np_value *in = NULL;
	int n_in = 0;
	for (int i = 0; i < g->n_inputs; i++) {
		if (g->inputs[i]->init)
			continue;
		in = g->inputs[i];
		n_in++;
	}
	if (!in)
		return np_fail(err, NP_ERR_INVALID, "the model has no input");
	if (g->n_outputs < 1)
		return np_fail(err, NP_ERR_INVALID, "the model has no output");
	const np_value *out = g->outputs[0];
	if (!out->has_shape || out->rank != 2 || out->dims[1].value <= 0)
		return np_fail(err, NP_ERR_UNSUPPORTED,
		               "output '%s' is not declared as [N, classes]", out->name);
	*input = n_in == 1 ? in->name : NULL;
	*classes = out->dims[1].value;
	return NP_OK;
}

/* Run one batch of b forward (every input: np_batch_feed); the output
 * must be [n, classes]. */
static np_status np_forward_batch(np_rt *rt, const char *input,
                                  const np_batches *b, const float *x,
                                  int64_t n, np_rt_mode mode, int64_t classes,
                                  const float **logits, np_error *err)
{
	np_rt_input in[NP_DATA_MAX_ARRAYS + 1];
	int n_in = np_batch_feed(b, input, x, n, in);
	np_status st = np_rt_run(rt, in, n_in, mode, err);
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
	if (st != NP_OK)
		return st;
	np_batches *b = NULL;
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
		st = np_forward_batch(rt, input, b, x, n, NP_RT_INFER, classes, &z, err);
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
	/* Data-parallel (dist.h): each rank runs its share, then every
	 * rank gets every share. */
	bool dist = np_dist_size() > 1;
	int64_t first, count;
	np_dist_share(d->n, &first, &count);
	np_dataset part = dist ? np_dataset_slice(d, first, count) : *d;
	float *out = malloc(sizeof(float) * (size_t)(d->n * *classes + 1));
	if (!out)
		st = np_fail(err, NP_ERR_NOMEM, "out of memory for %lld logits",
		             (long long)d->n);
	np_logits_ctx c = {out ? out + first * *classes : NULL, *classes};
	if (st == NP_OK)
		st = np_infer_pass(rt, &part, batch, *classes, np_keep_logits, &c, err);
	if (dist && (st = np_dist_agree(st, err)) == NP_OK)
		st = np_dist_gather_shares(out, d->n, *classes, err);
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
	/* Data-parallel (dist.h): each rank scores its contiguous share;
	 * hits are added up exactly, losses in rank order. */
	int64_t first, count;
	np_dist_share(d->n, &first, &count);
	np_dataset part = np_dist_size() > 1 ? np_dataset_slice(d, first, count) : *d;
	np_score_ctx s = {.teacher = teacher ? teacher + first * c : NULL, .classes = c};
	s.tmp = malloc(sizeof(double) * (size_t)(2 * c));
	if (!s.tmp)
		st = np_fail(err, NP_ERR_NOMEM, "out of memory");
	if (st == NP_OK)
		st = np_infer_pass(rt, &part, batch, c, np_score_batch, &s, err);
	free(s.tmp);
	if ((st = np_dist_agree(st, err)) != NP_OK)
		return st;
	np_dist_sum_i64(&s.hits, 1);
	np_dist_sum_f64(&s.loss, 1);
	res->n = d->n;
	res->top1 = d->n ? 100.0 * (double)s.hits / (double)d->n : 0.0;
	res->loss = d->n ? s.loss / (double)d->n : 0.0;
	return NP_OK;
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

/* A bucket of gradients summed as one (np_train_opts.bucket_bytes):
 * parameters next to each other in the order backward finishes them,
 * their gradients end to end in flat[at, at + n), padded after for
 * np_dist_isum_start. */
typedef struct np_bucket {
	size_t at, n;
	int first, count;              /* its parameters: np_epoch.members[first
	                                * .. first + count) */
	int left;                      /* not ready yet in this step */
} np_bucket;

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
	/* Data-parallel only (dist.h), owned by np_train: */
	int64_t *mine;                 /* this rank's examples of the epoch,
	                                * its slice of every batch in turn */
	float *flat;                   /* every gradient (or running
	                                * statistic) end to end, padded */
	np_rng aug;                    /* this rank's augmentation draws */
	/* Gradient buckets, when summed during backward (np_buckets_new;
	 * NULL buckets: one sum after it), owned by np_train: */
	np_bucket *buckets;
	int n_buckets;
	int next;                      /* the first bucket not started yet
	                                * in this step */
	int *members;                  /* parameter indices, bucket by bucket */
	int *bucket_of;                /* by parameter index: its bucket, -1 */
	size_t *offset;                /* by parameter index: its place in
	                                * flat */
	np_dist_isums *isums;          /* one slot per bucket */
} np_epoch;

/* BatchNormalization's running mean and variance: a float initializer
 * an op updates itself (np_op.state). */
static bool np_param_is_state(const np_param *p)
{
	if (p->trainable || !p->data)
		return false;
	const np_value *v = p->value;
	for (int u = 0; u < v->n_uses; u++) {
		const np_op *op = v->uses[u].node ? np_node_op(v->uses[u].node) : NULL;
		if (op && v->uses[u].index >= 0 && np_op_input_bit(op->state, v->uses[u].index))
			return true;
	}
	return false;
}

/* Floats of the data-parallel buffer: the larger of the gradients and
 * the running statistics, padded for np_dist_sum_f32. */
static size_t np_flat_size(np_rt *rt)
{
	size_t grads = 0, state = 0;
	for (int i = 0; i < np_rt_n_params(rt); i++) {
		const np_param *p = np_rt_param(rt, i);
		if (p->trainable)
			grads += (size_t)p->nelem;
		else if (np_param_is_state(p))
			state += (size_t)p->nelem;
	}
	return np_dist_padded(grads > state ? grads : state) + 1;
}

/* What data parallelism sums over the ranks: the gradients (grads), or
 * else the running statistics.  Gradients: between backward and the
 * optimizer step (whichever optimizer it is), every rank's gradient,
 * already scaled by 1 / (the global batch), summed, so every rank steps
 * with the one-process gradient of the whole batch (up to the order of
 * the float sums), the same on every rank.  Running statistics: at the
 * end of an epoch; every rank's BatchNormalization ran on its own share
 * of each batch (as PyTorch's DDP does by default), so they are its own,
 * and become their mean over the ranks (doc/nepenc.1, DATA
 * PARALLELISM).  One buffer: each tensor is copied in, the sum runs once
 * over all of them, and they are copied back. */
static bool np_param_synced(const np_param *p, bool grads)
{
	return grads ? p->trainable : np_param_is_state(p);
}

static void np_sum_over_ranks(np_epoch *ep, bool grads)
{
	if (np_dist_size() == 1)
		return;
	size_t at = 0;
	for (int i = 0; i < np_rt_n_params(ep->rt); i++) {
		const np_param *p = np_rt_param(ep->rt, i);
		if (!np_param_synced(p, grads))
			continue;
		memcpy(ep->flat + at, grads ? p->grad : p->data,
		       sizeof(float) * (size_t)p->nelem);
		at += (size_t)p->nelem;
	}
	np_dist_sum_f32(ep->flat, at);
	float scale = grads ? 1.0f : 1.0f / (float)np_dist_size();
	at = 0;
	for (int i = 0; i < np_rt_n_params(ep->rt); i++) {
		np_param *p = np_rt_param(ep->rt, i);
		if (!np_param_synced(p, grads))
			continue;
		float *to = grads ? p->grad : p->data;
		for (int64_t k = 0; k < p->nelem; k++)
			to[k] = ep->flat[at + (size_t)k] * scale;
		at += (size_t)p->nelem;
	}
}

/* ------------------------------------------------ buckets (overlap) */

/* The first bucket is smaller, so that the first sum starts early in
 * backward (PyTorch DDP's first bucket, 1 MiB). */
#define NP_FIRST_BUCKET_BYTES ((size_t)1 << 20)

/* Buckets of at most cap bytes (a larger parameter is a bucket alone)
 * over the trainable parameters in the order backward finishes them
 * (np_rt_grad_order: the reverse of the forward order), each a slice of
 * flat; *floats: how many floats of flat they take.  A parameter of over
 * NP_DIST_ISUM_MAX floats (1 GiB) leaves the buckets off: the step sums
 * after backward.  All the same on every rank: the graph decides. */
static np_status np_buckets_new(np_epoch *ep, size_t cap, size_t *floats,
                                np_error *err)
{
	np_rt *rt = ep->rt;
	int np = np_rt_n_params(rt), n = 0;
	*floats = 0;
	ep->members = malloc(sizeof(int) * ((size_t)np + 1));
	ep->bucket_of = malloc(sizeof(int) * ((size_t)np + 1));
	ep->offset = malloc(sizeof(size_t) * ((size_t)np + 1));
	ep->buckets = malloc(sizeof(np_bucket) * ((size_t)np + 1));
	if (!ep->members || !ep->bucket_of || !ep->offset || !ep->buckets)
		return np_fail(err, NP_ERR_NOMEM, "out of memory for gradient buckets");
	np_status st = np_rt_grad_order(rt, ep->members, &n, err);
	if (st != NP_OK)
		return st;
	for (int i = 0; i < np; i++)
		ep->bucket_of[i] = -1;
	size_t at = 0;
	int nb = 0;
	for (int k = 0; k < n; k++) {
		const np_param *p = np_rt_param(rt, ep->members[k]);
		size_t m = (size_t)p->nelem;
		if (m > NP_DIST_ISUM_MAX - (size_t)np_dist_size()) {
			ep->n_buckets = 0;
			free(ep->buckets);
			ep->buckets = NULL;
			return NP_OK;
		}
		np_bucket *b = nb ? &ep->buckets[nb - 1] : NULL;
		size_t limit = nb == 1 && cap > NP_FIRST_BUCKET_BYTES ? NP_FIRST_BUCKET_BYTES : cap;
		if (!b || (b->count > 0 && ((b->n + m) * sizeof(float) > limit ||
		                            np_dist_padded(b->n + m) > NP_DIST_ISUM_MAX))) {
			if (b)
				at += np_dist_padded(b->n);
			b = &ep->buckets[nb++];
			*b = (np_bucket){.at = at, .first = k};
		}
		ep->bucket_of[ep->members[k]] = nb - 1;
		ep->offset[ep->members[k]] = b->at + b->n;
		b->n += m;
		b->count++;
	}
	if (nb)
		at += np_dist_padded(ep->buckets[nb - 1].n);
	ep->n_buckets = nb;
	*floats = at;
	ep->isums = np_dist_isums_new(nb);
	if (!ep->isums)
		return np_fail(err, NP_ERR_NOMEM, "out of memory for gradient buckets");
	if (np_rt_verbose_on() && np_dist_rank() == 0 && nb > 0)
		fprintf(stderr, "nepenc: train: %d gradient buckets (%.3g MiB, %d "
		        "parameters, first %.3g MiB), summed during backward\n", nb,
		        (double)(sizeof(float) * at) / 1048576.0, n,
		        (double)(sizeof(float) * ep->buckets[0].n) / 1048576.0);
	return NP_OK;
}

/* Start every bucket whose gradients are all in, in bucket order (every
 * rank starts the same sums in the same order, whatever order its
 * backward reported them in). */
static void np_buckets_start_ready(np_epoch *ep)
{
	while (ep->next < ep->n_buckets && ep->buckets[ep->next].left == 0) {
		np_bucket *b = &ep->buckets[ep->next++];
		np_dist_isum_start(ep->isums, ep->flat + b->at, b->n);
	}
}

/* np_rt_backward's hooks: a final gradient goes into its bucket's
 * slice; the bucket's sum starts when it is the last one in. */
static void np_grad_ready(void *ctx, int i)
{
	np_epoch *ep = ctx;
	int k = ep->bucket_of[i];
	if (k < 0)
		return;
	const np_param *p = np_rt_param(ep->rt, i);
	memcpy(ep->flat + ep->offset[i], p->grad, sizeof(float) * (size_t)p->nelem);
	if (--ep->buckets[k].left == 0)
		np_buckets_start_ready(ep);
}

/* ... and after every node: Open MPI moves the sums on only inside MPI
 * calls of this thread. */
static void np_after_node(void *ctx)
{
	np_epoch *ep = ctx;
	np_dist_isums_test(ep->isums);
}

static void np_buckets_reset(np_epoch *ep)
{
	ep->next = 0;
	for (int k = 0; k < ep->n_buckets; k++)
		ep->buckets[k].left = ep->buckets[k].count;
}

/* After backward: start the buckets not started yet, whatever happened
 * (the other ranks wait in these sums), then wait for every sum.  ok:
 * the step's gradients are all final (they normally went in during
 * backward; with no example on this rank, np_zero_grads' zeros); not
 * ok (this rank failed part-way): zeros, and the step is abandoned at
 * np_dist_agree on every rank after it. */
static void np_buckets_finish(np_epoch *ep, bool ok)
{
	for (int k = ep->next; k < ep->n_buckets; k++) {
		np_bucket *b = &ep->buckets[k];
		if (!ok) {
			memset(ep->flat + b->at, 0, sizeof(float) * b->n);
		} else {
			for (int j = b->first; j < b->first + b->count; j++) {
				const np_param *p = np_rt_param(ep->rt, ep->members[j]);
				memcpy(ep->flat + ep->offset[ep->members[j]], p->grad,
				       sizeof(float) * (size_t)p->nelem);
			}
		}
		b->left = 0;
	}
	np_buckets_start_ready(ep);
	np_dist_isums_wait(ep->isums);
}

/* The summed gradients back (no scaling: each rank's were already
 * scaled by 1 / the global batch, as np_sum_over_ranks does). */
static void np_buckets_copy_back(np_epoch *ep)
{
	for (int j = 0; j < np_rt_n_params(ep->rt); j++) {
		np_param *p = np_rt_param(ep->rt, j);
		if (ep->bucket_of[j] >= 0)
			memcpy(p->grad, ep->flat + ep->offset[j], sizeof(float) * (size_t)p->nelem);
	}
}

/* A rank with no example in a step (a last batch smaller than the number
 * of ranks) adds a zero gradient. */
static void np_zero_grads(np_rt *rt)
{
	for (int i = 0; i < np_rt_n_params(rt); i++) {
		np_param *p = np_rt_param(rt, i);
		if (p->trainable)
			memset(p->grad, 0, sizeof(float) * (size_t)p->nelem);
	}
}

/* Step s on this rank's n examples idx[0..n) (x, y: the batch b handed
 * out; NULL when n is 0) of a global batch of nb (n == nb with one
 * rank).  st: how getting the batch went; every rank
 * reaches np_dist_agree whatever happened, so none waits alone in the
 * gradient sum. */
static np_status np_train_step(np_epoch *ep, const np_batches *b, int64_t s,
                               const int64_t *idx, const float *x,
                               const int32_t *y, int64_t n, int64_t nb,
                               np_status st, np_error *err)
{
	const np_train_opts *o = ep->o;
	int64_t c = ep->c;
	double loss = 0;
	bool buckets = ep->buckets != NULL;
	if (buckets)
		np_buckets_reset(ep);
	if (st == NP_OK && n > 0) {
		for (int64_t i = 0; ep->teacher && i < n; i++)
			memcpy(ep->t + i * c, ep->teacher + idx[i] * c, sizeof(float) * (size_t)c);
		const float *z;
		st = np_forward_batch(ep->rt, ep->input, b, x, n, NP_RT_TRAIN, c, &z, err);
		if (st == NP_OK) {
			float *g = np_rt_output_grad(ep->rt, 0);
			for (int64_t i = 0; i < n; i++)
				loss += np_example_loss(z + i * c, c, y ? y[i] : 0,
				                        ep->teacher ? ep->t + i * c : NULL, ep->T,
				                        g + i * c, 1.0 / (double)nb, ep->tmp);
			if (buckets)
				np_rt_set_backward_hooks(ep->rt, &(np_rt_backward_hooks){
					np_grad_ready, np_after_node, ep});
			st = np_rt_backward(ep->rt, err);
			np_rt_set_backward_hooks(ep->rt, NULL);
		}
	} else if (st == NP_OK) {
		np_zero_grads(ep->rt);
	}
	/* The optimizer's buffers before the ranks agree: a rank that could
	 * not step after the others agreed would end the job alone. */
	if (st == NP_OK)
		st = np_rt_optim_prepare(ep->rt, &o->sgd, err);
	/* Bucketed, the sums run before the ranks agree: a rank that failed
	 * still starts every one of them, so none waits alone. */
	if (buckets)
		np_buckets_finish(ep, st == NP_OK);
	if ((st = np_dist_agree(st, err)) != NP_OK)
		return st;
	if (buckets)
		np_buckets_copy_back(ep);
	else
		np_sum_over_ranks(ep, true);
	np_dist_sum_f64(&loss, 1);
	ep->loss += loss / (double)nb;
	np_sgd sgd = o->sgd;
	sgd.lr = np_train_lr(o, (int64_t)ep->e * ep->steps + s, ep->steps);
	if ((st = np_rt_sgd_step(ep->rt, &sgd, err)) != NP_OK)
		return st;
	if (o->progress)
		o->progress(o->progress_ctx, ep->e * ep->steps + s + 1,
		            o->epochs * ep->steps, loss / (double)nb);
	return NP_OK;
}

/* Examples in global step s of an epoch of n examples. */
static int64_t np_step_len(const np_epoch *ep, int64_t s)
{
	int64_t B = ep->o->batch, left = ep->d->n - s * B;
	return left < B ? left : B;
}

/* Data-parallel epoch: this rank's slice of each global batch, taken
 * from the one permutation every rank drew, so the examples of a step
 * over all ranks are the one-process batch.  When the ranks divide the
 * batch, the slices are read as one pass of batch / ranks; otherwise one
 * pass per step. */
static np_status np_train_epoch_dist(np_epoch *ep, const np_data_opts *dopts,
                                     np_error *err)
{
	const np_train_opts *o = ep->o;
	int64_t B = o->batch, total = 0, first, k;
	for (int64_t s = 0; s < ep->steps; s++) {
		np_dist_share(np_step_len(ep, s), &first, &k);
		memcpy(ep->mine + total, ep->perm + s * B + first, sizeof(int64_t) * (size_t)k);
		total += k;
	}
	const np_augment *aug = o->augment.flip || o->augment.shift ? &o->augment : NULL;
	bool even = B % np_dist_size() == 0;
	np_batches *b = NULL;
	np_status st = NP_OK;
	if (even)
		st = np_batches_open(ep->d, ep->mine, total, B / np_dist_size(), aug,
		                     &ep->aug, dopts, &b, err);
	ep->loss = 0;
	int64_t at = 0;
	for (int64_t s = 0; s < ep->steps; s++) {
		int64_t nb = np_step_len(ep, s), n = 0;
		np_dist_share(nb, &first, &k);
		const float *x = NULL;
		const int32_t *y = NULL;
		if (st == NP_OK && k > 0 && !even) {
			np_batches_close(b);
			b = NULL;
			st = np_batches_open(ep->d, ep->mine + at, k, k, aug, &ep->aug, dopts,
			                     &b, err);
		}
		if (st == NP_OK && k > 0)
			st = np_batches_next(b, &x, &y, &n, err);
		if (st == NP_OK && n != k)
			st = np_fail(err, NP_ERR_INVALID, "rank %d: %lld examples in step %lld, "
			             "not %lld", np_dist_rank(), (long long)n, (long long)s,
			             (long long)k);
		st = np_train_step(ep, b, s, ep->mine + at, x, y, k, nb, st, err);
		if (st != NP_OK)
			break;
		at += k;
	}
	np_batches_close(b);
	if (st == NP_OK)
		np_sum_over_ranks(ep, false);
	return st;
}

static np_status np_train_epoch(np_epoch *ep, np_rng *rng,
                                const np_data_opts *dopts, np_error *err)
{
	if (np_dist_size() > 1)
		return np_train_epoch_dist(ep, dopts, err);
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
			st = np_train_step(ep, b, s, ep->perm + s * o->batch, x, y, n, n, NP_OK, err);
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
	bool dist = np_dist_size() > 1;
	if (dist) {
		ep.mine = malloc(sizeof(int64_t) * (size_t)(d->n + 1));
		size_t floats = 0, need = np_flat_size(rt);
		if (o->bucket_bytes > 0)
			st = np_buckets_new(&ep, o->bucket_bytes, &floats, err);
		if (floats + 1 > need)
			need = floats + 1;
		ep.flat = malloc(sizeof(float) * need);
		/* The permutation comes from the seed on every rank; each
		 * rank's augmentation from a stream of its own. */
		np_rng_seed(&ep.aug, o->seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(np_dist_rank() + 1)));
	}
	np_rng rng;
	np_rng_seed(&rng, o->seed);
	if (st == NP_OK && (!perm || !ep.tmp || (teacher && !ep.t) ||
	                    (dist && (!ep.mine || !ep.flat))))
		st = np_fail(err, NP_ERR_NOMEM, "out of memory for training batches");
	if ((st = np_dist_agree(st, err)) != NP_OK)
		goto done;
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
	free(ep.mine);
	free(ep.flat);
	free(ep.members);
	free(ep.bucket_of);
	free(ep.offset);
	free(ep.buckets);
	np_dist_isums_free(ep.isums);
	return st;
}
