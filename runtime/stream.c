/* stream.c - batches of a dataset (np_batches, data.h): read in place or
 * gathered for in-memory data, decoded ahead by worker threads for a
 * folder.
 *
 * The queue: NP_QUEUE_BATCHES slots hold the batches [current, current +
 * NP_QUEUE_BATCHES); a worker takes the next example position (claim),
 * decodes it straight into its slot, and counts it done; the consumer
 * waits until every example of batch `current` is done, hands the slot
 * out, and frees it on its next call.  Examples are taken in order and
 * each one's randomness comes from its position, so the batches are the
 * same with any number of workers; memory is the slots, whatever the
 * size of the folder.
 */
#include "folder.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "progress.h"

/* One batch being consumed, one or two being decoded. */
#define NP_QUEUE_BATCHES 3

typedef struct np_slot {
	float *x;
	int32_t *y;
	int64_t done;                  /* examples decoded or failed */
	int64_t err_pos;               /* first failed position; INT64_MAX */
	np_error err;
} np_slot;

struct np_batches {
	np_dataset d;                  /* a copy of the caller's view */
	const int64_t *order;
	int64_t n, batch, es;
	np_augment aug;
	bool augment;
	np_rng *rng;
	const np_data_opts *opts;
	int64_t pos;                   /* in-memory: next position */
	float *x;                      /* in-memory gather buffers */
	int32_t *y;
	void *abuf[NP_DATA_MAX_ARRAYS];        /* the arrays' gather buffers */
	const void *acur[NP_DATA_MAX_ARRAYS];  /* their current batch */
	/* folder */
	uint64_t seed;                 /* the pass's draw, for augmentation */
	bool random_crop;
	np_decode_stats *stats;
	pthread_mutex_t mu;
	pthread_cond_t work, ready;
	np_slot slot[NP_QUEUE_BATCHES];
	int64_t claim;                 /* next position a worker takes */
	int64_t current;               /* the batch the consumer holds */
	bool held, stop;
	pthread_t *threads;
	int n_threads;
};

static int64_t np_batch_len(const np_batches *b, int64_t bi)
{
	int64_t first = bi * b->batch;
	return b->n - first < b->batch ? b->n - first : b->batch;
}

static void np_slot_reset(np_slot *s)
{
	s->done = 0;
	s->err_pos = INT64_MAX;
	memset(&s->err, 0, sizeof s->err);
}

/* ------------------------------------------------------------ decoding */

/* Example at position k of the pass into out (and its label into *y). */
static np_status np_stream_one(const np_batches *b, int64_t k, float *out,
                               int32_t *y, np_decode_buf *w, np_error *err)
{
	int64_t i = b->order ? b->order[k] : k;
	if (y && b->d.y)
		*y = b->d.y[i];
	np_rng r, *rng = NULL;
	if (b->augment) {
		/* Per example, from the pass's seed and the position. */
		np_rng_seed(&r, b->seed ^ ((uint64_t)k * 0x9e3779b97f4a7c15ULL));
		rng = &r;
	}
	np_status st = np_source_example(b->d.src, b->d.first + i,
	                                 b->random_crop ? rng : NULL, w, out, err);
	if (st != NP_OK || !b->augment || !(b->aug.flip || b->aug.shift > 0))
		return st;
	if (!w->tmp && !(w->tmp = malloc((size_t)b->es * sizeof *w->tmp)))
		return np_fail(err, NP_ERR_NOMEM, "out of memory");
	memcpy(w->tmp, out, (size_t)b->es * sizeof *out);
	np_augment_example(&b->d, w->tmp, out, &b->aug, rng, b->opts);
	return NP_OK;
}

static void *np_worker(void *arg)
{
	np_batches *b = arg;
	np_decode_buf w = {0};
	pthread_mutex_lock(&b->mu);
	while (!b->stop && b->claim < b->n) {
		int64_t k = b->claim, bi = k / b->batch;
		if (bi >= b->current + NP_QUEUE_BATCHES) {
			pthread_cond_wait(&b->work, &b->mu);   /* the queue is full */
			continue;
		}
		b->claim++;
		np_slot *s = &b->slot[bi % NP_QUEUE_BATCHES];
		int64_t at = k - bi * b->batch;
		pthread_mutex_unlock(&b->mu);
		np_error e = {0};
		np_status st = np_stream_one(b, k, s->x + at * b->es, s->y + at, &w, &e);
		pthread_mutex_lock(&b->mu);
		if (st != NP_OK && k < s->err_pos) {
			s->err_pos = k;
			s->err = e;
		}
		if (++s->done == np_batch_len(b, bi))
			pthread_cond_broadcast(&b->ready);
		pthread_mutex_lock(&b->stats->mu);
		b->stats->decoded++;
		pthread_mutex_unlock(&b->stats->mu);
	}
	pthread_mutex_unlock(&b->mu);
	np_decode_buf_free(&w);
	return NULL;
}

/* --------------------------------------------------------------- open */

