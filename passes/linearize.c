/* linearize.c - replace zero-entropy rectifiers by per-channel affine maps
 * (DESIGN.md section 6) and fold the map where that is exact.
 *
 * For each layer of ctx->linearize, every neuron (channel c of z on the
 * layer's axis: 1, or the last for an encoder's MLP, layers.h) has one
 * state, which makes the rectifier y = s[c]*z + t[c]:
 *   ON                      s = 1, t = 0
 *   OFF  Relu, GELU, SiLU   s = 0, t = 0   (GELU/SiLU: approximate)
 *   OFF  LeakyRelu          s = alpha      PRelu: s = slope[c]
 *   OFF- Clip               s = 0, t = min
 *   OFF+ Clip               s = 0, t = max
 * A decomposed rectifier (GELU as Erf or Tanh arithmetic, SiLU as
 * x * Sigmoid(x); layers.c) is one rectifier: z is the pattern's x, the
 * output its last node's, and every node of the pattern goes (the
 * Constant nodes of its operands are left to dce).
 * Then, first that applies:
 *   1. every s = 1, t = 0: the rectifier disappears; its consumers read z.
 *      If its output is a graph output, z's producer is made to produce
 *      that value instead (the name is kept); when z has no producer or is
 *      itself an input/output, an Identity z -> output is left.
 *   1b. every neuron OFF with s = 0, t = 0, neurons on the last axis of a
 *      z of rank >= 3 (an encoder's MLP, DESIGN.md section 13): when the
 *      output is read by one MatMul (fc2, an initializer weight), then
 *      optionally its bias Add, and that result only by Adds against a
 *      tensor of its full shape (the residual), those Adds read fc2's
 *      bias (zeros without one) instead and fc2 goes; fc1 is left to dce.
 *   2. into the producer, when z comes from one Conv, Gemm, MatMul (weight
 *      initializer, neurons on z's last axis), MatMul plus a bias Add
 *      (an encoder's nn.Linear: W's columns and the bias scaled) or
 *      BatchNormalization node and the
 *      rectifier's nodes are z's only readers: scale the output channels
 *      and add t to the bias (created when absent; a MatMul gets an Add
 *      when some t != 0).  The producer then produces the rectifier's
 *      output value.
 *   3. into the consumers, when every reader of the output is linear in
 *      its data input: Conv (s into the input channels, respecting groups;
 *      t into the bias only without padding), Gemm with transA = 0 (rows
 *      of B; t into C), MatMul with a 2-D weight (s only; neurons on z's
 *      last axis), also behind a Flatten/Reshape to [N, C*H*W] when the
 *      spatial size is known (neurons on axis 1).
 *   4. else an explicit Mul (and Add when some t != 0) with constants
 *      shaped [C, 1, ...] for z's rank ([C] for [N, C] and for neurons on
 *      the last axis), named
 *      "<rectifier>/linear" and "<rectifier>/shift": "linearized, not
 *      folded".
 * --fold none (NP_FOLD_NONE) skips 2 and 3.  A layer that cannot be
 * linearized safely (PRelu slope shape, unknown rank for 4) keeps its
 * rectifier and is logged as refused: the model stays correct.
 *
 * Shapes: the IR stores none after load; they come from the runtime's
 * shape inference (runtime/shapes.h), run once before the first layer,
 * from the declared input shapes.  A spatial size it cannot know (an
 * input dim other than the batch not declared) is -1, and the folds
 * that need it (through a Flatten) are not done.
 */
#include "fold.h"
#include "layers.h"
#include "ops.h"
#include "pass.h"
#include "rt.h"
#include "shapes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- shapes */

/* v's shape (runtime/shapes.h: the ops' inference from the declared
 * input shapes, batch 1; dims it cannot know are -1). */
static bool np_shape_of(const np_shapes *sh, const np_value *v, np_shape *out)
{
	const np_shape *s = np_shape_get(sh, v);
	if (!s)
		return false;
	*out = *s;
	return true;
}

/* ------------------------------------------------------------ helpers */

/* A new float initializer broadcasting along axis `axis` of a z of rank
 * zrank: [C, 1, ...] (zrank - axis dims) for a channel axis before the
 * last, [C] for the last (or an unknown rank). */
static np_value *np_channel_const(np_model *m, const char *base, int64_t C,
                                  int zrank, int axis, const float *vals,
                                  np_error *err)
{
	int64_t dims[NP_RT_MAX_RANK];
	int r = zrank >= 3 && axis < zrank - 1 ? zrank - axis : 1;
	dims[0] = C;
	for (int d = 1; d < r; d++)
		dims[d] = 1;
	np_value *v = np_new_float_init(m, base, r, dims, err);
	if (v)
		memcpy(v->init->data, vals, sizeof(float) * (size_t)C);
	return v;
}

static bool np_any_nonzero(const float *t, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		if (t[i] != 0.0f)
			return true;
	return false;
}

/* -------------------------------------------------------- the layer */

typedef struct np_lin {
	np_model *m;
	np_graph *g;
	np_pass_ctx *ctx;
	np_shapes sh;
	/* current layer, copied out of np_find_layers */
	const np_linearize_layer *pl;
	np_rect_kind kind;
	const char *label;             /* np_layer_kind_label */
	bool is_pattern;               /* decomposed (several nodes) */
	np_node *rect;
	np_node **pattern;
	int n_pattern;
	np_value *z, *out;
	float slope, clip_min, clip_max;
	int64_t C;
	int zrank;                     /* -1 unknown */
	int layer_axis;                /* np_layer.axis: 1, or -1 (last) */
	int axis;                      /* the neurons' axis of z (zrank known;
	                                * else 1, or -1 for the last) */
	float *s, *t;
	bool approx;
	int counts[NP_MAX_STATES];
} np_lin;

/* What the rectifier is in messages: its op, or for a decomposed one
 * (whose last node is a Mul) the pattern, e.g. "gelu(erf pattern)". */
