/* binary.c - elementwise ops of two inputs with numpy broadcasting: Add,
 * Sub, Mul, Div, Pow, and PRelu (slope broadcast to X).
 *
 * Float Add/Sub/Mul/Div run as a oneDNN binary primitive when one side
 * already has the output's shape (oneDNN broadcasts src1 only; Add and Mul
 * may swap their operands).  Everything else is an OpenMP loop over the
 * output: two-sided broadcasting, Pow, PRelu, and int64, which exporters
 * use for shape arithmetic.  Backward computes each input's term over the
 * output shape and sums it over that input's broadcast axes. */
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define R NP_RT_MAX_RANK
/* Elements per OpenMP task along the innermost axis. */
#define CHUNK 4096
/* np_rt_scratch slot for backward terms before their reduction. */
#define BIN_SCRATCH 0

typedef enum bin_kind {
	BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV, BIN_POW, BIN_PRELU, BIN_N
} bin_kind;

static const char *const bin_names[BIN_N] = {
	"Add", "Sub", "Mul", "Div", "Pow", "PRelu"
};

/* The output's axes, each operand's element strides along them (0 where
 * it is broadcast), with size-1 axes dropped and adjacent axes merged where
 * every operand allows, so inner loops run as long as possible. */
typedef struct bin_iter {
	int rank;
	int64_t dims[R];
	int64_t str[2][R];
} bin_iter;

typedef struct bin_state {
	bin_kind kind;
	bin_iter it;
	/* oneDNN binary, or NULL for the loops. */
	dnnl_primitive_t prim;
	dnnl_memory_t src0, src1, dst;
	/* Pow with an integer exponent: the exponent as float. */
	float *exponent;
} bin_state;

static bin_kind bin_kind_of(const np_xnode *x)
{
	for (int k = 0; k < BIN_N; k++)
		if (strcmp(x->op->name, bin_names[k]) == 0)
			return (bin_kind)k;
	return BIN_N;
}

/* ------------------------------------------------------------- shapes */

static void dense_strides(const int64_t *dims, int rank, int64_t *str)
{
	int64_t s = 1;
	for (int i = rank - 1; i >= 0; i--) {
		str[i] = s;
		s *= dims[i];
	}
}

/* t's strides along the output's rank axes, 0 where t is broadcast. */
static void bcast_strides(const np_rtensor *t, const np_rtensor *out,
                          int64_t *str)
{
	int64_t own[R];
	int pad = out->rank - t->rank;
	dense_strides(t->dims, t->rank, own);
	for (int i = 0; i < out->rank; i++) {
		int j = i - pad;
		str[i] = j >= 0 && t->dims[j] != 1 ? own[j] : 0;
	}
}

static bool bin_can_merge(const bin_iter *it, int prev, int64_t d,
                          const int64_t *s)
{
	for (int k = 0; k < 2; k++)
		if (it->str[k][prev] != s[k] * d)
			return false;
	return true;
}

static void bin_iter_init(bin_iter *it, const np_rtensor *a,
                          const np_rtensor *b, const np_rtensor *out)
{
	int64_t str[2][R];
	bcast_strides(a, out, str[0]);
	bcast_strides(b, out, str[1]);
	it->rank = 0;
	for (int i = 0; i < out->rank; i++) {
		int64_t d = out->dims[i], s[2] = {str[0][i], str[1][i]};
		if (d == 1)
			continue;
		int p = it->rank - 1;
		if (p >= 0 && bin_can_merge(it, p, d, s)) {
			it->dims[p] *= d;
			it->str[0][p] = s[0];
			it->str[1][p] = s[1];
			continue;
		}
		it->dims[++p] = d;
		it->str[0][p] = s[0];
		it->str[1][p] = s[1];
		it->rank = p + 1;
	}
	if (it->rank == 0) {
		it->rank = 1;
		it->dims[0] = 1;
		it->str[0][0] = it->str[1][0] = 0;
	}
}

/* Work items: every row (all axes but the last) cut into CHUNK pieces, so
 * that a single long row still spreads over the threads. */
typedef struct bin_task {
	int64_t off[2], out, n;
} bin_task;

