/* tap.h - minimal TAP producer for the C unit tests (automake's TAP driver
 * reads it).  ok() records one test point; done_testing() prints the plan
 * and returns the exit status. */
#ifndef NEPENC_TAP_H
#define NEPENC_TAP_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

static int tap_n, tap_failed;

__attribute__((format(printf, 2, 3)))
static int ok(int cond, const char *fmt, ...)
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

static int done_testing(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
