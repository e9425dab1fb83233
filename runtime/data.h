/* data.h - datasets for evaluation and fine-tuning (DESIGN.md section 8).
 *
 * Specs, chosen by prefix:
 *   idx:IMAGES,LABELS      MNIST IDX files, gzip or raw (labels optional)
 *   cifar10:DIR            CIFAR-10 binary batches (data_batch_1..5.bin;
 *                          test_batch.bin when DIR holds only that)
 *   npy:X.npy[,Y.npy]      NumPy arrays (X float32/float64/uint8 for a
 *                          float input, int64/int32 for an int64 one; Y
 *                          ints)
 *   npy:NAME=A.npy,...[,Y.npy]
 *                          one array per model input, by name (token
 *                          ids, attention masks): float32/float64 for a
 *                          float input, int64/int32 (widened) for an
 *                          int64 one, taken as stored (no scale or
 *                          normalisation); every array and Y hold the
 *                          same number of examples
 *   pb:DIR                 ONNX TensorProto files: DIR/input_0.pb and
 *                          DIR/output_0.pb (labels, or logits -> argmax),
 *                          or several test_data_set_N folders under DIR
 *   folder:DIR             PNG and JPEG images, one sub-folder per class
 *                          (torchvision's ImageFolder: classes sorted by
 *                          name, or in the order of a --classes file)
 * An in-memory dataset owns its float examples (already preprocessed)
 * and labels.  A folder dataset holds only the file names and labels:
 * its examples are decoded on demand, by worker threads, into a bounded
 * queue of batches (np_batches), so its memory does not grow with the
 * number of images.  Consumers read every dataset through np_batches.
 * Errors name the data file (np_fail_file) and say what is wrong:
 * truncated, wrong magic, image count != label count, label out of range.
 */
#ifndef NEPENC_DATA_H
#define NEPENC_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include "ir.h"
#include "rt.h"
#include "status.h"

#define NP_DATA_MAX_CHANNELS 16
#define NP_DATA_MAX_ARRAYS 8      /* named arrays of one npy: spec */

typedef struct np_data_opts {
	/* uint8 pixels are multiplied by scale (default 1/255); float data
	 * is taken as it is.  Then (x - mean[c]) / std[c] per channel (one
	 * value applies to every channel).  n_mean == 0: no normalisation. */
	double scale;                  /* 0 = default 1/255 */
	double mean[NP_DATA_MAX_CHANNELS];
	int n_mean;
	double std[NP_DATA_MAX_CHANNELS];
	int n_std;
	int64_t limit;                 /* keep the first N examples; 0 = all */
	/* folder: data, as torchvision's Resize(resize), then
	 * CenterCrop(crop) (RandomCrop(crop) when training augments). */
	int resize;                    /* shorter side to N pixels; 0: keep */
	int crop;                      /* N x N window; 0: the whole image */
	const char *classes;           /* class names in label order, one a
	                                * line; NULL: sorted sub-folders */
	bool skip_bad;                 /* leave out images that do not decode
	                                * (checked by a first pass) */
	int workers;                   /* decoding threads; 0: one per core */
	int channels;                  /* 1 (grey) or 3 (RGB); 0: as the
	                                * first image (the session sets the
	                                * model's) */
} np_data_opts;

/* A folder's file list, classes and preprocessing (opaque). */
typedef struct np_source np_source;

/* The examples of one model input other than the float examples x: a
 * named npy array (npy:NAME=FILE), or an unnamed int64/int32 one. */
typedef struct np_data_array {
	char *name;                    /* the model input; NULL: the model's
	                                * single input.  Owned */
	char *file;                    /* the .npy file, for errors.  Owned */
	int dtype;                     /* NP_FLOAT, or NP_INT64 (int32 and
	                                * int64 files) */
	int rank;                      /* per-example rank */
	int64_t dims[NP_RT_MAX_RANK - 1];
	int64_t example_size;          /* elements per example */
	void *data;                    /* all examples of the loaded file (a
	                                * view's example i is row first + i),
	                                * owned by the loaded dataset */
} np_data_array;

typedef struct np_dataset {
	char *spec;                    /* as given */
	int64_t n;                     /* examples */
	int rank;                      /* per-example rank, e.g. 3 for [1,28,28] */
	int64_t dims[NP_RT_MAX_RANK - 1];
	int64_t example_size;          /* floats per example; 0 when the
	                                * inputs are all in arrays */
	float *x;                      /* n * example_size, owned; NULL for
	                                * a folder (src) or when the inputs
	                                * are all in arrays */
	int32_t *y;                    /* n labels, owned; NULL: unlabeled */
	int n_classes;                 /* 1 + max label (0 if unlabeled); a
	                                * folder: its number of classes */
	np_source *src;                /* folder: owned by the loaded dataset,
	                                * shared by its views */
	int64_t first;                 /* a view's first example of src and
	                                * of the arrays */
	np_data_array arrays[NP_DATA_MAX_ARRAYS];
	int n_arrays;
	int64_t skipped;               /* images left out (skip_bad) */
	char *skip_note;               /* "FILE: why" of the first; owned */
} np_dataset;

np_status np_data_load(const char *spec, const np_data_opts *opts,
                       np_dataset *out, np_error *err);

/* Every file the spec names, in the order np_data_load() reads them
 * (idx/npy: the one or two files; cifar10: the batch files; pb: each
 * test_data_set_N's input_0.pb and output_0.pb): add(ctx, path) for each.
 * For dependency files.  Errors as np_data_load()'s for a bad spec or a
 * folder it cannot list. */
