/* folder.c - folder:DIR datasets (images in one sub-folder per class);
 * see folder.h and data.h.
 *
 * The order is torchvision's ImageFolder's, so a run sees the examples
 * a PyTorch user's loader gives: classes sorted by name (byte order, as
 * Python sorts UTF-8 names), and in each class the files of every folder
 * below it, folders in sorted path order, files sorted by name.  Only the
 * names are kept; images are decoded when a batch needs them.
 */
#define _DEFAULT_SOURCE   /* struct dirent's d_type names (DT_DIR) */
#include "folder.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "progress.h"
#include "safeio.h"

#define NP_PATH_BUF 4096
/* Symbolic links are followed (as os.walk(followlinks=True)); a loop
 * ends here. */
#define NP_MAX_DEPTH 32
/* Larger files are not read as images. */
#define NP_MAX_IMAGE_FILE ((int64_t)256 << 20)

/* ----------------------------------------------------------- name lists */

/* Strings in one growing block; the list owns it. */
typedef struct np_names {
	char *buf;
	size_t len, cap;
	size_t *off;
	int64_t n, ncap;
} np_names;

static void np_names_free(np_names *l)
{
	free(l->buf);
	free(l->off);
	memset(l, 0, sizeof *l);
}

static bool np_names_add(np_names *l, const char *s)
{
	size_t k = strlen(s) + 1;
	if (l->len + k > l->cap) {
		size_t cap = l->cap ? l->cap : 4096;
		while (cap < l->len + k)
			cap *= 2;
		char *b = realloc(l->buf, cap);
		if (!b)
			return false;
		l->buf = b;
		l->cap = cap;
	}
	if (l->n == l->ncap) {
		int64_t nc = l->ncap ? 2 * l->ncap : 256;
		size_t *o = realloc(l->off, (size_t)nc * sizeof *o);
		if (!o)
			return false;
		l->off = o;
		l->ncap = nc;
	}
	memcpy(l->buf + l->len, s, k);
	l->off[l->n++] = l->len;
	l->len += k;
	return true;
}

static const char *np_name(const np_names *l, int64_t i)
{
	return l->buf + l->off[i];
}

static const np_names *np_sort_list;

static int np_cmp_off(const void *a, const void *b)
{
	return strcmp(np_sort_list->buf + *(const size_t *)a,
	              np_sort_list->buf + *(const size_t *)b);
}

/* Sort entries [from, n) by name (byte order). qsort's comparator has
 * no context argument; listing runs in the loading thread only. */
static void np_names_sort(np_names *l, int64_t from)
{
	if (l->n - from < 2)
		return;
	np_sort_list = l;
	qsort(l->off + from, (size_t)(l->n - from), sizeof *l->off, np_cmp_off);
	np_sort_list = NULL;
}

/* ------------------------------------------------------------- listing */

static bool np_is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Is entry e of a listing (full: its path) a folder, following links as
 * os.walk(followlinks=True) does?  The listing's type says it for plain
 * files and folders; only links and file systems that leave the type
 * out cost a stat(): a scan of a folder of small images was otherwise
 * one stat() per file and pass. */
static bool np_entry_is_dir(const struct dirent *e, const char *full)
{
#ifdef _DIRENT_HAVE_D_TYPE
	if (e->d_type == DT_DIR)
		return true;
	if (e->d_type != DT_UNKNOWN && e->d_type != DT_LNK)
		return false;
#else
	(void)e;
#endif
	return np_is_dir(full);
}

/* torchvision's IMG_EXTENSIONS, case-insensitive: files named so are
 * examples (nepenc decodes PNG and JPEG; another format is an error,
 * not a silent difference from PyTorch's data set). */
static bool np_is_image_name(const char *name)
{
	static const char *const ext[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp",
	                                  ".pgm", ".tif", ".tiff", ".webp"};
	size_t n = strlen(name);
	for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
		size_t k = strlen(ext[i]);
		if (n > k && strcasecmp(name + n - k, ext[i]) == 0)
			return true;
	}
	return false;
}

/* The entries of folder path (relative rel) into dirs (sub-folders, as
 * rel paths) and files (image names, as rel paths); either may be NULL
 * when not wanted. */
