/* fuzz_data.c - libFuzzer targets for the data readers, one binary per
 * format (FUZZ_FORMAT is idx, npy, cifar10 or pb; see Makefile.am).  The
 * input is the examples file, or examples "\n--\n" labels.  A dataset
 * that loads is gathered with augmentation and checked against a
 * model-like input, the paths training takes.  npy inputs are read
 * either as today (npy:X[,Y]: float, uint8, or int ids for a single
 * int64 input) or, chosen by a byte of the input, as a named array
 * (npy:ids=X[,Y]); arrays are batched in a shuffled order and fed. */
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "fuzz.h"

#ifndef FUZZ_FORMAT
#error FUZZ_FORMAT must name the data format
#endif
#define FZ_STR2(x) #x
#define FZ_STR(x) FZ_STR2(x)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t fz_sink;

/* Shuffled batches of 3, every input fed, as training reads them. */
static void exercise_batches(const np_dataset *d)
{
	int64_t n = d->n < 64 ? d->n : 64, order[64];
	for (int64_t i = 0; i < n; i++)
		order[i] = n - 1 - i;
	np_batches *b = NULL;
	np_error err = {0};
	if (np_batches_open(d, order, n, 3, NULL, NULL, NULL, &b, &err) != NP_OK)
		return;
	const float *x;
	const int32_t *y;
	int64_t count;
	while (np_batches_next(b, &x, &y, &count, &err) == NP_OK && count > 0) {
		np_rt_input in[NP_DATA_MAX_ARRAYS + 1];
		int k = np_batch_feed(b, "input", x, count, in);
		if (k > NP_DATA_MAX_ARRAYS + 1)
			abort();
		/* Every element fed, read (ASan checks the rows). */
		for (int i = 0; i < k; i++) {
			int64_t n_el = 1;
			for (int r = 0; r < in[i].rank; r++)
				n_el *= in[i].dims[r];
			for (int64_t e = 0; in[i].dtype == NP_INT64 && e < n_el; e++)
				fz_sink += (uint64_t)((const int64_t *)in[i].data)[e];
		}
	}
	np_batches_close(b);
}

static void exercise(const np_dataset *d)
{
	if (d->n > 0 && d->n_arrays > 0)
		exercise_batches(d);
	if (d->n <= 0 || d->example_size <= 0 || d->example_size > (1 << 20))
		return;
	int64_t n = d->n < 4 ? d->n : 4, idx[4];
	for (int64_t i = 0; i < n; i++)
		idx[i] = (d->n - 1 - i) % d->n;
	float *x = malloc((size_t)(n * d->example_size) * sizeof *x);
	int32_t y[4];
	if (!x)
		return;
	np_rng rng;
	np_rng_seed(&rng, 1);
	np_augment aug = {.flip = true, .shift = 2};
	np_data_opts o = {0};
	np_dataset_gather(d, idx, n, x, y, &aug, &rng, &o);
	free(x);
	np_error err = {0};
	np_dataset_check_labels(d, 10, &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char fmt[] = FZ_STR(FUZZ_FORMAT);
	static char xp[512], yp[512], spec[1100];
	size_t n1, n2;
	const uint8_t *p2;
	fz_split(data, size, &n1, &p2, &n2);
	bool pb = !strcmp(fmt, "pb");
	fz_file(xp, sizeof xp, pb ? "input_0.pb" : "x", data, n1);
	if (pb) {
		snprintf(yp, sizeof yp, "%s/output_0.pb", fz_dir());
		if (p2)
			fz_file(yp, sizeof yp, "output_0.pb", p2, n2);
		else
			unlink(yp);
		snprintf(spec, sizeof spec, "pb:%s", fz_dir());
	} else if (!strcmp(fmt, "npy") && size && (data[size - 1] & 2)) {
		if (p2) {
			fz_file(yp, sizeof yp, "y", p2, n2);
			snprintf(spec, sizeof spec, "npy:ids=%s,%s", xp, yp);
		} else {
			snprintf(spec, sizeof spec, "npy:ids=%s", xp);
		}
	} else if (p2 && strcmp(fmt, "cifar10") != 0) {
		fz_file(yp, sizeof yp, "y", p2, n2);
		snprintf(spec, sizeof spec, "%s:%s,%s", fmt, xp, yp);
	} else {
		snprintf(spec, sizeof spec, "%s:%s", fmt, xp);
	}
	/* Half the inputs with --limit and normalisation, chosen by a byte
	 * of the input so the fuzzer can steer it. */
	np_data_opts o = {0};
	if (size && (data[size - 1] & 1)) {
		o.limit = 1 + (data[size - 1] >> 4);
		o.n_mean = o.n_std = 1;
		o.mean[0] = 0.5;
		o.std[0] = 0.25;
	}
	np_dataset d = {0};
	np_error err = {0};
	if (np_data_load(spec, &o, &d, &err) == NP_OK)
		exercise(&d);
	np_dataset_free(&d);
	return 0;
}