static const char *np_lin_op(const np_lin *L)
{
	return L->is_pattern ? L->label : L->rect->op_type;
}

static void np_lin_log(np_lin *L, np_log_kind kind, const char *into,
                       const char *how)
{
	const char *hi = L->counts[NP_STATE_OFF_HI]
	               ? np_arena_printf(L->m->arena, ", %d OFF+", L->counts[NP_STATE_OFF_HI])
	               : "";
	np_pass_log_add(L->ctx->log, L->m, kind, "linearize", L->rect->name, into,
	                "%s %s: %d ON, %d OFF%s; %s%s", np_rect_kind_name(L->kind),
	                np_lin_op(L), L->counts[NP_STATE_ON], L->counts[NP_STATE_OFF], hi,
	                how, L->approx ? " (approximate)" : "");
}

/* Slope of PRelu channel c, from a slope broadcast along axis 1. */
static np_status np_prelu_slopes(np_lin *L, float *slope, np_error *err)
{
	np_value *sv = L->rect->n_inputs > 1 ? L->rect->inputs[1] : NULL;
	const float *p = np_init_floats(sv);
	if (!p)
		return np_fail(err, NP_ERR_UNSUPPORTED,
		               "PRelu slope is not a float initializer (node %s, op PRelu)",
		               L->rect->name);
	const np_tensor *t = sv->init;
	if (t->nelem == 1) {
		for (int64_t c = 0; c < L->C; c++)
			slope[c] = p[0];
		return NP_OK;
	}
	/* Exactly one non-1 dim, of size C, landing on axis 1 of z. */
	int at = -1;
	for (int d = 0; d < t->rank; d++)
		if (t->dims[d] != 1)
			at = at < 0 && t->dims[d] == L->C ? d : -2;
	if (at < 0 || L->zrank < 0 || L->zrank - t->rank + at != L->axis)
		return np_fail(err, NP_ERR_UNSUPPORTED,
		               "PRelu slope is not per-channel along axis %d (node %s, op PRelu)",
		               L->axis, L->rect->name);
	memcpy(slope, p, sizeof(float) * (size_t)L->C);
	return NP_OK;
}

/* s and t from the states (header comment). */
static np_status np_lin_affine(np_lin *L, np_error *err)
{
	float *slope = NULL;
	if (L->kind == NP_RECT_PRELU) {
		slope = malloc(sizeof(float) * (size_t)(L->C + 1));
		if (!slope)
			return np_fail(err, NP_ERR_NOMEM, "out of memory linearizing");
		if (np_prelu_slopes(L, slope, err) != NP_OK) {
			free(slope);
			return err->status;
		}
	}
	np_status st = NP_OK;
	for (int64_t c = 0; c < L->C && st == NP_OK; c++) {
		int state = L->pl->state[c];
		float s = 1, t = 0;
		if (state == NP_STATE_OFF) {
			s = L->kind == NP_RECT_LEAKY_RELU ? L->slope
			  : L->kind == NP_RECT_PRELU ? slope[c] : 0.0f;
			t = L->kind == NP_RECT_CLIP ? L->clip_min : 0.0f;
		} else if (state == NP_STATE_OFF_HI) {
			if (L->kind != NP_RECT_CLIP || !isfinite(L->clip_max))
				st = np_fail(err, NP_ERR_INVALID,
				             "neuron %lld is OFF+ but the rectifier has no finite max (node %s, op %s)",
				             (long long)c, L->rect->name, np_lin_op(L));
			s = 0;
			t = L->clip_max;
		} else if (state != NP_STATE_ON) {
			st = np_fail(err, NP_ERR_INVALID, "neuron %lld has state %d (node %s, op %s)",
			             (long long)c, state, L->rect->name, np_lin_op(L));
		}
		if (st == NP_OK)
			L->counts[state]++;
		L->s[c] = s;
		L->t[c] = t;
	}
	free(slope);
	return st;
}

static void np_lin_remove_pattern(np_lin *L)
{
	for (int i = L->n_pattern - 1; i >= 0; i--)
		np_graph_remove_node(L->g, L->pattern[i]);
}

/* True if the rectifier's nodes are z's only readers. */
static bool np_z_private(const np_lin *L)
{
	if (L->z->is_output)
		return false;
	for (int u = 0; u < L->z->n_uses; u++) {
		bool mine = false;
		for (int k = 0; k < L->n_pattern; k++)
			mine |= L->z->uses[u].node == L->pattern[k];
		if (!mine)
			return false;
	}
	return true;
}

/* ------------------------------------------------- 1. all identity */

static np_status np_lin_identity(np_lin *L, np_error *err)
{
	np_value *z = L->z, *out = L->out;
	np_lin_remove_pattern(L);
	if (!out->is_output) {
		np_value_replace_uses(out, z);
		np_lin_log(L, NP_LOG_LINEARIZED, NULL, "identity, removed");
		return NP_OK;
	}
	if (z->producer && !z->is_output && !z->is_input && !z->init) {
		np_node *p = z->producer;
		np_node_replace_output(p, z, out);
		np_node_doc_append(L->m, p, np_arena_printf(L->m->arena,
		                   "folded: %s (%s, identity)", L->rect->name, np_lin_op(L)));
		np_lin_log(L, NP_LOG_LINEARIZED, p->name,
		           "identity, removed (producer now writes the graph output)");
		return NP_OK;
	}
	/* z is a graph input or output itself: keep the output's name. */
	const char *name = np_graph_unique_node_name(L->g, L->rect->name);
	np_node *id = np_graph_new_node(L->g, np_op_name(NP_OPK_Identity), "", name, &z, 1, &out, 1);
	np_graph_insert_node(L->g, id);
	(void)err;
	np_lin_log(L, NP_LOG_LINEARIZED, name, "identity, Identity kept for the graph output");
	return NP_OK;
}

/* ------------------------------------- 1b. an encoder MLP all OFF */

