/* data.c - datasets (IDX, CIFAR-10, npy, ONNX TensorProto); see data.h.
 *
 * Data files are hostile input: header counts are checked against the
 * file size before anything is allocated, and gzip streams (whose size is
 * unknown until they end) are read in chunks into buffers that grow only
 * as data actually arrives, so a lying header fails as "truncated"
 * instead of as a huge allocation.
 */
#include "data.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "folder.h"
#include "onnx_io.h"
#include "ops.h"
#include "safeio.h"

#define PATH_BUF 4096
#define CHUNK_BYTES ((int64_t)1 << 20)
#define CIFAR_PIXELS 3072
#define CIFAR_RECORD (1 + CIFAR_PIXELS)
#define MAX_EX_RANK (NP_RT_MAX_RANK - 1)
#define NP_DATA_NAME 256           /* a named array's input name */

/* A data spec split: KIND:A[,B], or npy:NAME=FILE,...[,B]. */
typedef struct spec_parts {
	char kind[16];
	char a[PATH_BUF], b[PATH_BUF];   /* b empty: not given */
	int n_named;                     /* npy: arrays named by input */
	char names[NP_DATA_MAX_ARRAYS][NP_DATA_NAME];
	char files[NP_DATA_MAX_ARRAYS][PATH_BUF];
} spec_parts;

/* ------------------------------------------------------------- elements */

/* Element encodings found in data files. */
typedef enum elem {
	EL_U8, EL_I8,
	EL_I16BE, EL_I32BE, EL_F32BE, EL_F64BE,     /* IDX: big endian */
	EL_U16LE, EL_I16LE, EL_I32LE, EL_U32LE, EL_I64LE, EL_U64LE,
	EL_F32LE, EL_F64LE
} elem;

static int elem_size(elem k)
{
	switch (k) {
	case EL_U8: case EL_I8: return 1;
	case EL_I16BE: case EL_U16LE: case EL_I16LE: return 2;
	case EL_I32BE: case EL_F32BE: case EL_I32LE: case EL_U32LE:
	case EL_F32LE: return 4;
	default: return 8;
	}
}

static bool elem_is_float(elem k)
{
	return k == EL_F32BE || k == EL_F64BE || k == EL_F32LE || k == EL_F64LE;
}

static uint64_t load_be(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static uint64_t load_le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static double elem_float(const uint8_t *p, elem k)
{
	uint64_t bits = (k == EL_F32BE || k == EL_F64BE)
		? load_be(p, elem_size(k)) : load_le(p, elem_size(k));
	if (elem_size(k) == 4) {
		uint32_t b32 = (uint32_t)bits;
		float f;
		memcpy(&f, &b32, sizeof f);
		return f;
	}
	double d;
	memcpy(&d, &bits, sizeof d);
	return d;
}

/* Integer value of an integer element (labels). */
static int64_t elem_int(const uint8_t *p, elem k)
{
	switch (k) {
	case EL_U8: return p[0];
	case EL_I8: return (int8_t)p[0];
	case EL_I16BE: return (int16_t)load_be(p, 2);
	case EL_I32BE: return (int32_t)load_be(p, 4);
	case EL_U16LE: return (uint16_t)load_le(p, 2);
	case EL_I16LE: return (int16_t)load_le(p, 2);
	case EL_I32LE: return (int32_t)load_le(p, 4);
	case EL_U32LE: return (uint32_t)load_le(p, 4);
	case EL_I64LE: return (int64_t)load_le(p, 8);
	case EL_U64LE: {
		uint64_t v = load_le(p, 8);
		return v > INT64_MAX ? INT64_MAX : (int64_t)v;
	}
	default: return (int64_t)elem_float(p, k);
	}
}

/* n elements to floats; unsigned bytes are pixels and get scaled.  The
 * default scale divides by 255 as torchvision's ToTensor does, so the
 * floats are bit-identical to a PyTorch pipeline's. */
static void decode_floats(const uint8_t *src, elem k, int64_t n, float scale,
                          float *dst)
{
	if (k == EL_U8) {
		float lut[256];
		for (int v = 0; v < 256; v++)
			lut[v] = scale == 1.0f / 255 ? (float)v / 255.0f
			                             : (float)v * scale;
		for (int64_t i = 0; i < n; i++)
			dst[i] = lut[src[i]];
		return;
	}
	int sz = elem_size(k);
	if (elem_is_float(k)) {
		for (int64_t i = 0; i < n; i++)
			dst[i] = (float)elem_float(src + i * sz, k);
		return;
	}
	for (int64_t i = 0; i < n; i++)
		dst[i] = (float)elem_int(src + i * sz, k);
}

/* ------------------------------------------------------------ data files */

/* A data file, raw or gzip (zlib reads raw files transparently). */
typedef struct dfile {
	const char *path;
	gzFile gz;
	bool gzipped;
	int64_t size;                  /* bytes on disk */
	int64_t pos;                   /* (decompressed) bytes consumed */
} dfile;

static np_status df_open(dfile *f, const char *path, np_error *err)
{
	memset(f, 0, sizeof *f);
	f->path = path;
	/* Regular files only, opened without blocking: a FIFO would wait
	 * for a writer forever, a device would never end. */
	const char *why;
	int fd = np_open_input(path, &f->size, &why);
	if (fd < 0)
		return np_fail_file(err, NP_ERR_IO, path, "cannot open: %s", why);
	uint8_t magic[2] = {0, 0};
	ssize_t got = read(fd, magic, 2);
	if (got < 0 || lseek(fd, 0, SEEK_SET) != 0) {
		int e = errno;
		close(fd);
		return np_fail_file(err, NP_ERR_IO, path, "cannot read: %s",
		                    strerror(e));
	}
	f->gzipped = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
	f->gz = gzdopen(fd, "rb");
	if (!f->gz) {
		close(fd);
		return np_fail_file(err, NP_ERR_NOMEM, path, "cannot set up zlib");
	}
	gzbuffer(f->gz, 1 << 17);
	return NP_OK;
}

static void df_close(dfile *f)
{
	if (f->gz)
		gzclose(f->gz);
	f->gz = NULL;
}

/* zlib's message without the "<fd:3>: " that gzdopen() puts before it:
 * the error names the file already. */
static const char *gz_message(gzFile gz, int *zerr)
{
	const char *msg = gzerror(gz, zerr);
	const char *p = strncmp(msg, "<fd:", 4) ? NULL : strstr(msg, ">: ");
	return p ? p + 3 : msg;
}

/* Up to len bytes; fewer only at the end of the data.  -1: read error or
 * corrupt gzip stream (err set). */
static int64_t df_read(dfile *f, void *buf, int64_t len, np_error *err)
{
	int64_t done = 0;
	while (done < len) {
		int64_t want = len - done;
		unsigned n = want > (1 << 30) ? 1u << 30 : (unsigned)want;
		int got = gzread(f->gz, (uint8_t *)buf + done, n);
		if (got < 0) {
			int zerr;
			const char *msg = gz_message(f->gz, &zerr);
			if (zerr == Z_ERRNO)
				msg = strerror(errno);
			np_fail_file(err, zerr == Z_ERRNO ? NP_ERR_IO : NP_ERR_FORMAT,
			             f->path, "%s: %s", f->gzipped ?
			             "corrupt gzip data" : "read error", msg);
			return -1;
		}
		if (got == 0)
			break;
		done += got;
	}
	f->pos += done;
	return done;
}

/* After the last needed byte of a gzip file: read on, so zlib checks the
 * stream's CRC and length (corruption that still inflates shows here).
 * Bytes after the data are ignored. */
static np_status df_finish(dfile *f, np_error *err)
{
	uint8_t b;
	if (f->gzipped && gzread(f->gz, &b, 1) < 0) {
		int zerr;
		const char *msg = gz_message(f->gz, &zerr);
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "corrupt gzip data: %s", msg);
	}
	return NP_OK;
}

/* Bytes left to read in a raw file; -1 when unknown (gzip). */
static int64_t df_left(const dfile *f)
{
	return f->gzipped ? -1 : f->size - f->pos;
}

/* Read len bytes into a malloc'd buffer that grows as data arrives;
 * *got < len when the data ends early (the buffer is then freed). */
static np_status df_read_alloc(dfile *f, int64_t len, uint8_t **out,
                               int64_t *got, np_error *err)
{
	*out = NULL;
	*got = 0;
	int64_t cap = len < CHUNK_BYTES || df_left(f) >= len ? len : CHUNK_BYTES;
	uint8_t *buf = malloc(cap ? (size_t)cap : 1);
	int64_t have = 0;
	if (!buf)
		goto nomem;
	while (have < len) {
		if (have == cap) {
			cap = cap > len / 2 ? len : 2 * cap;
			uint8_t *nb = realloc(buf, (size_t)cap);
			if (!nb)
				goto nomem;
			buf = nb;
		}
		int64_t want = cap - have, n = df_read(f, buf + have, want, err);
		if (n < 0) {
			free(buf);
			return err->status;
		}
		have += n;
		if (n < want)
			break;
	}
	*got = have;
	if (have < len)
		free(buf);
	else
		*out = buf;
	return NP_OK;
nomem:
	free(buf);
	return np_fail_file(err, NP_ERR_NOMEM, f->path,
	                    "out of memory reading %lld bytes", (long long)len);
}

/* Convert n elements of kind k at the start of buf (a malloc'd block
 * of n * elem_size(k) bytes) to floats in place, growing the block to
 * n floats.  Narrower elements are first moved to the end of the grown
 * block: converting front to back, element i is read before float i is
 * written, and float i never reaches element i + 1.  So a uint8 file
 * costs its own size while it is read, not four times it. */
static float *widen_in_place(uint8_t *buf, elem k, int64_t n, float scale)
{
	int sz = elem_size(k);
	uint8_t *src = buf;
	if (sz < (int)sizeof(float)) {
		uint8_t *nb = realloc(buf, (size_t)(n ? n : 1) * sizeof(float));
		if (!nb) {
			free(buf);
			return NULL;
		}
		src = nb + (size_t)n * (sizeof(float) - (size_t)sz);
		memmove(src, nb, (size_t)n * (size_t)sz);
		buf = nb;
	}
	decode_floats(src, k, n, scale, (float *)(void *)buf);
	if (sz > (int)sizeof(float)) {
		uint8_t *nb = realloc(buf, (size_t)(n ? n : 1) * sizeof(float));
		if (nb)
			buf = nb;
	}
	return (float *)(void *)buf;
}

