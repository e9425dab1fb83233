/* test_png_fast.c - TAP: the PNG path without libpng (runtime/png_fast.c)
 * against libpng, the reference.
 *
 * A small PNG writer here (zlib, every row filter, IDAT split anywhere,
 * ancillary chunks) makes images of known pixels.  Each image the fast
 * path must take -- 8-bit grey, grey+alpha, RGB, RGBA, each filter on the
 * first row and on later rows, odd sizes, data split over 1..n IDAT
 * chunks with an empty one, text chunks before and after -- decodes to
 * the written pixels (alpha dropped) on both paths.  Each file it must
 * decline -- palette, 16-bit, interlaced flag, an unknown critical chunk,
 * a bad CRC, a filter type 5, data after the zlib stream, a stream cut
 * short, no IEND -- is declined, and np_image_decode then gives exactly
 * what libpng gives: the image, or the same error message.  A header
 * claiming far more pixels than its data can hold is declined before the
 * fast path allocates.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "image.h"
#include "tap.h"

/* ------------------------------------------------------------ the writer */

typedef struct png_out {
	uint8_t *p;
	size_t n, cap;
} png_out;

static void put(png_out *o, const void *src, size_t n)
{
	if (o->n + n > o->cap) {
		o->cap = 2 * (o->n + n) + 64;
		o->p = realloc(o->p, o->cap);
		if (!o->p)
			abort();
	}
	memcpy(o->p + o->n, src, n);
	o->n += n;
}

static void put32(png_out *o, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
	                (uint8_t)v};
	put(o, b, 4);
}

static void chunk(png_out *o, const char *type, const uint8_t *data,
                  uint32_t len)
{
	put32(o, len);
	size_t at = o->n;
	put(o, type, 4);
	if (len)
		put(o, data, len);
	put32(o, (uint32_t)crc32(0L, o->p + at, 4 + len));
}

/* What a test image looks like in the file. */
typedef struct png_spec {
	int w, h, type;            /* colour type 0, 2, 4, 6 (or others) */
	int depth, interlace;      /* depth 0 means 8 */
	int first_filter;          /* row 0's filter; later rows cycle 0..4 */
	size_t idat_split;         /* bytes per IDAT chunk, 0: one chunk */
	bool empty_idat;           /* a zero-length IDAT in the middle */
	bool text;                 /* tEXt before and after the data */
	bool no_iend;
	const char *extra_chunk;   /* a chunk before IDAT, e.g. "PLTE" */
	int bad_filter_row;        /* > 0: that row gets filter type 5 */
	size_t extra_zlib, cut_zlib; /* bytes appended to / cut from it */
} png_spec;

static int channels_of(int type)
{
	return type == 0 ? 1 : type == 2 ? 3 : type == 4 ? 2 : type == 6 ? 4 : 1;
}

static uint8_t pixel(int x, int y, int k)
{
	return (uint8_t)(x * 37 + y * 11 + k * 71 + ((x * y) % 13) * 17);
}

static uint8_t paeth(int a, int b, int c)
{
	int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
	return (uint8_t)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
}

/* One row filtered with type f against the row above (NULL: zeros). */
static void filter_row(int f, const uint8_t *row, const uint8_t *up,
                       size_t n, size_t bpp, uint8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		int a = i >= bpp ? row[i - bpp] : 0, b = up ? up[i] : 0;
		int c = up && i >= bpp ? up[i - bpp] : 0;
		int pred = f == 1 ? a : f == 2 ? b : f == 3 ? (a + b) / 2 :
		           f == 4 ? paeth(a, b, c) : 0;
		out[i] = (uint8_t)(row[i] - pred);
	}
}

