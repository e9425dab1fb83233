/* exec.c - the planner and executor of the runtime; see rt.h. */
#include "rt.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

#define NP_RT_PLANS 4          /* cached input signatures */
/* Cached plans beyond this many bytes of buffers are freed before another
 * is built: each plan keeps every activation of its batch, so a
 * ResNet-18's training plan and the one for a test set's last, partial
 * batch (1.5 GB and 0.6 GB at batch 128) were alive at once.  Small
 * models keep all their plans; large ones rebuild a plan when the batch
 * size changes (a fraction of a second, a few times per epoch). */
#define NP_RT_PLAN_CACHE_BYTES ((size_t)256 << 20)
#define NP_RT_GRAD_SCRATCH 4   /* gradient buffers in flight at once */

typedef struct np_sig_input {
	int dtype, rank;
	int64_t dims[NP_RT_MAX_RANK];
	void *values;              /* non-float inputs: their content */
	size_t nbytes;
} np_sig_input;

struct np_plan {
	np_rtensor *t;             /* one per IR value, by value->id */
	int n_t;
	np_xnode *x;               /* one per IR node, graph order */
	int n_x;
	np_sig_input *sig;         /* one per graph input, graph order */
	float **grad_bufs;         /* gradient buffers, shared (np_plan_grads) */
	int n_grad_bufs;
	uint64_t last_used;
	size_t bytes;              /* activation and gradient buffers */
	size_t grad_bytes;         /* of which gradients */
	int n_in_place;            /* values written over their input (-v) */
	int n_fused;               /* of which by fused clamps (-v) */
	bool *kept_by_watch;       /* by value id: would have been overwritten
	                            * in place but for a watch (rt.h, WATCH) */
	bool trained;              /* last forward ran in NP_RT_TRAIN */
	unsigned char *fallback;   /* while building, by node: NP_FB_* for
	                            * its values (borrowed, np_plan_build) */
	bool fallback_added;       /* a prepare() asked for one more */
	bool ints_const;           /* non-float inputs are plan-time
	                            * constants, their values in sig
	                            * (np_plan_build) */
	/* The trainable parameters whose gradient is final once node i's
	 * backward has run: ready[ready_first[i] .. ready_first[i + 1]),
	 * parameter indices in increasing order; i == n_x: after the
	 * backward loop (parameters no node reads).  np_plan_ready. */
	int *ready_first;          /* n_x + 2 offsets */
	int *ready;
};

/* Fallbacks of a node's values while a plan is built (np_rt_pd_create):
 * as planned, f32 instead of bf16, plain instead of blocked. */
enum { NP_FB_NONE, NP_FB_F32, NP_FB_PLAIN };

typedef struct np_scratch {
	float *buf;
	size_t cap;
	bool in_use;
} np_scratch;

struct np_rt {
	np_model *m;
	dnnl_engine_t engine;
	dnnl_stream_t stream;
	int threads;
	np_param *params;
	int n_params;
	int *param_of;             /* value id -> param index, -1 */
	np_plan *plans[NP_RT_PLANS];
	int n_plans;
	np_plan *cur;
	np_plan *building;         /* the plan being prepared, or NULL */
	int *watch;                /* by value id: np_rt_watch() count */
	int n_watch;               /* the graph's values at np_rt_new() */
	dnnl_format_tag_t act;     /* layout of activations: aBcd16b, aBcd8b,
	                            * acdb, or undef for plain
	                            * (np_rt_probe_layout) */
	bool bf16;                 /* Conv/Gemm/MatMul read bf16 (PRECISION) */
	bool *fallback_logged;     /* by node index: reported once (-v) */
	int n_logged;
	uint64_t clock;
	np_scratch grad_scratch[NP_RT_GRAD_SCRATCH];
	np_rt_progress_fn progress;
	void *progress_ctx;
	np_rt_backward_hooks hooks;  /* np_rt_set_backward_hooks; zeroed:
	                              * none */
	void *scratch[8];
	size_t scratch_size[8];
};

/* ------------------------------------------------------------ helpers */

np_status np_rt_fail_node(np_error *err, np_status st, const np_xnode *x,
                          const char *fmt, ...)
{
	char what[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	return np_fail(err, st, "%s (node %s, op %s)", what,
	               x->node->name ? x->node->name : "?", x->node->op_type);
}

np_status np_rt_dnnl(dnnl_status_t s, const np_xnode *x, const char *what,
                     np_error *err)
{
	if (s == dnnl_success)
		return NP_OK;
	np_status st = s == dnnl_unimplemented ? NP_ERR_UNSUPPORTED : NP_ERR_INVALID;
	return np_rt_fail_node(err, st, x, "oneDNN %s failed (status %d)", what, (int)s);
}

dnnl_engine_t np_rt_engine(const np_rt *rt) { return rt->engine; }
np_model *np_rt_model(const np_rt *rt) { return rt->m; }
dnnl_stream_t np_rt_stream(const np_rt *rt) { return rt->stream; }
int np_rt_threads(const np_rt *rt) { return rt->threads; }

void np_rt_md_plain(dnnl_memory_desc_t *md, const np_rtensor *t)
{
	dnnl_dims_t dims, strides;
	int rank = t->rank > 0 ? t->rank : 1;
	for (int i = 0; i < rank; i++)
		dims[i] = t->rank > 0 ? t->dims[i] : 1;
	int64_t s = 1;
	for (int i = rank - 1; i >= 0; i--) {
		strides[i] = s;
		s *= dims[i] > 0 ? dims[i] : 1;
	}
	dnnl_memory_desc_init_by_strides(md, rank, dims, dnnl_f32, strides);
}

void np_rt_md(dnnl_memory_desc_t *md, const np_rtensor *t)
{
	if (t->blocked)
		*md = t->md;
	else
		np_rt_md_plain(md, t);
}

static dnnl_format_tag_t np_md_act_tag(const dnnl_memory_desc_t *md);
static dnnl_format_tag_t np_rt_choose_layout(dnnl_engine_t eng, bool bf16);

int np_rt_blk(const np_rtensor *t)
{
	if (!t->blocked || t->md.format_kind != dnnl_blocked ||
	    t->md.format_desc.blocking.inner_nblks != 1)
		return 1;
	return (int)t->md.format_desc.blocking.inner_blks[0];
}

bool np_rt_is_bf16(const np_rtensor *t)
{
	return t->blocked && t->md.data_type == dnnl_bf16;
}

dnnl_data_type_t np_rt_float_type(const np_rtensor *t)
{
	return np_rt_is_bf16(t) ? dnnl_bf16 : dnnl_f32;
}

size_t np_rt_elem_bytes(const np_rtensor *t)
{
	return np_rt_is_bf16(t) ? 2 : np_dtype_size(t->dtype);
}

bool np_rt_bf16_always(const np_xnode *x)
{
	(void)x;
	return true;
}

dnnl_format_tag_t np_rt_tag(const np_rtensor *t)
{
	return t->blocked ? np_md_act_tag(&t->md) : dnnl_format_tag_undef;
}

static int np_tag_block(dnnl_format_tag_t tag)
{
	return tag == dnnl_aBcd16b ? 16 : tag == dnnl_aBcd8b ? 8
	     : tag == dnnl_acdb ? 1 : 0;
}

int np_rt_block(const np_rt *rt) { return np_tag_block(rt->act); }

bool np_rt_bf16(const np_rt *rt) { return rt->bf16; }

/* oneDNN's ISA enum nests: every ISA's bits include its predecessors'. */
bool np_rt_bf16_supported(void)
{
	unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
	unsigned bf16 = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
	return (isa & bf16) == bf16;
}

np_status np_rt_set_bf16(np_rt *rt, bool on, np_error *err)
{
	if (on && !np_rt_bf16_supported())
		return np_fail(err, NP_ERR_UNSUPPORTED,
		               "bf16 needs a CPU with AVX512_BF16 or AMX (oneDNN runs %s)",
		               np_rt_isa_name());
	if (rt->n_plans > 0)
		return np_fail(err, NP_ERR_INVALID, "precision set after the first run");
	if (on != rt->bf16)            /* np_rt_new() probed for f32 */
		rt->act = np_rt_choose_layout(rt->engine, on);
	rt->bf16 = on;
	return NP_OK;
}

const char *np_rt_isa_name(void)
{
	switch (dnnl_get_effective_cpu_isa()) {
	case dnnl_cpu_isa_sse41: return "SSE4.1";
	case dnnl_cpu_isa_avx: return "AVX";
	case dnnl_cpu_isa_avx2: return "AVX2";
	case dnnl_cpu_isa_avx2_vnni: return "AVX2 VNNI";
	case dnnl_cpu_isa_avx512_core: return "AVX-512";
	case dnnl_cpu_isa_avx512_core_vnni: return "AVX-512 VNNI";
	case dnnl_cpu_isa_avx512_core_bf16: return "AVX-512 BF16";
	case dnnl_cpu_isa_avx512_core_amx: return "AVX-512 AMX";
	default: return "an x86-64 baseline";
	}
}

static bool np_rt_verbose;

void np_rt_set_verbose(bool on) { np_rt_verbose = on; }
bool np_rt_verbose_on(void) { return np_rt_verbose; }

bool np_rt_pd_is_ref(const_dnnl_primitive_desc_t pd)
{
	const char *impl = NULL;
	if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) !=
	    dnnl_success || !impl)
		return false;
	/* "ref:any", "bnorm_ref:any", "ref_fused...": oneDNN's reference
	 * kernels, the implementations of last resort. */
	return strncmp(impl, "ref", 3) == 0 || strstr(impl, "_ref") != NULL;
}

/* Does any input or output of x satisfy is? */
static bool np_xnode_any(const np_xnode *x, bool (*is)(const np_rtensor *))
{
	for (int i = 0; i < x->n_in; i++)
		if (x->in[i] && is(x->in[i]))
			return true;
	for (int k = 0; k < x->n_out; k++)
		if (x->out[k] && is(x->out[k]))
			return true;
	return false;
}

static bool np_rtensor_blocked(const np_rtensor *t) { return t->blocked; }

/* oneDNN's portable C++ kernels ("ref:any", "nspc_bnorm:any",
 * "simple:any"): no jit code for the descriptor. */
static bool np_rt_pd_is_generic(const_dnnl_primitive_desc_t pd)
{
	const char *impl = NULL;
	if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) !=
	    dnnl_success || !impl)
		return false;
	size_t n = strlen(impl);
	return np_rt_pd_is_ref(pd) || (n >= 4 && strcmp(impl + n - 4, ":any") == 0);
}

/* Asks for one more plan with node x's values at fallback level fb,
 * saying why under -v. */
static void np_rt_fall_back(np_rt *rt, const np_xnode *x,
                            const_dnnl_primitive_desc_t pd, unsigned char fb)
{
	np_plan *p = rt->building;
	int i = (int)(x - p->x);
	if (i < 0 || i >= p->n_x || p->fallback[i] >= fb)
		return;
	p->fallback[i] = fb;
	p->fallback_added = true;
	if (np_rt_verbose && i < rt->n_logged && !rt->fallback_logged[i]) {
		const char *impl = "?";
		dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
		fprintf(stderr, "nepenc: runtime: %s (%s): only %s for %s; its "
		        "values stay %s\n", x->node->name ? x->node->name : "?",
		        x->node->op_type, impl,
		        fb == NP_FB_PLAIN ? "the blocked layout" : "bf16 values",
		        fb == NP_FB_PLAIN ? "plain" : "f32");
		rt->fallback_logged[i] = fb == NP_FB_PLAIN;
	}
}

