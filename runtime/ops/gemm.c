/* gemm.c - Gemm and MatMul on oneDNN's matmul primitive, forward and
 * backward.
 *
 * Every product, backward ones included, is a matmul built once in
 * prepare.  Transposes are never copied: a transposed operand is the same
 * buffer under a memory descriptor with its last two strides swapped, which
 * oneDNN's fast (brgemm) kernels accept for src and weights; dst is always
 * dense.  Gemm's C is fused as the matmul bias when it is a row vector and
 * alpha = beta = 1 (the Linear layer case; other bias shapes only have a
 * slow reference kernel), otherwise added in a loop.
 *
 * Under bf16 (np_rt_bf16) each f32 operand tensor of a node -- A, B and
 * dY -- is converted once per use into a dense bf16 copy of its own
 * layout (bf_copy: a plain 1-D f32 -> bf16 reorder), and every product
 * reads the copy through the same view (transposed, reshaped) it would
 * read the f32 buffer through.  So a weight is converted once per step,
 * not once per product, and no transposing reorder is run: before, each
 * product made its own dense copies, W twice (once transposed) and X and
 * dY twice each; on mlp4 those reorders took longer than the bf16
 * matmuls themselves (ONEDNN_VERBOSE; docs/performance.md).  dst, bias
 * and every buffer the rest of the runtime sees stay f32 (fp32 master
 * weights). */
#include "ops.h"

#include <stdlib.h>
#include <string.h>

#define R NP_RT_MAX_RANK
/* np_rt_scratch slot for a MatMul gradient before its batch reduction. */
#define MM_SCRATCH 0

/* The dense bf16 copy of one f32 operand tensor (n elements) and the
 * reorder that fills it. */
typedef struct bf_copy {
	dnnl_primitive_t fill;
	dnnl_memory_t f32, bf;
	void *buf;
} bf_copy;

/* A matrix (or batch of matrices) operand: dims, element strides, and the
 * buffer (NULL: bound at execution, e.g. gradient targets); under bf16,
 * the copy of the tensor it views (NULL: read as f32). */
typedef struct mat {
	int nd;
	dnnl_dims_t dims, str;
	void *data;
	const bf_copy *bf;
} mat;

/* One matmul bound to its buffers: dst = scale * src x wei (+ bias). */
typedef struct mm {
	dnnl_primitive_t prim;
	dnnl_memory_t src, wei, bias, dst;
} mm;

static mat mat_dense(int nd, const int64_t *dims, void *data)
{
	mat m = {.nd = nd, .data = data, .bf = NULL};
	int64_t s = 1;
	for (int i = nd - 1; i >= 0; i--) {
		m.dims[i] = dims[i];
		m.str[i] = s;
		s *= dims[i];
	}
	return m;
}

static mat mat_t(mat m)
{
	int r = m.nd - 1, c = m.nd - 2;
	int64_t d = m.dims[r], s = m.str[r];
	m.dims[r] = m.dims[c];
	m.str[r] = m.str[c];
	m.dims[c] = d;
	m.str[c] = s;
	return m;
}

/* m's memory: its f32 buffer, or under bf16 its tensor's copy, through
 * m's dims and strides; *md its descriptor. */
static np_status mm_mem(const np_xnode *x, np_rt *rt, const mat *m,
                        dnnl_memory_t *mem, dnnl_memory_desc_t *md,
                        np_error *err)
{
	if (np_rt_dnnl(dnnl_memory_desc_init_by_strides(md, m->nd, m->dims,
	                                                m->bf ? dnnl_bf16 : dnnl_f32,
	                                                m->str),
	               x, "matmul memory descriptor", err))
		return err->status;
	return np_rt_dnnl(dnnl_memory_create(mem, md, np_rt_engine(rt),
	                                     m->bf ? m->bf->buf : m->data),
	                  x, "matmul memory", err);
}

/* c: a bf16 copy of the n floats at data. */
static np_status bf_copy_build(const np_xnode *x, np_rt *rt, bf_copy *c,
                               int64_t n, void *data, np_error *err)
{
	dnnl_dims_t d = {n};
	dnnl_memory_desc_t f32, bf;
	dnnl_memory_desc_init_by_tag(&f32, 1, d, dnnl_f32, dnnl_a);
	dnnl_memory_desc_init_by_tag(&bf, 1, d, dnnl_bf16, dnnl_a);
	c->buf = aligned_alloc(64, ((size_t)n * 2 + 63) / 64 * 64);
	if (!c->buf)
		return np_rt_fail_node(err, NP_ERR_NOMEM, x, "out of memory");
	if (np_rt_dnnl(dnnl_memory_create(&c->f32, &f32, np_rt_engine(rt), data),
	               x, "bf16 memory", err) ||
	    np_rt_dnnl(dnnl_memory_create(&c->bf, &bf, np_rt_engine(rt), c->buf),
	               x, "bf16 memory", err) ||
	    np_rt_dnnl(np_rt_reorder_make(np_rt_engine(rt), &f32, &bf, &c->fill),
	               x, "bf16 reorder", err))
		return err->status;
	return NP_OK;
}

