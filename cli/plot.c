/* plot.c - the run plot as hand-written SVG 1.1 (see plot.h).
 *
 * Layout, top to bottom: title and settings line; panel (a) entropy with
 * its legend on the right; panel (b) neuron states with its legend; the
 * layer names, rotated, under (b).  Both panels share the x axis: layer i
 * sits at the centre of slot i.  Coordinates print with %.1f so the
 * bytes do not depend on anything but the run.
 */
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic.h"
#include "report.h"

enum {
	MARGIN_L = 70,          /* room for the y axis and its label */
	LEGEND_GAP = 24,
	LEGEND_W = 330,
	LEGEND_W_EASIER = 390,  /* its iteration labels name a layer and a map */
	MIN_PLOT_W = 420,
	TOP_A = 104,            /* panel (a) top, under four header lines */
	PANEL_H = 200,
	PANEL_GAP = 78,         /* between (a)'s x axis and (b)'s top */
	ROW_H = 16,             /* legend row */
	NAME_MAX = 28,          /* layer name characters shown */
	NAME_FONT = 10
};

typedef struct plot {
	FILE *f;
	const np_run *r;
	int n;                       /* layers */
	double pw, sw;               /* plot width, slot width */
	double ya, ha, yb, hb;       /* panel tops and heights */
	double ymax;                 /* entropy axis top */
	double width, height;
	const np_profile *states;    /* profile shown in (b), or NULL */
	const char *states_from;     /* what that profile is */
	bool nomem;
} plot;

/* ---------------------------------------------------------------- text */

/* Write s as SVG character data (also safe in attributes). */
static void put_text(plot *p, const char *s)
{
	char *c = np_xml_clean(s ? s : "");
	if (!c) {
		p->nomem = true;
		return;
	}
	for (const char *q = c; *q; q++) {
		switch (*q) {
		case '&': fputs("&amp;", p->f); break;
		case '<': fputs("&lt;", p->f); break;
		case '>': fputs("&gt;", p->f); break;
		case '"': fputs("&quot;", p->f); break;
		default: fputc(*q, p->f);
		}
	}
	free(c);
}

static bool utf8_lead(unsigned char c)
{
	return (c & 0xc0) != 0x80;
}

/* name shortened to NAME_MAX characters by an ellipsis in the middle:
 * exporters' names differ at both ends ("/layer2/layer2.0/relu_1/Relu"). */
static void short_name(const char *name, char *out, size_t size)
{
	size_t len = strlen(name), chars = 0;
	for (size_t i = 0; i < len; i++)
		chars += utf8_lead((unsigned char)name[i]);
	if (chars <= NAME_MAX || size < 8) {
		snprintf(out, size, "%s", name);
		return;
	}
	/* Keep the first `head` and the last `tail` characters. */
	size_t head = (NAME_MAX - 1) / 2, tail = NAME_MAX - 1 - head;
	size_t a = 0, seen = 0;
	while (a < len && (seen < head || !utf8_lead((unsigned char)name[a])))
		seen += utf8_lead((unsigned char)name[a++]);
	size_t b = len;
	for (seen = 0; b > a && seen < tail; ) {
		b--;
		seen += utf8_lead((unsigned char)name[b]);
	}
	snprintf(out, size, "%.*s\xe2\x80\xa6%s", (int)a, name, name + b);
}

static const char *layer_name(const np_run *r, int i)
{
	return r->layer_names && r->layer_names[i] ? r->layer_names[i] : "";
}

/* The method as the title says it. */
static const char *method_title(np_method m)
{
	switch (m) {
	case NP_METHOD_IMP: return "IMP";
	case NP_METHOD_EASIER: return "EASIER";
	default: return "NEPENTHE";
	}
}

/* Is layer i gone from the written model?  (Before emission, or for a
 * run record without it: linearized, as the log says.) */
static bool layer_removed(const np_run *r, int i)
{
	np_layer_fate f;
	np_layer_fate_of(r, i, &f);
	return r->gone ? f.gone != NP_GONE_NO : f.linearized;
}

