/* test_profile.c - the entropy profiler (nepenthe/profile.c) on two tiny
 * hand-built graphs whose state counts are known by hand:
 *
 *   x [N,1,1,2] -> Conv 1x1, weights {1,-1,0} -> Relu     z = x, -x, 0
 *   x [N,4]     -> Gemm with B = I             -> Clip(0,6)   z = x
 *
 * Both convolutions by 1 and products with the identity are exact in
 * float, so z hits 0 and 6 exactly where the inputs do: that is what the
 * don't-care cases need.  Every run is repeated with several batch sizes
 * and thread counts, which must not change an integer count.  A third
 * graph puts a Conv after the Relu, which then writes over z in place
 * unless z is watched (runtime/rt.h, PLANS and WATCH). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "data.h"
#include "ir.h"
#include "layers.h"
#include "nepenthe.h"
#include "rt.h"
#include "tap.h"

#define EPS_H 1e-6

/* ---------------------------------------------------------- builders */

static np_value *init(np_model *m, const char *name, int rank,
                      const int64_t *dims, const float *vals)
{
	np_error err = {0};
	np_tensor *t = np_model_new_tensor(m, NP_FLOAT, rank, dims, &err);
	memcpy(t->data, vals, sizeof(float) * (size_t)t->nelem);
	return np_graph_add_initializer(m->graph, name, t, &err);
}

static np_value *add_node(np_model *m, const char *op, const char *name,
                          np_value **in, int n_in)
{
	np_error err = {0};
	char out_name[64];
	snprintf(out_name, sizeof out_name, "%s_out", name);
	np_value *out = np_graph_new_value(m->graph, out_name, &err);
	np_node *n = np_graph_new_node(m->graph, op, "", name, in, n_in, &out, 1);
	np_graph_insert_node(m->graph, n);
	return out;
}

/* An empty opset-13 model with one float input x. */
static np_model *new_model(np_value **x)
{
	np_error err = {0};
	np_model *m = np_model_new();
	m->ir_version = 8;
	m->opsets = np_arena_alloc(m->arena, sizeof(np_opset));
	m->opsets[0] = (np_opset){"", 13};
	m->n_opsets = 1;
	np_graph *g = m->graph;
	*x = np_graph_new_value(g, "x", &err);
	(*x)->is_input = true;
	(*x)->has_type = true;
	(*x)->dtype = NP_FLOAT;
	g->inputs = np_arena_alloc(m->arena, sizeof(np_value *));
	g->inputs[0] = *x;
	g->n_inputs = 1;
	return m;
}

static void set_output(np_model *m, np_value *y)
{
	y->is_output = true;
	m->graph->outputs = np_arena_alloc(m->arena, sizeof(np_value *));
	m->graph->outputs[0] = y;
	m->graph->n_outputs = 1;
}

static np_model *conv_relu(void)
{
	np_value *x;
	np_model *m = new_model(&x);
	np_value *in[2] = {x, init(m, "W", 4, (int64_t[]){3, 1, 1, 1},
	                           (float[]){1, -1, 0})};
	np_value *z = add_node(m, "Conv", "conv", in, 2);
	set_output(m, add_node(m, "Relu", "relu", &z, 1));
	return m;
}

/* conv_relu, its Relu no longer the graph output: it writes over z. */
static np_model *conv_relu_conv(void)
{
	np_value *x;
	np_model *m = new_model(&x);
	np_value *in[2] = {x, init(m, "W", 4, (int64_t[]){3, 1, 1, 1},
	                           (float[]){1, -1, 0})};
	np_value *z = add_node(m, "Conv", "conv", in, 2);
	np_value *r = add_node(m, "Relu", "relu", &z, 1);
	np_value *in2[2] = {r, init(m, "W2", 4, (int64_t[]){1, 3, 1, 1},
	                            (float[]){1, 1, 1})};
	set_output(m, add_node(m, "Conv", "conv2", in2, 2));
	return m;
}

static np_model *gemm_clip(void)
{
	np_value *x;
	np_model *m = new_model(&x);
	float eye[16] = {0};
	for (int i = 0; i < 4; i++)
		eye[i * 4 + i] = 1;
	np_value *in[2] = {x, init(m, "B", 2, (int64_t[]){4, 4}, eye)};
	np_value *z = add_node(m, "Gemm", "gemm", in, 2);
	np_value *clip_in[3] = {z, init(m, "lo", 0, NULL, (float[]){0}),
	                        init(m, "hi", 0, NULL, (float[]){6})};
	set_output(m, add_node(m, "Clip", "clip6", clip_in, 3));
	return m;
}

