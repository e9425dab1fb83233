/* nepenthe.h - NEPENTHE: entropy profile, budgeted masking, the iteration
 * loop, linearization plans, and the run record the report is made of.
 * DESIGN.md sections 3 to 6 and 9.
 */
#ifndef NEPENC_NEPENTHE_H
#define NEPENC_NEPENTHE_H

#include <stdbool.h>
#include <stdint.h>

#include "data.h"
#include "ir.h"
#include "layers.h"
#include "pass.h"
#include "rt.h"
#include "status.h"
#include "train.h"

/* ------------------------------------------------------------ entropy */

/* Neuron states NP_STATE_*: layers.h. */

typedef struct np_layer_profile {
	int64_t neurons;
	int n_states;                /* 2, or 3 for Clip with a finite max */
	int64_t *counts;             /* neurons * n_states (64-bit counts) */
	int64_t *dont_care;          /* neurons: z exactly at a state bound */
	double *H;                   /* neurons: entropy in bits */
	double H_layer;              /* mean of H over neurons */
	int64_t zero_neurons;        /* neurons with H == 0 */
	/* EASIER's per-step profiles cover every layer of the input model:
	 * a layer an earlier step removed is absent (no neurons, no arrays). */
	bool absent;
} np_layer_profile;

/* --criterion wanda: ||x_j||_2 over the data of every input feature j of
 * every prunable weight (Sun et al. 2023).  Weights are numbered across
 * layers in order (layer 0's weights first), as np_mask_opts.input_norms.
 * Features: Gemm, the columns of A (rows with transA), so W[n, j] with
 * transB and W[j, n] without read feature j; MatMul x @ W, the last axis
 * of x; Conv, the input channels: W[o, c, kh, kw] reads channel
 * (o / (C_out/group)) * C_in/group + c, its norm over batch and spatial
 * positions. */
typedef struct np_input_norms {
	int n;                       /* prunable weights */
	int64_t *len;                /* n: features of each */
	double **v;                  /* n arrays of len[k]: sums of squares,
	                              * norms after np_input_norms_finish */
} np_input_norms;

/* After np_rt_run() (inference): add the squares of every prunable
 * weight's input features in rt's current plan; allocates on first use.
 * Refuses (NP_ERR_UNSUPPORTED, naming the node) a weight that is not its
 * node's second input or a MatMul weight of rank > 2. */
np_status np_input_norms_add(np_rt *rt, const np_layers *ls, np_input_norms *nn,
                             np_error *err);
/* Watch (on) or stop watching the values np_input_norms_add() reads,
 * so the runtime never writes over them in place (rt.h, WATCH).  A weight
 * np_input_norms_add() would refuse is skipped here. */
np_status np_input_norms_watch(np_rt *rt, const np_layers *ls, bool on,
                               np_error *err);
void np_input_norms_finish(np_input_norms *nn);   /* sqrt of the sums */
void np_input_norms_free(np_input_norms *nn);

typedef struct np_profile {
	int n;                       /* = layers.n */
	np_layer_profile *l;
	np_input_norms norms;        /* with np_profile_opts.input_norms */
} np_profile;

typedef struct np_profile_opts {
	int64_t batch;
	bool no_dont_care;           /* --no-dont-care: z == 0 counts as OFF */
	bool quiet;                  /* no progress line */
	bool input_norms;            /* also collect np_profile.norms (wanda) */
} np_profile_opts;

/* Run d through rt in inference mode and count states of every layer's
 * pre-activation (neurons on the layer's axis, layers.h: axis 1 with the
 * spatial positions as samples, or the last axis with every batch x
 * token position as a sample); with
 * o->input_norms, also the input-feature norms of the same batches.  The
 * values it reads are watched (rt.h, WATCH) during the run only. */
np_status np_profile_run(np_rt *rt, const np_layers *ls, const np_dataset *d,
                         const np_profile_opts *o, np_profile *out,
                         np_error *err);
void np_profile_free(np_profile *p);
/* A layer is removable when H(l) <= eps (eps = 0: exactly zero). */
bool np_layer_removable(const np_layer_profile *lp, double eps);
/* State of neuron i for linearization: its only state, or with eps > 0
 * the majority state (ON wins a tie). */
int np_neuron_state(const np_layer_profile *lp, int64_t i);

/* ------------------------------------------------------------ masking */

