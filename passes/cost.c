/* cost.c - the fold cost model and the helpers the fold passes share;
 * see cost.h.  Shapes come from the runtime's inference (shapes.h). */
#include "cost.h"

#include <stdlib.h>
#include <string.h>

#include "pass.h"

/* ------------------------------------------------------------ helpers */

static const np_shape *in_shape(const np_shapes *s, const np_node *n, int i)
{
	return i < n->n_inputs ? np_shape_get(s, n->inputs[i]) : NULL;
}

/* Product of dims [from, to); -1 if one is unknown. */
static int64_t dims_prod(const np_shape *s, int from, int to)
{
	int64_t p = 1;
	for (int i = from; i < to; i++) {
		if (s->dims[i] < 0)
			return -1;
		p *= s->dims[i];
	}
	return p;
}

static bool in_list(const char *op, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(op, *list) == 0)
			return true;
	return false;
}

/* Output 0 has the shape of input 0. */
static const char *const same_shape_ops[] = {
	"BatchNormalization", "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid",
	"Tanh", "HardSigmoid", "HardSwish", "Erf", "Sqrt", "Gelu", "Softmax",
	"LogSoftmax", "Identity", "Dropout", "Cast", "Neg", "Abs", "Exp", "Log",
	"Elu", "Selu", "Softplus", "Softsign", "LRN",
	"InstanceNormalization", "LayerNormalization", "Reciprocal", "Floor",
	"Ceil", "Round", "Sign", "Not", NULL
};

/* Numpy-style broadcast of every input. */
static const char *const broadcast_ops[] = {
	"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean",
	"Where", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
	"And", "Or", "Xor", "Mod", NULL
};

/* ------------------------------------------------------ conv geometry */

const char *np_conv_geom_get(const np_node *conv, np_conv_geom *g)
{
	memset(g, 0, sizeof *g);
	const np_value *w = conv->n_inputs > 1 ? conv->inputs[1] : NULL;
	int nk = 0, ns = 0, nd = 0, np_ = 0;
	const int64_t *ks = np_node_attr_ints(conv, "kernel_shape", &nk);
	if (ks)
		g->nsp = nk;
	else if (w && w->init && w->init->rank >= 3)
		g->nsp = w->init->rank - 2;
	else
		return "kernel size unknown";
	if (g->nsp > NP_MAX_RANK - 2)
		return "too many spatial axes";
	const int64_t *st = np_node_attr_ints(conv, "strides", &ns);
	const int64_t *dl = np_node_attr_ints(conv, "dilations", &nd);
	const int64_t *pd = np_node_attr_ints(conv, "pads", &np_);
	if ((st && ns != g->nsp) || (dl && nd != g->nsp) ||
	    (pd && np_ != 2 * g->nsp))
		return "strides, dilations or pads do not match the kernel rank";
	for (int i = 0; i < g->nsp; i++) {
		g->kernel[i] = ks ? ks[i] : w->init->dims[2 + i];
		g->stride[i] = st ? st[i] : 1;
		g->dil[i] = dl ? dl[i] : 1;
		g->pads[i] = pd ? pd[i] : 0;
		g->pads[g->nsp + i] = pd ? pd[g->nsp + i] : 0;
		if (g->kernel[i] < 1 || g->stride[i] < 1 || g->dil[i] < 1)
			return "kernel, stride or dilation < 1";
	}
	g->group = np_node_attr_int(conv, "group", 1);
	if (g->group < 1)
		return "group < 1";
	const char *ap = np_node_attr_string(conv, "auto_pad", "NOTSET");
	if (strcmp(ap, "VALID") == 0) {
		memset(g->pads, 0, sizeof g->pads);
	} else if (strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0) {
		g->same = true;
	} else if (strcmp(ap, "NOTSET") != 0) {
		return "unknown auto_pad";
	}
	return NULL;
}

/* --------------------------------------------------------------- cost */

np_cost np_cost_conv(int64_t c_out, int64_t c_in_per_group, int64_t taps,
                     int64_t out_pixels, bool bias)
{
	int64_t w = c_out * c_in_per_group * taps;
	np_cost c = {2 * w * out_pixels, 4 * (w + (bias ? c_out : 0))};
	if (out_pixels < 0)
		c.flops = -1;
	return c;
}

