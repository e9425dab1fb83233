/* train.h - evaluation and fine-tuning loops over a dataset.
 *
 * The recipe matches PyTorch's (../shared/bench/torch_finetune.py): a
 * fresh random permutation per epoch from the seed, batches in order with
 * the last one partial (no drop_last), softmax cross-entropy averaged over
 * the batch, SGD with momentum and weight decay (rt.h), masks held.
 * Without labels, fine-tuning distils the teacher's logits (KL at
 * temperature T, scaled by T^2 as in Hinton et al.) and accuracy is top-1
 * agreement with the teacher.
 */
#ifndef NEPENC_TRAIN_H
#define NEPENC_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "data.h"
#include "rt.h"
#include "status.h"

/* The learning rate of global step t (0-based, over all epochs; T steps
 * in all), np_train_lr():
 *   constant  lr
 *   step      lr * gamma^floor(epoch / step_epochs), epoch = t / steps
 *             per epoch (counted from the first step, warmup or not)
 *   cosine    lr * (1 + cos(pi * (t - W) / (T - W))) / 2 once the W
 *             warmup steps are over (lr during them)
 * then, for t < W (--warmup W), times (t + 1) / W: a linear ramp whose
 * first step already moves, reaching the schedule's rate at step W - 1.
 * In PyTorch: LambdaLR(opt, lambda t: that / lr), stepped per batch. */
typedef enum np_lr_schedule {
	NP_LR_CONSTANT,
	NP_LR_STEP,            /* lr * gamma^floor(epoch / step) */
	NP_LR_COSINE           /* per step, from lr to 0 over the steps
	                        * after the warmup */
} np_lr_schedule;

/* np_train_opts.bucket_bytes of the command line, in MiB (PyTorch DDP's
 * bucket_cap_mb; docs/scaling.md). */
#define NP_DEFAULT_BUCKET_MIB 25

typedef struct np_train_opts {
	int epochs;
	int64_t batch;
	np_sgd sgd;                    /* the optimizer; sgd.lr is the base
	                                * rate */
	np_lr_schedule schedule;
	int64_t warmup;                /* linear warmup steps; 0: none */
	int step_epochs;               /* NP_LR_STEP */
	float gamma;                   /* NP_LR_STEP */
	np_augment augment;
	uint64_t seed;
	float temperature;             /* distillation T (default 4) */
	/* Data-parallel runs (dist.h): the gradients are summed in buckets
	 * of about this many bytes, each started while backward goes on as
	 * soon as its gradients are final (as PyTorch's DDP; train.c); 0:
	 * one sum of every gradient after backward.  Without MPI, or one
	 * rank, nothing. */
	size_t bucket_bytes;
	/* Progress: called after every batch (done, total batches). */
	void (*progress)(void *ctx, int64_t done, int64_t total, double loss);
	void *progress_ctx;
} np_train_opts;

typedef struct np_eval_result {
	double top1;                   /* percent */
	double loss;                   /* mean cross-entropy (or KL) */
	int64_t n;
} np_eval_result;

/* Name of the model's single input (NULL when it has several: the
 * dataset's named arrays feed them) and the width of its output. */
np_status np_model_io(const np_model *m, const char **input, int64_t *classes,
                      np_error *err);

/* Logits of the whole dataset, n * classes floats (malloc'd), inference
 * mode; for distillation targets and agreement. */
np_status np_predict(np_rt *rt, const np_dataset *d, int64_t batch,
                     float **logits, int64_t *classes, np_error *err);

/* Top-1 and loss against d's labels, or against teacher logits when
 * teacher is non-NULL (then loss is the KL at temperature 1). */
np_status np_evaluate(np_rt *rt, const np_dataset *d, int64_t batch,
                      const float *teacher, np_eval_result *res, np_error *err);

/* The learning rate of global step t (see np_lr_schedule). */
float np_train_lr(const np_train_opts *opts, int64_t t, int64_t steps_per_epoch);

/* One fine-tuning run of opts->epochs epochs from rt's current weights.
 * teacher: logits for every example of d when d has no labels. */
np_status np_train(np_rt *rt, const np_dataset *d, const np_train_opts *opts,
                   const float *teacher, const np_data_opts *dopts,
                   double *last_loss, np_error *err);

#endif