/* Input k of Add node a is a float initializer of C values broadcast
 * along the last axis ([C], [1, C], [1, 1, C] ...). */
static bool np_last_axis_bias(const np_node *a, int k, int64_t C)
{
	const np_value *b = a->inputs[k];
	if (!np_init_floats(b) || b->init->nelem != C || b->init->rank < 1)
		return false;
	return b->init->dims[b->init->rank - 1] == C;
}

/* Do a and b have the same known shape (an unknown batch, axis 0, in
 * both allowed)? */
static bool np_same_static_shape(const np_shape *a, const np_shape *b)
{
	if (!a || !b || a->rank < 1 || a->rank != b->rank)
		return false;
	for (int d = 0; d < a->rank; d++)
		if (a->dims[d] != b->dims[d] || (d > 0 && a->dims[d] < 0))
			return false;
	return true;
}

/* Every neuron OFF with s = 0, t = 0 (Relu, GELU, SiLU OFF): the
 * rectifier's output is zero (GELU and SiLU: approximately), so an
 * encoder MLP  r = Add(MatMul(out, W2), b2)  (the Add optional) is its
 * output bias b2; when every reader of r is an Add of r and a tensor of
 * r's full shape (the residual), it reads b2 instead (zeros without a
 * bias), the MLP's second linear and the rectifier go, and the first
 * linear, left unread, goes with dce.  Only for neurons on the last
 * axis of a z of rank >= 3 (tokens). */
static np_status np_lin_dead_mlp(np_lin *L, bool *done, np_error *err)
{
	*done = false;
	if (L->zrank < 3 || L->axis != L->zrank - 1 || np_any_nonzero(L->t, L->C) ||
	    np_any_nonzero(L->s, L->C) || L->out->is_output || L->out->n_uses != 1)
		return NP_OK;
	np_node *f2 = L->out->uses[0].node;
	const np_value *w2 = f2->n_inputs == 2 ? f2->inputs[1] : NULL;
	if (np_node_kind(f2) != NP_OPK_MatMul || L->out->uses[0].index != 0 ||
	    f2->n_outputs != 1 || !np_init_floats(w2) || w2->init->rank != 2 ||
	    w2->init->dims[0] != L->C)
		return NP_OK;
	int64_t N2 = w2->init->dims[1];
	np_value *r = f2->outputs[0];
	np_node *a2 = NULL;
	const float *b2 = NULL;
	if (!r->is_output && r->n_uses == 1 && np_node_kind(r->uses[0].node) == NP_OPK_Add &&
	    r->uses[0].node->n_inputs == 2 && r->uses[0].node->n_outputs == 1 &&
	    np_last_axis_bias(r->uses[0].node, 1 - r->uses[0].index, N2)) {
		a2 = r->uses[0].node;
		b2 = np_init_floats(a2->inputs[1 - r->uses[0].index]);
		r = a2->outputs[0];
	}
	const np_shape *rs = np_shape_get(&L->sh, r);
	if (r->is_output || r->n_uses == 0)
		return NP_OK;
	for (int u = 0; u < r->n_uses; u++) {
		const np_node *j = r->uses[u].node;
		if (np_node_kind(j) != NP_OPK_Add || j->n_inputs != 2 ||
		    j->inputs[1 - r->uses[u].index] == r ||
		    !np_same_static_shape(np_shape_get(&L->sh, j->inputs[1 - r->uses[u].index]), rs))
			return NP_OK;
	}
	const char *base = np_arena_printf(L->m->arena, "%s/mlp_bias", L->rect->name);
	np_value *c = np_new_float_init(L->m, base, 1, &N2, err);
	if (!c)
		return err->status;
	float *cv = c->init->data;
	for (int64_t n = 0; n < N2; n++)
		cv[n] = b2 ? b2[n] : 0.0f;
	np_node *join = r->uses[0].node;
	while (r->n_uses > 0) {
		np_node *j = r->uses[0].node;
		np_node_set_input(j, r->uses[0].index, c);
		np_node_doc_append(L->m, j, np_arena_printf(L->m->arena,
		                   "folded: the MLP branch of %s (%s all OFF, approximate): "
		                   "its output bias", L->rect->name, np_lin_op(L)));
	}
	const char *f2name = f2->name, *a2name = a2 ? a2->name : NULL;
	if (a2)
		np_graph_remove_node(L->g, a2);
	np_graph_remove_node(L->g, f2);
	np_lin_remove_pattern(L);
	np_lin_log(L, NP_LOG_LINEARIZED, join->name, np_arena_printf(L->m->arena,
	           "all OFF: the MLP branch (%s%s%s) is its output bias, added by %s",
	           f2name, a2name ? ", " : "", a2name ? a2name : "", join->name));
	*done = true;
	return NP_OK;
}

/* ---------------------------------------------------- 2. producer */

/* Outputs of p other than z unused (BatchNormalization in training form). */
static bool np_extra_outputs_unused(const np_node *p)
{
	for (int k = 1; k < p->n_outputs; k++)
		if (p->outputs[k] && (p->outputs[k]->n_uses || p->outputs[k]->is_output))
			return false;
	return true;
}

/* An encoder's linear: z = Add(MatMul(x, W[K, C]), b[C]) (either operand
 * order), the MatMul's output read by the Add alone, z's neurons on its
 * last axis.  The MatMul, or NULL; *bias: the Add's input index of b. */
static np_node *np_bias_add_matmul_at(const np_lin *L, const np_node *a, int *bias)
{
	if (np_node_kind(a) != NP_OPK_Add || a->n_inputs != 2 || a->n_outputs != 1 ||
	    a->outputs[0] != L->z || L->zrank < 2 || L->axis != L->zrank - 1)
		return NULL;
	for (int k = 0; k < 2; k++) {
		const np_value *x = a->inputs[1 - k];
		np_node *mm = x ? x->producer : NULL;
		if (!np_last_axis_bias(a, k, L->C) || np_node_kind(mm) != NP_OPK_MatMul ||
		    mm->n_inputs != 2 || mm->n_outputs != 1 || !np_value_single_use(x, a))
			continue;
		const np_value *w = mm->inputs[1];
		if (np_init_floats(w) && w->init->rank == 2 && w->init->dims[1] == L->C &&
		    mm->inputs[0] != w) {
			*bias = k;
			return mm;
		}
	}
	return NULL;
}