np_status np_data_files(const char *spec,
                        void (*add)(void *ctx, const char *path), void *ctx,
                        np_error *err);
void np_dataset_free(np_dataset *d);

/* Check the examples fit the model input (rank + 1 with a free batch dim,
 * fixed dims equal); error names the spec's file. */
np_status np_dataset_check_input(const np_dataset *d, const np_value *input,
                                 np_error *err);
/* Check d feeds every input of m once: the float examples (x, or a
 * folder) and an unnamed array feed the model's single input, a named
 * array the input of its name; each of the input's dtype and shape (as
 * np_dataset_check_input).  An int64 input read as indices into a table
 * (the op fact NP_OPF_INDEX_ROWS: Gather, as nn.Embedding exports) must
 * hold ids in [0, the table's rows): negative ids, which ONNX Gather
 * would count from the end, are refused as PyTorch's Embedding refuses
 * them.  Errors name the file (or the spec, for an input no array
 * names). */
np_status np_dataset_check_model(const np_dataset *d, const np_model *m,
                                 np_error *err);
/* Labels must be < classes (the model's output width); for a folder the
 * error names the class's sub-folder. */
np_status np_dataset_check_labels(const np_dataset *d, int64_t classes,
                                  np_error *err);

/* A view of examples [first, first+count) sharing d's memory: the view
 * must not be freed, and must not outlive d. */
np_dataset np_dataset_slice(const np_dataset *d, int64_t first, int64_t count);

/* Deterministic random numbers (splitmix64 seeding xoshiro256**): the
 * same seed gives the same shuffles and augmentations on every machine. */
typedef struct np_rng {
	uint64_t s[4];
} np_rng;

void np_rng_seed(np_rng *r, uint64_t seed);
uint64_t np_rng_next(np_rng *r);
/* Uniform in [0, n). */
uint64_t np_rng_below(np_rng *r, uint64_t n);
/* Fisher-Yates permutation of 0..n-1 into perm. */
void np_rng_permutation(np_rng *r, int64_t *perm, int64_t n);

typedef struct np_augment {
	bool flip;                     /* horizontal flip with p = 1/2 */
	int shift;                     /* random shift up to +-shift pixels,
	                                * zero fill (after normalisation: the
	                                * fill is the normalised 0 pixel) */
} np_augment;

/* Copy examples idx[0..n) of an in-memory dataset (d->x) into x
 * (n * example_size floats) and labels into y (if y and d->y),
 * augmenting when aug is non-NULL.  Folder data: use np_batches. */
void np_dataset_gather(const np_dataset *d, const int64_t *idx, int64_t n,
                       float *x, int32_t *y, const np_augment *aug,
                       np_rng *rng, const np_data_opts *opts);

/* One example flipped and/or shifted as aug says, drawing from rng in
 * the order gather does (flip, then dy, then dx). */
void np_augment_example(const np_dataset *d, const float *src, float *dst,
                        const np_augment *aug, np_rng *rng,
                        const np_data_opts *opts);

/* ------------------------------------------------------------ batches */

/* Batches of a dataset, in order: order NULL reads examples 0..n-1 of d,
 * else examples order[0..n) (a permutation for training); batch examples
 * each, the last one partial.  aug (NULL: none) and rng as gather's.
 *
 * In-memory data is read in the caller's thread: without order and
 * augmentation a batch points into d->x; otherwise it is gathered, with
 * the same draws from rng as np_dataset_gather, so runs are as before.
 * Folder data is decoded by opts->workers threads into a queue of a few
 * batches; a pass with augmentation takes one number from rng and each
 * example's draws (crop corner, flip, shift) come from it and the
 * example's position, so the batches do not depend on the number of
 * workers.  A failed image fails the batch that holds it (the first
 * failure in order, whatever thread saw it). */
typedef struct np_batches np_batches;

np_status np_batches_open(const np_dataset *d, const int64_t *order,
                          int64_t n, int64_t batch, const np_augment *aug,
                          np_rng *rng, const np_data_opts *opts,
                          np_batches **out, np_error *err);
/* The next batch: *x (count * example_size floats) and *y (count labels,
 * NULL when d has none), valid until the next call or close; *count 0
 * after the last. */
np_status np_batches_next(np_batches *b, const float **x, const int32_t **y,
                          int64_t *count, np_error *err);
/* Stops and joins the workers; NULL is a no-op. */
void np_batches_close(np_batches *b);
/* The model inputs of the batch np_batches_next() returned last (count
 * examples, x as it returned): x as `input` (the model's single input;
 * left out when NULL or when x is NULL), and each array of the dataset
 * as its input (an unnamed one as `input`).  Fills in[0..] (room for
 * NP_DATA_MAX_ARRAYS + 1) and returns how many; the data stays valid as
 * long as x. */
int np_batch_feed(const np_batches *b, const char *input, const float *x,
                  int64_t count, np_rt_input *in);

/* For a progress line: when the consumer of the latest pass over d's
 * folder waited for decoding more than a tenth of the time, true with
 * the decoding throughput in images per second. */
bool np_dataset_decode_rate(const np_dataset *d, double *img_per_s);
/* An np_progress note (core/progress.h) for ctx, an np_dataset:
 * " decode N img/s" while decoding limits the pass, else nothing. */
void np_decode_note(void *ctx, char *buf, size_t size);

#endif