dnnl_status_t np_rt_pd_create(np_rt *rt, const np_xnode *x,
                              dnnl_primitive_desc_t *pd, const_dnnl_op_desc_t d,
                              const_dnnl_primitive_attr_t attr,
                              const_dnnl_primitive_desc_t hint)
{
	dnnl_status_t s = dnnl_primitive_desc_create(pd, d, attr, rt->engine, hint);
	if (s != dnnl_success || !rt->building)
		return s;
	/* Only a portable kernel for bf16 values (BatchNormalization of 24
	 * channels channels-last: nspc_bnorm:any, 100x its jit f32 kernel):
	 * the planner builds the plan again with this node's values f32;
	 * only a reference kernel for the blocked layout: plain
	 * (np_plan_build). */
	if (np_xnode_any(x, np_rt_is_bf16) && np_rt_pd_is_generic(*pd))
		np_rt_fall_back(rt, x, *pd, NP_FB_F32);
	else if (np_rt_pd_is_ref(*pd) && np_xnode_any(x, np_rtensor_blocked))
		np_rt_fall_back(rt, x, *pd, NP_FB_PLAIN);
	return s;
}

static void *np_aligned(size_t bytes)
{
	size_t n = (bytes + 63) & ~(size_t)63;
	void *p = aligned_alloc(64, n ? n : 64);
	return p;
}

void *np_rt_scratch(np_rt *rt, int slot, size_t bytes)
{
	if (slot < 0 || slot >= 8)
		return NULL;
	if (rt->scratch_size[slot] < bytes) {
		free(rt->scratch[slot]);
		rt->scratch[slot] = np_aligned(bytes);
		rt->scratch_size[slot] = rt->scratch[slot] ? bytes : 0;
	}
	return rt->scratch[slot];
}

float *np_rt_grad_target(np_rt *rt, np_rtensor *t)
{
	if (t->grad_writes == 0)
		return t->grad;
	size_t need = (size_t)t->nelem;
	for (int i = 0; i < NP_RT_GRAD_SCRATCH; i++) {
		np_scratch *s = &rt->grad_scratch[i];
		if (s->in_use)
			continue;
		if (s->cap < need) {
			free(s->buf);
			s->buf = np_aligned(need * sizeof(float));
			s->cap = s->buf ? need : 0;
			if (!s->buf)
				return NULL;
		}
		s->in_use = true;
		return s->buf;
	}
	return NULL;  /* more than NP_RT_GRAD_SCRATCH in flight: op bug */
}

np_status np_rt_grad_oom(np_error *err, const np_xnode *x, const np_rtensor *t)
{
	return np_rt_fail_node(err, NP_ERR_NOMEM, x, "out of memory for the gradient of '%s'",
	                       t->name ? t->name : "?");
}

/* g += add over n elements, in t's storage type. */
static void np_grad_add(const np_rtensor *t, void *g, const void *add, int64_t n)
{
	if (np_rt_is_bf16(t)) {
		uint16_t *d = g;
		const uint16_t *a = add;
#pragma omp parallel for simd if (n > 65536)
		for (int64_t i = 0; i < n; i++)
			d[i] = np_bf16_of(np_f32_of(d[i]) + np_f32_of(a[i]));
		return;
	}
	float *d = g;
	const float *a = add;
#pragma omp parallel for if (n > 65536)
	for (int64_t i = 0; i < n; i++)
		d[i] += a[i];
}

void np_rt_grad_done(np_rt *rt, np_rtensor *t, float *target)
{
	if (target && target != t->grad) {
		np_grad_add(t, t->grad, target, t->nelem);
		for (int i = 0; i < NP_RT_GRAD_SCRATCH; i++)
			if (rt->grad_scratch[i].buf == target)
				rt->grad_scratch[i].in_use = false;
	}
	t->grad_writes++;
}

/* ------------------------------------------------------------- params */

/* Is a float initializer a parameter PyTorch would train?  Each op says
 * which of its inputs are (np_op.trainable and the two masks after it):
 * weights and biases of Conv/Gemm/MatMul, BN and LayerNormalization
 * scale and shift, PRelu slopes, non-scalar Add and Mul operands (a
 * MatMul's bias, a position embedding, LayerNorm's weight and bias in
 * the decomposed pattern), tensors joined by Concat (a class token) and
 * tables read by Gather (embeddings, relative-position biases) are; BN running
 * statistics (state), Clip bounds, exponents and other scalar constants
 * are not: moving ReLU6's 6 or a Pow's 2 by SGD would change the
 * function.  An Identity passes the question on to the readers of its
 * output: exporters feed one de-duplicated initializer to several BNs
 * through Identity nodes (torchvision's untrained models: equal running
 * statistics), and a running variance reached that way is still state;
 * Transpose, Slice and Expand do the same (a weight exported as W.t()). */
static bool np_value_is_trainable(const np_value *v, int64_t nelem, int depth);

static bool np_use_is_trainable(const np_node *n, int index, int64_t nelem,
                                int depth)
{
	const np_op *op = np_node_op(n);
	if (!op)
		return false;
	if (np_op_input_bit(op->trainable, index))
		return true;
	if (np_op_input_bit(op->trainable_nonscalar, index))
		return nelem > 1;
	if (np_op_input_bit(op->trainable_via_output, index) && n->n_outputs == 1 &&
	    n->outputs[0])
		return depth < 16 && np_value_is_trainable(n->outputs[0], nelem, depth + 1);
	return false;
}

static bool np_value_is_trainable(const np_value *v, int64_t nelem, int depth)
{
	if (v->n_uses == 0)
		return false;
	for (int u = 0; u < v->n_uses; u++)
		if (v->uses[u].index < 0 ||
		    !np_use_is_trainable(v->uses[u].node, v->uses[u].index, nelem, depth))
			return false;
	return true;
}

static bool np_is_trainable(const np_value *v)
{
	return np_value_is_trainable(v, v->init->nelem, 0);
}

static np_status np_rt_init_params(np_rt *rt, np_error *err)
{
	np_graph *g = rt->m->graph;
	rt->param_of = malloc(sizeof(int) * ((size_t)g->n_values + 1));
	rt->params = calloc((size_t)g->n_initializers + 1, sizeof(np_param));
	if (!rt->param_of || !rt->params)
		return np_fail(err, NP_ERR_NOMEM, "out of memory for parameters");
	for (int i = 0; i < g->n_values; i++)
		rt->param_of[i] = -1;
	for (int i = 0; i < g->n_initializers; i++) {
		np_value *v = g->initializers[i];
		if (v->init->dtype != NP_FLOAT)
			continue;
		np_param *p = &rt->params[rt->n_params];
		p->value = v;
		p->nelem = v->init->nelem;
		p->trainable = np_is_trainable(v);
		p->decay = p->trainable;
		size_t bytes = sizeof(float) * (size_t)p->nelem;
		p->data = np_aligned(bytes);
		if (p->trainable) {
			p->grad = np_aligned(bytes);
			p->momentum = np_aligned(bytes);
		}
		if (!p->data || (p->trainable && (!p->grad || !p->momentum))) {
			/* Not counted in n_params yet: np_rt_free would not see it. */
			free(p->data);
			free(p->grad);
			free(p->momentum);
			memset(p, 0, sizeof *p);
			return np_fail(err, NP_ERR_NOMEM, "out of memory for parameter '%s'",
			               v->name);
		}
		if (bytes)
			memcpy(p->data, v->init->data, bytes);
		if (p->trainable) {
			memset(p->grad, 0, bytes);
			memset(p->momentum, 0, bytes);
		}
		rt->param_of[v->id] = rt->n_params++;
	}
	return NP_OK;
}

int np_rt_n_params(const np_rt *rt) { return rt->n_params; }

np_status np_rt_set_trainable(np_rt *rt, np_param *p, bool on, np_error *err)
{
	if (rt->n_plans > 0)
		return np_fail(err, NP_ERR_INVALID,
		               "parameter '%s' changed after planning", p->value->name);
	size_t bytes = sizeof(float) * (size_t)p->nelem;
	if (on && !p->grad) {
		p->grad = np_aligned(bytes);
		p->momentum = np_aligned(bytes);
		if (!p->grad || !p->momentum)
			return np_fail(err, NP_ERR_NOMEM, "out of memory for parameter '%s'",
			               p->value->name);
		memset(p->grad, 0, bytes);
		memset(p->momentum, 0, bytes);
	}
	p->trainable = on;
	p->decay = on;
	return NP_OK;
}
np_param *np_rt_param(np_rt *rt, int i) { return &rt->params[i]; }

np_param *np_rt_param_by_name(np_rt *rt, const char *name)
{
	np_value *v = np_graph_find(rt->m->graph, name);
	if (!v || rt->param_of[v->id] < 0)
		return NULL;
	return &rt->params[rt->param_of[v->id]];
}

/* ------------------------------------------------------------ rt life */

/* The activation layout a descriptor oneDNN chose stands for: nChw16c
 * or nChw8c (aBcd16b, aBcd8b), channels-last (acdb), or undef for
 * anything else (plain, or blocked over other dimensions). */
static dnnl_format_tag_t np_md_act_tag(const dnnl_memory_desc_t *md)
{
	if (!md || md->format_kind != dnnl_blocked || md->ndims != 4)
		return dnnl_format_tag_undef;
	const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
	const dnnl_dim_t *d = md->dims;
	if (b->inner_nblks == 1 && b->inner_idxs[0] == 1)
		return b->inner_blks[0] == 16 ? dnnl_aBcd16b
		     : b->inner_blks[0] == 8 ? dnnl_aBcd8b : dnnl_format_tag_undef;
	if (b->inner_nblks == 0 && b->strides[1] == 1 && b->strides[3] == d[1] &&
	    b->strides[2] == d[1] * d[3] && b->strides[0] == d[1] * d[2] * d[3])
		return dnnl_acdb;
	return dnnl_format_tag_undef;
}

static dnnl_format_tag_t np_pd_act_tag(const_dnnl_primitive_desc_t pd,
                                       dnnl_query_t what)
{
	return np_md_act_tag(dnnl_primitive_desc_query_md(pd, what, 0));
}

/* Which layout does this CPU's best convolution want for activations, in
 * f32 or, for bf16 runs, in bf16?  Asked of oneDNN itself, for a typical
 * 3x3 convolution of 64 channels, forward and both backward passes:
 * nChw16c on AVX-512, nChw8c on AVX2/AVX, channels-last for AMX's bf16
 * kernels, plain where the passes disagree or want plain (SSE4.1's
 * backward passes run on plain layouts through gemm).  No constant of one
 * ISA decides it.  Which values are then stored in bf16 is the planner's
 * choice (np_layout_bf16, rt.h PRECISION). */
