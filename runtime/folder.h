/* folder.h - folder: datasets inside the runtime (data.c, stream.c):
 * listing the class sub-folders and their images, and turning one image
 * into one preprocessed example.  Not for the layers above: they see
 * np_dataset and np_batches (data.h). */
#ifndef NEPENC_FOLDER_H
#define NEPENC_FOLDER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "data.h"
#include "image.h"
#include "status.h"

/* How the latest pass over a folder went, for progress lines. */
typedef struct np_decode_stats {
	pthread_mutex_t mu;
	double start;                  /* when the pass opened */
	double wait;                   /* seconds its consumer waited */
	int64_t decoded;               /* images decoded in it */
} np_decode_stats;

/* One decoding thread's buffers, reused from image to image. */
typedef struct np_decode_buf {
	uint8_t *file;
	size_t cap;
	np_image a, b;
	float *tmp;                    /* one example, for flip and shift */
	char path[4096];
} np_decode_buf;

void np_decode_buf_free(np_decode_buf *w);

/* Load the folder spec's list into d (labels, dims, src); examples are
 * not decoded, except the first (for the example dims) and, under
 * o->skip_bad, every one once to find the bad ones. */
np_status np_folder_load(const char *dir, const np_data_opts *o,
                         np_dataset *d, np_error *err);

/* Every image file of the folder, in data set order. */
np_status np_folder_files(const char *dir,
                          void (*add)(void *ctx, const char *path), void *ctx,
                          np_error *err);

void np_source_free(np_source *s);

/* The sub-folder of class label ("DIR/name"), into buf. */
void np_source_class_dir(const np_source *s, int label, char *buf, size_t size);

/* Example i of the source (an index into its whole list) as floats
 * (out: example_size of them).  rng non-NULL: a random crop drawn from
 * it (training), else the centre crop. */
np_status np_source_example(const np_source *s, int64_t i, np_rng *rng,
                            np_decode_buf *w, float *out, np_error *err);

/* Has the source a crop to randomise? */
bool np_source_crops(const np_source *s);

/* Decoding threads for a pass (opts->workers, else one per core). */
int np_source_workers(const np_source *s, int64_t examples);

np_decode_stats *np_source_stats(const np_source *s);

#endif