/* Read count examples of es elements of kind k as floats.  The raw bytes
 * go into a buffer that grows only as data arrives (df_read_alloc), so a
 * header that claims more than the file holds fails as "truncated" after
 * holding no more than the data; they are converted once all are there.
 * Float data must be finite: a NaN or an infinity is refused with the
 * example's index.  *n_read < count when the data ends early. */
static np_status df_read_examples(dfile *f, elem k, int64_t count, int64_t es,
                                  float scale, float **out, int64_t *n_read,
                                  np_error *err)
{
	int64_t total, bytes, got;
	*out = NULL;
	*n_read = 0;
	if (!np_mul_i64(count, es, &total) ||
	    !np_mul_i64(total, elem_size(k), &bytes) ||
	    (uint64_t)total > SIZE_MAX / sizeof(float))
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "%lld examples of %lld values: too large",
		                    (long long)count, (long long)es);
	uint8_t *raw;
	np_status st = df_read_alloc(f, bytes, &raw, &got, err);
	if (st != NP_OK)
		return st;
	if (!raw) {
		*n_read = got / elem_size(k) / es;
		return NP_OK;
	}
	float *x = widen_in_place(raw, k, total, scale);
	if (!x)
		return np_fail_file(err, NP_ERR_NOMEM, f->path, "out of memory "
		                    "for %lld examples", (long long)count);
	if (elem_is_float(k)) {
		for (int64_t i = 0; i < total; i++) {
			if (!isfinite(x[i])) {
				float v = x[i];
				free(x);
				return np_fail_file(err, NP_ERR_FORMAT, f->path,
				                    "example %lld has %s (value %lld of "
				                    "the example)", (long long)(i / es),
				                    isnan(v) ? "a NaN" : "an infinity",
				                    (long long)(i % es));
			}
		}
	}
	*out = x;
	*n_read = count;
	return NP_OK;
}

/* Labels: count integers of kind k into int32, refusing negative ones. */
static np_status df_read_labels(dfile *f, elem k, int64_t count, int32_t **out,
                                int64_t *got_bytes, np_error *err)
{
	uint8_t *raw;
	int64_t bytes;
	*out = NULL;
	if (!np_mul_i64(count, elem_size(k), &bytes) ||
	    (uint64_t)count >= SIZE_MAX / sizeof(int32_t))
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "%lld labels: too many", (long long)count);
	np_status st = df_read_alloc(f, bytes, &raw, got_bytes, err);
	if (st != NP_OK || !raw)
		return st;
	int32_t *y = malloc((size_t)(count ? count : 1) * sizeof *y);
	if (!y) {
		free(raw);
		return np_fail_file(err, NP_ERR_NOMEM, f->path, "out of memory");
	}
	for (int64_t i = 0; i < count; i++) {
		int64_t v = elem_int(raw + i * elem_size(k), k);
		if (v < 0 || v >= INT32_MAX) {
			free(raw);
			free(y);
			return np_fail_file(err, NP_ERR_FORMAT, f->path,
			                    "label %lld at example %lld is not a class "
			                    "index", (long long)v, (long long)i);
		}
		y[i] = (int32_t)v;
	}
	free(raw);
	*out = y;
	return NP_OK;
}

/* ---------------------------------------------------------------- shapes */

/* "[1,28,28]" */
static void fmt_dims(char *buf, size_t size, const int64_t *dims, int rank)
{
	size_t len = (size_t)snprintf(buf, size, "[");
	for (int i = 0; i < rank && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s%lld",
		                        i ? "," : "", (long long)dims[i]);
	if (len < size)
		snprintf(buf + len, size - len, "]");
}

/* "28x28" */
static void fmt_dims_x(char *buf, size_t size, const int64_t *dims, int rank)
{
	size_t len = 0;
	buf[0] = '\0';
	for (int i = 0; i < rank && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s%lld",
		                        i ? "x" : "", (long long)dims[i]);
}

/* Per-example dims and size; NP_ERR_FORMAT on overflow. */
static np_status set_example_dims(np_dataset *d, const int64_t *dims, int rank,
                                  const char *file, np_error *err)
{
	if (rank < 1 || rank > MAX_EX_RANK)
		return np_fail_file(err, NP_ERR_UNSUPPORTED, file,
		                    "examples of rank %d are not supported (1..%d)",
		                    rank, MAX_EX_RANK);
	int64_t es = np_dims_product(dims, rank);
	if (es <= 0 || es > INT64_MAX / 8 / INT32_MAX)
		return np_fail_file(err, NP_ERR_FORMAT, file,
		                    "examples of %lld values are not supported",
		                    (long long)es);
	d->rank = rank;
	memcpy(d->dims, dims, (size_t)rank * sizeof *dims);
	d->example_size = es;
	return NP_OK;
}

/* *bytes = count * es * elsize, false when it does not fit in int64. */
static bool bytes_of(int64_t count, int64_t es, int elsize, int64_t *bytes)
{
	int64_t t;
	return count >= 0 && np_mul_i64(count, es, &t) &&
	       np_mul_i64(t, elsize, bytes);
}

static int64_t take(int64_t n, int64_t limit)
{
	return limit > 0 && limit < n ? limit : n;
}

/* ------------------------------------------------------------------ IDX */

typedef struct idx_header {
	elem kind;
	int ndim;
	int64_t dims[255];
	uint32_t magic;
} idx_header;

static np_status idx_read_header(dfile *f, idx_header *h, np_error *err)
{
	uint8_t m[4];
	int64_t got = df_read(f, m, 4, err);
	if (got < 0)
		return err->status;
	if (got < 4)
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "not an IDX file (only %lld bytes)", (long long)got);
	h->magic = (uint32_t)load_be(m, 4);
	static const struct { int code; elem kind; } types[] = {
		{0x08, EL_U8}, {0x09, EL_I8}, {0x0B, EL_I16BE}, {0x0C, EL_I32BE},
		{0x0D, EL_F32BE}, {0x0E, EL_F64BE}
	};
	int t = -1;
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		if (types[i].code == m[2])
			t = (int)i;
	if (m[0] || m[1] || t < 0 || m[3] == 0)
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "not an IDX file (magic 0x%08x)", h->magic);
	h->kind = types[t].kind;
	h->ndim = m[3];
	uint8_t d[4 * 255];
	got = df_read(f, d, 4 * h->ndim, err);
	if (got < 0)
		return err->status;
	if (got < 4 * h->ndim)
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "truncated IDX header (magic 0x%08x, %d dims)",
		                    h->magic, h->ndim);
	for (int i = 0; i < h->ndim; i++)
		h->dims[i] = (int64_t)load_be(d + 4 * i, 4);
	return NP_OK;
}

/* The "file has only B bytes" part of a truncation message. */
static void truncation_tail(const dfile *f, char *buf, size_t size)
{
	if (f->gzipped)
		snprintf(buf, size, "gzip data ends after %lld bytes",
		         (long long)f->pos);
	else
		snprintf(buf, size, "file has only %lld bytes", (long long)f->size);
}

static np_status idx_images(dfile *f, const idx_header *h, float scale,
                            int64_t limit, np_dataset *d, np_error *err)
{
	if (h->ndim < 2 || h->ndim > MAX_EX_RANK + 1)
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "IDX images need 2 to %d dimensions, the file has "
		                    "%d (magic 0x%08x)", MAX_EX_RANK + 1, h->ndim,
		                    h->magic);
	/* [n, rows, cols] -> one channel [1, rows, cols]. */
	int64_t ex[MAX_EX_RANK];
	int rank = 0;
	if (h->ndim == 3)
		ex[rank++] = 1;
	for (int i = 1; i < h->ndim; i++)
		ex[rank++] = h->dims[i];
	np_status st = set_example_dims(d, ex, rank, f->path, err);
	if (st != NP_OK)
		return st;
	int64_t n = h->dims[0];
	int sz = elem_size(h->kind);
	char shape[128], tail[96];
	fmt_dims_x(shape, sizeof shape, h->dims + 1, h->ndim - 1);
	int64_t need;
	if (!bytes_of(n, d->example_size, sz, &need))
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "IDX header says %lld images of %s: too large",
		                    (long long)n, shape);
	if (df_left(f) >= 0 && df_left(f) < need) {
		truncation_tail(f, tail, sizeof tail);
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "truncated IDX file: header says %lld images of "
		                    "%s, %s", (long long)n, shape, tail);
	}
	int64_t keep = take(n, limit), got;
	st = df_read_examples(f, h->kind, keep, d->example_size,
	                      h->kind == EL_U8 ? scale : 1.0f, &d->x, &got, err);
	if (st != NP_OK)
		return st;
	if (got < keep) {
		truncation_tail(f, tail, sizeof tail);
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "truncated IDX file: header says %lld images of "
		                    "%s, %s", (long long)n, shape, tail);
	}
	d->n = keep;
	return keep == n ? df_finish(f, err) : NP_OK;
}

static np_status idx_labels(dfile *f, const idx_header *h, int64_t keep,
                            np_dataset *d, np_error *err)
{
	if (h->ndim != 1 || elem_is_float(h->kind))
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "IDX labels must be integers of one dimension, "
		                    "this file has %d (magic 0x%08x)", h->ndim,
		                    h->magic);
	int64_t n = h->dims[0], got, need;
	char tail[96];
	if (!bytes_of(n, 1, elem_size(h->kind), &need))
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "IDX header says %lld labels: too many",
		                    (long long)n);
	if (df_left(f) >= 0 && df_left(f) < need) {
		truncation_tail(f, tail, sizeof tail);
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "truncated IDX file: header says %lld labels, %s",
		                    (long long)n, tail);
	}
	np_status st = df_read_labels(f, h->kind, keep, &d->y, &got, err);
	if (st == NP_OK && !d->y) {
		truncation_tail(f, tail, sizeof tail);
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "truncated IDX file: header says %lld labels, %s",
		                    (long long)n, tail);
	}
	return st == NP_OK && keep == n ? df_finish(f, err) : st;
}