static png_out write_png(const png_spec *spec)
{
	png_spec full = *spec;
	const png_spec *s = &full;
	if (!full.depth)
		full.depth = 8;
	png_out o = {0};
	static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	put(&o, sig, 8);
	uint8_t ihdr[13] = {0};
	for (int i = 0; i < 4; i++) {
		ihdr[i] = (uint8_t)((uint32_t)s->w >> (24 - 8 * i));
		ihdr[4 + i] = (uint8_t)((uint32_t)s->h >> (24 - 8 * i));
	}
	ihdr[8] = (uint8_t)s->depth;
	ihdr[9] = (uint8_t)s->type;
	ihdr[12] = (uint8_t)s->interlace;
	chunk(&o, "IHDR", ihdr, 13);
	static const uint8_t text[] = "Comment\0written by test_png_fast";
	if (s->text)
		chunk(&o, "tEXt", text, sizeof text - 1);
	if (s->extra_chunk) {
		static const uint8_t plte[6] = {0, 0, 0, 255, 255, 255};
		chunk(&o, s->extra_chunk, plte, sizeof plte);
	}
	size_t bpp = (size_t)channels_of(s->type) * (size_t)(s->depth / 8 ? s->depth / 8 : 1);
	size_t rb = (size_t)s->w * bpp, n = (rb + 1) * (size_t)s->h;
	uint8_t *raw = malloc(n), *rows = malloc(rb * (size_t)s->h);
	for (int y = 0; y < s->h; y++)
		for (size_t i = 0; i < rb; i++)
			rows[(size_t)y * rb + i] = pixel((int)(i / bpp), y, (int)(i % bpp));
	for (int y = 0; y < s->h; y++) {
		int f = y == 0 ? s->first_filter : y % 5;
		const uint8_t *up = y ? rows + (size_t)(y - 1) * rb : NULL;
		raw[(size_t)y * (rb + 1)] =
			(uint8_t)(s->bad_filter_row > 0 && y == s->bad_filter_row ? 5 : f);
		filter_row(f, rows + (size_t)y * rb, up, rb, bpp,
		           raw + (size_t)y * (rb + 1) + 1);
	}
	uLongf zn = compressBound(n) + s->extra_zlib;
	uint8_t *z = malloc(zn);
	if (compress2(z, &zn, raw, n, 9) != Z_OK)
		abort();
	for (size_t i = 0; i < s->extra_zlib; i++)
		z[zn++] = 0;
	zn -= s->cut_zlib;
	size_t step = s->idat_split ? s->idat_split : zn;
	for (size_t at = 0; at < zn; at += step) {
		size_t k = zn - at < step ? zn - at : step;
		chunk(&o, "IDAT", z + at, (uint32_t)k);
		if (s->empty_idat && at == 0)
			chunk(&o, "IDAT", NULL, 0);
	}
	if (s->text)
		chunk(&o, "tEXt", text, sizeof text - 1);
	if (!s->no_iend)
		chunk(&o, "IEND", NULL, 0);
	free(z);
	free(raw);
	free(rows);
	return o;
}

/* ------------------------------------------------------------- the cases */

static bool pixels_are_written(const np_image *img, const png_spec *s)
{
	int fc = channels_of(s->type), c = fc == 2 ? 1 : fc == 4 ? 3 : fc;
	if (img->w != s->w || img->h != s->h || img->c != c)
		return false;
	for (int y = 0; y < s->h; y++)
		for (int x = 0; x < s->w; x++)
			for (int k = 0; k < c; k++)
				if (img->px[((size_t)y * (size_t)s->w + (size_t)x) * (size_t)c + (size_t)k] !=
				    pixel(x, y, k))
					return false;
	return true;
}

static png_spec base(int w, int h, int type)
{
	png_spec s = {.w = w, .h = h, .type = type};
	return s;
}

static void taken(const char *what, png_spec s)
{
	png_out o = write_png(&s);
	np_image fast = {0}, ref = {0};
	np_error err = {0};
	int r = np_png_decode_fast(o.p, o.n, &fast);
	np_status st = np_png_decode_libpng(o.p, o.n, "t.png", &ref, &err);
	ok(r == 1 && st == NP_OK && pixels_are_written(&fast, &s) &&
	   pixels_are_written(&ref, &s),
	   "%s: fast path %d, libpng %d (%s), both give the written pixels",
	   what, r, st, err.msg);
	np_image_free(&fast);
	np_image_free(&ref);
	free(o.p);
}

