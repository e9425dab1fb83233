/* onnx_io.h - ONNX file <-> IR (protobuf-c).
 *
 * np_onnx_load() reads a ModelProto, converts it to the IR, frees the
 * protobuf structs and validates the graph.  On failure it returns NULL and
 * err->msg holds one line without the file prefix, e.g.
 *   "node input 'x' has no producer (node Conv_3, op Conv)"
 * The caller (main) prints "nepenc: FILE: " before it.
 *
 * np_onnx_save() writes the IR back as ONNX: deterministic (same IR, same
 * bytes), to a temporary file in the target's folder renamed at the end
 * (see atomic.h), so a failed or interrupted run leaves no partial output.
 */
#ifndef NEPENC_ONNX_IO_H
#define NEPENC_ONNX_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir.h"
#include "status.h"

np_model *np_onnx_load(const char *path, np_error *err);
/* base_dir: folder that external-data locations are relative to; NULL
 * refuses external data. */
np_model *np_onnx_load_buffer(const uint8_t *buf, size_t len,
                              const char *base_dir, np_error *err);

/* Read one TensorProto file (as in ONNX test_data_set_N/input_K.pb) into a
 * tensor owned by m; NULL + err on failure. */
np_tensor *np_onnx_read_tensor(np_model *m, const char *path, np_error *err);

/* Serialised size above which initializers go to an external-data file.
 * protobuf messages cannot exceed 2 GiB. */
#define NP_EXTERNAL_THRESHOLD ((uint64_t)2 << 30)

typedef struct np_save_opts {
	/* Force initializers (those of >= external_min_bytes) into the
	 * external-data file PATH.data even below NP_EXTERNAL_THRESHOLD. */
	bool external_data;
	size_t external_min_bytes;   /* 0 = every initializer */
} np_save_opts;

np_status np_onnx_save(const np_model *m, const char *path,
                       const np_save_opts *opts, np_error *err);

/* A deep copy of m (through the ONNX encoding, so the copy is exactly what
 * the file would hold); NULL + err on failure. */
np_model *np_model_clone(const np_model *m, np_error *err);

#endif