static np_status load_idx(const char *images, const char *labels,
                          float scale, int64_t limit, np_dataset *d,
                          np_error *err)
{
	dfile fi, fl = {0};
	idx_header hi, hl;
	np_status st = df_open(&fi, images, err);
	if (st != NP_OK)
		return st;
	st = idx_read_header(&fi, &hi, err);
	if (st == NP_OK && labels) {
		st = df_open(&fl, labels, err);
		if (st == NP_OK)
			st = idx_read_header(&fl, &hl, err);
		if (st == NP_OK && hl.ndim >= 1 && hi.dims[0] != hl.dims[0])
			st = np_fail_file(err, NP_ERR_INVALID, labels,
			                  "IDX images (%lld) and labels (%lld) differ in "
			                  "count", (long long)hi.dims[0],
			                  (long long)hl.dims[0]);
	}
	if (st == NP_OK)
		st = idx_images(&fi, &hi, scale, limit, d, err);
	if (st == NP_OK && labels)
		st = idx_labels(&fl, &hl, d->n, d, err);
	df_close(&fi);
	df_close(&fl);
	return st;
}

/* -------------------------------------------------------------- CIFAR-10 */

static bool is_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static np_status cifar_file(const char *path, int64_t want, float scale,
                            np_dataset *d, np_error *err)
{
	dfile f;
	np_status st = df_open(&f, path, err);
	if (st != NP_OK)
		return st;
	uint8_t *rec = NULL;
	if (f.gzipped) {
		st = np_fail_file(err, NP_ERR_UNSUPPORTED, path,
		                  "gzip-compressed CIFAR-10 batches are not "
		                  "supported: gunzip it first");
		goto out;
	}
	int64_t n = take(f.size / CIFAR_RECORD, want);
	rec = malloc(CIFAR_RECORD);
	if (!rec) {
		st = np_fail_file(err, NP_ERR_NOMEM, path, "out of memory");
		goto out;
	}
	for (int64_t i = 0; i < n; i++) {
		int64_t got = df_read(&f, rec, CIFAR_RECORD, err);
		if (got < 0) {
			st = err->status;
			goto out;
		}
		if (got < CIFAR_RECORD) {
			st = np_fail_file(err, NP_ERR_FORMAT, path,
			                  "truncated CIFAR-10 batch: record %lld ends "
			                  "early", (long long)i);
			goto out;
		}
		if (rec[0] > 9) {
			st = np_fail_file(err, NP_ERR_FORMAT, path,
			                  "label %d at record %lld is not a CIFAR-10 "
			                  "class (0..9)", rec[0], (long long)i);
			goto out;
		}
		d->y[d->n] = rec[0];
		decode_floats(rec + 1, EL_U8, CIFAR_PIXELS, scale,
		              d->x + d->n * CIFAR_PIXELS);
		d->n++;
	}
out:
	free(rec);
	df_close(&f);
	return st;
}

/* Batch files of a CIFAR-10 folder (or the one file given). */
static int cifar_files(const char *dir, char files[][PATH_BUF])
{
	if (is_file(dir)) {
		snprintf(files[0], PATH_BUF, "%s", dir);
		return 1;
	}
	snprintf(files[0], PATH_BUF, "%s/data_batch_1.bin", dir);
	if (!is_file(files[0])) {
		snprintf(files[0], PATH_BUF, "%s/test_batch.bin", dir);
		return is_file(files[0]) ? 1 : 0;
	}
	for (int i = 1; i < 5; i++)
		snprintf(files[i], PATH_BUF, "%s/data_batch_%d.bin", dir, i + 1);
	return 5;
}

static np_status load_cifar(const char *dir, float scale, int64_t limit,
                            np_dataset *d, np_error *err)
{
	char files[5][PATH_BUF];
	int nf = cifar_files(dir, files);
	if (nf == 0)
		return np_fail_file(err, NP_ERR_IO, dir, "no CIFAR-10 batches: "
		                    "neither data_batch_1.bin nor test_batch.bin");
	/* Sizes first: every file must hold whole records. */
	int64_t total = 0;
	for (int i = 0; i < nf; i++) {
		struct stat st;
		if (stat(files[i], &st) != 0)
			return np_fail_file(err, NP_ERR_IO, files[i], "cannot open: %s",
			                    strerror(errno));
		if (st.st_size == 0 || st.st_size % CIFAR_RECORD != 0)
			return np_fail_file(err, NP_ERR_FORMAT, files[i],
			                    "CIFAR-10 batch has %lld bytes, not a "
			                    "multiple of the %d-byte record",
			                    (long long)st.st_size, CIFAR_RECORD);
		total += st.st_size / CIFAR_RECORD;
	}
	int64_t keep = take(total, limit);
	int64_t ex[3] = {3, 32, 32};
	np_status st = set_example_dims(d, ex, 3, dir, err);
	if (st != NP_OK)
		return st;
	size_t xbytes;
	if (!np_mul_size((size_t)keep, CIFAR_PIXELS * sizeof *d->x, &xbytes))
		return np_fail_file(err, NP_ERR_NOMEM, dir, "out of memory for %lld "
		                    "CIFAR-10 images", (long long)keep);
	d->x = malloc(xbytes);
	d->y = malloc((size_t)keep * sizeof *d->y);
	if (!d->x || !d->y)
		return np_fail_file(err, NP_ERR_NOMEM, dir, "out of memory for %lld "
		                    "CIFAR-10 images", (long long)keep);
	for (int i = 0; i < nf && d->n < keep && st == NP_OK; i++)
		st = cifar_file(files[i], keep - d->n, scale, d, err);
	return st;
}

/* ------------------------------------------------------------------ npy */

typedef struct npy_header {
	char descr[16];
	bool fortran;
	int rank;
	int64_t shape[NP_RT_MAX_RANK + 1];
} npy_header;

/* The value after 'key': in a Python dict literal, or NULL. */
static const char *npy_key(const char *h, const char *key)
{
	char q1[40], q2[40];
	snprintf(q1, sizeof q1, "'%s'", key);
	snprintf(q2, sizeof q2, "\"%s\"", key);
	const char *p = strstr(h, q1);
	if (!p)
		p = strstr(h, q2);
	if (!p)
		return NULL;
	p += strlen(q1);
	while (*p == ' ')
		p++;
	if (*p++ != ':')
		return NULL;
	while (*p == ' ')
		p++;
	return p;
}

static np_status npy_parse_dict(const dfile *f, const char *h, npy_header *nh,
                                np_error *err)
{
	const char *p = npy_key(h, "descr");
	if (!p)
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "bad npy header: no 'descr' key");
	if (*p != '\'' && *p != '"')
		return np_fail_file(err, NP_ERR_UNSUPPORTED, f->path,
		                    "npy arrays of a structured dtype are not "
		                    "supported");
	char q = *p++;
	size_t len = 0;
	while (p[len] && p[len] != q && len < sizeof nh->descr - 1)
		len++;
	if (p[len] != q)
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "bad npy header: 'descr' is not a simple dtype");
	memcpy(nh->descr, p, len);
	nh->descr[len] = '\0';
	p = npy_key(h, "fortran_order");
	if (!p || (strncmp(p, "False", 5) && strncmp(p, "True", 4)))
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "bad npy header: no 'fortran_order' flag");
	nh->fortran = *p == 'T';
	p = npy_key(h, "shape");
	if (!p || *p++ != '(')
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "bad npy header: no 'shape' tuple");
	nh->rank = 0;
	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == ')')
			break;
		if (*p < '0' || *p > '9' || nh->rank == NP_RT_MAX_RANK)
			return np_fail_file(err, NP_ERR_FORMAT, f->path,
			                    "bad npy header: 'shape' is not a tuple of "
			                    "up to %d sizes", NP_RT_MAX_RANK);
		int64_t v = 0;
		while (*p >= '0' && *p <= '9') {
			if (v > (INT64_MAX - 9) / 10)
				return np_fail_file(err, NP_ERR_FORMAT, f->path,
				                    "bad npy header: size too large");
			v = v * 10 + (*p++ - '0');
		}
		nh->shape[nh->rank++] = v;
		while (*p == ' ')
			p++;
		if (*p == ',')
			p++;
		else if (*p != ')')
			return np_fail_file(err, NP_ERR_FORMAT, f->path,
			                    "bad npy header: malformed 'shape'");
	}
	return NP_OK;
}

static np_status npy_read_header(dfile *f, npy_header *nh, np_error *err)
{
	uint8_t pre[12];
	int64_t got = df_read(f, pre, 10, err);
	if (got < 0)
		return err->status;
	if (got < 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "not a NumPy .npy file (no \\x93NUMPY magic)");
	int major = pre[6];
	int64_t hlen = load_le(pre + 8, 2);
	if (major == 2 || major == 3) {
		if (df_read(f, pre + 10, 2, err) != 2)
			return np_fail_file(err, NP_ERR_FORMAT, f->path,
			                    "truncated npy header");
		hlen = (int64_t)load_le(pre + 8, 4);
	} else if (major != 1) {
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "npy format version %d is not supported", major);
	}
	if (hlen > (1 << 20) || (df_left(f) >= 0 && hlen > df_left(f)))
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "bad npy header: length %lld", (long long)hlen);
	char *h = malloc((size_t)hlen + 1);
	if (!h)
		return np_fail_file(err, NP_ERR_NOMEM, f->path, "out of memory");
	got = df_read(f, h, hlen, err);
	np_status st;
	if (got < 0)
		st = err->status;
	else if (got < hlen)
		st = np_fail_file(err, NP_ERR_FORMAT, f->path, "truncated npy header");
	else {
		h[hlen] = '\0';
		st = npy_parse_dict(f, h, nh, err);
	}
	free(h);
	if (st == NP_OK && nh->fortran)
		st = np_fail_file(err, NP_ERR_UNSUPPORTED, f->path,
		                  "npy array is in Fortran order: save it in C "
		                  "order (numpy.ascontiguousarray)");
	return st;
}

