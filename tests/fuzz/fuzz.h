/* fuzz.h - what the libFuzzer targets of tests/fuzz/ share.
 *
 * The data readers and the configuration take paths, so an input is
 * written to a scratch file first (one folder per process, under
 * $TMPDIR).  An input that names two files (images and labels) is cut
 * in two at its first "\n--\n".  Built only by configure
 * --enable-fuzzers (clang, -fsanitize=fuzzer,address,undefined).
 */
#ifndef NEPENC_FUZZ_H
#define NEPENC_FUZZ_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fz_scratch[256];

/* At exit (libFuzzer's -max_total_time and -runs end with exit()): the
 * scratch folder and the files in it removed; a crash leaves them. */
static inline void fz_remove_scratch(void)
{
	DIR *d = opendir(fz_scratch);
	struct dirent *e;
	char path[600];
	while (d && (e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(path, sizeof path, "%s/%s", fz_scratch, e->d_name);
			unlink(path);
		}
	}
	if (d)
		closedir(d);
	rmdir(fz_scratch);
}

/* The process's scratch folder, made on first use. */
static inline const char *fz_dir(void)
{
	if (!fz_scratch[0]) {
		const char *t = getenv("TMPDIR");
		snprintf(fz_scratch, sizeof fz_scratch, "%s/nepenc-fuzz.XXXXXX",
		         t && *t ? t : "/tmp");
		if (!mkdtemp(fz_scratch))
			abort();
		atexit(fz_remove_scratch);
	}
	return fz_scratch;
}

/* dir/name holding bytes [p, p+n); the path in a static buffer of the
 * caller's choice. */
static inline const char *fz_file(char *path, size_t size, const char *name,
                           const uint8_t *p, size_t n)
{
	snprintf(path, size, "%s/%s", fz_dir(), name);
	FILE *f = fopen(path, "wb");
	if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0)
		abort();
	return path;
}

/* Cut [p, p+n) at the first "\n--\n": *n1 bytes, then the rest from
 * *p2 (*n2 bytes; *p2 NULL when there is no cut). */
static inline void fz_split(const uint8_t *p, size_t n, size_t *n1,
                     const uint8_t **p2, size_t *n2)
{
	for (size_t i = 0; i + 4 <= n; i++) {
		if (!memcmp(p + i, "\n--\n", 4)) {
			*n1 = i;
			*p2 = p + i + 4;
			*n2 = n - i - 4;
			return;
		}
	}
	*n1 = n;
	*p2 = NULL;
	*n2 = 0;
}

#endif
