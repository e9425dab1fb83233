/* fuzz_image.c - libFuzzer target: the folder: decoders' front end
 * (runtime/image.c): an input is one image file, PNG or JPEG by its
 * signature; what decodes goes through the channel conversions, a
 * Resize and a centre crop as a folder's examples do.  libpng's and
 * libjpeg's errors must come back as np_status, never print or exit. */
#include <stdlib.h>
#include <string.h>

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	np_image img = {0};
	np_error err = {0};
	if (np_image_decode(data, size, "fuzz", &img, &err) == NP_OK)
		preprocess(&img, size);
	np_image_free(&img);
	return 0;
}