static dnnl_format_tag_t np_rt_probe_layout(dnnl_engine_t eng, bool bf16)
{
	dnnl_dims_t src = {32, 64, 16, 16}, wei = {64, 64, 3, 3};
	dnnl_dims_t one = {1, 1}, pad = {1, 1}, zero = {0, 0};
	dnnl_data_type_t dt = bf16 ? dnnl_bf16 : dnnl_f32;
	dnnl_memory_desc_t s_md, w_md, d_md;
	dnnl_memory_desc_init_by_tag(&s_md, 4, src, dt, dnnl_format_tag_any);
	dnnl_memory_desc_init_by_tag(&w_md, 4, wei, dt, dnnl_format_tag_any);
	dnnl_memory_desc_init_by_tag(&d_md, 4, src, dt, dnnl_format_tag_any);
	dnnl_convolution_desc_t fd, bd, wd;
	dnnl_primitive_desc_t fpd = NULL, bpd = NULL, wpd = NULL;
	if (dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training,
	        dnnl_convolution_direct, &s_md, &w_md, NULL, &d_md, one, zero,
	        pad, pad) || dnnl_primitive_desc_create(&fpd, &fd, NULL, eng, NULL))
		return dnnl_format_tag_undef;
	dnnl_format_tag_t tag = np_pd_act_tag(fpd, dnnl_query_src_md);
	if (tag != np_pd_act_tag(fpd, dnnl_query_dst_md))
		tag = dnnl_format_tag_undef;
	if (tag && (dnnl_dilated_convolution_backward_data_desc_init(&bd,
	        dnnl_convolution_direct, &s_md, &w_md, &d_md, one, zero, pad, pad) ||
	    dnnl_primitive_desc_create(&bpd, &bd, NULL, eng, fpd) ||
	    np_pd_act_tag(bpd, dnnl_query_diff_src_md) != tag))
		tag = dnnl_format_tag_undef;
	if (tag && (dnnl_dilated_convolution_backward_weights_desc_init(&wd,
	        dnnl_convolution_direct, &s_md, &w_md, NULL, &d_md, one, zero, pad, pad) ||
	    dnnl_primitive_desc_create(&wpd, &wd, NULL, eng, fpd) ||
	    np_pd_act_tag(wpd, dnnl_query_src_md) != tag))
		tag = dnnl_format_tag_undef;
	if (tag && (np_rt_pd_is_ref(fpd) || np_rt_pd_is_ref(bpd) || np_rt_pd_is_ref(wpd)))
		tag = dnnl_format_tag_undef;
	if (wpd)
		dnnl_primitive_desc_destroy(wpd);
	if (bpd)
		dnnl_primitive_desc_destroy(bpd);
	dnnl_primitive_desc_destroy(fpd);
	return tag;
}

/* The CPU engine and the stream every primitive of rt runs on. */
static np_status np_rt_engine_init(np_rt *rt, np_error *err)
{
	if (dnnl_engine_create(&rt->engine, dnnl_cpu, 0) != dnnl_success ||
	    dnnl_stream_create(&rt->stream, rt->engine, dnnl_stream_default_flags) !=
	        dnnl_success)
		return np_fail(err, NP_ERR_UNSUPPORTED, "cannot create a oneDNN CPU engine");
	return NP_OK;
}

np_rt *np_rt_new(np_model *m, int threads, np_error *err)
{
	np_graph *g = m->graph;
	for (int i = 0; i < g->n_nodes; i++) {
		const np_node *n = g->nodes[i];
		if (!np_op_find(n->domain, n->op_type)) {
			np_fail(err, NP_ERR_UNSUPPORTED,
			        "op %s%s%s is not supported by the runtime (node %s, op %s)",
			        n->domain[0] ? n->domain : "", n->domain[0] ? "." : "",
			        n->op_type, n->name ? n->name : "?", n->op_type);
			return NULL;
		}
	}
	np_rt *rt = calloc(1, sizeof *rt);
	if (!rt) {
		np_fail(err, NP_ERR_NOMEM, "out of memory");
		return NULL;
	}
	rt->m = m;
	rt->threads = threads > 0 ? threads : omp_get_num_procs();
	omp_set_num_threads(rt->threads);
	if (np_rt_engine_init(rt, err) != NP_OK) {
		np_rt_free(rt);
		return NULL;
	}
	rt->act = np_rt_choose_layout(rt->engine, false);
	rt->n_logged = g->n_nodes;
	rt->fallback_logged = calloc((size_t)g->n_nodes + 1, sizeof(bool));
	rt->n_watch = g->n_values;
	rt->watch = calloc((size_t)g->n_values + 1, sizeof(int));
	if (!rt->fallback_logged || !rt->watch) {
		np_fail(err, NP_ERR_NOMEM, "out of memory");
		np_rt_free(rt);
		return NULL;
	}
	if (np_rt_init_params(rt, err) != NP_OK) {
		np_rt_free(rt);
		return NULL;
	}
	return rt;
}

/* A runtime with no model and no parameters, plain layouts: what the
 * ops' prepare() and forward() need to fold constants at plan time
 * (np_shapes_infer).  It leaves OpenMP's thread count alone. */
np_rt *np_rt_new_bare(np_error *err)
{
	np_rt *rt = calloc(1, sizeof *rt);
	if (!rt) {
		np_fail(err, NP_ERR_NOMEM, "out of memory");
		return NULL;
	}
	rt->threads = 1;
	if (np_rt_engine_init(rt, err) != NP_OK) {
		np_rt_free(rt);
		return NULL;
	}
	return rt;
}

struct np_plain_view;
static void np_plain_view_free(struct np_plain_view *v);

static void np_plan_free(np_plan *p)
{
	if (!p)
		return;
	/* A plan whose build failed part-way: x or t may be NULL. */
	for (int i = 0; p->x && i < p->n_x; i++) {
		np_xnode *x = &p->x[i];
		if (x->op && x->op->destroy)
			x->op->destroy(x);
		free(x->in);
		free(x->out);
	}
	for (int i = 0; p->t && i < p->n_t; i++) {
		np_rtensor *t = &p->t[i];
		if (!t->is_param && !t->borrowed && !t->in_place)
			free(t->data);
		np_plain_view_free(t->plain);
	}
	free(p->kept_by_watch);
	free(p->ready_first);
	free(p->ready);
	for (int i = 0; i < p->n_grad_bufs; i++)
		free(p->grad_bufs[i]);
	free(p->grad_bufs);
	if (p->sig)
		for (int i = 0; p->sig[i].rank >= 0; i++)
			free(p->sig[i].values);
	free(p->sig);
	free(p->t);
	free(p->x);
	free(p);
}

void np_rt_free(np_rt *rt)
{
	if (!rt)
		return;
	for (int i = 0; i < rt->n_plans; i++)
		np_plan_free(rt->plans[i]);
	for (int i = 0; i < rt->n_params; i++) {
		free(rt->params[i].data);
		free(rt->params[i].grad);
		free(rt->params[i].momentum);
		free(rt->params[i].second);
		free(rt->params[i].mask);
	}
	free(rt->params);
	free(rt->param_of);
	for (int i = 0; i < NP_RT_GRAD_SCRATCH; i++)
		free(rt->grad_scratch[i].buf);
	for (int i = 0; i < 8; i++)
		free(rt->scratch[i]);
	free(rt->fallback_logged);
	free(rt->watch);
	if (rt->stream)
		dnnl_stream_destroy(rt->stream);
	if (rt->engine)
		dnnl_engine_destroy(rt->engine);
	free(rt);
}

/* ----------------------------------------------------------- planning */

static const np_rt_input *np_find_input(const np_rt_input *in, int n,
                                        const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(in[i].name, name) == 0)
			return &in[i];
	return NULL;
}

static bool np_is_graph_input(const np_value *v)
{
	return v->is_input && !v->init;
}

/* Bind a graph input's tensor; checks it against the declared shape. */
static np_status np_bind_input(np_rtensor *t, const np_value *v,
                               const np_rt_input *in, bool ints_const,
                               np_error *err)
{
	if (!in)
		return np_fail(err, NP_ERR_INVALID, "graph input '%s' was not given",
		               v->name);
	if (in->rank < 0 || in->rank > NP_RT_MAX_RANK)
		return np_fail(err, NP_ERR_UNSUPPORTED, "input '%s' has rank %d",
		               v->name, in->rank);
	if (v->has_type && v->dtype != NP_UNDEFINED && v->dtype != in->dtype)
		return np_fail(err, NP_ERR_INVALID, "input '%s' is %s, the model expects %s",
		               v->name, np_dtype_name(in->dtype), np_dtype_name(v->dtype));
	if (v->has_shape) {
		bool ok = v->rank == in->rank;
		for (int i = 0; ok && i < v->rank; i++)
			ok = v->dims[i].value < 0 || v->dims[i].value == in->dims[i];
		if (!ok) {
			char want[256], got[256];
			size_t o = 0, q = 0;
			for (int i = 0; i < v->rank && o < sizeof want - 24; i++)
				o += (size_t)(v->dims[i].value < 0
				      ? snprintf(want + o, sizeof want - o, "%s%s", i ? "," : "",
				                 v->dims[i].param ? v->dims[i].param : "?")
				      : snprintf(want + o, sizeof want - o, "%s%lld", i ? "," : "",
				                 (long long)v->dims[i].value));
			want[o] = 0;
			for (int i = 0; i < in->rank && q < sizeof got - 24; i++)
				q += (size_t)snprintf(got + q, sizeof got - q, "%s%lld", i ? "," : "",
				                      (long long)in->dims[i]);
			got[q] = 0;
			return np_fail(err, NP_ERR_INVALID,
			               "input '%s' has shape [%s], the model expects [%s]",
			               v->name, got, want);
		}
	}
	t->dtype = in->dtype;
	t->rank = in->rank;
	memcpy(t->dims, in->dims, sizeof(int64_t) * (size_t)in->rank);
	/* Non-float inputs are data (token ids, masks: new values every
	 * run) unless the plan needs their values to exist (axes, shapes:
	 * then they are plan-time constants, their values part of the
	 * plan's signature; np_plan_build). */
	t->is_const = in->dtype != NP_FLOAT && ints_const;
	return NP_OK;
}

/* Checks an output's inferred shape and sets nelem; the buffer comes
 * later (np_alloc_data), when the planner knows whether it is needed. */
static np_status np_size_tensor(np_rtensor *t, const np_xnode *x, np_error *err)
{
	int64_t n = 1;
	for (int i = 0; i < t->rank; i++) {
		if (t->dims[i] < 0 || (t->dims[i] && n > INT64_MAX / t->dims[i]))
			return np_rt_fail_node(err, NP_ERR_INVALID, x,
			                       "output '%s' has an invalid shape", t->name);
		n *= t->dims[i];
	}
	size_t es = np_dtype_size(t->dtype);
	if (!es || t->dtype == NP_STRING)
		return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
		                       "output '%s' of type %s is not supported",
		                       t->name, np_dtype_name(t->dtype));
	if ((uint64_t)n > SIZE_MAX / es / 2)
		return np_rt_fail_node(err, NP_ERR_INVALID, x, "output '%s' is too large",
		                       t->name);
	t->nelem = n;
	return NP_OK;
}

