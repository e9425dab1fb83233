/* test_data.c - dataset loaders (runtime/data.c): small IDX (raw, gzip),
 * CIFAR-10, npy and TensorProto files written to a temporary folder;
 * values, preprocessing, limit, slices, the RNG, augmentation, and the
 * error each broken file gets.  Then the real Fashion-MNIST when present. */
#include <dirent.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "data.h"
#include "tap.h"

static char tmpdir[64];

/* tmpdir/NAME, from a ring of buffers so a few can be alive at once. */
__attribute__((format(printf, 1, 2)))
static const char *P(const char *fmt, ...)
{
	static char ring[8][1024];
	static int next;
	char *buf = ring[next++ % 8];
	int len = snprintf(buf, sizeof ring[0], "%s/", tmpdir);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + len, sizeof ring[0] - (size_t)len, fmt, ap);
	va_end(ap);
	return buf;
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len) {
		perror(path);
		exit(99);
	}
	fclose(f);
}

static void write_gz(const char *path, const void *data, size_t len)
{
	gzFile g = gzopen(path, "wb");
	if (!g || gzwrite(g, data, (unsigned)len) != (int)len) {
		perror(path);
		exit(99);
	}
	gzclose(g);
}

static void rm_rf(const char *path)
{
	DIR *d = opendir(path);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char sub[1024];
			snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
			rm_rf(sub);
		}
		closedir(d);
		rmdir(path);
	} else {
		unlink(path);
	}
}

/* ------------------------------------------------------------ builders */

typedef struct buf {
	uint8_t *p;
	size_t len, cap;
} buf;