/* The copy refreshed from its f32 tensor; nothing for one not built. */
static np_status bf_copy_fill(const np_xnode *x, np_rt *rt, const bf_copy *c,
                              np_error *err)
{
	if (!c->fill)
		return NP_OK;
	return np_rt_dnnl(np_rt_reorder_run(c->fill, c->f32, c->bf,
	                                    np_rt_stream(rt)),
	                  x, "bf16 reorder", err);
}

static void bf_copy_free(bf_copy *c)
{
	dnnl_primitive_destroy(c->fill);
	dnnl_memory_destroy(c->f32);
	dnnl_memory_destroy(c->bf);
	free(c->buf);
	memset(c, 0, sizeof *c);
}

static np_status mm_primitive(const np_xnode *x, np_rt *rt, mm *p,
                              const dnnl_matmul_desc_t *d, float scale,
                              np_error *err)
{
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t pd = NULL;
	np_status st = np_rt_dnnl(dnnl_primitive_attr_create(&attr), x,
	                          "matmul attributes", err);
	if (!st && scale != 1.0f)
		st = np_rt_dnnl(dnnl_primitive_attr_set_output_scales(attr, 1, 0,
		                                                      &scale),
		                x, "matmul output scale", err);
	if (!st)
		st = np_rt_dnnl(dnnl_primitive_desc_create(&pd, d, attr,
		                                           np_rt_engine(rt), NULL),
		                x, "matmul primitive descriptor", err);
	if (!st)
		st = np_rt_dnnl(dnnl_primitive_create(&p->prim, pd), x,
		                "matmul primitive", err);
	dnnl_primitive_desc_destroy(pd);
	dnnl_primitive_attr_destroy(attr);
	return st;
}

static np_status mm_build(const np_xnode *x, np_rt *rt, mm *p,
                          const mat *src, const mat *wei, const mat *bias,
                          const mat *dst, float scale, np_error *err)
{
	dnnl_memory_desc_t ms, mw, mb, md;
	dnnl_matmul_desc_t d;
	if (mm_mem(x, rt, src, &p->src, &ms, err) ||
	    mm_mem(x, rt, wei, &p->wei, &mw, err) ||
	    (bias && mm_mem(x, rt, bias, &p->bias, &mb, err)) ||
	    mm_mem(x, rt, dst, &p->dst, &md, err))
		return err->status;
	if (np_rt_dnnl(dnnl_matmul_desc_init(&d, &ms, &mw, bias ? &mb : NULL,
	                                     &md), x, "matmul descriptor", err) ||
	    mm_primitive(x, rt, p, &d, scale, err))
		return err->status;
	return NP_OK;
}

static np_status mm_run(const np_xnode *x, np_rt *rt, const mm *p,
                        np_error *err)
{
	dnnl_exec_arg_t args[] = {
		{DNNL_ARG_SRC, p->src}, {DNNL_ARG_WEIGHTS, p->wei},
		{DNNL_ARG_DST, p->dst}, {DNNL_ARG_BIAS, p->bias},
	};
	return np_rt_dnnl(dnnl_primitive_execute(p->prim, np_rt_stream(rt),
	                                         p->bias ? 4 : 3, args),
	                  x, "matmul", err);
}

static void mm_free(mm *p)
{
	dnnl_primitive_destroy(p->prim);
	dnnl_memory_destroy(p->src);
	dnnl_memory_destroy(p->wei);
	dnnl_memory_destroy(p->bias);
	dnnl_memory_destroy(p->dst);
	memset(p, 0, sizeof *p);
}

/* A gradient product written straight into the input's gradient. */
static np_status mm_grad(np_xnode *x, np_rt *rt, const mm *p, np_rtensor *in,
                         np_error *err)
{
	float *g = np_rt_grad_target(rt, in);
	if (!g)
		return np_rt_grad_oom(err, x, in);
	dnnl_memory_set_data_handle(p->dst, g);
	np_status st = mm_run(x, rt, p, err);
	np_rt_grad_done(rt, in, g);
	return st;
}

/* Operand copies of a node under bf16: A, B and (training) dY. */
enum { CP_A, CP_B, CP_DY, CP_N };

