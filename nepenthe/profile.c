/* profile.c - entropy profile of the rectified layers (DESIGN.md section 3).
 *
 * Each batch of the dataset runs through the runtime in inference mode;
 * then every layer's pre-activation z, a float tensor [N, C, ...], is read
 * back by name and its states counted per channel over the batch and the
 * spatial positions; for a layer whose neurons are z's last axis (an
 * encoder's MLP, [B, T, C]), per feature over every batch x token
 * position.  GELU and SiLU are counted as the paper treats smooth
 * rectifiers (footnote 3, appendix): ON z > 0, OFF z < 0, z == 0 don't
 * care.  Counts are integers, so splitting the channels over threads
 * gives the same result with any thread count.
 */
#include "nepenthe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "progress.h"

#define NP_PROFILE_DEFAULT_BATCH 128

/* How a layer's z is split into states: OFF z < 0, ON 0 < z < hi,
 * OFF_HI z > hi (three-state Clip only); z at a bound is don't care. */
typedef struct np_state_rule {
	float hi;                    /* +inf unless three-state */
	float on_max;                /* largest ON value: below hi, or +inf */
	bool three;
	bool zero_is_off;            /* --no-dont-care */
} np_state_rule;

static np_state_rule np_layer_rule(const np_layer *L, bool no_dont_care)
{
	np_state_rule r = {INFINITY, INFINITY, false, no_dont_care};
	if (L->kind == NP_RECT_CLIP && isfinite(L->clip_max)) {
		r.hi = L->clip_max;
		r.on_max = nextafterf(r.hi, 0.0f);
		r.three = true;
	}
	return r;
}

/* States of one row of values, added to the counts; rows are at most
 * NP_ROW_CHUNK long so 32-bit counters (which vectorize) cannot wrap. */
#define NP_ROW_CHUNK ((int64_t)1 << 30)

static void np_count_row(const float *p, int64_t len, const np_state_rule *r,
                         int64_t *off, int64_t *on, int64_t *off_hi)
{
	int32_t a = 0, b = 0, c = 0;
	const float hi = r->hi, on_max = r->on_max;
	if (r->zero_is_off) {
		#pragma omp simd reduction(+ : a, b, c)
		for (int64_t s = 0; s < len; s++) {
			a += p[s] <= 0.0f;
			b += (p[s] > 0.0f) & (p[s] <= on_max);
			c += p[s] > hi;
		}
	} else {
		#pragma omp simd reduction(+ : a, b, c)
		for (int64_t s = 0; s < len; s++) {
			a += p[s] < 0.0f;
			b += (p[s] > 0.0f) & (p[s] <= on_max);
			c += p[s] > hi;
		}
	}
	*off += a;
	*on += b;
	*off_hi += c;
}

/* Counts of channel c of z viewed as [N, C, S]; out[NP_STATE_*] and *dc
 * (don't care: z at a bound, or NaN) are added to. */
static void np_count_channel(const float *z, int64_t N, int64_t C, int64_t S,
                             int64_t c, const np_state_rule *r, int64_t *out,
                             int64_t *dc)
{
	int64_t off = 0, on = 0, off_hi = 0;
	if (S == 1) {
		/* [N, C]: the channel is a strided column, no rows to vectorize */
		for (int64_t n = 0; n < N; n++) {
			float v = z[n * C + c];
			off += r->zero_is_off ? v <= 0.0f : v < 0.0f;
			on += (v > 0.0f) & (v <= r->on_max);
			off_hi += v > r->hi;
		}
	} else {
		for (int64_t n = 0; n < N; n++) {
			const float *p = z + (n * C + c) * S;
			for (int64_t s = 0; s < S; s += NP_ROW_CHUNK)
				np_count_row(p + s, S - s < NP_ROW_CHUNK ? S - s : NP_ROW_CHUNK,
				             r, &off, &on, &off_hi);
		}
	}
	out[NP_STATE_OFF] += off;
	out[NP_STATE_ON] += on;
	if (r->three)
		out[NP_STATE_OFF_HI] += off_hi;
	*dc += N * S - off - on - off_hi;
}

/* Allocate lp for C neurons of n_states states, zeroed. */
static np_status np_layer_profile_init(np_layer_profile *lp, int64_t C,
                                       int n_states, np_error *err)
{
	size_t n = (size_t)C + 1;
	lp->neurons = C;
	lp->n_states = n_states;
	lp->counts = calloc(n * (size_t)n_states, sizeof(int64_t));
	lp->dont_care = calloc(n, sizeof(int64_t));
	lp->H = calloc(n, sizeof(double));
	if (!lp->counts || !lp->dont_care || !lp->H)
		return np_fail(err, NP_ERR_NOMEM, "out of memory for the profile of %lld neurons",
		               (long long)C);
	return NP_OK;
}

