/* test_wanda.c - `--criterion wanda` on tiny hand-built graphs: the input
 * norms collected by the profiling pass (nepenthe/wanda.c) against hand
 * values, for Gemm (transB 1 and 0), MatMul and Conv (grouped too), at
 * several batch sizes and thread counts; and the masks wanda picks against
 * the magnitude ones where the two must differ. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphkit.h"
#include "nepenthe.h"
#include "tap.h"

static const int64_t BATCHES[] = {1, 3, 4};
static const int THREADS[] = {1, 2};

/* A dataset view of n examples of the given per-example shape. */
static np_dataset dataset(float *x, int64_t n, int rank, const int64_t *dims)
{
	np_dataset d = {.n = n, .rank = rank, .x = x, .example_size = 1};
	for (int k = 0; k < rank; k++) {
		d.dims[k] = dims[k];
		d.example_size *= dims[k];
	}
	return d;
}

/* Profile m on d with the norms; rt (kept for masking) and ls returned. */
static np_status profile(np_model *m, const np_dataset *d, int64_t batch, int threads,
                         np_rt **rt, np_layers *ls, np_profile *p)
{
	np_error err = {0};
	*rt = np_rt_new(m, threads, &err);
	np_status st = *rt ? np_find_layers(m, ls, &err) : err.status;
	if (st == NP_OK) {
		np_profile_opts o = {.batch = batch, .quiet = true, .input_norms = true};
		st = np_profile_run(*rt, ls, d, &o, p, &err);
	}
	if (st != NP_OK)
		printf("# %s\n", err.msg);
	return st;
}

static bool norms_are(const np_input_norms *nn, int k, const double *want, int64_t len,
                      double rtol)
{
	if (k >= nn->n || nn->len[k] != len)
		return false;
	for (int64_t j = 0; j < len; j++)
		if (!tap_close(nn->v[k][j], want[j], rtol, 1e-12)) {
			printf("# weight %d feature %lld: %.9g, want %.9g\n", k, (long long)j,
			       nn->v[k][j], want[j]);
			return false;
		}
	return true;
}

/* Channel norms of a float tensor [N, C, S...] or column norms of [N, C]. */
static void ref_norms(const float *x, int64_t N, int64_t C, int64_t S, double *out)
{
	for (int64_t c = 0; c < C; c++) {
		double s = 0;
		for (int64_t n = 0; n < N; n++)
			for (int64_t i = 0; i < S; i++) {
				double v = x[(n * C + c) * S + i];
				s += v * v;
			}
		out[c] = sqrt(s);
	}
}

/* ------------------------------------------------ norms: Gemm / MatMul */

/* x [N,3] -> Gemm(transB=1, W1 [4,3], b1) -> Relu -> Gemm(transB=0,
 * W2 [4,2]) -> Relu -> MatMul(W3 [2,2]) -> Relu. */
static np_model *mlp(void)
{
	gk k;
	gk_init(&k, 13, 7);
	np_value *x = gk_input(&k, "x", GK_SHAPE(-1, 3));
	np_value *w1 = gk_weight(&k, "w1", GK_SHAPE(4, 3), -1, 1);
	np_value *b1 = gk_weight(&k, "b1", GK_SHAPE(4), -0.5f, 0.5f);
	np_node *g1 = gk_node(&k, "Gemm", "g1", GK_IN(x, w1, b1));
	np_node_set_attr_int(g1, "transB", 1);
	np_value *r1 = gk_op(&k, "Relu", "r1", GK_IN(gk_done(&k, g1)));
	np_value *w2 = gk_weight(&k, "w2", GK_SHAPE(4, 2), -1, 1);
	np_value *r2 = gk_op(&k, "Relu", "r2", GK_IN(gk_op(&k, "Gemm", "g2", GK_IN(r1, w2))));
	np_value *w3 = gk_weight(&k, "w3", GK_SHAPE(2, 2), -1, 1);
	np_value *r3 = gk_op(&k, "Relu", "r3", GK_IN(gk_op(&k, "MatMul", "m3", GK_IN(r2, w3))));
	gk_output(&k, r3);
	return k.m;
}

/* Columns: norms 5, 3, 5. */
static float mlp_x[12] = {
	3, 1, 2,
	-4, 2, -1,
	0, 2, -2,
	0, 0, 4,
};