static np_status np_alloc_data(np_rtensor *t, const np_xnode *x, np_error *err)
{
	size_t bytes = (size_t)t->nelem * np_rt_elem_bytes(t);
	t->data = np_aligned(bytes);
	if (!t->data)
		return np_rt_fail_node(err, NP_ERR_NOMEM, x, "out of memory for '%s'", t->name);
	memset(t->data, 0, bytes);
	return NP_OK;
}

/* Tensors for every value: parameters, constants, bound inputs. */
static np_status np_plan_values(np_rt *rt, np_plan *p, const np_rt_input *in,
                                int n_in, np_error *err)
{
	np_graph *g = rt->m->graph;
	for (int i = 0; i < g->n_values; i++) {
		np_value *v = g->values[i];
		np_rtensor *t = &p->t[i];
		t->name = v->name;
		if (v->init) {
			t->dtype = v->init->dtype;
			t->rank = v->init->rank;
			if (t->rank > NP_RT_MAX_RANK)
				return np_fail(err, NP_ERR_UNSUPPORTED,
				               "initializer '%s' has rank %d", v->name, t->rank);
			memcpy(t->dims, v->init->dims, sizeof(int64_t) * (size_t)t->rank);
			t->nelem = v->init->nelem;
			int pi = rt->param_of[v->id];
			if (pi >= 0) {
				np_param *pp = &rt->params[pi];
				t->is_param = true;
				t->data = pp->data;
				t->grad = pp->grad;
				t->needs_grad = pp->trainable;
			} else {
				t->is_const = true;
				t->borrowed = true;
				t->data = v->init->data;
			}
		} else if (np_is_graph_input(v)) {
			np_status st = np_bind_input(t, v, np_find_input(in, n_in, v->name),
			                             p->ints_const, err);
			if (st != NP_OK)
				return st;
			size_t es = np_dtype_size(t->dtype);
			int64_t n = np_dims_product(t->dims, t->rank);
			if (!es || n < 0)
				return np_fail(err, NP_ERR_UNSUPPORTED,
				               "input '%s' of type %s is not supported",
				               v->name, np_dtype_name(t->dtype));
			t->nelem = n;
			t->data = np_aligned((size_t)n * es);
			if (!t->data)
				return np_fail(err, NP_ERR_NOMEM, "out of memory for input '%s'", v->name);
			if (n > 0)
				memcpy(t->data, np_find_input(in, n_in, v->name)->data, (size_t)n * es);
		}
	}
	return NP_OK;
}

static np_status np_plan_node(np_rt *rt, np_plan *p, const np_node *n,
                              np_xnode *x, np_error *err)
{
	x->node = n;
	x->op = np_op_find(n->domain, n->op_type);
	x->n_in = n->n_inputs;
	x->n_out = n->n_outputs;
	x->in = calloc((size_t)n->n_inputs + 1, sizeof(np_rtensor *));
	x->out = calloc((size_t)n->n_outputs + 1, sizeof(np_rtensor *));
	if (!x->in || !x->out)
		return np_fail(err, NP_ERR_NOMEM, "out of memory planning");
	/* Shape reads only its input's shape, known at plan time, so it
	 * folds even when the input's values change every run. */
	bool all_const = true, any_grad = false;
	bool shape_only = (x->op->flags & NP_OPF_SHAPE_READ) != 0;
	for (int i = 0; i < n->n_inputs; i++) {
		if (!n->inputs[i])
			continue;
		x->in[i] = &p->t[n->inputs[i]->id];
		all_const &= x->in[i]->is_const || shape_only;
		any_grad |= x->in[i]->needs_grad && !shape_only;
	}
	for (int k = 0; k < n->n_outputs; k++)
		if (n->outputs[k])
			x->out[k] = &p->t[n->outputs[k]->id];
	np_status st = x->op->infer(x, err);
	for (int k = 0; st == NP_OK && k < n->n_outputs; k++)
		if (x->out[k])
			st = np_size_tensor(x->out[k], x, err);
	if (st != NP_OK)
		return st;
	if (all_const) {
		/* Runs now: later nodes' infer() may read its outputs. */
		for (int k = 0; st == NP_OK && k < n->n_outputs; k++)
			if (x->out[k])
				st = np_alloc_data(x->out[k], x, err);
		if (st != NP_OK)
			return st;
		x->folded = true;
		if (x->op->prepare && (st = x->op->prepare(x, rt, err)) != NP_OK)
			return st;
		if ((st = x->op->forward(x, rt, false, err)) != NP_OK)
			return st;
		dnnl_stream_wait(rt->stream);
		for (int k = 0; k < n->n_outputs; k++)
			if (x->out[k])
				x->out[k]->is_const = true;
		return NP_OK;
	}
	for (int i = 0; i < n->n_inputs; i++)
		if (x->in[i])
			x->in[i]->n_consumers++;
	for (int k = 0; k < n->n_outputs; k++) {
		np_rtensor *t = x->out[k];
		if (t && any_grad && t->dtype == NP_FLOAT)
			t->needs_grad = true;   /* buffer: np_plan_grads() */
	}
	return NP_OK;             /* buffers: np_plan_buffers() */
}

/* ------------------------------------------------------------ layouts */

/* Layout classes: values that must share one layout because an op reads
 * and writes them as one (rt.h, LAYOUT), as a union-find over value ids. */
typedef struct np_layout_sets {
	int *parent;
	bool *ok;                  /* by root: the class may be blocked */
	bool *bf16;                /* by root: stored in bf16 (PRECISION) */
} np_layout_sets;

static int np_set_find(np_layout_sets *ls, int i)
{
	while (ls->parent[i] != i)
		i = ls->parent[i] = ls->parent[ls->parent[i]];
	return i;
}

static void np_set_union(np_layout_sets *ls, int a, int b)
{
	a = np_set_find(ls, a);
	b = np_set_find(ls, b);
	if (a != b) {
		ls->parent[b] = a;
		ls->ok[a] = ls->ok[a] && ls->ok[b];
	}
}

static void np_set_refuse(np_layout_sets *ls, int i)
{
	ls->ok[np_set_find(ls, i)] = false;
}

/* May t itself live in the activation layout (block: its channel block,
 * 1 for channels-last)?  A 4-D float activation with whole channel
 * blocks (no padding: the buffer keeps nelem floats). */
static bool np_blockable(const np_rtensor *t, const np_value *v, int block)
{
	return block > 0 && t->dtype == NP_FLOAT && t->rank == 4 && t->dims[1] > 0 &&
	       t->dims[1] % block == 0 && t->nelem > 0 && !t->is_const &&
	       !t->is_param && !v->is_input && !v->is_output;
}

static bool np_same_dims(const np_rtensor *a, const np_rtensor *b)
{
	return a->rank == b->rank &&
	       memcmp(a->dims, b->dims, sizeof(int64_t) * (size_t)a->rank) == 0;
}

/* Ties the values of one node together, or refuses them plain. */
static void np_layout_node(np_layout_sets *ls, const np_plan *p,
                           const np_xnode *x)
{
	const np_rtensor *base = p->t;
	np_layout_rule rule = x->folded || p->fallback[x - p->x] == NP_FB_PLAIN
	                      ? NP_LAYOUT_PLAIN : x->op->layout;
	/* An elementwise op broadcasting a non-scalar operand (PRelu's or a
	 * Mul's [C,1,1]) indexes it as plain NCHW: all plain then. */
	for (int i = 0; rule == NP_LAYOUT_FLAT && i < x->n_in; i++)
		if (x->in[i] && x->in[i]->nelem != 1 && !np_same_dims(x->in[i], x->out[0]))
			rule = NP_LAYOUT_PLAIN;
	for (int i = 0; i < x->n_in; i++) {
		const np_rtensor *t = x->in[i];
		if (!t)
			continue;
		int id = (int)(t - base);
		bool main_in = i == 0 && x->out[0];
		if (rule == NP_LAYOUT_FLAT && np_same_dims(t, x->out[0]))
			np_set_union(ls, id, (int)(x->out[0] - base));
		else if (rule == NP_LAYOUT_FLAT)
			continue;       /* a scalar */
		else if (rule == NP_LAYOUT_SAME && main_in)
			np_set_union(ls, id, (int)(x->out[0] - base));
		else if (!(rule == NP_LAYOUT_ANY && main_in))
			np_set_refuse(ls, id);
	}
	for (int k = 0; k < x->n_out; k++) {
		if (!x->out[k])
			continue;
		if (k > 0 || rule == NP_LAYOUT_PLAIN)
			np_set_refuse(ls, (int)(x->out[k] - base));
	}
}

/* In bf16 runs a class of blocked values is stored in bf16 when every
 * node reading or writing one of them can work on it so (np_op.
 * bf16_values): between Conv, BatchNormalization, Relu, Add and the
 * pools the conversions at each Conv's edges go, and those memory-bound
 * ops move half the bytes.  A class any other op touches stays f32. */
static void np_layout_bf16(np_layout_sets *ls, const np_plan *p)
{
	bool *f32 = calloc((size_t)p->n_t + 1, sizeof(bool));
	if (!f32)
		return;                 /* all f32: slower, not wrong */
	for (int i = 0; i < p->n_x; i++) {
		const np_xnode *x = &p->x[i];
		if (x->folded || (p->fallback[i] == NP_FB_NONE &&
		                  x->op->bf16_values && x->op->bf16_values(x)))
			continue;
		for (int k = 0; k < x->n_in; k++)
			if (x->in[k])
				f32[np_set_find(ls, (int)(x->in[k] - p->t))] = true;
		for (int k = 0; k < x->n_out; k++)
			if (x->out[k])
				f32[np_set_find(ls, (int)(x->out[k] - p->t))] = true;
	}
	for (int i = 0; i < p->n_t; i++) {
		int root = np_set_find(ls, i);
		ls->bf16[root] = ls->ok[root] && !f32[root];
	}
	free(f32);
}

/* Chooses rt->act (what this CPU's convolutions want: LAYOUT)
 * for every class of values all of whose members and readers and writers
 * allow it; the rest stay plain. */
static np_status np_plan_layouts(np_rt *rt, np_plan *p, np_error *err)
{
	np_graph *g = rt->m->graph;
	np_layout_sets ls = {
		malloc(sizeof(int) * ((size_t)p->n_t + 1)),
		malloc(sizeof(bool) * ((size_t)p->n_t + 1)),
		calloc((size_t)p->n_t + 1, sizeof(bool)),
	};
	if (!ls.parent || !ls.ok || !ls.bf16) {
		free(ls.parent);
		free(ls.ok);
		free(ls.bf16);
		return np_fail(err, NP_ERR_NOMEM, "out of memory planning");
	}
	for (int i = 0; i < p->n_t; i++) {
		ls.parent[i] = i;
		ls.ok[i] = np_blockable(&p->t[i], g->values[i], np_tag_block(rt->act));
	}
	for (int i = 0; i < p->n_x; i++)
		np_layout_node(&ls, p, &p->x[i]);
	if (rt->bf16)
		np_layout_bf16(&ls, p);
	for (int i = 0; i < p->n_t; i++) {
		np_rtensor *t = &p->t[i];
		int root = np_set_find(&ls, i);
		if (!ls.ok[root])
			continue;
		dnnl_dims_t d = {t->dims[0], t->dims[1], t->dims[2], t->dims[3]};
		t->blocked = true;
		dnnl_memory_desc_init_by_tag(&t->md, 4, d,
		                             ls.bf16[root] ? dnnl_bf16 : dnnl_f32,
		                             rt->act);
	}
	free(ls.parent);
	free(ls.ok);
	free(ls.bf16);
	return NP_OK;
}

