/* image.h - PNG and JPEG images decoded from memory, and the
 * preprocessing torchvision 0.14 applies to a PIL image, bit for bit on
 * 8-bit pixels (DESIGN.md section 8, folder: data).
 *
 * Decoding is hostile input: libpng's and libjpeg's error handlers are
 * replaced by ones that longjmp back here (their defaults print, and
 * libjpeg's calls exit()), warnings are silenced, a truncated image is an
 * error (as PIL says "image file is truncated"), and an image's pixel
 * count is capped before its pixels are allocated.
 */
#ifndef NEPENC_IMAGE_H
#define NEPENC_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Larger images are refused before their pixels are allocated. */
#define NP_IMAGE_MAX_PIXELS ((int64_t)1 << 26)

/* An 8-bit image, interleaved (HWC); c is 1 (grey) or 3 (RGB). */
typedef struct np_image {
	int w, h, c;
	uint8_t *px;                   /* h * w * c bytes; owned, grown */
	size_t cap;                    /* bytes allocated at px */
} np_image;

void np_image_free(np_image *img);

/* Decode the PNG or JPEG (told by its signature) of len bytes at data
 * into img, reusing img's buffer.  Alpha is dropped and a palette
 * expanded, as PIL's convert("RGB") does; grey stays grey.  Only 8-bit
 * samples (and palettes) are read.  Errors name file: NP_ERR_FORMAT for
 * data that is not an image or does not decode, NP_ERR_UNSUPPORTED for a
 * valid image nepenc does not read (16-bit, CMYK, too large). */
np_status np_image_decode(const uint8_t *data, size_t len, const char *file,
                          np_image *img, np_error *err);

/* Room in img for w x h x c pixels (img->w, h, c set, the buffer grown,
 * never shrunk); false if the size is over NP_IMAGE_MAX_PIXELS or
 * overflows, or out of memory. */
bool np_image_reserve(np_image *img, int w, int h, int c);

/* The two paths np_image_decode takes for a PNG, exposed for the tests
 * and the fuzz target.  np_png_decode_fast (png_fast.c) reads the common
 * case -- 8-bit grey, grey+alpha, RGB or RGBA, not interlaced, every
 * check passing -- with zlib alone, 3x faster than libpng on small
 * images: 1 decoded into img, 0 declined (anything else, including every
 * damaged file), -1 out of memory.  What it decodes equals
 * np_png_decode_libpng's output; what it declines goes to libpng, which
 * decodes it or names the error. */
int np_png_decode_fast(const uint8_t *data, size_t len, np_image *img);
np_status np_png_decode_libpng(const uint8_t *data, size_t len,
                               const char *file, np_image *img, np_error *err);

/* src with c channels into dst: grey to RGB repeats the grey value, RGB
 * to grey is PIL's convert("L") (ITU-R 601-2 luma in 16-bit fixed
 * point).  dst may not be src. */
np_status np_image_channels(const np_image *src, int c, np_image *dst,
                            np_error *err);

/* torchvision's Resize(size): the shorter side becomes size, the longer
 * int(size * long / short). */
void np_resize_dims(int w, int h, int size, int *ow, int *oh);

/* PIL's Image.resize((ow, oh), BILINEAR): a triangle filter stretched
 * by the scale when downscaling (antialiasing), horizontal pass then
 * vertical, 22-bit fixed-point weights.  dst may not be src. */
np_status np_image_resize(const np_image *src, int ow, int oh, np_image *dst,
                          np_error *err);

/* Top-left corner of torchvision's CenterCrop((ch, cw)) in src's
 * coordinates (negative, or past the edge, where it pads with 0). */
void np_center_crop_origin(int w, int h, int cw, int ch, int *top, int *left);

/* The ch x cw window of img at (top, left) as CHW floats: lut[c][v] for
 * a pixel of value v in channel c, lut[c][0] outside the image. */
void np_image_window(const np_image *img, int top, int left, int ch, int cw,
                     const float (*lut)[256], float *out);

#endif
