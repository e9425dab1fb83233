/* conv.c - ONNX Conv (1D/2D/3D, groups, dilations, auto_pad) on oneDNN.
 *
 * A blocked activation (rt.h, LAYOUT) is passed as it is; for a plain one
 * the primitive chooses its own layout (format_tag any: oneDNN's jit
 * kernels want blocked layouts) and the edge between the plain rtensor
 * and the primitive gets a reorder made once in prepare.  A backward
 * primitive reuses the forward's reordered src/weights when it wants the
 * same layout, so a training step reorders each tensor at most once.
 */
#include "ops.h"
#include "window.h"

#include <stdlib.h>
#include <string.h>

/* One tensor seen by a primitive: the rtensor's buffer (plain or blocked,
 * np_rt_md) <-> the primitive's layout. */
typedef struct edge {
	dnnl_memory_desc_t md;       /* the primitive's layout */
	dnnl_memory_t user;          /* plain, on the rtensor buffer; NULL
	                              * when aliasing another edge */
	dnnl_memory_t mem;           /* what the primitive reads or writes */
	dnnl_primitive_t reorder;    /* NULL: user == mem, or aliased */
	bool out;                    /* reorder mem -> user (after) */
	bool owns_mem;
} edge;

typedef struct conv_state {
	dnnl_primitive_desc_t fwd_pd;
	dnnl_primitive_t fwd, bwd_data, bwd_weights;
	edge src, wei, dst;                  /* forward */
	edge bd_ddst, bd_wei, bd_dsrc;       /* backward data */
	edge bw_ddst, bw_src, bw_dwei;       /* backward weights */
	dnnl_memory_t bias, dbias;           /* plain [M], no reorder */
	bool ref;                            /* a primitive is a ref kernel */
	bool bw_matmul;                      /* bwd_weights is a matmul
	                                      * (conv_prepare_bw_matmul) */
	bool bw_direct;                      /* depthwise weight gradient
	                                      * by conv_dw_bw_direct, ... */
	float *dw_part;                      /* ... or by conv_dw_bw_bf16,
	                                      * its block sums, ... */
	struct conv_dw_geom {                /* ... on this geometry */
		int64_t n, c, ih, iw, oh, ow, kh, kw;
		int64_t sh, sw, ph, pw, dh, dw;  /* strides, pads, dilations */
	} dw;
} conv_state;

typedef struct conv_geom {
	np_window win;
	int64_t group;
} conv_geom;

/* ------------------------------------------------------------ infer */

static np_status conv_check_inputs(const np_xnode *x, np_error *err)
{
	const np_rtensor *X = x->in[0], *W = x->n_in > 1 ? x->in[1] : NULL;
	const np_rtensor *B = x->n_in > 2 ? x->in[2] : NULL;
	if (!W || x->n_in > 3)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "Conv takes 2 or 3 inputs, got %d", x->n_in);
	if (X->dtype != NP_FLOAT || W->dtype != NP_FLOAT ||
	    (B && B->dtype != NP_FLOAT))
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "only float Conv is supported");
	if (X->rank < 3 || X->rank > 2 + NP_WIN_MAX)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "Conv input of rank %d (only 1 to 3 spatial dims)",
		                       X->rank);
	if (W->rank != X->rank)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "weight rank %d differs from input rank %d",
		                       W->rank, X->rank);
	if (B && (B->rank != 1 || B->dims[0] != W->dims[0]))
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "bias must have shape [%lld]",
		                       (long long)W->dims[0]);
	return NP_OK;
}

/* group, kernel_shape (must agree with W) and the window. */
static np_status conv_geometry(const np_xnode *x, conv_geom *g, np_error *err)
{
	const np_rtensor *X = x->in[0], *W = x->in[1];
	int n = X->rank - 2, nk = 0;
	g->group = np_node_attr_int(x->node, "group", 1);
	if (g->group < 1 || W->dims[0] % g->group ||
	    X->dims[1] != W->dims[1] * g->group)
		return np_rt_fail_node(err, NP_ERR_INVALID, x,
		                       "group=%lld does not fit input channels %lld and weight [%lld, %lld]",
		                       (long long)g->group, (long long)X->dims[1],
		                       (long long)W->dims[0], (long long)W->dims[1]);
	const int64_t *ks = np_node_attr_ints(x->node, "kernel_shape", &nk);
	for (int i = 0; ks && i < n; i++)
		if (nk != n || ks[i] != W->dims[2 + i])
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "attribute kernel_shape disagrees with the weight shape");
	return np_window_parse(x, n, X->dims + 2, W->dims + 2, false, &g->win,
	                       err);
}

static np_status conv_infer(np_xnode *x, np_error *err)
{
	conv_geom g;
	np_status st = conv_check_inputs(x, err);
	if (!st)
		st = conv_geometry(x, &g, err);
	if (st)
		return st;
	np_rtensor *Y = x->out[0];
	Y->dtype = NP_FLOAT;
	Y->rank = x->in[0]->rank;
	Y->dims[0] = x->in[0]->dims[0];
	Y->dims[1] = x->in[1]->dims[0];
	for (int i = 0; i < g.win.n; i++)
		Y->dims[2 + i] = g.win.out[i];
	return NP_OK;
}

/* ------------------------------------------------------------ edges */

/* Binds e to buf (plain layout) for a primitive wanting want; aliases
 * share's memory instead when share already holds the same tensor in that
 * layout (share's reorder must run first). */
static dnnl_status_t edge_init(edge *e, dnnl_engine_t eng,
                               const dnnl_memory_desc_t *plain,
                               const dnnl_memory_desc_t *want, void *buf,
                               bool out, const edge *share)
{
	dnnl_status_t s;
	e->md = *want;
	e->out = out;
	if (share && share->mem && dnnl_memory_desc_equal(&share->md, want)) {
		e->mem = share->mem;
		return dnnl_success;
	}
	s = dnnl_memory_create(&e->user, plain, eng, buf);
	if (s)
		return s;
	if (dnnl_memory_desc_equal(plain, want)) {
		e->mem = e->user;
		return dnnl_success;
	}
	s = dnnl_memory_create(&e->mem, want, eng, DNNL_MEMORY_ALLOCATE);
	if (s)
		return s;
	e->owns_mem = true;
	return out ? np_rt_reorder_make(eng, want, plain, &e->reorder)
	           : np_rt_reorder_make(eng, plain, want, &e->reorder);
}