/* ------------------------------------------------------------ inputs */

/* Conv: 2 examples of 2 pixels, x = {1, 0 | -2, 3}. */
static float conv_x[4] = {1, 0, -2, 3};

/* Gemm: 4 examples (rows) of 4 features; neuron j sees column j:
 *   n0 {-1, 3, 7, 0}   OFF, ON, OFF+, don't care
 *   n1 { 6, 2, 2, 2}   don't care (z = max), ON x3
 *   n2 {-1, 2, 0, 6}   OFF, ON, don't care x2
 *   n3 { 7, 8, 1, 9}   OFF+ x3, ON */
static float gemm_x[16] = {
	-1, 6, -1, 7,
	3, 2, 2, 8,
	7, 2, 0, 1,
	0, 2, 6, 9,
};

/* Profile m on x with the given batch/threads; returns the status. */
static np_status profile(np_model *m, float *x, int64_t n, int rank,
                         const int64_t *dims, int64_t batch, int threads,
                         bool no_dont_care, np_layers *ls, np_profile *p)
{
	np_error err = {0};
	np_dataset d = {.n = n, .rank = rank, .x = x};
	d.example_size = 1;
	for (int k = 0; k < rank; k++) {
		d.dims[k] = dims[k];
		d.example_size *= dims[k];
	}
	np_rt *rt = np_rt_new(m, threads, &err);
	np_status st = rt ? np_find_layers(m, ls, &err) : err.status;
	if (st == NP_OK) {
		np_profile_opts o = {.batch = batch, .no_dont_care = no_dont_care,
		                     .quiet = true};
		st = np_profile_run(rt, ls, &d, &o, p, &err);
	}
	if (st != NP_OK)
		printf("# %s\n", err.msg);
	np_rt_free(rt);
	return st;
}

static bool counts_are(const np_layer_profile *lp, int64_t i,
                       const int64_t *want, int64_t dc)
{
	for (int k = 0; k < lp->n_states; k++)
		if (lp->counts[i * lp->n_states + k] != want[k])
			return false;
	return lp->dont_care[i] == dc;
}

#define COUNTS(lp, i, dc, ...) counts_are(lp, i, (int64_t[]){__VA_ARGS__}, dc)

/* --------------------------------------------------------------- tests */

static const int64_t BATCHES[] = {128, 1, 3};
static const int THREADS[] = {1, 2};

static void test_conv_relu(bool no_dont_care)
{
	const char *tag = no_dont_care ? "conv/relu --no-dont-care" : "conv/relu";
	np_model *m = conv_relu();
	for (size_t b = 0; b < sizeof BATCHES / sizeof *BATCHES; b++)
		for (size_t t = 0; t < sizeof THREADS / sizeof *THREADS; t++) {
			np_layers ls = {0};
			np_profile p = {0};
			np_status st = profile(m, conv_x, 2, 3, (int64_t[]){1, 1, 2},
			                       BATCHES[b], THREADS[t], no_dont_care, &ls, &p);
			const np_layer_profile *lp = st == NP_OK && p.n == 1 ? &p.l[0] : NULL;
			bool ok_shape = lp && lp->neurons == 3 && lp->n_states == 2;
			bool ok_counts = ok_shape && (no_dont_care
				? COUNTS(lp, 0, 0, 2, 2) && COUNTS(lp, 1, 0, 3, 1) && COUNTS(lp, 2, 0, 4, 0)
				: COUNTS(lp, 0, 1, 1, 2) && COUNTS(lp, 1, 1, 2, 1) && COUNTS(lp, 2, 4, 0, 0));
			ok(ok_counts, "%s: exact counts (batch %lld, %d threads)", tag,
			   (long long)BATCHES[b], THREADS[t]);
			if (b != 0 || t != 0 || !ok_counts) {
				np_profile_free(&p);
				np_layers_free(&ls);
				continue;
			}
			if (no_dont_care) {
				/* {2,2} -> 1 bit, {3,1} -> 0.811278, {4,0} -> 0 */
				ok(tap_close(lp->H[0], 1.0, 0, EPS_H), "%s: H{2,2} = 1 bit (%.6f)", tag, lp->H[0]);
				ok(tap_close(lp->H[1], 0.811278, 0, EPS_H), "%s: H{3,1} = 0.811278 (%.6f)", tag, lp->H[1]);
				ok(lp->H[2] == 0.0 && lp->zero_neurons == 1, "%s: H{4,0} = 0, one zero-entropy neuron", tag);
				ok(np_neuron_state(lp, 2) == NP_STATE_OFF, "%s: all-zero z is OFF", tag);
			} else {
				double h = -(1.0 / 3) * log2(1.0 / 3) - (2.0 / 3) * log2(2.0 / 3);
				ok(tap_close(lp->H[0], h, 0, EPS_H) && tap_close(lp->H[1], h, 0, EPS_H),
				   "%s: H{1,2} = %.6f", tag, h);
				ok(lp->H[2] == 0.0 && lp->zero_neurons == 1,
				   "%s: a neuron with no counts has H = 0", tag);
				ok(tap_close(lp->H_layer, 2 * h / 3, 0, EPS_H), "%s: H(l) is the mean (%.6f)",
				   tag, lp->H_layer);
				ok(np_neuron_state(lp, 0) == NP_STATE_ON && np_neuron_state(lp, 1) == NP_STATE_OFF,
				   "%s: majority state", tag);
				ok(np_neuron_state(lp, 2) == NP_STATE_ON, "%s: no counts -> ON", tag);
				ok(!np_layer_removable(lp, 0) && np_layer_removable(lp, 0.7) &&
				   !np_layer_removable(lp, 0.5), "%s: removable iff H(l) <= eps", tag);
			}
			np_profile_free(&p);
			np_layers_free(&ls);
		}
	np_model_free(m);
}