static np_status bf_copies_build(const np_xnode *x, np_rt *rt, bf_copy *cp,
                                 np_error *err)
{
	if (!np_rt_bf16(rt))
		return NP_OK;
	const np_rtensor *y = x->out[0];
	if (bf_copy_build(x, rt, &cp[CP_A], x->in[0]->nelem, x->in[0]->data, err) ||
	    bf_copy_build(x, rt, &cp[CP_B], x->in[1]->nelem, x->in[1]->data, err) ||
	    (y->grad && bf_copy_build(x, rt, &cp[CP_DY], y->nelem, y->grad, err)))
		return err->status;
	return NP_OK;
}

/* Before a forward product: A's and B's copies refreshed. */
static np_status bf_copies_fill_ab(const np_xnode *x, np_rt *rt,
                                   const bf_copy *cp, np_error *err)
{
	if (bf_copy_fill(x, rt, &cp[CP_A], err) ||
	    bf_copy_fill(x, rt, &cp[CP_B], err))
		return err->status;
	return NP_OK;
}

static void bf_copies_free(bf_copy *cp)
{
	for (int i = 0; i < CP_N; i++)
		bf_copy_free(&cp[i]);
}

/* m reading the copy c when there is one. */
static mat mat_bf(mat m, const bf_copy *c)
{
	m.bf = c->buf ? c : NULL;
	return m;
}

static np_status alloc_state(np_xnode *x, size_t size, np_error *err)
{
	x->state = calloc(1, size);
	if (!x->state)
		return np_rt_fail_node(err, NP_ERR_NOMEM, x, "out of memory");
	return NP_OK;
}

/* =============================================================== Gemm */

typedef struct gemm_state {
	mm fwd, da, db;
	bf_copy cp[CP_N];
	float alpha, beta;
	int64_t m, n, cm, cn;        /* output and C (padded to 2D) dims */
	bool add_c;                  /* C added after the product */
} gemm_state;

typedef struct gemm_dims {
	int64_t m, k, n;
	bool ta, tb;
} gemm_dims;

static gemm_dims gemm_dims_of(const np_xnode *x)
{
	gemm_dims g;
	const int64_t *a = x->in[0]->dims, *b = x->in[1]->dims;
	g.ta = np_node_attr_int(x->node, "transA", 0) != 0;
	g.tb = np_node_attr_int(x->node, "transB", 0) != 0;
	g.m = a[g.ta ? 1 : 0];
	g.k = a[g.ta ? 0 : 1];
	g.n = b[g.tb ? 0 : 1];
	return g;
}

static const np_rtensor *gemm_c(const np_xnode *x)
{
	return x->n_in > 2 ? x->in[2] : NULL;
}

/* C's dims padded to 2D. */
static void gemm_c_dims(const np_rtensor *c, int64_t *cm, int64_t *cn)
{
	*cm = c->rank == 2 ? c->dims[0] : 1;
	*cn = c->rank >= 1 ? c->dims[c->rank - 1] : 1;
}

static np_status gemm_check_c(const np_xnode *x, const gemm_dims *g,
                              np_error *err)
{
	const np_rtensor *c = gemm_c(x);
	int64_t cm, cn;
	if (!c)
		return NP_OK;
	if (c->dtype != NP_FLOAT || c->rank > 2)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "C must be a float tensor of rank <= 2");
	gemm_c_dims(c, &cm, &cn);
	if ((cm != 1 && cm != g->m) || (cn != 1 && cn != g->n))
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "C [%lld,%lld] does not broadcast to [%lld,%lld]",
		                       (long long)cm, (long long)cn,
		                       (long long)g->m, (long long)g->n);
	return NP_OK;
}

static np_status gemm_infer(np_xnode *x, np_error *err)
{
	const np_rtensor *a = x->in[0], *b = x->n_in > 1 ? x->in[1] : NULL;
	if (!a || !b || a->dtype != NP_FLOAT || b->dtype != NP_FLOAT ||
	    a->rank != 2 || b->rank != 2)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "A and B must be 2-D float tensors");
	gemm_dims g = gemm_dims_of(x);
	int64_t kb = b->dims[g.tb ? 1 : 0];
	if (g.k != kb)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "inner dimensions differ (%lld vs %lld)",
		                       (long long)g.k, (long long)kb);
	if (g.k == 0)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "an empty inner dimension is not supported");
	if (gemm_check_c(x, &g, err))
		return err->status;
	np_rtensor *out = x->out[0];
	out->dtype = NP_FLOAT;
	out->rank = 2;
	out->dims[0] = g.m;
	out->dims[1] = g.n;
	return NP_OK;
}