/* A primitive output nobody reads (e.g. dW when only the bias trains). */
static dnnl_status_t edge_sink(edge *e, dnnl_engine_t eng,
                               const dnnl_memory_desc_t *want)
{
	e->md = *want;
	e->owns_mem = true;
	return dnnl_memory_create(&e->mem, want, eng, DNNL_MEMORY_ALLOCATE);
}

static dnnl_status_t edge_run(const edge *e, dnnl_stream_t stream)
{
	if (!e->reorder)
		return dnnl_success;
	return e->out ? np_rt_reorder_run(e->reorder, e->mem, e->user, stream)
	              : np_rt_reorder_run(e->reorder, e->user, e->mem, stream);
}

/* Points the plain side at buf (a gradient target changes per pass). */
static dnnl_status_t edge_bind(const edge *e, void *buf)
{
	return e->user ? dnnl_memory_set_data_handle(e->user, buf) : dnnl_success;
}

static void edge_free(edge *e)
{
	if (e->reorder)
		dnnl_primitive_destroy(e->reorder);
	if (e->owns_mem)
		dnnl_memory_destroy(e->mem);
	if (e->user)
		dnnl_memory_destroy(e->user);
	memset(e, 0, sizeof *e);
}

/* ---------------------------------------------------------- prepare */

/* Plain f32 descriptor of W; with groups oneDNN wants [G, M/G, C/G, k..],
 * the same bytes as ONNX's [M, C/G, k..]. */
static void conv_weights_md(dnnl_memory_desc_t *md, const np_rtensor *W,
                            int64_t group)
{
	dnnl_dims_t d;
	int r = 0;
	if (group > 1)
		d[r++] = group;
	d[r++] = W->dims[0] / group;
	for (int i = 1; i < W->rank; i++)
		d[r++] = W->dims[i];
	dnnl_memory_desc_init_by_strides(md, r, d, dnnl_f32, NULL);
}

/* Descriptors every conv primitive starts from: plain and "any".  In
 * bf16 (np_rt_bf16) forward and backward data run on bf16 tensors (bf_*;
 * the edges convert from and to the f32 activations and gradients), and
 * backward weights reads those bf16 src and dY and writes f32 dW where
 * oneDNN has an AMX kernel for it and no f32 1x1 one
 * (conv_bwd_weights_bf16), else stays f32.  Master weights stay f32. */
typedef struct conv_mds {
	dnnl_memory_desc_t src, wei, dst, bias;          /* plain */
	dnnl_memory_desc_t any_src, any_wei, any_dst;
	dnnl_memory_desc_t bf_src, bf_wei, bf_dst;       /* bf16, any layout */
	dnnl_memory_desc_t bf_y, bf_dx;      /* what bf16 forward writes and
	                                      * backward data returns */
	dnnl_dims_t strides, dilates, pad_l, pad_r;
	bool bf16;           /* forward and backward data read bf_* */
	bool has_bias;
	bool fixed;          /* a blocked neighbour fixed any_src/any_dst */
} conv_mds;

/* A pass's descriptor for md's tensor in data type dt: md itself when a
 * blocked neighbour of that type fixed the layout, else dt in the layout
 * oneDNN picks. */
static void conv_pass_md(dnnl_memory_desc_t *out, const dnnl_memory_desc_t *md,
                         bool fixed, dnnl_data_type_t dt)
{
	if (fixed)
		*out = *md;
	else
		dnnl_memory_desc_init_by_tag(out, md->ndims, md->dims, dt,
		                             dnnl_format_tag_any);
}

static void conv_mds_init(conv_mds *m, const np_xnode *x, const conv_geom *g,
                          bool bf16)
{
	memset(m, 0, sizeof *m);
	np_rt_md(&m->src, x->in[0]);
	conv_weights_md(&m->wei, x->in[1], g->group);
	np_rt_md(&m->dst, x->out[0]);
	m->has_bias = x->n_in > 2 && x->in[2];
	if (m->has_bias)
		np_rt_md_plain(&m->bias, x->in[2]);
	/* A blocked f32 neighbour fixes the layout of the f32 passes (no
	 * reorder at that edge); a plain or bf16 one lets oneDNN choose and
	 * the edge reorders. */
	bool in_f32 = x->in[0]->blocked && !np_rt_is_bf16(x->in[0]);
	bool out_f32 = x->out[0]->blocked && !np_rt_is_bf16(x->out[0]);
	conv_pass_md(&m->any_src, &m->src, in_f32, dnnl_f32);
	conv_pass_md(&m->any_wei, &m->wei, false, dnnl_f32);
	conv_pass_md(&m->any_dst, &m->dst, out_f32, dnnl_f32);
	m->bf16 = bf16;
	if (bf16) {
		/* bf16 neighbours fix the layout like f32 ones. */
		conv_pass_md(&m->bf_src, &m->src, np_rt_is_bf16(x->in[0]), dnnl_bf16);
		dnnl_memory_desc_init_by_tag(&m->bf_wei, m->wei.ndims, m->wei.dims,
		                             dnnl_bf16, dnnl_format_tag_any);
		conv_pass_md(&m->bf_dst, &m->dst, np_rt_is_bf16(x->out[0]), dnnl_bf16);
		/* Beside a blocked neighbour the results come out in its
		 * layout and data type (f32, or bf16 where the planner
		 * stores it so): no reorder at that edge. */
		m->bf_y = x->out[0]->blocked ? m->dst : m->bf_dst;
		m->bf_dx = x->in[0]->blocked ? m->src : m->bf_src;
	}
	m->fixed = x->in[0]->blocked || x->out[0]->blocked;
	np_window_dnnl(&g->win, m->strides, m->dilates, m->pad_l, m->pad_r);
}