static int64_t bin_n_tasks(const bin_iter *it, int64_t *chunks)
{
	int64_t rows = 1, len = it->dims[it->rank - 1];
	for (int i = 0; i < it->rank - 1; i++)
		rows *= it->dims[i];
	*chunks = (len + CHUNK - 1) / CHUNK;
	return rows * *chunks;
}

static bin_task bin_task_at(const bin_iter *it, int64_t chunks, int64_t i)
{
	int last = it->rank - 1;
	int64_t len = it->dims[last], row = i / chunks;
	int64_t start = (i % chunks) * CHUNK;
	bin_task t = {{0, 0}, row * len + start, 0};
	t.n = len - start < CHUNK ? len - start : CHUNK;
	for (int ax = last - 1; ax >= 0; ax--) {
		int64_t idx = row % it->dims[ax];
		row /= it->dims[ax];
		t.off[0] += idx * it->str[0][ax];
		t.off[1] += idx * it->str[1][ax];
	}
	t.off[0] += start * it->str[0][last];
	t.off[1] += start * it->str[1][last];
	return t;
}

static np_status bin_out_shape(const np_xnode *x, np_error *err)
{
	const np_rtensor *a = x->in[0], *b = x->in[1];
	np_rtensor *out = x->out[0];
	if (np_rt_broadcast_shape(x, a, b, out, err))
		return err->status;
	if (bin_kind_of(x) != BIN_PRELU)
		return NP_OK;
	/* The slope broadcasts to X, never X to the slope. */
	if (out->rank != a->rank ||
	    memcmp(out->dims, a->dims, sizeof(int64_t) * a->rank) != 0)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "slope does not broadcast to the input's shape");
	return NP_OK;
}

static bool bin_int_ok(bin_kind k, const np_rtensor *a, const np_rtensor *b)
{
	return k <= BIN_DIV && a->dtype == NP_INT64 && b->dtype == NP_INT64;
}

static bool bin_float_ok(bin_kind k, const np_rtensor *a,
                         const np_rtensor *b)
{
	if (a->dtype != NP_FLOAT)
		return false;
	if (k == BIN_POW)
		return b->dtype == NP_FLOAT || b->dtype == NP_INT32 ||
		       b->dtype == NP_INT64;
	return b->dtype == NP_FLOAT;
}

static np_status bin_infer(np_xnode *x, np_error *err)
{
	const np_rtensor *a = x->in[0], *b = x->n_in > 1 ? x->in[1] : NULL;
	bin_kind k = bin_kind_of(x);
	if (!a || !b)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "two inputs are required");
	if (!bin_float_ok(k, a, b) && !bin_int_ok(k, a, b))
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "input types %s and %s are not supported",
		                       np_dtype_name(a->dtype),
		                       np_dtype_name(b->dtype));
	if (bin_out_shape(x, err))
		return err->status;
	x->out[0]->dtype = a->dtype;
	return NP_OK;
}

/* ----------------------------------------------------------- prepare */

static bool same_dims(const np_rtensor *t, const np_rtensor *out)
{
	return t->nelem == out->nelem;
}

/* t's dims padded with leading 1s to the output's rank (at least 1). */
static void padded_md(dnnl_memory_desc_t *md, const np_rtensor *t, int rank)
{
	dnnl_dims_t dims, str;
	int pad = rank - t->rank;
	for (int i = 0; i < rank; i++)
		dims[i] = i < pad ? 1 : t->dims[i - pad];
	dense_strides(dims, rank, str);
	dnnl_memory_desc_init_by_strides(md, rank, dims, np_rt_float_type(t), str);
}

static dnnl_alg_kind_t bin_alg(bin_kind k)
{
	static const dnnl_alg_kind_t algs[] = {
		dnnl_binary_add, dnnl_binary_sub, dnnl_binary_mul, dnnl_binary_div
	};
	return algs[k];
}