static void test_gemm_clip(bool no_dont_care)
{
	const char *tag = no_dont_care ? "gemm/clip --no-dont-care" : "gemm/clip";
	np_model *m = gemm_clip();
	for (size_t b = 0; b < sizeof BATCHES / sizeof *BATCHES; b++)
		for (size_t t = 0; t < sizeof THREADS / sizeof *THREADS; t++) {
			np_layers ls = {0};
			np_profile p = {0};
			np_status st = profile(m, gemm_x, 4, 1, (int64_t[]){4},
			                       BATCHES[b], THREADS[t], no_dont_care, &ls, &p);
			const np_layer_profile *lp = st == NP_OK && p.n == 1 ? &p.l[0] : NULL;
			bool ok_shape = lp && lp->neurons == 4 && lp->n_states == 3;
			/* counts are {OFF, ON, OFF+}; z == 6 stays don't care */
			bool ok_counts = ok_shape && (no_dont_care
				? COUNTS(lp, 0, 0, 2, 1, 1) && COUNTS(lp, 1, 1, 0, 3, 0) &&
				  COUNTS(lp, 2, 1, 2, 1, 0) && COUNTS(lp, 3, 0, 0, 1, 3)
				: COUNTS(lp, 0, 1, 1, 1, 1) && COUNTS(lp, 1, 1, 0, 3, 0) &&
				  COUNTS(lp, 2, 2, 1, 1, 0) && COUNTS(lp, 3, 0, 0, 1, 3));
			ok(ok_counts, "%s: exact three-state counts (batch %lld, %d threads)", tag,
			   (long long)BATCHES[b], THREADS[t]);
			if (b != 0 || t != 0 || !ok_counts) {
				np_profile_free(&p);
				np_layers_free(&ls);
				continue;
			}
			if (no_dont_care) {
				ok(tap_close(lp->H[0], 1.5, 0, EPS_H), "%s: H{2,1,1} = 1.5 bits (%.6f)", tag, lp->H[0]);
				ok(np_neuron_state(lp, 0) == NP_STATE_OFF && np_neuron_state(lp, 2) == NP_STATE_OFF,
				   "%s: z == 0 counted as OFF makes OFF the majority", tag);
			} else {
				ok(tap_close(lp->H[0], log2(3.0), 0, EPS_H), "%s: H{1,1,1} = log2 3 (%.6f)", tag, lp->H[0]);
				ok(lp->H[1] == 0.0 && lp->zero_neurons == 1, "%s: z == max is don't care: H = 0", tag);
				ok(tap_close(lp->H[2], 1.0, 0, EPS_H), "%s: H{1,1} = 1 bit (%.6f)", tag, lp->H[2]);
				ok(tap_close(lp->H[3], 0.811278, 0, EPS_H), "%s: H{0,1,3} = 0.811278 (%.6f)", tag, lp->H[3]);
				ok(np_neuron_state(lp, 1) == NP_STATE_ON, "%s: the only state", tag);
				ok(np_neuron_state(lp, 2) == NP_STATE_ON, "%s: OFF/ON tie -> ON", tag);
				ok(np_neuron_state(lp, 3) == NP_STATE_OFF_HI, "%s: OFF+ majority", tag);
				double want = (log2(3.0) + 0 + 1 + 0.8112781244591328) / 4;
				ok(tap_close(lp->H_layer, want, 0, EPS_H), "%s: H(l) = %.6f (%.6f)", tag, want,
				   lp->H_layer);
			}
			np_profile_free(&p);
			np_layers_free(&ls);
		}
	np_model_free(m);
}