/* What forward and backward data read: the bf16 descriptor in bf16,
 * else the f32 "any" one. */
static const dnnl_memory_desc_t *conv_rd(const conv_mds *m,
                                         const dnnl_memory_desc_t *bf,
                                         const dnnl_memory_desc_t *any)
{
	return m->bf16 ? bf : any;
}

/* Records whether oneDNN fell back to a reference kernel (a fixed
 * blocked layout beside a plain one can leave no jit kernel for a
 * backward pass; conv_prepare then lets oneDNN choose every layout). */
static dnnl_status_t make_primitive(dnnl_primitive_t *p,
                                    dnnl_primitive_desc_t *pd_out,
                                    const void *desc, dnnl_engine_t eng,
                                    const_dnnl_primitive_desc_t hint,
                                    bool *ref)
{
	dnnl_primitive_desc_t pd;
	dnnl_status_t s = dnnl_primitive_desc_create(&pd, desc, NULL, eng, hint);
	if (s)
		return s;
	*ref |= np_rt_pd_is_ref(pd);
	s = dnnl_primitive_create(p, pd);
	if (s || !pd_out)
		dnnl_primitive_desc_destroy(pd);
	else
		*pd_out = pd;
	return s;
}

static const dnnl_memory_desc_t *pd_md(const_dnnl_primitive_desc_t pd,
                                       dnnl_query_t what)
{
	return dnnl_primitive_desc_query_md(pd, what, 0);
}

static dnnl_status_t conv_prepare_fwd(conv_state *c, const np_xnode *x,
                                      const conv_mds *m, bool train,
                                      dnnl_engine_t eng)
{
	dnnl_convolution_desc_t d;
	dnnl_status_t s = dnnl_dilated_convolution_forward_desc_init(
		&d, train ? dnnl_forward_training : dnnl_forward_inference,
		dnnl_convolution_direct, conv_rd(m, &m->bf_src, &m->any_src),
		conv_rd(m, &m->bf_wei, &m->any_wei), m->has_bias ? &m->bias : NULL,
		conv_rd(m, &m->bf_y, &m->any_dst), m->strides,
		m->dilates, m->pad_l, m->pad_r);
	if (!s)
		s = make_primitive(&c->fwd, &c->fwd_pd, &d, eng, NULL, &c->ref);
	if (!s)
		s = edge_init(&c->src, eng, &m->src, pd_md(c->fwd_pd, dnnl_query_src_md),
		              x->in[0]->data, false, NULL);
	if (!s)
		s = edge_init(&c->wei, eng, &m->wei, pd_md(c->fwd_pd, dnnl_query_weights_md),
		              x->in[1]->data, false, NULL);
	if (!s)
		s = edge_init(&c->dst, eng, &m->dst, pd_md(c->fwd_pd, dnnl_query_dst_md),
		              x->out[0]->data, true, NULL);
	if (!s && m->has_bias)
		s = dnnl_memory_create(&c->bias, &m->bias, eng, x->in[2]->data);
	return s;
}

static dnnl_status_t conv_prepare_bwd_data(conv_state *c, const np_xnode *x,
                                           const conv_mds *m, dnnl_engine_t eng)
{
	dnnl_convolution_desc_t d;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_status_t s = dnnl_dilated_convolution_backward_data_desc_init(
		&d, dnnl_convolution_direct, conv_rd(m, &m->bf_dx, &m->any_src),
		conv_rd(m, &m->bf_wei, &m->any_wei), conv_rd(m, &m->bf_dst, &m->any_dst),
		m->strides, m->dilates, m->pad_l, m->pad_r);
	if (!s)
		s = make_primitive(&c->bwd_data, &pd, &d, eng, c->fwd_pd, &c->ref);
	if (!s)
		s = edge_init(&c->bd_ddst, eng, &m->dst, pd_md(pd, dnnl_query_diff_dst_md),
		              x->out[0]->grad, false, NULL);
	if (!s)
		s = edge_init(&c->bd_wei, eng, &m->wei, pd_md(pd, dnnl_query_weights_md),
		              x->in[1]->data, false, &c->wei);
	if (!s)
		s = edge_init(&c->bd_dsrc, eng, &m->src, pd_md(pd, dnnl_query_diff_src_md),
		              NULL, true, NULL);
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	return s;
}

static bool pd_impl_has(const_dnnl_primitive_desc_t pd, const char *what)
{
	const char *impl = NULL;
	return dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) ==
	       dnnl_success && impl && strstr(impl, what);
}

/* In bf16, backward weights reads the bf16 src and dY the forward and
 * backward data already made (shared edges) and writes f32 dW and dB,
 * where oneDNN runs that on AMX and has no dedicated f32 1x1 kernel
 * (impl "jit_1x1") for the pass: on ResNet-18's and MobileNet-V2's
 * shapes its generic AMX kernel ran 1.2-5x faster than f32 on 3x3
 * convolutions and 0.2-0.7x on most 1x1 ones (docs/performance.md,
 * "bf16").  Its AVX512_BF16 kernel (no AMX) is slower than f32, so
 * without AMX the pass stays f32.  Replaces *pd (the f32 candidate) by
 * the bf16 one when that one is used. */
static void conv_bwd_weights_bf16(dnnl_primitive_desc_t *pd,
                                  const conv_state *c, const conv_mds *m,
                                  dnnl_engine_t eng)
{
	dnnl_convolution_desc_t d;
	dnnl_primitive_desc_t bf = NULL;
	if (pd_impl_has(*pd, "1x1") ||
	    dnnl_dilated_convolution_backward_weights_desc_init(
		    &d, dnnl_convolution_direct, &m->bf_src, &m->any_wei,
		    m->has_bias ? &m->bias : NULL, &m->bf_dst, m->strides,
		    m->dilates, m->pad_l, m->pad_r) ||
	    dnnl_primitive_desc_create(&bf, &d, NULL, eng, c->fwd_pd))
		return;                     /* no bf16 kernel: f32 */
	if (!pd_impl_has(bf, "amx")) {
		dnnl_primitive_desc_destroy(bf);
		return;
	}
	dnnl_primitive_desc_destroy(*pd);
	*pd = bf;
}