static np_status bin_make_dnnl(np_xnode *x, np_rt *rt, bin_state *s,
                               const np_rtensor *src0, const np_rtensor *src1,
                               np_error *err)
{
	const np_rtensor *out = x->out[0];
	int rank = out->rank > 0 ? out->rank : 1;
	dnnl_memory_desc_t md0, md1;
	dnnl_binary_desc_t d;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_engine_t eng = np_rt_engine(rt);
	padded_md(&md0, src0, rank);
	padded_md(&md1, src1, rank);
	np_status st = np_rt_dnnl(dnnl_binary_desc_init(&d, bin_alg(s->kind),
	                                                &md0, &md1, &md0),
	                          x, "binary descriptor", err);
	if (!st)
		st = np_rt_dnnl(np_rt_pd_create(rt, x, &pd, &d, NULL, NULL),
		                x, "binary primitive descriptor", err);
	if (!st)
		st = np_rt_dnnl(dnnl_primitive_create(&s->prim, pd), x,
		                "binary primitive", err);
	dnnl_primitive_desc_destroy(pd);
	if (st)
		return st;
	if (np_rt_dnnl(dnnl_memory_create(&s->src0, &md0, eng, src0->data),
	               x, "memory", err) ||
	    np_rt_dnnl(dnnl_memory_create(&s->src1, &md1, eng, src1->data),
	               x, "memory", err) ||
	    np_rt_dnnl(dnnl_memory_create(&s->dst, &md0, eng, out->data),
	               x, "memory", err))
		return err->status;
	return NP_OK;
}

/* oneDNN broadcasts src1 only: use it when one side has the full shape
 * (either side for the commutative Add and Mul). */
static np_status bin_try_dnnl(np_xnode *x, np_rt *rt, bin_state *s,
                              np_error *err)
{
	const np_rtensor *a = x->in[0], *b = x->in[1], *out = x->out[0];
	if (a->dtype != NP_FLOAT || s->kind > BIN_DIV || out->nelem == 0)
		return NP_OK;
	/* Written over b in place (bin_inplace): b is src0.  b + a is a + b
	 * to the bit. */
	if (out->in_place && out->data == b->data)
		return bin_make_dnnl(x, rt, s, b, a, err);
	if (same_dims(a, out))
		return bin_make_dnnl(x, rt, s, a, b, err);
	if (same_dims(b, out) && (s->kind == BIN_ADD || s->kind == BIN_MUL))
		return bin_make_dnnl(x, rt, s, b, a, err);
	return NP_OK;
}

static np_status bin_prepare(np_xnode *x, np_rt *rt, np_error *err)
{
	bin_state *s = calloc(1, sizeof *s);
	if (!s)
		return np_rt_fail_node(err, NP_ERR_NOMEM, x, "out of memory");
	x->state = s;
	s->kind = bin_kind_of(x);
	bin_iter_init(&s->it, x->in[0], x->in[1], x->out[0]);
	if (s->kind == BIN_POW && x->in[1]->dtype != NP_FLOAT) {
		s->exponent = malloc(sizeof(float) * (x->in[1]->nelem + 1));
		if (!s->exponent)
			return np_rt_fail_node(err, NP_ERR_NOMEM, x,
			                       "out of memory");
	}
	return bin_try_dnnl(x, rt, s, err);
}

static void bin_destroy(np_xnode *x)
{
	bin_state *s = x->state;
	if (!s)
		return;
	dnnl_primitive_destroy(s->prim);
	dnnl_memory_destroy(s->src0);
	dnnl_memory_destroy(s->src1);
	dnnl_memory_destroy(s->dst);
	free(s->exponent);
	free(s);
	x->state = NULL;
}

/* ----------------------------------------------------------- forward */

static void row_f32(bin_kind k, const float *a, int64_t sa, const float *b,
                    int64_t sb, float *y, int64_t n)
{
	int64_t i;
	switch (k) {
	case BIN_ADD: for (i = 0; i < n; i++) y[i] = a[i * sa] + b[i * sb]; break;
	case BIN_SUB: for (i = 0; i < n; i++) y[i] = a[i * sa] - b[i * sb]; break;
	case BIN_MUL: for (i = 0; i < n; i++) y[i] = a[i * sa] * b[i * sb]; break;
	case BIN_DIV: for (i = 0; i < n; i++) y[i] = a[i * sa] / b[i * sb]; break;
	case BIN_POW:
		for (i = 0; i < n; i++) y[i] = powf(a[i * sa], b[i * sb]);
		break;
	case BIN_PRELU:
		for (i = 0; i < n; i++) {
			float v = a[i * sa];
			y[i] = v < 0.0f ? v * b[i * sb] : v;
		}
		break;
	case BIN_N: break;
	}
}