static np_status np_list_dir(const char *path, const char *rel, np_names *dirs,
                             np_names *files, np_error *err)
{
	DIR *dp = opendir(path);
	if (!dp)
		return np_fail_file(err, NP_ERR_IO, path, "cannot list the folder: %s",
		                    strerror(errno));
	np_status st = NP_OK;
	char full[NP_PATH_BUF], r[NP_PATH_BUF];
	struct dirent *e;
	while (st == NP_OK && (e = readdir(dp))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if ((size_t)snprintf(full, sizeof full, "%s/%s", path, e->d_name) >= sizeof full ||
		    (size_t)snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "",
		                     e->d_name) >= sizeof r) {
			st = np_fail_file(err, NP_ERR_UNSUPPORTED, path, "a name in the "
			                  "folder makes a path longer than %d bytes",
			                  NP_PATH_BUF - 1);
			break;
		}
		bool dir = np_entry_is_dir(e, full);
		np_names *to = dir ? dirs : files && np_is_image_name(e->d_name) ? files : NULL;
		if (to && !np_names_add(to, r))
			st = np_fail(err, NP_ERR_NOMEM, "out of memory listing %s", path);
	}
	closedir(dp);
	return st;
}

/* Every image below DIR/cls (relative to DIR) appended to out, in
 * sorted(os.walk()) order: folders by path, then files by name. */
static np_status np_walk_class(const char *dir, const char *cls, np_names *out,
                               np_error *err)
{
	np_names dirs = {0};
	char path[NP_PATH_BUF];
	np_status st = np_names_add(&dirs, cls) ? NP_OK
	             : np_fail(err, NP_ERR_NOMEM, "out of memory");
	/* Breadth first over every folder, then one sort by path; then the
	 * files of each folder in that order. */
	for (int64_t i = 0; st == NP_OK && i < dirs.n; i++) {
		const char *rel = np_name(&dirs, i);
		int depth = 0;
		for (const char *p = rel; *p; p++)
			depth += *p == '/';
		if (depth > NP_MAX_DEPTH) {
			snprintf(path, sizeof path, "%s/%s", dir, rel);
			st = np_fail_file(err, NP_ERR_UNSUPPORTED, path, "folders nested "
			                  "more than %d deep (a loop of links?)", NP_MAX_DEPTH);
			break;
		}
		snprintf(path, sizeof path, "%s/%s", dir, rel);
		char relcopy[NP_PATH_BUF];
		snprintf(relcopy, sizeof relcopy, "%s", rel);   /* dirs may move */
		st = np_list_dir(path, relcopy, &dirs, NULL, err);
	}
	np_names_sort(&dirs, 0);
	for (int64_t i = 0; st == NP_OK && i < dirs.n; i++) {
		int64_t from = out->n;
		snprintf(path, sizeof path, "%s/%s", dir, np_name(&dirs, i));
		st = np_list_dir(path, np_name(&dirs, i), NULL, out, err);
		np_names_sort(out, from);
	}
	np_names_free(&dirs);
	return st;
}

/* The class names from a --classes file: one a line, in label order. */
static np_status np_read_classes(const char *file, np_names *cls, np_error *err)
{
	np_input_fail how;
	const char *why;
	size_t len;
	char *text = (char *)np_read_input(file, (uint64_t)16 << 20, &len, &how, &why);
	if (!text)
		return np_fail_file(err, how == NP_INPUT_NOMEM ? NP_ERR_NOMEM : NP_ERR_IO,
		                    file, "cannot read the class list: %s", why);
	np_status st = NP_OK;
	int line = 0;
	for (char *save = NULL, *s = strtok_r(text, "\n", &save); s && st == NP_OK;
	     s = strtok_r(NULL, "\n", &save)) {
		line++;
		s[strcspn(s, "\r")] = '\0';
		if (!*s)
			continue;
		for (int64_t i = 0; i < cls->n; i++)
			if (!strcmp(np_name(cls, i), s))
				st = np_fail_file(err, NP_ERR_INVALID, file, "class '%s' is "
				                  "listed twice (line %d)", s, line);
		if (st == NP_OK && (strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, "..")))
			st = np_fail_file(err, NP_ERR_INVALID, file, "line %d: '%s' is not "
			                  "a sub-folder name", line, s);
		if (st == NP_OK && !np_names_add(cls, s))
			st = np_fail(err, NP_ERR_NOMEM, "out of memory");
	}
	if (st == NP_OK && cls->n == 0)
		st = np_fail_file(err, NP_ERR_INVALID, file, "the class list names no "
		                  "class");
	free(text);
	return st;
}