/* Count the states of layer L's z in the current plan of rt. */
static np_status np_count_layer(np_rt *rt, const np_layer *L,
                                np_layer_profile *lp, bool no_dont_care,
                                np_error *err)
{
	const np_rtensor *t = np_rt_value(rt, L->z->name);
	const char *rect = L->rectifier->name ? L->rectifier->name : "";
	if (!t)
		return np_fail(err, NP_ERR_INVALID, "pre-activation '%s' is not computed by the runtime (node %s, op %s)",
		               L->z->name, rect, L->rectifier->op_type);
	if (t->dtype != NP_FLOAT || t->rank < 2)
		return np_fail(err, NP_ERR_UNSUPPORTED, "pre-activation '%s' is not a float tensor [N, C, ...] (node %s, op %s)",
		               L->z->name, rect, L->rectifier->op_type);
	/* z viewed as [N, C, S] around the layer's neuron axis: axis 1 gives
	 * batch x spatial positions; the last axis ([B, T, C] after an
	 * encoder's MatMul) makes every batch x token position a sample
	 * (N = B T, S = 1). */
	int axis = np_layer_axis(L, t->rank);
	int64_t N = 1, C = t->dims[axis], S = 1;
	for (int k = 0; k < axis; k++)
		N *= t->dims[k];
	for (int k = axis + 1; k < t->rank; k++)
		S *= t->dims[k];
	/* Masking and linearization index neurons by the producers' output
	 * channels: a z whose neuron axis holds something else would profile
	 * the wrong axis. */
	if (L->neurons >= 0 && L->neurons != C)
		return np_fail(err, NP_ERR_UNSUPPORTED, "pre-activation '%s' has %lld entries on axis %d but the layer has %lld neurons (node %s, op %s)",
		               L->z->name, (long long)C, axis, (long long)L->neurons, rect,
		               L->rectifier->op_type);
	np_state_rule r = np_layer_rule(L, no_dont_care);
	if (!lp->counts) {
		np_status st = np_layer_profile_init(lp, C, r.three ? 3 : 2, err);
		if (st != NP_OK)
			return st;
	} else if (lp->neurons != C) {
		return np_fail(err, NP_ERR_INVALID, "pre-activation '%s' changed from %lld to %lld channels between batches (node %s, op %s)",
		               L->z->name, (long long)lp->neurons, (long long)C, rect,
		               L->rectifier->op_type);
	}
	const float *z = t->data;
	int ns = lp->n_states;
	#pragma omp parallel for schedule(static) num_threads(np_rt_threads(rt))
	for (int64_t c = 0; c < C; c++)
		np_count_channel(z, N, C, S, c, &r, lp->counts + c * ns,
		                 lp->dont_care + c);
	return NP_OK;
}

/* Entropy in bits of one neuron's counts; 0 when it has none. */
static double np_entropy(const int64_t *counts, int n_states)
{
	int64_t total = 0;
	for (int k = 0; k < n_states; k++)
		total += counts[k];
	if (total == 0)
		return 0.0;
	double H = 0.0;
	for (int k = 0; k < n_states; k++) {
		if (counts[k] == 0 || counts[k] == total)
			continue;
		double p = (double)counts[k] / (double)total;
		H -= p * log2(p);
	}
	return H;
}

static void np_layer_entropy(np_layer_profile *lp)
{
	double sum = 0.0;
	lp->zero_neurons = 0;
	for (int64_t i = 0; i < lp->neurons; i++) {
		lp->H[i] = np_entropy(lp->counts + i * lp->n_states, lp->n_states);
		sum += lp->H[i];
		lp->zero_neurons += lp->H[i] == 0.0;
	}
	lp->H_layer = lp->neurons > 0 ? sum / (double)lp->neurons : 0.0;
}

/* The model's single non-initializer input; NULL when it has several. */
static np_status np_profile_input(const np_rt *rt, const char **name,
                                  np_error *err)
{
	const np_graph *g = np_rt_model(rt)->graph;
	int n = 0;
	*name = NULL;
	for (int i = 0; i < g->n_inputs; i++) {
		if (g->inputs[i]->init)
			continue;
		*name = g->inputs[i]->name;
		n++;
	}
	if (n == 0)
		return np_fail(err, NP_ERR_INVALID, "the model has no input");
	if (n > 1)   /* the dataset's named arrays feed them */
		*name = NULL;
	return NP_OK;
}

/* Run one batch (x: n examples), count every layer and, for wanda, add
 * up the input-feature norms of the same batch. */
static np_status np_profile_batch(np_rt *rt, const np_layers *ls,
                                  const np_batches *b, const char *input,
                                  const float *x, int64_t n,
                                  const np_profile_opts *o, np_profile *p,
                                  np_error *err)
{
	np_rt_input in[NP_DATA_MAX_ARRAYS + 1];
	int n_in = np_batch_feed(b, input, x, n, in);
	np_status st = np_rt_run(rt, in, n_in, NP_RT_INFER, err);
	for (int l = 0; st == NP_OK && l < ls->n; l++)
		st = np_count_layer(rt, &ls->v[l], &p->l[l], o->no_dont_care, err);
	if (st == NP_OK && o->input_norms)
		st = np_input_norms_add(rt, ls, &p->norms, err);
	return st;
}

static void np_profile_unwatch(np_rt *rt, const np_layers *ls, int n_z,
                               bool norms)
{
	np_error ignored = {0};
	for (int l = 0; l < n_z; l++)
		np_rt_unwatch(rt, ls->v[l].z->name);
	if (norms)
		np_input_norms_watch(rt, ls, false, &ignored);
}

