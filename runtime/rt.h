/* rt.h - nepenc's oneDNN runtime: inference and training of an IR graph.
 *
 * USE
 *   np_rt *rt = np_rt_new(model, threads, &err);     parameters copied in
 *   np_rt_input in = {"input", NP_FLOAT, 4, {128,1,28,28}, pixels};
 *   np_rt_run(rt, &in, 1, NP_RT_TRAIN, &err);       forward
 *   const np_rtensor *y = np_rt_output(rt, 0);
 *   ... loss gradient into np_rt_output_grad(rt, 0) ...
 *   np_rt_backward(rt, &err);                        gradients of params
 *   np_rt_sgd_step(rt, &sgd, &err);                  update, masks held
 *   np_rt_store(rt, model, &err);                    params back into IR
 *   np_rt_free(rt);
 *
 * PLANS
 *   A plan is the graph bound to one set of input shapes: shapes inferred,
 *   constant subgraphs folded, buffers allocated, oneDNN primitives
 *   created.  np_rt_run() reuses the plan whose input signature matches
 *   (a small cache: training alternates a full and a last partial batch)
 *   and builds one otherwise.  Plans are built once, executed many times;
 *   past NP_RT_PLAN_CACHE_BYTES of cached buffers (exec.c) the old plans
 *   are freed before a new one is built, so a large model holds one
 *   batch's activations at a time.
 *
 *   Non-float inputs (token ids, attention masks) are data like float
 *   ones: a new batch of ids reuses the plan.  Only when their values
 *   reach an input the plan needs the values of (np_op.plan_values: an
 *   axes or shape input, Range's bounds), which the planner reads off
 *   the graph (exec.c, np_ints_reach_plan_values), are they plan-time
 *   constants, their values part of the signature.
 *
 *   In place: an op whose np_op.inplace names inputs may write output 0
 *   over one input's buffer, as PyTorch's inplace ReLU does (ResNet-18 at
 *   batch 128: 392 of its 990 MiB of activations).  The planner allows it
 *   only when the input's value is dead once the op has run: this op is
 *   its only reader, the op's backward does not read it, its producer's
 *   backward does not read its own outputs (np_op.out_overwritable), and
 *   it is not a graph input or output, a parameter, a constant, or
 *   watched.  Chains follow (BN -> Add -> Relu on one buffer).  The input
 *   is then marked `overwritten` and np_rt_value() refuses it (NULL); the
 *   output is marked `in_place` and owns nothing.  Results are the same
 *   to the bit: the same kernels run on the same numbers.
 *
 *   Fused clamps: a node whose op can apply a clamp to its output 0
 *   (np_op.absorbs_clamp: BatchNormalization on bf16 channels-last
 *   values) takes over the node after it when that node is a clamp
 *   (np_op.clamp: Relu, a Clip whose bounds take no gradient) and output
 *   0's only reader, and output 0 is neither a graph output, nor
 *   watched, and has the clamp's layout and type.  The first node
 *   writes the clamped result into the buffer both share (the clamp's
 *   output is `in_place`, output 0 `overwritten`) and its backward
 *   masks the clamp's output gradient itself (x->clamp_next); the clamp
 *   node is `absorbed` and runs nothing.  Output 0 has no gradient and
 *   is never computed: MobileNet-V2's BN + ReLU6 cost three passes over
 *   memory forward instead of five, five backward instead of eight.
 *
 * WATCH
 *   A caller that reads a value by name after a run (the entropy profile
 *   reads every rectifier's input, linearize every shape) watches it
 *   first: np_rt_watch().  Watched values are never overwritten.  The
 *   in-place choices are part of a plan's signature, so a cached plan is
 *   reused only when the current watches make the same choices; training
 *   watches nothing and gets the smaller plan.  Watches are counted:
 *   np_rt_unwatch() undoes one np_rt_watch().
 *
 * OWNERSHIP
 *   The np_rt owns parameters (float copies of the trainable initializers,
 *   their gradients, momentum, AdamW moments and masks), plans, and every buffer.  In a
 *   plan each buffer has one owner: the value that allocated it; values
 *   written in place (`in_place`) borrow their input's.  Tensors handed
 *   out by np_rt_output() stay valid until the next np_rt_run() or
 *   np_rt_free().  Inputs are copied.
 *
 * LAYOUT
 *   The CPU decides: np_rt_new() asks oneDNN which layout its convolution
 *   picks (forward and both backward passes) for a typical shape, giving
 *   a channel block of 16 (AVX-512: nChw16c), 8 (AVX2/AVX: nChw8c) or none
 *   (SSE4.1, whose backward convolutions run plain); np_rt_set_bf16() asks
 *   again for bf16 convolutions (AMX's want channels-last, acdb: every
 *   channel count fits).  Between ops, 4-D
 *   activations whose channel count is a multiple of the block stay in
 *   that blocked layout when every op that writes or reads them can work
 *   on it: Conv, BatchNormalization, the pools, and elementwise ops over
 *   equal shapes (np_op.layout).  Ops create their primitives through
 *   np_rt_pd_create(): if oneDNN has only a reference kernel for a blocked
 *   value, the plan is built again with that op's values plain (-v says
 *   so).  A blocked tensor has `blocked` set and its layout in `md`
 *   (np_rt_blk() gives the block); its gradient uses the same layout; it
 *   has no padding, so nelem floats.  Everything else is plain row-major
 *   (NCHW for images).  Graph inputs and outputs are always plain, and
 *   np_rt_value() hands out plain copies: reorders only at the edges,
 *   none between Conv, BN, ReLU, Add and pools.
 *
 * OPS
 *   Every op kind is one np_op (a file under runtime/ops/) listed once in
 *   runtime/ops.def.  An op parses its attributes and infers output
 *   shapes in infer(), builds primitives in prepare(), runs forward(), and
 *   in backward() ADDS the gradients of its inputs (np_rt_grad_target /
 *   np_rt_grad_done handle first-writer vs accumulate, for values with
 *   several consumers such as residuals).
 *
 * FACTS
 *   What the passes and nepenthe need to know about an op is written in
 *   its np_op too, next to the code that computes it, not as op names in
 *   their files: flags (np_op_flag), which inputs are trained, where a
 *   linear op's weight and bias are and how the weight maps onto output
 *   channels and input features (weight_geom).  A pass about one op asks
 *   np_node_kind(n) == NP_OPK_Conv (ops.h); tests/test_ops.c checks every
 *   fact against the ONNX spec, tests/opnames.test that no file above the
 *   table spells an op name.
 */