static const np_node *np_bias_add_matmul(const np_lin *L, const np_node *a)
{
	int k;
	return np_bias_add_matmul_at(L, a, &k);
}

static bool np_producer_ok(const np_lin *L, const np_node *p)
{
	if (!p || p->n_outputs < 1 || p->outputs[0] != L->z || !np_extra_outputs_unused(p))
		return false;
	const np_value *w = p->n_inputs > 1 ? p->inputs[1] : NULL;
	const float *wp = np_init_floats(w);
	if (np_node_kind(p) == NP_OPK_Conv) {
		const np_value *b = p->n_inputs > 2 ? p->inputs[2] : NULL;
		return wp && w->init->rank >= 3 && w->init->dims[0] == L->C &&
		       (!b || (np_init_floats(b) && b->init->nelem == L->C));
	}
	if (np_node_kind(p) == NP_OPK_Gemm) {
		if (!wp || w->init->rank != 2)
			return false;
		int64_t N = np_node_attr_int(p, "transB", 0) ? w->init->dims[0] : w->init->dims[1];
		const np_value *c = p->n_inputs > 2 ? p->inputs[2] : NULL;
		if (N != L->C || (c && !np_init_floats(c)))
			return false;
		if (!c)
			return true;
		const np_tensor *ct = c->init;
		return ct->rank == 0 || (ct->rank == 1 && (ct->dims[0] == 1 || ct->dims[0] == N)) ||
		       (ct->rank == 2 && (ct->dims[1] == 1 || ct->dims[1] == N));
	}
	if (np_node_kind(p) == NP_OPK_MatMul)
		return wp && w->init->rank == 2 && w->init->dims[1] == L->C &&
		       L->zrank >= 2 && L->axis == L->zrank - 1 && p->inputs[0] != w;
	if (np_node_kind(p) == NP_OPK_Add)
		return np_bias_add_matmul(L, p) != NULL;
	if (np_node_kind(p) == NP_OPK_BatchNormalization) {
		const np_value *b = p->n_inputs > 2 ? p->inputs[2] : NULL;
		return wp && w->init->nelem == L->C && np_init_floats(b) &&
		       b->init->nelem == L->C && !np_node_attr_int(p, "training_mode", 0);
	}
	return false;
}

static np_status np_fold_conv_producer(np_lin *L, np_node *p, np_error *err)
{
	float *w = np_fold_writable(L->m, p, 1, err);
	if (!w)
		return err->status;
	int64_t per = p->inputs[1]->init->nelem / L->C;
	for (int64_t o = 0; o < L->C; o++)
		for (int64_t j = 0; j < per; j++)
			w[o * per + j] *= L->s[o];
	if (p->n_inputs > 2 && p->inputs[2]) {
		float *b = np_fold_writable(L->m, p, 2, err);
		if (!b)
			return err->status;
		for (int64_t o = 0; o < L->C; o++)
			b[o] = L->s[o] * b[o] + L->t[o];
	} else if (np_any_nonzero(L->t, L->C)) {
		np_value *b = np_channel_const(L->m, np_arena_printf(L->m->arena, "%s_bias",
		                               p->inputs[1]->name), L->C, 2, 1, L->t, err);
		if (!b)
			return err->status;
		np_fold_put_input(L->g, p, 2, b);
	}
	return NP_OK;
}

/* The value of C (Gemm bias) at row r, column n, broadcast. */
static float np_gemm_c_at(const np_tensor *ct, int64_t r, int64_t n)
{
	const float *c = ct->data;
	if (ct->nelem == 1)
		return c[0];
	if (ct->rank == 1)
		return c[n];
	int64_t rr = ct->dims[0] == 1 ? 0 : r, nn = ct->dims[1] == 1 ? 0 : n;
	return c[rr * ct->dims[1] + nn];
}

/* Replace Gemm p's C by C'[r,n] = a[n]*C[r,n] + add[n] (C absent or
 * beta = 0: C' = add, beta = 1).  C' is [N], or [M,N] when C has rows. */
static np_status np_gemm_set_c(np_lin *L, np_node *p, int64_t N, const float *a,
                               const float *add, np_error *err)
{
	float beta = np_node_attr_float(p, "beta", 1.0f);
	np_value *c = p->n_inputs > 2 ? p->inputs[2] : NULL;
	bool has_c = c && beta != 0.0f;
	const np_tensor *ct = has_c ? c->init : NULL;
	int64_t rows = ct && ct->rank == 2 ? ct->dims[0] : 1;
	int64_t dims[2] = {rows, N};
	int r = rows > 1 ? 2 : 1;
	const char *base = np_arena_printf(L->m->arena, "%s_C", p->name);
	np_value *nc = np_new_float_init(L->m, base, r, r == 2 ? dims : dims + 1, err);
	if (!nc)
		return err->status;
	float *d = nc->init->data;
	for (int64_t i = 0; i < rows; i++)
		for (int64_t n = 0; n < N; n++)
			d[i * N + n] = has_c ? a[n] * np_gemm_c_at(ct, i, n) + add[n] / beta : add[n];
	if (!has_c)
		np_node_set_attr_float(p, "beta", 1.0f);
	np_fold_put_input(L->g, p, 2, nc);
	return NP_OK;
}