/* Fractions (sparsity, shares of neurons) as percentages; accuracies
 * are percentages already. */
static double pct(double v)
{
	return 100.0 * v;
}

/* ------------------------------------------------------------- colours */

/* Iteration k of n along a viridis-like ramp (dark blue to green):
 * neighbouring iterations stay distinguishable and order reads off hue. */
static void iter_colour(int k, int n, char out[8])
{
	static const int ramp[][3] = {
		{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {40, 160, 70},
		{150, 150, 0}
	};
	const int last = (int)(sizeof ramp / sizeof ramp[0]) - 1;
	double t = n > 1 ? (double)k / (n - 1) * last : 0;
	int i = (int)t < last ? (int)t : last - 1;
	double u = t - i;
	int rgb[3];
	for (int c = 0; c < 3; c++)
		rgb[c] = (int)lround(ramp[i][c] + u * (ramp[i + 1][c] - ramp[i][c]));
	snprintf(out, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
}

/* Neuron state categories of panel (b), bottom to top. */
enum { CAT_OFF, CAT_ON, CAT_OFF_HI, CAT_DONT_CARE, CAT_MIXED, N_CAT };
static const char *const cat_colour[N_CAT] = {
	"#525252", "#31a354", "#e6550d", "#d9d9d9", "#9ecae1"
};
static const char *const cat_label[N_CAT] = {
	"OFF only (H = 0)", "ON only (H = 0)", "OFF+ only, Clip at max (H = 0)",
	"no counted state (don't care)", "mixed states (H > 0)"
};

/* -------------------------------------------------------------- layout */

static double slot_x(const plot *p, int i)
{
	return MARGIN_L + (i + 0.5) * p->sw;
}

static double entropy_y(const plot *p, double h)
{
	if (!(h >= 0))
		h = 0;
	if (h > p->ymax)
		h = p->ymax;
	return p->ya + p->ha * (1 - h / p->ymax);
}

static double max_entropy(const np_run *r)
{
	double m = 0;
	for (int k = 0; k < r->n_it; k++)
		for (int i = 0; i < r->it[k].profile.n; i++)
			if (!r->it[k].profile.l[i].absent)
				m = fmax(m, r->it[k].profile.l[i].H_layer);
	for (int i = 0; i < r->final_profile.n; i++)
		m = fmax(m, r->final_profile.l[i].H_layer);
	return m;
}

/* The profile panel (b) shows: the chosen iterate's fresh profile, else
 * the profile taken at the start of the iteration after it, else none. */
static void pick_states(plot *p)
{
	const np_run *r = p->r;
	if (r->final_profile.n == r->layers && r->layers > 0) {
		p->states = &r->final_profile;
		p->states_from = "chosen iterate";
		return;
	}
	for (int k = 0; k < r->n_it; k++) {
		if (r->it[k].index == r->chosen + 1 &&
		    r->it[k].profile.n == r->layers && r->layers > 0) {
			p->states = &r->it[k].profile;
			p->states_from = "chosen iterate, profiled by the next iteration";
			return;
		}
	}
}

static void layout(plot *p)
{
	int n = p->n;
	p->sw = n > 0 ? fmin(48, fmax(16, 520.0 / n)) : 48;
	p->pw = fmax(n * p->sw, MIN_PLOT_W);
	if (n > 0)
		p->sw = p->pw / n;
	int rows_a = p->r->n_it + 2;
	p->ya = TOP_A;
	p->ha = fmax(PANEL_H, rows_a * ROW_H + 8);
	p->yb = p->ya + p->ha + PANEL_GAP;
	p->hb = PANEL_H;
	p->ymax = max_entropy(p->r) > 1.0 ? 1.6 : 1.0;
	p->width = MARGIN_L + p->pw + LEGEND_GAP +
	           (p->r->method == NP_METHOD_EASIER ? LEGEND_W_EASIER : LEGEND_W);
	/* Rotated names: about 0.6 em per character, at 45 degrees. */
	double names = 18 + (NAME_MAX + 4) * NAME_FONT * 0.6 * 0.7071 + 22;
	p->height = p->yb + p->hb + names;
	pick_states(p);
}

/* --------------------------------------------------------------- parts */

static void header(plot *p)
{
	const np_run *r = p->r;
	fprintf(p->f, "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
	        "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" "
	        "width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
	        "font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\" "
	        "font-size=\"11\">\n", p->width, p->height, p->width, p->height);
	fprintf(p->f, "<title>nepenc %s run: %d of %d rectified layers "
	        "removed</title>\n", method_title(r->method), r->removed, r->layers);
	fprintf(p->f, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" "
	        "fill=\"#ffffff\"/>\n", p->width, p->height);
	fprintf(p->f, "<text x=\"%d\" y=\"24\" font-size=\"15\" "
	        "font-weight=\"bold\">%s", MARGIN_L, method_title(r->method));
	if (r->model && *r->model) {
		fputs(" on ", p->f);
		put_text(p, r->model);
	}
	fprintf(p->f, ": %d of %d rectified layers removed, sparsity %.1f%%</text>\n",
	        r->removed, r->layers, pct(r->sparsity));
	char floor_note[40] = "";
	if (r->min_live > 0)
		snprintf(floor_note, sizeof floor_note, ", min-live %g", r->min_live);
	if (r->method == NP_METHOD_EASIER)
		fprintf(p->f, "<text x=\"%d\" y=\"43\">\xce\xb8 %g, entropy-eps %g, "
		        "method easier, map %s, fold %s, max-iter %d, epochs %d</text>\n",
		        MARGIN_L, r->theta, r->entropy_eps, np_easier_map_name(r->easier_map),
		        np_fold_name(r->fold), r->max_iter, r->epochs);
	else
		fprintf(p->f, "<text x=\"%d\" y=\"43\">\xce\xb6 %g, \xce\xb8 %g, "
		        "entropy-eps %g, method %s, criterion %s, fold %s, "
		        "max-iter %d, epochs %d, backoff %d%s</text>\n", MARGIN_L,
		        r->zeta, r->theta, r->entropy_eps, np_method_name(r->method),
		        np_criterion_name(r->criterion), np_fold_name(r->fold),
		        r->max_iter, r->epochs, r->backoff, floor_note);
	fprintf(p->f, "<text x=\"%d\" y=\"58\">top-1, dense \xe2\x86\x92 "
	        "final: validation %.2f%% \xe2\x86\x92 %.2f%%", MARGIN_L,
	        r->dense_val, r->final_val);
	if (r->dense_test >= 0 && r->final_test >= 0)
		fprintf(p->f, ", test %.2f%% \xe2\x86\x92 %.2f%%",
		        r->dense_test, r->final_test);
	fprintf(p->f, "</text>\n<text x=\"%d\" y=\"73\">chosen iteration %d "
	        "of %d; nodes %d \xe2\x86\x92 %d, depth %d \xe2\x86\x92 %d; "
	        "%.1f s</text>\n", MARGIN_L, r->chosen, r->n_it, r->nodes_before,
	        r->nodes_after, r->depth_before, r->depth_after, r->seconds);
}

/* Frame, horizontal grid lines with labels, y label, panel title. */
static void axes(plot *p, double top, double h, double ymax, double step,
                 bool percent, const char *ylabel, const char *title)
{
	double x0 = MARGIN_L, x1 = MARGIN_L + p->pw;
	fprintf(p->f, "<g font-size=\"10\" fill=\"#333333\">\n");
	for (int k = 0; k * step <= ymax + 1e-9; k++) {
		double v = k * step, y = top + h * (1 - v / ymax);
		fprintf(p->f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
		        "stroke=\"#e0e0e0\"/>\n", x0, y, x1, y);
		fprintf(p->f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">",
		        x0 - 5, y + 3.5);
		if (percent)
			fprintf(p->f, "%.0f%%</text>\n", pct(v));
		else
			fprintf(p->f, "%.1f</text>\n", v);
	}
	fprintf(p->f, "</g>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
	        "height=\"%.1f\" fill=\"none\" stroke=\"#333333\"/>\n",
	        x0, top, p->pw, h);
	double yc = top + h / 2;
	fprintf(p->f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"middle\" "
	        "transform=\"rotate(-90 %d %.1f)\">%s</text>\n",
	        22, yc, 22, yc, ylabel);
	fprintf(p->f, "<text x=\"%.1f\" y=\"%.1f\" font-weight=\"bold\">",
	        x0, top - 16);
	put_text(p, title);
	fprintf(p->f, "</text>\n");
}

/* One legend row: a sample (line or box) then the label. */
static void legend_row(plot *p, double y, const char *colour, const char *dash,
                       bool box, bool outline, const char *label)
{
	double x = MARGIN_L + p->pw + LEGEND_GAP;
	if (box)
		fprintf(p->f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"18\" height=\"10\" "
		        "fill=\"%s\" stroke=\"%s\" stroke-width=\"%s\"/>\n", x,
		        y - 8, colour, outline ? "#000000" : "none",
		        outline ? "2" : "0");
	else
		fprintf(p->f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
		        "stroke=\"%s\" stroke-width=\"2\"%s%s%s/>\n", x, y - 3,
		        x + 18, y - 3, colour, dash ? " stroke-dasharray=\"" : "",
		        dash ? dash : "", dash ? "\"" : "");
	fprintf(p->f, "<text x=\"%.1f\" y=\"%.1f\">", x + 24, y);
	put_text(p, label);
	fprintf(p->f, "</text>\n");
}

/* The layer indices under panel (a), aligned with the slots. */
static void index_ticks(plot *p, double y)
{
	int every = p->sw >= 14 ? 1 : (int)ceil(14 / p->sw);
	fprintf(p->f, "<g font-size=\"9\" fill=\"#333333\" "
	        "text-anchor=\"middle\">\n");
	for (int i = 0; i < p->n; i += every)
		fprintf(p->f, "<text x=\"%.1f\" y=\"%.1f\">%d</text>\n",
		        slot_x(p, i), y + 12, i + 1);
	fprintf(p->f, "</g>\n<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">"
	        "rectified layer (index; names under panel b)</text>\n",
	        MARGIN_L + p->pw / 2, y + 28);
}

static void profile_line(plot *p, const np_profile *pr, const char *colour,
                         const char *dash, double width, bool squares)
{
	if (pr->n != p->n || p->n == 0)
		return;
	/* One polyline per run of present layers: a layer an EASIER step
	 * removed earlier leaves a gap. */
	for (int i = 0; i < p->n; ) {
		if (pr->l[i].absent) {
			i++;
			continue;
		}
		fprintf(p->f, "<polyline fill=\"none\" stroke=\"%s\" "
		        "stroke-width=\"%.1f\" stroke-linejoin=\"round\"%s%s%s "
		        "points=\"", colour, width, dash ? " stroke-dasharray=\"" : "",
		        dash ? dash : "", dash ? "\"" : "");
		for (int first = i; i < p->n && !pr->l[i].absent; i++)
			fprintf(p->f, "%s%.1f,%.1f", i > first ? " " : "", slot_x(p, i),
			        entropy_y(p, pr->l[i].H_layer));
		fprintf(p->f, "\"/>\n");
	}
	fprintf(p->f, "<g fill=\"%s\">\n", colour);
	for (int i = 0; i < p->n; i++) {
		if (pr->l[i].absent)
			continue;
		double x = slot_x(p, i), y = entropy_y(p, pr->l[i].H_layer);
		if (squares)
			fprintf(p->f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"5\" "
			        "height=\"5\"/>\n", x - 2.5, y - 2.5);
		else
			fprintf(p->f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\"/>\n",
			        x, y);
	}
	fprintf(p->f, "</g>\n");
}

static void iteration_label(const np_iteration *it, bool chosen, char *buf,
                            size_t size)
{
	if (it->layer > 0)
		snprintf(buf, size, "iteration %d: layer %d %s, val %.2f%%, %s%s",
		         it->index, it->layer, np_easier_map_name(it->map), it->val_top1,
		         it->accepted ? "accepted" : "undone",
		         chosen ? " (chosen)" : "");
	else if (it->exhausted)
		snprintf(buf, size, "iteration %d: nothing left to try", it->index);
	else
		snprintf(buf, size, "iteration %d: \xce\xb6 %g, val %.2f%%, %s%s",
		         it->index, it->zeta, it->val_top1,
		         it->backoff ? "failed, rolled back"
		         : it->accepted ? "accepted" : "failed",
		         chosen ? " (chosen)" : "");
}

/* EASIER: a ring on the layer the step linearized, on its line. */
static void step_marker(plot *p, const np_iteration *it, const char *colour)
{
	int i = it->layer - 1;
	if (i < 0 || i >= p->n || it->profile.n != p->n || it->profile.l[i].absent)
		return;
	fprintf(p->f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"none\" "
	        "stroke=\"%s\" stroke-width=\"2\"/>\n", slot_x(p, i),
	        entropy_y(p, it->profile.l[i].H_layer), colour);
}

static void panel_entropy(plot *p)
{
	const np_run *r = p->r;
	axes(p, p->ya, p->ha, p->ymax, 0.2, false, "H(l) [bits]",
	     r->method == NP_METHOD_EASIER
	     ? "(a) Layer entropy H(l) before each step; ringed: the layer it linearized"
	     : "(a) Layer entropy H(l) before masking, per iteration");
	index_ticks(p, p->ya + p->ha);
	double ly = p->ya + 10;
	char colour[8], label[160];
	for (int k = 0; k < r->n_it; k++, ly += ROW_H) {
		const np_iteration *it = &r->it[k];
		iter_colour(k, r->n_it, colour);
		const char *dash = it->accepted && !it->backoff ? NULL : "2 3";
		profile_line(p, &it->profile, colour, dash,
		             it->index == r->chosen ? 2.4 : 1.5, false);
		step_marker(p, it, colour);
		iteration_label(it, it->index == r->chosen, label, sizeof label);
		legend_row(p, ly, colour, dash, false, false, label);
	}
	if (r->final_profile.n == p->n && p->n > 0) {
		profile_line(p, &r->final_profile, "#000000", "6 3", 1.5, true);
		legend_row(p, ly, "#000000", "6 3", false, false,
		           "chosen iterate, re-profiled");
	}
	if (r->n_it == 0 && r->final_profile.n == 0)
		fprintf(p->f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
		        "fill=\"#777777\">no entropy profile recorded</text>\n",
		        MARGIN_L + p->pw / 2, p->ya + p->ha / 2);
}

/* One stacked bar; fractions of the layer's neurons. */
static void state_bar(plot *p, int i, const np_layer_profile *lp, bool removed)
{
	if (lp->absent) {
		/* Removed by an EASIER step: no states to show, only the outline. */
		double bw = fmin(p->sw * 0.7, 44), x = slot_x(p, i) - bw / 2;
		fprintf(p->f, "<g>\n<title>");
		put_text(p, layer_name(p->r, i));
		fprintf(p->f, ": removed by an EASIER step</title>\n<rect x=\"%.1f\" "
		        "y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
		        "stroke=\"#000000\" stroke-width=\"2\" stroke-dasharray=\"4 3\"/>"
		        "\n</g>\n", x, p->yb, bw, p->hb);
		return;
	}
	np_state_summary s;
	np_state_summarise(lp, &s);
	int64_t v[N_CAT] = {s.off, s.on, s.off_hi, s.dont_care, s.mixed};
	double bw = fmin(p->sw * 0.7, 44), x = slot_x(p, i) - bw / 2;
	double y = p->yb + p->hb;
	fprintf(p->f, "<g>\n<title>");
	put_text(p, layer_name(p->r, i));
	fprintf(p->f, ": %lld neurons, H = %.4g bits; OFF %lld, ON %lld, OFF+ "
	        "%lld, don't care %lld, mixed %lld</title>\n",
	        (long long)lp->neurons, lp->H_layer, (long long)s.off,
	        (long long)s.on, (long long)s.off_hi, (long long)s.dont_care,
	        (long long)s.mixed);
	for (int c = 0; c < N_CAT && lp->neurons > 0; c++) {
		double h = p->hb * (double)v[c] / (double)lp->neurons;
		if (v[c] == 0)
			continue;
		y -= h;
		fprintf(p->f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
		        "height=\"%.1f\" fill=\"%s\"/>\n", x, y, bw, h, cat_colour[c]);
	}
	if (removed)
		fprintf(p->f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
		        "height=\"%.1f\" fill=\"none\" stroke=\"#000000\" "
		        "stroke-width=\"2\"/>\n", x, p->yb, bw, p->hb);
	if (p->sw >= 22)
		fprintf(p->f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"9\" "
		        "text-anchor=\"middle\" fill=\"#333333\">%lld</text>\n",
		        slot_x(p, i), p->yb - 3, (long long)lp->neurons);
	fprintf(p->f, "</g>\n");
}

static void panel_states(plot *p)
{
	char title[160];
	snprintf(title, sizeof title, "(b) Neuron states per layer, %s%s",
	         p->states ? p->states_from : "no profile recorded",
	         p->sw >= 22 ? " (neurons above bars)" : "");
	axes(p, p->yb, p->hb, 1.0, 0.25, true, "neurons [%]", title);
	double ly = p->yb + 10;
	for (int c = N_CAT - 1; c >= 0; c--, ly += ROW_H)
		legend_row(p, ly, cat_colour[c], NULL, true, false, cat_label[c]);
	legend_row(p, ly, "#ffffff", NULL, true, true,
	           "outlined, bold name: layer removed");
	if (!p->states)
		return;
	for (int i = 0; i < p->n; i++)
		state_bar(p, i, &p->states->l[i], layer_removed(p->r, i));
}

/* Layer names under panel (b), reading down to the right at 45 degrees:
 * they hang into the empty space under the legends, never off the left. */
static void layer_names(plot *p)
{
	double y = p->yb + p->hb + 10;
	fprintf(p->f, "<g font-size=\"%d\">\n", NAME_FONT);
	for (int i = 0; i < p->n; i++) {
		bool removed = layer_removed(p->r, i);
		char name[4 * NAME_MAX + 8];
		short_name(layer_name(p->r, i), name, sizeof name);
		double x = slot_x(p, i) - 3;
		fprintf(p->f, "<text x=\"%.1f\" y=\"%.1f\" transform=\"rotate(45 "
		        "%.1f %.1f)\"%s>%d ", x, y, x, y,
		        removed ? " font-weight=\"bold\"" : "", i + 1);
		put_text(p, name);
		fprintf(p->f, "</text>\n");
	}
	fprintf(p->f, "</g>\n");
}

/* ---------------------------------------------------------------- entry */

np_status np_plot_write(const np_run *run, const char *path, np_error *err)
{
	if (run->layers < 0 || run->n_it < 0 || (run->n_it > 0 && !run->it))
		return np_fail(err, NP_ERR_INVALID, "the run record is "
		               "incomplete (%d layers, %d iterations)",
		               run->layers, run->n_it);
	np_atomic_file *af = np_atomic_open(path, err);
	if (!af)
		return err->status ? err->status : NP_ERR_IO;
	plot p = {.f = np_atomic_stream(af), .r = run, .n = run->layers};
	layout(&p);
	header(&p);
	panel_entropy(&p);
	panel_states(&p);
	layer_names(&p);
	fprintf(p.f, "</svg>\n");
	if (p.nomem) {
		np_atomic_abort(af);
		return np_fail(err, NP_ERR_NOMEM, "out of memory writing %s", path);
	}
	return np_atomic_commit(af, err);
}