/* ---------------------------------------------------- in place, buffers */

/* Is the value of input i of x dead once x has run, so x may write its
 * output 0 over it (rt.h, PLANS)?  producer: node index by value id. */
static bool np_inplace_ok(const np_rt *rt, const np_plan *p, const np_xnode *x,
                          int i, const int *producer)
{
	const np_graph *g = rt->m->graph;
	const np_rtensor *in = x->in[i], *out = x->out[0];
	int id = (int)(in - p->t), src = producer[id];
	/* Its producer's backward must not want it back, and x must be its
	 * only reader (x's own backward does not read it: np_op.inplace). */
	if (src < 0 || !p->x[src].op->out_overwritable || in->n_consumers != 1)
		return false;
	if (in->is_const || in->is_param || in->borrowed ||
	    g->values[id]->is_output || g->values[out - p->t]->is_output)
		return false;
	if (in->dtype != out->dtype || in->nelem != out->nelem || in->nelem == 0)
		return false;
	return in->blocked == out->blocked &&
	       (!in->blocked || dnnl_memory_desc_equal(&in->md, &out->md));
}

/* The input whose buffer x's output 0 takes over, or NULL: allocate.
 * The first of the op's candidates whose value is dead and not watched. */
static np_rtensor *np_inplace_source(const np_rt *rt, np_plan *p,
                                     const np_xnode *x, const int *producer)
{
	unsigned may = x->op->inplace && x->n_out > 0 && x->out[0]
	               ? x->op->inplace(x) : 0;
	for (int i = 0; i < x->n_in && i < 32; i++) {
		if (!(may >> i & 1u) || !x->in[i] || !np_inplace_ok(rt, p, x, i, producer))
			continue;
		int id = (int)(x->in[i] - p->t);
		if (rt->watch[id] == 0)
			return x->in[i];
		p->kept_by_watch[id] = true;
	}
	return NULL;
}

/* The clamp node that node i may take over (rt.h, PLANS: fused clamps):
 * the only reader of its output 0, reading it as input 0, when the clamp
 * could write over that value in place (np_inplace_ok: i's backward
 * does not read it either) and it is not watched.  producer: as
 * np_inplace_ok, filled up to node i. */
static np_xnode *np_fusable_clamp(np_rt *rt, np_plan *p, int i,
                                  const int *producer)
{
	np_xnode *x = &p->x[i], *c = NULL;
	np_rtensor *y = x->n_out > 0 ? x->out[0] : NULL;
	float lo, hi;
	if (!x->op->absorbs_clamp || !y || y->n_consumers != 1)
		return NULL;
	for (int j = i + 1; j < p->n_x && !c; j++)
		if (!p->x[j].folded && p->x[j].n_in > 0 && p->x[j].in[0] == y)
			c = &p->x[j];
	if (!c || !c->op->clamp || c->n_out < 1 || !c->out[0] ||
	    !np_inplace_ok(rt, p, c, 0, producer) || !c->op->clamp(c, &lo, &hi) ||
	    !x->op->absorbs_clamp(x))
		return NULL;
	int id = (int)(y - p->t);
	if (rt->watch[id] > 0) {
		p->kept_by_watch[id] = true;
		return NULL;
	}
	return c;
}

/* Buffers of the values computed at run time, in graph order: each
 * output gets its own, or its input's when it may run in place or is a
 * fused clamp's. */
static np_status np_plan_buffers(np_rt *rt, np_plan *p, np_error *err)
{
	int *producer = malloc(sizeof(int) * ((size_t)p->n_t + 1));
	p->kept_by_watch = calloc((size_t)p->n_t + 1, sizeof(bool));
	if (!producer || !p->kept_by_watch) {
		free(producer);
		return np_fail(err, NP_ERR_NOMEM, "out of memory planning");
	}
	for (int i = 0; i < p->n_t; i++)
		producer[i] = -1;
	np_status st = NP_OK;
	for (int i = 0; st == NP_OK && i < p->n_x; i++) {
		np_xnode *x = &p->x[i];
		if (x->folded)
			continue;
		np_rtensor *src = x->absorbed ? x->in[0]
		                : np_inplace_source(rt, p, x, producer);
		p->n_fused += x->absorbed;
		if (src) {
			x->out[0]->data = src->data;
			x->out[0]->in_place = true;
			src->overwritten = true;
			p->n_in_place++;
		}
		for (int k = 0; st == NP_OK && k < x->n_out; k++) {
			if (!x->out[k])
				continue;
			producer[x->out[k] - p->t] = i;
			if (!x->out[k]->in_place)
				st = np_alloc_data(x->out[k], x, err);
		}
		if ((x->clamp_next = np_fusable_clamp(rt, p, i, producer)))
			x->clamp_next->absorbed = true;
	}
	free(producer);
	return st;
}

/* Would plan p make the same in-place choices under the current watches?
 * A watched value must not be overwritten, and a value kept only for a
 * watch taken back since would waste its buffer. */
static bool np_plan_watch_matches(const np_rt *rt, const np_plan *p)
{
	for (int i = 0; i < p->n_t && i < rt->n_watch; i++) {
		bool w = rt->watch[i] > 0;
		if ((w && p->t[i].overwritten) || (!w && p->kept_by_watch[i]))
			return false;
	}
	return true;
}

np_status np_rt_watch(np_rt *rt, const char *name, np_error *err)
{
	np_value *v = name ? np_graph_find(rt->m->graph, name) : NULL;
	if (!v || v->id >= rt->n_watch)
		return np_fail(err, NP_ERR_INVALID, "the model has no value '%s' to watch",
		               name ? name : "(null)");
	rt->watch[v->id]++;
	return NP_OK;
}

void np_rt_unwatch(np_rt *rt, const char *name)
{
	np_value *v = name ? np_graph_find(rt->m->graph, name) : NULL;
	if (v && v->id < rt->n_watch && rt->watch[v->id] > 0)
		rt->watch[v->id]--;
}

static np_status np_plan_signature(np_rt *rt, np_plan *p, const np_rt_input *in,
                                   int n_in)
{
	np_graph *g = rt->m->graph;
	p->sig = calloc((size_t)g->n_inputs + 1, sizeof(np_sig_input));
	if (!p->sig)
		return NP_ERR_NOMEM;
	/* Terminated from the start: np_plan_free stops at the first entry
	 * not filled if an allocation below fails. */
	for (int i = 0; i <= g->n_inputs; i++)
		p->sig[i].rank = -1;
	int k = 0;
	for (int i = 0; i < g->n_inputs; i++) {
		if (!np_is_graph_input(g->inputs[i]))
			continue;
		const np_rt_input *x = np_find_input(in, n_in, g->inputs[i]->name);
		np_sig_input *s = &p->sig[k++];
		s->dtype = x->dtype;
		s->rank = x->rank;
		memcpy(s->dims, x->dims, sizeof(int64_t) * (size_t)x->rank);
		if (x->dtype != NP_FLOAT && p->ints_const) {
			s->nbytes = (size_t)np_dims_product(x->dims, x->rank) * np_dtype_size(x->dtype);
			s->values = malloc(s->nbytes ? s->nbytes : 1);
			if (!s->values)
				return NP_ERR_NOMEM;
			/* An empty input (ReduceSum's axes []) may have no data. */
			if (s->nbytes)
				memcpy(s->values, x->data, s->nbytes);
		}
	}
	p->sig[k].rank = -1;
	return NP_OK;
}

static bool np_plan_matches(const np_rt *rt, const np_plan *p,
                            const np_rt_input *in, int n_in)
{
	const np_graph *g = rt->m->graph;
	int k = 0;
	for (int i = 0; i < g->n_inputs; i++) {
		if (!np_is_graph_input(g->inputs[i]))
			continue;
		const np_rt_input *x = np_find_input(in, n_in, g->inputs[i]->name);
		const np_sig_input *s = &p->sig[k++];
		if (!x || s->rank != x->rank || s->dtype != x->dtype ||
		    memcmp(s->dims, x->dims, sizeof(int64_t) * (size_t)x->rank) != 0)
			return false;
		if (s->values && s->nbytes && memcmp(s->values, x->data, s->nbytes) != 0)
			return false;
	}
	return np_plan_watch_matches(rt, p);
}

/* ------------------------------------------------------ gradient buffers */

/* When a value's gradient is alive, in node indices: backward runs the
 * nodes in reverse, so it is first written by its last reader's backward
 * (or by the loss, for a graph output: to the end) and last read by its
 * writer's backward. */
typedef struct np_grad_span {
	int first, last;           /* writer's index, last reader's index */
	int tensor;
} np_grad_span;

static int np_span_cmp(const void *a, const void *b)
{
	const np_grad_span *x = a, *y = b;
	if (x->first != y->first)
		return x->first < y->first ? -1 : 1;
	return (x->tensor > y->tensor) - (x->tensor < y->tensor);
}

/* Spans of the values with a gradient: those a parameter depends on,
 * and graph outputs (the loss writes theirs). */
static int np_grad_spans(const np_rt *rt, const np_plan *p, np_grad_span *span)
{
	const np_graph *g = rt->m->graph;
	int n = 0, *at = malloc(sizeof(int) * ((size_t)p->n_t + 1));
	if (!at)
		return -1;
	/* A fused clamp's input has no gradient; its output's is read by
	 * the node that took the clamp over (rt.h, PLANS). */
	for (int i = 0; i < p->n_t; i++)
		at[i] = -1;
	for (int i = 0; i < p->n_x; i++)
		if (p->x[i].clamp_next)
			at[p->x[i].out[0] - p->t] = -2;
	for (int i = 0; i < p->n_t; i++) {
		const np_rtensor *t = &p->t[i];
		if (at[i] == -2) {
			at[i] = -1;
			continue;
		}
		if (t->is_param || t->dtype != NP_FLOAT ||
		    !(t->needs_grad || g->values[i]->is_output))
			continue;
		at[i] = n;
		span[n++] = (np_grad_span){0, 0, i};
	}
	for (int i = 0; i < p->n_x; i++) {
		const np_xnode *x = &p->x[i];
		for (int k = 0; k < x->n_out; k++)
			if (x->out[k] && at[x->out[k] - p->t] >= 0)
				span[at[x->out[k] - p->t]].first = span[at[x->out[k] - p->t]].last = i;
		for (int k = 0; !x->folded && k < x->n_in; k++)
			if (x->in[k] && at[x->in[k] - p->t] >= 0)
				span[at[x->in[k] - p->t]].last = i;
	}
	for (int i = 0; i < g->n_outputs; i++)
		if (at[g->outputs[i]->id] >= 0)
			span[at[g->outputs[i]->id]].last = p->n_x;
	for (int i = 0; i < p->n_x; i++) {
		const np_xnode *c = p->x[i].clamp_next;
		if (c && at[c->out[0] - p->t] >= 0)
			span[at[c->out[0] - p->t]].first = i;
	}
	free(at);
	return n;
}