static bool npy_elem(const char *descr, bool labels, elem *k)
{
	static const struct { const char *d; elem k; bool x, y; } t[] = {
		{"<f4", EL_F32LE, true, false}, {"<f8", EL_F64LE, true, false},
		{"|u1", EL_U8, true, true}, {"<u1", EL_U8, true, true},
		{"|i1", EL_I8, false, true}, {"<i2", EL_I16LE, false, true},
		{"<u2", EL_U16LE, false, true}, {"<i4", EL_I32LE, false, true},
		{"<u4", EL_U32LE, false, true}, {"<i8", EL_I64LE, false, true},
		{"<u8", EL_U64LE, false, true}
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (!strcmp(descr, t[i].d) && (labels ? t[i].y : t[i].x)) {
			*k = t[i].k;
			return true;
		}
	return false;
}

static void fmt_shape_py(char *buf, size_t size, const npy_header *nh)
{
	size_t len = (size_t)snprintf(buf, size, "(");
	for (int i = 0; i < nh->rank && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s%lld",
		                        i ? ", " : "", (long long)nh->shape[i]);
	if (len < size)
		snprintf(buf + len, size - len, nh->rank == 1 ? ",)" : ")");
}

static np_status npy_truncated(const dfile *f, const npy_header *nh,
                               int64_t need, np_error *err)
{
	char shape[160], tail[96];
	fmt_shape_py(shape, sizeof shape, nh);
	truncation_tail(f, tail, sizeof tail);
	return np_fail_file(err, NP_ERR_FORMAT, f->path,
	                    "truncated npy file: shape %s of %s needs %lld bytes "
	                    "of data, %s", shape, nh->descr, (long long)need, tail);
}

/* count * es integers of kind k as int64 (malloc'd); *out NULL when the
 * data ends early. */
static np_status df_read_ints(dfile *f, elem k, int64_t count, int64_t es,
                              int64_t **out, np_error *err)
{
	int64_t total, bytes, got;
	*out = NULL;
	if (!np_mul_i64(count, es, &total) ||
	    !np_mul_i64(total, elem_size(k), &bytes) ||
	    (uint64_t)total >= SIZE_MAX / sizeof(int64_t))
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "%lld examples of %lld values: too large",
		                    (long long)count, (long long)es);
	uint8_t *raw;
	np_status st = df_read_alloc(f, bytes, &raw, &got, err);
	if (st != NP_OK || !raw)
		return st;
	int64_t *v = malloc((size_t)(total ? total : 1) * sizeof *v);
	if (!v) {
		free(raw);
		return np_fail_file(err, NP_ERR_NOMEM, f->path, "out of memory "
		                    "for %lld examples", (long long)count);
	}
	for (int64_t i = 0; i < total; i++)
		v[i] = elem_int(raw + i * elem_size(k), k);
	free(raw);
	*out = v;
	return NP_OK;
}

/* The examples of one model input into d->arrays[d->n_arrays]: int64
 * and int32 files as int64, float32 and float64 (named arrays only) as
 * float, as stored.  name NULL: the model's single input.  d->n is set
 * to the examples kept (limit); *n_total is the file's count. */
static np_status npy_array(dfile *f, const npy_header *nh, const char *name,
                           int64_t limit, np_dataset *d, int64_t *n_total,
                           np_error *err)
{
	elem k;
	int dtype = NP_INT64;
	if (!strcmp(nh->descr, "<i8"))
		k = EL_I64LE;
	else if (!strcmp(nh->descr, "<i4"))
		k = EL_I32LE;
	else if (name && !strcmp(nh->descr, "<f4"))
		k = EL_F32LE, dtype = NP_FLOAT;
	else if (name && !strcmp(nh->descr, "<f8"))
		k = EL_F64LE, dtype = NP_FLOAT;
	else
		return np_fail_file(err, NP_ERR_UNSUPPORTED, f->path,
		                    "npy dtype '%s' is not supported for the input "
		                    "'%s' (use '<i8' or '<i4' for an int64 input, "
		                    "'<f4' or '<f8' for a float one)", nh->descr,
		                    name ? name : "?");
	if (d->n_arrays == NP_DATA_MAX_ARRAYS)
		return np_fail_file(err, NP_ERR_USAGE, f->path, "more than %d arrays",
		                    NP_DATA_MAX_ARRAYS);
	if (nh->rank < 2 || nh->rank - 1 > MAX_EX_RANK) {
		char shape[160];
		fmt_shape_py(shape, sizeof shape, nh);
		return np_fail_file(err, NP_ERR_INVALID, f->path,
		                    "examples need a shape (n, ...) of 2 to %d "
		                    "dimensions, this array is %s", MAX_EX_RANK + 1,
		                    shape);
	}
	np_data_array *a = &d->arrays[d->n_arrays];
	int64_t es = np_dims_product(nh->shape + 1, nh->rank - 1);
	if (es <= 0 || es > INT64_MAX / 8 / INT32_MAX)
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "examples of %lld values are not supported",
		                    (long long)es);
	a->name = name ? strdup(name) : NULL;
	a->file = strdup(f->path);
	d->n_arrays++;       /* np_dataset_free frees what is set */
	if ((name && !a->name) || !a->file)
		return np_fail_file(err, NP_ERR_NOMEM, f->path, "out of memory");
	a->dtype = dtype;
	a->rank = nh->rank - 1;
	memcpy(a->dims, nh->shape + 1, sizeof(int64_t) * (size_t)a->rank);
	a->example_size = es;
	int64_t n = nh->shape[0], need, got = 0;
	*n_total = n;
	if (!bytes_of(n, es, elem_size(k), &need))
		return np_fail_file(err, NP_ERR_FORMAT, f->path, "npy array too large");
	if (df_left(f) >= 0 && df_left(f) < need)
		return npy_truncated(f, nh, need, err);
	int64_t keep = take(n, limit);
	np_status st;
	if (dtype == NP_FLOAT) {
		float *x = NULL;
		st = df_read_examples(f, k, keep, es, 1.0f, &x, &got, err);
		a->data = x;
	} else {
		int64_t *v = NULL;
		st = df_read_ints(f, k, keep, es, &v, err);
		a->data = v;
		got = v ? keep : 0;
	}
	if (st == NP_OK && got < keep)
		return npy_truncated(f, nh, need, err);
	d->n = keep;
	return st == NP_OK && keep == n ? df_finish(f, err) : st;
}

static np_status npy_x(dfile *f, float scale, int64_t limit, np_dataset *d,
                       int64_t *n_total, np_error *err)
{
	npy_header nh;
	elem k;
	np_status st = npy_read_header(f, &nh, err);
	if (st != NP_OK)
		return st;
	/* Token ids for a single int64 input. */
	if (!strcmp(nh.descr, "<i8") || !strcmp(nh.descr, "<i4"))
		return npy_array(f, &nh, NULL, limit, d, n_total, err);
	if (!npy_elem(nh.descr, false, &k))
		return np_fail_file(err, NP_ERR_UNSUPPORTED, f->path,
		                    "npy dtype '%s' is not supported for examples "
		                    "(use '<f4', '<f8' or '|u1'; '<i8' or '<i4' for "
		                    "an int64 input)", nh.descr);
	if (nh.rank < 2) {
		char shape[160];
		fmt_shape_py(shape, sizeof shape, &nh);
		return np_fail_file(err, NP_ERR_INVALID, f->path,
		                    "examples need a shape (n, ...) of at least 2 "
		                    "dimensions, this array is %s", shape);
	}
	st = set_example_dims(d, nh.shape + 1, nh.rank - 1, f->path, err);
	if (st != NP_OK)
		return st;
	int64_t n = nh.shape[0], got;
	*n_total = n;
	int64_t need;
	if (!bytes_of(n, d->example_size, elem_size(k), &need))
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "npy array too large");
	if (df_left(f) >= 0 && df_left(f) < need)
		return npy_truncated(f, &nh, need, err);
	int64_t keep = take(n, limit);
	st = df_read_examples(f, k, keep, d->example_size,
	                      k == EL_U8 ? scale : 1.0f, &d->x, &got, err);
	if (st == NP_OK && got < keep)
		return npy_truncated(f, &nh, need, err);
	d->n = keep;
	return st == NP_OK && keep == n ? df_finish(f, err) : st;
}

static np_status npy_y(dfile *f, int64_t n_x, np_dataset *d, np_error *err)
{
	npy_header nh;
	elem k;
	np_status st = npy_read_header(f, &nh, err);
	if (st != NP_OK)
		return st;
	if (!npy_elem(nh.descr, true, &k))
		return np_fail_file(err, NP_ERR_UNSUPPORTED, f->path,
		                    "npy dtype '%s' is not supported for labels "
		                    "(use '<i8', '<i4' or '|u1')", nh.descr);
	if (nh.rank < 1 || nh.rank > 2 || (nh.rank == 2 && nh.shape[1] != 1)) {
		char shape[160];
		fmt_shape_py(shape, sizeof shape, &nh);
		return np_fail_file(err, NP_ERR_INVALID, f->path,
		                    "labels need a shape (n,) or (n, 1), this array "
		                    "is %s", shape);
	}
	if (nh.shape[0] != n_x)
		return np_fail_file(err, NP_ERR_INVALID, f->path,
		                    "npy examples (%lld) and labels (%lld) differ in "
		                    "count", (long long)n_x, (long long)nh.shape[0]);
	int64_t need, got;
	if (!bytes_of(nh.shape[0], 1, elem_size(k), &need))
		return np_fail_file(err, NP_ERR_FORMAT, f->path,
		                    "npy labels: %lld of '%s' are too many",
		                    (long long)nh.shape[0], nh.descr);
	if (df_left(f) >= 0 && df_left(f) < need)
		return npy_truncated(f, &nh, need, err);
	st = df_read_labels(f, k, d->n, &d->y, &got, err);
	if (st == NP_OK && !d->y)
		return npy_truncated(f, &nh, need, err);
	return st == NP_OK && d->n == n_x ? df_finish(f, err) : st;
}

