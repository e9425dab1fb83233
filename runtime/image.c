/* image.c - PNG (libpng) and JPEG (libjpeg-turbo) decoding and the
 * torchvision/PIL preprocessing; see image.h. */
#include "image.h"

#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "safeio.h"

void np_image_free(np_image *img)
{
	if (!img)
		return;
	free(img->px);
	memset(img, 0, sizeof *img);
}

static bool np_image_size_ok(int64_t w, int64_t h)
{
	return w > 0 && h > 0 && w <= INT32_MAX && h <= INT32_MAX &&
	       w * h <= NP_IMAGE_MAX_PIXELS;
}

static bool np_image_bytes(int w, int h, int c, size_t *out)
{
	size_t n;
	return w >= 0 && h >= 0 && c > 0 &&
	       np_mul_size((size_t)w, (size_t)h, &n) && np_mul_size(n, (size_t)c, out);
}

bool np_image_reserve(np_image *img, int w, int h, int c)
{
	size_t need;
	if (w <= 0 || h <= 0 || !np_image_size_ok(w, h) ||
	    !np_image_bytes(w, h, c, &need))
		return false;
	if (need > img->cap) {
		uint8_t *p = realloc(img->px, need);
		if (!p)
			return false;
		img->px = p;
		img->cap = need;
	}
	img->w = w;
	img->h = h;
	img->c = c;
	return true;
}

/* ------------------------------------------------------------------ PNG */

/* What the PNG callbacks share: the bytes, and where the error goes. */
typedef struct np_png_ctx {
	const uint8_t *data;
	size_t len, pos;
	char msg[200];
	png_bytep *rows;               /* freed after a longjmp too */
} np_png_ctx;

static void np_png_read(png_structp png, png_bytep out, size_t n)
{
	np_png_ctx *c = png_get_io_ptr(png);
	if (n > c->len - c->pos)
		png_error(png, "truncated: the file ends inside the image");
	memcpy(out, c->data + c->pos, n);
	c->pos += n;
}

/* libpng's default prints to stderr and aborts the process if the
 * handler returns: record the message and jump back to the decoder. */
static void np_png_error(png_structp png, png_const_charp msg)
{
	np_png_ctx *c = png_get_error_ptr(png);
	snprintf(c->msg, sizeof c->msg, "%s", msg);
	png_longjmp(png, 1);
}

/* Warnings (a bad ancillary chunk) change nothing PIL would show. */
static void np_png_warning(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg;
}

/* After png_read_info: the transformations to 8-bit grey or RGB; a
 * message when the image is outside what nepenc reads. */
static const char *np_png_setup(png_structp png, png_infop info)
{
	int depth = png_get_bit_depth(png, info);
	int type = png_get_color_type(png, info);
	if (type == PNG_COLOR_TYPE_PALETTE)
		png_set_palette_to_rgb(png);
	else if (depth != 8)
		return "only 8-bit images are read";
	png_set_strip_alpha(png);
	png_set_interlace_handling(png);
	png_read_update_info(png, info);
	return NULL;
}

np_status np_png_decode_libpng(const uint8_t *data, size_t len,
                               const char *file, np_image *img, np_error *err)
{
	np_png_ctx ctx = {.data = data, .len = len};
	png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx,
	                                         np_png_error, np_png_warning);
	png_infop info = png ? png_create_info_struct(png) : NULL;
	if (!info) {
		png_destroy_read_struct(&png, NULL, NULL);
		return np_fail_file(err, NP_ERR_NOMEM, file, "out of memory");
	}
	/* Everything the jump must clean up lives in ctx or in png. */
	if (setjmp(png_jmpbuf(png))) {
		free(ctx.rows);
		png_destroy_read_struct(&png, &info, NULL);
		return np_fail_file(err, NP_ERR_FORMAT, file, "undecodable PNG: %s",
		                    ctx.msg);
	}
	png_set_read_fn(png, &ctx, np_png_read);
	png_read_info(png, info);
	uint32_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
	int depth = png_get_bit_depth(png, info);
	const char *why = np_png_setup(png, info);
	np_status st = NP_OK;
	int c = png_get_channels(png, info);
	if (why)
		st = np_fail_file(err, NP_ERR_UNSUPPORTED, file, "%d-bit PNG: %s",
		                  depth, why);
	else if (!np_image_size_ok(w, h))
		st = np_fail_file(err, NP_ERR_UNSUPPORTED, file, "image of %ux%u "
		                  "pixels is too large", (unsigned)w, (unsigned)h);
	else if ((c != 1 && c != 3) || png_get_rowbytes(png, info) != (size_t)w * (size_t)c)
		st = np_fail_file(err, NP_ERR_UNSUPPORTED, file, "PNG with %d "
		                  "channels after conversion", c);
	else if (!np_image_reserve(img, (int)w, (int)h, c) ||
	         !(ctx.rows = malloc((size_t)h * sizeof *ctx.rows)))
		st = np_fail_file(err, NP_ERR_NOMEM, file, "out of memory for a "
		                  "%ux%u image", (unsigned)w, (unsigned)h);
	if (st == NP_OK) {
		for (uint32_t y = 0; y < h; y++)
			ctx.rows[y] = img->px + (size_t)y * w * (size_t)c;
		png_read_image(png, ctx.rows);
	}
	free(ctx.rows);
	png_destroy_read_struct(&png, &info, NULL);
	return st;
}

