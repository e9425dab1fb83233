/* depfile.h - gcc-like dependency output for make (-MD, -MF, -MT,
 * --depfile): one rule naming every file the run read,
 *
 *   pruned.onnx: model.onnx model.onnx.data train-images.gz train-labels.gz \
 *    nepenc.xml
 *
 *   model.onnx.data:
 *   ...
 *
 * then, as gcc -MP does, an empty rule for each prerequisite but the model
 * so that make does not stop when a data file is removed.  File names are
 * escaped as gcc does (space and tab, '#', '$'); a target given with -MT is
 * written as it is.
 */
#ifndef NEPENC_DEPFILE_H
#define NEPENC_DEPFILE_H

#include <stddef.h>

#include "ir.h"
#include "status.h"

typedef struct np_deps {
	np_arena *arena;     /* owns the names */
	const char **v;
	int n, cap;
	int *slot;           /* hash of v's indexes (+1; 0: empty), nslot a
	                      * power of two: a folder lists thousands */
	int nslot;
} np_deps;

void np_deps_init(np_deps *d);
void np_deps_free(np_deps *d);
/* Add PATH unless it is there already. */
void np_deps_add(np_deps *d, const char *path);
/* The model's file and the external-data files the loader read for it
 * (np_model.ext_files): what was read, not parsed again. */
void np_deps_add_model(np_deps *d, const np_model *m);
/* The files a data spec reads (see data.h): idx/npy: the one or two
 * files; cifar10:DIR the batch files; pb:DIR the input_0.pb/output_0.pb
 * files of DIR or of each DIR/test_data_set_N. */
void np_deps_add_spec(np_deps *d, const char *spec);

/* Write "TARGET: DEPS" (target NULL: OUT escaped) and the empty rules to
 * FILE atomically (atomic.h). */
np_status np_deps_write(const np_deps *d, const char *file, const char *target,
                        const char *out, np_error *err);

/* gcc's escaping of a file name for make into buf; false if it does not
 * fit or cannot be written (a newline). */
bool np_make_escape(const char *name, char *buf, size_t size);

#endif