/* The classes: sub-folders sorted by name, or the --classes file's
 * order (then every sub-folder must be listed, and every class exist). */
static np_status np_list_classes(const char *dir, const char *file,
                                 np_names *cls, np_error *err)
{
	np_names sub = {0};
	np_status st = np_list_dir(dir, "", &sub, NULL, err);
	np_names_sort(&sub, 0);
	if (st == NP_OK && !file) {
		*cls = sub;
		if (cls->n == 0)
			return np_fail_file(err, NP_ERR_INVALID, dir, "no class sub-folders "
			                    "(folder: wants DIR/CLASS/IMAGE)");
		return NP_OK;
	}
	if (st == NP_OK)
		st = np_read_classes(file, cls, err);
	char path[NP_PATH_BUF];
	for (int64_t i = 0; st == NP_OK && i < cls->n; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, np_name(cls, i));
		if (!np_is_dir(path))
			st = np_fail_file(err, NP_ERR_INVALID, path, "class '%s' of %s has "
			                  "no folder", np_name(cls, i), file);
	}
	for (int64_t i = 0; st == NP_OK && i < sub.n; i++) {
		bool listed = false;
		for (int64_t k = 0; k < cls->n && !listed; k++)
			listed = !strcmp(np_name(cls, k), np_name(&sub, i));
		if (!listed) {
			snprintf(path, sizeof path, "%s/%s", dir, np_name(&sub, i));
			st = np_fail_file(err, NP_ERR_INVALID, path, "sub-folder not in the "
			                  "class list %s", file);
		}
	}
	np_names_free(&sub);
	return st;
}

/* --------------------------------------------------------------- source */

struct np_source {
	char *dir;
	np_names classes;
	np_names files;                /* relative to dir, data set order */
	int c, h, w;                   /* example dims */
	int resize, crop, workers;
	float lut[3][256];             /* pixel value -> normalised float */
	np_decode_stats stats;
};

void np_source_free(np_source *s)
{
	if (!s)
		return;
	free(s->dir);
	np_names_free(&s->classes);
	np_names_free(&s->files);
	pthread_mutex_destroy(&s->stats.mu);
	free(s);
}

void np_decode_buf_free(np_decode_buf *w)
{
	free(w->file);
	free(w->tmp);
	np_image_free(&w->a);
	np_image_free(&w->b);
	memset(w, 0, sizeof *w);
}

void np_source_class_dir(const np_source *s, int label, char *buf, size_t size)
{
	if (label >= 0 && label < s->classes.n)
		snprintf(buf, size, "%s/%s", s->dir, np_name(&s->classes, label));
	else
		snprintf(buf, size, "%s", s->dir);
}

bool np_source_crops(const np_source *s)
{
	return s->crop > 0;
}

np_decode_stats *np_source_stats(const np_source *s)
{
	/* The statistics change while the source is read (const). */
	return (np_decode_stats *)&s->stats;
}

int np_source_workers(const np_source *s, int64_t examples)
{
	long n = s->workers > 0 ? s->workers : sysconf(_SC_NPROCESSORS_ONLN);
	n = n < 1 ? 1 : n > 64 ? 64 : n;
	return (int)(examples < n ? (examples > 0 ? examples : 1) : n);
}

/* The pixel -> float table of each channel: the same arithmetic as the
 * in-memory readers (data.c's decode_floats, then normalise), so a PNG
 * folder of MNIST gives the floats its IDX file gives. */
static void np_source_lut(np_source *s, const np_data_opts *o)
{
	float scale = o && o->scale > 0 ? (float)o->scale : 1.0f / 255;
	for (int c = 0; c < s->c; c++)
		for (int v = 0; v < 256; v++) {
			float x = scale == 1.0f / 255 ? (float)v / 255.0f : (float)v * scale;
			if (o && (o->n_mean > 0 || o->n_std > 0)) {
				float mean = o->n_mean ? (float)o->mean[o->n_mean == 1 ? 0 : c] : 0.0f;
				float sd = o->n_std ? (float)o->std[o->n_std == 1 ? 0 : c] : 1.0f;
				x = (x - mean) / sd;
			}
			s->lut[c][v] = x;
		}
}

/* ------------------------------------------------------------- examples */