/* Where oneDNN's backward weights on the given layouts is a reference or
 * gemm-based kernel, the same pass with src and dY channels-last, if that
 * one is a jit kernel (the edges reorder the two small tensors).  It came
 * for MobileNet-V2's depthwise 3x3 convolutions on 1x1 and 2x2 maps (ref
 * on nChw16c, gemm:jit on plain: 15-23 ms each for about a million
 * multiply-adds; channels-last 7-8 ms), which conv_dw_bw_direct now
 * serves; it stays for the other grouped convolutions (test_gradcheck's
 * dilated group-2 one takes it).  Decided from oneDNN's implementation
 * names, on any ISA.  Replaces *pd when the alternative is used. */
static void conv_bwd_weights_nxc(dnnl_primitive_desc_t *pd, const conv_state *c,
                                 const conv_mds *m, dnnl_engine_t eng)
{
	static const dnnl_format_tag_t nxc[] = {dnnl_nwc, dnnl_nhwc, dnnl_ndhwc};
	dnnl_memory_desc_t src, dst;
	dnnl_convolution_desc_t d;
	dnnl_primitive_desc_t alt = NULL;
	int sp = m->src.ndims - 3;
	if ((!np_rt_pd_is_ref(*pd) && !pd_impl_has(*pd, "gemm")) || sp < 0 || sp > 2)
		return;
	dnnl_memory_desc_init_by_tag(&src, m->src.ndims, m->src.dims, dnnl_f32, nxc[sp]);
	dnnl_memory_desc_init_by_tag(&dst, m->dst.ndims, m->dst.dims, dnnl_f32, nxc[sp]);
	if (dnnl_dilated_convolution_backward_weights_desc_init(
		    &d, dnnl_convolution_direct, &src, &m->any_wei,
		    m->has_bias ? &m->bias : NULL, &dst, m->strides, m->dilates,
		    m->pad_l, m->pad_r) ||
	    dnnl_primitive_desc_create(&alt, &d, NULL, eng, c->fwd_pd))
		return;
	if (np_rt_pd_is_ref(alt) || pd_impl_has(alt, "gemm")) {
		dnnl_primitive_desc_destroy(alt);
		return;
	}
	dnnl_primitive_desc_destroy(*pd);
	*pd = alt;
}

/* Depthwise: group = input channels (> 1), so each output channel reads
 * one input channel (W [M, 1, k...]). */
static bool conv_depthwise(const np_xnode *x)
{
	return x->in[0]->dims[1] > 1 && x->in[1]->dims[1] == 1;
}

/* A depthwise convolution with one output per channel over 2 spatial
 * axes whose weights want a gradient and whose kernel fits
 * conv_dw_bw_direct's accumulators? */
static bool conv_dw_direct_fits(const np_xnode *x)
{
	const np_rtensor *X = x->in[0], *W = x->in[1];
	return X->rank == 4 && conv_depthwise(x) && W->dims[0] == X->dims[1] &&
	       W->dims[2] * W->dims[3] <= 64 && W->needs_grad;
}

/* ... and X and dY are stored channels-last in bf16, for
 * conv_dw_bw_bf16? */
static bool conv_dw_bf16_fits(const np_xnode *x)
{
	const np_rtensor *X = x->in[0], *Y = x->out[0];
	return conv_dw_direct_fits(x) && np_rt_is_bf16(X) && np_rt_is_bf16(Y) &&
	       np_rt_tag(X) == dnnl_acdb && np_rt_tag(Y) == dnnl_acdb &&
	       np_bf16_simd_cpu();
}

/* dW[c, 0, i, j] = sum over n, oh, ow of X[n, ih, iw, c] * dY[n, oh, ow,
 * c] (ih = oh * sh - ph + i * dh, likewise iw), and dB[c] = sum of dY,
 * on channels-last f32 tensors.  Threads take blocks of 16 channels and
 * the lanes run across channels, so each sum has one order whatever the
 * thread count.  g: conv_state.dw. */
static void conv_dw_bw_direct(const struct conv_dw_geom *g, const float *x,
                              const float *dy, float *dw, float *db)
{
	int64_t N = g->n, C = g->c, IH = g->ih, IW = g->iw, OH = g->oh, OW = g->ow;
	int64_t KH = g->kh, KW = g->kw, sh = g->sh, sw = g->sw, ph = g->ph;
	int64_t pw = g->pw, dh = g->dh, dwl = g->dw;
	#pragma omp parallel for schedule(static)
	for (int64_t cb = 0; cb < C; cb += 16) {
		int64_t nc = C - cb < 16 ? C - cb : 16;
		float acc[64][16], accb[16];
		memset(acc, 0, sizeof acc);
		memset(accb, 0, sizeof accb);
		for (int64_t n = 0; n < N; n++)
		for (int64_t oh = 0; oh < OH; oh++)
		for (int64_t ow = 0; ow < OW; ow++) {
			const float *d = dy + ((n * OH + oh) * OW + ow) * C + cb;
			#pragma omp simd
			for (int64_t c = 0; c < nc; c++)
				accb[c] += d[c];
			for (int64_t i = 0; i < KH; i++) {
				int64_t ih = oh * sh - ph + i * dh;
				if (ih < 0 || ih >= IH)
					continue;
				for (int64_t j = 0; j < KW; j++) {
					int64_t iw = ow * sw - pw + j * dwl;
					if (iw < 0 || iw >= IW)
						continue;
					const float *s = x + ((n * IH + ih) * IW + iw) * C + cb;
					float *a = acc[i * KW + j];
					#pragma omp simd
					for (int64_t c = 0; c < nc; c++)
						a[c] += s[c] * d[c];
				}
			}
		}
		for (int64_t c = 0; c < nc; c++) {
			for (int64_t k = 0; k < KH * KW; k++)
				dw[(cb + c) * KH * KW + k] = acc[k][c];
			if (db)
				db[cb + c] = accb[c];
		}
	}
}