/* The common PNG without libpng (png_fast.c), everything else and every
 * error message with it. */
static np_status np_decode_png(const uint8_t *data, size_t len,
                               const char *file, np_image *img, np_error *err)
{
	int r = np_png_decode_fast(data, len, img);
	if (r > 0)
		return NP_OK;
	if (r < 0)
		return np_fail_file(err, NP_ERR_NOMEM, file, "out of memory for a "
		                    "PNG image");
	return np_png_decode_libpng(data, len, file, img, err);
}

/* ----------------------------------------------------------------- JPEG */

typedef struct np_jpeg_err {
	struct jpeg_error_mgr pub;
	jmp_buf jump;
	char msg[JMSG_LENGTH_MAX];
} np_jpeg_err;

/* libjpeg's default error_exit prints and calls exit(): jump back. */
static void np_jpeg_error_exit(j_common_ptr ci)
{
	np_jpeg_err *e = (np_jpeg_err *)(void *)ci->err;
	ci->err->format_message(ci, e->msg);
	longjmp(e->jump, 1);
}

/* A JPEG that ends early only warns (libjpeg pads it with grey); PIL
 * refuses it as truncated, and so does nepenc.  Other warnings (extra
 * bytes between markers) are silent, as in PIL. */
static void np_jpeg_message(j_common_ptr ci, int level)
{
	if (level < 0 && ci->err->msg_code == JWRN_JPEG_EOF)
		np_jpeg_error_exit(ci);
}

static np_status np_jpeg_check(const struct jpeg_decompress_struct *ci,
                               const char *file, np_error *err)
{
	if (ci->jpeg_color_space != JCS_GRAYSCALE && ci->jpeg_color_space != JCS_YCbCr &&
	    ci->jpeg_color_space != JCS_RGB)
		return np_fail_file(err, NP_ERR_UNSUPPORTED, file, "JPEG in a colour "
		                    "space other than grey or RGB (CMYK?)");
	if (ci->data_precision != 8)
		return np_fail_file(err, NP_ERR_UNSUPPORTED, file, "%d-bit JPEG: "
		                    "only 8-bit images are read", ci->data_precision);
	if (!np_image_size_ok((int64_t)ci->image_width, (int64_t)ci->image_height))
		return np_fail_file(err, NP_ERR_UNSUPPORTED, file, "image of %ux%u "
		                    "pixels is too large", ci->image_width,
		                    ci->image_height);
	return NP_OK;
}

static np_status np_decode_jpeg(const uint8_t *data, size_t len,
                                const char *file, np_image *img, np_error *err)
{
	struct jpeg_decompress_struct ci;
	np_jpeg_err je;
	ci.err = jpeg_std_error(&je.pub);
	je.pub.error_exit = np_jpeg_error_exit;
	je.pub.emit_message = np_jpeg_message;
	if (setjmp(je.jump)) {
		jpeg_destroy_decompress(&ci);
		return np_fail_file(err, NP_ERR_FORMAT, file, "undecodable JPEG: %s",
		                    je.msg);
	}
	jpeg_create_decompress(&ci);
	jpeg_mem_src(&ci, data, (unsigned long)len);
	jpeg_read_header(&ci, TRUE);
	np_status st = np_jpeg_check(&ci, file, err);
	if (st == NP_OK) {
		ci.out_color_space = ci.jpeg_color_space == JCS_GRAYSCALE ? JCS_GRAYSCALE
		                                                         : JCS_RGB;
		jpeg_start_decompress(&ci);
		if (!np_image_reserve(img, (int)ci.output_width, (int)ci.output_height,
		                      ci.output_components))
			st = np_fail_file(err, NP_ERR_NOMEM, file, "out of memory for a "
			                  "%ux%u image", ci.output_width, ci.output_height);
	}
	while (st == NP_OK && ci.output_scanline < ci.output_height) {
		JSAMPROW row = img->px + (size_t)ci.output_scanline * (size_t)img->w *
		               (size_t)img->c;
		jpeg_read_scanlines(&ci, &row, 1);
	}
	if (st == NP_OK)
		jpeg_finish_decompress(&ci);
	jpeg_destroy_decompress(&ci);
	return st;
}

