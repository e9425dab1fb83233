/* test_image.c - TAP: folder: preprocessing against torchvision.
 *
 * For every case of tests/fixtures/preprocess/cases.txt (made by
 * tests/make-preprocess-fixtures.py with torchvision 0.14 on PIL images:
 * convert RGB/L, Resize, CenterCrop, ToTensor, Normalize), the example
 * nepenc reads from the case's folder equals the stored tensor within
 * 1e-3 per value, with the same dims.  Then the decoders' edges: bytes
 * that are no image, a PNG and a JPEG cut short, an empty file, each an
 * error naming the file; and the centre-crop corner against Python's
 * round-half-even.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "image.h"
#include "tap.h"

#define TOL 1e-3

static int parse_list(const char *s, double *v)
{
	int n = 0;
	char buf[256];
	snprintf(buf, sizeof buf, "%s", s);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && n < 16;
	     t = strtok_r(NULL, ",", &save))
		v[n++] = atof(t);
	return n;
}

/* The first example of a dataset, through np_batches. */
static int first_example(const np_dataset *d, const float **x, np_batches **b)
{
	const int32_t *y;
	int64_t n;
	np_error err = {0};
	if (np_batches_open(d, NULL, d->n, 1, NULL, NULL, NULL, b, &err) != NP_OK ||
	    np_batches_next(*b, x, &y, &n, &err) != NP_OK || n != 1) {
		printf("# %s: %s\n", err.file, err.msg);
		return 0;
	}
	return 1;
}

static void one_case(const char *top, const char *line)
{
	char name[64], folder[64], mean[128], stdv[128];
	int resize, crop, ch;
	if (sscanf(line, "%63s %63s %d %d %d %127s %127s", name, folder, &resize,
	           &crop, &ch, mean, stdv) != 7)
		return;
	np_data_opts o = {.resize = resize, .crop = crop, .channels = ch, .workers = 2};
	double sd[16];
	if (parse_list(stdv, sd) != 1 || sd[0] != 0) {
		o.n_mean = parse_list(mean, o.mean);
		o.n_std = parse_list(stdv, o.std);
	}
	char spec[1200], want_spec[1200];
	snprintf(spec, sizeof spec, "folder:%s/%s", top, folder);
	snprintf(want_spec, sizeof want_spec, "npy:%s/%s.npy", top, name);
	np_dataset d = {0}, want = {0};
	np_error err = {0};
	np_batches *b = NULL;
	const float *x = NULL;
	int loaded = np_data_load(spec, &o, &d, &err) == NP_OK &&
	             np_data_load(want_spec, NULL, &want, &err) == NP_OK;
	if (!loaded)
		printf("# %s: %s\n", err.file, err.msg);
	int same_dims = loaded && d.rank == want.rank &&
	                !memcmp(d.dims, want.dims, sizeof(int64_t) * (size_t)d.rank);
	ok(same_dims, "%s: dims [%lld,%lld,%lld] as torchvision's", name,
	   (long long)d.dims[0], (long long)d.dims[1], (long long)d.dims[2]);
	double worst = INFINITY;
	if (same_dims && first_example(&d, &x, &b)) {
		worst = 0;
		for (int64_t i = 0; i < d.example_size; i++)
			worst = fmax(worst, fabs((double)x[i] - want.x[i]));
	}
	ok(worst <= TOL, "%s: max |nepenc - torchvision| = %.3g (<= %g)", name,
	   worst, TOL);
	np_batches_close(b);
	np_dataset_free(&d);
	np_dataset_free(&want);
}

static void decode_fails(const char *what, const uint8_t *data, size_t len,
                         np_status want)
{
	np_image img = {0};
	np_error err = {0};
	np_status st = np_image_decode(data, len, "the-file", &img, &err);
	ok(st == want && !strcmp(err.file, "the-file") && err.msg[0],
	   "%s: status %d (want %d), names the file: %s", what, st, want, err.msg);
	np_image_free(&img);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = malloc(1 << 20);
	*len = f && buf ? fread(buf, 1, 1 << 20, f) : 0;
	if (f)
		fclose(f);
	return buf;
}

static void hostile(const char *top)
{
	static const uint8_t junk[] = "GIF89a not what nepenc reads";
	decode_fails("not an image", junk, sizeof junk, NP_ERR_FORMAT);
	decode_fails("empty file", junk, 0, NP_ERR_FORMAT);
	char path[1200];
	size_t len;
	snprintf(path, sizeof path, "%s/rgb37x23/x/a.png", top);
	uint8_t *png = slurp(path, &len);
	decode_fails("PNG cut in half", png, len / 2, NP_ERR_FORMAT);
	decode_fails("PNG signature only", png, 8, NP_ERR_FORMAT);
	png[len / 2] ^= 0x55;   /* a flipped byte: the IDAT CRC fails */
	decode_fails("PNG with a corrupt chunk", png, len, NP_ERR_FORMAT);
	free(png);
	snprintf(path, sizeof path, "%s/jpg41x29/x/a.jpg", top);
	uint8_t *jpg = slurp(path, &len);
	decode_fails("JPEG cut in half", jpg, len / 2, NP_ERR_FORMAT);
	decode_fails("JPEG header only", jpg, 40, NP_ERR_FORMAT);
	free(jpg);
}

static void crop_rounding(void)
{
	/* Python: round((23 - 16) / 2) = round(3.5) = 4; round(2.5) = 2. */
	int top, left;
	np_center_crop_origin(21, 23, 16, 16, &top, &left);
	ok(top == 4 && left == 2, "centre crop rounds half to even: top %d left %d",
	   top, left);
	/* 10 wide into 12: pad 1 left, 1 right -> the window starts at -1. */
	np_center_crop_origin(10, 10, 12, 12, &top, &left);
	ok(top == -1 && left == -1, "centre crop of a smaller image pads: %d %d",
	   top, left);
	int ow, oh;
	np_resize_dims(37, 23, 16, &ow, &oh);
	ok(ow == 25 && oh == 16, "Resize(16) of 37x23 is 25x16: %dx%d", ow, oh);
}

int main(void)
{
	const char *src = getenv("top_srcdir");
	char top[1024], path[1100], line[512];
	snprintf(top, sizeof top, "%s/tests/fixtures/preprocess", src ? src : ".");
	snprintf(path, sizeof path, "%s/cases.txt", top);
	FILE *f = fopen(path, "r");
	if (!f)
		return skip_all("tests/fixtures/preprocess/cases.txt not found (set top_srcdir)");
	while (fgets(line, sizeof line, f))
		if (line[0] != '#')
			one_case(top, line);
	fclose(f);
	hostile(top);
	crop_rounding();
	return done_testing();
}