/* Named arrays, one per model input: the same number of examples each. */
static np_status npy_named(const char names[][NP_DATA_NAME],
                           const char files[][PATH_BUF],
                           int n, int64_t limit, np_dataset *d,
                           int64_t *n_x, np_error *err)
{
	np_status st = NP_OK;
	for (int i = 0; i < n && st == NP_OK; i++) {
		dfile f;
		npy_header nh;
		int64_t count = 0;
		if ((st = df_open(&f, files[i], err)) != NP_OK)
			return st;
		st = npy_read_header(&f, &nh, err);
		if (st == NP_OK)
			st = npy_array(&f, &nh, names[i], limit, d, &count, err);
		df_close(&f);
		if (st == NP_OK && i > 0 && count != *n_x)
			st = np_fail_file(err, NP_ERR_INVALID, files[i],
			                  "holds %lld examples, %s holds %lld: the "
			                  "arrays must hold the same number",
			                  (long long)count, files[0], (long long)*n_x);
		if (i == 0)
			*n_x = count;
	}
	return st;
}

static np_status load_npy(const spec_parts *sp, float scale, int64_t limit,
                          np_dataset *d, np_error *err)
{
	dfile f;
	int64_t n_x = 0;   /* before --limit, for the count check */
	const char *ypath = sp->b[0] ? sp->b : NULL;
	np_status st;
	if (sp->n_named > 0) {
		st = npy_named(sp->names, sp->files, sp->n_named, limit, d, &n_x,
		               err);
	} else {
		if ((st = df_open(&f, sp->a, err)) != NP_OK)
			return st;
		st = npy_x(&f, scale, limit, d, &n_x, err);
		df_close(&f);
	}
	if (st != NP_OK || !ypath)
		return st;
	st = df_open(&f, ypath, err);
	if (st != NP_OK)
		return st;
	st = npy_y(&f, n_x, d, err);
	df_close(&f);
	return st;
}

/* ------------------------------------------------------- ONNX TensorProto */

typedef struct pb_set {
	char xpath[PATH_BUF + 16];       /* SET/input_0.pb */
	char ypath[PATH_BUF + 16];       /* SET/output_0.pb, "" if absent */
	np_tensor *x, *y;
} pb_set;

static bool pb_float_kind(int dtype, elem *k)
{
	switch (dtype) {
	case NP_FLOAT: *k = EL_F32LE; return true;
	case NP_DOUBLE: *k = EL_F64LE; return true;
	case NP_UINT8: *k = EL_U8; return true;
	default: return false;
	}
}

static bool pb_int_kind(int dtype, elem *k)
{
	switch (dtype) {
	case NP_INT64: *k = EL_I64LE; return true;
	case NP_INT32: *k = EL_I32LE; return true;
	case NP_INT16: *k = EL_I16LE; return true;
	case NP_INT8: *k = EL_I8; return true;
	case NP_UINT8: *k = EL_U8; return true;
	case NP_UINT16: *k = EL_U16LE; return true;
	case NP_UINT32: *k = EL_U32LE; return true;
	case NP_UINT64: *k = EL_U64LE; return true;
	default: return false;
	}
}

/* np_onnx_read_tensor() may not name the file; make sure err does. */
static np_status pb_read(np_model *m, const char *path, np_tensor **t,
                         np_error *err)
{
	*t = np_onnx_read_tensor(m, path, err);
	if (*t)
		return NP_OK;
	if (!err->file[0]) {
		size_t len = strlen(path);
		if (len >= sizeof err->file)
			len = sizeof err->file - 1;
		memcpy(err->file, path, len);
		err->file[len] = '\0';
	}
	return err->status ? err->status : NP_ERR_FORMAT;
}

static int set_number(const pb_set *s)
{
	const char *p = strstr(s->xpath, "test_data_set_");
	return p ? atoi(p + strlen("test_data_set_")) : 0;
}

static int cmp_set_number(const void *a, const void *b)
{
	int x = set_number(a), y = set_number(b);
	return (x > y) - (x < y);
}

/* One set in folder dir (dir may also be the input file itself). */
static void pb_set_paths(pb_set *s, const char *dir)
{
	memset(s, 0, sizeof *s);
	if (is_file(dir)) {
		snprintf(s->xpath, sizeof s->xpath, "%s", dir);
		return;
	}
	snprintf(s->xpath, sizeof s->xpath, "%s/input_0.pb", dir);
	snprintf(s->ypath, sizeof s->ypath, "%s/output_0.pb", dir);
	if (!is_file(s->ypath))
		s->ypath[0] = '\0';
}

/* DIR/test_data_set_N folders in numeric order, or DIR itself. */
static np_status pb_list_sets(const char *dir, pb_set **sets, int *n,
                              np_error *err)
{
	*n = 0;
	*sets = malloc(sizeof **sets);
	if (!*sets)
		return np_fail_file(err, NP_ERR_NOMEM, dir, "out of memory");
	pb_set_paths(*sets, dir);
	if (is_file((*sets)->xpath)) {
		*n = 1;
		return NP_OK;
	}
	DIR *dh = opendir(dir);
	if (!dh)
		return np_fail_file(err, NP_ERR_IO, dir, "cannot open: %s",
		                    strerror(errno));
	int cap = 1;
	const char *prefix = "test_data_set_";
	size_t pl = strlen(prefix);
	struct dirent *e;
	while ((e = readdir(dh))) {
		const char *nm = e->d_name;
		if (strncmp(nm, prefix, pl) || !nm[pl] || strlen(nm) > 64 ||
		    strspn(nm + pl, "0123456789") != strlen(nm + pl))
			continue;
		if (*n == cap) {
			cap *= 2;
			pb_set *ns = realloc(*sets, (size_t)cap * sizeof *ns);
			if (!ns) {
				closedir(dh);
				return np_fail_file(err, NP_ERR_NOMEM, dir, "out of memory");
			}
			*sets = ns;
		}
		char sub[PATH_BUF];
		snprintf(sub, sizeof sub, "%.*s/%.64s", PATH_BUF - 80, dir, nm);
		pb_set_paths(&(*sets)[(*n)++], sub);
	}
	closedir(dh);
	if (*n == 0)
		return np_fail_file(err, NP_ERR_IO, dir, "no input_0.pb and no "
		                    "test_data_set_N folders");
	qsort(*sets, (size_t)*n, sizeof **sets, cmp_set_number);
	return NP_OK;
}

static np_status pb_read_set(np_model *m, pb_set *s, np_error *err)
{
	np_status st = pb_read(m, s->xpath, &s->x, err);
	if (st == NP_OK && s->ypath[0])
		st = pb_read(m, s->ypath, &s->y, err);
	return st;
}

/* The payload holds nelem elements (do not trust the reader blindly). */
static bool pb_payload_ok(const np_tensor *t)
{
	size_t es = np_dtype_size(t->dtype);
	return es && t->nelem >= 0 && (t->nelem == 0 || t->data) &&
	       t->nbytes / es >= (uint64_t)t->nelem;
}

/* Every set's input agrees with the first in per-example dims and type,
 * and every set has labels or none has. */
static np_status pb_check_sets(const pb_set *s, int n, np_error *err)
{
	char a[160], b[160];
	for (int i = 0; i < n; i++) {
		const np_tensor *x = s[i].x;
		elem k;
		if (!pb_float_kind(x->dtype, &k) || !pb_payload_ok(x))
			return np_fail_file(err, NP_ERR_UNSUPPORTED, s[i].xpath,
			                    "input tensor of type %s is not supported "
			                    "(float, double or uint8)",
			                    np_dtype_name(x->dtype));
		if (x->rank < 2 || x->rank > NP_RT_MAX_RANK)
			return np_fail_file(err, NP_ERR_INVALID, s[i].xpath,
			                    "input tensor needs a batch dimension and "
			                    "at most %d dims, it has rank %d",
			                    NP_RT_MAX_RANK, x->rank);
		if (x->rank != s[0].x->rank || x->dtype != s[0].x->dtype ||
		    memcmp(x->dims + 1, s[0].x->dims + 1,
		           (size_t)(x->rank - 1) * sizeof(int64_t))) {
			fmt_dims(a, sizeof a, x->dims + 1, x->rank - 1);
			fmt_dims(b, sizeof b, s[0].x->dims + 1, s[0].x->rank - 1);
			return np_fail_file(err, NP_ERR_INVALID, s[i].xpath,
			                    "examples are %s %s, those of the first set "
			                    "are %s %s", np_dtype_name(x->dtype), a,
			                    np_dtype_name(s[0].x->dtype), b);
		}
		if (!s[i].y != !s[0].y)
			return np_fail_file(err, NP_ERR_INVALID,
			                    s[i].y ? s[i].ypath : s[0].ypath,
			                    "some test data sets have output_0.pb and "
			                    "others not");
		if (s[i].y && !pb_payload_ok(s[i].y))
			return np_fail_file(err, NP_ERR_FORMAT, s[i].ypath,
			                    "tensor payload does not match its shape");
	}
	return NP_OK;
}

/* Labels of one set: ints [n] / [n,1], or argmax of float [n, classes]. */
static np_status pb_labels(const pb_set *s, int32_t *y, np_error *err)
{
	const np_tensor *t = s->y;
	int64_t n = s->x->dims[0];
	const char *path = s->ypath;
	elem k;
	bool ints = pb_int_kind(t->dtype, &k);
	bool floats = !ints && (t->dtype == NP_FLOAT || t->dtype == NP_DOUBLE);
	int64_t per = t->rank >= 1 && t->dims[0] == n && n > 0 ? t->nelem / n : -1;
	if (ints ? (t->rank < 1 || t->rank > 2 || per != 1)
	         : (!floats || t->rank != 2 || per < 2)) {
		char a[160];
		fmt_dims(a, sizeof a, t->dims, t->rank);
		return np_fail_file(err, NP_ERR_INVALID, path,
		                    "cannot take labels for %lld examples from a %s "
		                    "tensor %s (ints [n] or float scores [n,classes])",
		                    (long long)n, np_dtype_name(t->dtype), a);
	}
	const uint8_t *p = t->data;
	for (int64_t i = 0; i < n; i++) {
		int64_t v = 0;
		if (ints) {
			v = elem_int(p + i * elem_size(k), k);
		} else {
			elem fk = t->dtype == NP_FLOAT ? EL_F32LE : EL_F64LE;
			double best = -INFINITY;
			for (int64_t c = 0; c < per; c++) {
				double score = elem_float(p + (i * per + c) * elem_size(fk), fk);
				if (score > best || c == 0) {
					best = score;
					v = c;
				}
			}
		}
		if (v < 0 || v >= INT32_MAX)
			return np_fail_file(err, NP_ERR_FORMAT, path,
			                    "label %lld at example %lld is not a class "
			                    "index", (long long)v, (long long)i);
		y[i] = (int32_t)v;
	}
	return NP_OK;
}

