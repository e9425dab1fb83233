/* png_fast.c - the common PNG (8-bit grey, grey+alpha, RGB, RGBA, not
 * interlaced) decoded without libpng, with libdeflate; see
 * np_png_decode_fast in image.h.
 *
 * Why: a folder: run decodes on the same cores that train, and on a
 * Fashion-MNIST PNG (28x28 grey, ~300 bytes) libpng takes 12.4 us: it
 * hands zlib one row of output at a time, too little room for zlib's
 * fast loop, so every symbol goes through inflate's slow state machine.
 * One zlib call for the whole image still takes 9.6 us (building the
 * Huffman tables dominates at this size); libdeflate, which inflates a
 * whole buffer, 5.9 us (tests/bench: bench/folders, docs/performance.md).
 *
 * Safety: this path decides nothing about a bad file.  Anything it does
 * not fully check -- a palette, 16 or fewer than 8 bits, interlacing, a
 * critical chunk it does not know, a bad CRC, a deflate error, image data
 * that is short, long or followed by more data, a missing IEND -- makes
 * it decline, and libpng decodes the file or says what is wrong with it
 * in the words it always did.  What it accepts it decodes exactly as
 * libpng does (tests/test_image on every filter and colour type;
 * tests/fuzz/fuzz_image compares the two on every input it runs).
 *
 * The layout (PNG specification, sections 5 and 11): an 8-byte
 * signature, then chunks of length (4 bytes, big-endian, < 2^31), type
 * (4 letters; a capital first letter marks a critical chunk), data, and
 * a CRC-32 of type and data.  IHDR comes first; the IDAT chunks are
 * consecutive and their data together is one zlib stream of h rows, each
 * a filter-type byte and w x channels bytes; IEND ends the file. */
#include "image.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libdeflate.h>

#include "safeio.h"

/* libpng's default limits (png_set_user_limits, pngpriv.h): larger
 * images and ancillary chunks are libpng's to accept or refuse. */
#define NP_PNG_MAX_SIDE 1000000u
#define NP_PNG_MAX_CHUNK 8000000u

static uint32_t np_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* One chunk as found at pos: its type and data. */
typedef struct np_png_chunk {
	const uint8_t *type, *data;
	uint32_t len;
} np_png_chunk;

