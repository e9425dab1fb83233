/* progress.h - progress of long steps on stderr.
 *
 * On a terminal the line is redrawn in place (\r, then erase to the end
 * of the line) at most 5 times a second; otherwise a plain line is printed
 * at most every 5 seconds, so logs of make stay readable
 * (NEPENC_PROGRESS_INTERVAL=SECONDS changes either period; the tests
 * shorten it).  The last step always prints its line.  Quiet mode prints
 * nothing.  Never stdout: that carries the command's table or JSON.
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
	/* Set after begin when done/total spans several epochs: the line
	 * then names the epoch, and a plain line ends every epoch. */
	int epochs;
	double start, last, period;
} np_progress;

double np_now(void);           /* monotonic seconds */
void np_progress_begin(np_progress *p, const char *what, const char *unit,
                       int64_t units_per_step, bool quiet);
/* loss NAN: the step has no loss (profiling); it is left out. */
void np_progress_update(np_progress *p, int64_t done, int64_t total,
                        double loss);
void np_progress_end(np_progress *p);

/* An np_rt_progress_fn (runtime/rt.h) drawing "evaluate" lines on ctx, an
 * np_progress whose quiet field says whether to print at all. */
void np_progress_rt(void *ctx, int64_t done, int64_t total);

#endif