/* The producers' inputs of the whole data as one batch, by name. */
static bool ref_from_runtime(np_model *m, const np_dataset *d, const char *name,
                             int64_t C, int64_t S, double *out)
{
	np_error err = {0};
	np_rt *rt = np_rt_new(m, 1, &err);
	np_rt_input in = {.name = "x", .dtype = NP_FLOAT, .rank = d->rank + 1, .data = d->x};
	in.dims[0] = d->n;
	memcpy(in.dims + 1, d->dims, sizeof(int64_t) * (size_t)d->rank);
	bool good = rt && np_rt_watch(rt, name, &err) == NP_OK &&
	            np_rt_run(rt, &in, 1, NP_RT_INFER, &err) == NP_OK;
	const np_rtensor *t = good ? np_rt_value(rt, name) : NULL;
	if (t)
		ref_norms(t->data, d->n, C, S, out);
	np_rt_free(rt);
	return t != NULL;
}

static void test_mlp_norms(void)
{
	np_model *m = mlp();
	np_dataset d = dataset(mlp_x, 4, 1, GK_DIMS(3));
	double want0[3] = {5, 3, 5}, want1[4], want2[2];
	bool refs = ref_from_runtime(m, &d, "r1", 4, 1, want1) &&
	            ref_from_runtime(m, &d, "r2", 2, 1, want2);
	ok(refs, "mlp: reference activations");
	for (size_t b = 0; b < sizeof BATCHES / sizeof *BATCHES; b++)
		for (size_t t = 0; t < sizeof THREADS / sizeof *THREADS; t++) {
			np_rt *rt = NULL;
			np_layers ls = {0};
			np_profile p = {0};
			np_status st = profile(m, &d, BATCHES[b], THREADS[t], &rt, &ls, &p);
			ok(st == NP_OK && p.norms.n == 3, "mlp, batch %lld, %d threads: norms of 3 weights",
			   (long long)BATCHES[b], THREADS[t]);
			if (st == NP_OK && p.norms.n == 3) {
				ok(norms_are(&p.norms, 0, want0, 3, 1e-12),
				   "mlp: Gemm transB=1 input columns: 5, 3, 5");
				ok(refs && norms_are(&p.norms, 1, want1, 4, 1e-6),
				   "mlp: Gemm transB=0: 4 features, the columns of relu 1");
				ok(refs && norms_are(&p.norms, 2, want2, 2, 1e-6),
				   "mlp: MatMul: 2 features, the last axis of relu 2");
			}
			np_profile_free(&p);
			np_layers_free(&ls);
			np_rt_free(rt);
		}
	np_model_free(m);
}

/* ------------------------------------------------------- norms: Conv */

/* x [N,2,3,3] -> Conv(W1 [4,2,2,2]) -> Relu -> Conv(W2 [4,2,1,1],
 * group 2) -> Relu. */
static np_model *cnn(void)
{
	gk k;
	gk_init(&k, 13, 11);
	np_value *x = gk_input(&k, "x", GK_SHAPE(-1, 2, 3, 3));
	np_value *w1 = gk_weight(&k, "w1", GK_SHAPE(4, 2, 2, 2), -1, 1);
	np_value *r1 = gk_op(&k, "Relu", "r1", GK_IN(gk_op(&k, "Conv", "c1", GK_IN(x, w1))));
	np_value *w2 = gk_weight(&k, "w2", GK_SHAPE(4, 2, 1, 1), -1, 1);
	np_node *c2 = gk_node(&k, "Conv", "c2", GK_IN(r1, w2));
	np_node_set_attr_int(c2, "group", 2);
	gk_output(&k, gk_op(&k, "Relu", "r2", GK_IN(gk_done(&k, c2))));
	return k.m;
}

/* 4 examples [2,3,3]: channel 0 norm 5 (3 and 4), channel 1 norm 13
 * (5 and 12), the rest zeros, spread over examples and positions. */
static float cnn_x[4 * 18];

static void cnn_fill(void)
{
	memset(cnn_x, 0, sizeof cnn_x);
	cnn_x[0 * 18 + 0 * 9 + 4] = 3;      /* ex 0, ch 0, centre */
	cnn_x[2 * 18 + 0 * 9 + 8] = -4;     /* ex 2, ch 0, corner */
	cnn_x[1 * 18 + 1 * 9 + 0] = 5;      /* ex 1, ch 1 */
	cnn_x[3 * 18 + 1 * 9 + 5] = 12;     /* ex 3, ch 1 */
}

