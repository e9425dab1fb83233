/* progress.h - progress of long steps on stderr.
 *
 * On a terminal the line is redrawn in place (\r); otherwise a plain line
 * is printed at most every few seconds, so logs of make stay readable.
 * Quiet mode prints nothing.
 */
#ifndef NEPENC_PROGRESS_H
#define NEPENC_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct np_progress {
	FILE *out;
	bool tty, quiet, drawn;
	const char *what;          /* "finetune", "profile", ... */
	const char *unit;          /* "img" */
	int64_t units_per_step;    /* e.g. images per batch */
	double start, last;
} np_progress;

double np_now(void);           /* monotonic seconds */
void np_progress_begin(np_progress *p, const char *what, const char *unit,
                       int64_t units_per_step, bool quiet);
/* loss NAN: the step has no loss (profiling); it is left out. */
void np_progress_update(np_progress *p, int64_t done, int64_t total,
                        double loss);
void np_progress_end(np_progress *p);

#endif