/* Images per block of conv_dw_bw_bf16's sums. */
#define CONV_DW_IMAGES 4

/* conv_dw_bw_direct's sums on channels-last bf16 X and dY, read where
 * they lie: threads take blocks of CONV_DW_IMAGES images, each summing
 * every channel (lanes across channels) into its own [taps + 2, C]
 * block of part (the taps, dB, dY's row in f32), and the blocks are
 * added in order: one order whatever the thread count.  Each value is
 * read once (conv_dw_bw_direct streams X once per channel block, fine
 * for the small late maps, not for the early 16x16 ones). */
NP_BF16_SIMD
static void conv_dw_bw_bf16(const struct conv_dw_geom *g,
                            const uint16_t *x, const uint16_t *dy,
                            float *part, float *dw, float *db)
{
	int64_t N = g->n, C = g->c, IH = g->ih, IW = g->iw, OH = g->oh, OW = g->ow;
	int64_t KH = g->kh, KW = g->kw, T = KH * KW;
	int64_t nblk = (N + CONV_DW_IMAGES - 1) / CONV_DW_IMAGES;
	#pragma omp parallel for schedule(static)
	for (int64_t b = 0; b < nblk; b++) {
		float *acc = part + b * (T + 2) * C, *accb = acc + T * C;
		float *d = accb + C;
		int64_t n1 = (b + 1) * CONV_DW_IMAGES < N ? (b + 1) * CONV_DW_IMAGES : N;
		memset(acc, 0, sizeof(float) * (size_t)((T + 1) * C));
		for (int64_t n = b * CONV_DW_IMAGES; n < n1; n++)
		for (int64_t oh = 0; oh < OH; oh++)
		for (int64_t ow = 0; ow < OW; ow++) {
			const uint16_t *dr = dy + ((n * OH + oh) * OW + ow) * C;
			#pragma omp simd
			for (int64_t c = 0; c < C; c++) {
				d[c] = np_f32_of(dr[c]);
				accb[c] += d[c];
			}
			for (int64_t i = 0; i < KH; i++) {
				int64_t ih = oh * g->sh - g->ph + i * g->dh;
				if (ih < 0 || ih >= IH)
					continue;
				for (int64_t j = 0; j < KW; j++) {
					int64_t iw = ow * g->sw - g->pw + j * g->dw;
					if (iw < 0 || iw >= IW)
						continue;
					const uint16_t *s = x + ((n * IH + ih) * IW + iw) * C;
					float *a = acc + (i * KW + j) * C;
					#pragma omp simd
					for (int64_t c = 0; c < C; c++)
						a[c] += np_f32_of(s[c]) * d[c];
				}
			}
		}
	}
	#pragma omp parallel for schedule(static)
	for (int64_t c = 0; c < C; c++)
		for (int64_t t = 0; t <= T; t++) {
			double sum = 0;
			for (int64_t b = 0; b < nblk; b++)
				sum += part[(b * (T + 2) + t) * C + c];
			if (t < T)
				dw[c * T + t] = (float)sum;
			else if (db)
				db[c] = (float)sum;
		}
}

/* The geometry the direct depthwise loops read (conv_state.dw). */
static void conv_dw_geom_init(conv_state *c, const np_xnode *x,
                              const conv_mds *m)
{
	const np_rtensor *X = x->in[0], *W = x->in[1], *Y = x->out[0];
	c->dw = (struct conv_dw_geom){
		X->dims[0], X->dims[1], X->dims[2], X->dims[3], Y->dims[2],
		Y->dims[3], W->dims[2], W->dims[3], m->strides[0], m->strides[1],
		m->pad_l[0], m->pad_l[1], m->dilates[0] + 1, m->dilates[1] + 1};
}

/* Where oneDNN has only a reference or gemm-based kernel for a depthwise
 * convolution's weight gradient on these layouts (MobileNet-V2's 3x3
 * ones on 1x1 and 2x2 maps, 384-960 channels: gemm:jit 10-25 ms a call,
 * its channels-last jit kernel 0.8-1.8 ms, on AVX2 none), the direct
 * loop above on channels-last f32 copies of X and dY (the edges convert
 * or alias) writes dW, and dB, itself. */
static dnnl_status_t conv_prepare_dw_direct(conv_state *c, const np_xnode *x,
                                           const conv_mds *m, dnnl_engine_t eng)
{
	dnnl_memory_desc_t src, dst;
	dnnl_memory_desc_init_by_tag(&src, 4, m->src.dims, dnnl_f32, dnnl_nhwc);
	dnnl_memory_desc_init_by_tag(&dst, 4, m->dst.dims, dnnl_f32, dnnl_nhwc);
	conv_dw_geom_init(c, x, m);
	dnnl_status_t s = edge_init(&c->bw_ddst, eng, &m->dst, &dst, x->out[0]->grad,
	                            false, c->bwd_data ? &c->bd_ddst : NULL);
	if (!s)
		s = edge_init(&c->bw_src, eng, &m->src, &src, x->in[0]->data, false,
		              &c->src);
	c->bw_direct = !s;
	return s;
}

/* Between bf16 channels-last values, conv_dw_bw_bf16 on the stored
 * values: no edges, only its block sums. */
static dnnl_status_t conv_prepare_dw_bf16(conv_state *c, const np_xnode *x,
                                         const conv_mds *m)
{
	int64_t nblk = (x->in[0]->dims[0] + CONV_DW_IMAGES - 1) / CONV_DW_IMAGES;
	conv_dw_geom_init(c, x, m);
	c->dw_part = malloc(sizeof(float) * (size_t)(nblk *
	             (c->dw.kh * c->dw.kw + 2) * c->dw.c + 1));
	c->bw_direct = c->dw_part != NULL;
	return c->dw_part ? dnnl_success : dnnl_out_of_memory;
}

/* A 1x1 convolution, stride 1, no padding, group 1, between
 * channels-last values of one data type, whose weights want a gradient
 * and whose bias (if any) does not? */