static np_status np_stream_start(np_batches *b, np_error *err)
{
	size_t xs = (size_t)(b->batch * b->es), ys = (size_t)b->batch;
	for (int i = 0; i < NP_QUEUE_BATCHES; i++) {
		b->slot[i].x = malloc(xs * sizeof(float));
		b->slot[i].y = malloc(ys * sizeof(int32_t));
		if (!b->slot[i].x || !b->slot[i].y)
			return np_fail(err, NP_ERR_NOMEM, "out of memory for %d batches "
			               "of %lld examples", NP_QUEUE_BATCHES,
			               (long long)b->batch);
		np_slot_reset(&b->slot[i]);
	}
	b->stats = np_source_stats(b->d.src);
	pthread_mutex_lock(&b->stats->mu);
	b->stats->start = np_now();
	b->stats->wait = 0;
	b->stats->decoded = 0;
	pthread_mutex_unlock(&b->stats->mu);
	int nt = np_source_workers(b->d.src, b->n);
	b->threads = calloc((size_t)nt, sizeof *b->threads);
	if (!b->threads)
		return np_fail(err, NP_ERR_NOMEM, "out of memory");
	for (; b->n_threads < nt; b->n_threads++)
		if (pthread_create(&b->threads[b->n_threads], NULL, np_worker, b) != 0)
			break;
	if (b->n_threads == 0)
		return np_fail(err, NP_ERR_NOMEM, "cannot start a decoding thread");
	return NP_OK;
}

np_status np_batches_open(const np_dataset *d, const int64_t *order,
                          int64_t n, int64_t batch, const np_augment *aug,
                          np_rng *rng, const np_data_opts *opts,
                          np_batches **out, np_error *err)
{
	*out = NULL;
	np_batches *b = calloc(1, sizeof *b);
	if (!b)
		return np_fail(err, NP_ERR_NOMEM, "out of memory");
	b->d = *d;
	b->order = order;
	b->n = n;
	b->batch = batch > 0 ? batch : 1;
	b->es = d->example_size;
	/* Augmentation moves pixels: it needs float examples. */
	b->augment = aug && rng && (aug->flip || aug->shift > 0) &&
	             (d->x || d->src);
	if (b->augment)
		b->aug = *aug;
	b->rng = rng;
	b->opts = opts;
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->work, NULL);
	pthread_cond_init(&b->ready, NULL);
	np_status st = NP_OK;
	if (d->src) {
		b->random_crop = b->augment && np_source_crops(d->src);
		/* One draw per pass (only when it augments): in-memory runs
		 * leave rng as they always did. */
		b->seed = b->augment ? np_rng_next(rng) : 0;
		st = np_stream_start(b, err);
	} else if (order || b->augment) {
		b->x = malloc((size_t)(b->batch * b->es + 1) * sizeof *b->x);
		b->y = malloc((size_t)b->batch * sizeof *b->y);
		if (!b->x || !b->y)
			st = np_fail(err, NP_ERR_NOMEM, "out of memory for a batch of %lld "
			             "examples", (long long)b->batch);
	}
	for (int i = 0; st == NP_OK && order && i < d->n_arrays; i++) {
		const np_data_array *a = &d->arrays[i];
		b->abuf[i] = malloc((size_t)(b->batch * a->example_size) *
		                    np_dtype_size(a->dtype) + 1);
		if (!b->abuf[i])
			st = np_fail(err, NP_ERR_NOMEM, "out of memory for a batch of "
			             "%lld examples", (long long)b->batch);
	}
	if (st != NP_OK) {
		np_batches_close(b);
		return st;
	}
	*out = b;
	return NP_OK;
}

/* --------------------------------------------------------------- next */

/* The arrays' rows of the batch: in place when in order, else gathered
 * (augmentation leaves them alone). */
static void np_arrays_next(np_batches *b, int64_t first, int64_t m)
{
	for (int i = 0; i < b->d.n_arrays; i++) {
		const np_data_array *a = &b->d.arrays[i];
		size_t row = (size_t)a->example_size * np_dtype_size(a->dtype);
		const char *src = a->data;
		if (!b->order) {
			b->acur[i] = src + (size_t)(b->d.first + first) * row;
			continue;
		}
		char *dst = b->abuf[i];
		for (int64_t k = 0; k < m; k++)
			memcpy(dst + (size_t)k * row,
			       src + (size_t)(b->d.first + b->order[first + k]) * row, row);
		b->acur[i] = dst;
	}
}