typedef enum np_method { NP_METHOD_NEPENTHE, NP_METHOD_IMP, NP_METHOD_EASIER } np_method;
typedef enum np_criterion { NP_CRIT_MAGNITUDE, NP_CRIT_WANDA } np_criterion;

typedef struct np_mask_opts {
	double zeta;
	np_method method;
	np_criterion criterion;
	bool no_entropy_budget;      /* b(l) proportional to layer size */
	bool no_neuron_selection;    /* candidates include H(l,i) == 0 neurons */
	/* --min-live F, the no-collapse budget (NEPENTHE only; 0: off): a
	 * masking step leaves every neuron at least max(1, ceil(F x its
	 * prunable weights)) live ones, so no layer is ever emptied; the
	 * budget a layer cannot take at its floor goes to the other layers
	 * of L in proportion to their shares. */
	double min_live;
	/* --criterion wanda: ||x||_2 of each weight's input feature (Gemm:
	 * input column; Conv: input channel), one array per prunable weight,
	 * numbered across layers in order (layer 0's weights first).  NULL
	 * for magnitude; wanda without it is an error.  See np_input_norms. */
	double **input_norms;
} np_mask_opts;

/* The first producer of layer L that reads weight w (NULL if none). */
const np_node *np_layer_weight_producer(const np_layer *L, const np_value *w);

typedef struct np_mask_layer_stat {
	double I, R;                 /* score and relevance (section 4) */
	int64_t budget;              /* b(l) */
	int64_t removed;             /* weights actually masked this step */
	int64_t nonzero_before;
} np_mask_layer_stat;

/* One masking step over the layers (section 4): masks live in the
 * runtime's params (np_param.mask), created on first use; pruned weights
 * are zeroed.  stats: ls->n entries (may be NULL). */
np_status np_mask_step(np_rt *rt, const np_layers *ls, const np_profile *prof,
                       const np_mask_opts *o, np_mask_layer_stat *stats,
                       np_error *err);

/* The linearize plan (np_linearize_plan) is the pass's input: pass.h. */

/* ------------------------------------------------------------ EASIER */

/* What an EASIER step makes of a layer whose entropy is above zero (at
 * zero entropy the step takes the layer's exact affine map, NP_MAP_EXACT):
 * the identity, as EASIER does (for every rectifier nepenc knows the
 * ON-state map is the identity: ON is s = 1, t = 0), or each neuron's
 * majority state, as --entropy-eps does. */
typedef enum np_easier_map {
	NP_MAP_IDENTITY,
	NP_MAP_MAJORITY,
	NP_MAP_EXACT
} np_easier_map;

const char *np_easier_map_name(np_easier_map m);

/* ---------------------------------------------------------- run record */

/* What one NEPENTHE iteration did; the report and the plot read these.
 * Accuracies are top-1 percentages; sparsity is a fraction. */
typedef struct np_iteration {
	int index;                   /* 1-based */
	double zeta;
	double val_top1;             /* after fine-tuning */
	bool accepted;               /* val >= theta * dense */
	bool backoff;                /* failed and was rolled back */
	bool exhausted;              /* nothing left to prune: the loop ended
	                              * before fine-tuning this one */
	double sparsity;             /* over prunable weights, after masking */
	double seconds;
	np_profile profile;          /* before masking at this iteration */
	np_mask_layer_stat *mask;    /* layers.n entries (NULL for EASIER) */
	/* EASIER: the layer this step linearized (1-based index into the
	 * run's layers; 0: none, NEPENTHE and IMP) and the map it took. */
	int layer;
	np_easier_map map;
	bool refused;                /* EASIER: linearize kept the rectifier
	                              * (the log says why): not fine-tuned */
} np_iteration;

/* How a layer's rectifier left the written model (np_run.gone). */
typedef enum np_gone {
	NP_GONE_NO = 0,              /* still in the output */
	NP_GONE_LINEARIZED,          /* linearized when the model was emitted */
	NP_GONE_EASIER,              /* linearized by an accepted EASIER step */
	NP_GONE_FOLDED               /* went with a branch folded into a
	                              * constant (fold_const), never linearized */
} np_gone;