/* The whole file into w->file. */
static np_status np_read_image_file(const char *path, np_decode_buf *w,
                                    size_t *len, np_error *err)
{
	const char *why;
	int64_t size;
	int fd = np_open_input(path, &size, &why);
	if (fd < 0)
		return np_fail_file(err, NP_ERR_IO, path, "cannot open: %s", why);
	np_status st = NP_OK;
	if (size > NP_MAX_IMAGE_FILE)
		st = np_fail_file(err, NP_ERR_UNSUPPORTED, path, "%lld bytes: too large "
		                  "for an image", (long long)size);
	size_t want = size > 0 ? (size_t)size : 0;
	if (st == NP_OK && want + 1 > w->cap) {
		uint8_t *b = realloc(w->file, want + 1);
		if (!b)
			st = np_fail_file(err, NP_ERR_NOMEM, path, "out of memory");
		else {
			w->file = b;
			w->cap = want + 1;
		}
	}
	size_t got = 0;
	while (st == NP_OK && got < want) {
		ssize_t r = read(fd, w->file + got, want - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			st = np_fail_file(err, NP_ERR_IO, path, "read error: %s", strerror(errno));
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	*len = got;
	return st;
}

/* The decoded w->a to c channels, then Resize(resize) (0: none): the
 * result in *cur (one of w->a and w->b). */
static np_status np_prepare(int c, int resize, np_decode_buf *w,
                            np_image **cur, np_error *err)
{
	np_image *img = &w->a, *other = &w->b;
	np_status st = NP_OK;
	if (img->c != c) {
		st = np_image_channels(img, c, other, err);
		np_image *t = img; img = other; other = t;
	}
	if (st == NP_OK && resize > 0) {
		int ow, oh;
		np_resize_dims(img->w, img->h, resize, &ow, &oh);
		if (ow != img->w || oh != img->h) {
			st = np_image_resize(img, ow, oh, other, err);
			img = other;
		}
	}
	*cur = img;
	return st;
}

/* The crop window's corner: random (training) or central; without a
 * crop the image must have the examples' size. */
static np_status np_window(const np_source *s, const np_image *img, np_rng *rng,
                           const char *path, int *top, int *left, np_error *err)
{
	if (s->crop <= 0) {
		*top = *left = 0;
		if (img->w == s->w && img->h == s->h)
			return NP_OK;
		return np_fail_file(err, NP_ERR_INVALID, path, "image is %dx%d%s; the "
		                    "data set's examples are %dx%d (the first image's): "
		                    "give --resize and --crop", img->w, img->h,
		                    s->resize ? " after --resize" : "", s->w, s->h);
	}
	if (!rng) {
		np_center_crop_origin(img->w, img->h, s->crop, s->crop, top, left);
		return NP_OK;
	}
	/* torchvision's RandomCrop refuses an image smaller than the crop. */
	if (img->w < s->crop || img->h < s->crop)
		return np_fail_file(err, NP_ERR_INVALID, path, "image is %dx%d, smaller "
		                    "than the random --crop %d", img->w, img->h, s->crop);
	*top = (int)np_rng_below(rng, (uint64_t)(img->h - s->crop) + 1);
	*left = (int)np_rng_below(rng, (uint64_t)(img->w - s->crop) + 1);
	return NP_OK;
}

np_status np_source_example(const np_source *s, int64_t i, np_rng *rng,
                            np_decode_buf *w, float *out, np_error *err)
{
	snprintf(w->path, sizeof w->path, "%s/%s", s->dir, np_name(&s->files, i));
	size_t len;
	np_image *img;
	int top, left;
	np_status st = np_read_image_file(w->path, w, &len, err);
	if (st == NP_OK)
		st = np_image_decode(w->file, len, w->path, &w->a, err);
	if (st == NP_OK)
		st = np_prepare(s->c, s->resize, w, &img, err);
	if (st == NP_OK)
		st = np_window(s, img, rng, w->path, &top, &left, err);
	if (st == NP_OK)
		np_image_window(img, top, left, s->h, s->w, s->lut, out);
	if (st != NP_OK && !err->file[0])
		snprintf(err->file, sizeof err->file, "%.*s",
		         (int)sizeof err->file - 1, w->path);
	return st;
}

/* ---------------------------------------------------------------- load */

/* Classes and files into s, labels into d->y. */
static np_status np_source_list(np_source *s, const np_data_opts *o,
                                np_dataset *d, np_error *err)
{
	np_status st = np_list_classes(s->dir, o ? o->classes : NULL, &s->classes, err);
	int32_t *y = NULL;
	int64_t ycap = 0;
	for (int64_t c = 0; st == NP_OK && c < s->classes.n; c++) {
		int64_t before = s->files.n;
		st = np_walk_class(s->dir, np_name(&s->classes, c), &s->files, err);
		if (st == NP_OK && s->files.n == before) {
			char path[NP_PATH_BUF];
			np_source_class_dir(s, (int)c, path, sizeof path);
			st = np_fail_file(err, NP_ERR_INVALID, path, "class folder with no "
			                  "images (.png, .jpg, .jpeg)");
		}
		if (st == NP_OK && s->files.n > ycap) {
			ycap = s->files.ncap;
			int32_t *ny = realloc(y, (size_t)ycap * sizeof *y);
			if (!ny)
				st = np_fail(err, NP_ERR_NOMEM, "out of memory");
			else
				y = ny;
		}
		for (int64_t k = before; st == NP_OK && k < s->files.n; k++)
			y[k] = (int32_t)c;
	}
	if (st == NP_OK && s->classes.n > INT32_MAX / 2)
		st = np_fail_file(err, NP_ERR_UNSUPPORTED, s->dir, "too many classes");
	d->y = y;
	d->n = s->files.n;
	d->n_classes = (int)s->classes.n;
	return st;
}

/* The example dims from the first image (channels from the model when
 * the session says them). */
static np_status np_source_dims(np_source *s, const np_data_opts *o,
                                np_dataset *d, np_error *err)
{
	np_decode_buf w = {0};
	size_t len;
	snprintf(w.path, sizeof w.path, "%s/%s", s->dir, np_name(&s->files, 0));
	np_status st = np_read_image_file(w.path, &w, &len, err);
	if (st == NP_OK)
		st = np_image_decode(w.file, len, w.path, &w.a, err);
	np_image *img = NULL;
	if (st == NP_OK) {
		s->c = o && (o->channels == 1 || o->channels == 3) ? o->channels : w.a.c;
		st = np_prepare(s->c, s->resize, &w, &img, err);
	}
	if (st == NP_OK) {
		s->h = s->crop > 0 ? s->crop : img->h;
		s->w = s->crop > 0 ? s->crop : img->w;
		int64_t dims[3] = {s->c, s->h, s->w};
		d->rank = 3;
		memcpy(d->dims, dims, sizeof dims);
		d->example_size = (int64_t)s->c * s->h * s->w;
	}
	np_decode_buf_free(&w);
	return st;
}

static np_status np_check_norm(const np_source *s, const np_data_opts *o,
                               np_error *err)
{
	if (!o || ((o->n_mean <= 1 || o->n_mean == s->c) &&
	           (o->n_std <= 1 || o->n_std == s->c)))
		return NP_OK;
	return np_fail_file(err, NP_ERR_USAGE, s->dir, "%d mean and %d std values "
	                    "given, but the examples have %d channel%s", o->n_mean,
	                    o->n_std, s->c, s->c == 1 ? "" : "s");
}

/* Under skip_bad: decode every image once (in parallel; defined below)
 * and drop the bad ones. */
static np_status np_source_scan(np_source *s, np_dataset *d, np_error *err);

np_status np_folder_load(const char *dir, const np_data_opts *o,
                         np_dataset *d, np_error *err)
{
	np_source *s = calloc(1, sizeof *s);
	if (!s || !(s->dir = strdup(dir))) {
		free(s);
		return np_fail(err, NP_ERR_NOMEM, "out of memory");
	}
	pthread_mutex_init(&s->stats.mu, NULL);
	s->resize = o ? o->resize : 0;
	s->crop = o ? o->crop : 0;
	s->workers = o ? o->workers : 0;
	d->src = s;
	np_status st = np_source_list(s, o, d, err);
	if (st == NP_OK && o && o->skip_bad)
		st = np_source_scan(s, d, err);
	if (st == NP_OK && d->n > 0)
		st = np_source_dims(s, o, d, err);
	if (st == NP_OK)
		st = np_check_norm(s, o, err);
	if (st == NP_OK) {
		np_source_lut(s, o);
		if (o && o->limit > 0 && o->limit < d->n)
			d->n = o->limit;
	}
	return st;
}

np_status np_folder_files(const char *dir,
                          void (*add)(void *ctx, const char *path), void *ctx,
                          np_error *err)
{
	np_names cls = {0}, files = {0};
	np_status st = np_list_classes(dir, NULL, &cls, err);
	for (int64_t c = 0; st == NP_OK && c < cls.n; c++)
		st = np_walk_class(dir, np_name(&cls, c), &files, err);
	char path[NP_PATH_BUF];
	for (int64_t i = 0; st == NP_OK && i < files.n; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, np_name(&files, i));
		add(ctx, path);
	}
	np_names_free(&cls);
	np_names_free(&files);
	return st;
}

/* ---------------------------------------------------------------- scan */

/* The first pass of skip_bad: workers take images in turn and mark the
 * ones that fail; the result does not depend on who decoded what. */
typedef struct np_scan {
	np_source *s;
	pthread_mutex_t mu;
	int64_t next, n;
	uint8_t *bad;
	np_status fatal;               /* out of memory: not an image's fault */
	np_error fatal_err;
	int64_t first_bad;
	np_error first_err;
} np_scan;

static void *np_scan_worker(void *arg)
{
	np_scan *sc = arg;
	np_decode_buf w = {0};
	for (;;) {
		pthread_mutex_lock(&sc->mu);
		int64_t i = sc->fatal == NP_OK && sc->next < sc->n ? sc->next++ : -1;
		pthread_mutex_unlock(&sc->mu);
		if (i < 0)
			break;
		/* Any size: the example dims are not known yet; decode and
		 * preprocess only. */
		np_error e = {0};
		size_t len;
		np_image *img;
		snprintf(w.path, sizeof w.path, "%s/%s", sc->s->dir, np_name(&sc->s->files, i));
		np_status st = np_read_image_file(w.path, &w, &len, &e);
		if (st == NP_OK)
			st = np_image_decode(w.file, len, w.path, &w.a, &e);
		if (st == NP_OK)
			st = np_prepare(w.a.c, sc->s->resize, &w, &img, &e);
		pthread_mutex_lock(&sc->mu);
		if (st == NP_ERR_NOMEM && sc->fatal == NP_OK) {
			sc->fatal = st;
			sc->fatal_err = e;
		} else if (st != NP_OK) {
			sc->bad[i] = 1;
			if (i < sc->first_bad) {
				sc->first_bad = i;
				sc->first_err = e;
			}
		}
		pthread_mutex_unlock(&sc->mu);
	}
	np_decode_buf_free(&w);
	return NULL;
}

/* "FILE: what" of an error, malloc'd. */
static char *np_note_dup(const np_error *e)
{
	size_t n = strlen(e->file) + strlen(e->msg) + 3;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, "%s%s%s", e->file, e->file[0] ? ": " : "", e->msg);
	return s;
}