#ifndef NEPENC_RT_H
#define NEPENC_RT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

#include "ir.h"
#include "shapes.h"
#include "status.h"

#define NP_RT_MAX_RANK 8

typedef struct np_rt np_rt;
typedef struct np_plan np_plan;

typedef struct np_rtensor {
	const char *name;            /* the IR value's name */
	int dtype;                   /* np_dtype: FLOAT, INT64, BOOL, ... */
	int rank;
	int64_t dims[NP_RT_MAX_RANK];
	int64_t nelem;
	void *data;                  /* plain layout, nelem elements */
	float *grad;                 /* same shape, float; NULL if no grad */
	bool is_const;               /* known at plan time (init or folded) */
	bool is_param;               /* float initializer: data/grad live in np_rt */
	bool borrowed;               /* data belongs to the IR or the np_rt */
	bool needs_grad;             /* a parameter depends on it backward */
	int grad_writes;             /* contributions so far this backward */
	int n_consumers;             /* node inputs reading it in the plan */
	bool in_place;               /* data is an input's buffer (PLANS) */
	bool overwritten;            /* a consumer wrote over data in place:
	                              * stale after the run (PLANS) */
	bool blocked;                /* data and grad in layout md (see LAYOUT) */
	dnnl_memory_desc_t md;       /* valid when blocked */
	struct np_plain_view *plain; /* np_rt_value()'s plain copy, or NULL */
} np_rtensor;

