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

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The process's scratch folder, made on first use. */
static inline const char *fz_dir(void)
{
	static char dir[256];
	if (!dir[0]) {
		const char *t = getenv("TMPDIR");
		snprintf(dir, sizeof dir, "%s/nepenc-fuzz.XXXXXX",
		         t && *t ? t : "/tmp");
		if (!mkdtemp(dir))
			abort();
	}
	return dir;
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