static void declined(const char *what, png_spec s)
{
	png_out o = write_png(&s);
	np_image fast = {0}, ref = {0}, got = {0};
	np_error e_ref = {0}, e_got = {0};
	int r = np_png_decode_fast(o.p, o.n, &fast);
	np_status st_ref = np_png_decode_libpng(o.p, o.n, "t.png", &ref, &e_ref);
	np_status st = np_image_decode(o.p, o.n, "t.png", &got, &e_got);
	bool same = st == st_ref && !strcmp(e_got.msg, e_ref.msg) &&
	            (st != NP_OK || (got.w == ref.w && got.h == ref.h &&
	             got.c == ref.c && !memcmp(got.px, ref.px,
	             (size_t)ref.w * (size_t)ref.h * (size_t)ref.c)));
	ok(r == 0 && same, "%s: declined (%d), decoded as libpng does: %s",
	   what, r, st_ref == NP_OK ? "an image" : e_ref.msg);
	np_image_free(&fast);
	np_image_free(&ref);
	np_image_free(&got);
	free(o.p);
}

int main(void)
{
	static const int types[] = {0, 2, 4, 6};
	char what[120];
	for (int t = 0; t < 4; t++)
		for (int f = 0; f < 5; f++) {
			png_spec s = base(37, 23, types[t]);
			s.first_filter = f;
			snprintf(what, sizeof what, "colour type %d, 37x23, row 0 filter %d",
			         types[t], f);
			taken(what, s);
		}
	png_spec s = base(1, 1, 0);
	taken("1x1 grey", s);
	s = base(28, 28, 0);
	s.idat_split = 1;
	taken("28x28 grey, one byte per IDAT", s);
	s = base(64, 40, 6);
	s.idat_split = 100;
	s.empty_idat = true;
	s.text = true;
	taken("64x40 RGBA, IDAT every 100 bytes, an empty IDAT, tEXt around", s);
	s = base(300, 2, 2);
	s.first_filter = 4;
	taken("300x2 RGB, Paeth first", s);

	/* 16x16 files the fast path must leave to libpng. */
#define D16 .w = 16, .h = 16
	static const struct { const char *what; png_spec s; } declines[] = {
		{"palette image", {D16, .type = 3, .extra_chunk = "PLTE"}},
		{"RGB with a suggested palette", {D16, .type = 2, .extra_chunk = "PLTE"}},
		{"16-bit grey", {D16, .depth = 16}},
		{"interlace flag set (data not interlaced)", {D16, .interlace = 1}},
		{"unknown critical chunk", {D16, .extra_chunk = "ABCD"}},
		{"filter type 5 in row 7", {D16, .bad_filter_row = 7}},
		{"bytes after the zlib stream", {D16, .extra_zlib = 3}},
		{"zlib stream cut short", {D16, .cut_zlib = 5}},
		{"no IEND", {D16, .no_iend = true}},
	};
#undef D16
	for (size_t i = 0; i < sizeof declines / sizeof declines[0]; i++)
		declined(declines[i].what, declines[i].s);

	/* A header claiming 4000x4000 over the data of 16x16: declined before
	 * the fast path allocates anything (deflate expands at most 1032:1). */
	s = base(16, 16, 0);
	png_out o = write_png(&s);
	o.p[16 + 2] = 0x0f;             /* width and height 0x00000fa0 */
	o.p[16 + 3] = 0xa0;
	o.p[20 + 2] = 0x0f;
	o.p[20 + 3] = 0xa0;
	uint32_t crc = (uint32_t)crc32(0L, o.p + 12, 17);
	for (int i = 0; i < 4; i++)
		o.p[29 + i] = (uint8_t)(crc >> (24 - 8 * i));
	np_image img = {0};
	int r = np_png_decode_fast(o.p, o.n, &img);
	ok(r == 0 && img.cap == 0, "a 4000x4000 header over 16x16 data: "
	   "declined (%d) with nothing allocated (%zu bytes)", r, img.cap);
	free(o.p);

	s = base(16, 16, 0);
	o = write_png(&s);
	o.p[40] ^= 0x20;                /* inside IDAT: its CRC fails */
	np_error e1 = {0}, e2 = {0};
	r = np_png_decode_fast(o.p, o.n, &img);
	np_status st = np_image_decode(o.p, o.n, "t.png", &img, &e1);
	np_status st_ref = np_png_decode_libpng(o.p, o.n, "t.png", &img, &e2);
	ok(r == 0 && st != NP_OK && st == st_ref && !strcmp(e1.msg, e2.msg),
	   "a flipped byte (bad CRC): declined, libpng's error: %s", e1.msg);
	np_image_free(&img);
	free(o.p);
	return done_testing();
}