/* d(opA) = alpha dY opB^T, d(opB) = alpha opA^T dY; a transposed input
 * takes the transposed product (dA = alpha opB dY^T, dB = alpha dY^T opA),
 * so every dst stays dense. */
static np_status gemm_build_bwd(np_xnode *x, np_rt *rt, gemm_state *s,
                                const mat *opa, const mat *opb,
                                const gemm_dims *g, np_error *err)
{
	int64_t ydims[2] = {g->m, g->n};
	mat dy = mat_bf(mat_dense(2, ydims, x->out[0]->grad), &s->cp[CP_DY]);
	mat da = mat_dense(2, x->in[0]->dims, NULL);
	mat db = mat_dense(2, x->in[1]->dims, NULL);
	mat dyt = mat_t(dy), opat = mat_t(*opa), opbt = mat_t(*opb);
	if (x->in[0]->needs_grad &&
	    mm_build(x, rt, &s->da, g->ta ? opb : &dy, g->ta ? &dyt : &opbt,
	             NULL, &da, s->alpha, err))
		return err->status;
	if (x->in[1]->needs_grad &&
	    mm_build(x, rt, &s->db, g->tb ? &dyt : &opat, g->tb ? opa : &dy,
	             NULL, &db, s->alpha, err))
		return err->status;
	return NP_OK;
}

static np_status gemm_prepare(np_xnode *x, np_rt *rt, np_error *err)
{
	if (alloc_state(x, sizeof(gemm_state), err))
		return err->status;
	gemm_state *s = x->state;
	gemm_dims g = gemm_dims_of(x);
	const np_rtensor *c = gemm_c(x);
	s->alpha = np_node_attr_float(x->node, "alpha", 1.0f);
	s->beta = np_node_attr_float(x->node, "beta", 1.0f);
	s->m = g.m;
	s->n = g.n;
	if (x->out[0]->nelem == 0)
		return NP_OK;
	if (bf_copies_build(x, rt, s->cp, err))
		return err->status;
	mat a = mat_bf(mat_dense(2, x->in[0]->dims, x->in[0]->data), &s->cp[CP_A]);
	mat b = mat_bf(mat_dense(2, x->in[1]->dims, x->in[1]->data), &s->cp[CP_B]);
	mat opa = g.ta ? mat_t(a) : a, opb = g.tb ? mat_t(b) : b;
	mat y = mat_dense(2, x->out[0]->dims, x->out[0]->data);
	mat bias;
	bool fuse = false;
	if (c) {
		gemm_c_dims(c, &s->cm, &s->cn);
		int64_t cdims[2] = {s->cm, s->cn};
		bias = mat_dense(2, cdims, c->data);
		fuse = s->alpha == 1.0f && s->beta == 1.0f && s->cm == 1 &&
		       s->cn == g.n;
		s->add_c = !fuse && s->beta != 0.0f;
	}
	if (mm_build(x, rt, &s->fwd, &opa, &opb, fuse ? &bias : NULL, &y,
	             s->alpha, err))
		return err->status;
	return x->out[0]->grad ? gemm_build_bwd(x, rt, s, &opa, &opb, &g, err)
	                       : NP_OK;
}

/* y += beta * C, C broadcast from [cm, cn] to [m, n]. */
static void gemm_add_c(const gemm_state *s, const float *c, float *y)
{
	int64_t m = s->m, n = s->n, rs = s->cm == 1 ? 0 : s->cn;
	int64_t cs = s->cn == 1 ? 0 : 1;
	float beta = s->beta;
	#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++)
			y[i * n + j] += beta * c[i * rs + j * cs];
}

static np_status gemm_forward(np_xnode *x, np_rt *rt, bool training,
                              np_error *err)
{
	gemm_state *s = x->state;
	(void)training;
	if (!s->fwd.prim)
		return NP_OK;
	if (bf_copies_fill_ab(x, rt, s->cp, err) || mm_run(x, rt, &s->fwd, err))
		return err->status;
	if (s->add_c) {
		dnnl_stream_wait(np_rt_stream(rt));
		gemm_add_c(s, gemm_c(x)->data, x->out[0]->data);
	}
	return NP_OK;
}

/* Column sums of dy [m, n], scaled: parallel over column blocks so each
 * thread streams whole rows of its block. */