static bool conv_bw_matmul_fits(const np_xnode *x, const conv_mds *m)
{
	const np_rtensor *X = x->in[0], *W = x->in[1], *Y = x->out[0];
	if (X->rank != 4 || W->dims[1] != X->dims[1] || W->dims[2] != 1 ||
	    W->dims[3] != 1 || !W->needs_grad || (m->has_bias && x->in[2]->needs_grad))
		return false;
	for (int i = 0; i < 2; i++)
		if (m->strides[i] != 1 || m->dilates[i] != 0 || m->pad_l[i] || m->pad_r[i])
			return false;
	return np_rt_tag(X) == dnnl_acdb && np_rt_tag(Y) == dnnl_acdb &&
	       X->md.data_type == Y->md.data_type;
}

/* There X lies in memory as the matrix [N*H*W, C] and dY as [N*H*W, M],
 * so dW [M, C] = dY^T X is one matmul on the buffers as they are (the
 * kernel reads dY through a transposed view), writing ONNX's [M, C, 1, 1]
 * itself: no reorder into the layout of oneDNN's 1x1 backward-weights
 * kernel, whose bf16 AMX version also ran slower than its f32 one on
 * these shapes (MobileNet-V2: docs/performance.md, "bf16").  Not built
 * (dnnl_unimplemented) where oneDNN has only a reference matmul. */
static dnnl_status_t conv_prepare_bw_matmul(conv_state *c, const np_xnode *x,
                                           dnnl_engine_t eng)
{
	const np_rtensor *X = x->in[0], *Y = x->out[0];
	dnnl_dim_t rows = X->dims[0] * X->dims[2] * X->dims[3];
	dnnl_dim_t cin = X->dims[1], cout = Y->dims[1];
	dnnl_dims_t dy_d = {cout, rows}, dy_s = {1, cout};
	dnnl_dims_t x_d = {rows, cin}, x_s = {cin, 1};
	dnnl_dims_t w_d = {cout, cin}, w_s = {cin, 1};
	dnnl_memory_desc_t dy, xm, dw;
	dnnl_matmul_desc_t d;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_memory_desc_init_by_strides(&dy, 2, dy_d, Y->md.data_type, dy_s);
	dnnl_memory_desc_init_by_strides(&xm, 2, x_d, X->md.data_type, x_s);
	dnnl_memory_desc_init_by_strides(&dw, 2, w_d, dnnl_f32, w_s);
	dnnl_status_t s = dnnl_matmul_desc_init(&d, &dy, &xm, NULL, &dw);
	if (!s)
		s = dnnl_primitive_desc_create(&pd, &d, NULL, eng, NULL);
	if (!s && np_rt_pd_is_ref(pd))
		s = dnnl_unimplemented;
	if (!s)
		s = dnnl_primitive_create(&c->bwd_weights, pd);
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (!s)
		s = edge_init(&c->bw_ddst, eng, &dy, &dy, Y->grad, false, NULL);
	if (!s)
		s = edge_init(&c->bw_src, eng, &xm, &xm, X->data, false, NULL);
	if (!s)
		s = edge_init(&c->bw_dwei, eng, &dw, &dw, NULL, true, NULL);
	c->bw_matmul = !s;
	if (s) {
		edge_free(&c->bw_ddst);
		edge_free(&c->bw_src);
		edge_free(&c->bw_dwei);
		if (c->bwd_weights)
			dnnl_primitive_destroy(c->bwd_weights);
		c->bwd_weights = NULL;
	}
	return s;
}

/* dW (and dB when there is a bias) in one primitive; an input that needs
 * no gradient gets a sink. */
static dnnl_status_t conv_prepare_bwd_weights(conv_state *c, const np_xnode *x,
                                              const conv_mds *m,
                                              dnnl_engine_t eng)
{
	dnnl_convolution_desc_t d;
	dnnl_primitive_desc_t pd = NULL;
	if (conv_bw_matmul_fits(x, m) && conv_prepare_bw_matmul(c, x, eng) == dnnl_success)
		return dnnl_success;
	if (conv_dw_bf16_fits(x))
		return conv_prepare_dw_bf16(c, x, m);
	dnnl_status_t s = dnnl_dilated_convolution_backward_weights_desc_init(
		&d, dnnl_convolution_direct, &m->any_src, &m->any_wei,
		m->has_bias ? &m->bias : NULL, &m->any_dst, m->strides,
		m->dilates, m->pad_l, m->pad_r);
	if (!s)
		s = dnnl_primitive_desc_create(&pd, &d, NULL, eng,
		                               m->bf16 ? NULL : c->fwd_pd);
	if (!s && m->bf16)
		conv_bwd_weights_bf16(&pd, c, m, eng);
	if (!s && conv_dw_direct_fits(x) &&
	    (np_rt_pd_is_ref(pd) || pd_impl_has(pd, "gemm"))) {
		dnnl_primitive_desc_destroy(pd);
		return conv_prepare_dw_direct(c, x, m, eng);
	}
	if (!s)
		conv_bwd_weights_nxc(&pd, c, m, eng);
	if (!s) {
		c->ref |= np_rt_pd_is_ref(pd);
		s = dnnl_primitive_create(&c->bwd_weights, pd);
	}
	if (!s)
		s = edge_init(&c->bw_ddst, eng, &m->dst, pd_md(pd, dnnl_query_diff_dst_md),
		              x->out[0]->grad, false, c->bwd_data ? &c->bd_ddst : NULL);
	if (!s)
		s = edge_init(&c->bw_src, eng, &m->src, pd_md(pd, dnnl_query_src_md),
		              x->in[0]->data, false, &c->src);
	if (!s && x->in[1]->needs_grad)
		s = edge_init(&c->bw_dwei, eng, &m->wei, pd_md(pd, dnnl_query_diff_weights_md),
		              NULL, true, NULL);
	else if (!s)
		s = edge_sink(&c->bw_dwei, eng, pd_md(pd, dnnl_query_diff_weights_md));
	if (!s && m->has_bias)
		s = dnnl_memory_create(&c->dbias, &m->bias, eng,
		                       x->in[2]->needs_grad ? NULL : DNNL_MEMORY_ALLOCATE);
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	return s;
}