/* What layouts an op accepts on input 0 / output 0 (see LAYOUT). */
typedef enum np_layout_rule {
	NP_LAYOUT_PLAIN = 0,         /* plain only */
	NP_LAYOUT_FLAT,              /* elementwise: inputs of the output's
	                              * shape and the output share any layout;
	                              * other inputs must be scalars */
	NP_LAYOUT_SAME,              /* input 0 and output 0 share a layout,
	                              * described by np_rt_md() (BN, pools) */
	NP_LAYOUT_ANY                /* input 0 and output 0 each in any
	                              * layout, np_rt_md() (Conv) */
} np_layout_rule;

typedef struct np_xnode np_xnode;

/* What an op is, for the analyses above the runtime (FACTS).  Only what
 * some pass asks; an op has any number of them. */
typedef enum np_op_flag {
	/* Output 0 is linear in input 0 for a fixed weight (weight_input),
	 * plus an optional bias: Conv, Gemm, MatMul.  weight_geom is set.
	 * The producers of a rectified layer (passes/layers.c). */
	NP_OPF_LINEAR = 1u << 0,
	/* Input 0 may be the weight instead, when weight_input is not a
	 * constant (MatMul: W @ x).  It is still the node's parameter but
	 * does not index output channels.  Gemm's weight is B only. */
	NP_OPF_WEIGHT_EITHER = 1u << 1,
	/* Element-wise arithmetic of two operands with numpy broadcasting:
	 * Add, Sub, Mul, Div (their operands must broadcast). */
	NP_OPF_ARITH = 1u << 2,
	/* y[:, c, ...] = a[c] x[:, c, ...] + b[c] at inference, inputs 1..
	 * one value per channel of input 0's axis 1: BatchNormalization.
	 * A layer's neurons pass through it. */
	NP_OPF_CHANNEL_AFFINE = 1u << 3,
	/* Output 0 is input 0 at inference: Identity, Dropout. */
	NP_OPF_PASS = 1u << 4,
	/* Output 0 is input 0's elements in order, in a shape computed from
	 * an attribute or a shape input: Flatten, Reshape.  (Squeeze and
	 * Unsqueeze, which only drop or add unit axes, are not marked:
	 * layers.c would walk through them, which it never did.) */
	NP_OPF_RESHAPE = 1u << 5,
	/* A single-op rectifier of a NEPENTHE layer (layers.h): Relu,
	 * LeakyRelu, PRelu, Clip (when its min is 0), Gelu.  Not HardSwish
	 * or HardSigmoid. */
	NP_OPF_RECTIFIER = 1u << 6,
	/* Reads only its input's shape, never its data: Shape (the planner
	 * folds it at plan time, whatever computes the input). */
	NP_OPF_SHAPE_READ = 1u << 7,
	/* Input 1 holds indices of rows of input 0 along the node's "axis"
	 * attribute (default 0): Gather.  An int64 model input read here
	 * is token ids, checked against the table's rows before a run
	 * (data.h, np_dataset_check_model). */
	NP_OPF_INDEX_ROWS = 1u << 8
} np_op_flag;

/* How a linear op's weight W maps onto output channels and input
 * features (NP_OPF_LINEAR's weight_geom). */