/* Watch what np_profile_batch reads by name, so the runtime keeps it
 * (rt.h, WATCH): every z, and the producers' inputs for wanda.  All or
 * nothing; np_profile_unwatch takes them back after the run, leaving
 * training's plans unwatched. */
static np_status np_profile_watch(np_rt *rt, const np_layers *ls, bool norms,
                                  np_error *err)
{
	for (int l = 0; l < ls->n; l++)
		if (np_rt_watch(rt, ls->v[l].z->name, err) != NP_OK) {
			np_profile_unwatch(rt, ls, l, false);
			return err->status;
		}
	if (norms && np_input_norms_watch(rt, ls, true, err) != NP_OK) {
		np_profile_unwatch(rt, ls, ls->n, false);
		return err->status;
	}
	return NP_OK;
}

np_status np_profile_run(np_rt *rt, const np_layers *ls, const np_dataset *d,
                         const np_profile_opts *o, np_profile *out,
                         np_error *err)
{
	memset(out, 0, sizeof *out);
	const char *input;
	np_status st = np_profile_input(rt, &input, err);
	if (st != NP_OK)
		return st;
	if (d->n <= 0)
		return np_fail(err, NP_ERR_INVALID, "no examples to profile on");
	out->l = calloc((size_t)ls->n + 1, sizeof *out->l);
	if (!out->l)
		return np_fail(err, NP_ERR_NOMEM, "out of memory for the profile");
	out->n = ls->n;
	int64_t B = o->batch > 0 ? o->batch : NP_PROFILE_DEFAULT_BATCH;
	/* Data-parallel (runtime/dist.h): each rank counts its contiguous
	 * share (when every rank has one), then the counts are added up
	 * exactly and the norms in rank order: every rank holds the same
	 * profile, so every rank computes the same masks. */
	bool shard = np_dist_size() > 1 && d->n >= np_dist_size();
	int64_t first = 0, count = d->n;
	if (shard)
		np_dist_share(d->n, &first, &count);
	np_dataset part = shard ? np_dataset_slice(d, first, count) : *d;
	d = &part;
	int64_t steps = (d->n + B - 1) / B;
	np_progress pr;
	np_batches *b = NULL;
	st = np_batches_open(d, NULL, d->n, B, NULL, NULL, NULL, &b, err);
	np_progress_begin(&pr, "profile", "img", B, o->quiet);
	pr.note = np_decode_note;   /* says when decoding is what limits */
	pr.note_ctx = (void *)d;
	bool watched = false;
	if (st == NP_OK) {
		st = np_profile_watch(rt, ls, o->input_norms, err);
		watched = st == NP_OK;
	}
	for (int64_t s = 0; st == NP_OK && s < steps; s++) {
		const float *x;
		const int32_t *y;
		int64_t n;
		st = np_batches_next(b, &x, &y, &n, err);
		if (st == NP_OK)
			st = np_profile_batch(rt, ls, b, input, x, n, o, out, err);
		np_progress_update(&pr, s + 1, steps, NAN);
	}
	if (watched)
		np_profile_unwatch(rt, ls, ls->n, o->input_norms);
	np_batches_close(b);
	np_progress_end(&pr);
	if (shard)
		st = np_dist_agree(st, err);
	if (st != NP_OK) {
		np_profile_free(out);
		return st;
	}
	for (int l = 0; shard && l < out->n; l++) {
		np_layer_profile *lp = &out->l[l];
		np_dist_sum_i64(lp->counts, (size_t)(lp->neurons * lp->n_states));
		np_dist_sum_i64(lp->dont_care, (size_t)lp->neurons);
	}
	for (int k = 0; shard && k < out->norms.n; k++)
		np_dist_sum_f64(out->norms.v[k], (size_t)out->norms.len[k]);
	for (int l = 0; l < out->n; l++)
		np_layer_entropy(&out->l[l]);
	np_input_norms_finish(&out->norms);
	return NP_OK;
}

void np_profile_free(np_profile *p)
{
	if (!p)
		return;
	for (int l = 0; p->l && l < p->n; l++) {
		free(p->l[l].counts);
		free(p->l[l].dont_care);
		free(p->l[l].H);
	}
	free(p->l);
	np_input_norms_free(&p->norms);
	memset(p, 0, sizeof *p);
}

bool np_layer_removable(const np_layer_profile *lp, double eps)
{
	return eps > 0 ? lp->H_layer <= eps : lp->H_layer == 0.0;
}

/* The majority state, which for a zero-entropy neuron is its only state.
 * Ties go to ON, then OFF (the identity is the safer linear map), and a
 * neuron never seen in a counted state is ON. */
int np_neuron_state(const np_layer_profile *lp, int64_t i)
{
	const int64_t *c = lp->counts + i * lp->n_states;
	int best = NP_STATE_ON;
	for (int k = 0; k < lp->n_states; k++)
		if (k != NP_STATE_ON && c[k] > c[best])
			best = k;
	return best;
}