/* One buffer per group of values whose gradients are never alive at
 * once (linear scan over the spans), each as large as its largest
 * value: a training step's gradient memory is the widest cut of the
 * graph rather than the sum over all values. */
static np_status np_plan_grads(np_rt *rt, np_plan *p, np_error *err)
{
	np_grad_span *span = malloc(sizeof *span * ((size_t)p->n_t + 1));
	int *slot_of = malloc(sizeof(int) * ((size_t)p->n_t + 1));
	int *slot_free_after = malloc(sizeof(int) * ((size_t)p->n_t + 1));
	int64_t *slot_size = malloc(sizeof(int64_t) * ((size_t)p->n_t + 1));
	int n = span ? np_grad_spans(rt, p, span) : -1, n_slots = 0;
	np_status st = NP_OK;
	if (n < 0 || !slot_of || !slot_free_after || !slot_size) {
		st = np_fail(err, NP_ERR_NOMEM, "out of memory for gradients");
		goto out;
	}
	qsort(span, (size_t)n, sizeof *span, np_span_cmp);
	for (int i = 0; i < n; i++) {
		const np_rtensor *t = &p->t[span[i].tensor];
		int64_t need = t->nelem * (int64_t)np_rt_elem_bytes(t);   /* bytes */
		int best = -1;
		for (int k = 0; k < n_slots; k++) {
			if (slot_free_after[k] >= span[i].first)
				continue;       /* still alive (spans are inclusive) */
			bool fits = slot_size[k] >= need, best_fits = best >= 0 &&
			            slot_size[best] >= need;
			if (best < 0 || (fits && (!best_fits || slot_size[k] < slot_size[best])) ||
			    (!fits && !best_fits && slot_size[k] > slot_size[best]))
				best = k;
		}
		if (best < 0) {
			best = n_slots++;
			slot_size[best] = 0;
		}
		if (slot_size[best] < need)
			slot_size[best] = need;
		slot_free_after[best] = span[i].last;
		slot_of[span[i].tensor] = best;
	}
	p->grad_bufs = calloc((size_t)n_slots + 1, sizeof(float *));
	bool all = p->grad_bufs != NULL;
	/* Every slot is counted, allocated or not: np_plan_free frees them
	 * all (free(NULL) is harmless) after a failure part-way. */
	for (int k = 0; p->grad_bufs && k < n_slots; k++) {
		p->grad_bufs[k] = np_aligned((size_t)slot_size[k] + sizeof(float));
		p->grad_bytes += (size_t)slot_size[k] + sizeof(float);
		p->n_grad_bufs++;
		all &= p->grad_bufs[k] != NULL;
	}
	if (!all) {
		st = np_fail(err, NP_ERR_NOMEM, "out of memory for gradients");
		goto out;
	}
	for (int i = 0; i < n; i++)
		p->t[span[i].tensor].grad = p->grad_bufs[slot_of[span[i].tensor]];
out:
	free(span);
	free(slot_of);
	free(slot_free_after);
	free(slot_size);
	return st;
}

/* ------------------------------------------ when a gradient is final */

/* node_of[i]: the node after whose backward parameter i's gradient is
 * final: backward runs the nodes in reverse and every node reading a
 * trainable parameter adds into its gradient, so it is the lowest-index
 * node reading it; n_nodes when none does (np_rt_backward zeroes those
 * after its loop); -1 for a parameter that is not trainable.  With a
 * plan, its folded nodes do not count (they run no backward); without
 * one, the nodes the planner folds whatever the batch (those that only
 * read shapes: a parameter is never a plan-time constant) do not. */
static void np_ready_nodes(const np_rt *rt, const np_plan *p, int *node_of)
{
	const np_graph *g = rt->m->graph;
	for (int i = 0; i < rt->n_params; i++)
		node_of[i] = rt->params[i].trainable ? g->n_nodes : -1;
	for (int j = 0; j < g->n_nodes; j++) {
		const np_node *n = g->nodes[j];
		if (p ? p->x[j].folded : (np_node_flags(n) & NP_OPF_SHAPE_READ) != 0)
			continue;
		for (int k = 0; k < n->n_inputs; k++) {
			int pi = n->inputs[k] ? rt->param_of[n->inputs[k]->id] : -1;
			if (pi >= 0 && node_of[pi] > j)
				node_of[pi] = j;
		}
	}
}

/* The plan's ready lists (struct np_plan), for np_rt_backward's hooks. */
static np_status np_plan_ready(np_rt *rt, np_plan *p, np_error *err)
{
	int *node_of = malloc(sizeof(int) * ((size_t)rt->n_params + 1));
	p->ready_first = calloc((size_t)p->n_x + 2, sizeof(int));
	p->ready = malloc(sizeof(int) * ((size_t)rt->n_params + 1));
	if (!node_of || !p->ready_first || !p->ready) {
		free(node_of);
		return np_fail(err, NP_ERR_NOMEM, "out of memory planning");
	}
	np_ready_nodes(rt, p, node_of);
	/* Counting sort by node: counts, offsets, then fill in order. */
	for (int i = 0; i < rt->n_params; i++)
		if (node_of[i] >= 0)
			p->ready_first[node_of[i] + 1]++;
	for (int j = 0; j <= p->n_x; j++)
		p->ready_first[j + 1] += p->ready_first[j];
	int *fill = malloc(sizeof(int) * ((size_t)p->n_x + 2));
	if (!fill) {
		free(node_of);
		return np_fail(err, NP_ERR_NOMEM, "out of memory planning");
	}
	memcpy(fill, p->ready_first, sizeof(int) * ((size_t)p->n_x + 2));
	for (int i = 0; i < rt->n_params; i++)
		if (node_of[i] >= 0)
			p->ready[fill[node_of[i]]++] = i;
	free(fill);
	free(node_of);
	return NP_OK;
}

static bool np_env_on(const char *name)
{
	const char *e = getenv(name);
	return e && *e && strcmp(e, "0") != 0;
}

/* NEPENC_PLAIN_LAYOUT=1 keeps every activation plain and
 * NEPENC_CHANNELS_LAST=1 puts them in channels-last whatever the CPU's
 * convolutions want: switches for comparing the paths (tests,
 * benchmarks), not user settings.  Otherwise oneDNN decides. */
static dnnl_format_tag_t np_rt_choose_layout(dnnl_engine_t eng, bool bf16)
{
	if (np_env_on("NEPENC_PLAIN_LAYOUT"))
		return dnnl_format_tag_undef;
	if (np_env_on("NEPENC_CHANNELS_LAST"))
		return dnnl_acdb;
	return np_rt_probe_layout(eng, bf16);
}

static np_plan *np_plan_build_once(np_rt *rt, const np_rt_input *in, int n_in,
                                   unsigned char *fallback, bool ints_const,
                                   np_error *err)
{
	np_graph *g = rt->m->graph;
	np_plan *p = calloc(1, sizeof *p);
	if (!p) {
		np_fail(err, NP_ERR_NOMEM, "out of memory planning");
		return NULL;
	}
	p->n_t = g->n_values;
	p->n_x = g->n_nodes;
	p->fallback = fallback;
	p->ints_const = ints_const;
	p->t = calloc((size_t)p->n_t + 1, sizeof(np_rtensor));
	p->x = calloc((size_t)p->n_x + 1, sizeof(np_xnode));
	np_status st = p->t && p->x ? NP_OK : NP_ERR_NOMEM;
	if (st == NP_OK)
		st = np_plan_values(rt, p, in, n_in, err);
	for (int i = 0; st == NP_OK && i < g->n_nodes; i++)
		st = np_plan_node(rt, p, g->nodes[i], &p->x[i], err);
	if (st == NP_OK && rt->act != dnnl_format_tag_undef)
		st = np_plan_layouts(rt, p, err);
	if (st == NP_OK)
		st = np_plan_buffers(rt, p, err);
	if (st == NP_OK)
		st = np_plan_grads(rt, p, err);
	if (st == NP_OK)
		st = np_plan_ready(rt, p, err);
	rt->building = p;
	for (int i = 0; st == NP_OK && i < g->n_nodes; i++)
		if (!p->x[i].folded && p->x[i].op->prepare)
			st = p->x[i].op->prepare(&p->x[i], rt, err);
	rt->building = NULL;
	if (st == NP_OK && np_plan_signature(rt, p, in, n_in) != NP_OK)
		st = np_fail(err, NP_ERR_NOMEM, "out of memory planning");
	if (st != NP_OK) {
		if (err->status == NP_OK)
			np_fail(err, st, "out of memory planning");
		np_plan_free(p);
		return NULL;
	}
	p->fallback = NULL;
	for (int i = 0; i < p->n_t; i++)
		if (!p->t[i].is_param && !p->t[i].borrowed && !p->t[i].in_place &&
		    p->t[i].data)
			p->bytes += (size_t)p->t[i].nelem * np_rt_elem_bytes(&p->t[i]);
	p->bytes += p->grad_bytes;
	return p;
}

/* -v: what a new plan holds, for reading a run's memory. */
static void np_plan_say(const np_plan *p)
{
	char shape[160];
	size_t o = 0;
	for (int i = 0; p->sig[i].rank >= 0 && o < sizeof shape - 48; i++)
		for (int d = 0; d < p->sig[i].rank && o < sizeof shape - 48; d++)
			o += (size_t)snprintf(shape + o, sizeof shape - o, "%s%lld",
			                      d ? "x" : i ? ", " : "", (long long)p->sig[i].dims[d]);
	shape[o] = 0;
	fprintf(stderr, "nepenc: runtime: plan for %s: %.1f MiB of activations "
	        "(%d written in place, %d by fused clamps), %.1f MiB of gradients "
	        "in %d buffers\n", shape,
	        (double)(p->bytes - p->grad_bytes) / 1048576.0, p->n_in_place, p->n_fused,
	        (double)p->grad_bytes / 1048576.0, p->n_grad_bufs);
}

/* Builds the plan; when an op found only a reference kernel for a blocked
 * value (np_rt_pd_create), builds it again with that op's values plain.
 * Every round adds at least one node, so this ends. */
static np_plan *np_plan_build_layouts(np_rt *rt, const np_rt_input *in,
                                      int n_in, bool ints_const, np_error *err)
{
	int n = rt->m->graph->n_nodes;
	unsigned char *fallback = calloc((size_t)n + 1, 1);
	if (!fallback) {
		np_fail(err, NP_ERR_NOMEM, "out of memory planning");
		return NULL;
	}
	np_plan *p = NULL;
	for (int round = 0; round <= 2 * n; round++) {
		p = np_plan_build_once(rt, in, n_in, fallback, ints_const, err);
		if (!p)
			break;
		if (!p->fallback_added)
			break;
		np_plan_free(p);
		p = NULL;
	}
	free(fallback);
	return p;
}

/* Do the values of a non-float model input (token ids, masks) reach an
 * input whose values the plan needs (np_op.plan_values: axes, a shape,
 * Range's bounds)?  Forward over the nodes in order: a value computed
 * from such an input's values carries them on; Shape reads only the
 * shape, which is in every plan's signature.  NOMEM: false with
 * *nomem set. */