static void sum_cols(const float *dy, int64_t m, int64_t n, float beta,
                     float *g)
{
	const int64_t block = 64;
	#pragma omp parallel for schedule(static)
	for (int64_t j0 = 0; j0 < n; j0 += block) {
		int64_t j1 = j0 + block < n ? j0 + block : n;
		for (int64_t j = j0; j < j1; j++)
			g[j] = 0.0f;
		for (int64_t i = 0; i < m; i++)
			for (int64_t j = j0; j < j1; j++)
				g[j] += dy[i * n + j];
		for (int64_t j = j0; j < j1; j++)
			g[j] *= beta;
	}
}

static void sum_rows(const float *dy, int64_t m, int64_t n, float beta,
                     float *g)
{
	#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < m; i++) {
		float sum = 0.0f;
		for (int64_t j = 0; j < n; j++)
			sum += dy[i * n + j];
		g[i] = beta * sum;
	}
}

static void scale_copy(const float *dy, int64_t n, float beta, float *g)
{
	#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++)
		g[i] = beta * dy[i];
}

/* dC = beta * dY summed over the axes C is broadcast along. */
static np_status gemm_grad_c(np_xnode *x, np_rt *rt, const gemm_state *s,
                             np_error *err)
{
	np_rtensor *c = x->in[2];
	const float *dy = x->out[0]->grad;
	float *g = np_rt_grad_target(rt, c);
	if (!g)
		return np_rt_grad_oom(err, x, c);
	if (s->cm == s->m && s->cn == s->n)
		scale_copy(dy, s->m * s->n, s->beta, g);
	else if (s->cm == 1 && s->cn == s->n)
		sum_cols(dy, s->m, s->n, s->beta, g);
	else if (s->cn == 1 && s->cm == s->m)
		sum_rows(dy, s->m, s->n, s->beta, g);
	else
		sum_rows(dy, 1, s->m * s->n, s->beta, g);
	np_rt_grad_done(rt, c, g);
	return NP_OK;
}

static np_status gemm_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	gemm_state *s = x->state;
	if (!s->fwd.prim)
		return NP_OK;
	if (bf_copy_fill(x, rt, &s->cp[CP_DY], err))
		return err->status;
	if (x->in[0]->needs_grad && mm_grad(x, rt, &s->da, x->in[0], err))
		return err->status;
	if (x->in[1]->needs_grad && mm_grad(x, rt, &s->db, x->in[1], err))
		return err->status;
	if (gemm_c(x) && gemm_c(x)->needs_grad) {
		dnnl_stream_wait(np_rt_stream(rt));
		return gemm_grad_c(x, rt, s, err);
	}
	return NP_OK;
}

static void gemm_destroy(np_xnode *x)
{
	gemm_state *s = x->state;
	if (!s)
		return;
	mm_free(&s->fwd);
	mm_free(&s->da);
	mm_free(&s->db);
	bf_copies_free(s->cp);
	free(s);
	x->state = NULL;
}

/* B [K, N] (transB: [N, K]) gives the N output columns; A's features
 * are its columns (transA: its rows). */
static bool gemm_weight_geom(const np_node *n, int rank, const int64_t *dims,
                             np_weight_geom *g)
{
	if (rank != 2)
		return false;
	bool tb = np_node_attr_int(n, "transB", 0) != 0;
	*g = (np_weight_geom){.out_axis = tb ? 0 : 1, .out_ch = dims[tb ? 0 : 1],
	                      .K = dims[tb ? 1 : 0], .groups = 1,
	                      .in_axis = np_node_attr_int(n, "transA", 0) ? 0 : 1};
	return true;
}

/* One row of A per example: 2 x |B|. */
static int64_t gemm_flops(const np_node *n, const np_shape *const *in, int n_in,
                          const np_shape *out)
{
	(void)n, (void)out;
	const np_shape *b = n_in > 1 ? in[1] : NULL;
	if (!b || b->rank != 2 || b->dims[0] < 0 || b->dims[1] < 0)
		return -1;
	return 2 * b->dims[0] * b->dims[1];
}

const np_op np_op_gemm = {
	.name = "Gemm",
	.infer = gemm_infer,
	.prepare = gemm_prepare,
	.forward = gemm_forward,
	.backward = gemm_backward,
	.destroy = gemm_destroy,
	.layout = NP_LAYOUT_PLAIN,
	.flags = NP_OPF_LINEAR,
	.weight_input = 1,
	.bias_input = 2,
	.weight_geom = gemm_weight_geom,
	.trainable = 0x7,            /* A too, as for Conv's X */
	.flops = gemm_flops,
	.out_overwritable = true,   /* backward: A, B, dY */
};

/* ============================================================= MatMul */

/* numpy matmul on padded shapes: a 1-D A is [1,K], a 1-D B is [K,1]; both
 * get leading 1s to the common rank r; batch axes broadcast. */
