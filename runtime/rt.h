/* rt.h - nepenc's oneDNN runtime: inference and training of an IR graph.
 *
 * USE
 *   np_rt *rt = np_rt_new(model, threads, &err);     parameters copied in
 *   np_rt_input in = {"input", NP_FLOAT, 4, {128,1,28,28}, pixels};
 *   np_rt_run(rt, &in, 1, NP_RT_TRAIN, &err);       forward
 *   const np_rtensor *y = np_rt_output(rt, 0);
 *   ... loss gradient into np_rt_output_grad(rt, 0) ...
 *   np_rt_backward(rt, &err);                        gradients of params
 *   np_rt_sgd_step(rt, &sgd);                        update, masks held
 *   np_rt_store(rt, model, &err);                    params back into IR
 *   np_rt_free(rt);
 *
 * PLANS
 *   A plan is the graph bound to one set of input shapes (and the values of
 *   non-float inputs, which shape arithmetic may read): shapes inferred,
 *   constant subgraphs folded, buffers allocated, oneDNN primitives
 *   created.  np_rt_run() reuses the plan whose input signature matches
 *   (a small cache: training alternates a full and a last partial batch)
 *   and builds one otherwise.  Plans are built once, executed many times;
 *   past NP_RT_PLAN_CACHE_BYTES of cached buffers (exec.c) the old plans
 *   are freed before a new one is built, so a large model holds one
 *   batch's activations at a time.
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
 *   their gradients, momentum and masks), plans, and every buffer.  In a
 *   plan each buffer has one owner: the value that allocated it; values
 *   written in place (`in_place`) borrow their input's.  Tensors handed
 *   out by np_rt_output() stay valid until the next np_rt_run() or
 *   np_rt_free().  Inputs are copied.
 *
 * LAYOUT
 *   The CPU decides: np_rt_new() asks oneDNN which layout its convolution
 *   picks (forward and both backward passes) for a typical shape, giving
 *   a channel block of 16 (AVX-512: nChw16c), 8 (AVX2/AVX: nChw8c) or none
 *   (SSE4.1, whose backward convolutions run plain).  Between ops, 4-D
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
 */
#ifndef NEPENC_RT_H
#define NEPENC_RT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

#include "ir.h"
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

struct np_xnode {
	const np_node *node;         /* attributes, name, op_type */
	const np_op *op;
	np_rtensor **in;             /* NULL entries: omitted optional input */
	int n_in;
	np_rtensor **out;
	int n_out;
	void *state;                 /* op-private, freed by op->destroy */
	bool folded;                 /* all inputs const: ran at plan time */
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

/* t's channel block: 16 or 8 when blocked (nChw16c, nChw8c), else 1. */
int np_rt_blk(const np_rtensor *t);
/* The runtime's activation block chosen from the CPU (LAYOUT): 16, 8, 0. */
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
 * where the CPU has AVX512_BF16 or AMX: np_rt_bf16_supported()),
 * convolutions run forward and backward data on bf16 copies of their
 * inputs, weights and output gradients (runtime/ops/conv.c says why
 * backward weights stays f32); Gemm and MatMul, activations between ops,
 * master weights, gradients, BN statistics and the loss stay f32, and
 * masked weights exact zeros.  Set before the first np_rt_run(). */
bool np_rt_bf16_supported(void);
np_status np_rt_set_bf16(np_rt *rt, bool on, np_error *err);
bool np_rt_bf16(const np_rt *rt);
/* The ISA oneDNN runs ("AVX2", "AVX-512 AMX", ...), for messages. */
const char *np_rt_isa_name(void);

/* Report layout fallbacks on stderr (the command line's -v); process-wide. */
void np_rt_set_verbose(bool on);

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

/* Progress of np_predict()/np_evaluate() (train.h) over a dataset:
 * fn(ctx, 0, total) before the first batch, then fn(ctx, done, total)
 * after each.  NULL fn: none (the default). */
typedef void (*np_rt_progress_fn)(void *ctx, int64_t done, int64_t total);
void np_rt_set_progress(np_rt *rt, np_rt_progress_fn fn, void *ctx);
void np_rt_report_progress(const np_rt *rt, int64_t done, int64_t total);

/* Gradient buffer of graph output i, to be filled by the loss. */
float *np_rt_output_grad(np_rt *rt, int i);
np_status np_rt_backward(np_rt *rt, np_error *err);

/* ---------------------------------------------------------- training */

/* Every float initializer of the model lives here; trainable ones get
 * grad and momentum. */
typedef struct np_param {
	np_value *value;             /* the IR initializer */
	float *data;
	float *grad;
	float *momentum;
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

typedef struct np_sgd {
	float lr, momentum, weight_decay;
	bool nesterov;
} np_sgd;

/* PyTorch's SGD: g = grad + wd*w; buf = m*buf + g; w -= lr*(nesterov ?
 * g + m*buf : buf).  Masked weights, their grad and buf stay exactly 0. */
void np_rt_sgd_step(np_rt *rt, const np_sgd *opt);
/* Zero the pruned entries of data, grad and momentum (after a mask
 * changes). */
void np_rt_apply_masks(np_rt *rt);

/* Write parameters and BN running statistics back into the IR. */
np_status np_rt_store(np_rt *rt, np_model *m, np_error *err);

#endif
