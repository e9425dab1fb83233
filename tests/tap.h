/* tap.h - minimal TAP producer for every C test (automake's TAP driver
 * reads it).  ok() records one test point; skip() one that could not run,
 * and why; skip_all() says the whole program could not; done_testing()
 * prints the plan and returns the exit status. */
#ifndef NEPENC_TAP_H
#define NEPENC_TAP_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

static int tap_n, tap_failed, tap_skipped;

__attribute__((format(printf, 2, 3)))
static inline int ok(int cond, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("%sok %d - ", cond ? "" : "not ", ++tap_n);
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	if (!cond)
		tap_failed++;
	fflush(stdout);
	return cond;
}

/* |a-b| <= atol + rtol*|b| */
static inline int tap_close(double a, double b, double rtol, double atol)
{
	return fabs(a - b) <= atol + rtol * fabs(b);
}

/* A TAP description or directive stays on one line. */
static inline void tap_one_line(const char *s)
{
	for (; *s; s++)
		putchar(*s == '\n' || *s == '\r' || *s == '#' ? ' ' : *s);
}

/* "ok N - desc # SKIP why" */
static inline void skip(const char *desc, const char *why)
{
	printf("ok %d - ", ++tap_n);
	tap_one_line(desc);
	printf(" # SKIP ");
	tap_one_line(why);
	printf("\n");
	tap_skipped++;
	fflush(stdout);
}

/* The plan "1..0 # SKIP why"; return it from main. */
static inline int skip_all(const char *why)
{
	printf("1..0 # SKIP ");
	tap_one_line(why);
	printf("\n");
	return 0;
}

static inline int done_testing(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
