/* wanda.c - the input-feature norms of `--criterion wanda` (Sun et al.
 * 2023: score |w| x ||x_j||_2, x_j the input feature weight w reads).
 *
 * After each batch of the profiling pass (inference mode), every prunable
 * weight's producer input is read back from the runtime and the squares of
 * each input feature are added up in double; np_input_norms_finish takes
 * the square roots.  Features, as the producer's weight_geom (the op
 * table's) places them: Gemm/MatMul, the columns of A (rows with
 * transA); Conv, the input channels, over batch and spatial positions (the
 * paper does not define convolutions; this is the norm of everything a
 * kernel column [., c, ., .] reads, padding and stride borders aside).
 * Each feature is summed by one thread in a fixed order, so the result
 * does not depend on the thread count.
 */
#include "nepenthe.h"

#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* How the input of a weight's producer splits into features: viewed as
 * [outer, K, inner], feature j is the slice [:, j, :]. */
typedef struct np_feat_view {
	const np_node *producer;
	const np_value *x;           /* the producer's data input */
	int axis;                    /* feature axis of x */
	int64_t K;                   /* features the weight expects */
} np_feat_view;

static np_status np_wanda_refuse(np_error *err, const np_value *w,
                                 const np_node *n, const char *why)
{
	return np_fail(err, NP_ERR_UNSUPPORTED, "--criterion wanda: weight '%s' %s (node %s, op %s)",
	               w->name, why, n->name ? n->name : "", n->op_type);
}

/* Where weight w of layer L reads its input features from. */
static np_status np_feat_view_of(const np_layer *L, const np_value *w,
                                 np_feat_view *v, np_error *err)
{
	const np_tensor *t = w->init;
	const np_node *n = np_layer_weight_producer(L, w);
	memset(v, 0, sizeof *v);
	if (!n)
		return np_fail(err, NP_ERR_INVALID, "weight '%s' of layer %s has no producer",
		               w->name, L->rectifier->name);
	v->producer = n;
	if (t->rank < 2)
		return np_wanda_refuse(err, w, n, "has rank < 2");
	int wi = np_node_op(n)->weight_input;
	if (wi < 1 || n->n_inputs <= wi || n->inputs[wi] != w || !n->inputs[0])
		return np_wanda_refuse(err, w, n, "is not the weight input of its node");
	v->x = n->inputs[0];
	np_weight_geom g;
	if (!np_node_weight_geom(n, t->rank, t->dims, &g))
		return np_wanda_refuse(err, w, n, "does not fit its node");
	/* Stacked matrices: one set of norms per matrix, which the norms
	 * here (one per feature) cannot hold. */
	if (g.batch_axes > 0)
		return np_wanda_refuse(err, w, n, "has rank > 2");
	v->axis = g.in_axis;             /* -1: x's last (MatMul) */
	v->K = g.K;
	return NP_OK;
}

/* Add the squares of x's features to acc[K] (x viewed [outer, K, inner]). */
static void np_add_squares(const float *x, int64_t outer, int64_t K,
                           int64_t inner, double *acc, int threads)
{
	if (inner == 1) {
		/* [outer, K]: features are columns; walk rows, K contiguous. */
		for (int64_t o = 0; o < outer; o++) {
			const float *row = x + o * K;
			for (int64_t j = 0; j < K; j++)
				acc[j] += (double)row[j] * row[j];
		}
		return;
	}
	#pragma omp parallel for schedule(static) num_threads(threads)
	for (int64_t j = 0; j < K; j++) {
		double s = 0;
		for (int64_t o = 0; o < outer; o++) {
			const float *p = x + (o * K + j) * inner;
			for (int64_t i = 0; i < inner; i++)
				s += (double)p[i] * p[i];
		}
		acc[j] += s;
	}
}

/* Allocate one array per prunable weight, lengths from the weights. */
static np_status np_input_norms_init(const np_layers *ls, np_input_norms *nn,
                                     np_error *err)
{
	int n = 0;
	for (int l = 0; l < ls->n; l++)
		n += ls->v[l].n_weights;
	nn->v = calloc((size_t)n + 1, sizeof(double *));
	nn->len = calloc((size_t)n + 1, sizeof(int64_t));
	nn->n = n;
	if (!nn->v || !nn->len)
		return np_fail(err, NP_ERR_NOMEM, "out of memory for the input norms");
	int k = 0;
	for (int l = 0; l < ls->n; l++)
		for (int i = 0; i < ls->v[l].n_weights; i++, k++) {
			np_feat_view fv;
			np_status st = np_feat_view_of(&ls->v[l], ls->v[l].weights[i], &fv, err);
			if (st != NP_OK)
				return st;
			nn->len[k] = fv.K;
			if (!(nn->v[k] = calloc((size_t)fv.K + 1, sizeof(double))))
				return np_fail(err, NP_ERR_NOMEM, "out of memory for the input norms");
		}
	return NP_OK;
}