static np_status np_memory_next(np_batches *b, const float **x,
                                const int32_t **y, int64_t *count)
{
	int64_t first = b->pos, m = b->n - first < b->batch ? b->n - first : b->batch;
	b->pos += m;
	*count = m;
	if (m <= 0) {
		*count = 0;
		return NP_OK;
	}
	np_arrays_next(b, first, m);
	if (!b->d.x) {   /* every input is in an array */
		if (b->d.y && b->order)
			for (int64_t k = 0; k < m; k++)
				b->y[k] = b->d.y[b->order[first + k]];
		*y = !b->d.y ? NULL : b->order ? b->y : b->d.y + first;
		return NP_OK;
	}
	if (!b->x) {   /* in order, as stored: no copy */
		*x = b->d.x + first * b->es;
		*y = b->d.y ? b->d.y + first : NULL;
		return NP_OK;
	}
	int64_t *idx = b->order ? (int64_t *)b->order + first : NULL;
	int64_t seq[1];
	if (!idx) {   /* augmentation without a permutation */
		for (int64_t k = 0; k < m; k++) {
			seq[0] = first + k;
			np_dataset_gather(&b->d, seq, 1, b->x + k * b->es, b->y + k,
			                  &b->aug, b->rng, b->opts);
		}
	} else {
		np_dataset_gather(&b->d, idx, m, b->x, b->y, b->augment ? &b->aug : NULL,
		                  b->rng, b->opts);
	}
	*x = b->x;
	*y = b->d.y ? b->y : NULL;
	return NP_OK;
}

np_status np_batches_next(np_batches *b, const float **x, const int32_t **y,
                          int64_t *count, np_error *err)
{
	*x = NULL;
	*y = NULL;
	if (!b->d.src)
		return np_memory_next(b, x, y, count);
	pthread_mutex_lock(&b->mu);
	if (b->held) {   /* the consumer is done with the batch it held */
		np_slot_reset(&b->slot[b->current % NP_QUEUE_BATCHES]);
		b->current++;
		b->held = false;
		pthread_cond_broadcast(&b->work);
	}
	int64_t m = b->current * b->batch < b->n ? np_batch_len(b, b->current) : 0;
	np_slot *s = &b->slot[b->current % NP_QUEUE_BATCHES];
	double t0 = np_now();
	while (m > 0 && s->done < m)
		pthread_cond_wait(&b->ready, &b->mu);
	double waited = np_now() - t0;
	b->held = m > 0;
	np_status st = s->err_pos != INT64_MAX ? s->err.status : NP_OK;
	if (st != NP_OK)
		*err = s->err;
	pthread_mutex_unlock(&b->mu);
	pthread_mutex_lock(&b->stats->mu);
	b->stats->wait += waited;
	pthread_mutex_unlock(&b->stats->mu);
	*count = st == NP_OK ? m : 0;
	if (st == NP_OK && m > 0) {
		*x = s->x;
		*y = b->d.y ? s->y : NULL;
	}
	return st;
}

void np_batches_close(np_batches *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->mu);
	b->stop = true;
	pthread_cond_broadcast(&b->work);
	pthread_mutex_unlock(&b->mu);
	for (int i = 0; i < b->n_threads; i++)
		pthread_join(b->threads[i], NULL);
	free(b->threads);
	for (int i = 0; i < NP_QUEUE_BATCHES; i++) {
		free(b->slot[i].x);
		free(b->slot[i].y);
	}
	pthread_cond_destroy(&b->work);
	pthread_cond_destroy(&b->ready);
	pthread_mutex_destroy(&b->mu);
	free(b->x);
	free(b->y);
	for (int i = 0; i < NP_DATA_MAX_ARRAYS; i++)
		free(b->abuf[i]);
	free(b);
}

int np_batch_feed(const np_batches *b, const char *input, const float *x,
                  int64_t count, np_rt_input *in)
{
	int k = 0;
	if (x && input) {
		in[k] = (np_rt_input){.name = input, .dtype = NP_FLOAT,
		                      .rank = b->d.rank + 1, .data = x};
		in[k].dims[0] = count;
		memcpy(in[k].dims + 1, b->d.dims, sizeof(int64_t) * (size_t)b->d.rank);
		k++;
	}
	for (int i = 0; i < b->d.n_arrays; i++) {
		const np_data_array *a = &b->d.arrays[i];
		const char *name = a->name ? a->name : input;
		if (!name)
			continue;
		in[k] = (np_rt_input){.name = name, .dtype = a->dtype,
		                      .rank = a->rank + 1, .data = b->acur[i]};
		in[k].dims[0] = count;
		memcpy(in[k].dims + 1, a->dims, sizeof(int64_t) * (size_t)a->rank);
		k++;
	}
	return k;
}

bool np_dataset_decode_rate(const np_dataset *d, double *img_per_s)
{
	if (!d || !d->src)
		return false;
	np_decode_stats *s = np_source_stats(d->src);
	pthread_mutex_lock(&s->mu);
	double el = np_now() - s->start, wait = s->wait;
	int64_t n = s->decoded;
	pthread_mutex_unlock(&s->mu);
	if (el <= 0 || wait <= 0.1 * el)
		return false;
	*img_per_s = (double)n / el;
	return true;
}

void np_decode_note(void *ctx, char *buf, size_t size)
{
	double rate;
	buf[0] = '\0';
	if (np_dataset_decode_rate(ctx, &rate))
		snprintf(buf, size, " decode %.0f img/s", rate);
}
