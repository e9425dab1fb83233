/* cost.c - static shape propagation and the fold cost model; see cost.h. */
#include "cost.h"

#include <stdlib.h>
#include <string.h>

#include "pass.h"

/* ------------------------------------------------------------ helpers */

static void shape_unknown(np_shape *s)
{
	s->rank = -1;
	s->n_val = -1;
}

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

/* Output size of a sliding window along one axis (Conv and pools). */
static int64_t window_out(int64_t x, const np_conv_geom *g, int i, bool ceil_mode)
{
	if (x < 0)
		return -1;
	if (g->same)
		return (x + g->stride[i] - 1) / g->stride[i];
	int64_t span = x + g->pads[i] + g->pads[g->nsp + i] -
	               (g->dil[i] * (g->kernel[i] - 1) + 1);
	if (span < 0)
		return -1;
	return (ceil_mode ? (span + g->stride[i] - 1) : span) / g->stride[i] + 1;
}

/* Conv and the pools: [N, C_out, out...]. */
static void infer_window(const np_node *n, const np_shapes *s, np_shape *o)
{
	const np_shape *x = in_shape(s, n, 0);
	np_conv_geom g;
	if (!x || np_conv_geom_get(n, &g) || x->rank != g.nsp + 2)
		return;
	bool conv = np_node_is(n, "Conv");
	const np_shape *w = conv ? in_shape(s, n, 1) : NULL;
	if (conv && (!w || w->rank != x->rank))
		return;
	o->rank = x->rank;
	o->dims[0] = x->dims[0];
	o->dims[1] = conv ? w->dims[0] : x->dims[1];
	bool ceil_mode = !conv && np_node_attr_int(n, "ceil_mode", 0);
	for (int i = 0; i < g.nsp; i++)
		o->dims[2 + i] = window_out(x->dims[2 + i], &g, i, ceil_mode);
}

/* ------------------------------------------------------- shape rules */

static void infer_flatten(const np_node *n, const np_shapes *s, np_shape *o)
{
	const np_shape *x = in_shape(s, n, 0);
	if (!x)
		return;
	int64_t axis = np_node_attr_int(n, "axis", 1);
	if (axis < 0)
		axis += x->rank;
	if (axis < 0 || axis > x->rank)
		return;
	o->rank = 2;
	o->dims[0] = dims_prod(x, 0, (int)axis);
	o->dims[1] = dims_prod(x, (int)axis, x->rank);
}

static void infer_reshape(const np_node *n, const np_shapes *s, np_shape *o)
{
	const np_shape *x = in_shape(s, n, 0), *t = in_shape(s, n, 1);
	if (!x || !t || t->n_val < 0)
		return;
	bool allowzero = np_node_attr_int(n, "allowzero", 0) != 0;
	int64_t known = 1;
	int infer_at = -1;
	o->rank = t->n_val;
	for (int i = 0; i < t->n_val; i++) {
		int64_t d = t->val[i];
		if (d == 0 && !allowzero)
			d = i < x->rank ? x->dims[i] : -1;
		if (t->val[i] == -1) {
			infer_at = i;
			d = 1;
		}
		o->dims[i] = d;
		known = (d < 0 || known < 0) ? -1 : known * d;
	}
	if (infer_at >= 0) {
		int64_t total = dims_prod(x, 0, x->rank);
		o->dims[infer_at] = (known > 0 && total >= 0 && total % known == 0)
		                    ? total / known : -1;
	}
}

static void infer_gemm(const np_node *n, const np_shapes *s, np_shape *o)
{
	const np_shape *a = in_shape(s, n, 0), *b = in_shape(s, n, 1);
	if (!a || !b || a->rank != 2 || b->rank != 2)
		return;
	o->rank = 2;
	o->dims[0] = np_node_attr_int(n, "transA", 0) ? a->dims[1] : a->dims[0];
	o->dims[1] = np_node_attr_int(n, "transB", 0) ? b->dims[0] : b->dims[1];
}

