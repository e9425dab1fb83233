/* progress.c - see progress.h. */
#include "progress.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
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

/* Seconds between updates: NEPENC_PROGRESS_INTERVAL if it is a number
 * >= 0 (tests make it short so that a short run shows several lines; 0
 * prints every step), else the default of a terminal or a plain log. */
static double np_period(bool tty)
{
	double def = tty ? NP_PROGRESS_TTY_PERIOD : NP_PROGRESS_PLAIN_PERIOD;
	const char *s = getenv("NEPENC_PROGRESS_INTERVAL");
	if (!s || !*s)
		return def;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	return errno || *end || !isfinite(v) || v < 0 ? def : v;
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
	p->epochs = 0;
	p->period = np_period(p->tty);
	p->start = p->last = np_now();
	p->note = NULL;
	p->note_ctx = NULL;
}

/* " epoch E/N" when the steps span several epochs, else "". */
static void np_epoch_text(const np_progress *p, int64_t done, int64_t total,
                          char *buf, size_t size, bool *epoch_end)
{
	buf[0] = '\0';
	*epoch_end = false;
	if (p->epochs <= 1 || total <= 0 || total % p->epochs)
		return;
	int64_t per = total / p->epochs;
	int64_t e = done > 0 ? (done - 1) / per + 1 : 1;
	*epoch_end = done > 0 && done % per == 0;
	snprintf(buf, size, " epoch %lld/%d", (long long)e, p->epochs);
}

/* "42s", "3m07s", "2h05m": long runs read better than "7500s". */
static void np_eta_text(double eta, char *buf, size_t size)
{
	long long s = (long long)(eta + 0.5);
	if (s < 60)
		snprintf(buf, size, "%llds", s);
	else if (s < 3600)
		snprintf(buf, size, "%lldm%02llds", s / 60, s % 60);
	else
		snprintf(buf, size, "%lldh%02lldm", s / 3600, s / 60 % 60);
}

void np_progress_update(np_progress *p, int64_t done, int64_t total,
                        double loss)
{
	if (p->quiet)
		return;
	double now = np_now();
	char epoch[48];
	bool epoch_end;
	np_epoch_text(p, done, total, epoch, sizeof epoch, &epoch_end);
	/* Plain logs get a line at the end of every epoch, too. */
	bool must = done == total || (!p->tty && epoch_end);
	if (!must && now - p->last < p->period)
		return;
	p->last = now;
	double el = now - p->start, rate = el > 0 ? (double)done / el : 0;
	double eta = rate > 0 ? (double)(total - done) / rate : 0;
	char loss_text[32] = "", eta_text[32];
	if (!isnan(loss))
		snprintf(loss_text, sizeof loss_text, " loss %.4f", loss);
	np_eta_text(eta, eta_text, sizeof eta_text);
	char note[64] = "";
	if (p->note)
		p->note(p->note_ctx, note, sizeof note);
	fprintf(p->out, "%snepenc: %s%s %lld/%lld (%3.0f%%) %.0f %s/s%s%s ETA %s%s",
	        p->tty ? "\r" : "", p->what, epoch, (long long)done, (long long)total,
	        total ? 100.0 * (double)done / (double)total : 100.0,
	        rate * (double)p->units_per_step, p->unit, note, loss_text, eta_text,
	        p->tty ? "\033[K" : "\n");
	fflush(p->out);
	p->drawn = true;
}

void np_loss_watch_step(void *ctx, int64_t done, int64_t total, double loss)
{
	np_loss_watch *w = ctx;
	if (!isfinite(loss) && !w->bad_step) {
		w->bad_step = done;
		w->total = total;
		w->bad_loss = loss;
	}
	np_progress_update(w->p, done, total, loss);
}

np_status np_loss_watch_check(const np_loss_watch *w, const char *what,
                              np_error *err)
{
	if (!w->bad_step)
		return NP_OK;
	return np_fail(err, NP_ERR_INVALID, "%s diverged: the loss is %s at "
	               "step %lld of %lld (try a smaller --lr)", what,
	               isnan(w->bad_loss) ? "NaN" : "infinite",
	               (long long)w->bad_step, (long long)w->total);
}

void np_progress_end(np_progress *p)
{
	if (!p->quiet && p->tty && p->drawn)
		fputc('\n', p->out);
	p->drawn = false;
}

void np_progress_rt(void *ctx, int64_t done, int64_t total)
{
	np_progress *p = ctx;
	if (done == 0) {
		/* The note outlives begin: the session sets it once. */
		void (*note)(void *, char *, size_t) = p->note;
		void *note_ctx = p->note_ctx;
		np_progress_begin(p, "evaluate", "img", 1, p->quiet);
		p->note = note;
		p->note_ctx = note_ctx;
		return;
	}
	np_progress_update(p, done, total, NAN);
	if (done >= total)
		np_progress_end(p);
}