typedef struct mm_shapes {
	int r;
	int64_t a[R], b[R], y[R];
} mm_shapes;

typedef struct matmul_state {
	mm fwd, grad[2];
	bf_copy cp[CP_N];
	/* grad[i] of an input broadcast over batch axes is computed at the
	 * output's batch shape into scratch, then summed by red[i]. */
	dnnl_primitive_t red[2];
	dnnl_memory_t red_src[2], red_dst[2];
	int64_t scratch_n[2];
} matmul_state;

static void pad_dims(const np_rtensor *t, int r, bool is_b, int64_t *d)
{
	int64_t m[2];
	int n = t->rank;
	const int64_t *src = t->dims;
	if (n == 1) {
		m[0] = is_b ? t->dims[0] : 1;
		m[1] = is_b ? 1 : t->dims[0];
		src = m;
		n = 2;
	}
	for (int i = 0; i < r; i++)
		d[i] = i < r - n ? 1 : src[i - (r - n)];
}

static np_status mm_shapes_of(const np_xnode *x, mm_shapes *s, np_error *err)
{
	const np_rtensor *a = x->in[0], *b = x->in[1];
	s->r = a->rank > b->rank ? a->rank : b->rank;
	if (s->r < 2)
		s->r = 2;
	pad_dims(a, s->r, false, s->a);
	pad_dims(b, s->r, true, s->b);
	for (int i = 0; i < s->r - 2; i++) {
		int64_t da = s->a[i], db = s->b[i];
		if (da != db && da != 1 && db != 1)
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "batch dimensions do not broadcast (%lld vs %lld)",
			                       (long long)da, (long long)db);
		s->y[i] = da == 1 ? db : da;
	}
	s->y[s->r - 2] = s->a[s->r - 2];
	s->y[s->r - 1] = s->b[s->r - 1];
	if (s->a[s->r - 1] != s->b[s->r - 2])
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "inner dimensions differ (%lld vs %lld)",
		                       (long long)s->a[s->r - 1],
		                       (long long)s->b[s->r - 2]);
	return NP_OK;
}

static np_status matmul_infer(np_xnode *x, np_error *err)
{
	const np_rtensor *a = x->in[0], *b = x->n_in > 1 ? x->in[1] : NULL;
	mm_shapes s;
	if (!a || !b || a->dtype != NP_FLOAT || b->dtype != NP_FLOAT ||
	    a->rank < 1 || b->rank < 1)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "inputs must be float tensors of rank >= 1");
	if (mm_shapes_of(x, &s, err))
		return err->status;
	if (s.a[s.r - 1] == 0)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "an empty inner dimension is not supported");
	/* The output drops the axes the 1-D promotion added. */
	np_rtensor *out = x->out[0];
	out->dtype = NP_FLOAT;
	out->rank = 0;
	for (int i = 0; i < s.r; i++) {
		bool added = (i == s.r - 2 && a->rank == 1) ||
		             (i == s.r - 1 && b->rank == 1);
		if (!added)
			out->dims[out->rank++] = s.y[i];
	}
	return NP_OK;
}

static bool batch_equal(const int64_t *d, const int64_t *y, int r)
{
	return memcmp(d, y, sizeof(int64_t) * (r - 2)) == 0;
}

static bool batch_ones(const int64_t *d, int r)
{
	for (int i = 0; i < r - 2; i++)
		if (d[i] != 1)
			return false;
	return true;
}

static int64_t dims_product(const int64_t *d, int n)
{
	int64_t p = 1;
	for (int i = 0; i < n; i++)
		p *= d[i];
	return p;
}

/* Sum over batch axes: scratch (dims from) into the gradient (dims to). */
static np_status matmul_build_red(const np_xnode *x, np_rt *rt,
                                  matmul_state *st, int i, int r,
                                  const int64_t *from, const int64_t *to,
                                  np_error *err)
{
	mat ms = mat_dense(r, from, NULL), md = mat_dense(r, to, NULL);
	dnnl_memory_desc_t src, dst;
	dnnl_reduction_desc_t d;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_memory_desc_init_by_strides(&src, r, ms.dims, dnnl_f32, ms.str);
	dnnl_memory_desc_init_by_strides(&dst, r, md.dims, dnnl_f32, md.str);
	np_status s = np_rt_dnnl(dnnl_reduction_desc_init(&d, dnnl_reduction_sum,
	                                                  &src, &dst, 0.0f,
	                                                  0.0f),
	                         x, "reduction descriptor", err);
	if (!s)
		s = np_rt_dnnl(dnnl_primitive_desc_create(&pd, &d, NULL,
		                                          np_rt_engine(rt), NULL),
		               x, "reduction primitive descriptor", err);
	if (!s)
		s = np_rt_dnnl(dnnl_primitive_create(&st->red[i], pd), x,
		               "reduction primitive", err);
	dnnl_primitive_desc_destroy(pd);
	if (s || mm_mem(x, rt, &ms, &st->red_src[i], &src, err) ||
	    mm_mem(x, rt, &md, &st->red_dst[i], &dst, err))
		return err->status;
	st->scratch_n[i] = dims_product(from, r);
	return NP_OK;
}