/* Add the current plan's input of weight w (global index k). */
static np_status np_norms_add_weight(np_rt *rt, const np_layer *L,
                                     const np_value *w, np_input_norms *nn,
                                     int k, np_error *err)
{
	np_feat_view fv;
	np_status st = np_feat_view_of(L, w, &fv, err);
	if (st != NP_OK)
		return st;
	const np_rtensor *x = np_rt_value(rt, fv.x->name);
	if (!x || !x->data || x->dtype != NP_FLOAT || x->rank < 1)
		return np_wanda_refuse(err, w, fv.producer, "reads an input the runtime did not compute as floats");
	int axis = fv.axis < 0 ? x->rank - 1 : fv.axis;
	if (axis >= x->rank || x->dims[axis] != fv.K)
		return np_fail(err, NP_ERR_UNSUPPORTED, "--criterion wanda: weight '%s' reads %lld input features but its input '%s' has %lld on axis %d (node %s, op %s)",
		               w->name, (long long)fv.K, fv.x->name,
		               (long long)(axis < x->rank ? x->dims[axis] : 0), axis,
		               fv.producer->name ? fv.producer->name : "", fv.producer->op_type);
	int64_t outer = 1, inner = 1;
	for (int a = 0; a < axis; a++)
		outer *= x->dims[a];
	for (int a = axis + 1; a < x->rank; a++)
		inner *= x->dims[a];
	np_add_squares(x->data, outer, fv.K, inner, nn->v[k], np_rt_threads(rt));
	return NP_OK;
}

np_status np_input_norms_add(np_rt *rt, const np_layers *ls, np_input_norms *nn,
                             np_error *err)
{
	np_status st = NP_OK;
	if (!nn->v && (st = np_input_norms_init(ls, nn, err)) != NP_OK) {
		np_input_norms_free(nn);
		return st;
	}
	int k = 0;
	for (int l = 0; st == NP_OK && l < ls->n; l++)
		for (int i = 0; st == NP_OK && i < ls->v[l].n_weights; i++, k++)
			st = np_norms_add_weight(rt, &ls->v[l], ls->v[l].weights[i], nn, k, err);
	return st;
}

/* Watches (on) or unwatches the inputs of the first n weights (all:
 * -1); *done: how many it went through before a failed watch. */
static np_status np_norms_watch_first(np_rt *rt, const np_layers *ls, bool on,
                                      int n, int *done, np_error *err)
{
	int k = 0;
	np_status st = NP_OK;
	for (int l = 0; l < ls->n; l++)
		for (int i = 0; i < ls->v[l].n_weights && k != n && !st; i++, k++) {
			np_feat_view fv;
			np_error skip = {0};
			if (np_feat_view_of(&ls->v[l], ls->v[l].weights[i], &fv, &skip) != NP_OK)
				continue;   /* np_input_norms_add reports it */
			if (!on)
				np_rt_unwatch(rt, fv.x->name);
			else
				st = np_rt_watch(rt, fv.x->name, err);
		}
	*done = st ? k - 1 : k;
	return st;
}

np_status np_input_norms_watch(np_rt *rt, const np_layers *ls, bool on,
                               np_error *err)
{
	int done;
	np_status st = np_norms_watch_first(rt, ls, on, -1, &done, err);
	if (st != NP_OK)                /* all or nothing: undo the others */
		np_norms_watch_first(rt, ls, false, done, &done, err);
	return st;
}

void np_input_norms_finish(np_input_norms *nn)
{
	for (int k = 0; nn->v && k < nn->n; k++)
		for (int64_t j = 0; j < nn->len[k]; j++)
			nn->v[k][j] = sqrt(nn->v[k][j]);
}

void np_input_norms_free(np_input_norms *nn)
{
	for (int k = 0; nn->v && k < nn->n; k++)
		free(nn->v[k]);
	free(nn->v);
	free(nn->len);
	memset(nn, 0, sizeof *nn);
}
