/* progress.c - see progress.h. */
#include "progress.h"

#include <math.h>
#include <time.h>
#include <unistd.h>

#define NP_PROGRESS_PLAIN_PERIOD 5.0   /* seconds between plain lines */
#define NP_PROGRESS_TTY_PERIOD 0.2

double np_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void np_progress_begin(np_progress *p, const char *what, const char *unit,
                       int64_t units_per_step, bool quiet)
{
	p->out = stderr;
	p->tty = isatty(fileno(stderr));
	p->quiet = quiet;
	p->drawn = false;
	p->what = what;
	p->unit = unit;
	p->units_per_step = units_per_step;
	p->start = p->last = np_now();
}

void np_progress_update(np_progress *p, int64_t done, int64_t total,
                        double loss)
{
	if (p->quiet)
		return;
	double now = np_now();
	bool last_step = done == total;
	if (!last_step && now - p->last < (p->tty ? NP_PROGRESS_TTY_PERIOD
	                                          : NP_PROGRESS_PLAIN_PERIOD))
		return;
	p->last = now;
	double el = now - p->start, rate = el > 0 ? (double)done / el : 0;
	double eta = rate > 0 ? (double)(total - done) / rate : 0;
	char loss_text[32] = "";
	if (!isnan(loss))
		snprintf(loss_text, sizeof loss_text, " loss %.4f", loss);
	fprintf(p->out, "%snepenc: %s %lld/%lld (%3.0f%%) %.0f %s/s%s ETA %.0fs%s",
	        p->tty ? "\r" : "", p->what, (long long)done, (long long)total,
	        total ? 100.0 * (double)done / (double)total : 100.0,
	        rate * (double)p->units_per_step, p->unit, loss_text, eta,
	        p->tty ? "\033[K" : "\n");
	fflush(p->out);
	p->drawn = true;
}

void np_progress_end(np_progress *p)
{
	if (!p->quiet && p->tty && p->drawn)
		fputc('\n', p->out);
	p->drawn = false;
}
