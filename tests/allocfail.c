/* allocfail.c - allocation-failure injection for nepenc, SQLite-style.
 *
 * Linked into tests/nepenc-allocfail (cli/main.c plus this file) with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,
 * --wrap=aligned_alloc: every allocation call in nepenc's own code (the
 * objects of libnepenc.a and main.o; not those inside libc, libxml2,
 * protobuf-c or oneDNN) goes through the counters below, so no source
 * file of nepenc needs to know.
 *
 *   NEPENC_FAIL_ALLOC=N     the N-th allocation (1-based) returns NULL
 *   NEPENC_FAIL_PERSIST=1   ... and every one after it
 *   NEPENC_ALLOC_COUNT=FILE at exit, write how many allocations were made
 *
 * tests/allocfail.test sweeps N (see docs/reliability.md).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void *__real_aligned_alloc(size_t a, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
void *__wrap_aligned_alloc(size_t a, size_t n);

static atomic_long np_calls;
static long np_fail_at = -1;          /* -1: not read yet, 0: never */
static int np_persist;

static void np_report(void)
{
	const char *path = getenv("NEPENC_ALLOC_COUNT");
	FILE *f = path ? fopen(path, "w") : NULL;
	if (f) {
		fprintf(f, "%ld\n", (long)atomic_load(&np_calls));
		fclose(f);
	}
}

/* True when this call must fail. */
static int np_fail(void)
{
	if (np_fail_at < 0) {
		const char *v = getenv("NEPENC_FAIL_ALLOC");
		const char *p = getenv("NEPENC_FAIL_PERSIST");
		np_persist = p && *p == '1';
		np_fail_at = v ? atol(v) : 0;
		if (np_fail_at < 0)
			np_fail_at = 0;
		atexit(np_report);
	}
	long k = atomic_fetch_add(&np_calls, 1) + 1;
	return np_fail_at > 0 && (k == np_fail_at || (np_persist && k > np_fail_at));
}

void *__wrap_malloc(size_t n)
{
	return np_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n)
{
	return np_fail() ? NULL : __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n)
{
	return np_fail() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
	return np_fail() ? NULL : __real_strdup(s);
}

void *__wrap_aligned_alloc(size_t a, size_t n)
{
	return np_fail() ? NULL : __real_aligned_alloc(a, n);
}