/* Keep the good files (and their labels) in order. */
static void np_scan_compact(np_source *s, np_dataset *d, const uint8_t *bad)
{
	int64_t k = 0;
	for (int64_t i = 0; i < s->files.n; i++)
		if (!bad[i]) {
			s->files.off[k] = s->files.off[i];
			d->y[k++] = d->y[i];
		}
	d->skipped = s->files.n - k;
	s->files.n = k;
	d->n = k;
}

static np_status np_source_scan(np_source *s, np_dataset *d, np_error *err)
{
	np_scan sc = {.s = s, .n = s->files.n, .first_bad = INT64_MAX};
	sc.bad = calloc((size_t)sc.n + 1, 1);
	if (!sc.bad)
		return np_fail(err, NP_ERR_NOMEM, "out of memory");
	pthread_mutex_init(&sc.mu, NULL);
	int nw = np_source_workers(s, sc.n), started = 0;
	pthread_t th[64];
	while (started < nw && pthread_create(&th[started], NULL, np_scan_worker, &sc) == 0)
		started++;
	if (started == 0)
		np_scan_worker(&sc);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&sc.mu);
	np_status st = NP_OK;
	if (sc.fatal != NP_OK) {
		*err = sc.fatal_err;
		st = sc.fatal;
	} else {
		np_scan_compact(s, d, sc.bad);
		if (d->skipped && !(d->skip_note = np_note_dup(&sc.first_err)))
			st = np_fail(err, NP_ERR_NOMEM, "out of memory");
		if (st == NP_OK && d->n == 0)
			st = np_fail_file(err, NP_ERR_INVALID, s->dir, "none of the %lld "
			                  "images decodes (first: %s)", (long long)d->skipped,
			                  d->skip_note);
	}
	free(sc.bad);
	return st;
}
