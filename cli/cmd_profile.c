/* cmd_profile.c - `nepenc profile`: the entropy of every rectified layer
 * of a model on --data (DESIGN.md section 3), as a table or one JSON
 * document. */
#include "commands.h"

#include <stdio.h>
#include <string.h>

#include "json.h"
#include "layers.h"
#include "nepenthe.h"
#include "session.h"

/* State totals of one layer over every neuron. */
typedef struct np_totals {
	int64_t on, off, off_hi, dont_care;
} np_totals;

static np_totals np_layer_totals(const np_layer_profile *lp)
{
	np_totals t = {0};
	for (int64_t i = 0; i < lp->neurons; i++) {
		const int64_t *c = lp->counts + i * lp->n_states;
		t.off += c[NP_STATE_OFF];
		t.on += c[NP_STATE_ON];
		if (lp->n_states > NP_STATE_OFF_HI)
			t.off_hi += c[NP_STATE_OFF_HI];
		t.dont_care += lp->dont_care[i];
	}
	return t;
}

static void np_profile_json(const np_layers *ls, const np_profile *p, int64_t n)
{
	np_json j;
	np_json_init(&j, stdout);
	np_json_begin_object(&j, NULL);
	np_json_begin_array(&j, "layers");
	for (int l = 0; l < p->n; l++) {
		const np_layer_profile *lp = &p->l[l];
		np_totals t = np_layer_totals(lp);
		np_json_begin_object(&j, NULL);
		np_json_int(&j, "layer", l);
		np_json_string(&j, "rectifier", ls->v[l].rectifier->name);
		np_json_string(&j, "kind", np_rect_kind_name(ls->v[l].kind));
		np_json_int(&j, "neurons", lp->neurons);
		np_json_double(&j, "H", lp->H_layer);
		np_json_int(&j, "zero_entropy_neurons", lp->zero_neurons);
		np_json_int(&j, "on", t.on);
		np_json_int(&j, "off", t.off);
		np_json_int(&j, "off_hi", t.off_hi);
		np_json_int(&j, "dont_care", t.dont_care);
		np_json_end(&j);
	}
	np_json_end(&j);
	np_json_int(&j, "n", n);
	np_json_end(&j);
}

static double np_percent(int64_t part, const np_totals *t)
{
	int64_t all = t->on + t->off + t->off_hi + t->dont_care;
	return all > 0 ? 100.0 * (double)part / (double)all : 0.0;
}

/* Percentages are of every pre-activation value seen; what ON, OFF (and
 * OFF+ for Clip) leave to 100% is don't care. */
static void np_profile_table(const np_layers *ls, const np_profile *p,
                             int64_t n, const char *spec)
{
	int w = (int)strlen("rectifier");
	bool three = false;
	for (int l = 0; l < p->n; l++) {
		int len = (int)strlen(ls->v[l].rectifier->name);
		w = len > w ? len : w;
		three |= p->l[l].n_states > NP_STATE_OFF_HI;
	}
	printf("%5s  %-*s  %-10s  %8s  %8s  %7s  %6s  %6s%s\n", "layer", w,
	       "rectifier", "kind", "neurons", "H(l)", "zero-H", "ON%", "OFF%",
	       three ? "   OFF+%" : "");
	for (int l = 0; l < p->n; l++) {
		const np_layer_profile *lp = &p->l[l];
		np_totals t = np_layer_totals(lp);
		printf("%5d  %-*s  %-10s  %8lld  %8.6f  %7lld  %6.2f  %6.2f", l, w,
		       ls->v[l].rectifier->name, np_rect_kind_name(ls->v[l].kind),
		       (long long)lp->neurons, lp->H_layer, (long long)lp->zero_neurons,
		       np_percent(t.on, &t), np_percent(t.off, &t));
		if (three && lp->n_states > NP_STATE_OFF_HI)
			printf("  %6.2f", np_percent(t.off_hi, &t));
		else if (three)
			printf("  %6s", "-");
		printf("\n");
	}
	printf("%d rectified layer(s), %lld example(s) of %s; H(l) in bits\n",
	       p->n, (long long)n, spec);
}

np_status np_cmd_profile(const np_cli *c, np_error *err)
{
	np_session s = {0};
	np_dataset d = {0};
	np_layers ls = {0};
	np_profile p = {0};
	np_status st = np_session_open(&s, c, err);
	if (st == NP_OK)
		st = np_session_data(&s, c, c->data, &d, err);
	if (st == NP_OK)
		st = np_find_layers(s.m, &ls, err);
	if (st == NP_OK) {
		np_profile_opts o = {.batch = c->batch, .no_dont_care = c->no_dont_care,
		                     .quiet = c->quiet};   /* progress: stderr */
		st = np_profile_run(s.rt, &ls, &d, &o, &p, err);
	}
	if (st == NP_OK) {
		if (c->json)
			np_profile_json(&ls, &p, d.n);
		else if (!c->quiet)
			np_profile_table(&ls, &p, d.n, c->data);
	}
	np_profile_free(&p);
	np_layers_free(&ls);
	np_dataset_free(&d);
	np_session_close(&s);
	return st;
}