static np_status np_fold_gemm_producer(np_lin *L, np_node *p, np_error *err)
{
	float *b = np_fold_writable(L->m, p, 1, err);
	if (!b)
		return err->status;
	const np_tensor *bt = p->inputs[1]->init;
	bool tb = np_node_attr_int(p, "transB", 0) != 0;
	int64_t K = tb ? bt->dims[1] : bt->dims[0], N = L->C;
	for (int64_t k = 0; k < K; k++)
		for (int64_t n = 0; n < N; n++)
			b[tb ? n * K + k : k * N + n] *= L->s[n];
	bool has_c = p->n_inputs > 2 && p->inputs[2] &&
	             np_node_attr_float(p, "beta", 1.0f) != 0.0f;
	if (!has_c && !np_any_nonzero(L->t, N))
		return NP_OK;
	return np_gemm_set_c(L, p, N, L->s, L->t, err);
}

static np_status np_fold_bn_producer(np_lin *L, np_node *p, np_error *err)
{
	float *scale = np_fold_writable(L->m, p, 1, err);
	float *b = scale ? np_fold_writable(L->m, p, 2, err) : NULL;
	if (!b)
		return err->status;
	for (int64_t c = 0; c < L->C; c++) {
		scale[c] *= L->s[c];
		b[c] = L->s[c] * b[c] + L->t[c];
	}
	return NP_OK;
}

/* MatMul: scale the weight's columns; the shift, if any, becomes an Add
 * after it (z keeps its MatMul, the Add writes the rectifier's output). */
static np_status np_fold_matmul_producer(np_lin *L, np_node *p, bool *add_after,
                                         np_error *err)
{
	float *w = np_fold_writable(L->m, p, 1, err);
	if (!w)
		return err->status;
	int64_t K = p->inputs[1]->init->dims[0], N = L->C;
	for (int64_t k = 0; k < K; k++)
		for (int64_t n = 0; n < N; n++)
			w[k * N + n] *= L->s[n];
	*add_after = np_any_nonzero(L->t, N);
	return NP_OK;
}

/* z = Add(MatMul(x, W), b): scale W's columns and b by s, add t to b;
 * the Add then produces the rectifier's output. */
static np_status np_fold_bias_add_producer(np_lin *L, np_node *a, np_error *err)
{
	int k;
	np_node *mm = np_bias_add_matmul_at(L, a, &k);
	float *w = mm ? np_fold_writable(L->m, mm, 1, err) : NULL;
	float *b = w ? np_fold_writable(L->m, a, k, err) : NULL;
	if (!b)
		return mm ? err->status : np_fail(err, NP_ERR_INVALID, "no MatMul before %s",
		                                  a->name);
	int64_t K = mm->inputs[1]->init->dims[0], N = L->C;
	for (int64_t r = 0; r < K; r++)
		for (int64_t n = 0; n < N; n++)
			w[r * N + n] *= L->s[n];
	for (int64_t n = 0; n < N; n++)
		b[n] = L->s[n] * b[n] + L->t[n];
	return NP_OK;
}

static np_status np_lin_shift_node(np_lin *L, np_value *in, np_value *out,
                                   np_error *err)
{
	const char *base = np_arena_printf(L->m->arena, "%s/shift", L->rect->name);
	np_value *tv = np_channel_const(L->m, np_arena_printf(L->m->arena, "%s/bias", base),
	                                L->C, L->zrank, L->axis, L->t, err);
	if (!tv)
		return err->status;
	np_value *ins[2] = {in, tv};
	np_node *add = np_graph_new_node(L->g, np_op_name(NP_OPK_Add), "", np_graph_unique_node_name(L->g, base),
	                                 ins, 2, &out, 1);
	np_node_doc_append(L->m, add, np_arena_printf(L->m->arena,
	                   "linearized %s (%s): shift", L->rect->name, np_lin_op(L)));
	np_graph_insert_node(L->g, add);
	return NP_OK;
}

static np_status np_lin_producer(np_lin *L, bool *done, np_error *err)
{
	np_node *p = L->z->producer;
	*done = false;
	if (!np_z_private(L) || !np_producer_ok(L, p))
		return NP_OK;
	bool add_after = false;
	np_status st;
	if (np_node_kind(p) == NP_OPK_Conv)
		st = np_fold_conv_producer(L, p, err);
	else if (np_node_kind(p) == NP_OPK_Gemm)
		st = np_fold_gemm_producer(L, p, err);
	else if (np_node_kind(p) == NP_OPK_MatMul)
		st = np_fold_matmul_producer(L, p, &add_after, err);
	else if (np_node_kind(p) == NP_OPK_Add)
		st = np_fold_bias_add_producer(L, p, err);
	else
		st = np_fold_bn_producer(L, p, err);
	if (st != NP_OK)
		return st;
	np_lin_remove_pattern(L);
	if (add_after)
		st = np_lin_shift_node(L, L->z, L->out, err);
	else
		np_node_replace_output(p, L->z, L->out);
	if (st != NP_OK)
		return st;
	np_node_doc_append(L->m, p, np_arena_printf(L->m->arena, "folded: %s (%s, linearized%s)",
	                   L->rect->name, np_lin_op(L), L->approx ? ", approximate" : ""));
	np_lin_log(L, NP_LOG_LINEARIZED, p->name, np_arena_printf(L->m->arena,
	           "folded into producer %s (%s)%s", p->name, p->op_type,
	           add_after ? " with an Add for the shift" : ""));
	*done = true;
	return NP_OK;
}

/* --------------------------------------------------- 3. consumers */

/* A reader of the rectifier's output: node n reads it at input 0;
 * hw = elements per channel when it sits behind a flatten (1: direct). */
typedef struct np_reader {
	np_node *n;
	int64_t hw;
} np_reader;

static bool np_conv_no_padding(const np_node *n)
{
	const char *ap = np_node_attr_string(n, "auto_pad", "NOTSET");
	if (strcmp(ap, "NOTSET") != 0 && strcmp(ap, "VALID") != 0)
		return false;
	int np = 0;
	const int64_t *pads = np_node_attr_ints(n, "pads", &np);
	for (int i = 0; pads && i < np; i++)
		if (pads[i] != 0)
			return false;
	return true;
}