/* A layer of zero-entropy neurons is removable at eps 0. */
static void test_removable_zero(void)
{
	np_model *m = conv_relu();
	float x[4] = {1, 2, 3, 4};     /* z: ON, OFF, don't care only */
	np_layers ls = {0};
	np_profile p = {0};
	np_status st = profile(m, x, 2, 3, (int64_t[]){1, 1, 2}, 128, 2, false, &ls, &p);
	const np_layer_profile *lp = st == NP_OK ? &p.l[0] : NULL;
	ok(lp && lp->H_layer == 0.0 && lp->zero_neurons == 3 && np_layer_removable(lp, 0),
	   "zero-entropy layer: H(l) == 0 and removable at eps 0");
	ok(lp && np_neuron_state(lp, 0) == NP_STATE_ON && np_neuron_state(lp, 1) == NP_STATE_OFF,
	   "zero-entropy layer: each neuron's only state");
	np_profile_free(&p);
	np_layers_free(&ls);
	np_model_free(m);
}

/* z of conv_relu_conv for conv_x, by hand: channel c is W[c] * x. */
static bool z_is_conv_x(const np_rtensor *z)
{
	static const float w[3] = {1, -1, 0};
	if (!z || z->nelem != 12)
		return false;
	for (int n = 0; n < 2; n++)
		for (int c = 0; c < 3; c++)
			for (int s = 0; s < 2; s++)
				if (((const float *)z->data)[(n * 3 + c) * 2 + s] !=
				    w[c] * conv_x[n * 2 + s])
					return false;
	return true;
}

/* The profile reads z, which the Relu would write over in place: it
 * watches z while it runs and gives the watch back after, so training
 * gets the in-place plan again. */
static void test_in_place(void)
{
	np_error err = {0};
	np_model *m = conv_relu_conv();
	np_dataset d = {.n = 2, .rank = 3, .dims = {1, 1, 2}, .example_size = 2,
	                .x = conv_x};
	np_layers ls = {0};
	np_profile p = {0};
	np_profile_opts o = {.batch = 128, .quiet = true};
	np_rt *rt = np_rt_new(m, 1, &err);
	bool good = rt && np_find_layers(m, &ls, &err) == NP_OK &&
	            np_profile_run(rt, &ls, &d, &o, &p, &err) == NP_OK;
	const np_layer_profile *lp = good && p.n == 1 ? &p.l[0] : NULL;
	ok(lp && lp->neurons == 3 && COUNTS(lp, 0, 1, 1, 2) &&
	   COUNTS(lp, 1, 1, 2, 1) && COUNTS(lp, 2, 4, 0, 0),
	   "in place: the profile reads z, exact counts%s%s", err.msg[0] ? ": " : "",
	   err.msg);
	np_rt_input in = {.name = "x", .dtype = NP_FLOAT, .rank = 4,
	                  .dims = {2, 1, 1, 2}, .data = conv_x};
	good = good && np_rt_run(rt, &in, 1, NP_RT_TRAIN, &err) == NP_OK;
	ok(good && !np_rt_value(rt, "conv_out") && np_rt_value(rt, "relu_out"),
	   "in place: after the profile z is not watched: Relu writes over it, "
	   "np_rt_value refuses it");
	good = good && np_rt_watch(rt, "conv_out", &err) == NP_OK &&
	       np_rt_run(rt, &in, 1, NP_RT_TRAIN, &err) == NP_OK;
	ok(good && z_is_conv_x(np_rt_value(rt, "conv_out")),
	   "in place: watched, z reads back as computed by hand");
	np_rt_unwatch(rt, "conv_out");
	good = good && np_rt_run(rt, &in, 1, NP_RT_TRAIN, &err) == NP_OK;
	ok(good && !np_rt_value(rt, "conv_out"),
	   "in place: unwatched again, the in-place plan again");
	ok(np_rt_watch(rt, "no_such_value", &err) == NP_ERR_INVALID,
	   "in place: watching a value the model lacks is an error");
	np_rt_free(rt);
	np_profile_free(&p);
	np_layers_free(&ls);
	np_model_free(m);
}

int main(void)
{
	test_conv_relu(false);
	test_conv_relu(true);
	test_gemm_clip(false);
	test_gemm_clip(true);
	test_removable_zero();
	test_in_place();
	return done_testing();
}