static void row_i64(bin_kind k, const int64_t *a, int64_t sa,
                    const int64_t *b, int64_t sb, int64_t *y, int64_t n)
{
	int64_t i;
	switch (k) {
	case BIN_ADD: for (i = 0; i < n; i++) y[i] = a[i * sa] + b[i * sb]; break;
	case BIN_SUB: for (i = 0; i < n; i++) y[i] = a[i * sa] - b[i * sb]; break;
	case BIN_MUL: for (i = 0; i < n; i++) y[i] = a[i * sa] * b[i * sb]; break;
	case BIN_DIV: for (i = 0; i < n; i++) y[i] = a[i * sa] / b[i * sb]; break;
	default: break;
	}
}

static void loop_f32(bin_kind k, const bin_iter *it, const float *a,
                     const float *b, float *y)
{
	int last = it->rank - 1;
	int64_t chunks, n = bin_n_tasks(it, &chunks);
	#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++) {
		bin_task t = bin_task_at(it, chunks, i);
		row_f32(k, a + t.off[0], it->str[0][last], b + t.off[1],
		        it->str[1][last], y + t.out, t.n);
	}
}

static void loop_i64(bin_kind k, const bin_iter *it, const int64_t *a,
                     const int64_t *b, int64_t *y)
{
	int last = it->rank - 1;
	int64_t chunks, n = bin_n_tasks(it, &chunks);
	#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++) {
		bin_task t = bin_task_at(it, chunks, i);
		row_i64(k, a + t.off[0], it->str[0][last], b + t.off[1],
		        it->str[1][last], y + t.out, t.n);
	}
}

static bool has_zero(const int64_t *v, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		if (v[i] == 0)
			return true;
	return false;
}

/* Pow's integer exponent converted, for the float loops. */
static const float *pow_exponent(const np_xnode *x, const bin_state *s)
{
	const np_rtensor *b = x->in[1];
	if (!s->exponent)
		return b->data;
	for (int64_t i = 0; i < b->nelem; i++)
		s->exponent[i] = b->dtype == NP_INT32 ?
		                 (float)((const int32_t *)b->data)[i] :
		                 (float)((const int64_t *)b->data)[i];
	return s->exponent;
}

static np_status bin_forward(np_xnode *x, np_rt *rt, bool training,
                             np_error *err)
{
	bin_state *s = x->state;
	const np_rtensor *a = x->in[0], *b = x->in[1], *out = x->out[0];
	(void)training;
	if (out->nelem == 0)
		return NP_OK;
	if (s->prim) {
		dnnl_exec_arg_t args[] = {
			{DNNL_ARG_SRC_0, s->src0}, {DNNL_ARG_SRC_1, s->src1},
			{DNNL_ARG_DST, s->dst},
		};
		return np_rt_dnnl(dnnl_primitive_execute(s->prim,
		                                         np_rt_stream(rt), 3,
		                                         args),
		                  x, "binary forward", err);
	}
	if (a->dtype == NP_FLOAT) {
		loop_f32(s->kind, &s->it, a->data, pow_exponent(x, s),
		         out->data);
		return NP_OK;
	}
	if (s->kind == BIN_DIV && has_zero(b->data, b->nelem))
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "integer division by zero");
	loop_i64(s->kind, &s->it, a->data, b->data, out->data);
	return NP_OK;
}

/* ---------------------------------------------------------- backward */

/* d(out)/d(operand w) times dy, for n elements of one row. */
static void row_term(bin_kind k, int w, const float *a, int64_t sa,
                     const float *b, int64_t sb, const float *dy, float *t,
                     int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		float av = a[i * sa], bv = b[i * sb], g = dy[i];
		switch (k) {
		case BIN_ADD: t[i] = g; break;
		case BIN_SUB: t[i] = w ? -g : g; break;
		case BIN_MUL: t[i] = g * (w ? av : bv); break;
		case BIN_DIV: t[i] = w ? -g * av / (bv * bv) : g / bv; break;
		case BIN_POW:
			t[i] = w ? g * powf(av, bv) * logf(av) :
			           g * bv * powf(av, bv - 1.0f);
			break;
		case BIN_PRELU:
			t[i] = w ? (av < 0.0f ? g * av : 0.0f) :
			           (av < 0.0f ? g * bv : g);
			break;
		case BIN_N: break;
		}
	}
}