static np_status conv_build(np_xnode *x, np_rt *rt, const conv_mds *m,
                            np_error *err)
{
	conv_state *c = calloc(1, sizeof *c);
	if (!c)
		return np_rt_fail_node(err, NP_ERR_NOMEM, x, "out of memory");
	x->state = c;
	bool want_dx = x->in[0]->needs_grad;
	bool want_dw = x->in[1]->needs_grad || (m->has_bias && x->in[2]->needs_grad);
	dnnl_engine_t eng = np_rt_engine(rt);
	np_status st = np_rt_dnnl(conv_prepare_fwd(c, x, m, want_dx || want_dw, eng), x,
	                          "creating the convolution", err);
	if (!st && want_dx)
		st = np_rt_dnnl(conv_prepare_bwd_data(c, x, m, eng), x,
		                "creating the convolution backward data", err);
	if (!st && want_dw)
		st = np_rt_dnnl(conv_prepare_bwd_weights(c, x, m, eng), x,
		                "creating the convolution backward weights", err);
	return st;
}

static void conv_destroy(np_xnode *x);

/* Primitives on the neighbours' layouts; if that leaves a reference
 * kernel anywhere, oneDNN chooses every layout itself and the edges
 * reorder (ResNet-20's 8 -> 16 channel stride-2 conv: backward weights
 * on a plain src and a blocked dY ran 14x slower). */
static np_status conv_prepare(np_xnode *x, np_rt *rt, np_error *err)
{
	conv_geom g;
	conv_mds m;
	np_status st = conv_geometry(x, &g, err);
	if (st)
		return st;
	/* Depthwise convolutions beside f32 activations stay f32 in bf16
	 * runs: they are bound by memory, not arithmetic, so bf16 saves
	 * nothing there, while the conversions at their edges cost more
	 * than the convolution (MobileNet-V2: docs/performance.md, "bf16").
	 * On bf16 activations they read and write bf16. */
	conv_mds_init(&m, x, &g, np_rt_bf16(rt) &&
	              (!conv_depthwise(x) || np_rt_is_bf16(x->in[0])));
	st = conv_build(x, rt, &m, err);
	if (st || !m.fixed || !((conv_state *)x->state)->ref)
		return st;
	conv_destroy(x);
	conv_pass_md(&m.any_src, &m.src, false, dnnl_f32);
	conv_pass_md(&m.any_dst, &m.dst, false, dnnl_f32);
	conv_pass_md(&m.bf_src, &m.src, false, dnnl_bf16);
	conv_pass_md(&m.bf_dst, &m.dst, false, dnnl_bf16);
	m.bf_y = m.bf_dst;
	m.bf_dx = m.bf_src;
	return conv_build(x, rt, &m, err);
}

/* ------------------------------------------------------------- run */

static dnnl_status_t conv_run_fwd(const conv_state *c, dnnl_stream_t stream)
{
	dnnl_exec_arg_t args[4] = {
		{DNNL_ARG_SRC, c->src.mem}, {DNNL_ARG_WEIGHTS, c->wei.mem},
		{DNNL_ARG_DST, c->dst.mem}, {DNNL_ARG_BIAS, c->bias},
	};
	dnnl_status_t s = edge_run(&c->src, stream);
	if (!s)
		s = edge_run(&c->wei, stream);
	if (!s)
		s = dnnl_primitive_execute(c->fwd, stream, c->bias ? 4 : 3, args);
	if (!s)
		s = edge_run(&c->dst, stream);
	return s;
}

static np_status conv_forward(np_xnode *x, np_rt *rt, bool training,
                              np_error *err)
{
	(void)training;
	return np_rt_dnnl(conv_run_fwd(x->state, np_rt_stream(rt)), x,
	                  "running the convolution", err);
}

static dnnl_status_t conv_run_bwd_data(const conv_state *c, float *g,
                                       dnnl_stream_t stream)
{
	dnnl_exec_arg_t args[3] = {
		{DNNL_ARG_DIFF_DST, c->bd_ddst.mem},
		{DNNL_ARG_WEIGHTS, c->bd_wei.mem},
		{DNNL_ARG_DIFF_SRC, c->bd_dsrc.mem},
	};
	dnnl_status_t s = edge_bind(&c->bd_dsrc, g);
	if (!s)
		s = edge_run(&c->bd_wei, stream);
	if (!s)
		s = dnnl_primitive_execute(c->bwd_data, stream, 3, args);
	if (!s)
		s = edge_run(&c->bd_dsrc, stream);
	return s;
}

static dnnl_status_t conv_run_bwd_weights(const np_xnode *x,
                                          const conv_state *c, float *gw,
                                          float *gb, dnnl_stream_t stream)
{
	dnnl_exec_arg_t args[4] = {
		{DNNL_ARG_DIFF_DST, c->bw_ddst.mem},
		{DNNL_ARG_SRC, c->bw_src.mem},
		{DNNL_ARG_DIFF_WEIGHTS, c->bw_dwei.mem},
		{DNNL_ARG_DIFF_BIAS, c->dbias},
	};
	if (c->dw_part) {
		conv_dw_bw_bf16(&c->dw, x->in[0]->data,
		                (const void *)x->out[0]->grad, c->dw_part, gw, gb);
		return dnnl_success;
	}
	if (c->bw_direct) {
		void *xs = NULL, *dy = NULL;
		dnnl_status_t s = edge_run(&c->bw_ddst, stream);
		if (!s)
			s = edge_run(&c->bw_src, stream);
		if (!s)
			s = dnnl_stream_wait(stream);
		if (!s)
			s = dnnl_memory_get_data_handle(c->bw_src.mem, &xs);
		if (!s)
			s = dnnl_memory_get_data_handle(c->bw_ddst.mem, &dy);
		if (!s)
			conv_dw_bw_direct(&c->dw, xs, dy, gw, gb);
		return s;
	}
	if (c->bw_matmul) {              /* dW = dY^T X */
		args[0].arg = DNNL_ARG_SRC;
		args[1].arg = DNNL_ARG_WEIGHTS;
		args[2].arg = DNNL_ARG_DST;
	}
	dnnl_status_t s = edge_bind(&c->bw_dwei, gw);
	if (!s && gb)
		s = dnnl_memory_set_data_handle(c->dbias, gb);
	if (!s)
		s = edge_run(&c->bw_ddst, stream);
	if (!s)
		s = edge_run(&c->bw_src, stream);
	if (!s)
		s = dnnl_primitive_execute(c->bwd_weights, stream, c->dbias ? 4 : 3, args);
	if (!s)
		s = edge_run(&c->bw_dwei, stream);
	return s;
}