np_cost np_cost_matmul(int64_t rows, int64_t k, int64_t n, bool bias)
{
	np_cost c = {2 * rows * k * n, 4 * (k * n + (bias ? n : 0))};
	if (rows < 0)
		c.flops = -1;
	return c;
}

np_cost np_cost_sum(np_cost a, np_cost b)
{
	np_cost c = {a.flops + b.flops, a.param_bytes + b.param_bytes};
	if (a.flops < 0 || b.flops < 0)
		c.flops = -1;
	return c;
}

bool np_cost_le(np_cost a, np_cost b)
{
	return a.flops >= 0 && b.flops >= 0 && a.flops <= b.flops &&
	       a.param_bytes <= b.param_bytes;
}

static int64_t init_bytes(const np_node *n)
{
	int64_t b = 0;
	for (int i = 0; i < n->n_inputs; i++)
		if (n->inputs[i] && n->inputs[i]->init)
			b += (int64_t)n->inputs[i]->init->nbytes;
	return b;
}

/* Elements per example of v's shape (dim 0 is the batch). */
static int64_t per_example(const np_shape *o)
{
	if (!o)
		return -1;
	return o->rank >= 1 ? dims_prod(o, 1, o->rank) : 1;
}

static int64_t conv_flops(const np_node *n, const np_shapes *s)
{
	const np_shape *w = in_shape(s, n, 1);
	const np_shape *y = n->n_outputs ? np_shape_get(s, n->outputs[0]) : NULL;
	if (!w || !y || y->rank < 3 || w->rank != y->rank)
		return -1;
	int64_t wn = dims_prod(w, 0, w->rank), pix = dims_prod(y, 2, y->rank);
	return wn < 0 || pix < 0 ? -1 : 2 * wn * pix;
}

static int64_t gemm_flops(const np_node *n, const np_shapes *s)
{
	const np_shape *b = in_shape(s, n, 1);
	if (!b || b->rank != 2 || b->dims[0] < 0 || b->dims[1] < 0)
		return -1;
	return 2 * b->dims[0] * b->dims[1];       /* one row per example */
}

/* MatMul: rows per example = the output's dims between the batch and
 * the last (1 for [N, n]). */
static int64_t matmul_flops(const np_node *n, const np_shapes *s)
{
	const np_shape *a = in_shape(s, n, 0);
	const np_shape *y = n->n_outputs ? np_shape_get(s, n->outputs[0]) : NULL;
	if (!a || !y || a->rank < 1 || y->rank < 1)
		return -1;
	int64_t k = a->dims[a->rank - 1], cols = y->dims[y->rank - 1];
	int64_t rows = y->rank >= 3 ? dims_prod(y, 1, y->rank - 1) : 1;
	if (k < 0 || cols < 0 || rows < 0)
		return -1;
	return 2 * rows * k * cols;
}

np_cost np_node_cost(const np_node *n, const np_shapes *s)
{
	np_cost c = {0, init_bytes(n)};
	const np_shape *y = n->n_outputs ? np_shape_get(s, n->outputs[0]) : NULL;
	if (np_node_is(n, "Conv"))
		c.flops = conv_flops(n, s);
	else if (np_node_is(n, "Gemm"))
		c.flops = gemm_flops(n, s);
	else if (np_node_is(n, "MatMul"))
		c.flops = matmul_flops(n, s);
	else if (np_node_is(n, "BatchNormalization"))
		c.flops = y ? 2 * per_example(y) : -1;
	else if (!n->domain[0] && (in_list(n->op_type, broadcast_ops) ||
	                           in_list(n->op_type, same_shape_ops)))
		c.flops = y ? per_example(y) : -1;
	if (c.flops < 0)
		c.flops = -1;      /* unknown; parameter bytes still counted */
	return c;
}

/* ------------------------------------- helpers the fold passes share */