static np_status pb_concat(const pb_set *s, int nset, float scale,
                           int64_t limit, np_dataset *d, np_error *err)
{
	np_status st = set_example_dims(d, s[0].x->dims + 1, s[0].x->rank - 1,
	                                s[0].xpath, err);
	if (st != NP_OK)
		return st;
	int64_t total = 0, xn;
	size_t xbytes;
	for (int i = 0; i < nset; i++)
		if (!np_add_i64(total, s[i].x->dims[0], &total))
			return np_fail_file(err, NP_ERR_FORMAT, s[i].xpath,
			                    "too many examples");
	int64_t keep = take(total, limit);
	if (!np_mul_i64(keep, d->example_size, &xn) ||
	    !np_mul_size((size_t)xn, sizeof *d->x, &xbytes))
		return np_fail_file(err, NP_ERR_FORMAT, s[0].xpath,
		                    "too many examples");
	d->x = malloc(xbytes ? xbytes : 1);
	if (s[0].y)
		d->y = malloc((size_t)keep * sizeof *d->y);
	if (!d->x || (s[0].y && !d->y))
		return np_fail_file(err, NP_ERR_NOMEM, s[0].xpath, "out of memory");
	int32_t *ys = NULL;
	for (int i = 0; i < nset && d->n < keep; i++) {
		elem k = EL_F32LE;
		pb_float_kind(s[i].x->dtype, &k);   /* checked already */
		int64_t m = take(s[i].x->dims[0], keep - d->n);
		float *dst = d->x + d->n * d->example_size;
		decode_floats(s[i].x->data, k, m * d->example_size,
		              k == EL_U8 ? scale : 1.0f, dst);
		for (int64_t j = 0; k != EL_U8 && j < m * d->example_size; j++)
			if (!isfinite(dst[j]))
				return np_fail_file(err, NP_ERR_FORMAT, s[i].xpath,
				                    "example %lld has %s (value %lld of "
				                    "the example)",
				                    (long long)(j / d->example_size),
				                    isnan(dst[j]) ? "a NaN" : "an infinity",
				                    (long long)(j % d->example_size));
		if (s[i].y) {
			ys = malloc((size_t)(s[i].x->dims[0] ? s[i].x->dims[0] : 1) *
			            sizeof *ys);
			if (!ys)
				return np_fail_file(err, NP_ERR_NOMEM, s[i].ypath,
				                    "out of memory");
			st = pb_labels(&s[i], ys, err);
			if (st == NP_OK)
				memcpy(d->y + d->n, ys, (size_t)m * sizeof *ys);
			free(ys);
			if (st != NP_OK)
				return st;
		}
		d->n += m;
	}
	return NP_OK;
}

static np_status load_pb(const char *dir, float scale, int64_t limit,
                         np_dataset *d, np_error *err)
{
	pb_set *sets;
	int n;
	np_status st = pb_list_sets(dir, &sets, &n, err);
	if (st != NP_OK) {
		free(sets);
		return st;
	}
	np_model *m = np_model_new();
	for (int i = 0; i < n && st == NP_OK; i++)
		st = pb_read_set(m, &sets[i], err);
	if (st == NP_OK)
		st = pb_check_sets(sets, n, err);
	if (st == NP_OK)
		st = pb_concat(sets, n, scale, limit, d, err);
	np_model_free(m);
	free(sets);
	return st;
}

/* ---------------------------------------------------------- preprocessing */

/* Channels for normalisation: the first per-example dim of [C,H,W]
 * examples, one channel otherwise. */
static int64_t channels(const np_dataset *d)
{
	return d->rank >= 3 ? d->dims[0] : 1;
}

static double opt_mean(const np_data_opts *o, int64_t c)
{
	return o->n_mean == 0 ? 0.0 : o->mean[o->n_mean == 1 ? 0 : c];
}

static double opt_std(const np_data_opts *o, int64_t c)
{
	return o->n_std == 0 ? 1.0 : o->std[o->n_std == 1 ? 0 : c];
}

static bool opts_normalise(const np_data_opts *o)
{
	return o && (o->n_mean > 0 || o->n_std > 0);
}

/* In float, as torchvision's Normalize; gather's fill uses the same. */
static float norm_value(float v, const np_data_opts *o, int64_t c)
{
	return (v - (float)opt_mean(o, c)) / (float)opt_std(o, c);
}

static np_status check_opts(const np_data_opts *o, np_error *err)
{
	if (!o)
		return NP_OK;
	if (!(o->scale >= 0) || isinf(o->scale))
		return np_fail(err, NP_ERR_USAGE, "data scale %g is not a positive "
		               "number", o->scale);
	if (o->n_mean < 0 || o->n_mean > NP_DATA_MAX_CHANNELS ||
	    o->n_std < 0 || o->n_std > NP_DATA_MAX_CHANNELS)
		return np_fail(err, NP_ERR_USAGE, "mean/std take 1 to %d values",
		               NP_DATA_MAX_CHANNELS);
	for (int c = 0; c < o->n_std; c++)
		if (!(o->std[c] > 0) || isinf(o->std[c]))
			return np_fail(err, NP_ERR_USAGE, "std value %g is not a "
			               "positive number", o->std[c]);
	for (int c = 0; c < o->n_mean; c++)
		if (!isfinite(o->mean[c]))
			return np_fail(err, NP_ERR_USAGE, "mean value %g is not a "
			               "finite number", o->mean[c]);
	if (o->limit < 0)
		return np_fail(err, NP_ERR_USAGE, "data limit %lld is negative",
		               (long long)o->limit);
	if (o->resize < 0 || o->crop < 0 || o->workers < 0)
		return np_fail(err, NP_ERR_USAGE, "resize, crop and workers are not "
		               "negative");
	return NP_OK;
}

/* (x - mean[c]) / std[c] over every example. */
static np_status normalise(np_dataset *d, const np_data_opts *o,
                           const char *file, np_error *err)
{
	if (!opts_normalise(o))
		return NP_OK;
	int64_t nc = channels(d);
	if ((o->n_mean > 1 && o->n_mean != nc) || (o->n_std > 1 && o->n_std != nc)) {
		char a[160];
		fmt_dims(a, sizeof a, d->dims, d->rank);
		return np_fail_file(err, NP_ERR_USAGE, file,
		                    "%d mean and %d std values given, but the "
		                    "examples %s have %lld channel%s", o->n_mean,
		                    o->n_std, a, (long long)nc, nc == 1 ? "" : "s");
	}
	int64_t plane = d->example_size / nc;
	for (int64_t c = 0; c < nc; c++) {
		float mean = (float)opt_mean(o, c), sd = (float)opt_std(o, c);
		for (int64_t i = 0; i < d->n; i++) {
			float *p = d->x + i * d->example_size + c * plane;
			for (int64_t j = 0; j < plane; j++)
				p[j] = (p[j] - mean) / sd;
		}
	}
	return NP_OK;
}

/* Labels are below INT32_MAX (the readers refuse larger ones), so
 * max + 1 fits. */
static void count_classes(np_dataset *d)
{
	int32_t max = -1;
	for (int64_t i = 0; d->y && i < d->n; i++)
		if (d->y[i] > max)
			max = d->y[i];
	d->n_classes = d->y ? max + 1 : 0;
}

/* ----------------------------------------------------------------- specs */

/* npy:X[,Y] as the other kinds; npy:NAME=FILE,...[,Y]: an item whose
 * text before its first '=' is a non-empty name without '/' names a
 * model input (write ./a=b.npy for a file with '=' in its name); the
 * labels, unnamed, come last. */
static np_status parse_npy(const char *spec, const char *rest, spec_parts *sp,
                           np_error *err)
{
	const char *p = rest;
	int unnamed = 0;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		size_t nl = eq ? (size_t)(eq - p) : 0;
		bool named = eq && nl > 0 && !memchr(p, '/', nl);
		size_t fl = named ? len - nl - 1 : len;
		if (fl == 0 || fl >= PATH_BUF || nl >= NP_DATA_NAME)
			return np_fail(err, NP_ERR_USAGE, "bad data spec '%s': expected "
			               "npy:FILE[,LABELS] or npy:NAME=FILE,...[,LABELS]",
			               spec);
		if (named) {
			if (unnamed)
				return np_fail(err, NP_ERR_USAGE, "bad data spec '%s': with "
				               "named arrays, the one unnamed array (the "
				               "labels) comes last", spec);
			if (sp->n_named == NP_DATA_MAX_ARRAYS)
				return np_fail(err, NP_ERR_USAGE, "bad data spec '%s': more "
				               "than %d named arrays", spec,
				               NP_DATA_MAX_ARRAYS);
			char *name = sp->names[sp->n_named];
			memcpy(name, p, nl);
			name[nl] = '\0';
			for (int i = 0; i < sp->n_named; i++)
				if (!strcmp(sp->names[i], name))
					return np_fail(err, NP_ERR_USAGE, "bad data spec '%s': "
					               "input '%s' is named twice", spec, name);
			memcpy(sp->files[sp->n_named], eq + 1, fl);
			sp->n_named++;
		} else {
			if (unnamed == 2 || (unnamed == 1 && sp->n_named))
				return np_fail(err, NP_ERR_USAGE, "bad data spec '%s': "
				               "expected npy:FILE[,LABELS] or "
				               "npy:NAME=FILE,...[,LABELS]", spec);
			memcpy(unnamed || sp->n_named ? sp->b : sp->a, p, fl);
			unnamed++;
		}
		if (!comma)
			break;
		p = comma + 1;
	}
	if (sp->n_named)
		snprintf(sp->a, sizeof sp->a, "%s", sp->files[0]);
	return NP_OK;
}

