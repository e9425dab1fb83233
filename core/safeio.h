/* safeio.h - opening the files nepenc reads, and size arithmetic that
 * cannot overflow.
 *
 * Every path nepenc reads (the model, external data, data files, pb:
 * tensors, the run configuration) is hostile input: it may name a FIFO
 * (open() would block until a writer comes), a device (/dev/zero never
 * ends), a folder or a socket.  np_open_input() opens without blocking,
 * refuses anything but a regular file, and hands back a blocking
 * descriptor.  np_read_input() reads a whole file with a size cap checked
 * before anything is allocated.
 */
#ifndef NEPENC_SAFEIO_H
#define NEPENC_SAFEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* protobuf messages are at most 2 GiB; so is a model file. */
#define NP_MAX_MODEL_BYTES ((uint64_t)2 << 30)

/* Open path read-only (O_CLOEXEC) if it is a regular file, its size
 * when opened into *size (unless size is NULL).  On failure -1 and *why
 * says why in words ("No such file or directory", "not a regular file
 * (a FIFO)"); *why is a static string. */
int np_open_input(const char *path, int64_t *size, const char **why);

typedef enum np_input_fail {
	NP_INPUT_IO,          /* cannot open or read, or not a regular file */
	NP_INPUT_TOO_BIG,     /* more than max bytes */
	NP_INPUT_NOMEM
} np_input_fail;

/* The whole regular file at path into a malloc'd buffer (a NUL after the
 * data, not counted in *len).  A file larger than max is refused before
 * anything is allocated, and so is one that grows past max while read.
 * On failure NULL, *how says what kind and *why says it in words. */
uint8_t *np_read_input(const char *path, uint64_t max, size_t *len,
                       np_input_fail *how, const char **why);

/* Lexically, without looking at the file system: rel is not absolute
 * and no ".." climbs above the folder it is relative to. */
bool np_path_inside(const char *rel);

/* a * b and a + b into *out; false (and *out untouched) on overflow. */
static inline bool np_mul_size(size_t a, size_t b, size_t *out)
{
	size_t r;
	if (__builtin_mul_overflow(a, b, &r))
		return false;
	*out = r;
	return true;
}

static inline bool np_mul_i64(int64_t a, int64_t b, int64_t *out)
{
	int64_t r;
	if (__builtin_mul_overflow(a, b, &r))
		return false;
	*out = r;
	return true;
}

static inline bool np_add_i64(int64_t a, int64_t b, int64_t *out)
{
	int64_t r;
	if (__builtin_add_overflow(a, b, &r))
		return false;
	*out = r;
	return true;
}

#endif