static bool np_ints_reach_plan_values(const np_graph *g, bool *nomem)
{
	bool *carries = calloc((size_t)g->n_values + 1, sizeof *carries), hit = false;
	*nomem = !carries;
	if (!carries)
		return false;
	for (int i = 0; i < g->n_inputs; i++)
		if (np_is_graph_input(g->inputs[i]) && g->inputs[i]->dtype != NP_FLOAT)
			carries[g->inputs[i]->id] = true;
	for (int k = 0; k < g->n_nodes && !hit; k++) {
		const np_node *n = g->nodes[k];
		const np_op *op = np_node_op(n);
		if (!op || (op->flags & NP_OPF_SHAPE_READ))
			continue;
		bool in = false;
		for (int i = 0; i < n->n_inputs; i++) {
			if (!n->inputs[i] || !carries[n->inputs[i]->id])
				continue;
			hit |= np_op_input_bit(op->plan_values, i);
			in = true;
		}
		for (int o = 0; in && o < n->n_outputs; o++)
			if (n->outputs[o])
				carries[n->outputs[o]->id] = true;
	}
	free(carries);
	return hit;
}

/* Non-float model inputs are planned as data, so that a batch of new
 * token ids reuses the plan (only their shapes are in its signature;
 * a Shape -> Range chain of their shapes still folds), unless the graph
 * needs their values to plan (np_ints_reach_plan_values): then they are
 * plan-time constants, their values part of the signature.  Decided from
 * the graph (a walk over its nodes, small beside building a plan). */
static np_plan *np_plan_build(np_rt *rt, const np_rt_input *in, int n_in,
                              np_error *err)
{
	bool nomem, ints_const = np_ints_reach_plan_values(rt->m->graph, &nomem);
	if (nomem) {
		np_fail(err, NP_ERR_NOMEM, "out of memory planning the graph");
		return NULL;
	}
	return np_plan_build_layouts(rt, in, n_in, ints_const, err);
}

/* ---------------------------------------------------------- executing */

/* Hands the pages of freed plans back to the system.  glibc raises its
 * mmap threshold to the size of a freed mmapped block (up to 32 MiB), so
 * after one plan is freed the next plan's smaller buffers come from the
 * heap, whose freed middle glibc keeps: ResNet-18's finetune (the test
 * set's last partial batch, then training again) kept about 220 MiB of
 * freed plans resident. */
static void np_release_freed(void)
{
#ifdef __GLIBC__
	malloc_trim(0);
#endif
}

static np_plan *np_rt_get_plan(np_rt *rt, const np_rt_input *in, int n_in,
                               np_error *err)
{
	for (int i = 0; i < rt->n_plans; i++)
		if (np_plan_matches(rt, rt->plans[i], in, n_in))
			return rt->plans[i];
	size_t cached = 0;
	for (int i = 0; i < rt->n_plans; i++)
		cached += rt->plans[i]->bytes;
	if (cached > NP_RT_PLAN_CACHE_BYTES) {
		for (int i = 0; i < rt->n_plans; i++)
			np_plan_free(rt->plans[i]);
		rt->n_plans = 0;
		rt->cur = NULL;
		np_release_freed();
	}
	np_plan *p = np_plan_build(rt, in, n_in, err);
	if (!p)
		return NULL;
	if (np_rt_verbose)
		np_plan_say(p);
	if (rt->n_plans == NP_RT_PLANS) {
		int lru = 0;
		for (int i = 1; i < rt->n_plans; i++)
			if (rt->plans[i]->last_used < rt->plans[lru]->last_used)
				lru = i;
		if (rt->cur == rt->plans[lru])
			rt->cur = NULL;
		np_plan_free(rt->plans[lru]);
		rt->plans[lru] = rt->plans[--rt->n_plans];
	}
	rt->plans[rt->n_plans++] = p;
	return p;
}

np_status np_rt_run(np_rt *rt, const np_rt_input *in, int n_in,
                    np_rt_mode mode, np_error *err)
{
	np_graph *g = rt->m->graph;
	/* OpenMP's thread count is per process: another runtime (linearize's
	 * single-threaded probe) may have changed it since this one ran. */
	omp_set_num_threads(rt->threads);
	np_plan *p = np_rt_get_plan(rt, in, n_in, err);
	if (!p)
		return err->status;
	p->last_used = ++rt->clock;
	rt->cur = p;
	/* Fresh input data (a matching plan may hold older data); inputs
	 * that are plan-time constants matched by value. */
	for (int i = 0; i < g->n_inputs; i++) {
		np_value *v = g->inputs[i];
		if (!np_is_graph_input(v))
			continue;
		np_rtensor *t = &p->t[v->id];
		if (!t->is_const && t->nelem > 0)
			memcpy(t->data, np_find_input(in, n_in, v->name)->data,
			       np_dtype_size(t->dtype) * (size_t)t->nelem);
	}
	bool training = mode == NP_RT_TRAIN;
	for (int i = 0; i < p->n_x; i++) {
		np_xnode *x = &p->x[i];
		if (x->folded || x->absorbed)
			continue;
		np_status st = x->op->forward(x, rt, training, err);
		if (st != NP_OK)
			return st;
	}
	dnnl_stream_wait(rt->stream);
	p->trained = training;
	return NP_OK;
}

int np_rt_n_outputs(const np_rt *rt)
{
	return rt->m->graph->n_outputs;
}

const np_rtensor *np_rt_output(const np_rt *rt, int i)
{
	if (!rt->cur || i < 0 || i >= rt->m->graph->n_outputs)
		return NULL;
	return &rt->cur->t[rt->m->graph->outputs[i]->id];
}

dnnl_status_t np_rt_reorder_make(dnnl_engine_t eng, const dnnl_memory_desc_t *from,
                                 const dnnl_memory_desc_t *to, dnnl_primitive_t *r)
{
	dnnl_primitive_desc_t pd;
	dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, from, eng, to, eng, NULL);
	if (s)
		return s;
	s = dnnl_primitive_create(r, pd);
	dnnl_primitive_desc_destroy(pd);
	return s;
}

dnnl_status_t np_rt_reorder_run(dnnl_primitive_t r, dnnl_memory_t from,
                                dnnl_memory_t to, dnnl_stream_t stream)
{
	dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
	return dnnl_primitive_execute(r, stream, 2, args);
}

/* np_rt_value()'s plain copy of a blocked value, with its reorder made
 * once per plan (profiling asks for the same values every batch). */
struct np_plain_view {
	np_rtensor t;
	dnnl_memory_t from, to;
	dnnl_primitive_t reorder;
};

static void np_plain_view_free(struct np_plain_view *v)
{
	if (!v)
		return;
	if (v->reorder)
		dnnl_primitive_destroy(v->reorder);
	if (v->to)
		dnnl_memory_destroy(v->to);
	if (v->from)
		dnnl_memory_destroy(v->from);
	free(v->t.data);
	free(v);
}

static struct np_plain_view *np_plain_view_new(const np_rt *rt, const np_rtensor *t)
{
	struct np_plain_view *v = calloc(1, sizeof *v);
	if (!v)
		return NULL;
	v->t = *t;
	v->t.blocked = false;
	v->t.grad = NULL;
	v->t.plain = NULL;
	v->t.data = np_aligned(sizeof(float) * (size_t)t->nelem);
	dnnl_memory_desc_t md;
	np_rt_md_plain(&md, t);
	if (!v->t.data ||
	    dnnl_memory_create(&v->from, &t->md, rt->engine, t->data) ||
	    dnnl_memory_create(&v->to, &md, rt->engine, v->t.data) ||
	    np_rt_reorder_make(rt->engine, &t->md, &md, &v->reorder)) {
		np_plain_view_free(v);
		return NULL;
	}
	return v;
}

/* t's content reordered into its plain copy t->plain. */
static const np_rtensor *np_plain_view(const np_rt *rt, np_rtensor *t)
{
	if (!t->plain && !(t->plain = np_plain_view_new(rt, t)))
		return NULL;
	struct np_plain_view *v = t->plain;
	if (np_rt_reorder_run(v->reorder, v->from, v->to, rt->stream) ||
	    dnnl_stream_wait(rt->stream))
		return NULL;
	return &v->t;
}

const np_rtensor *np_rt_value(const np_rt *rt, const char *name)
{
	np_value *v = np_graph_find(rt->m->graph, name);
	if (!rt->cur || !v)
		return NULL;
	np_rtensor *t = &rt->cur->t[v->id];
	if (t->overwritten)
		return NULL;            /* its buffer holds a later value now */
	return t->blocked ? np_plain_view(rt, t) : t;
}

void np_rt_set_progress(np_rt *rt, np_rt_progress_fn fn, void *ctx)
{
	rt->progress = fn;
	rt->progress_ctx = ctx;
}

void np_rt_report_progress(const np_rt *rt, int64_t done, int64_t total)
{
	if (rt->progress)
		rt->progress(rt->progress_ctx, done, total);
}

bool np_rt_value_bf16(const np_rt *rt, const char *name)
{
	np_value *v = np_graph_find(rt->m->graph, name);
	return rt->cur && v && np_rt_is_bf16(&rt->cur->t[v->id]);
}

int np_rt_fused_clamps(const np_rt *rt)
{
	return rt->cur ? rt->cur->n_fused : 0;
}

bool np_rt_value_blocked(const np_rt *rt, const char *name)
{
	np_value *v = np_graph_find(rt->m->graph, name);
	return rt->cur && v && rt->cur->t[v->id].blocked;
}

float *np_rt_output_grad(np_rt *rt, int i)
{
	if (!rt->cur || i < 0 || i >= rt->m->graph->n_outputs)
		return NULL;
	return rt->cur->t[rt->m->graph->outputs[i]->id].grad;
}

static bool np_node_wants_backward(const np_xnode *x)
{
	if (x->folded)
		return false;
	for (int i = 0; i < x->n_in; i++)
		if (x->in[i] && x->in[i]->needs_grad)
			return true;
	return false;
}

/* After node i's backward (i == n_x: after the loop): the parameters
 * whose gradient is now final go to the caller's grad_ready hook, then
 * after_node (rt.h, np_rt_backward_hooks). */
static void np_backward_node_done(np_rt *rt, np_plan *p, int i)
{
	const np_rt_backward_hooks *h = &rt->hooks;
	if (h->grad_ready && p->ready_first[i] < p->ready_first[i + 1]) {
		dnnl_stream_wait(rt->stream);
		for (int k = p->ready_first[i]; k < p->ready_first[i + 1]; k++) {
			np_param *pp = &rt->params[p->ready[k]];
			/* A gradient no backward wrote is zero (as after the
			 * loop), before anyone reads it. */
			if (p->t[pp->value->id].grad_writes == 0)
				memset(pp->grad, 0, sizeof(float) * (size_t)pp->nelem);
			h->grad_ready(h->ctx, p->ready[k]);
		}
	}
	if (h->after_node)
		h->after_node(h->ctx);
}