static bool np_is_letter(uint8_t b)
{
	return (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z');
}

/* The chunk at *pos, its CRC checked; false if it is cut short, too
 * long, badly named or damaged. */
static bool np_png_next(const uint8_t *data, size_t len, size_t *pos,
                        np_png_chunk *ck)
{
	size_t at = *pos;
	if (len - at < 12)
		return false;
	ck->len = np_be32(data + at);
	ck->type = data + at + 4;
	ck->data = data + at + 8;
	if (ck->len > 0x7fffffffu || len - at - 12 < ck->len)
		return false;
	for (int i = 0; i < 4; i++)
		if (!np_is_letter(ck->type[i]))
			return false;
	uint32_t crc = libdeflate_crc32(0, ck->type, 4 + (size_t)ck->len);
	if (crc != np_be32(ck->data + ck->len))
		return false;
	*pos = at + 12 + ck->len;
	return true;
}

static bool np_png_is(const np_png_chunk *ck, const char *type)
{
	return memcmp(ck->type, type, 4) == 0;
}

static bool np_png_critical(const np_png_chunk *ck)
{
	return ck->type[0] >= 'A' && ck->type[0] <= 'Z';
}

/* The header fields this path reads: w x h, 8-bit, colour types 0 (grey),
 * 2 (RGB), 4 (grey+alpha), 6 (RGBA), no interlace; channels in the file. */
static bool np_png_header(const np_png_chunk *ck, uint32_t *w, uint32_t *h,
                          int *channels)
{
	static const int channels_of[7] = {1, 0, 3, 0, 2, 0, 4};
	if (!np_png_is(ck, "IHDR") || ck->len != 13)
		return false;
	const uint8_t *p = ck->data;
	*w = np_be32(p);
	*h = np_be32(p + 4);
	if (*w == 0 || *h == 0 || *w > NP_PNG_MAX_SIDE || *h > NP_PNG_MAX_SIDE)
		return false;
	if (p[8] != 8 || p[9] > 6 || !channels_of[p[9]] || p[10] != 0 ||
	    p[11] != 0 || p[12] != 0)
		return false;
	*channels = channels_of[p[9]];
	return true;
}

static uint8_t np_paeth(uint8_t a, uint8_t b, uint8_t c)
{
	int p = a + b - c;
	int pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
	if (pa <= pb && pa <= pc)
		return a;
	return pb <= pc ? b : c;
}

/* Undo the row filter of row (n bytes, bpp bytes per pixel) in place,
 * given the row above already unfiltered, or NULL for the first row,
 * whose row above counts as zeros. */
static bool np_png_unfilter(int type, uint8_t *row, const uint8_t *up,
                            size_t n, size_t bpp)
{
	if (!up && (type == 2 || type == 4))   /* Up: None; Paeth: Sub */
		type = type == 2 ? 0 : 1;
	switch (type) {
	case 0:
		return true;
	case 1:
		for (size_t i = bpp; i < n; i++)
			row[i] = (uint8_t)(row[i] + row[i - bpp]);
		return true;
	case 2:
		for (size_t i = 0; i < n; i++)
			row[i] = (uint8_t)(row[i] + up[i]);
		return true;
	case 3:
		for (size_t i = 0; i < n; i++) {
			unsigned left = i >= bpp ? row[i - bpp] : 0;
			row[i] = (uint8_t)(row[i] + ((left + (up ? up[i] : 0u)) >> 1));
		}
		return true;
	case 4:
		for (size_t i = 0; i < n; i++) {
			uint8_t a = i >= bpp ? row[i - bpp] : 0;
			uint8_t c = i >= bpp ? up[i - bpp] : 0;
			row[i] = (uint8_t)(row[i] + np_paeth(a, up[i], c));
		}
		return true;
	default:
		return false;
	}
}

/* Where the image data is: the consecutive IDAT chunks from the chunk
 * just read (*ck, ending at pos), then ancillary chunks up to an empty
 * IEND.  *first is the first IDAT, *count and *total their number and
 * data bytes; false if the layout is anything else. */
static bool np_png_layout(const uint8_t *data, size_t len, size_t pos,
                          np_png_chunk *ck, np_png_chunk *first, int *count,
                          size_t *total)
{
	*first = *ck;
	*count = 0;
	*total = 0;
	for (; np_png_is(ck, "IDAT"); ++*count) {
		*total += ck->len;
		if (!np_png_next(data, len, &pos, ck))
			return false;
	}
	while (!np_png_is(ck, "IEND")) {
		if (np_png_critical(ck) || ck->len > NP_PNG_MAX_CHUNK ||
		    !np_png_next(data, len, &pos, ck))
			return false;
	}
	return ck->len == 0;
}

/* The data of count IDAT chunks from first (total bytes) inflated into
 * raw: exactly n bytes that end the zlib stream with all of the data
 * read.  1, 0 (declined) or -1 (out of memory).  libdeflate inflates one
 * buffer: the data of several chunks is joined first (a 28x28 image has
 * one; PIL writes one per 64 KiB). */
static int np_png_inflate(np_png_chunk first, int count, size_t total,
                          uint8_t *raw, size_t n)
{
	const uint8_t *in = first.data;
	uint8_t *joined = NULL;
	if (count > 1) {
		if (!(joined = malloc(total)))
			return -1;
		/* np_png_layout checked these chunks (lengths, CRCs): step over
		 * them by their lengths, without checking again. */
		const uint8_t *at = first.data - 8;
		size_t off = 0;
		for (int i = 0; i < count; i++) {
			uint32_t k = np_be32(at);
			memcpy(joined + off, at + 8, k);
			off += k;
			at += 12 + (size_t)k;
		}
		in = joined;
	}
	struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
	int r = -1;
	if (d) {
		size_t used, made;
		r = libdeflate_zlib_decompress_ex(d, in, total, raw, n, &used,
		                                  &made) == LIBDEFLATE_SUCCESS &&
		    used == total && made == n;
		libdeflate_free_decompressor(d);
	}
	free(joined);
	return r;
}

/* raw (h rows of a filter byte and rb bytes) unfiltered in place, then
 * copied to img without alpha; false on an unknown filter type. */
static bool np_png_rows(uint8_t *raw, uint32_t w, uint32_t h, int fc,
                        np_image *img)
{
	size_t rb = (size_t)w * (size_t)fc, stride = rb + 1;
	size_t c = (size_t)img->c;
	const uint8_t *up = NULL;
	for (uint32_t y = 0; y < h; y++) {
		uint8_t *row = raw + (size_t)y * stride;
		if (!np_png_unfilter(row[0], row + 1, up, rb, (size_t)fc))
			return false;
		up = row + 1;
		uint8_t *out = img->px + (size_t)y * w * c;
		if (c == (size_t)fc)
			memcpy(out, row + 1, rb);
		else
			for (uint32_t x = 0; x < w; x++)
				memcpy(out + x * c, row + 1 + (size_t)x * (size_t)fc, c);
	}
	return true;
}

int np_png_decode_fast(const uint8_t *data, size_t len, np_image *img)
{
	static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	size_t pos = 8;
	np_png_chunk ck;
	uint32_t w, h;
	int fc;
	if (len < 8 || memcmp(data, sig, 8) != 0 ||
	    !np_png_next(data, len, &pos, &ck) || !np_png_header(&ck, &w, &h, &fc))
		return 0;
	/* Ancillary chunks before the image data are skipped; PLTE (a
	 * suggested palette for RGB) and any other critical chunk are
	 * libpng's. */
	do {
		if (!np_png_next(data, len, &pos, &ck))
			return 0;
		if (!np_png_is(&ck, "IDAT") &&
		    (np_png_critical(&ck) || ck.len > NP_PNG_MAX_CHUNK))
			return 0;
	} while (!np_png_is(&ck, "IDAT"));
	np_png_chunk first;
	int count;
	size_t total, rb = (size_t)w * (size_t)fc, n;
	if (!np_png_layout(data, len, pos, &ck, &first, &count, &total) ||
	    !np_mul_size(rb + 1, h, &n))
		return 0;
	/* Deflate expands at most 1032:1: a header claiming more pixels than
	 * the data can hold is declined before anything is allocated. */
	if (n / 1032 > total + 1)
		return 0;
	int c = fc == 2 ? 1 : fc == 4 ? 3 : fc;
	if (!np_image_reserve(img, (int)w, (int)h, c))
		return (int64_t)w * h <= NP_IMAGE_MAX_PIXELS ? -1 : 0;
	uint8_t *raw = malloc(n);
	if (!raw)
		return -1;
	int r = np_png_inflate(first, count, total, raw, n);
	if (r == 1 && !np_png_rows(raw, w, h, fc, img))
		r = 0;
	free(raw);
	return r;
}