static void test_cnn_norms(void)
{
	cnn_fill();
	np_model *m = cnn();
	np_dataset d = dataset(cnn_x, 4, 3, GK_DIMS(2, 3, 3));
	double want0[2] = {5, 13}, want1[4];
	bool refs = ref_from_runtime(m, &d, "r1", 4, 4, want1);
	ok(refs, "cnn: reference activations");
	for (size_t b = 0; b < sizeof BATCHES / sizeof *BATCHES; b++)
		for (size_t t = 0; t < sizeof THREADS / sizeof *THREADS; t++) {
			np_rt *rt = NULL;
			np_layers ls = {0};
			np_profile p = {0};
			np_status st = profile(m, &d, BATCHES[b], THREADS[t], &rt, &ls, &p);
			ok(st == NP_OK && p.norms.n == 2, "cnn, batch %lld, %d threads: norms of 2 weights",
			   (long long)BATCHES[b], THREADS[t]);
			if (st == NP_OK && p.norms.n == 2) {
				ok(norms_are(&p.norms, 0, want0, 2, 1e-12),
				   "cnn: Conv input channels over batch and positions: 5, 13");
				ok(refs && norms_are(&p.norms, 1, want1, 4, 1e-6),
				   "cnn: grouped Conv: 4 input channels (C_in/group x group)");
			}
			np_profile_free(&p);
			np_layers_free(&ls);
			np_rt_free(rt);
		}
	np_model_free(m);
}

/* ------------------------------------------------------------ masks */

/* One layer x -> P -> Relu whose weight, as a matrix M[out][in], is
 * [[1, 0.2], [0.3, 1]]; feature 0 has norm 0.2, feature 1 norm 20.
 * Magnitude prunes M[0][1] and M[1][0]; wanda (|w| x norm: 0.2, 4, 0.06,
 * 20) prunes M[0][0] and M[1][0], the weights reading the small feature. */
typedef enum { K_GEMM_T, K_GEMM_N, K_MATMUL, K_CONV } kind;
static const char *const KIND[] = {"Gemm transB=1", "Gemm transB=0", "MatMul",
                                   "Conv 1x1"};
static const float M[2][2] = {{1, 0.2f}, {0.3f, 1}};

/* Flat index of M[o][i] in the stored weight. */
static int64_t flat(kind kd, int o, int i)
{
	return kd == K_GEMM_N || kd == K_MATMUL ? i * 2 + o : o * 2 + i;
}

static np_model *one_layer(kind kd)
{
	gk k;
	gk_init(&k, 13, 3);
	bool conv = kd == K_CONV;
	np_value *x = conv ? gk_input(&k, "x", GK_SHAPE(-1, 2, 1, 1))
	                   : gk_input(&k, "x", GK_SHAPE(-1, 2));
	np_value *w = conv ? gk_floats(&k, "w", GK_SHAPE(2, 2, 1, 1), NULL)
	                   : gk_floats(&k, "w", GK_SHAPE(2, 2), NULL);
	float *wd = w->init->data;
	for (int o = 0; o < 2; o++)
		for (int i = 0; i < 2; i++)
			wd[flat(kd, o, i)] = M[o][i];
	const char *op = conv ? "Conv" : kd == K_MATMUL ? "MatMul" : "Gemm";
	np_node *n = gk_node(&k, op, "p", GK_IN(x, w));
	if (kd == K_GEMM_T)
		np_node_set_attr_int(n, "transB", 1);
	gk_output(&k, gk_op(&k, "Relu", "r", GK_IN(gk_done(&k, n))));
	return k.m;
}

/* Both neurons see both signs (H = 1 bit); feature norms 0.2 and 20. */
static float small_big[8] = {0.1f, 10, -0.1f, -10, 0.1f, -10, -0.1f, 10};

/* Profile, mask at zeta 0.5 with criterion c; the weight's mask copied
 * into out[4]. */
static np_status mask_once(np_model *m, const np_dataset *d, np_criterion c,
                           bool give_norms, uint8_t *out, const char *wname,
                           int64_t nw, np_error *err)
{
	np_rt *rt = NULL;
	np_layers ls = {0};
	np_profile p = {0};
	np_status st = profile(m, d, 128, 1, &rt, &ls, &p);
	if (st == NP_OK) {
		np_mask_opts o = {.zeta = 0.5, .criterion = c,
		                  .input_norms = give_norms ? p.norms.v : NULL};
		st = np_mask_step(rt, &ls, &p, &o, NULL, err);
	}
	np_param *w = st == NP_OK ? np_rt_param_by_name(rt, wname) : NULL;
	if (w && w->mask)
		memcpy(out, w->mask, (size_t)nw);
	else if (st == NP_OK)
		st = np_fail(err, NP_ERR_INVALID, "no mask");
	np_profile_free(&p);
	np_layers_free(&ls);
	np_rt_free(rt);
	return st;
}