/* Numpy broadcast of x into o (o->rank < 0: first operand). */
static bool broadcast_into(np_shape *o, const np_shape *x)
{
	if (o->rank < 0) {
		o->rank = x->rank;
		memcpy(o->dims, x->dims, sizeof o->dims);
		return true;
	}
	int r = o->rank > x->rank ? o->rank : x->rank;
	int64_t d[NP_MAX_RANK];
	for (int i = 0; i < r; i++) {
		int io = i - (r - o->rank), ix = i - (r - x->rank);
		int64_t a = io >= 0 ? o->dims[io] : 1, b = ix >= 0 ? x->dims[ix] : 1;
		if (a == 1 || a == b)
			d[i] = b;
		else if (b == 1)
			d[i] = a;
		else if (a < 0 || b < 0)
			d[i] = a < 0 ? b : a;    /* unknown vs known: assume known */
		else
			return false;
	}
	o->rank = r;
	memcpy(o->dims, d, sizeof d);
	return true;
}

static void infer_matmul(const np_node *n, const np_shapes *s, np_shape *o)
{
	const np_shape *a = in_shape(s, n, 0), *b = in_shape(s, n, 1);
	if (!a || !b || a->rank < 1 || b->rank < 1)
		return;
	/* Batch dims: all but the last two of each operand, broadcast. */
	np_shape ba = *a, bb = *b;
	ba.rank = a->rank > 2 ? a->rank - 2 : 0;
	bb.rank = b->rank > 2 ? b->rank - 2 : 0;
	if (!broadcast_into(&ba, &bb))
		return;
	int r = ba.rank;
	memcpy(o->dims, ba.dims, sizeof o->dims);
	if (a->rank >= 2)
		o->dims[r++] = a->dims[a->rank - 2];
	if (b->rank >= 2)
		o->dims[r++] = b->dims[b->rank - 1];
	o->rank = r;
}

static void infer_broadcast(const np_node *n, const np_shapes *s, np_shape *o)
{
	np_shape acc;
	shape_unknown(&acc);
	for (int i = 0; i < n->n_inputs; i++) {
		const np_shape *x = in_shape(s, n, i);
		if (!x || !broadcast_into(&acc, x))
			return;
	}
	*o = acc;
	o->n_val = -1;
}

static void infer_global_pool(const np_node *n, const np_shapes *s, np_shape *o)
{
	const np_shape *x = in_shape(s, n, 0);
	if (!x || x->rank < 2)
		return;
	*o = *x;
	o->n_val = -1;
	for (int i = 2; i < x->rank; i++)
		o->dims[i] = 1;
}