/* Is n, reading at input `index` a tensor whose feature axis has K =
 * C*hw features, linear in it with a foldable weight? */
static bool np_reader_ok(const np_lin *L, const np_node *n, int index, int64_t hw,
                         bool shift)
{
	if (index != 0 || n->n_inputs < 2)
		return false;
	const np_value *w = n->inputs[1];
	if (!np_init_floats(w) || (n->inputs[0] == w))
		return false;
	const np_tensor *wt = w->init;
	if (np_node_kind(n) == NP_OPK_Conv) {
		int64_t group = np_node_attr_int(n, "group", 1);
		const np_value *b = n->n_inputs > 2 ? n->inputs[2] : NULL;
		return hw == 1 && L->axis == 1 && wt->rank >= 3 && group > 0 &&
		       wt->dims[1] * group == L->C &&
		       wt->dims[0] % group == 0 &&
		       (!shift || (np_conv_no_padding(n) &&
		                   (!b || (np_init_floats(b) && b->init->nelem == wt->dims[0]))));
	}
	if (np_node_kind(n) == NP_OPK_Gemm) {
		bool tb = np_node_attr_int(n, "transB", 0) != 0;
		if (np_node_attr_int(n, "transA", 0) || wt->rank != 2 ||
		    (tb ? wt->dims[1] : wt->dims[0]) != L->C * hw)
			return false;
		if (hw == 1 && L->zrank != 2)
			return false;
		const np_value *c = n->n_inputs > 2 ? n->inputs[2] : NULL;
		if (!shift || !c)
			return true;
		const np_tensor *ct = c->init;
		int64_t N = tb ? wt->dims[0] : wt->dims[1];
		return np_init_floats(c) &&
		       (ct->rank == 0 || (ct->rank == 1 && (ct->dims[0] == 1 || ct->dims[0] == N)) ||
		        (ct->rank == 2 && (ct->dims[1] == 1 || ct->dims[1] == N)));
	}
	if (np_node_kind(n) == NP_OPK_MatMul)
		return !shift && wt->rank == 2 && wt->dims[0] == L->C * hw &&
		       (hw > 1 || (L->zrank >= 2 && L->axis == L->zrank - 1));
	return false;
}

/* Elements per channel if n turns z ([N, C, ...]) into [N, C*H*W...]. */
static int64_t np_flatten_hw(const np_lin *L, const np_node *n)
{
	if (!(np_node_flags(n) & NP_OPF_RESHAPE) || L->axis != 1)   /* Flatten, Reshape */
		return 0;
	if (np_node_kind(n) == NP_OPK_Flatten && np_node_attr_int(n, "axis", 1) != 1)
		return 0;
	np_shape zs, fs;
	if (!np_shape_of(&L->sh, L->z, &zs) ||
	    !np_shape_of(&L->sh, n->outputs[0], &fs) || zs.rank < 2 || fs.rank != 2 ||
	    zs.dims[1] != L->C || fs.dims[0] != zs.dims[0] || fs.dims[1] < 0)
		return 0;
	int64_t hw = 1;
	for (int d = 2; d < zs.rank; d++) {
		if (zs.dims[d] < 0)
			return 0;        /* spatial size not declared */
		hw *= zs.dims[d];
	}
	return fs.dims[1] == L->C * hw ? hw : 0;
}

/* Every reader of the output (through flattens); false if one is not
 * foldable.  *n set; r has room for every use. */
static bool np_collect_readers(const np_lin *L, bool shift, np_reader *r, int *n,
                               int cap)
{
	*n = 0;
	if (L->out->is_output)
		return false;
	for (int u = 0; u < L->out->n_uses; u++) {
		np_node *c = L->out->uses[u].node;
		int64_t hw = np_flatten_hw(L, c);
		if (hw > 0 && L->out->uses[u].index == 0) {
			np_value *f = c->outputs[0];
			if (f->is_output || f->n_uses == 0)
				return false;
			for (int k = 0; k < f->n_uses; k++) {
				if (*n >= cap || !np_reader_ok(L, f->uses[k].node, f->uses[k].index, hw, shift))
					return false;
				r[(*n)++] = (np_reader){f->uses[k].node, hw};
			}
			continue;
		}
		if (*n >= cap || !np_reader_ok(L, c, L->out->uses[u].index, 1, shift))
			return false;
		r[(*n)++] = (np_reader){c, 1};
	}
	return *n > 0;
}

static np_status np_fold_conv_reader(np_lin *L, np_node *n, np_error *err)
{
	float *w = np_fold_writable(L->m, n, 1, err);
	if (!w)
		return err->status;
	const np_tensor *wt = n->inputs[1]->init;
	int64_t O = wt->dims[0], Cg = wt->dims[1], group = np_node_attr_int(n, "group", 1);
	int64_t Og = O / group, ksz = wt->nelem / (O * Cg);
	bool shift = np_any_nonzero(L->t, L->C);
	float *add = calloc((size_t)O + 1, sizeof(float));
	if (!add)
		return np_fail(err, NP_ERR_NOMEM, "out of memory folding into %s", n->name);
	for (int64_t o = 0; o < O; o++) {
		double acc = 0;
		for (int64_t cl = 0; cl < Cg; cl++) {
			int64_t c = (o / Og) * Cg + cl;
			float *k = w + (o * Cg + cl) * ksz;
			for (int64_t j = 0; j < ksz; j++) {
				acc += (double)k[j] * L->t[c];
				k[j] *= L->s[c];
			}
		}
		add[o] = (float)acc;
	}
	np_status st = NP_OK;
	if (shift && n->n_inputs > 2 && n->inputs[2]) {
		float *b = np_fold_writable(L->m, n, 2, err);
		if (!b)
			st = err->status;
		for (int64_t o = 0; b && o < O; o++)
			b[o] += add[o];
	} else if (shift) {
		np_value *b = np_channel_const(L->m, np_arena_printf(L->m->arena, "%s_bias",
		                               n->inputs[1]->name), O, 2, 1, add, err);
		if (!b)
			st = err->status;
		else
			np_fold_put_input(L->g, n, 2, b);
	}
	free(add);
	return st;
}