np_status np_rt_backward(np_rt *rt, np_error *err)
{
	omp_set_num_threads(rt->threads);
	np_plan *p = rt->cur;
	np_graph *g = rt->m->graph;
	if (!p)
		return np_fail(err, NP_ERR_INVALID, "backward before any forward run");
	for (int i = 0; i < p->n_t; i++)
		p->t[i].grad_writes = 0;
	/* A backward that failed part-way may have left scratch taken. */
	for (int i = 0; i < NP_RT_GRAD_SCRATCH; i++)
		rt->grad_scratch[i].in_use = false;
	for (int i = 0; i < g->n_outputs; i++)
		p->t[g->outputs[i]->id].grad_writes = 1;
	for (int i = p->n_x - 1; i >= 0; i--) {
		np_xnode *x = &p->x[i];
		if (!np_node_wants_backward(x))
			continue;
		if (!x->op->backward)
			return np_rt_fail_node(err, NP_ERR_UNSUPPORTED, x,
			                       "training through this op is not supported");
		for (int k = 0; k < x->n_out; k++) {
			np_rtensor *t = x->out[k];
			if (t && t->grad && t->grad_writes == 0) {
				memset(t->grad, 0, np_rt_elem_bytes(t) * (size_t)t->nelem);
				t->grad_writes = 1;
			}
		}
		np_status st = x->absorbed ? NP_OK : x->op->backward(x, rt, err);
		if (st != NP_OK)
			return st;
		np_backward_node_done(rt, p, i);
	}
	dnnl_stream_wait(rt->stream);
	/* Parameters nothing reached (e.g. unused branch) get zero grads. */
	for (int i = 0; i < rt->n_params; i++) {
		np_param *pp = &rt->params[i];
		if (pp->trainable && p->t[pp->value->id].grad_writes == 0)
			memset(pp->grad, 0, sizeof(float) * (size_t)pp->nelem);
	}
	np_backward_node_done(rt, p, p->n_x);
	return NP_OK;
}

void np_rt_set_backward_hooks(np_rt *rt, const np_rt_backward_hooks *h)
{
	if (h)
		rt->hooks = *h;
	else
		memset(&rt->hooks, 0, sizeof rt->hooks);
}

np_status np_rt_grad_order(np_rt *rt, int *order, int *n, np_error *err)
{
	int *node_of = malloc(sizeof(int) * ((size_t)rt->n_params + 1));
	if (!node_of)
		return np_fail(err, NP_ERR_NOMEM, "out of memory");
	np_ready_nodes(rt, NULL, node_of);
	/* Backward order: the highest node first; within a node, by index
	 * (np_rt_backward calls grad_ready in that order). */
	*n = 0;
	for (int j = rt->m->graph->n_nodes; j >= 0; j--)
		for (int i = 0; i < rt->n_params; i++)
			if (node_of[i] == j)
				order[(*n)++] = i;
	free(node_of);
	return NP_OK;
}

/* ----------------------------------------------------------- training */

/* a where k is all ones, b where it is zero, bit for bit: a select the
 * vectorizer takes (it leaves a loop with `?:` on floats scalar, as
 * control flow). */
static inline float np_pick(uint32_t k, float a, float b)
{
	uint32_t ua, ub;
	memcpy(&ua, &a, sizeof ua);
	memcpy(&ub, &b, sizeof ub);
	ua = (ua & k) | (ub & ~k);
	memcpy(&a, &ua, sizeof a);
	return a;
}

/* All ones where the mask keeps the weight, zero where it prunes it. */
static inline uint32_t np_kept(uint8_t mask)
{
	return -(uint32_t)(mask != 0);
}

/* torch.optim.SGD: d = g + wd*w; b = mom*b + d; d = nesterov ? d + mom*b
 * : b; w -= lr*d (no momentum: w -= lr*d, b untouched).  A masked
 * weight, its gradient and its buffer become exact zeros.
 *
 * The loops are written for the vectorizer: with the mask and momentum
 * tests as branches inside one loop it ran scalar, and on mlp4 this step
 * took a third of the training CPU.  Masked and unmasked parts are split
 * by what is known before the loop, and selects are bit operations
 * (np_pick).  The float operations per element are the same, in the same
 * order (C11 mode: no contraction into FMA), so the weights are bit for
 * bit those of the scalar loop. */
static void np_sgd_param(np_param *p, const np_sgd *o)
{
	float *w = p->data, *g = p->grad, *buf = p->momentum;
	const uint8_t *mask = p->mask;
	const float lr = o->lr, mom = o->momentum;
	const float wd = p->decay ? o->weight_decay : 0.0f;
	const uint32_t nesterov = o->nesterov ? ~0u : 0u;
	int64_t n = p->nelem;
	if (mom == 0.0f && !mask) {
#pragma omp parallel for simd schedule(static) if (n > 16384)
		for (int64_t i = 0; i < n; i++)
			w[i] -= lr * (g[i] + wd * w[i]);
	} else if (mom == 0.0f) {
#pragma omp parallel for simd schedule(static) if (n > 16384)
		for (int64_t i = 0; i < n; i++) {
			uint32_t k = np_kept(mask[i]);
			w[i] = np_pick(k, w[i] - lr * (g[i] + wd * w[i]), 0.0f);
			g[i] = np_pick(k, g[i], 0.0f);
			buf[i] = np_pick(k, buf[i], 0.0f);
		}
	} else if (!mask) {
#pragma omp parallel for simd schedule(static) if (n > 16384)
		for (int64_t i = 0; i < n; i++) {
			float d = g[i] + wd * w[i];
			float b = mom * buf[i] + d;
			buf[i] = b;
			w[i] -= lr * np_pick(nesterov, d + mom * b, b);
		}
	} else {
#pragma omp parallel for simd schedule(static) if (n > 16384)
		for (int64_t i = 0; i < n; i++) {
			uint32_t k = np_kept(mask[i]);
			float d = g[i] + wd * w[i];
			float b = mom * buf[i] + d;
			float nw = w[i] - lr * np_pick(nesterov, d + mom * b, b);
			buf[i] = np_pick(k, b, 0.0f);
			w[i] = np_pick(k, nw, 0.0f);
			g[i] = np_pick(k, g[i], 0.0f);
		}
	}
}

/* AdamW's per-step constants (np_adamw_param). */
typedef struct np_adamw_k {
	float decay, fb1, fb2, a1, a2, step, bc2s, eps;
} np_adamw_k;

/* One element of AdamW's step; k: np_kept (zero: everything to 0). */
static inline void np_adamw_one(float *w, float *g, float *m, float *v,
                                uint32_t k, const np_adamw_k *c)
{
	float nw = *w * c->decay;
	float nm = *m * c->fb1 + *g * c->a1;
	float nv = *v * c->fb2 + c->a2 * *g * *g;
	float denom = sqrtf(nv) / c->bc2s + c->eps;
	nw = nw + c->step * (nm / denom);
	*w = np_pick(k, nw, 0.0f);
	*m = np_pick(k, nm, 0.0f);
	*v = np_pick(k, nv, 0.0f);
	*g = np_pick(k, *g, 0.0f);
}

/* torch.optim.AdamW's single-tensor step, the same float operations in
 * the same order (torch/optim/adamw.py, amsgrad off): the bias
 * corrections in double, as Python computes them, then per element
 *   w = w * (1 - lr*wd); m = m*b1 + g*(1-b1); v = v*b2 + (1-b2)*g*g;
 *   w = w + (-lr/bc1) * (m / (sqrt(v)/sqrt(bc2) + eps)). */
static void np_adamw_param(np_param *p, const np_sgd *o)
{
	float *w = p->data, *g = p->grad, *m = p->momentum, *v = p->second;
	const uint8_t *mask = p->mask;
	p->steps++;
	const double lr = o->lr, b1 = o->beta1, b2 = o->beta2;
	const double bc1 = 1.0 - pow(b1, (double)p->steps);
	const double bc2 = 1.0 - pow(b2, (double)p->steps);
	const np_adamw_k c = {
		.decay = (float)(1.0 - lr * (p->decay ? (double)o->weight_decay : 0.0)),
		.fb1 = o->beta1, .fb2 = o->beta2,
		.a1 = (float)(1.0 - b1), .a2 = (float)(1.0 - b2),
		.step = (float)(-(lr / bc1)), .bc2s = (float)sqrt(bc2), .eps = o->eps,
	};
	int64_t n = p->nelem;
	/* Written for the vectorizer as np_sgd_param's loops are (a loop per
	 * mask case, selects as bit operations); sqrtf and division are
	 * exactly rounded in vector form too. */
	if (!mask) {
#pragma omp parallel for simd schedule(static) if (n > 16384)
		for (int64_t i = 0; i < n; i++)
			np_adamw_one(&w[i], &g[i], &m[i], &v[i], ~0u, &c);
	} else {
#pragma omp parallel for simd schedule(static) if (n > 16384)
		for (int64_t i = 0; i < n; i++)
			np_adamw_one(&w[i], &g[i], &m[i], &v[i], np_kept(mask[i]), &c);
	}
}

np_status np_rt_optim_prepare(np_rt *rt, const np_sgd *opt, np_error *err)
{
	if (opt->optimizer != NP_OPTIM_ADAMW)
		return NP_OK;              /* SGD's buffers come with the params */
	for (int i = 0; i < rt->n_params; i++) {
		np_param *p = &rt->params[i];
		if (!p->trainable || p->second)
			continue;
		size_t bytes = sizeof(float) * (size_t)p->nelem;
		if (!(p->second = np_aligned(bytes)))
			return np_fail(err, NP_ERR_NOMEM,
			               "out of memory for AdamW's moments of '%s'",
			               p->value->name);
		memset(p->second, 0, bytes);
	}
	return NP_OK;
}

np_status np_rt_sgd_step(np_rt *rt, const np_sgd *opt, np_error *err)
{
	if (opt->optimizer == NP_OPTIM_ADAMW) {
		/* Every buffer first: a failure moves nothing. */
		np_status st = np_rt_optim_prepare(rt, opt, err);
		if (st != NP_OK)
			return st;
		for (int i = 0; i < rt->n_params; i++)
			if (rt->params[i].trainable)
				np_adamw_param(&rt->params[i], opt);
		return NP_OK;
	}
	for (int i = 0; i < rt->n_params; i++)
		if (rt->params[i].trainable)
			np_sgd_param(&rt->params[i], opt);
	return NP_OK;
}

void np_rt_apply_masks(np_rt *rt)
{
	for (int i = 0; i < rt->n_params; i++) {
		np_param *p = &rt->params[i];
		if (!p->mask)
			continue;
		for (int64_t k = 0; k < p->nelem; k++)
			if (!p->mask[k]) {
				p->data[k] = 0.0f;
				if (p->grad)
					p->grad[k] = p->momentum[k] = 0.0f;
				if (p->second)
					p->second[k] = 0.0f;
			}
	}
}

np_status np_rt_store(np_rt *rt, np_model *m, np_error *err)
{
	if (m != rt->m)
		return np_fail(err, NP_ERR_INVALID, "runtime belongs to another model");
	for (int i = 0; i < rt->n_params; i++) {
		np_param *p = &rt->params[i];
		if (p->nelem)
			memcpy(p->value->init->data, p->data, sizeof(float) * (size_t)p->nelem);
	}
	return NP_OK;
}