static void loop_term(bin_kind k, int w, const bin_iter *it, const float *a,
                      const float *b, const float *dy, float *t)
{
	int last = it->rank - 1;
	int64_t chunks, n = bin_n_tasks(it, &chunks);
	#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++) {
		bin_task tk = bin_task_at(it, chunks, i);
		row_term(k, w, a + tk.off[0], it->str[0][last], b + tk.off[1],
		         it->str[1][last], dy + tk.out, t + tk.out, tk.n);
	}
}

/* The output's axes split into those operand w keeps and those it is
 * broadcast along (which backward sums over). */
typedef struct red_axes {
	int nk, nr;
	int64_t kdim[R], kstr[R], rdim[R], rstr[R];
	int64_t rinner;              /* product of rdim but the last */
} red_axes;

static void red_axes_init(red_axes *ra, const bin_iter *it, int w)
{
	int64_t ostr[R];
	dense_strides(it->dims, it->rank, ostr);
	ra->nk = ra->nr = 0;
	ra->rinner = 1;
	for (int i = 0; i < it->rank; i++) {
		if (it->str[w][i]) {
			ra->kdim[ra->nk] = it->dims[i];
			ra->kstr[ra->nk++] = ostr[i];
		} else {
			ra->rdim[ra->nr] = it->dims[i];
			ra->rstr[ra->nr++] = ostr[i];
		}
	}
	for (int i = 0; i + 1 < ra->nr; i++)
		ra->rinner *= ra->rdim[i];
}

/* Sum of src over the broadcast axes, at output offset base. */
static float red_sum_at(const red_axes *ra, const float *src, int64_t base)
{
	int l = ra->nr - 1;
	float sum = 0.0f;
	for (int64_t r = 0; r < ra->rinner; r++) {
		int64_t off = base, rem = r;
		for (int ax = l - 1; ax >= 0; ax--) {
			off += (rem % ra->rdim[ax]) * ra->rstr[ax];
			rem /= ra->rdim[ax];
		}
		for (int64_t j = 0; j < ra->rdim[l]; j++)
			sum += src[off + j * ra->rstr[l]];
	}
	return sum;
}

static float flat_sum(const float *src, int64_t n)
{
	float sum = 0.0f;
	#pragma omp parallel for reduction(+:sum) schedule(static)
	for (int64_t i = 0; i < n; i++)
		sum += src[i];
	return sum;
}

/* dst (operand w's shape) = src (output's shape) summed over the axes
 * where w is broadcast.  Parallel over dst elements: no write races. */
static void reduce_to(const bin_iter *it, int w, const float *src,
                      float *dst, int64_t dst_n, int64_t src_n)
{
	red_axes ra;
	red_axes_init(&ra, it, w);
	if (ra.nk == 0) {
		dst[0] = flat_sum(src, src_n);
		return;
	}
	#pragma omp parallel for schedule(static)
	for (int64_t t = 0; t < dst_n; t++) {
		int64_t base = 0, rem = t;
		for (int k = ra.nk - 1; k >= 0; k--) {
			base += (rem % ra.kdim[k]) * ra.kstr[k];
			rem /= ra.kdim[k];
		}
		dst[t] = red_sum_at(&ra, src, base);
	}
}