static np_status parse_spec(const char *spec, spec_parts *sp, np_error *err)
{
	static const char *kinds[] = {"idx", "cifar10", "npy", "pb", "folder"};
	static const bool two[] = {true, false, true, false, false};
	enum { n_kinds = sizeof kinds / sizeof kinds[0] };
	memset(sp, 0, sizeof *sp);
	const char *colon = spec ? strchr(spec, ':') : NULL;
	int k = -1;
	for (int i = 0; colon && i < n_kinds; i++)
		if ((size_t)(colon - spec) == strlen(kinds[i]) &&
		    !strncmp(spec, kinds[i], strlen(kinds[i])))
			k = i;
	if (k < 0)
		return np_fail(err, NP_ERR_USAGE, "unknown data spec '%s': use idx:, "
		               "cifar10:, npy:, pb: or folder:", spec ? spec : "");
	snprintf(sp->kind, sizeof sp->kind, "%s", kinds[k]);
	if (!strcmp(kinds[k], "npy"))
		return parse_npy(spec, colon + 1, sp, err);
	const char *rest = colon + 1, *comma = strchr(rest, ',');
	size_t la = comma ? (size_t)(comma - rest) : strlen(rest);
	if (la == 0 || la >= PATH_BUF || (comma && (!comma[1] ||
	    strchr(comma + 1, ',') || strlen(comma + 1) >= PATH_BUF)))
		return np_fail(err, NP_ERR_USAGE, "bad data spec '%s': expected "
		               "%s:%s", spec, kinds[k], two[k] ? "FILE[,LABELS]" :
		               "DIR");
	if (comma && !two[k])
		return np_fail(err, NP_ERR_USAGE, "bad data spec '%s': %s: takes one "
		               "folder, no comma", spec, kinds[k]);
	memcpy(sp->a, rest, la);
	if (comma)
		snprintf(sp->b, sizeof sp->b, "%s", comma + 1);
	return NP_OK;
}

np_status np_data_files(const char *spec,
                        void (*add)(void *ctx, const char *path), void *ctx,
                        np_error *err)
{
	spec_parts *sp = malloc(sizeof *sp);
	if (!sp)
		return np_fail(err, NP_ERR_NOMEM, "out of memory");
	np_status st = parse_spec(spec, sp, err);
	if (st != NP_OK) {
		free(sp);
		return st;
	}
	if (strcmp(sp->kind, "cifar10") == 0) {
		char files[5][PATH_BUF];
		int nf = cifar_files(sp->a, files);
		for (int i = 0; i < nf; i++)
			add(ctx, files[i]);
	} else if (strcmp(sp->kind, "folder") == 0) {
		st = np_folder_files(sp->a, add, ctx, err);
	} else if (strcmp(sp->kind, "pb") == 0) {
		pb_set *sets = NULL;
		int n = 0;
		st = pb_list_sets(sp->a, &sets, &n, err);
		for (int i = 0; st == NP_OK && i < n; i++) {
			add(ctx, sets[i].xpath);
			if (sets[i].ypath[0])
				add(ctx, sets[i].ypath);
		}
		free(sets);
	} else {
		for (int i = 0; i < sp->n_named; i++)
			add(ctx, sp->files[i]);
		if (!sp->n_named)
			add(ctx, sp->a);
		if (sp->b[0])
			add(ctx, sp->b);
	}
	free(sp);
	return st;
}

np_status np_data_load(const char *spec, const np_data_opts *opts,
                       np_dataset *out, np_error *err)
{
	memset(out, 0, sizeof *out);
	spec_parts *sp = malloc(sizeof *sp);
	if (!sp)
		return np_fail(err, NP_ERR_NOMEM, "out of memory");
	np_status st = parse_spec(spec, sp, err);
	if (st == NP_OK)
		st = check_opts(opts, err);
	float scale = opts && opts->scale > 0 ? (float)opts->scale : 1.0f / 255;
	int64_t limit = opts ? opts->limit : 0;
	const char *ypath = sp->b[0] ? sp->b : NULL;
	if (st == NP_OK && !strcmp(sp->kind, "idx"))
		st = load_idx(sp->a, ypath, scale, limit, out, err);
	else if (st == NP_OK && !strcmp(sp->kind, "cifar10"))
		st = load_cifar(sp->a, scale, limit, out, err);
	else if (st == NP_OK && !strcmp(sp->kind, "npy"))
		st = load_npy(sp, scale, limit, out, err);
	else if (st == NP_OK && !strcmp(sp->kind, "folder"))
		st = np_folder_load(sp->a, opts, out, err);
	else if (st == NP_OK)
		st = load_pb(sp->a, scale, limit, out, err);
	if (st == NP_OK && out->n == 0)
		st = np_fail_file(err, NP_ERR_INVALID, sp->a, "the data set holds "
		                  "no examples");
	/* Arrays are fed as stored: preprocessing is for float examples. */
	if (st == NP_OK && !out->x && !out->src &&
	    (opts_normalise(opts) || (opts && opts->scale > 0)))
		st = np_fail_file(err, NP_ERR_USAGE, sp->a, "--mean, --std and "
		                  "--scale apply to float examples (an unnamed "
		                  "float or uint8 array); int64 and named arrays "
		                  "are fed as stored");
	/* A folder normalises as it decodes, and knows its classes. */
	if (st == NP_OK && !out->src && out->x)
		st = normalise(out, opts, sp->a, err);
	if (st == NP_OK) {
		if (!out->src)
			count_classes(out);
		out->spec = strdup(spec);
		if (!out->spec)
			st = np_fail(err, NP_ERR_NOMEM, "out of memory");
	}
	free(sp);
	if (st != NP_OK)
		np_dataset_free(out);
	return st;
}

void np_dataset_free(np_dataset *d)
{
	if (!d)
		return;
	free(d->spec);
	free(d->x);
	free(d->y);
	free(d->skip_note);
	for (int i = 0; i < d->n_arrays; i++) {
		free(d->arrays[i].name);
		free(d->arrays[i].file);
		free(d->arrays[i].data);
	}
	np_source_free(d->src);
	memset(d, 0, sizeof *d);
}

/* ---------------------------------------------------------------- checks */

/* The file a dataset's errors name: the examples (which == 0) or the
 * labels (which == 1) part of its spec. */
static void spec_file(const np_dataset *d, int which, char *buf, size_t size)
{
	const char *s = d->spec ? d->spec : "";
	const char *p = strchr(s, ':');
	p = p ? p + 1 : s;
	const char *comma = strchr(p, ','), *last = strrchr(p, ',');
	if (which == 1 && last) {   /* the labels come last */
		snprintf(buf, size, "%s", last + 1);
		return;
	}
	size_t len = comma ? (size_t)(comma - p) : strlen(p);
	snprintf(buf, size, "%.*s", (int)(len < size ? len : size - 1), p);
}

np_status np_dataset_check_input(const np_dataset *d, const np_value *input,
                                 np_error *err)
{
	char file[PATH_BUF], a[160], b[256];
	spec_file(d, 0, file, sizeof file);
	if (input->has_type && input->dtype != NP_FLOAT)
		return np_fail_file(err, NP_ERR_UNSUPPORTED, file,
		                    "the model input '%s' is %s; these examples are "
		                    "float (give token ids as an int64 or int32 "
		                    "array)", input->name, np_dtype_name(input->dtype));
	if (!input->has_shape)
		return NP_OK;
	bool match = input->rank == d->rank + 1;
	for (int i = 1; match && i < input->rank; i++)
		if (input->dims[i].value >= 0 && input->dims[i].value != d->dims[i - 1])
			match = false;
	if (match)
		return NP_OK;
	fmt_dims(a, sizeof a, d->dims, d->rank);
	size_t len = (size_t)snprintf(b, sizeof b, "[");
	for (int i = 0; i < input->rank && len < sizeof b; i++) {
		const np_dim *dm = &input->dims[i];
		const char *sep = i ? "," : "";
		if (dm->value >= 0)
			len += (size_t)snprintf(b + len, sizeof b - len, "%s%lld", sep,
			                        (long long)dm->value);
		else
			len += (size_t)snprintf(b + len, sizeof b - len, "%s%s", sep,
			                        dm->param ? dm->param : i ? "?" : "N");
	}
	if (len < sizeof b)
		snprintf(b + len, sizeof b - len, "]");
	return np_fail_file(err, NP_ERR_INVALID, file, "examples are %s, the "
	                    "model input '%s' expects %s", a, input->name, b);
}

np_status np_dataset_check_labels(const np_dataset *d, int64_t classes,
                                  np_error *err)
{
	for (int64_t i = 0; d->y && i < d->n; i++)
		if (d->y[i] >= classes) {
			char file[PATH_BUF];
			if (d->src) {
				np_source_class_dir(d->src, d->y[i], file, sizeof file);
				return np_fail_file(err, NP_ERR_INVALID, file, "class %d (by "
				                    "sorted sub-folder, or --classes) is out "
				                    "of range for the model's %lld classes",
				                    d->y[i], (long long)classes);
			}
			spec_file(d, 1, file, sizeof file);
			return np_fail_file(err, NP_ERR_INVALID, file,
			                    "label %d at example %lld is out of range for "
			                    "%lld classes", d->y[i], (long long)i,
			                    (long long)classes);
		}
	return NP_OK;
}

/* "[N,seq]": a model input's declared dims. */
static void fmt_value_dims(char *b, size_t size, const np_value *v)
{
	size_t len = (size_t)snprintf(b, size, "[");
	for (int i = 0; i < v->rank && len < size; i++) {
		const np_dim *dm = &v->dims[i];
		const char *sep = i ? "," : "";
		if (dm->value >= 0)
			len += (size_t)snprintf(b + len, size - len, "%s%lld", sep,
			                        (long long)dm->value);
		else
			len += (size_t)snprintf(b + len, size - len, "%s%s", sep,
			                        dm->param ? dm->param : i ? "?" : "N");
	}
	if (len < size)
		snprintf(b + len, size - len, "]");
}

static bool is_model_input(const np_value *v)
{
	return v && v->is_input && !v->init;
}