static void put(buf *b, const void *data, size_t len)
{
	if (b->len + len > b->cap) {
		b->cap = (b->len + len) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			exit(99);
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void put_be32(buf *b, uint32_t v)
{
	uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
	                (uint8_t)v};
	put(b, x, 4);
}

/* IDX: magic 0 0 TYPE NDIM, dims big endian, then data. */
static void idx_header(buf *b, int type, int ndim, const uint32_t *dims)
{
	put_be32(b, (uint32_t)(type << 8 | ndim));
	for (int i = 0; i < ndim; i++)
		put_be32(b, dims[i]);
}

#define NI 3
#define NR 2
#define NC 3
static uint8_t pixel(int i, int r, int c)
{
	return (uint8_t)(i * 10 + r * 3 + c);
}
static const uint8_t labels3[NI] = {2, 0, 1};

static void make_idx_files(void)
{
	buf im = {0}, lb = {0};
	uint32_t dims[3] = {NI, NR, NC};
	idx_header(&im, 0x08, 3, dims);
	for (int i = 0; i < NI; i++)
		for (int r = 0; r < NR; r++)
			for (int c = 0; c < NC; c++) {
				uint8_t v = pixel(i, r, c);
				put(&im, &v, 1);
			}
	uint32_t ld[1] = {NI};
	idx_header(&lb, 0x08, 1, ld);
	put(&lb, labels3, NI);
	write_file(P("img.idx"), im.p, im.len);
	write_file(P("lab.idx"), lb.p, lb.len);
	write_gz(P("img.idx.gz"), im.p, im.len);
	write_gz(P("lab.idx.gz"), lb.p, lb.len);
	/* Float32 IDX (0x0D): values taken as they are. */
	buf fl = {0};
	uint32_t fd[2] = {2, 2};
	idx_header(&fl, 0x0D, 2, fd);
	float fv[4] = {1.5f, -2.0f, 0.25f, 300.0f};
	for (int i = 0; i < 4; i++) {
		uint32_t bits;
		memcpy(&bits, &fv[i], 4);
		put_be32(&fl, bits);
	}
	write_file(P("f32.idx"), fl.p, fl.len);

	/* Hostile: 2^31 images of 28x28 in a 100-byte file. */
	buf h = {0};
	uint32_t hd[3] = {0x80000000u, 28, 28};
	idx_header(&h, 0x08, 3, hd);
	while (h.len < 100) {
		uint8_t z = 0;
		put(&h, &z, 1);
	}
	write_file(P("huge.idx"), h.p, h.len);
	write_gz(P("huge.idx.gz"), h.p, h.len);
	/* A gzip stream cut in the middle. */
	buf g = {0};
	uint32_t gd[3] = {500, 28, 28};
	idx_header(&g, 0x08, 3, gd);
	for (int i = 0; i < 500 * 784; i++) {
		uint8_t v = (uint8_t)((i * 2654435761u) >> 24);
		put(&g, &v, 1);
	}
	write_gz(P("whole.idx.gz"), g.p, g.len);
	FILE *f = fopen(P("whole.idx.gz"), "rb");
	uint8_t cut[4096];
	size_t n = fread(cut, 1, sizeof cut, f);
	fclose(f);
	write_file(P("cut.idx.gz"), cut, n);
	/* Flip a byte in the middle: inflate fails or the CRC does. */
	f = fopen(P("whole.idx.gz"), "rb");
	uint8_t *all = malloc(1 << 20);
	n = fread(all, 1, 1 << 20, f);
	fclose(f);
	all[n / 2] ^= 0x55;
	write_file(P("corrupt.idx.gz"), all, n);
	/* A wrong CRC only: inflates fine, fails the stream check. */
	all[n / 2] ^= 0x55;
	all[n - 6] ^= 0x01;
	write_file(P("badcrc.idx.gz"), all, n);
	free(all);

	/* Wrong magic; fewer labels than images; an image file as labels. */
	uint8_t bad[16] = {0x12, 0x34, 0x56, 0x78};
	write_file(P("bad.idx"), bad, sizeof bad);
	buf l2 = {0};
	uint32_t l2d[1] = {2};
	idx_header(&l2, 0x08, 1, l2d);
	put(&l2, labels3, 2);
	write_file(P("lab2.idx"), l2.p, l2.len);
	free(im.p); free(lb.p); free(fl.p); free(h.p); free(g.p); free(l2.p);
}

/* npy v1 (or v2) with the header dict given; data appended. */
static void write_npy(const char *path, int major, const char *dict,
                      const void *data, size_t len)
{
	buf b = {0};
	size_t pre = major == 1 ? 10 : 12;
	size_t hl = strlen(dict) + 1;
	size_t pad = (64 - (pre + hl) % 64) % 64;
	put(&b, "\x93NUMPY", 6);
	uint8_t ver[2] = {(uint8_t)major, 0};
	put(&b, ver, 2);
	size_t total = hl + pad;
	uint8_t l[4] = {(uint8_t)total, (uint8_t)(total >> 8),
	                (uint8_t)(total >> 16), (uint8_t)(total >> 24)};
	put(&b, l, major == 1 ? 2 : 4);
	put(&b, dict, strlen(dict));
	for (size_t i = 0; i < pad; i++)
		put(&b, " ", 1);
	put(&b, "\n", 1);
	put(&b, data, len);
	write_file(path, b.p, b.len);
	free(b.p);
}

/* TensorProto: dims (1), data_type (2), name (8), raw_data (9). */
static void put_varint(buf *b, uint64_t v)
{
	do {
		uint8_t c = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			c |= 0x80;
		put(b, &c, 1);
	} while (v);
}

static void write_pb(const char *path, int dtype, int rank,
                     const int64_t *dims, const void *data, size_t len)
{
	buf b = {0};
	for (int i = 0; i < rank; i++) {
		put_varint(&b, 0x08);
		put_varint(&b, (uint64_t)dims[i]);
	}
	put_varint(&b, 0x10);
	put_varint(&b, (uint64_t)dtype);
	put_varint(&b, 0x42);
	put_varint(&b, 1);
	put(&b, "t", 1);
	put_varint(&b, 0x4a);
	put_varint(&b, len);
	put(&b, data, len);
	write_file(path, b.p, b.len);
	free(b.p);
}

/* ------------------------------------------------------------- helpers */

static np_status load(const char *spec, const np_data_opts *o,
                      np_dataset *d, np_error *err)
{
	np_error_clear(err);
	return np_data_load(spec, o, d, err);
}

/* Expect status st, the file named and text in the message. */
static void expect_err(const char *spec, const np_data_opts *o,
                       np_status st, const char *file, const char *text,
                       const char *what)
{
	np_error err;
	np_dataset d;
	np_status got = load(spec, o, &d, &err);
	ok(got == st && strstr(err.msg, text) &&
	   (!file || !strcmp(err.file, file)) && !d.x && !d.y && d.n == 0,
	   "%s: status %d (want %d), file '%s': %s", what, (int)got, (int)st,
	   err.file, err.msg);
}

static int close_f(float a, double b)
{
	return tap_close(a, b, 1e-6, 1e-6);
}

/* --------------------------------------------------------------- tests */

static void check_idx_values(const char *spec, const char *what)
{
	np_dataset d;
	np_error err;
	np_status st = load(spec, NULL, &d, &err);
	ok(st == NP_OK, "%s loads: %s", what, err.msg);
	if (st != NP_OK)
		return;
	ok(d.n == NI && d.rank == 3 && d.dims[0] == 1 && d.dims[1] == NR &&
	   d.dims[2] == NC && d.example_size == NR * NC,
	   "%s: 3 examples of [1,2,3]", what);
	int good = 1;
	for (int i = 0; i < NI; i++)
		for (int r = 0; r < NR; r++)
			for (int c = 0; c < NC; c++)
				good &= close_f(d.x[i * 6 + r * 3 + c],
				                pixel(i, r, c) / 255.0);
	ok(good, "%s: pixels scaled by 1/255", what);
	ok(d.y && d.y[0] == 2 && d.y[1] == 0 && d.y[2] == 1 && d.n_classes == 3,
	   "%s: labels and 3 classes", what);
	ok(d.spec && !strcmp(d.spec, spec), "%s: spec kept", what);
	np_dataset_free(&d);
}

static void test_idx(void)
{
	char spec[1200];
	snprintf(spec, sizeof spec, "idx:%s,%s", P("img.idx"), P("lab.idx"));
	check_idx_values(spec, "raw IDX");
	snprintf(spec, sizeof spec, "idx:%s,%s", P("img.idx.gz"), P("lab.idx.gz"));
	check_idx_values(spec, "gzip IDX");

	np_dataset d;
	np_error err;
	snprintf(spec, sizeof spec, "idx:%s", P("img.idx.gz"));
	ok(load(spec, NULL, &d, &err) == NP_OK && d.n == NI && !d.y &&
	   d.n_classes == 0, "images without labels: unlabeled: %s", err.msg);
	np_dataset_free(&d);

	np_data_opts o = {0};
	o.limit = 2;
	snprintf(spec, sizeof spec, "idx:%s,%s", P("img.idx.gz"), P("lab.idx"));
	ok(load(spec, &o, &d, &err) == NP_OK && d.n == 2 && d.y[1] == 0 &&
	   d.n_classes == 3 && close_f(d.x[6], pixel(1, 0, 0) / 255.0),
	   "limit 2 keeps the first two: %s", err.msg);
	np_dataset_free(&d);

	o = (np_data_opts){0};
	o.limit = 100;
	ok(load(spec, &o, &d, &err) == NP_OK && d.n == NI,
	   "limit above the count keeps all");
	np_dataset_free(&d);

	o = (np_data_opts){0};
	o.mean[0] = 0.1; o.n_mean = 1;
	o.std[0] = 0.5; o.n_std = 1;
	ok(load(spec, &o, &d, &err) == NP_OK &&
	   close_f(d.x[7], (pixel(1, 0, 1) / 255.0 - 0.1) / 0.5) &&
	   close_f(d.x[0], (0 - 0.1) / 0.5),
	   "mean/std normalisation: %s", err.msg);
	np_dataset_free(&d);

	o = (np_data_opts){0};
	o.scale = 1.0;
	ok(load(spec, &o, &d, &err) == NP_OK && d.x[17] == pixel(2, 1, 2),
	   "scale 1 keeps byte values");
	np_dataset_free(&d);

	snprintf(spec, sizeof spec, "idx:%s", P("f32.idx"));
	ok(load(spec, NULL, &d, &err) == NP_OK && d.n == 2 && d.rank == 1 &&
	   d.dims[0] == 2 && d.x[0] == 1.5f && d.x[1] == -2.0f &&
	   d.x[2] == 0.25f && d.x[3] == 300.0f,
	   "float32 IDX [2,2]: [2]-examples, not scaled: %s", err.msg);
	np_dataset_free(&d);

	/* Slices share memory. */
	snprintf(spec, sizeof spec, "idx:%s,%s", P("img.idx"), P("lab.idx"));
	load(spec, NULL, &d, &err);
	np_dataset s = np_dataset_slice(&d, 1, 5);
	ok(s.n == 2 && s.x == d.x + 6 && s.y == d.y + 1 && s.y[0] == 0 &&
	   s.example_size == 6, "slice [1, 1+5) clamps to 2 examples");
	s = np_dataset_slice(&d, 0, 1);
	ok(s.n == 1 && s.x == d.x, "slice of the first example");
	np_dataset_free(&d);
}

static void test_idx_errors(void)
{
	char spec[1200];
	snprintf(spec, sizeof spec, "idx:%s,%s", P("huge.idx"), P("lab.idx"));
	/* The label file has 3 labels, the count check comes first: use no
	 * labels to see the truncation. */
	snprintf(spec, sizeof spec, "idx:%s", P("huge.idx"));
	expect_err(spec, NULL, NP_ERR_FORMAT, P("huge.idx"),
	           "truncated IDX file: header says 2147483648 images of 28x28, "
	           "file has only 100 bytes", "raw IDX claiming 2^31 images");
	snprintf(spec, sizeof spec, "idx:%s", P("huge.idx.gz"));
	expect_err(spec, NULL, NP_ERR_FORMAT, P("huge.idx.gz"),
	           "truncated IDX file: header says 2147483648 images of 28x28, "
	           "gzip data ends after 100 bytes", "gzip IDX claiming 2^31 images");
	np_data_opts o = {0};
	o.limit = 1;
	expect_err(spec, &o, NP_ERR_FORMAT, P("huge.idx.gz"), "truncated IDX file",
	           "gzip IDX claiming 2^31 images, limit 1 (1 image missing)");
	snprintf(spec, sizeof spec, "idx:%s", P("cut.idx.gz"));
	expect_err(spec, NULL, NP_ERR_FORMAT, P("cut.idx.gz"), "truncated IDX file",
	           "gzip stream cut short");
	snprintf(spec, sizeof spec, "idx:%s", P("corrupt.idx.gz"));
	expect_err(spec, NULL, NP_ERR_FORMAT, P("corrupt.idx.gz"), "",
	           "gzip stream with a flipped byte");
	snprintf(spec, sizeof spec, "idx:%s", P("badcrc.idx.gz"));
	expect_err(spec, NULL, NP_ERR_FORMAT, P("badcrc.idx.gz"),
	           "corrupt gzip data: incorrect data check", "gzip with a bad CRC");
	snprintf(spec, sizeof spec, "idx:%s", P("whole.idx.gz"));
	np_dataset d;
	np_error err;
	ok(load(spec, NULL, &d, &err) == NP_OK && d.n == 500,
	   "the uncut stream loads: %s", err.msg);
	np_dataset_free(&d);
	snprintf(spec, sizeof spec, "idx:%s", P("bad.idx"));
	expect_err(spec, NULL, NP_ERR_FORMAT, P("bad.idx"),
	           "not an IDX file (magic 0x12345678)", "wrong magic");
	snprintf(spec, sizeof spec, "idx:%s,%s", P("img.idx"), P("lab2.idx"));
	expect_err(spec, NULL, NP_ERR_INVALID, P("lab2.idx"),
	           "IDX images (3) and labels (2) differ in count", "count mismatch");
	snprintf(spec, sizeof spec, "idx:%s,%s", P("img.idx"), P("img.idx"));
	expect_err(spec, NULL, NP_ERR_FORMAT, P("img.idx"),
	           "IDX labels must be integers of one dimension",
	           "an image file given as labels");
	snprintf(spec, sizeof spec, "idx:%s,%s", P("img.idx"), P("nope.idx"));
	expect_err(spec, NULL, NP_ERR_IO, P("nope.idx"),
	           "cannot open: No such file or directory", "missing label file");
	snprintf(spec, sizeof spec, "idx:%s", tmpdir);
	expect_err(spec, NULL, NP_ERR_IO, tmpdir, "not a regular file",
	           "a folder as IDX file");
	expect_err("foo:x", NULL, NP_ERR_USAGE, NULL,
	           "unknown data spec 'foo:x': use idx:, cifar10:, npy:, pb: or folder:",
	           "unknown prefix");
	expect_err("mnist.gz", NULL, NP_ERR_USAGE, NULL, "unknown data spec",
	           "no prefix");
	expect_err("idx:", NULL, NP_ERR_USAGE, NULL, "bad data spec 'idx:'",
	           "empty file name");
	expect_err("idx:a,", NULL, NP_ERR_USAGE, NULL, "bad data spec",
	           "empty label file name");
	expect_err("idx:a,b,c", NULL, NP_ERR_USAGE, NULL, "bad data spec",
	           "three files");
	expect_err("cifar10:a,b", NULL, NP_ERR_USAGE, NULL, "no comma",
	           "cifar10 with a comma");

	o = (np_data_opts){0};
	o.n_mean = 3;
	o.std[0] = 1;
	o.n_std = 1;
	snprintf(spec, sizeof spec, "idx:%s,%s", P("img.idx"), P("lab.idx"));
	expect_err(spec, &o, NP_ERR_USAGE, P("img.idx"),
	           "3 mean and 1 std values given, but the examples [1,2,3] have "
	           "1 channel", "3 means for 1 channel");
	o.n_mean = 1;
	o.std[0] = 0;
	expect_err(spec, &o, NP_ERR_USAGE, NULL, "std value 0 is not a positive",
	           "std 0");
	o = (np_data_opts){0};
	o.limit = -1;
	expect_err(spec, &o, NP_ERR_USAGE, NULL, "negative", "negative limit");
}

static void test_checks(void)
{
	char spec[1200];
	snprintf(spec, sizeof spec, "idx:%s,%s", P("img.idx"), P("lab.idx"));
	np_dataset d;
	np_error err;
	load(spec, NULL, &d, &err);
	ok(np_dataset_check_labels(&d, 3, &err) == NP_OK, "labels fit 3 classes");
	np_error_clear(&err);
	ok(np_dataset_check_labels(&d, 2, &err) == NP_ERR_INVALID &&
	   !strcmp(err.msg, "label 2 at example 0 is out of range for 2 classes") &&
	   !strcmp(err.file, P("lab.idx")),
	   "label out of range names the label file: %s: %s", err.file, err.msg);

	np_model *m = np_model_new();
	np_value *v = np_graph_new_value(m->graph, "input", &err);
	v->has_type = v->has_shape = true;
	v->dtype = NP_FLOAT;
	v->rank = 4;
	v->dims = np_arena_alloc(m->arena, 4 * sizeof *v->dims);
	int64_t want[4] = {-1, 3, 32, 32};
	for (int i = 0; i < 4; i++)
		v->dims[i].value = want[i];
	np_error_clear(&err);
	ok(np_dataset_check_input(&d, v, &err) == NP_ERR_INVALID &&
	   !strcmp(err.msg, "examples are [1,2,3], the model input 'input' "
	           "expects [N,3,32,32]") && !strcmp(err.file, P("img.idx")),
	   "shape mismatch: %s: %s", err.file, err.msg);
	v->dims[0].param = "batch";
	v->dims[1].value = 1;
	v->dims[2].value = -1;
	v->dims[3].value = 3;
	np_error_clear(&err);
	ok(np_dataset_check_input(&d, v, &err) == NP_OK,
	   "[batch,1,?,3] accepts [1,2,3]: %s", err.msg);
	v->rank = 3;
	np_error_clear(&err);
	ok(np_dataset_check_input(&d, v, &err) == NP_ERR_INVALID &&
	   strstr(err.msg, "expects [batch,1,?]"), "rank mismatch: %s", err.msg);
	v->rank = 4;
	v->dtype = NP_UINT8;
	np_error_clear(&err);
	ok(np_dataset_check_input(&d, v, &err) == NP_ERR_UNSUPPORTED,
	   "uint8 model input refused: %s", err.msg);
	np_model_free(m);
	np_dataset_free(&d);
}

/* CIFAR: record r of batch b: label (2b + r) % 10, channel c pixels
 * 50c + 2b + r. */
static void write_cifar(const char *path, int b, int records, int label_add)
{
	buf x = {0};
	for (int r = 0; r < records; r++) {
		uint8_t lab = (uint8_t)((2 * b + r) % 10 + label_add);
		put(&x, &lab, 1);
		for (int c = 0; c < 3; c++)
			for (int i = 0; i < 1024; i++) {
				uint8_t v = (uint8_t)(50 * c + 2 * b + r);
				put(&x, &v, 1);
			}
	}
	write_file(path, x.p, x.len);
	free(x.p);
}

static void test_cifar(void)
{
	mkdir(P("cifar"), 0700);
	for (int b = 0; b < 5; b++)
		write_cifar(P("cifar/data_batch_%d.bin", b + 1), b, 2, 0);
	mkdir(P("cifar_test"), 0700);
	write_cifar(P("cifar_test/test_batch.bin"), 0, 3, 0);
	np_data_opts o = {0};
	double mean[3] = {0.1, 0.2, 0.3}, sd[3] = {0.5, 0.25, 2.0};
	for (int c = 0; c < 3; c++) {
		o.mean[c] = mean[c];
		o.std[c] = sd[c];
	}
	o.n_mean = o.n_std = 3;
	char spec[1200];
	snprintf(spec, sizeof spec, "cifar10:%s", P("cifar"));
	np_dataset d;
	np_error err;
	ok(load(spec, &o, &d, &err) == NP_OK && d.n == 10 && d.rank == 3 &&
	   d.dims[0] == 3 && d.dims[1] == 32 && d.dims[2] == 32 &&
	   d.n_classes == 10, "CIFAR-10: 5 batches of 2, [3,32,32]: %s", err.msg);
	int good = d.n == 10;
	for (int e = 0; good && e < 10; e++) {
		good &= d.y[e] == e % 10;
		for (int c = 0; c < 3; c++) {
			double px = (50 * c + e) / 255.0;
			good &= close_f(d.x[e * 3072 + c * 1024 + 17],
			                (px - mean[c]) / sd[c]);
		}
	}
	ok(good, "CIFAR-10 labels and per-channel mean/std");
	np_dataset_free(&d);
	o.limit = 3;
	ok(load(spec, &o, &d, &err) == NP_OK && d.n == 3 && d.y[2] == 2,
	   "CIFAR-10 limit 3 spans two batches");
	np_dataset_free(&d);
	snprintf(spec, sizeof spec, "cifar10:%s", P("cifar_test"));
	ok(load(spec, NULL, &d, &err) == NP_OK && d.n == 3 &&
	   close_f(d.x[2 * 3072 + 2048], (100 + 2) / 255.0),
	   "test_batch.bin alone: %s", err.msg);
	np_dataset_free(&d);

	mkdir(P("cifar_bad"), 0700);
	write_cifar(P("cifar_bad/test_batch.bin"), 0, 2, 0);
	FILE *f = fopen(P("cifar_bad/test_batch.bin"), "ab");
	fputc(1, f);
	fclose(f);
	snprintf(spec, sizeof spec, "cifar10:%s", P("cifar_bad"));
	expect_err(spec, NULL, NP_ERR_FORMAT, P("cifar_bad/test_batch.bin"),
	           "CIFAR-10 batch has 6147 bytes, not a multiple of the 3073-byte "
	           "record", "CIFAR-10 odd size");
	write_cifar(P("cifar_bad/test_batch.bin"), 0, 2, 12);
	expect_err(spec, NULL, NP_ERR_FORMAT, P("cifar_bad/test_batch.bin"),
	           "label 12 at record 0 is not a CIFAR-10 class", "CIFAR-10 label 12");
	unlink(P("cifar/data_batch_4.bin"));
	snprintf(spec, sizeof spec, "cifar10:%s", P("cifar"));
	expect_err(spec, NULL, NP_ERR_IO, P("cifar/data_batch_4.bin"),
	           "No such file", "CIFAR-10 missing batch 4");
	snprintf(spec, sizeof spec, "cifar10:%s", P("nothing"));
	expect_err(spec, NULL, NP_ERR_IO, P("nothing"), "no CIFAR-10 batches",
	           "CIFAR-10 folder without batches");
}

static void test_npy(void)
{
	float xf[8] = {0, 1, 2, 3, 4, 5, 6, -7.5f};
	int64_t y8[2] = {4, 1};
	write_npy(P("x.npy"), 1, "{'descr': '<f4', 'fortran_order': False, "
	          "'shape': (2, 1, 2, 2), }", xf, sizeof xf);
	write_npy(P("y.npy"), 1, "{'descr': '<i8', 'fortran_order': False, "
	          "'shape': (2,), }", y8, sizeof y8);
	char spec[1200];
	snprintf(spec, sizeof spec, "npy:%s,%s", P("x.npy"), P("y.npy"));
	np_dataset d;
	np_error err;
	ok(load(spec, NULL, &d, &err) == NP_OK && d.n == 2 && d.rank == 3 &&
	   d.dims[0] == 1 && d.dims[1] == 2 && d.dims[2] == 2 &&
	   d.x[7] == -7.5f && d.x[1] == 1.0f && d.y[0] == 4 && d.y[1] == 1 &&
	   d.n_classes == 5, "npy v1 <f4 (2,1,2,2) + <i8 labels: %s", err.msg);
	np_dataset_free(&d);

	uint8_t xu[12] = {0, 51, 102, 153, 204, 255, 1, 2, 3, 4, 5, 6};
	int32_t y4[2] = {0, 3};
	write_npy(P("xu.npy"), 2, "{'descr': '|u1', 'fortran_order': False, "
	          "'shape': (2, 6), }", xu, sizeof xu);
	write_npy(P("y4.npy"), 1, "{'descr': '<i4', 'fortran_order': False, "
	          "'shape': (2,), }", y4, sizeof y4);
	snprintf(spec, sizeof spec, "npy:%s,%s", P("xu.npy"), P("y4.npy"));
	ok(load(spec, NULL, &d, &err) == NP_OK && d.n == 2 && d.rank == 1 &&
	   d.dims[0] == 6 && close_f(d.x[1], 0.2) && close_f(d.x[5], 1.0) &&
	   d.y[1] == 3, "npy v2 |u1 (2,6), scaled + <i4 labels: %s", err.msg);
	np_dataset_free(&d);

	double xd[4] = {0.5, -1, 2, 1e3};
	uint8_t yu[2] = {1, 0};
	write_npy(P("xd.npy"), 1, "{'descr': '<f8', 'fortran_order': False, "
	          "'shape': (2, 2), }", xd, sizeof xd);
	write_npy(P("yu.npy"), 1, "{'descr': '|u1', 'fortran_order': False, "
	          "'shape': (2, 1), }", yu, sizeof yu);
	np_data_opts o = {0};
	o.limit = 1;
	snprintf(spec, sizeof spec, "npy:%s,%s", P("xd.npy"), P("yu.npy"));
	ok(load(spec, &o, &d, &err) == NP_OK && d.n == 1 && d.x[0] == 0.5f &&
	   d.x[1] == -1.0f && d.y[0] == 1, "npy <f8 + |u1 (2,1) labels, limit 1: %s",
	   err.msg);
	np_dataset_free(&d);

	write_npy(P("fort.npy"), 1, "{'descr': '<f4', 'fortran_order': True, "
	          "'shape': (2, 1, 2, 2), }", xf, sizeof xf);
	snprintf(spec, sizeof spec, "npy:%s", P("fort.npy"));
	expect_err(spec, NULL, NP_ERR_UNSUPPORTED, P("fort.npy"), "Fortran order",
	           "npy fortran_order True");
	write_npy(P("be.npy"), 1, "{'descr': '>f4', 'fortran_order': False, "
	          "'shape': (2, 1, 2, 2), }", xf, sizeof xf);
	snprintf(spec, sizeof spec, "npy:%s", P("be.npy"));
	expect_err(spec, NULL, NP_ERR_UNSUPPORTED, P("be.npy"),
	           "npy dtype '>f4' is not supported", "npy big-endian float");
	write_npy(P("noshape.npy"), 1, "{'descr': '<f4', 'fortran_order': False}",
	          xf, sizeof xf);
	snprintf(spec, sizeof spec, "npy:%s", P("noshape.npy"));
	expect_err(spec, NULL, NP_ERR_FORMAT, P("noshape.npy"),
	           "bad npy header: no 'shape' tuple", "npy header without shape");
	static const char zip[] = "PK\x03\x04 zip file, not npy";
	write_file(P("notnpy.npy"), zip, sizeof zip - 1);
	snprintf(spec, sizeof spec, "npy:%s", P("notnpy.npy"));
	expect_err(spec, NULL, NP_ERR_FORMAT, P("notnpy.npy"),
	           "not a NumPy .npy file", "npy bad magic");
	write_npy(P("short.npy"), 1, "{'descr': '<f4', 'fortran_order': False, "
	          "'shape': (1000000, 784), }", xf, sizeof xf);
	snprintf(spec, sizeof spec, "npy:%s", P("short.npy"));
	expect_err(spec, NULL, NP_ERR_FORMAT, P("short.npy"),
	           "truncated npy file: shape (1000000, 784) of <f4 needs "
	           "3136000000 bytes of data", "npy truncated");
	write_npy(P("vec.npy"), 1, "{'descr': '<f4', 'fortran_order': False, "
	          "'shape': (8,), }", xf, sizeof xf);
	snprintf(spec, sizeof spec, "npy:%s", P("vec.npy"));
	expect_err(spec, NULL, NP_ERR_INVALID, P("vec.npy"), "this array is (8,)",
	           "npy 1-D examples");
	write_npy(P("yf.npy"), 1, "{'descr': '<f4', 'fortran_order': False, "
	          "'shape': (2,), }", xf, 8);
	snprintf(spec, sizeof spec, "npy:%s,%s", P("x.npy"), P("yf.npy"));
	expect_err(spec, NULL, NP_ERR_UNSUPPORTED, P("yf.npy"),
	           "not supported for labels", "npy float labels");
	snprintf(spec, sizeof spec, "npy:%s,%s", P("xd.npy"), P("y3.npy"));
	int64_t y3[3] = {0, 1, 2};
	write_npy(P("y3.npy"), 1, "{'descr': '<i8', 'fortran_order': False, "
	          "'shape': (3,), }", y3, sizeof y3);
	expect_err(spec, NULL, NP_ERR_INVALID, P("y3.npy"),
	           "npy examples (2) and labels (3) differ in count",
	           "npy count mismatch");
	int64_t yneg[2] = {0, -3};
	write_npy(P("yneg.npy"), 1, "{'descr': '<i8', 'fortran_order': False, "
	          "'shape': (2,), }", yneg, sizeof yneg);
	snprintf(spec, sizeof spec, "npy:%s,%s", P("xd.npy"), P("yneg.npy"));
	expect_err(spec, NULL, NP_ERR_FORMAT, P("yneg.npy"),
	           "label -3 at example 1 is not a class index", "npy negative label");
}

/* Arrays named by model input (token data): int64 and int32 (widened)
 * ids, their rows batched with the labels through a view and a
 * shuffled order, --limit, the files a depfile lists, and the errors. */
static void add_file(void *ctx, const char *path)
{
	char *list = ctx;
	size_t len = strlen(list);
	snprintf(list + len, 4096 - len, "%s;", path);
}

static void test_npy_arrays(void)
{
	int64_t ids[15], y[5] = {0, 1, 2, 3, 4};
	int32_t mask[15];
	for (int i = 0; i < 15; i++) {
		ids[i] = (i / 3) * 10 + i % 3;
		mask[i] = -(i % 2);
	}
	write_npy(P("ids.npy"), 1, "{'descr': '<i8', 'fortran_order': False, "
	          "'shape': (5, 3), }", ids, sizeof ids);
	write_npy(P("mask.npy"), 1, "{'descr': '<i4', 'fortran_order': False, "
	          "'shape': (5, 3), }", mask, sizeof mask);
	write_npy(P("ay.npy"), 1, "{'descr': '<i8', 'fortran_order': False, "
	          "'shape': (5,), }", y, sizeof y);
	char spec[1200], want[4096], list[4096] = "";
	snprintf(spec, sizeof spec, "npy:input_ids=%s,attention_mask=%s,%s",
	         P("ids.npy"), P("mask.npy"), P("ay.npy"));
	np_dataset d;
	np_error err;
	bool loaded = load(spec, NULL, &d, &err) == NP_OK;
	ok(loaded && d.n == 5 && !d.x && d.n_arrays == 2 &&
	   !strcmp(d.arrays[0].name, "input_ids") &&
	   !strcmp(d.arrays[1].name, "attention_mask") &&
	   d.arrays[0].dtype == NP_INT64 && d.arrays[1].dtype == NP_INT64 &&
	   d.arrays[0].rank == 1 && d.arrays[0].dims[0] == 3 &&
	   ((int64_t *)d.arrays[0].data)[14] == 42 &&
	   ((int64_t *)d.arrays[1].data)[13] == -1 && d.n_classes == 5,
	   "npy named arrays: <i8 ids, <i4 mask widened, labels: %s", err.msg);
	if (loaded) {
		/* A view of examples 1..3, shuffled as training reads it. */
		np_dataset v = np_dataset_slice(&d, 1, 3);
		int64_t order[3] = {2, 0, 1};
		np_batches *b = NULL;
		const float *x;
		const int32_t *by;
		int64_t count;
		np_rt_input in[NP_DATA_MAX_ARRAYS + 1];
		bool good = np_batches_open(&v, order, 3, 2, NULL, NULL, NULL, &b,
		                            &err) == NP_OK &&
		            np_batches_next(b, &x, &by, &count, &err) == NP_OK &&
		            count == 2 && !x && by[0] == 3 && by[1] == 1;
		int k = good ? np_batch_feed(b, NULL, x, count, in) : 0;
		good = good && k == 2 && !strcmp(in[0].name, "input_ids") &&
		       in[0].dtype == NP_INT64 && in[0].rank == 2 &&
		       in[0].dims[0] == 2 && in[0].dims[1] == 3 &&
		       ((const int64_t *)in[0].data)[0] == 30 &&
		       ((const int64_t *)in[0].data)[5] == 12 &&
		       ((const int64_t *)in[1].data)[3] == -1 &&
		       np_batches_next(b, &x, &by, &count, &err) == NP_OK &&
		       count == 1 && by[0] == 2 &&
		       np_batch_feed(b, NULL, x, count, in) == 2 &&
		       ((const int64_t *)in[0].data)[2] == 22;
		np_batches_close(b);
		ok(good, "npy named arrays: a view's shuffled batches carry every "
		   "input with its label: %s", err.msg);
		/* In order: rows in place. */
		b = NULL;
		good = np_batches_open(&v, NULL, 3, 3, NULL, NULL, NULL, &b,
		                       &err) == NP_OK &&
		       np_batches_next(b, &x, &by, &count, &err) == NP_OK &&
		       count == 3 && by[2] == 3 &&
		       np_batch_feed(b, NULL, x, count, in) == 2 &&
		       ((const int64_t *)in[0].data)[0] == 10 &&
		       ((const int64_t *)in[0].data)[8] == 32;
		np_batches_close(b);
		ok(good, "npy named arrays: in-order batches of a view: %s", err.msg);
	}
	np_dataset_free(&d);
	snprintf(want, sizeof want, "%s;%s;%s;", P("ids.npy"), P("mask.npy"),
	         P("ay.npy"));
	ok(np_data_files(spec, add_file, list, &err) == NP_OK &&
	   !strcmp(list, want), "npy named arrays: files listed: %s", list);
	np_data_opts o = {.limit = 2};
	ok(load(spec, &o, &d, &err) == NP_OK && d.n == 2 && d.y[1] == 1 &&
	   ((int64_t *)d.arrays[1].data)[5] == -1,
	   "npy named arrays with --limit 2: %s", err.msg);
	np_dataset_free(&d);
	/* An unnamed int array: the ids of a single int64 input. */
	snprintf(spec, sizeof spec, "npy:%s,%s", P("mask.npy"), P("ay.npy"));
	ok(load(spec, NULL, &d, &err) == NP_OK && d.n == 5 && !d.x &&
	   d.n_arrays == 1 && !d.arrays[0].name &&
	   d.arrays[0].dtype == NP_INT64 && d.example_size == 0,
	   "npy unnamed <i4 array: ids for the single input: %s", err.msg);
	np_dataset_free(&d);

	write_npy(P("mask4.npy"), 1, "{'descr': '<i4', 'fortran_order': False, "
	          "'shape': (4, 3), }", mask, 48);
	snprintf(spec, sizeof spec, "npy:input_ids=%s,attention_mask=%s",
	         P("ids.npy"), P("mask4.npy"));
	snprintf(want, sizeof want, "holds 4 examples, %s holds 5", P("ids.npy"));
	expect_err(spec, NULL, NP_ERR_INVALID, P("mask4.npy"), want,
	           "npy named arrays of different counts");
	write_npy(P("u8.npy"), 1, "{'descr': '|u1', 'fortran_order': False, "
	          "'shape': (5, 3), }", mask, 15);
	snprintf(spec, sizeof spec, "npy:pixels=%s", P("u8.npy"));
	expect_err(spec, NULL, NP_ERR_UNSUPPORTED, P("u8.npy"),
	           "npy dtype '|u1' is not supported for the input 'pixels'",
	           "npy named uint8 array");
	snprintf(spec, sizeof spec, "npy:input_ids=%s", P("ids.npy"));
	np_data_opts mo = {.n_mean = 1, .mean = {0.5}};
	expect_err(spec, &mo, NP_ERR_USAGE, P("ids.npy"), "are fed as stored",
	           "npy named arrays with --mean");
	snprintf(spec, sizeof spec, "npy:%s,input_ids=%s", P("ay.npy"),
	         P("ids.npy"));
	expect_err(spec, NULL, NP_ERR_USAGE, NULL, "comes last",
	           "npy labels before a named array");
	snprintf(spec, sizeof spec, "npy:a=%s,a=%s", P("ids.npy"), P("ids.npy"));
	expect_err(spec, NULL, NP_ERR_USAGE, NULL, "input 'a' is named twice",
	           "npy input named twice");
	snprintf(spec, sizeof spec, "npy:a=%s,b=,%s", P("ids.npy"), P("ay.npy"));
	expect_err(spec, NULL, NP_ERR_USAGE, NULL, "bad data spec",
	           "npy named array without a file");
	snprintf(spec, sizeof spec, "npy:a=%s,%s,%s", P("ids.npy"), P("ay.npy"),
	         P("ay.npy"));
	expect_err(spec, NULL, NP_ERR_USAGE, NULL, "bad data spec",
	           "npy two unnamed arrays after a named one");
	size_t len = (size_t)snprintf(spec, sizeof spec, "npy:");
	for (int i = 0; i < NP_DATA_MAX_ARRAYS + 1; i++)
		len += (size_t)snprintf(spec + len, sizeof spec - len, "%sa%d=x",
		                        i ? "," : "", i);
	expect_err(spec, NULL, NP_ERR_USAGE, NULL, "more than 8 named arrays",
	           "npy nine named arrays");
}

static void test_pb(void)
{
	mkdir(P("pb1"), 0700);
	float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	int64_t dx[4] = {2, 1, 2, 2}, y[2] = {3, 1}, dy[1] = {2};
	write_pb(P("pb1/input_0.pb"), NP_FLOAT, 4, dx, x, sizeof x);
	write_pb(P("pb1/output_0.pb"), NP_INT64, 1, dy, y, sizeof y);
	char spec[1200];
	snprintf(spec, sizeof spec, "pb:%s", P("pb1"));
	np_dataset d;
	np_error err;
	ok(load(spec, NULL, &d, &err) == NP_OK && d.n == 2 && d.rank == 3 &&
	   d.dims[0] == 1 && d.dims[2] == 2 && d.x[5] == 6.0f && d.y[0] == 3 &&
	   d.y[1] == 1 && d.n_classes == 4,
	   "pb: input_0.pb float [2,1,2,2] + int64 labels: %s", err.msg);
	np_dataset_free(&d);

	/* Sets 0, 1 and 10 (numeric order), logits -> argmax. */
	mkdir(P("pbs"), 0700);
	int ids[3] = {10, 0, 1};
	for (int k = 0; k < 3; k++) {
		mkdir(P("pbs/test_data_set_%d", ids[k]), 0700);
		uint8_t px[4] = {(uint8_t)ids[k], 0, 0, 255};
		int64_t d1[4] = {1, 1, 2, 2}, d2[2] = {1, 3};
		float logits[3] = {0, 0, 0};
		logits[ids[k] % 3] = 5;
		write_pb(P("pbs/test_data_set_%d/input_0.pb", ids[k]), NP_UINT8, 4, d1,
		         px, sizeof px);
		write_pb(P("pbs/test_data_set_%d/output_0.pb", ids[k]), NP_FLOAT, 2,
		         d2, logits, sizeof logits);
	}
	mkdir(P("pbs/other"), 0700);
	snprintf(spec, sizeof spec, "pb:%s", P("pbs"));
	ok(load(spec, NULL, &d, &err) == NP_OK && d.n == 3 &&
	   d.x[0] == 0.0f && close_f(d.x[4], 1 / 255.0) &&
	   close_f(d.x[8], 10 / 255.0) && close_f(d.x[3], 1.0) &&
	   d.y[0] == 0 && d.y[1] == 1 && d.y[2] == 1,
	   "pb: test_data_set_{0,1,10} concatenated in order, argmax labels: %s",
	   err.msg);
	np_dataset_free(&d);

	int64_t dbad[4] = {1, 1, 4, 1};
	uint8_t px[4] = {0};
	write_pb(P("pbs/test_data_set_1/input_0.pb"), NP_UINT8, 4, dbad, px, 4);
	expect_err(spec, NULL, NP_ERR_INVALID, P("pbs/test_data_set_1/input_0.pb"),
	           "examples are uint8 [1,4,1], those of the first set are uint8 "
	           "[1,2,2]", "pb sets of different shapes");
	write_file(P("pbs/test_data_set_1/input_0.pb"), "\xff\xff\xff", 3);
	expect_err(spec, NULL, NP_ERR_FORMAT, P("pbs/test_data_set_1/input_0.pb"),
	           "", "pb garbage tensor file");
	snprintf(spec, sizeof spec, "pb:%s", P("nothing"));
	expect_err(spec, NULL, NP_ERR_IO, P("nothing"), "No such file",
	           "pb missing folder");
	snprintf(spec, sizeof spec, "pb:%s", P("cifar"));
	expect_err(spec, NULL, NP_ERR_IO, P("cifar"), "no input_0.pb",
	           "pb folder without tensors");
}

static void test_rng(void)
{
	np_rng a, b;
	np_rng_seed(&a, 0);
	ok(a.s[0] == 0xe220a8397b1dcdafULL, "splitmix64(0) seeds s[0] = "
	   "0xe220a8397b1dcdaf");
	np_rng_seed(&a, 42);
	np_rng_seed(&b, 42);
	int same = 1;
	for (int i = 0; i < 100; i++)
		same &= np_rng_next(&a) == np_rng_next(&b);
	ok(same, "same seed, same sequence");
	np_rng_seed(&b, 43);
	ok(np_rng_next(&a) != np_rng_next(&b), "another seed, another sequence");

	enum { N = 1000 };
	int64_t p1[N], p2[N];
	int seen[N] = {0};
	np_rng_seed(&a, 7);
	np_rng_permutation(&a, p1, N);
	np_rng_seed(&a, 7);
	np_rng_permutation(&a, p2, N);
	int valid = 1, fixed = 0;
	for (int i = 0; i < N; i++) {
		valid &= p1[i] >= 0 && p1[i] < N && !seen[p1[i]]++;
		fixed += p1[i] == i;
	}
	ok(valid && fixed < 10, "permutation of 1000 is valid and shuffled "
	   "(%d fixed points)", fixed);
	ok(!memcmp(p1, p2, sizeof p1), "same seed, same permutation");

	int counts[3] = {0}, inrange = 1;
	for (int i = 0; i < 30000; i++) {
		uint64_t v = np_rng_below(&a, 3);
		inrange &= v < 3;
		if (v < 3)
			counts[v]++;
	}
	ok(inrange && abs(counts[0] - 10000) < 500 && abs(counts[1] - 10000) < 500 &&
	   abs(counts[2] - 10000) < 500, "np_rng_below(3) is uniform: %d %d %d",
	   counts[0], counts[1], counts[2]);
	uint64_t big = (UINT64_C(1) << 63) + 1;
	int ok_big = np_rng_below(&a, 1) == 0 && np_rng_below(&a, 0) == 0;
	for (int i = 0; i < 100; i++)
		ok_big &= np_rng_below(&a, big) < big;
	ok(ok_big, "np_rng_below(1), (0) and (2^63+1) stay in range");
}

/* In-memory 2 examples of [1,5,5], values 1..25 and 101..125. */
static void test_gather(void)
{
	float x[50];
	int32_t y[2] = {1, 0};
	for (int i = 0; i < 50; i++)
		x[i] = (float)(i < 25 ? i + 1 : 76 + i);
	np_dataset d = {0};
	d.n = 2;
	d.rank = 3;
	d.dims[0] = 1; d.dims[1] = 5; d.dims[2] = 5;
	d.example_size = 25;
	d.x = x;
	d.y = y;
	d.n_classes = 2;
	int64_t idx[64];
	for (int i = 0; i < 64; i++)
		idx[i] = i % 2 ? 0 : 1;
	float out[64 * 25];
	int32_t oy[64];
	np_rng r;
	np_rng_seed(&r, 1);
	np_dataset_gather(&d, idx, 2, out, oy, NULL, &r, NULL);
	ok(!memcmp(out, x + 25, 25 * sizeof *out) && !memcmp(out + 25, x, 25 * 4) &&
	   oy[0] == 0 && oy[1] == 1, "gather without augmentation copies");

	np_augment flip = {true, 0};
	np_dataset_gather(&d, idx, 64, out, oy, &flip, &r, NULL);
	int n_flip = 0, good = 1;
	for (int k = 0; k < 64; k++) {
		const float *src = x + idx[k] * 25, *o = out + k * 25;
		int same = !memcmp(o, src, 25 * 4), mirrored = 1;
		for (int i = 0; i < 5; i++)
			for (int j = 0; j < 5; j++)
				mirrored &= o[i * 5 + j] == src[i * 5 + 4 - j];
		good &= same || mirrored;
		n_flip += mirrored && !same;
		good &= oy[k] == y[idx[k]];
	}
	ok(good && n_flip > 16 && n_flip < 48,
	   "flip: each example kept or mirrored (%d of 64 mirrored)", n_flip);

	np_data_opts o = {0};
	o.mean[0] = 0.5; o.n_mean = 1;
	o.std[0] = 0.25; o.n_std = 1;
	const float fill = -2.0f;
	np_augment sh = {false, 2};
	np_dataset_gather(&d, idx, 64, out, NULL, &sh, &r, &o);
	int consistent = 1, moved = 0;
	for (int k = 0; k < 64; k++) {
		const float *src = x + idx[k] * 25, *ob = out + k * 25;
		int found = 0;
		for (int dy = -2; dy <= 2 && !found; dy++)
			for (int dx = -2; dx <= 2 && !found; dx++) {
				int match = 1;
				for (int i = 0; i < 5; i++)
					for (int j = 0; j < 5; j++) {
						int si = i + dy, sj = j + dx;
						float want = si >= 0 && si < 5 && sj >= 0 &&
							sj < 5 ? src[si * 5 + sj] : fill;
						match &= ob[i * 5 + j] == want;
					}
				if (match) {
					found = 1;
					moved += dy || dx;
				}
			}
		consistent &= found;
	}
	ok(consistent && moved > 40, "shift 2: every example is a shift of its "
	   "source filled with the normalised 0 (%d of 64 moved)", moved);

	float out2[64 * 25];
	np_augment both = {true, 2};
	np_rng_seed(&r, 99);
	np_dataset_gather(&d, idx, 64, out, NULL, &both, &r, &o);
	np_rng_seed(&r, 99);
	np_dataset_gather(&d, idx, 64, out2, NULL, &both, &r, &o);
	ok(!memcmp(out, out2, sizeof out), "same seed, same augmentation");
}

static void test_fashion_mnist(void)
{
	const char *dir = getenv("FASHION_MNIST");
	if (!dir || !*dir)
		dir = "/usr/share/datasets/fashion-mnist";
	char img[1024], lab[1024], spec[2100];
	snprintf(img, sizeof img, "%s/train-images-idx3-ubyte.gz", dir);
	snprintf(lab, sizeof lab, "%s/train-labels-idx1-ubyte.gz", dir);
	if (access(img, R_OK) != 0 || access(lab, R_OK) != 0) {
		char why[1200];
		snprintf(why, sizeof why, "Fashion-MNIST not found in %s (Debian package "
		         "dataset-fashion-mnist)", dir);
		skip("Fashion-MNIST training set", why);
		return;
	}
	snprintf(spec, sizeof spec, "idx:%s,%s", img, lab);
	np_dataset d;
	np_error err;
	np_status st = load(spec, NULL, &d, &err);
	ok(st == NP_OK && d.n == 60000 && d.rank == 3 && d.dims[0] == 1 &&
	   d.dims[1] == 28 && d.dims[2] == 28 && d.n_classes == 10,
	   "Fashion-MNIST train: 60000 of [1,28,28], 10 classes: %s", err.msg);
	if (st == NP_OK) {
		double sum = 0;
		for (int64_t i = 0; i < d.n * d.example_size; i++)
			sum += d.x[i];
		double mean = sum / (double)(d.n * d.example_size);
		ok(d.y[0] == 9, "first train label is 9 (ankle boot)");
		ok(fabs(mean - 0.2860) < 5e-4, "train pixel mean %.4f ~ 0.2860", mean);
		np_dataset_free(&d);
	}
	snprintf(img, sizeof img, "%s/t10k-images-idx3-ubyte.gz", dir);
	snprintf(lab, sizeof lab, "%s/t10k-labels-idx1-ubyte.gz", dir);
	snprintf(spec, sizeof spec, "idx:%s,%s", img, lab);
	ok(load(spec, NULL, &d, &err) == NP_OK && d.n == 10000 &&
	   d.n_classes == 10, "Fashion-MNIST test: 10000: %s", err.msg);
	np_dataset_free(&d);
}

int main(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/np_data_XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 99;
	}
	make_idx_files();
	test_idx();
	test_idx_errors();
	test_checks();
	test_cifar();
	test_npy();
	test_npy_arrays();
	test_pb();
	test_rng();
	test_gather();
	test_fashion_mnist();
	rm_rf(tmpdir);
	return done_testing();
}
