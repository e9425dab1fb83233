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

#include "status.h"

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
	/* Optional, set after begin: text appended to the line (e.g. the
	 * decoding rate of a folder, when decoding is the bottleneck). */
	void (*note)(void *ctx, char *buf, size_t size);
	void *note_ctx;
} np_progress;

double np_now(void);           /* monotonic seconds */
void np_progress_begin(np_progress *p, const char *what, const char *unit,
                       int64_t units_per_step, bool quiet);
/* loss NAN: the step has no loss (profiling); it is left out. */
void np_progress_update(np_progress *p, int64_t done, int64_t total,
                        double loss);
void np_progress_end(np_progress *p);

/* Training progress that also watches the loss: np_loss_watch_step is an
 * np_train_opts.progress callback (ctx: an np_loss_watch) that draws on
 * w->p and remembers the first step whose loss is not finite; after
 * np_train, np_loss_watch_check turns that into an error, so a run
 * that diverged writes nothing. */
typedef struct np_loss_watch {
	np_progress *p;
	int64_t bad_step;          /* 0: every loss so far was finite */
	int64_t total;
	double bad_loss;
} np_loss_watch;

void np_loss_watch_step(void *ctx, int64_t done, int64_t total, double loss);
np_status np_loss_watch_check(const np_loss_watch *w, const char *what,
                              np_error *err);

/* An np_rt_progress_fn (runtime/rt.h) drawing "evaluate" lines on ctx, an
 * np_progress whose quiet field says whether to print at all. */
void np_progress_rt(void *ctx, int64_t done, int64_t total);

#endif