/* Gemm or MatMul reading [M, C*hw]: rows k of the weight belong to
 * channel k / hw. */
static np_status np_fold_gemm_reader(np_lin *L, np_node *n, int64_t hw, np_error *err)
{
	float *w = np_fold_writable(L->m, n, 1, err);
	if (!w)
		return err->status;
	const np_tensor *wt = n->inputs[1]->init;
	bool gemm = np_node_kind(n) == NP_OPK_Gemm;
	bool tb = gemm && np_node_attr_int(n, "transB", 0) != 0;
	int64_t K = L->C * hw, N = tb ? wt->dims[0] : wt->dims[1];
	float alpha = gemm ? np_node_attr_float(n, "alpha", 1.0f) : 1.0f;
	double *add = calloc((size_t)N + 1, sizeof(double));
	float *addf = malloc(sizeof(float) * (size_t)(N + 1));
	float *ones = malloc(sizeof(float) * (size_t)(N + 1));
	np_status st = NP_OK;
	if (!add || !addf || !ones) {
		st = np_fail(err, NP_ERR_NOMEM, "out of memory folding into %s", n->name);
		goto out;
	}
	for (int64_t k = 0; k < K; k++) {
		int64_t c = k / hw;
		for (int64_t j = 0; j < N; j++) {
			float *x = &w[tb ? j * K + k : k * N + j];
			add[j] += (double)*x * L->t[c];
			*x *= L->s[c];
		}
	}
	for (int64_t j = 0; j < N; j++) {
		addf[j] = (float)(alpha * add[j]);
		ones[j] = 1.0f;
	}
	if (gemm && np_any_nonzero(L->t, L->C))
		st = np_gemm_set_c(L, n, N, ones, addf, err);
out:
	free(add);
	free(addf);
	free(ones);
	return st;
}

static np_status np_lin_consumers(np_lin *L, bool *done, np_error *err)
{
	*done = false;
	int cap = 0;
	for (int u = 0; u < L->out->n_uses; u++) {
		const np_node *c = L->out->uses[u].node;
		cap += 1 + (c->n_outputs > 0 && c->outputs[0] ? c->outputs[0]->n_uses : 0);
	}
	np_reader *r = malloc(sizeof(np_reader) * (size_t)(cap + 1));
	if (!r)
		return np_fail(err, NP_ERR_NOMEM, "out of memory linearizing");
	int n = 0;
	bool shift = np_any_nonzero(L->t, L->C);
	if (!np_collect_readers(L, shift, r, &n, cap)) {
		free(r);
		return NP_OK;
	}
	np_status st = NP_OK;
	for (int i = 0; i < n && st == NP_OK; i++)
		st = np_node_kind(r[i].n) == NP_OPK_Conv ? np_fold_conv_reader(L, r[i].n, err)
		                                : np_fold_gemm_reader(L, r[i].n, r[i].hw, err);
	if (st == NP_OK) {
		const char *note = np_arena_printf(L->m->arena, "folded: %s (%s, linearized%s)",
		                                   L->rect->name, np_lin_op(L),
		                                   L->approx ? ", approximate" : "");
		for (int i = 0; i < n; i++)
			np_node_doc_append(L->m, r[i].n, note);
		np_lin_remove_pattern(L);
		np_value_replace_uses(L->out, L->z);
		np_lin_log(L, NP_LOG_LINEARIZED, r[0].n->name, np_arena_printf(L->m->arena,
		           "folded into %d consumer%s (%s %s%s)", n, n > 1 ? "s" : "",
		           r[0].n->name, r[0].n->op_type, n > 1 ? ", ..." : ""));
		*done = true;
	}
	free(r);
	return st;
}

/* ---------------------------------------------------- 4. explicit */

/* z's rank when no shape is known: a Conv producer's weight rank, 2 after
 * Gemm. */
static int np_guess_rank(const np_lin *L)
{
	const np_node *p = L->z->producer;
	if (np_node_kind(p) == NP_OPK_Conv && p->n_inputs > 1 && p->inputs[1] && p->inputs[1]->init)
		return p->inputs[1]->init->rank;
	if (np_node_kind(p) == NP_OPK_Gemm)
		return 2;
	return -1;
}

static np_status np_lin_explicit(np_lin *L, np_error *err)
{
	if (L->zrank < 2) {
		np_pass_log_add(L->ctx->log, L->m, NP_LOG_REFUSED, "linearize", L->rect->name, NULL,
		                "kept the rectifier: the rank of its input '%s' is unknown",
		                L->z->name);
		return NP_OK;
	}
	bool scale = false, shift = np_any_nonzero(L->t, L->C);
	for (int64_t c = 0; c < L->C; c++)
		scale |= L->s[c] != 1.0f;
	np_lin_remove_pattern(L);
	np_value *cur = L->z;
	const char *base = np_arena_printf(L->m->arena, "%s/linear", L->rect->name);
	if (scale) {
		np_value *sv = np_channel_const(L->m, np_arena_printf(L->m->arena, "%s/scale", base),
		                                L->C, L->zrank, L->axis, L->s, err);
		if (!sv)
			return err->status;
		np_value *mv = shift ? np_graph_new_unique_value(L->g, base) : L->out;
		np_value *ins[2] = {cur, sv};
		np_node *mul = np_graph_new_node(L->g, np_op_name(NP_OPK_Mul), "", np_graph_unique_node_name(L->g, base),
		                                 ins, 2, &mv, 1);
		np_node_doc_append(L->m, mul, np_arena_printf(L->m->arena,
		                   "linearized %s (%s), not folded%s", L->rect->name, np_lin_op(L),
		                   L->approx ? ", approximate" : ""));
		np_graph_insert_node(L->g, mul);
		cur = mv;
	}
	if (shift) {
		np_status st = np_lin_shift_node(L, cur, L->out, err);
		if (st != NP_OK)
			return st;
	}
	np_lin_log(L, NP_LOG_LINEARIZED, NULL, "linearized, not folded");
	return NP_OK;
}