/* A tensor's shape, and its payload when small int64. */
static void shape_of_tensor(const np_tensor *t, np_shape *o)
{
	if (t->rank > NP_MAX_RANK)
		return;
	o->rank = t->rank;
	memcpy(o->dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
	if (t->dtype == NP_INT64 && t->rank <= 1 && t->nelem <= NP_MAX_RANK && t->data) {
		o->n_val = (int)t->nelem;
		memcpy(o->val, t->data, sizeof(int64_t) * (size_t)t->nelem);
	}
}

static void infer_constant(const np_node *n, np_shape *o)
{
	const np_attr *a = np_node_attr(n, "value");
	if (a && a->type == NP_ATTR_TENSOR && a->t)
		shape_of_tensor(a->t, o);
}

static void infer_shape_op(const np_node *n, const np_shapes *s, np_shape *o)
{
	const np_shape *x = in_shape(s, n, 0);
	if (!x)
		return;
	int64_t start = np_node_attr_int(n, "start", 0);
	int64_t end = np_node_attr_int(n, "end", x->rank);
	start = start < 0 ? start + x->rank : start;
	end = end < 0 ? end + x->rank : end;
	start = start < 0 ? 0 : start > x->rank ? x->rank : start;
	end = end < start ? start : end > x->rank ? x->rank : end;
	o->rank = 1;
	o->dims[0] = end - start;
	o->n_val = (int)(end - start);
	for (int64_t i = start; i < end; i++)
		o->val[i - start] = x->dims[i];
	for (int i = 0; i < o->n_val; i++)
		if (o->val[i] < 0)
			o->n_val = -1;
}

/* Gather on axis 0 of a known 1-D payload (shape arithmetic). */
static void infer_gather(const np_node *n, const np_shapes *s, np_shape *o)
{
	const np_shape *x = in_shape(s, n, 0), *ix = in_shape(s, n, 1);
	int64_t axis = np_node_attr_int(n, "axis", 0);
	if (!x || !ix || axis != 0 || x->rank != 1 || ix->rank > 1 || ix->n_val < 0)
		return;
	o->rank = ix->rank;
	o->dims[0] = ix->n_val;
	if (x->n_val < 0)
		return;
	o->n_val = ix->n_val;
	for (int i = 0; i < ix->n_val; i++) {
		int64_t k = ix->val[i] < 0 ? ix->val[i] + x->n_val : ix->val[i];
		if (k < 0 || k >= x->n_val) {
			o->n_val = -1;
			return;
		}
		o->val[i] = x->val[k];
	}
}

/* Axes from the attribute (opset < 13) or input 1. */
static int read_axes(const np_node *n, const np_shapes *s, int64_t *axes)
{
	int na = 0;
	const int64_t *a = np_node_attr_ints(n, "axes", &na);
	if (a) {
		memcpy(axes, a, sizeof(int64_t) * (size_t)(na < NP_MAX_RANK ? na : NP_MAX_RANK));
		return na <= NP_MAX_RANK ? na : -1;
	}
	const np_shape *t = in_shape(s, n, 1);
	if (!t || t->n_val < 0)
		return -1;
	memcpy(axes, t->val, sizeof(int64_t) * (size_t)t->n_val);
	return t->n_val;
}

static void infer_unsqueeze(const np_node *n, const np_shapes *s, np_shape *o)
{
	const np_shape *x = in_shape(s, n, 0);
	int64_t axes[NP_MAX_RANK];
	int na = read_axes(n, s, axes);
	if (!x || na < 0 || x->rank + na > NP_MAX_RANK)
		return;
	int r = x->rank + na;
	bool ins[NP_MAX_RANK] = {false};
	for (int i = 0; i < na; i++) {
		int64_t a = axes[i] < 0 ? axes[i] + r : axes[i];
		if (a < 0 || a >= r)
			return;
		ins[a] = true;
	}
	o->rank = r;
	for (int i = 0, k = 0; i < r; i++)
		o->dims[i] = ins[i] ? 1 : x->dims[k++];
	o->n_val = x->n_val;
	memcpy(o->val, x->val, sizeof o->val);
}

static void infer_squeeze(const np_node *n, const np_shapes *s, np_shape *o)
{
	const np_shape *x = in_shape(s, n, 0);
	int64_t axes[NP_MAX_RANK];
	int na = read_axes(n, s, axes);
	if (!x)
		return;
	bool drop[NP_MAX_RANK] = {false};
	for (int i = 0; i < x->rank; i++)
		drop[i] = na < 0 && x->dims[i] == 1;
	for (int i = 0; i < na; i++) {
		int64_t a = axes[i] < 0 ? axes[i] + x->rank : axes[i];
		if (a < 0 || a >= x->rank)
			return;
		drop[a] = true;
	}
	o->rank = 0;
	for (int i = 0; i < x->rank; i++)
		if (!drop[i])
			o->dims[o->rank++] = x->dims[i];
	o->n_val = x->n_val;
	memcpy(o->val, x->val, sizeof o->val);
}

static void infer_concat(const np_node *n, const np_shapes *s, np_shape *o)
{
	const np_shape *x0 = in_shape(s, n, 0);
	if (!x0)
		return;
	int64_t axis = np_node_attr_int(n, "axis", 0);
	axis = axis < 0 ? axis + x0->rank : axis;
	if (axis < 0 || axis >= x0->rank)
		return;
	np_shape acc = *x0;
	acc.dims[axis] = 0;
	acc.n_val = 0;
	for (int i = 0; i < n->n_inputs; i++) {
		const np_shape *x = in_shape(s, n, i);
		if (!x || x->rank != x0->rank)
			return;
		acc.dims[axis] = (acc.dims[axis] < 0 || x->dims[axis] < 0)
		                 ? -1 : acc.dims[axis] + x->dims[axis];
		if (acc.n_val >= 0 && x->n_val >= 0 && acc.n_val + x->n_val <= NP_MAX_RANK) {
			memcpy(acc.val + acc.n_val, x->val, sizeof(int64_t) * (size_t)x->n_val);
			acc.n_val += x->n_val;
		} else {
			acc.n_val = -1;
		}
	}
	if (x0->rank != 1)
		acc.n_val = -1;
	*o = acc;
}

static void infer_transpose(const np_node *n, const np_shapes *s, np_shape *o)
{
	const np_shape *x = in_shape(s, n, 0);
	int np_ = 0;
	const int64_t *perm = np_node_attr_ints(n, "perm", &np_);
	if (!x || (perm && np_ != x->rank))
		return;
	o->rank = x->rank;
	for (int i = 0; i < x->rank; i++) {
		int64_t p = perm ? perm[i] : x->rank - 1 - i;
		if (p < 0 || p >= x->rank) {
			o->rank = -1;
			return;
		}
		o->dims[i] = x->dims[p];
	}
}

/* Output 0's shape by op; left unknown when the op is not modelled. */
static void infer_node(const np_node *n, const np_shapes *s, np_shape *o)
{
	const char *op = n->op_type;
	if (n->domain[0] && strcmp(n->domain, "ai.onnx") != 0)
		return;
	if (!strcmp(op, "Conv") || !strcmp(op, "MaxPool") ||
	    !strcmp(op, "AveragePool") || !strcmp(op, "LpPool"))
		infer_window(n, s, o);
	else if (!strcmp(op, "GlobalAveragePool") || !strcmp(op, "GlobalMaxPool"))
		infer_global_pool(n, s, o);
	else if (!strcmp(op, "Flatten"))
		infer_flatten(n, s, o);
	else if (!strcmp(op, "Reshape"))
		infer_reshape(n, s, o);
	else if (!strcmp(op, "Gemm"))
		infer_gemm(n, s, o);
	else if (!strcmp(op, "MatMul"))
		infer_matmul(n, s, o);
	else if (in_list(op, broadcast_ops))
		infer_broadcast(n, s, o);
	else if (in_list(op, same_shape_ops)) {
		const np_shape *x = in_shape(s, n, 0);
		if (x)
			*o = *x;
		if (strcmp(op, "Identity") && strcmp(op, "Cast"))
			o->n_val = -1;
	} else if (!strcmp(op, "Constant"))
		infer_constant(n, o);
	else if (!strcmp(op, "Shape"))
		infer_shape_op(n, s, o);
	else if (!strcmp(op, "Gather"))
		infer_gather(n, s, o);
	else if (!strcmp(op, "Unsqueeze"))
		infer_unsqueeze(n, s, o);
	else if (!strcmp(op, "Squeeze"))
		infer_squeeze(n, s, o);
	else if (!strcmp(op, "Concat"))
		infer_concat(n, s, o);
	else if (!strcmp(op, "Transpose"))
		infer_transpose(n, s, o);
}

/* The declared shape; a dynamic leading dim of a graph input is the
 * batch, taken as 1. */
static void declared_shape(const np_value *v, np_shape *o)
{
	if (!v->has_shape || v->rank > NP_MAX_RANK)
		return;
	o->rank = v->rank;
	for (int i = 0; i < v->rank; i++)
		o->dims[i] = v->dims[i].value >= 0 ? v->dims[i].value : -1;
	if (v->rank >= 1 && o->dims[0] < 0)
		o->dims[0] = 1;
}

np_status np_shapes_infer(const np_graph *g, np_shapes *s, np_error *err)
{
	s->n = g->n_values;
	s->v = malloc(sizeof *s->v * (size_t)(g->n_values + 1));
	if (!s->v)
		return np_fail(err, NP_ERR_NOMEM, "out of memory for %d value shapes",
		               g->n_values);
	for (int i = 0; i < g->n_values; i++) {
		const np_value *v = g->values[i];
		np_shape *o = &s->v[i];
		shape_unknown(o);
		if (v->init)
			shape_of_tensor(v->init, o);
		else if (v->is_input)
			declared_shape(v, o);
	}
	for (int i = 0; i < g->n_nodes; i++) {
		const np_node *n = g->nodes[i];
		for (int k = 0; k < n->n_outputs; k++) {
			const np_value *v = n->outputs[k];
			if (!v || v->id < 0 || v->id >= s->n)
				continue;
			np_shape *o = &s->v[v->id];
			shape_unknown(o);
			if (k == 0 || np_node_is(n, "MaxPool") || np_node_is(n, "Dropout"))
				infer_node(n, s, o);
			if (o->rank < 0)
				declared_shape(v, o);
		}
	}
	return NP_OK;
}

void np_shapes_free(np_shapes *s)
{
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

const np_shape *np_shape_get(const np_shapes *s, const np_value *v)
{
	if (!v || v->id < 0 || v->id >= s->n || s->v[v->id].rank < 0)
		return NULL;
	return &s->v[v->id];
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