typedef struct np_weight_geom {
	int out_axis;                /* axis of W indexing output channels:
	                              * 0 (Conv, Gemm transB=1) or W's last
	                              * (Gemm transB=0, MatMul) */
	int64_t out_ch;              /* output channels, W's dims[out_axis] */
	int64_t K;                   /* input features W reads, all groups */
	int64_t groups;              /* output channel o reads the features
	                              * of group o / (out_ch / groups) only,
	                              * K / groups of them (Conv); 1 else */
	int in_axis;                 /* axis of input 0 holding the K
	                              * features; -1: its last (MatMul) */
	int batch_axes;              /* leading axes of W stacking matrices
	                              * (MatMul, W of rank > 2); 0 else */
	bool y_last;                 /* output 0 holds the output channels on
	                              * its last axis (MatMul: [B, T, C] from
	                              * x[B, T, K] @ W[K, C]); false: on axis
	                              * 1 (Conv NCHW, Gemm [N, C]) */
} np_weight_geom;

typedef struct np_op {
	const char *name;            /* ONNX op_type, default domain */
	/* Check attributes and input ranks/dtypes, set output dtype, rank,
	 * dims.  May read in[i]->data when in[i]->is_const (shape inputs).
	 * Errors name the node: np_rt_fail_node(). */
	np_status (*infer)(np_xnode *x, np_error *err);
	/* Buffers exist now: create primitives, op state (x->state). */
	np_status (*prepare)(np_xnode *x, np_rt *rt, np_error *err);
	/* Compute outputs.  training: BN uses batch statistics and updates
	 * running ones; Dropout stays identity in both. */
	np_status (*forward)(np_xnode *x, np_rt *rt, bool training, np_error *err);
	/* Add d(loss)/d(in[i]) for every in[i] with needs_grad, from
	 * out[k]->grad.  NULL: the op has no gradient (shape ops on
	 * constants); the planner refuses training through it. */
	np_status (*backward)(np_xnode *x, np_rt *rt, np_error *err);
	void (*destroy)(np_xnode *x);  /* free x->state; may be NULL */
	np_layout_rule layout;
	/* In bf16 runs, may node x read and write its values of the
	 * activation layout (and their gradients) stored in bf16
	 * (PRECISION)?  It then builds its primitives on np_rt_md(), whose
	 * data type says which.  NULL: never (they stay f32). */
	bool (*bf16_values)(const np_xnode *x);
	/* Fused clamps (PLANS): may node x, as planned (layouts, types),
	 * apply a clamp node reading its output 0 (x->clamp_next) in
	 * forward() and its mask in backward()?  NULL: never. */
	bool (*absorbs_clamp)(const np_xnode *x);
	/* Is node x y = min(max(x, lo), hi) on input 0, element-wise, with
	 * bounds that take no gradient?  Fills lo, hi (their current
	 * values: bounds may be parameters) when so.  NULL: not a clamp. */
	bool (*clamp)(const np_xnode *x, float *lo, float *hi);

	/* ---- facts (FACTS); input masks: bit i is input i */
	unsigned flags;              /* np_op_flag */
	int weight_input;            /* a linear op's weight W, BN's scale;
	                              * -1: none */
	int bias_input;              /* its additive parameter; -1: none */
	/* Node n's weight of shape [rank, dims]: fills g, false when that
	 * shape does not fit the op (or an attribute is invalid).  Set for
	 * NP_OPF_LINEAR, else NULL. */
	bool (*weight_geom)(const np_node *n, int rank, const int64_t *dims,
	                    np_weight_geom *g);
	/* A float initializer read at input i is a parameter training
	 * updates (PyTorch's nn.Parameter) when bit i is set in trainable;
	 * or in trainable_nonscalar and it has more than one element (Add:
	 * a MatMul's bias; a scalar is a constant like ReLU6's 6); or in
	 * trainable_via_output and every reader of output 0 would train it
	 * (Identity: exporters share one initializer through Identity
	 * copies).  Anything else is a constant, or state. */
	unsigned trainable;
	unsigned trainable_nonscalar;
	unsigned trainable_via_output;
	unsigned state;              /* inputs the op updates itself in
	                              * training, not parameters: BN's
	                              * running mean and variance */
	unsigned plan_values;        /* inputs whose values the plan needs
	                              * (np_rt_const_ints: axes, a shape,
	                              * Range's bounds), so they must be
	                              * constants or fold from constants;
	                              * an integer model input that reaches
	                              * one is planned as a constant */
	/* Cost: FLOPs of node n per example (multiply-adds count twice; the
	 * batch axis is left out), from its input shapes in[0..n_in) and
	 * output 0's (NULL where unknown); -1 when they do not say.  NULL:
	 * no arithmetic worth counting (data movement, shape ops).  The fold
	 * cost model (passes/cost.h) adds these up. */
	int64_t (*flops)(const np_node *n, const np_shape *const *in, int n_in,
	                 const np_shape *out);
	/* In place (PLANS): the inputs whose buffer output 0 may take, bit i
	 * for input i (the planner takes the first that is dead); 0 or NULL:
	 * never.  forward() must work with output 0 on any of their buffers
	 * (out[0]->data tells which), and backward() must not read their
	 * data. */
	unsigned (*inplace)(const np_xnode *x);
	/* backward() reads no output's data (gradients only), so a consumer
	 * may overwrite the outputs in place.  false for ops whose backward
	 * uses y (Relu, Sigmoid, Softmax...) and for any op not checked. */
	bool out_overwritable;
} np_op;

