/* fuzz_image.c - libFuzzer target: the folder: decoders' front end
 * (runtime/image.c): an input is one image file, PNG or JPEG by its
 * signature; what decodes goes through the channel conversions, a
 * Resize and a centre crop as a folder's examples do.  libpng's and
 * libjpeg's errors must come back as np_status, never print or exit.
 *
 * A PNG also goes through both PNG paths: what the fast path
 * (png_fast.c) decodes, libpng must decode to the same pixels, or the
 * target aborts.  Random bytes rarely keep a chunk's CRC right, so an
 * input of odd length has its CRCs rewritten first: the fuzzer then gets
 * past the checks to the header, filters and deflate data. */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "fuzz.h"
#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bigger decoded images are not resized: the fuzzer looks for crashes,
 * not for slow inputs. */
#define FZ_MAX_RESIZE_PIXELS (1 << 18)

static void preprocess(const np_image *img, size_t size)
{
	static float lut[3][256];
	np_image grey = {0}, rgb = {0}, small = {0};
	np_error err = {0};
	int side = 1 + (int)(size % 40), ow, oh, top, left;
	if (np_image_channels(img, 1, &grey, &err) == NP_OK &&
	    np_image_channels(img, 3, &rgb, &err) == NP_OK &&
	    (int64_t)img->w * img->h <= FZ_MAX_RESIZE_PIXELS) {
		np_resize_dims(rgb.w, rgb.h, side, &ow, &oh);
		if (ow > 0 && oh > 0 && (int64_t)ow * oh <= FZ_MAX_RESIZE_PIXELS &&
		    np_image_resize(&rgb, ow, oh, &small, &err) == NP_OK) {
			float *out = malloc(sizeof(float) * 3 * 16 * 16);
			np_center_crop_origin(small.w, small.h, 16, 16, &top, &left);
			if (out)
				np_image_window(&small, top, left, 16, 16, lut, out);
			free(out);
		}
	}
	np_image_free(&grey);
	np_image_free(&rgb);
	np_image_free(&small);
}

static void store_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Every chunk's CRC in buf (a PNG of n bytes) set right, as far as the
 * chunk lengths lead. */
static void fix_crcs(uint8_t *buf, size_t n)
{
	size_t at = 8;
	while (n - at >= 12) {
		uint32_t len = (uint32_t)buf[at] << 24 | (uint32_t)buf[at + 1] << 16 |
		               (uint32_t)buf[at + 2] << 8 | buf[at + 3];
		if (len > n - at - 12)
			break;
		uint32_t crc = (uint32_t)crc32(0L, buf + at + 4, 4 + len);
		store_be32(buf + at + 8 + len, crc);
		at += 12 + (size_t)len;
	}
}

static void put_chunk(uint8_t *out, size_t *at, const char *type,
                      const uint8_t *data, uint32_t len)
{
	uint8_t *p = out + *at;
	store_be32(p, len);
	memcpy(p + 4, type, 4);
	if (len)
		memcpy(p + 8, data, len);
	store_be32(p + 8 + len, (uint32_t)crc32(0L, p + 4, 4 + len));
	*at += 12 + (size_t)len;
}

/* A PNG from arbitrary bytes: data[0..3] give width, height (1..64),
 * colour type (0, 2, 4, 6, or 3 with a palette) and how many IDAT chunks;
 * the rest, repeated or cut to size, are the filtered rows (filter bytes
 * included, so unknown filter types come too).  *n its size; NULL when
 * the input is too short or memory runs out. */
static uint8_t *synthesize_png(const uint8_t *data, size_t size, size_t *n)
{
	static const int types[5] = {0, 2, 4, 6, 3}, bpps[7] = {1, 0, 3, 1, 2, 0, 4};
	if (size < 5)
		return NULL;
	uint32_t w = 1 + data[0] % 64, h = 1 + data[1] % 64;
	int type = types[data[2] % 5], pieces = 1 + data[3] % 4;
	size_t raw_n = (size_t)h * (1 + (size_t)w * (size_t)bpps[type]);
	uLongf z_n = compressBound(raw_n);
	uint8_t *raw = malloc(raw_n), *z = malloc(z_n);
	uint8_t *out = malloc(z_n + 12 * (size_t)pieces + 8 + 25 + 18 + 12);
	if (!raw || !z || !out)
		goto fail;
	for (size_t i = 0; i < raw_n; i++)
		raw[i] = data[4 + i % (size - 4)];
	if (compress2(z, &z_n, raw, raw_n, data[3] / 4 % 10) != Z_OK)
		goto fail;
	static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	uint8_t ihdr[13] = {0, 0, 0, (uint8_t)w, 0, 0, 0, (uint8_t)h, 8,
	                    (uint8_t)type, 0, 0, 0};
	static const uint8_t plte[6] = {0, 0, 0, 255, 128, 7};
	size_t at = 8, step = z_n / (size_t)pieces + 1;
	memcpy(out, sig, 8);
	put_chunk(out, &at, "IHDR", ihdr, 13);
	if (type == 3)
		put_chunk(out, &at, "PLTE", plte, sizeof plte);
	for (size_t off = 0; off < z_n; off += step)
		put_chunk(out, &at, "IDAT", z + off,
		          (uint32_t)(z_n - off < step ? z_n - off : step));
	put_chunk(out, &at, "IEND", NULL, 0);
	free(raw);
	free(z);
	*n = at;
	return out;
fail:
	free(raw);
	free(z);
	free(out);
	return NULL;
}

/* The fast path's output, if any, equals libpng's. */
static void compare_png_paths(const uint8_t *data, size_t size)
{
	np_image fast = {0}, ref = {0};
	np_error err = {0};
	if (np_png_decode_fast(data, size, &fast) == 1) {
		np_status st = np_png_decode_libpng(data, size, "fuzz", &ref, &err);
		if (st != NP_OK || ref.w != fast.w || ref.h != fast.h ||
		    ref.c != fast.c ||
		    memcmp(ref.px, fast.px, (size_t)ref.w * (size_t)ref.h * (size_t)ref.c))
			abort();
	}
	np_image_free(&fast);
	np_image_free(&ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	uint8_t *fixed = NULL;
	if (size >= 8 && !memcmp(data, png_sig, 8)) {
		if (size % 2 && (fixed = malloc(size))) {
			memcpy(fixed, data, size);
			fix_crcs(fixed, size);
			data = fixed;
		}
		compare_png_paths(data, size);
	} else {
		size_t n;
		uint8_t *png = synthesize_png(data, size, &n);
		if (png)
			compare_png_paths(png, n);
		free(png);
	}
	np_image img = {0};
	np_error err = {0};
	if (np_image_decode(data, size, "fuzz", &img, &err) == NP_OK)
		preprocess(&img, size);
	np_image_free(&img);
	free(fixed);
	return 0;
}