np_status np_fold_run(np_model *m, np_pass_ctx *ctx, np_fold_fn fn,
                      np_error *err)
{
	if (ctx->fold == NP_FOLD_NONE)
		return NP_OK;
	np_pass_log refused = {0};
	for (;;) {
		np_shapes s;
		np_pass_log_free(&refused);
		if (ctx->max_folds > 0 && ctx->folds >= ctx->max_folds)
			break;
		if (np_shapes_infer(m->graph, &s, err) != NP_OK)
			return err->status;
		int r = NP_TRY_NONE;
		for (int i = 0; i < m->graph->n_nodes && r == NP_TRY_NONE; i++) {
			np_node *n = m->graph->nodes[i];
			if (!np_pass_may_fold(ctx, n))
				continue;
			r = fn(m, ctx, n, &s, &refused, err);
			if (r == NP_TRY_DONE)
				np_pass_folded(ctx, n);
		}
		np_shapes_free(&s);
		if (r == NP_TRY_ERROR) {
			np_pass_log_free(&refused);
			return err->status ? err->status : NP_ERR_INVALID;
		}
		if (r == NP_TRY_NONE)
			break;
	}
	for (int i = 0; i < refused.n; i++) {
		const np_log_entry *e = &refused.v[i];
		np_pass_log_add(ctx->log, m, e->kind, e->pass, e->node, e->into,
		                "%s", e->why ? e->why : "");
	}
	np_pass_log_free(&refused);
	return NP_OK;
}

np_node *np_fold_rebuild(np_model *m, np_node *keep, const char *op_type,
                         np_value **in, int n_in, np_value *out,
                         bool copy_attrs)
{
	np_graph *g = m->graph;
	np_graph_remove_node(g, keep);
	np_node *n = np_graph_new_node(g, op_type, keep->domain, keep->name,
	                               in, n_in, &out, 1);
	n->doc_string = keep->doc_string;
	if (copy_attrs && keep->n_attrs) {
		n->attrs = np_arena_memdup(m->arena, keep->attrs,
		                           sizeof(np_attr) * (size_t)keep->n_attrs);
		n->n_attrs = keep->n_attrs;
	}
	np_graph_insert_node(g, n);
	return n;
}

/* Carry the "folded:" and "linearized:" notes of a doc_string. */
static void carry_notes(np_model *m, np_node *kept, const char *doc)
{
	while (doc && *doc) {
		const char *end = strstr(doc, "; ");
		size_t len = end ? (size_t)(end - doc) : strlen(doc);
		if (strncmp(doc, "folded:", 7) == 0 || strncmp(doc, "linearized:", 11) == 0) {
			char *seg = np_arena_alloc(m->arena, len + 1);
			memcpy(seg, doc, len);
			np_node_doc_append(m, kept, seg);
		}
		doc = end ? end + 2 : NULL;
	}
}

void np_fold_note(np_model *m, np_pass_ctx *ctx, const char *pass,
                  np_node *kept, const np_node *folded, const char *why)
{
	char *text = np_arena_printf(m->arena, "folded: %s (%s)",
	                             folded->name ? folded->name : "?",
	                             folded->op_type);
	np_node_doc_append(m, kept, text);
	carry_notes(m, kept, folded->doc_string);
	if (why)
		np_pass_log_add(ctx->log, m, NP_LOG_FOLDED, pass, folded->name,
		                kept->name, "%s", why);
	else
		np_pass_log_add(ctx->log, m, NP_LOG_FOLDED, pass, folded->name,
		                kept->name, NULL);
	ctx->changes++;
}

const np_tensor *np_fold_tensor(const np_value *v)
{
	for (int hops = 0; v && v->producer && hops < 16; hops++) {
		const np_node *p = v->producer;
		if (!np_node_is(p, "Identity") || p->n_inputs != 1)
			return NULL;
		v = p->inputs[0];
	}
	return v && !v->is_input && np_init_floats(v) ? v->init : NULL;
}

const float *np_fold_const(const np_value *v)
{
	const np_tensor *t = np_fold_tensor(v);
	return t ? t->data : NULL;
}

np_value *np_fold_new_init(np_model *m, const char *base, int rank,
                           const int64_t *dims, np_error *err)
{
	return np_new_float_init(m, base, rank, dims, err);
}

float *np_fold_writable(np_model *m, np_node *n, int i, np_error *err)
{
	np_value *v = n->inputs[i];
	if (!v || v->is_input || !np_init_floats(v)) {
		np_fail(err, NP_ERR_INVALID, "input '%s' is not a float initializer "
		        "(node %s, op %s)", v ? v->name : "?", n->name, n->op_type);
		return NULL;
	}
	if (v->n_uses == 1 && !v->is_output)
		return v->init->data;
	np_value *c = np_fold_new_init(m, v->name, v->init->rank, v->init->dims, err);
	if (!c)
		return NULL;
	memcpy(c->init->data, v->init->data, v->init->nbytes);
	np_node_set_input(n, i, c);
	return c->init->data;
}