static np_status bin_grad_of(np_xnode *x, np_rt *rt, const bin_state *s, int w,
                             const float *b, np_error *err)
{
	np_rtensor *in = x->in[w], *out = x->out[0];
	float *g = np_rt_grad_target(rt, in);
	if (!g)
		return np_rt_grad_oom(err, x, in);
	bool full = same_dims(in, out);
	/* Add's terms and Sub's first are dy itself: no term buffer. */
	bool is_dy = s->kind == BIN_ADD || (s->kind == BIN_SUB && w == 0);
	if (is_dy && full) {
		memcpy(g, out->grad, np_rt_elem_bytes(out) * (size_t)out->nelem);
	} else if (is_dy) {
		reduce_to(&s->it, w, out->grad, g, in->nelem, out->nelem);
	} else {
		float *t = full ? g : np_rt_scratch(rt, BIN_SCRATCH,
		                                    sizeof(float) * out->nelem);
		if (!t)
			return np_rt_grad_oom(err, x, in);
		loop_term(s->kind, w, &s->it, x->in[0]->data, b, out->grad, t);
		if (!full)
			reduce_to(&s->it, w, t, g, in->nelem, out->nelem);
	}
	np_rt_grad_done(rt, in, g);
	return NP_OK;
}

static np_status bin_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	bin_state *s = x->state;
	if (x->out[0]->nelem == 0)
		return NP_OK;
	const float *b = pow_exponent(x, s);
	for (int w = 0; w < 2; w++)
		if (x->in[w]->needs_grad && bin_grad_of(x, rt, s, w, b, err))
			return err->status;
	return NP_OK;
}

/* bf16 values (rt.h, PRECISION): an Add of two operands of the
 * output's shape, which oneDNN computes forward, and whose backward
 * copies dy (or adds it: np_rt_grad_done). */
static bool bin_bf16_values(const np_xnode *x)
{
	const np_rtensor *a = x->in[0], *b = x->in[1], *out = x->out[0];
	return bin_kind_of(x) == BIN_ADD && a->dtype == NP_FLOAT &&
	       b->dtype == NP_FLOAT && same_dims(a, out) && same_dims(b, out) &&
	       out->nelem > 0;
}

/* Add's backward reads no operand (its terms are dy), and oneDNN's
 * binary writes dst over src0: the output may take the buffer of either
 * operand of its shape (rt.h, PLANS), which bin_try_dnnl then makes src0.
 * Sub's loops still load the first operand, so it stays out. */
static unsigned bin_inplace(const np_xnode *x)
{
	const np_rtensor *a = x->in[0], *b = x->in[1], *out = x->out[0];
	if (bin_kind_of(x) != BIN_ADD || a->dtype != NP_FLOAT || out->nelem == 0)
		return 0;
	return (same_dims(a, out) ? 1u : 0u) | (same_dims(b, out) ? 2u : 0u);
}

/* Backward reads the operands and dy, never y: out_overwritable. */
#define BIN_OP(sym, op_name, op_flags, trained, trained_nonscalar) \
	const np_op sym = { .name = op_name, .infer = bin_infer, \
	                    .prepare = bin_prepare, .forward = bin_forward, \
	                    .backward = bin_backward, .destroy = bin_destroy, \
	                    .layout = NP_LAYOUT_FLAT, .flags = op_flags, \
	                    .bf16_values = bin_bf16_values, \
	                    NP_OP_NO_WEIGHT, .trainable = trained, \
	                    .trainable_nonscalar = trained_nonscalar, \
	                    .flops = np_flops_per_element, \
	                    .inplace = bin_inplace, .out_overwritable = true };

/* Add: a tensor operand is a bias (a MatMul's, LayerNorm's shift in the
 * decomposed pattern of opsets < 17, a position embedding).  Mul: a
 * tensor operand is a learned scale (LayerNorm's weight in that pattern,
 * a layer scale); a scalar is a constant of the function (GELU's 0.5,
 * attention's 1/sqrt(d)).  Div, Pow and Sub of an initializer are
 * constants (normalisations, exponents). */
BIN_OP(np_op_add, "Add", NP_OPF_ARITH, 0, 0x3)
BIN_OP(np_op_sub, "Sub", NP_OPF_ARITH, 0, 0)
BIN_OP(np_op_mul, "Mul", NP_OPF_ARITH, 0, 0x3)
BIN_OP(np_op_div, "Div", NP_OPF_ARITH, 0, 0)
BIN_OP(np_op_pow, "Pow", 0, 0, 0)
BIN_OP(np_op_prelu, "PRelu", NP_OPF_RECTIFIER, 0x2, 0)    /* the slope */