np_status np_image_decode(const uint8_t *data, size_t len, const char *file,
                          np_image *img, np_error *err)
{
	static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	if (len >= 8 && memcmp(data, png_sig, 8) == 0)
		return np_decode_png(data, len, file, img, err);
	if (len >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
		return np_decode_jpeg(data, len, file, img, err);
	return np_fail_file(err, NP_ERR_FORMAT, file, "not a PNG or JPEG image%s",
	                    len == 0 ? " (empty file)" : "");
}

/* ------------------------------------------------------------- channels */

/* Pillow's rgb2l: L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16. */
static uint8_t np_luma(const uint8_t *p)
{
	return (uint8_t)(((uint32_t)p[0] * 19595u + (uint32_t)p[1] * 38470u +
	                  (uint32_t)p[2] * 7471u + 0x8000u) >> 16);
}

np_status np_image_channels(const np_image *src, int c, np_image *dst,
                            np_error *err)
{
	if (!np_image_reserve(dst, src->w, src->h, c))
		return np_fail(err, NP_ERR_NOMEM, "out of memory for a %dx%d image",
		               src->w, src->h);
	size_t n = (size_t)src->w * (size_t)src->h;
	if (src->c == c)
		memcpy(dst->px, src->px, n * (size_t)c);
	else if (c == 1)
		for (size_t i = 0; i < n; i++)
			dst->px[i] = np_luma(src->px + 3 * i);
	else
		for (size_t i = 0; i < n; i++)
			memset(dst->px + 3 * i, src->px[i], 3);
	return NP_OK;
}

/* --------------------------------------------------------------- resize */

void np_resize_dims(int w, int h, int size, int *ow, int *oh)
{
	int64_t s = w <= h ? w : h, l = w <= h ? h : w;
	/* Python's int(size * long / short): a true division in double,
	 * then truncation. */
	int nl = (int)((double)((int64_t)size * l) / (double)s);
	*ow = w <= h ? size : nl;
	*oh = w <= h ? nl : size;
}

#define NP_PRECISION_BITS (32 - 8 - 2)

/* One axis of PIL's resample: for each output index, the first input
 * index, the number of taps, and the taps as 22-bit fixed point. */
typedef struct np_taps {
	int *first, *count;
	int32_t *k;                    /* out * ksize */
	int ksize;
} np_taps;

static void np_taps_free(np_taps *t)
{
	free(t->first);
	free(t->count);
	free(t->k);
}

static double np_triangle(double x)
{
	x = fabs(x);
	return x < 1.0 ? 1.0 - x : 0.0;
}

/* PIL's precompute_coeffs + normalize_coeffs_8bpc, in the same double
 * arithmetic so the rounded taps are the same. */
static bool np_taps_make(int in, int out, np_taps *t)
{
	double scale = (double)in / out, filterscale = scale < 1.0 ? 1.0 : scale;
	double support = 1.0 * filterscale, ss = 1.0 / filterscale;
	t->ksize = (int)ceil(support) * 2 + 1;
	t->first = malloc((size_t)out * sizeof *t->first);
	t->count = malloc((size_t)out * sizeof *t->count);
	t->k = calloc((size_t)out * (size_t)t->ksize, sizeof *t->k);
	double *w = malloc((size_t)t->ksize * sizeof *w);
	if (!t->first || !t->count || !t->k || !w) {
		free(w);
		return false;
	}
	for (int xx = 0; xx < out; xx++) {
		double center = (xx + 0.5) * scale, ww = 0.0;
		int xmin = (int)(center - support + 0.5), xmax;
		xmin = xmin < 0 ? 0 : xmin;
		xmax = (int)(center + support + 0.5);
		xmax = (xmax > in ? in : xmax) - xmin;
		for (int x = 0; x < xmax; x++) {
			w[x] = np_triangle((x + xmin - center + 0.5) * ss);
			ww += w[x];
		}
		for (int x = 0; x < xmax; x++) {
			double v = ww != 0.0 ? w[x] / ww : w[x];
			t->k[xx * t->ksize + x] = (int32_t)(v < 0 ? -0.5 + v * (1 << NP_PRECISION_BITS)
			                                          : 0.5 + v * (1 << NP_PRECISION_BITS));
		}
		t->first[xx] = xmin;
		t->count[xx] = xmax;
	}
	free(w);
	return true;
}

static uint8_t np_clip8(int32_t v)
{
	v >>= NP_PRECISION_BITS;
	return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Rows [y0, y0 + rows) of src resampled along x into dst (rows x ow). */
static void np_resample_x(const np_image *src, int y0, int rows,
                          const np_taps *t, int ow, uint8_t *dst)
{
	int c = src->c;
	for (int y = 0; y < rows; y++) {
		const uint8_t *in = src->px + (size_t)(y0 + y) * (size_t)src->w * (size_t)c;
		uint8_t *o = dst + (size_t)y * (size_t)ow * (size_t)c;
		for (int xx = 0; xx < ow; xx++) {
			const int32_t *k = t->k + xx * t->ksize;
			const uint8_t *p = in + (size_t)t->first[xx] * (size_t)c;
			for (int ch = 0; ch < c; ch++) {
				int32_t s = 1 << (NP_PRECISION_BITS - 1);
				for (int x = 0; x < t->count[xx]; x++)
					s += p[x * c + ch] * k[x];
				o[xx * c + ch] = np_clip8(s);
			}
		}
	}
}

/* in (w x rows, interleaved) resampled along y into dst (w x oh); taps'
 * first indices are relative to in's first row. */
static void np_resample_y(const uint8_t *in, int w, int c, const np_taps *t,
                          int y_shift, int oh, uint8_t *dst)
{
	size_t stride = (size_t)w * (size_t)c;
	for (int yy = 0; yy < oh; yy++) {
		const int32_t *k = t->k + yy * t->ksize;
		const uint8_t *p = in + (size_t)(t->first[yy] - y_shift) * stride;
		for (size_t i = 0; i < stride; i++) {
			int32_t s = 1 << (NP_PRECISION_BITS - 1);
			for (int y = 0; y < t->count[yy]; y++)
				s += p[(size_t)y * stride + i] * k[y];
			dst[(size_t)yy * stride + i] = np_clip8(s);
		}
	}
}

np_status np_image_resize(const np_image *src, int ow, int oh, np_image *dst,
                          np_error *err)
{
	np_taps tx = {0}, ty = {0};
	uint8_t *tmp = NULL;
	bool ok = np_image_reserve(dst, ow, oh, src->c) &&
	          np_taps_make(src->w, ow, &tx) && np_taps_make(src->h, oh, &ty);
	/* As PIL: only the rows the vertical pass reads are resampled along
	 * x; a pass whose size does not change is skipped. */
	int y0 = ok ? ty.first[0] : 0;
	int y1 = ok ? ty.first[oh - 1] + ty.count[oh - 1] : 0;
	const uint8_t *rows = src->px;
	int shift = 0;
	if (ok && ow != src->w) {
		size_t bytes;
		ok = np_image_bytes(ow, y1 - y0, src->c, &bytes) &&
		     (tmp = malloc(bytes ? bytes : 1));
		if (ok) {
			np_resample_x(src, y0, y1 - y0, &tx, ow, tmp);
			rows = tmp;
			shift = y0;
		}
	}
	if (ok && oh != src->h)
		np_resample_y(rows, ow, src->c, &ty, shift, oh, dst->px);
	else if (ok)
		memcpy(dst->px, rows, (size_t)ow * (size_t)oh * (size_t)src->c);
	free(tmp);
	np_taps_free(&tx);
	np_taps_free(&ty);
	if (!ok)
		return np_fail(err, NP_ERR_NOMEM, "out of memory resizing a %dx%d "
		               "image to %dx%d", src->w, src->h, ow, oh);
	return NP_OK;
}

/* ------------------------------------------------------------ cropping */

void np_center_crop_origin(int w, int h, int cw, int ch, int *top, int *left)
{
	/* torchvision pads a side that is too short (left/top get the
	 * smaller half), then rounds half to even: Python's round(). */
	int pl = cw > w ? (cw - w) / 2 : 0, pt = ch > h ? (ch - h) / 2 : 0;
	int pw = w + (cw > w ? cw - w : 0), ph = h + (ch > h ? ch - h : 0);
	*top = (int)nearbyint((ph - ch) / 2.0) - pt;
	*left = (int)nearbyint((pw - cw) / 2.0) - pl;
}

void np_image_window(const np_image *img, int top, int left, int ch, int cw,
                     const float (*lut)[256], float *out)
{
	int c = img->c;
	for (int k = 0; k < c; k++) {
		float *o = out + (size_t)k * (size_t)ch * (size_t)cw;
		for (int y = 0; y < ch; y++) {
			int sy = y + top;
			for (int x = 0; x < cw; x++) {
				int sx = x + left;
				bool in = sy >= 0 && sy < img->h && sx >= 0 && sx < img->w;
				uint8_t v = in ? img->px[((size_t)sy * (size_t)img->w + (size_t)sx) *
				                         (size_t)c + (size_t)k] : 0;
				o[(size_t)y * (size_t)cw + (size_t)x] = lut[k][v];
			}
		}
	}
}