static void test_masks(kind kd)
{
	np_model *m = one_layer(kd);
	np_dataset d = kd == K_CONV ? dataset(small_big, 4, 3, GK_DIMS(2, 1, 1))
	                            : dataset(small_big, 4, 1, GK_DIMS(2));
	uint8_t mag[4], wan[4];
	np_error err = {0};
	np_status s1 = mask_once(m, &d, NP_CRIT_MAGNITUDE, false, mag, "w", 4, &err);
	np_status s2 = s1 == NP_OK ? mask_once(m, &d, NP_CRIT_WANDA, true, wan, "w", 4, &err)
	                           : s1;
	if (s2 != NP_OK)
		printf("# %s\n", err.msg);
	ok(s1 == NP_OK && !mag[flat(kd, 0, 1)] && !mag[flat(kd, 1, 0)] &&
	   mag[flat(kd, 0, 0)] && mag[flat(kd, 1, 1)],
	   "%s: magnitude prunes M[0][1] = 0.2 and M[1][0] = 0.3", KIND[kd]);
	ok(s2 == NP_OK && !wan[flat(kd, 0, 0)] && !wan[flat(kd, 1, 0)] &&
	   wan[flat(kd, 0, 1)] && wan[flat(kd, 1, 1)],
	   "%s: wanda prunes M[0][0] and M[1][0], the weights of the small feature",
	   KIND[kd]);
	np_model_free(m);
}

/* Grouped Conv x [N,4,1,1], W [4,2,1,1], group 2: W[o][c] reads channel
 * (o / 2) * 2 + c.  Channel norms 0.2, 20, 20, 0.2.  Magnitude prunes the
 * 0.2s and 0.3s; wanda the scores 0.04, 0.06, 0.2, 0.2. */
static void test_grouped_masks(void)
{
	gk k;
	gk_init(&k, 13, 5);
	np_value *x = gk_input(&k, "x", GK_SHAPE(-1, 4, 1, 1));
	static const float wv[8] = {1, 0.2f, 0.3f, 1, 1, 0.2f, 0.3f, 1};
	np_value *w = gk_floats(&k, "w", GK_SHAPE(4, 2, 1, 1), wv);
	np_node *n = gk_node(&k, "Conv", "p", GK_IN(x, w));
	np_node_set_attr_int(n, "group", 2);
	gk_output(&k, gk_op(&k, "Relu", "r", GK_IN(gk_done(&k, n))));
	static float xs[16] = {0.1f, 10, 10, 0.1f, -0.1f, -10, -10, -0.1f,
	                       0.1f, -10, -10, 0.1f, -0.1f, 10, 10, -0.1f};
	np_dataset d = dataset(xs, 4, 3, GK_DIMS(4, 1, 1));
	uint8_t mag[8], wan[8];
	np_error err = {0};
	np_status s1 = mask_once(k.m, &d, NP_CRIT_MAGNITUDE, false, mag, "w", 8, &err);
	np_status s2 = s1 == NP_OK ? mask_once(k.m, &d, NP_CRIT_WANDA, true, wan, "w", 8, &err)
	                           : s1;
	if (s2 != NP_OK)
		printf("# %s\n", err.msg);
	static const uint8_t want_mag[8] = {1, 0, 0, 1, 1, 0, 0, 1};
	static const uint8_t want_wan[8] = {0, 1, 0, 1, 1, 0, 1, 0};
	ok(s1 == NP_OK && memcmp(mag, want_mag, 8) == 0,
	   "grouped Conv: magnitude prunes the 0.2s and 0.3s");
	ok(s2 == NP_OK && memcmp(wan, want_wan, 8) == 0,
	   "grouped Conv: wanda maps W[o][c] to channel (o / 2) * 2 + c");
	gk_free(&k);
}

/* Wanda without collected norms is an error, not magnitude in disguise. */
static void test_no_norms(void)
{
	np_model *m = one_layer(K_GEMM_T);
	np_dataset d = dataset(small_big, 4, 1, GK_DIMS(2));
	uint8_t out[4];
	np_error err = {0};
	np_status st = mask_once(m, &d, NP_CRIT_WANDA, false, out, "w", 4, &err);
	ok(st == NP_ERR_INVALID && strstr(err.msg, "wanda"),
	   "wanda without input norms: refused (%s)", err.msg);
	np_model_free(m);
}

int main(void)
{
	test_mlp_norms();
	test_cnn_norms();
	for (int kd = K_GEMM_T; kd <= K_CONV; kd++)
		test_masks((kind)kd);
	test_grouped_masks();
	test_no_norms();
	return done_testing();
}