/* ------------------------------------------------------------ driver */

/* Copy layer `name` out of a fresh analysis (it borrows the graph). */
static np_status np_lin_find(np_lin *L, const np_linearize_layer *pl, np_error *err)
{
	np_layers ls = {0};
	np_status st = np_find_layers(L->m, &ls, err);
	if (st != NP_OK)
		return st;
	const np_layer *hit = NULL;
	for (int i = 0; i < ls.n && !hit; i++)
		if (ls.v[i].rectifier->name && strcmp(ls.v[i].rectifier->name, pl->rectifier) == 0)
			hit = &ls.v[i];
	if (!hit) {
		np_layers_free(&ls);
		return np_fail(err, NP_ERR_INVALID, "no rectifier named '%s' to linearize",
		               pl->rectifier);
	}
	L->pl = pl;
	L->kind = hit->kind;
	L->label = np_layer_kind_label(hit);
	L->is_pattern = hit->form != NP_FORM_OP;
	L->rect = hit->rectifier;
	L->z = hit->z;
	L->out = hit->out;
	L->slope = hit->slope;
	L->clip_min = hit->clip_min;
	L->clip_max = hit->clip_max;
	L->layer_axis = hit->axis;
	L->n_pattern = hit->n_pattern;
	L->pattern = malloc(sizeof(np_node *) * (size_t)(hit->n_pattern + 1));
	if (L->pattern)
		memcpy(L->pattern, hit->pattern, sizeof(np_node *) * (size_t)hit->n_pattern);
	np_layers_free(&ls);
	if (!L->pattern)
		return np_fail(err, NP_ERR_NOMEM, "out of memory linearizing");
	return NP_OK;
}

/* Channels and rank of z; the plan must agree with the graph. */
static np_status np_lin_geometry(np_lin *L, np_error *err)
{
	np_shape zs;
	bool known = np_shape_of(&L->sh, L->z, &zs);
	L->zrank = known ? zs.rank : np_guess_rank(L);
	L->axis = L->zrank >= 2 && L->layer_axis < 0 ? L->zrank - 1 : L->layer_axis;
	L->C = L->pl->neurons;
	if (known && (zs.rank < 2 || (zs.dims[L->axis] >= 0 && zs.dims[L->axis] != L->C)))
		return np_fail(err, NP_ERR_INVALID,
		               "linearize plan gives %lld neurons, input '%s' has %lld channels on axis %d (node %s, op %s)",
		               (long long)L->C, L->z->name,
		               (long long)(zs.rank >= 2 ? zs.dims[L->axis] : -1), L->axis,
		               L->rect->name, np_lin_op(L));
	if (L->C <= 0 || !L->pl->state)
		return np_fail(err, NP_ERR_INVALID, "linearize plan for '%s' has no neurons",
		               L->rect->name);
	return NP_OK;
}

static np_status np_lin_layer(np_lin *L, const np_linearize_layer *pl, np_error *err)
{
	np_status st = np_lin_find(L, pl, err);
	if (st == NP_OK)
		st = np_lin_geometry(L, err);
	if (st == NP_OK) {
		L->s = malloc(sizeof(float) * (size_t)(L->C + 1));
		L->t = malloc(sizeof(float) * (size_t)(L->C + 1));
		if (!L->s || !L->t)
			st = np_fail(err, NP_ERR_NOMEM, "out of memory linearizing");
	}
	L->approx = pl->approximate || L->kind == NP_RECT_GELU || L->kind == NP_RECT_SILU;
	if (st == NP_OK) {
		st = np_lin_affine(L, err);
		if (st == NP_ERR_UNSUPPORTED) {
			/* Keep the rectifier: the model stays what it was. */
			np_pass_log_add(L->ctx->log, L->m, NP_LOG_REFUSED, "linearize", L->rect->name,
			                NULL, "kept the rectifier: %s", err->msg);
			*err = (np_error){0};
			st = NP_OK;
			goto out;
		}
	}
	if (st != NP_OK)
		goto out;
	bool identity = !np_any_nonzero(L->t, L->C), done = false;
	for (int64_t c = 0; identity && c < L->C; c++)
		identity = L->s[c] == 1.0f;
	if (identity) {
		st = np_lin_identity(L, err);
		done = true;
	}
	if (!done && st == NP_OK && L->ctx->fold != NP_FOLD_NONE)
		st = np_lin_dead_mlp(L, &done, err);
	if (!done && st == NP_OK && L->ctx->fold != NP_FOLD_NONE)
		st = np_lin_producer(L, &done, err);
	if (!done && st == NP_OK && L->ctx->fold != NP_FOLD_NONE)
		st = np_lin_consumers(L, &done, err);
	if (!done && st == NP_OK)
		st = np_lin_explicit(L, err);
	L->ctx->changes++;
out:
	free(L->pattern);
	free(L->s);
	free(L->t);
	L->pattern = NULL;
	L->s = L->t = NULL;
	memset(L->counts, 0, sizeof L->counts);
	return st;
}

static np_status np_linearize_run(np_model *m, np_pass_ctx *ctx, np_error *err)
{
	const np_linearize_plan *plan = ctx->linearize;
	if (!plan || plan->n == 0)
		return NP_OK;
	np_lin L = {0};
	L.m = m;
	L.g = m->graph;
	L.ctx = ctx;
	np_status st = np_shapes_infer(m->graph, &L.sh, err);
	for (int i = 0; i < plan->n && st == NP_OK; i++)
		st = np_lin_layer(&L, &plan->v[i], err);
	np_shapes_free(&L.sh);
	return st;
}

const np_pass np_pass_linearize = {
	"linearize",
	"replace zero-entropy rectifiers by per-channel affine maps, folded where exact",
	np_linearize_run
};