typedef struct np_run {
	const char *model;           /* input file, for titles */
	/* settings */
	double zeta, theta, entropy_eps;
	int max_iter, epochs, backoff;
	np_method method;
	np_criterion criterion;
	np_fold_policy fold;
	np_easier_map easier_map;    /* --method easier */
	double min_live;             /* --min-live (0: off) */
	/* results */
	double dense_val, final_val;
	double dense_test, final_test;     /* -1 without --test */
	int chosen;                        /* iteration kept (0 = the input) */
	np_iteration *it;
	int n_it;
	np_profile final_profile;          /* profile of the chosen iterate */
	/* removed: the layers whose rectifier is not in the written model,
	 * whatever removed it (gone[i] says what); counted on the output by
	 * np_nepenthe_emit, by the rectifiers' node names when layer_names is
	 * set.  gone: layers entries, malloc'd; NULL before emission. */
	int layers, removed;
	uint8_t *gone;
	int nodes_before, nodes_after, depth_before, depth_after;
	double sparsity;
	/* How far the logits moved, input model vs the written one, on the
	 * validation data (max and mean of |difference| over every logit);
	 * measured when the model has layers whose linearization is an
	 * approximation (GELU, SiLU, or --entropy-eps > 0). */
	bool logits_compared;
	double logit_max_abs, logit_mean_abs;
	double seconds;
	np_pass_log log;
	/* layer names in order, for the report (arena of the input model) */
	const char **layer_names;
	const char **layer_kinds;    /* family: relu, clip, gelu, ... */
	const char **layer_labels;   /* as inspect names them: relu6,
	                              * gelu(erf pattern), ...; may be NULL */
} np_run;

/* ---------------------------------------------------------- the loop */

typedef struct np_nepenthe_opts {
	double zeta, theta, entropy_eps;
	int max_iter, backoff;
	np_mask_opts mask;           /* mask.zeta is set per iteration */
	np_train_opts train;
	np_profile_opts profile;
	int64_t batch;               /* evaluation batch */
	np_fold_policy fold;
	const np_data_opts *dopts;
	int threads;
	bool quiet, verbose;
	bool bf16;                   /* runtimes the EASIER loop makes */
	np_easier_map easier_map;    /* --method easier (mask.method) */
	/* Largest logit gap, relative to their scale, that verifying a fold
	 * allows (DESIGN section 6); 0: 1e-4.  Tests make it tiny. */
	double verify_rtol;
} np_nepenthe_opts;

/* The data of a run.  Teacher logits replace labels when the data has
 * none (distillation; "accuracy" is agreement with the input model). */
typedef struct np_run_data {
	const np_dataset *train, *val, *test;   /* test may be NULL */
	const float *teacher_train, *teacher_val, *teacher_test;
} np_run_data;

/* Iterate profile -> mask -> fine-tune -> validate (section 5) on rt,
 * with the backoff; leaves rt holding the chosen iterate and fills run. */
np_status np_nepenthe_loop(np_rt *rt, const np_layers *ls, const np_run_data *d,
                           const np_nepenthe_opts *o, np_run *run, np_error *err);

/* From the stored model (chosen weights, masks applied) and a fresh
 * profile: linearize the removable layers, fold, verify, and return the
 * model to write (section 6).  bar: validation accuracy to keep. */
np_status np_nepenthe_emit(const np_model *stored, const np_layers *ls,
                           const np_profile *prof, const np_run_data *d,
                           const np_nepenthe_opts *o, double bar, np_run *run,
                           np_model **out, np_error *err);

/* EASIER (DESIGN.md section 11, after arXiv 2404.18949) on a copy of
 * in, whose rectified layers are ls: each step profiles the current
 * model, linearizes the layer of lowest entropy not tried yet (its exact
 * map at zero entropy, else o->easier_map), fine-tunes o->train.epochs on
 * a runtime of its own and keeps the step if validation top-1 >= theta x
 * run->dense_val (set it first); a failed step is undone and its layer
 * never tried again.  Steps, failed ones included, count toward
 * o->max_iter.  Fills run (iterations, chosen, the final profile over
 * the input's layers) and res: the chosen model, its layers and their
 * fresh profile, as np_nepenthe_emit takes them. */
typedef struct np_easier_result {
	np_model *model;             /* owned; weights stored */
	np_layers layers;            /* of model */
	np_profile profile;          /* of layers (not spread) */
} np_easier_result;

np_status np_easier_loop(const np_model *in, const np_layers *ls, const np_run_data *d,
                         const np_nepenthe_opts *o, np_run *run,
                         np_easier_result *res, np_error *err);
void np_easier_result_free(np_easier_result *res);

void np_run_free(np_run *run);

#endif