/* Runs the data and weights backward for whichever inputs need it; the
 * reorder of dY for backward data runs first because backward weights may
 * alias it. */
static dnnl_status_t conv_run_bwd(const np_xnode *x, np_rt *rt,
                                  np_rtensor **no_memory)
{
	const conv_state *c = x->state;
	dnnl_stream_t stream = np_rt_stream(rt);
	np_rtensor *X = x->in[0], *W = x->in[1];
	np_rtensor *B = x->n_in > 2 ? x->in[2] : NULL;
	dnnl_status_t s = dnnl_success;
	if (c->bwd_data) {
		float *g = np_rt_grad_target(rt, X);
		if (!g)
			return *no_memory = X, dnnl_out_of_memory;
		s = edge_bind(&c->bd_ddst, x->out[0]->grad);
		if (!s)
			s = edge_run(&c->bd_ddst, stream);
		if (!s)
			s = conv_run_bwd_data(c, g, stream);
		np_rt_grad_done(rt, X, g);
	}
	if (!s && (c->bwd_weights || c->bw_direct)) {
		float *gw = W->needs_grad ? np_rt_grad_target(rt, W) : NULL;
		float *gb = B && B->needs_grad ? np_rt_grad_target(rt, B) : NULL;
		if ((W->needs_grad && !gw) || (B && B->needs_grad && !gb))
			return *no_memory = W->needs_grad && !gw ? W : B, dnnl_out_of_memory;
		s = edge_bind(&c->bw_ddst, x->out[0]->grad);
		if (!s)
			s = conv_run_bwd_weights(x, c, gw, gb, stream);
		if (gw)
			np_rt_grad_done(rt, W, gw);
		if (gb)
			np_rt_grad_done(rt, B, gb);
	}
	return s;
}

static np_status conv_backward(np_xnode *x, np_rt *rt, np_error *err)
{
	np_rtensor *no_memory = NULL;
	dnnl_status_t s = conv_run_bwd(x, rt, &no_memory);
	if (no_memory)
		return np_rt_grad_oom(err, x, no_memory);
	return np_rt_dnnl(s, x, "running the convolution backward", err);
}

static void conv_destroy(np_xnode *x)
{
	conv_state *c = x->state;
	if (!c)
		return;
	/* Aliasing edges own nothing, so any order is safe. */
	edge *edges[] = {&c->src, &c->wei, &c->dst, &c->bd_ddst, &c->bd_wei,
	                 &c->bd_dsrc, &c->bw_ddst, &c->bw_src, &c->bw_dwei};
	for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
		edge_free(edges[i]);
	if (c->bias)
		dnnl_memory_destroy(c->bias);
	if (c->dbias)
		dnnl_memory_destroy(c->dbias);
	if (c->fwd)
		dnnl_primitive_destroy(c->fwd);
	if (c->bwd_data)
		dnnl_primitive_destroy(c->bwd_data);
	if (c->bwd_weights)
		dnnl_primitive_destroy(c->bwd_weights);
	if (c->fwd_pd)
		dnnl_primitive_desc_destroy(c->fwd_pd);
	free(c->dw_part);
	free(c);
	x->state = NULL;
}

/* W [M, C/group, k...]: output channels on axis 0; the input channels of
 * input 0's axis 1, each group of M/group outputs reading its own C/group. */
static bool conv_weight_geom(const np_node *n, int rank, const int64_t *dims,
                             np_weight_geom *g)
{
	int64_t group = np_node_attr_int(n, "group", 1);
	if (rank < 3 || group < 1)
		return false;
	*g = (np_weight_geom){.out_axis = 0, .out_ch = dims[0], .K = dims[1] * group,
	                      .groups = group, .in_axis = 1};
	return true;
}

/* Every weight once per output position: 2 x |W| x out pixels. */
static int64_t conv_flops(const np_node *n, const np_shape *const *in, int n_in,
                          const np_shape *out)
{
	(void)n;
	const np_shape *w = n_in > 1 ? in[1] : NULL;
	if (!w || !out || out->rank < 3 || w->rank != out->rank)
		return -1;
	int64_t wn = 1, pix = 1;
	for (int i = 0; i < w->rank; i++)
		wn = w->dims[i] < 0 || wn < 0 ? -1 : wn * w->dims[i];
	for (int i = 2; i < out->rank; i++)
		pix = out->dims[i] < 0 || pix < 0 ? -1 : pix * out->dims[i];
	return wn < 0 || pix < 0 ? -1 : 2 * wn * pix;
}

const np_op np_op_conv = {
	.name = "Conv",
	.infer = conv_infer,
	.prepare = conv_prepare,
	.forward = conv_forward,
	.backward = conv_backward,
	.destroy = conv_destroy,
	.layout = NP_LAYOUT_ANY,
	.bf16_values = np_rt_bf16_always,
	.flags = NP_OPF_LINEAR,
	.weight_input = 1,
	.bias_input = 2,
	.weight_geom = conv_weight_geom,
	/* X too: an initializer read as data is trained, as any constant
	 * operand of a linear op always was. */
	.trainable = 0x7,
	.flops = conv_flops,
	.out_overwritable = true,    /* backward: X, W and dY */
};