/* dA = dY B^T, at the output's batch shape. */
static np_status matmul_build_da(np_xnode *x, np_rt *rt, matmul_state *st,
                                 const mm_shapes *s, np_error *err)
{
	int r = s->r;
	int64_t pd[R];
	memcpy(pd, s->y, sizeof pd);
	pd[r - 1] = s->a[r - 1];
	mat dy = mat_bf(mat_dense(r, s->y, x->out[0]->grad), &st->cp[CP_DY]);
	mat bt = mat_t(mat_bf(mat_dense(r, s->b, x->in[1]->data), &st->cp[CP_B]));
	mat da = mat_dense(r, pd, NULL);
	if (mm_build(x, rt, &st->grad[0], &dy, &bt, NULL, &da, 1.0f, err))
		return err->status;
	if (batch_equal(s->a, s->y, r))
		return NP_OK;
	return matmul_build_red(x, rt, st, 0, r, pd, s->a, err);
}

/* dB = A^T dY.  A weight shared across the batch (its batch axes all 1,
 * A's not broadcast) is one 2-D product over the batch folded into the
 * rows: [K, batch*M] x [batch*M, N]. */
static np_status matmul_build_db(np_xnode *x, np_rt *rt, matmul_state *st,
                                 const mm_shapes *s, np_error *err)
{
	int r = s->r;
	int64_t k = s->a[r - 1], n = s->b[r - 1];
	if (batch_ones(s->b, r) && batch_equal(s->a, s->y, r)) {
		int64_t rows = dims_product(s->a, r - 1);
		int64_t adims[2] = {rows, k}, ydims[2] = {rows, n};
		int64_t bdims[2] = {k, n};
		mat at = mat_t(mat_bf(mat_dense(2, adims, x->in[0]->data),
		                      &st->cp[CP_A]));
		mat dy = mat_bf(mat_dense(2, ydims, x->out[0]->grad),
		                &st->cp[CP_DY]);
		mat db = mat_dense(2, bdims, NULL);
		return mm_build(x, rt, &st->grad[1], &at, &dy, NULL, &db, 1.0f,
		                err);
	}
	int64_t pd[R];
	memcpy(pd, s->y, sizeof pd);
	pd[r - 2] = k;
	mat at = mat_t(mat_bf(mat_dense(r, s->a, x->in[0]->data), &st->cp[CP_A]));
	mat dy = mat_bf(mat_dense(r, s->y, x->out[0]->grad), &st->cp[CP_DY]);
	mat db = mat_dense(r, pd, NULL);
	if (mm_build(x, rt, &st->grad[1], &at, &dy, NULL, &db, 1.0f, err))
		return err->status;
	if (batch_equal(s->b, s->y, r))
		return NP_OK;
	return matmul_build_red(x, rt, st, 1, r, pd, s->b, err);
}

static np_status matmul_prepare(np_xnode *x, np_rt *rt, np_error *err)
{
	mm_shapes s;
	if (alloc_state(x, sizeof(matmul_state), err) ||
	    mm_shapes_of(x, &s, err))
		return err->status;
	matmul_state *st = x->state;
	if (x->out[0]->nelem == 0)
		return NP_OK;
	if (bf_copies_build(x, rt, st->cp, err))
		return err->status;
	mat a = mat_bf(mat_dense(s.r, s.a, x->in[0]->data), &st->cp[CP_A]);
	mat b = mat_bf(mat_dense(s.r, s.b, x->in[1]->data), &st->cp[CP_B]);
	mat y = mat_dense(s.r, s.y, x->out[0]->data);
	if (mm_build(x, rt, &st->fwd, &a, &b, NULL, &y, 1.0f, err))
		return err->status;
	if (!x->out[0]->grad)
		return NP_OK;
	if (x->in[0]->needs_grad && matmul_build_da(x, rt, st, &s, err))
		return err->status;
	if (x->in[1]->needs_grad && matmul_build_db(x, rt, st, &s, err))
		return err->status;
	return NP_OK;
}