/* Most ops have no weight: the defaults for their definitions. */
#define NP_OP_NO_WEIGHT .weight_input = -1, .bias_input = -1

struct np_xnode {
	const np_node *node;         /* attributes, name, op_type */
	const np_op *op;
	np_rtensor **in;             /* NULL entries: omitted optional input */
	int n_in;
	np_rtensor **out;
	int n_out;
	void *state;                 /* op-private, freed by op->destroy */
	bool folded;                 /* all inputs const: ran at plan time */
	/* Fused clamps (PLANS): the clamp node this node's forward and
	 * backward compute too, or NULL; absorbed: this node is such a
	 * clamp, its forward and backward run nothing. */
	struct np_xnode *clamp_next;
	bool absorbed;
};

/* ------------------------------------------------------------ helpers */

/* "what (node NAME, op OP)" */
np_status np_rt_fail_node(np_error *err, np_status st, const np_xnode *x,
                          const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

dnnl_engine_t np_rt_engine(const np_rt *rt);
dnnl_stream_t np_rt_stream(const np_rt *rt);
int np_rt_threads(const np_rt *rt);

/* Where backward should put the gradient for t: t->grad itself when this
 * is the first contribution of this pass (write, don't add), else a
 * scratch buffer of t's size.  After writing, call np_rt_grad_done(),
 * which adds the scratch into t->grad when needed. */
float *np_rt_grad_target(np_rt *rt, np_rtensor *t);
void np_rt_grad_done(np_rt *rt, np_rtensor *t, float *target);
/* np_rt_grad_target() returns NULL when a scratch buffer cannot be
 * allocated: the op returns this error (naming node and value) without
 * calling np_rt_grad_done(); the next backward pass starts clean. */
np_status np_rt_grad_oom(np_error *err, const np_xnode *x, const np_rtensor *t);

/* Checks a oneDNN call; on failure fills err naming the node. */
np_status np_rt_dnnl(dnnl_status_t s, const np_xnode *x, const char *what,
                     np_error *err);

/* A oneDNN memory descriptor for t in plain layout (abcd...), f32. */
void np_rt_md_plain(dnnl_memory_desc_t *md, const np_rtensor *t);
/* t's actual layout: md when blocked, else plain. */
void np_rt_md(dnnl_memory_desc_t *md, const np_rtensor *t);

/* t's channel block: 16 or 8 when blocked (nChw16c, nChw8c), else 1
 * (channels-last or plain). */
int np_rt_blk(const np_rtensor *t);
/* Is t stored in bf16 (data and gradient: PRECISION)? */
bool np_rt_is_bf16(const np_rtensor *t);
/* A float tensor's storage type, dnnl_bf16 or dnnl_f32, and the bytes of
 * one element of its data and gradient (any dtype). */
dnnl_data_type_t np_rt_float_type(const np_rtensor *t);
size_t np_rt_elem_bytes(const np_rtensor *t);
/* Yes, for np_op.bf16_values. */
bool np_rt_bf16_always(const np_xnode *x);
/* t's layout as a oneDNN tag: aBcd16b, aBcd8b, acdb (channels-last), or
 * dnnl_format_tag_undef when plain. */
dnnl_format_tag_t np_rt_tag(const np_rtensor *t);
/* The runtime's activation layout chosen from the CPU (LAYOUT), as its
 * channel block: 16, 8, 1 for channels-last, 0 for plain. */
int np_rt_block(const np_rt *rt);

/* dnnl_primitive_desc_create() for node x, on the runtime's engine; a
 * reference kernel on a blocked value of x makes the planner build the
 * plan again with x's values plain (LAYOUT). */
dnnl_status_t np_rt_pd_create(np_rt *rt, const np_xnode *x,
                              dnnl_primitive_desc_t *pd, const_dnnl_op_desc_t d,
                              const_dnnl_primitive_attr_t attr,
                              const_dnnl_primitive_desc_t hint);
/* Is pd one of oneDNN's reference implementations ("ref:any", ...)? */
bool np_rt_pd_is_ref(const_dnnl_primitive_desc_t pd);
/* PRECISION: by default everything computes in f32.  With bf16 on (only
 * where the CPU has AVX512_BF16 or AMX: np_rt_bf16_supported()):
 *   - activations of the blocked layout (LAYOUT) are stored in bf16,
 *     with their gradients, class by class: a class of values that share
 *     a layout is bf16 when every node reading or writing one of them
 *     says it can work so (np_op.bf16_values: Conv, BatchNormalization,
 *     the pools, oneDNN's eltwise ops, an Add of equal shapes).  Its
 *     md's data type says which; np_rt_is_bf16().  A node whose
 *     primitive on bf16 data would be one of oneDNN's portable C++
 *     kernels makes the plan again with its values f32 (np_rt_pd_create).
 *     Gradients summed from several readers (residuals) add in f32 and
 *     round once per contribution.
 *   - convolutions run forward and backward data in bf16 (f32 neighbours
 *     convert at the edges, results go straight into their f32 layout);
 *     runtime/ops/conv.c says when backward weights stays f32 and why
 *     depthwise ones beside f32 values do;
 *   - Gemm and MatMul run every product, forward and backward, on bf16
 *     copies of both operands with f32 results (runtime/ops/gemm.c).
 * Everything else -- master weights, parameter gradients, BN statistics,
 * the loss, values read by name (np_rt_value: f32 plain copies) -- stays
 * f32, and masked weights exact zeros.  Set before the first
 * np_rt_run(). */
bool np_rt_bf16_supported(void);
np_status np_rt_set_bf16(np_rt *rt, bool on, np_error *err);
bool np_rt_bf16(const np_rt *rt);
/* The ISA oneDNN runs ("AVX2", "AVX-512 AMX", ...), for messages. */
const char *np_rt_isa_name(void);

/* Report layout fallbacks on stderr (the command line's -v); process-wide. */
void np_rt_set_verbose(bool on);
bool np_rt_verbose_on(void);

/* A reorder primitive from one layout to another (same engine). */
dnnl_status_t np_rt_reorder_make(dnnl_engine_t eng, const dnnl_memory_desc_t *from,
                                 const dnnl_memory_desc_t *to, dnnl_primitive_t *r);
/* Runs it: from -> to. */
dnnl_status_t np_rt_reorder_run(dnnl_primitive_t r, dnnl_memory_t from,
                                dnnl_memory_t to, dnnl_stream_t stream);

/* Scratch memory owned by the rt, valid until the next call that asks for
 * scratch with the same slot. */
void *np_rt_scratch(np_rt *rt, int slot, size_t bytes);

/* ---------------------------------------------------------------- API */

typedef struct np_rt_input {
	const char *name;
	int dtype;
	int rank;
	int64_t dims[NP_RT_MAX_RANK];
	const void *data;
} np_rt_input;

typedef enum np_rt_mode {
	NP_RT_INFER,                 /* BN running statistics */
	NP_RT_TRAIN                  /* BN batch statistics; keep for backward */
} np_rt_mode;

/* Validate that every node's op is known (error names node and op). */
np_rt *np_rt_new(np_model *m, int threads, np_error *err);
/* No model, no parameters, plain layouts: for folding constants while
 * inferring shapes (shapes.c); free with np_rt_free. */
np_rt *np_rt_new_bare(np_error *err);
void np_rt_free(np_rt *rt);
np_model *np_rt_model(const np_rt *rt);

np_status np_rt_run(np_rt *rt, const np_rt_input *in, int n_in,
                    np_rt_mode mode, np_error *err);
int np_rt_n_outputs(const np_rt *rt);
const np_rtensor *np_rt_output(const np_rt *rt, int i);
/* Any value of the current plan by name (e.g. a rectifier's input for
 * entropy profiling), NULL if absent, overwritten in place by its
 * consumer (watch it first: WATCH), or out of memory.  Always plain: a
 * blocked value is reordered into a plain copy (without grad), valid
 * until the next np_rt_run(). */
const np_rtensor *np_rt_value(const np_rt *rt, const char *name);

/* Keep value `name` readable by np_rt_value() after every later run (see
 * WATCH); an error if the model has no such value.  np_rt_unwatch()
 * takes one watch back (none left: nothing happens).  The plan of the
 * next np_rt_run() follows; the current one stays as it is. */
np_status np_rt_watch(np_rt *rt, const char *name, np_error *err);
void np_rt_unwatch(np_rt *rt, const char *name);

/* Does the current plan keep this value in a blocked layout (LAYOUT)? */
bool np_rt_value_blocked(const np_rt *rt, const char *name);
/* ... and stored in bf16 (PRECISION)? */
bool np_rt_value_bf16(const np_rt *rt, const char *name);
/* Clamps the current plan fused into the node before them (PLANS). */
int np_rt_fused_clamps(const np_rt *rt);

/* Progress of np_predict()/np_evaluate() (train.h) over a dataset:
 * fn(ctx, 0, total) before the first batch, then fn(ctx, done, total)
 * after each.  NULL fn: none (the default). */
typedef void (*np_rt_progress_fn)(void *ctx, int64_t done, int64_t total);
void np_rt_set_progress(np_rt *rt, np_rt_progress_fn fn, void *ctx);
void np_rt_report_progress(const np_rt *rt, int64_t done, int64_t total);

/* Gradient buffer of graph output i, to be filled by the loss. */
float *np_rt_output_grad(np_rt *rt, int i);
np_status np_rt_backward(np_rt *rt, np_error *err);

/* Hooks of np_rt_backward, for a caller that starts work on gradients
 * while backward goes on (the data-parallel sum: train.c).  The runtime
 * knows nothing of what they do.
 *   grad_ready(ctx, i)  parameter i's (np_rt_param(rt, i)) gradient is
 *                       final for this pass: called once per trainable
 *                       parameter in every backward that succeeds, after
 *                       the backward of the last node (in backward order)
 *                       adding into it, i.e. the lowest-index node reading
 *                       it; one no node reads is zeroed and reported after
 *                       the loop.  Its grad may be read (not written) from
 *                       then until the next np_rt_run.
 *   after_node(ctx)     after each node's backward and its grad_ready
 *                       calls (a point to make progress on the work).
 * Either may be NULL.  A backward that fails stops calling them: the
 * parameters not reported yet never are.  The ready points come from the
 * plan (computed once per plan); the order is np_rt_grad_order's. */
typedef struct np_rt_backward_hooks {
	void (*grad_ready)(void *ctx, int param);
	void (*after_node)(void *ctx);
	void *ctx;
} np_rt_backward_hooks;
/* Copies *h; NULL: no hooks (the default). */
void np_rt_set_backward_hooks(np_rt *rt, const np_rt_backward_hooks *h);
/* The trainable parameters' indices in the order np_rt_backward reports
 * them ready (the reverse of the forward order of their last reader, as
 * PyTorch DDP's buckets), from the graph alone, so before any run and
 * the same for every plan: order holds np_rt_n_params(rt) ints, *n gets
 * how many are trainable.  Fails only out of memory. */
np_status np_rt_grad_order(np_rt *rt, int *order, int *n, np_error *err);

/* ---------------------------------------------------------- training */

/* Every float initializer of the model lives here; trainable ones get
 * grad and momentum. */
typedef struct np_param {
	np_value *value;             /* the IR initializer */
	float *data;
	float *grad;
	float *momentum;             /* SGD's buffer; AdamW's first moment */
	float *second;               /* AdamW's second moment: allocated by
	                              * its first step, NULL before */
	int64_t steps;               /* AdamW steps taken (bias correction) */
	uint8_t *mask;               /* NULL = dense; 0 = pruned (held at 0) */
	int64_t nelem;
	bool trainable;              /* false: BN running statistics, ints */
	bool decay;                  /* weight decay applies (all trainable
	                              * floats, as PyTorch's default) */
} np_param;

int np_rt_n_params(const np_rt *rt);
/* Make a float initializer trainable or frozen (gradient and momentum
 * buffers come with it).  Only before the first np_rt_run(): plans bind
 * gradient buffers. */
np_status np_rt_set_trainable(np_rt *rt, np_param *p, bool on, np_error *err);
np_param *np_rt_param(np_rt *rt, int i);
np_param *np_rt_param_by_name(np_rt *rt, const char *name);

typedef enum np_optimizer {
	NP_OPTIM_SGD = 0,
	NP_OPTIM_ADAMW
} np_optimizer;

/* The optimizer and its settings (the name is SGD's, from before AdamW). */
typedef struct np_sgd {
	float lr, momentum, weight_decay;
	bool nesterov;
	np_optimizer optimizer;      /* SGD (default, zero) or AdamW */
	float beta1, beta2, eps;     /* AdamW */
} np_sgd;

/* One optimizer step of every trainable parameter from its gradient:
 * the one place the weights move (a gradient allreduce goes before it).
 *   SGD, PyTorch's: g = grad + wd*w; buf = m*buf + g; w -= lr*(nesterov ?
 *   g + m*buf : buf).
 *   AdamW, PyTorch's torch.optim.AdamW (amsgrad off): t += 1;
 *   w *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
 *   w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps), with t counted
 *   per parameter (np_param.steps), in float as PyTorch computes it.
 * Masked weights, their grad and moments stay exactly 0.  Fails only when
 * AdamW's second-moment buffers cannot be allocated (nothing moved). */
np_status np_rt_sgd_step(np_rt *rt, const np_sgd *opt, np_error *err);
/* What the step needs allocated (AdamW's second moments), allocated now
 * if it is not yet: a caller that must know before the step whether it
 * can run (every rank of a data-parallel run agrees first) calls this;
 * the step then cannot fail. */
np_status np_rt_optim_prepare(np_rt *rt, const np_sgd *opt, np_error *err);
/* Zero the pruned entries of data, grad, momentum and AdamW's second
 * moment (after a mask changes). */
void np_rt_apply_masks(np_rt *rt);

/* Write parameters and BN running statistics back into the IR. */
np_status np_rt_store(np_rt *rt, np_model *m, np_error *err);

#endif