/* "'a', 'b'": the model's inputs, for messages. */
static void fmt_inputs(char *b, size_t size, const np_graph *g)
{
	size_t len = 0;
	b[0] = '\0';
	for (int i = 0; i < g->n_inputs && len < size; i++)
		if (is_model_input(g->inputs[i]))
			len += (size_t)snprintf(b + len, size - len, "%s'%s'",
			                        len ? ", " : "", g->inputs[i]->name);
}

/* An array's dtype and per-example shape against its input's. */
static np_status check_array(const np_data_array *a, const np_value *v,
                             np_error *err)
{
	char want[256], got[160];
	if (v->has_type && v->dtype != NP_FLOAT && v->dtype != NP_INT64)
		return np_fail_file(err, NP_ERR_UNSUPPORTED, a->file, "the model "
		                    "input '%s' is %s; arrays feed float and int64 "
		                    "inputs", v->name, np_dtype_name(v->dtype));
	if (v->has_type && v->dtype != a->dtype)
		return np_fail_file(err, NP_ERR_INVALID, a->file, "%s array for "
		                    "the model input '%s', which is %s%s",
		                    a->dtype == NP_FLOAT ? "a float" : "an int64", v->name,
		                    np_dtype_name(v->dtype), v->dtype == NP_INT64
		                    ? " (save it as int64 or int32)" : "");
	if (!v->has_shape)
		return NP_OK;
	bool match = v->rank == a->rank + 1;
	for (int i = 1; match && i < v->rank; i++)
		if (v->dims[i].value >= 0 && v->dims[i].value != a->dims[i - 1])
			match = false;
	if (match)
		return NP_OK;
	fmt_dims(got, sizeof got, a->dims, a->rank);
	fmt_value_dims(want, sizeof want, v);
	return np_fail_file(err, NP_ERR_INVALID, a->file, "examples are %s, the "
	                    "model input '%s' expects %s", got, v->name, want);
}

/* Ids of an int64 array that a Gather-like op (NP_OPF_INDEX_ROWS) reads
 * as rows of a table whose size is known: all in [0, rows). */
static np_status check_ids(const np_dataset *d, const np_data_array *a,
                           const np_value *v, np_error *err)
{
	for (int u = 0; u < v->n_uses; u++) {
		const np_node *n = v->uses[u].node;
		if (v->uses[u].index != 1 || !n || n->n_inputs < 2 ||
		    !(np_node_flags(n) & NP_OPF_INDEX_ROWS) || !n->inputs[0])
			continue;
		const np_value *t = n->inputs[0];
		int rank = t->init ? t->init->rank : t->has_shape ? t->rank : 0;
		int64_t axis = np_node_attr_int(n, "axis", 0);
		if (axis < 0)
			axis += rank;
		if (axis < 0 || axis >= rank)
			continue;
		int64_t rows = t->init ? t->init->dims[axis] : t->dims[axis].value;
		if (rows <= 0)
			continue;   /* unknown: the runtime's Gather checks */
		const int64_t *id = (const int64_t *)a->data + d->first * a->example_size;
		for (int64_t i = 0; i < d->n * a->example_size; i++)
			if (id[i] < 0 || id[i] >= rows)
				return np_fail_file(err, NP_ERR_INVALID, a->file, "id %lld "
				                    "(example %lld) is outside the table "
				                    "'%s' of %lld rows that node '%s' reads "
				                    "with the input '%s'; ids must be in "
				                    "[0, %lld)%s", (long long)id[i],
				                    (long long)(i / a->example_size),
				                    t->name, (long long)rows,
				                    n->name ? n->name : "?", v->name,
				                    (long long)rows, id[i] < 0 ? " (negative "
				                    "ids are refused, as PyTorch's Embedding "
				                    "refuses them)" : "");
	}
	return NP_OK;
}

np_status np_dataset_check_model(const np_dataset *d, const np_model *m,
                                 np_error *err)
{
	const np_graph *g = m->graph;
	const np_value *single = NULL;
	int n_in = 0;
	char names[512], file[PATH_BUF];
	for (int i = 0; i < g->n_inputs; i++)
		if (is_model_input(g->inputs[i])) {
			single = g->inputs[i];
			n_in++;
		}
	fmt_inputs(names, sizeof names, g);
	if (n_in == 0)
		return np_fail(err, NP_ERR_INVALID, "the model has no input");
	bool unnamed = d->x || d->src;
	for (int i = 0; i < d->n_arrays; i++)
		unnamed |= !d->arrays[i].name;
	if (unnamed && n_in > 1) {
		spec_file(d, 0, file, sizeof file);
		return np_fail_file(err, NP_ERR_INVALID, file, "the model has %d "
		                    "inputs (%s): name an array for each, "
		                    "npy:NAME=FILE,...[,LABELS]", n_in, names);
	}
	for (int i = 0; i < d->n_arrays; i++) {
		const np_data_array *a = &d->arrays[i];
		if (a->name && !is_model_input(np_graph_find(g, a->name)))
			return np_fail_file(err, NP_ERR_INVALID, a->file, "names '%s', "
			                    "which is not an input of the model (its "
			                    "inputs: %s)", a->name, names);
	}
	for (int i = 0; i < g->n_inputs && !unnamed; i++) {
		const np_value *v = g->inputs[i];
		bool fed = false;
		for (int k = 0; is_model_input(v) && k < d->n_arrays; k++)
			fed |= !strcmp(d->arrays[k].name, v->name);
		if (is_model_input(v) && !fed) {
			char want[256];
			fmt_value_dims(want, sizeof want, v);
			return np_fail(err, NP_ERR_INVALID, "no array of the data "
			               "names the model input '%s' (%s %s): add "
			               "%s=FILE to the npy: spec", v->name, v->has_type ?
			               np_dtype_name(v->dtype) : "?", want, v->name);
		}
	}
	if (d->x || d->src) {
		np_status st = np_dataset_check_input(d, single, err);
		if (st != NP_OK)
			return st;
	}
	for (int i = 0; i < d->n_arrays; i++) {
		const np_data_array *a = &d->arrays[i];
		const np_value *v = a->name ? np_graph_find(g, a->name) : single;
		np_status st = check_array(a, v, err);
		if (st == NP_OK && a->dtype == NP_INT64)
			st = check_ids(d, a, v, err);
		if (st != NP_OK)
			return st;
	}
	return NP_OK;
}

np_dataset np_dataset_slice(const np_dataset *d, int64_t first, int64_t count)
{
	np_dataset v = *d;
	if (first < 0)
		first = 0;
	if (first > d->n)
		first = d->n;
	if (count < 0 || count > d->n - first)
		count = d->n - first;
	v.n = count;
	v.x = d->x ? d->x + first * d->example_size : NULL;
	v.y = d->y ? d->y + first : NULL;
	v.first = d->first + first;
	return v;
}

/* ------------------------------------------------------------------- RNG */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

void np_rng_seed(np_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

uint64_t np_rng_next(np_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

uint64_t np_rng_below(np_rng *r, uint64_t n)
{
	if (n <= 1)
		return 0;
	/* Reject the lowest 2^64 mod n values so every residue is equally
	 * likely. */
	uint64_t threshold = (0 - n) % n;
	for (;;) {
		uint64_t v = np_rng_next(r);
		if (v >= threshold)
			return v % n;
	}
}

void np_rng_permutation(np_rng *r, int64_t *perm, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		perm[i] = i;
	for (int64_t i = n - 1; i > 0; i--) {
		int64_t j = (int64_t)np_rng_below(r, (uint64_t)i + 1);
		int64_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
}

/* ---------------------------------------------------------------- gather */

/* One example flipped and/or shifted: out(h, w) = in(h + dy, w' + dx),
 * w' the mirrored column when flipping; outside the image: the
 * normalised 0 pixel of the plane's channel. */
static void augment_one(const np_dataset *d, const float *src, float *dst,
                        bool flip, int dy, int dx, const np_data_opts *o)
{
	int64_t h = d->rank >= 2 ? d->dims[d->rank - 2] : 1;
	int64_t w = d->dims[d->rank - 1];
	int64_t planes = d->example_size / (h * w), nc = channels(d);
	int64_t per_c = planes / nc > 0 ? planes / nc : 1;
	for (int64_t p = 0; p < planes; p++) {
		int64_t c = p / per_c < nc ? p / per_c : nc - 1;
		float fill = opts_normalise(o) ? norm_value(0.0f, o, c) : 0.0f;
		const float *in = src + p * h * w;
		float *out = dst + p * h * w;
		for (int64_t i = 0; i < h; i++) {
			int64_t si = i + dy;
			for (int64_t j = 0; j < w; j++) {
				int64_t sj = (flip ? w - 1 - j : j) + dx;
				out[i * w + j] = si >= 0 && si < h && sj >= 0 && sj < w
					? in[si * w + sj] : fill;
			}
		}
	}
}

void np_augment_example(const np_dataset *d, const float *src, float *dst,
                        const np_augment *aug, np_rng *rng,
                        const np_data_opts *opts)
{
	int s = aug->shift > 0 ? aug->shift : 0;
	/* Draw in a fixed order so runs are reproducible. */
	bool flip = aug->flip && np_rng_below(rng, 2);
	int dy = d->rank >= 2 && s ? (int)np_rng_below(rng, 2 * (uint64_t)s + 1) - s : 0;
	int dx = s ? (int)np_rng_below(rng, 2 * (uint64_t)s + 1) - s : 0;
	augment_one(d, src, dst, flip, dy, dx, opts);
}

void np_dataset_gather(const np_dataset *d, const int64_t *idx, int64_t n,
                       float *x, int32_t *y, const np_augment *aug,
                       np_rng *rng, const np_data_opts *opts)
{
	int64_t es = d->example_size;
	bool augment = aug && rng && (aug->flip || aug->shift > 0);
	for (int64_t k = 0; k < n; k++) {
		if (y && d->y)
			y[k] = d->y[idx[k]];
		if (!d->x)   /* every input is in an array */
			continue;
		const float *src = d->x + idx[k] * es;
		if (!augment)
			memcpy(x + k * es, src, (size_t)es * sizeof *x);
		else
			np_augment_example(d, src, x + k * es, aug, rng, opts);
	}
}