static np_status matmul_forward(np_xnode *x, np_rt *rt, bool training,
                                np_error *err)
{
	matmul_state *st = x->state;
	(void)training;
	if (!st->fwd.prim)
		return NP_OK;
	if (bf_copies_fill_ab(x, rt, st->cp, err))
		return err->status;
	return mm_run(x, rt, &st->fwd, err);
}

/* The product into scratch, then its sum over batch axes into the
 * gradient. */
static np_status matmul_grad_reduced(np_xnode *x, np_rt *rt,
                                     matmul_state *st, int i, np_error *err)
{
	np_rtensor *in = x->in[i];
	float *tmp = np_rt_scratch(rt, MM_SCRATCH,
	                           sizeof(float) * st->scratch_n[i]);
	if (!tmp)
		return np_rt_grad_oom(err, x, in);
	dnnl_memory_set_data_handle(st->grad[i].dst, tmp);
	if (mm_run(x, rt, &st->grad[i], err))
		return err->status;
	float *g = np_rt_grad_target(rt, in);
	if (!g)
		return np_rt_grad_oom(err, x, in);
	dnnl_memory_set_data_handle(st->red_src[i], tmp);
	dnnl_memory_set_data_handle(st->red_dst[i], g);
	dnnl_exec_arg_t args[] = {
		{DNNL_ARG_SRC, st->red_src[i]}, {DNNL_ARG_DST, st->red_dst[i]},
	};
	np_status s = np_rt_dnnl(dnnl_primitive_execute(st->red[i],
	                                                np_rt_stream(rt), 2,
	                                                args),
	                         x, "reduction", err);
	np_rt_grad_done(rt, in, g);
	return s;
}

static np_status matmul_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	matmul_state *st = x->state;
	if (!st->fwd.prim)
		return NP_OK;
	if (bf_copy_fill(x, rt, &st->cp[CP_DY], err))
		return err->status;
	for (int i = 0; i < 2; i++) {
		if (!x->in[i]->needs_grad)
			continue;
		np_status s = st->red[i] ?
		              matmul_grad_reduced(x, rt, st, i, err) :
		              mm_grad(x, rt, &st->grad[i], x->in[i], err);
		if (s)
			return s;
	}
	return NP_OK;
}

static void matmul_destroy(np_xnode *x)
{
	matmul_state *st = x->state;
	if (!st)
		return;
	mm_free(&st->fwd);
	bf_copies_free(st->cp);
	for (int i = 0; i < 2; i++) {
		mm_free(&st->grad[i]);
		dnnl_primitive_destroy(st->red[i]);
		dnnl_memory_destroy(st->red_src[i]);
		dnnl_memory_destroy(st->red_dst[i]);
	}
	free(st);
	x->state = NULL;
}

/* x @ W, W [..., K, N]: N output columns, x's last axis the K features;
 * axes of W before those two stack matrices (broadcast against x's). */
static bool matmul_weight_geom(const np_node *n, int rank, const int64_t *dims,
                               np_weight_geom *g)
{
	(void)n;
	if (rank < 2)
		return false;
	*g = (np_weight_geom){.out_axis = rank - 1, .out_ch = dims[rank - 1],
	                      .K = dims[rank - 2], .groups = 1, .in_axis = -1,
	                      .batch_axes = rank - 2, .y_last = true};
	return true;
}

/* Rows per example: the output's dims between the batch and the last (1
 * for [N, n]); 2 x rows x K x columns. */
static int64_t matmul_flops(const np_node *n, const np_shape *const *in, int n_in,
                            const np_shape *out)
{
	(void)n;
	const np_shape *a = n_in > 0 ? in[0] : NULL;
	if (!a || !out || a->rank < 1 || out->rank < 1)
		return -1;
	int64_t k = a->dims[a->rank - 1], cols = out->dims[out->rank - 1], rows = 1;
	for (int i = 1; i < out->rank - 1; i++)
		rows = out->dims[i] < 0 || rows < 0 ? -1 : rows * out->dims[i];
	if (k < 0 || cols < 0 || rows < 0)
		return -1;
	return 2 * rows * k * cols;
}

const np_op np_op_matmul = {
	.name = "MatMul",
	.infer = matmul_infer,
	.prepare = matmul_prepare,
	.forward = matmul_forward,
	.backward = matmul_backward,
	.destroy = matmul_destroy,
	.layout = NP_LAYOUT_PLAIN,
	.flags = NP_OPF_LINEAR | NP_OPF_WEIGHT_EITHER,
	.weight_input = 1,
	.bias_input = -1,
	.weight_geom = matmul_weight_geom,
	.trainable = 0x3,
	.flops = matmul_flops,
	.out_overwritable = true,   /* backward: A, B, dY */
};
