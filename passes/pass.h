/* pass.h - graph-to-graph rewrites and the pass manager.
 *
 * A pass is one file under passes/, listed once in passes/passes.def.
 * It rewrites the IR through the mutation API of ir.h only, checks every
 * precondition before it rewires (other consumers?  graph output?  the
 * fold exact and not more expensive?), and leaves orphans to dead-code
 * removal.  The pass manager runs passes in order and, after each, sorts
 * the graph and verifies its use-def links (np_graph_verify) and its
 * shapes (np_run_pass): a pass that breaks the graph is a bug reported as
 * an error, not a corrupt output.
 *
 * Passes record what they did in np_pass_log so the report and the
 * output's doc_strings can say it ("folded /bn2 into /conv2").
 */
#ifndef NEPENC_PASS_H
#define NEPENC_PASS_H

#include <stdbool.h>
#include <stdint.h>

#include "ir.h"
#include "layers.h"
#include "status.h"

typedef enum np_fold_policy {
	NP_FOLD_EXACT,       /* only folds that are exact (default) */
	NP_FOLD_APPROX,      /* also Conv -> padded Conv; kept only if the
	                      * caller's accuracy check passes */
	NP_FOLD_NONE         /* no folding; linearized layers stay explicit */
} np_fold_policy;

typedef enum np_log_kind {
	NP_LOG_FOLDED,       /* a node merged into another */
	NP_LOG_LINEARIZED,   /* a rectifier replaced by an affine map */
	NP_LOG_REMOVED,      /* a node deleted (identity, dead code) */
	NP_LOG_REFUSED,      /* a fold considered and not done, and why */
	NP_LOG_UNDONE        /* a fold undone after a failed check */
} np_log_kind;

typedef struct np_log_entry {
	np_log_kind kind;
	const char *pass;    /* static: the pass's name */
	const char *node;    /* malloc'd copies owned by the log: entries
	                      * outlive the models the passes ran on */
	const char *into;    /* NP_LOG_FOLDED: the node it went into */
	const char *why;
} np_log_entry;

typedef struct np_pass_log {
	np_log_entry *v;     /* malloc'd, with the entries' strings */
	int n, cap;
} np_pass_log;

void np_pass_log_add(np_pass_log *log, np_model *m, np_log_kind kind,
                     const char *pass, const char *node, const char *into,
                     const char *why_fmt, ...)
	__attribute__((format(printf, 7, 8)));
/* Drop the entries from the n-th on (a discarded attempt's). */
void np_pass_log_truncate(np_pass_log *log, int n);
void np_pass_log_free(np_pass_log *log);

/* Which layers become affine maps, and each neuron's state. */
typedef struct np_linearize_layer {
	const char *rectifier;       /* node name of the rectifier */
	np_rect_kind kind;
	int64_t neurons;
	uint8_t *state;              /* neurons entries: NP_STATE_* */
	bool approximate;            /* GELU/SiLU or eps > 0 */
} np_linearize_layer;

typedef struct np_linearize_plan {
	np_linearize_layer *v;
	int n;
} np_linearize_plan;

typedef struct np_pass_ctx {
	np_fold_policy fold;
	np_pass_log *log;            /* may be NULL */
	/* Layers to linearize (passes/linearize.c). */
	const np_linearize_plan *linearize;
	int changes;                 /* bumped by passes that changed the graph */
	/* Fold by fold (nepenthe/emit.c undoes a fold that fails verification,
	 * not its whole pass): with max_folds > 0 the fold passes stop after
	 * that many folds; they never fold at a candidate node named in
	 * skip.  folds counts the folds done; folded_at names the candidate
	 * node of the last one (a string of the model's arena).  Use
	 * np_pass_may_fold() and np_pass_folded(). */
	int max_folds;
	const char *const *skip;
	int n_skip;
	int folds;
	const char *folded_at;
} np_pass_ctx;

/* May a fold pass fold at candidate n now?  (budget and skip list) */
bool np_pass_may_fold(const np_pass_ctx *ctx, const np_node *n);
/* A fold pass folded at candidate n: count it. */
void np_pass_folded(np_pass_ctx *ctx, const np_node *n);

typedef struct np_pass {
	const char *name;
	const char *doc;             /* one line for --help and the manual */
	np_status (*run)(np_model *m, np_pass_ctx *ctx, np_error *err);
} np_pass;

/* The pass by name, NULL if unknown. */
const np_pass *np_pass_find(const char *name);
/* Every pass in passes.def order; *n set. */
const np_pass *const *np_pass_list(int *n);

/* Run the comma-separated list ("none" = nothing; "default" = the
 * default pipeline), each with np_run_pass(). */
np_status np_run_passes(np_model *m, const char *list, np_pass_ctx *ctx,
                        np_error *err);
/* Run one pass, then sort the graph and check it: use-def links
 * (np_graph_verify), and shapes (with np_shapes_infer of cost.h): every
 * value that was there before and still is keeps its inferred shape;
 * if the shapes agreed before the pass, they still do (recorded shapes
 * of graph outputs and value_info against the inferred ones; the operands
 * of linear ops (Conv, Gemm, MatMul), per-channel affine ops
 * (BatchNormalization) and arithmetic ops against each other, as the op
 * table's facts say).  A pass that breaks either is a bug:
 * NP_ERR_INVALID naming the pass. */
np_status np_run_pass(np_model *m, const np_pass *p, np_pass_ctx *ctx,
                      np_error *err);

/* Doc string helper: append "; text" to a node's doc_string (arena). */
void np_node_doc_append(np_model *m, np_node *n, const char *text);

/* --------------------------------------------- helpers shared by passes */

/* An initializer's float payload, or NULL if v is not a float
 * initializer. */
float *np_init_floats(const np_value *v);
/* A new float initializer with a unique name based on base. */
np_value *np_new_float_init(np_model *m, const char *base, int rank,
                            const int64_t *dims, np_error *err);
/* True if v's only reader is n (one use, not a graph output). */
bool np_value_single_use(const np_value *v, const np_node *n);

#endif
