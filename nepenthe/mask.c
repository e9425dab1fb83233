/* mask.c - budgeted unstructured masking (DESIGN.md section 4, paper
 * eqs. 13-16): the entropy-weighted budget of NEPENTHE, the IMP baseline
 * and the ablations.  Masks live in the runtime's parameters. */
#include "nepenthe.h"

#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One prunable weight tensor of a layer, with how its elements map to the
 * layer's neurons (output channels) and input features: its producer's
 * weight_geom (the op table's). */
typedef struct np_wview {
	np_param *p;
	const np_node *producer;
	np_weight_geom g;        /* neurons: g.out_ch, on W's axis g.out_axis */
	int64_t stride;          /* elements between neurons: the product of
	                          * W's dims after out_axis */
} np_wview;

const np_node *np_layer_weight_producer(const np_layer *L, const np_value *w)
{
	for (int k = 0; k < L->n_producers; k++)
		for (int i = 0; i < L->producers[k]->n_inputs; i++)
			if (L->producers[k]->inputs[i] == w)
				return L->producers[k];
	return NULL;
}

static np_status np_wview_of(np_rt *rt, const np_layer *L, int k, np_wview *v,
                             np_error *err)
{
	const np_value *w = L->weights[k];
	const np_tensor *t = w->init;
	memset(v, 0, sizeof *v);
	v->p = np_rt_param_by_name(rt, w->name);
	v->producer = np_layer_weight_producer(L, w);
	if (!v->p || !v->producer || t->rank < 2)
		return np_fail(err, NP_ERR_INVALID, "weight '%s' of layer %s is not a parameter",
		               w->name, L->rectifier->name);
	const np_node *n = v->producer;
	if (!np_node_weight_geom(n, t->rank, t->dims, &v->g))
		return np_fail(err, NP_ERR_INVALID, "weight '%s' of layer %s does not fit "
		               "its node %s (op %s)", w->name, L->rectifier->name,
		               n->name ? n->name : "", n->op_type);
	v->stride = 1;
	for (int d = v->g.out_axis + 1; d < t->rank; d++)
		v->stride *= t->dims[d];
	return NP_OK;
}

static int64_t np_wview_neuron(const np_wview *v, int64_t idx)
{
	return (idx / v->stride) % v->g.out_ch;
}

/* The input feature (of g.K) element idx of the weight reads. */
static int64_t np_wview_feature(const np_wview *v, int64_t idx)
{
	const np_weight_geom *g = &v->g;
	if (g->out_axis != 0)            /* W [K, out]: one row per feature */
		return idx / g->out_ch;
	/* W [out, K / groups, taps...]: neuron o reads its group's features,
	 * each through stride / (K / groups) taps. */
	int64_t k_g = g->K / g->groups, taps = v->stride / k_g;
	int64_t o = idx / v->stride;
	return (o / (g->out_ch / g->groups)) * k_g + (idx % v->stride) / taps;
}

static uint8_t *np_param_mask(np_param *p, np_error *err)
{
	if (!p->mask) {
		p->mask = malloc((size_t)p->nelem + 1);
		if (!p->mask) {
			np_fail(err, NP_ERR_NOMEM, "out of memory for the mask of '%s'",
			        p->value->name);
			return NULL;
		}
		memset(p->mask, 1, (size_t)p->nelem);
	}
	return p->mask;
}

/* A weight that may be pruned now: a candidate. */
typedef struct np_cand {
	float score;
	int32_t w;               /* index into the layer's wviews */
	int64_t idx;             /* flat index in that weight */
} np_cand;

static int np_cmp_cand(const void *a, const void *b)
{
	const np_cand *x = a, *y = b;
	if (x->score != y->score)
		return x->score < y->score ? -1 : 1;
	if (x->w != y->w)
		return x->w < y->w ? -1 : 1;
	return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Everything one layer contributes to a masking step. */
typedef struct np_lstate {
	np_wview *wv;
	int n_w;
	np_cand *cand;           /* prunable now */
	int64_t n_cand;
	int64_t nonzero;         /* unmasked weights, candidates or not */
	double I;
	bool in_L;
	/* --min-live: per neuron, live weights above its floor; cap: how
	 * many candidates may go this step (all of them without it). */
	int64_t *room;
	int64_t cap;
} np_lstate;

static float np_score(const np_mask_opts *o, int gw, const np_wview *v, int64_t idx)
{
	float a = fabsf(v->p->data[idx]);
	if (o->criterion != NP_CRIT_WANDA)
		return a;
	/* Wanda: |w| * ||x_j||, j the input feature the weight reads. */
	return (float)(a * o->input_norms[gw][np_wview_feature(v, idx)]);
}

/* Collect candidates and the layer's score I(l). */
static np_status np_layer_collect(np_rt *rt, const np_layer *L, const np_layer_profile *lp,
                                  const np_mask_opts *o, int gw0, np_lstate *s,
                                  np_error *err)
{
	s->wv = calloc((size_t)L->n_weights + 1, sizeof(np_wview));
	int64_t total = 0;
	if (!s->wv)
		return np_fail(err, NP_ERR_NOMEM, "out of memory masking");
	for (int k = 0; k < L->n_weights; k++) {
		np_status st = np_wview_of(rt, L, k, &s->wv[k], err);
		if (st != NP_OK)
			return st;
		if (!np_param_mask(s->wv[k].p, err))
			return err->status;
		total += s->wv[k].p->nelem;
	}
	s->n_w = L->n_weights;
	s->cand = malloc(sizeof(np_cand) * (size_t)(total + 1));
	if (!s->cand)
		return np_fail(err, NP_ERR_NOMEM, "out of memory masking");
	double sum_abs = 0;
	for (int k = 0; k < s->n_w; k++) {
		const np_wview *v = &s->wv[k];
		for (int64_t i = 0; i < v->p->nelem; i++) {
			if (!v->p->mask[i])
				continue;
			s->nonzero++;
			int64_t neuron = np_wview_neuron(v, i);
			bool live = neuron < lp->neurons && lp->H[neuron] > 0;
			if (!live && !o->no_neuron_selection)
				continue;
			sum_abs += fabsf(v->p->data[i]);
			s->cand[s->n_cand++] = (np_cand){np_score(o, gw0 + k, v, i), k, i};
		}
	}
	double mean_abs = s->n_cand ? sum_abs / (double)s->n_cand : 0;
	s->I = mean_abs * lp->H_layer;
	return NP_OK;
}

/* Integers b[l] summing to B from real shares (floor, then the largest
 * remainders, ties to the lower layer index); rem: n scratch doubles. */
static void np_apportion(const double *share, const bool *in, int n, int64_t B,
                         int64_t *b, double *rem)
{
	double total = 0;
	for (int l = 0; l < n; l++)
		if (in[l])
			total += share[l];
	int64_t given = 0;
	for (int l = 0; l < n; l++) {
		b[l] = 0;
		rem[l] = -1;
		if (!in[l] || total <= 0)
			continue;
		double exact = (double)B * share[l] / total;
		b[l] = (int64_t)floor(exact);
		rem[l] = exact - (double)b[l];
		given += b[l];
	}
	while (given < B) {
		int best = -1;
		for (int l = 0; l < n; l++)
			if (in[l] && rem[l] >= 0 && (best < 0 || rem[l] > rem[best]))
				best = l;
		if (best < 0)
			break;
		b[best]++;
		rem[best] = -1;
		given++;
	}
}

static void np_prune(np_param *p, int64_t idx)
{
	p->mask[idx] = 0;
	p->data[idx] = 0.0f;
	if (p->grad)
		p->grad[idx] = 0.0f;
	if (p->momentum)
		p->momentum[idx] = 0.0f;
	if (p->second)
		p->second[idx] = 0.0f;
}

/* Remove the b smallest-score candidates of a layer (capped), passing
 * over those of a neuron at its --min-live floor. */
static int64_t np_prune_layer(np_lstate *s, int64_t b)
{
	if (b > s->n_cand)
		b = s->n_cand;
	if (b <= 0)
		return 0;
	qsort(s->cand, (size_t)s->n_cand, sizeof(np_cand), np_cmp_cand);
	int64_t done = 0;
	for (int64_t i = 0; i < s->n_cand && done < b; i++) {
		const np_cand *c = &s->cand[i];
		int64_t *room = s->room ? &s->room[np_wview_neuron(&s->wv[c->w], c->idx)] : NULL;
		if (room && *room <= 0)
			continue;
		if (room)
			(*room)--;
		np_prune(s->wv[c->w].p, c->idx);
		done++;
	}
	return done;
}

/* ------------------------------------------- the no-collapse budget */

/* --min-live F: room[n] = live weights of neuron n above its floor
 * max(1, ceil(F x its weights)), and s->cap = the candidates that may go
 * (for each neuron, at most its room).  Why per neuron: a neuron left
 * without weights outputs its bias, and a layer whose neurons all do is
 * a constant (the collapse of docs/nepenthe.md); a floor of one keeps
 * every neuron reading its input. */
static np_status np_layer_floor(np_lstate *s, double F, np_error *err)
{
	int64_t n = 0;
	for (int k = 0; k < s->n_w; k++)
		n = s->wv[k].g.out_ch > n ? s->wv[k].g.out_ch : n;
	int64_t *total = calloc((size_t)n + 1, sizeof(int64_t));
	int64_t *cands = calloc((size_t)n + 1, sizeof(int64_t));
	s->room = calloc((size_t)n + 1, sizeof(int64_t));
	np_status st = total && cands && s->room ? NP_OK
	               : np_fail(err, NP_ERR_NOMEM, "out of memory masking");
	for (int k = 0; st == NP_OK && k < s->n_w; k++)
		for (int64_t i = 0; i < s->wv[k].p->nelem; i++) {
			int64_t neuron = np_wview_neuron(&s->wv[k], i);
			total[neuron]++;
			s->room[neuron] += s->wv[k].p->mask[i] != 0;
		}
	for (int64_t i = 0; st == NP_OK && i < s->n_cand; i++)
		cands[np_wview_neuron(&s->wv[s->cand[i].w], s->cand[i].idx)]++;
	s->cap = 0;
	for (int64_t j = 0; st == NP_OK && j < n; j++) {
		int64_t floor_j = (int64_t)ceil(F * (double)total[j]);
		s->room[j] -= floor_j > 1 ? floor_j : 1;
		if (s->room[j] < 0)
			s->room[j] = 0;
		s->cap += s->room[j] < cands[j] ? s->room[j] : cands[j];
	}
	free(total);
	free(cands);
	return st;
}

/* np_apportion with a cap per layer: a layer given more than s[l].cap
 * takes its cap, and the rest of B is apportioned again over the others
 * by the same shares, until no layer is over its cap (each round caps at
 * least one, so at most n rounds).  open: n scratch flags. */
static void np_apportion_capped(const double *share, const bool *in, int n, int64_t B,
                                const np_lstate *s, int64_t *b, double *rem, bool *open)
{
	int64_t fixed = 0;
	memcpy(open, in, sizeof(bool) * (size_t)n);
	for (bool over = true; over; ) {
		np_apportion(share, open, n, B - fixed, b, rem);
		over = false;
		for (int l = 0; l < n; l++)
			if (open[l] && b[l] > s[l].cap) {
				open[l] = false;
				fixed += s[l].cap;
				over = true;
			}
	}
	for (int l = 0; l < n; l++)
		if (in[l] && !open[l])
			b[l] = s[l].cap;
}

/* IMP: global magnitude pruning of zeta of what remains; head: n
 * scratch counters. */
static void np_prune_global(np_lstate *s, int n, double zeta, int64_t *head,
                            np_mask_layer_stat *stats)
{
	int64_t total = 0, nonzero = 0;
	for (int l = 0; l < n; l++) {
		total += s[l].n_cand;
		nonzero += s[l].nonzero;
	}
	int64_t B = (int64_t)floor(zeta * (double)nonzero);
	/* Sort each layer by score (ties: weight, flat index), then merge:
	 * the smallest head wins, the earlier layer on ties. */
	for (int l = 0; l < n; l++)
		qsort(s[l].cand, (size_t)s[l].n_cand, sizeof(np_cand), np_cmp_cand);
	memset(head, 0, sizeof(int64_t) * (size_t)n);
	for (int64_t r = 0; r < B && r < total; r++) {
		int best = -1;
		for (int l = 0; l < n; l++)
			if (head[l] < s[l].n_cand &&
			    (best < 0 || s[l].cand[head[l]].score < s[best].cand[head[best]].score))
				best = l;
		if (best < 0)
			break;
		np_cand c = s[best].cand[head[best]++];
		np_prune(s[best].wv[c.w].p, c.idx);
		if (stats)
			stats[best].removed++;
	}
	for (int l = 0; stats && l < n; l++)
		stats[l].budget = stats[l].removed;
}

np_status np_mask_step(np_rt *rt, const np_layers *ls, const np_profile *prof,
                       const np_mask_opts *o, np_mask_layer_stat *stats,
                       np_error *err)
{
	int n = ls->n;
	np_lstate *s = calloc((size_t)n + 1, sizeof(np_lstate));
	double *share = calloc((size_t)n + 1, sizeof(double));
	bool *in = calloc((size_t)n + 1, sizeof(bool));
	int64_t *b = calloc((size_t)n + 1, sizeof(int64_t));
	/* Scratch: the remainders of np_apportion, the heads of IMP's merge. */
	double *rem = calloc((size_t)n + 1, sizeof(double));
	int64_t *head = calloc((size_t)n + 1, sizeof(int64_t));
	bool *open = calloc((size_t)n + 1, sizeof(bool));
	/* A failed allocation is an error, never "nothing to prune" (which
	 * would end the loop as if the model were exhausted). */
	np_status st = s && share && in && b && rem && head && open ? NP_OK
	               : np_fail(err, NP_ERR_NOMEM, "out of memory masking");
	if (st == NP_OK && o->criterion == NP_CRIT_WANDA && !o->input_norms)
		st = np_fail(err, NP_ERR_INVALID, "--criterion wanda: no input norms were collected");
	/* DESIGN section 11: an option the method does not have is refused
	 * (the command line refuses it first; this guards other callers). */
	if (st == NP_OK && o->method == NP_METHOD_IMP &&
	    (o->no_entropy_budget || o->no_neuron_selection))
		st = np_fail(err, NP_ERR_USAGE, "--%s does not apply to --method imp",
		             o->no_entropy_budget ? "no-entropy-budget" : "no-neuron-selection");
	if (st == NP_OK && o->method != NP_METHOD_NEPENTHE && o->min_live > 0)
		st = np_fail(err, NP_ERR_USAGE, "--min-live applies to --method nepenthe only");
	np_mask_opts imp = *o;
	if (o->method == NP_METHOD_IMP)
		imp.no_neuron_selection = true;   /* IMP ignores entropy */
	int gw = 0;
	for (int l = 0; st == NP_OK && l < n; l++) {
		st = np_layer_collect(rt, &ls->v[l], &prof->l[l], &imp, gw, &s[l], err);
		s[l].cap = s[l].n_cand;
		if (st == NP_OK && o->min_live > 0)
			st = np_layer_floor(&s[l], o->min_live, err);
		gw += ls->v[l].n_weights;
		if (stats) {
			memset(&stats[l], 0, sizeof stats[l]);
			stats[l].nonzero_before = s[l].nonzero;
			stats[l].I = s[l].I;
		}
	}
	if (st == NP_OK && o->method == NP_METHOD_IMP) {
		np_prune_global(s, n, o->zeta, head, stats);
	} else if (st == NP_OK) {
		/* L: layers still with entropy and score (section 4). */
		double Imax = 0;
		int64_t nonzero_L = 0;
		for (int l = 0; l < n; l++) {
			in[l] = prof->l[l].H_layer > 0 && s[l].I > 0;
			if (in[l]) {
				nonzero_L += s[l].nonzero;
				if (s[l].I > Imax)
					Imax = s[l].I;
			}
		}
		int64_t B = (int64_t)floor(o->zeta * (double)nonzero_L);
		double Rmax = 0;
		for (int l = 0; l < n; l++)
			if (in[l] && Imax / s[l].I > Rmax)
				Rmax = Imax / s[l].I;
		for (int l = 0; l < n; l++) {
			if (!in[l])
				continue;
			double R = Imax / s[l].I;
			share[l] = o->no_entropy_budget ? (double)s[l].nonzero : exp(R - Rmax);
			if (stats)
				stats[l].R = R;
		}
		if (o->min_live > 0)
			np_apportion_capped(share, in, n, B, s, b, rem, open);
		else
			np_apportion(share, in, n, B, b, rem);
		for (int l = 0; l < n; l++) {
			int64_t removed = in[l] ? np_prune_layer(&s[l], b[l]) : 0;
			if (stats) {
				stats[l].budget = b[l];
				stats[l].removed = removed;
			}
		}
	}
	for (int l = 0; s && l < n; l++) {
		free(s[l].wv);
		free(s[l].cand);
		free(s[l].room);
	}
	free(s);
	free(share);
	free(in);
	free(b);
	free(rem);
	free(head);
	free(open);
	return st;
}
