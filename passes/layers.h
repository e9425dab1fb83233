/* layers.h - rectified layers (DESIGN.md section 2).
 *
 * A rectified layer is a rectifier together with its producers: walking
 * back from the rectifier's input through BatchNormalization, Add (every
 * branch), Identity, Dropout, Flatten and Reshape (the op table's
 * NP_OPF_CHANNEL_AFFINE, NP_OPF_PASS and NP_OPF_RESHAPE ops), the first
 * linear op (NP_OPF_LINEAR: Conv, Gemm or MatMul) on each branch.  Its
 * neurons are the channels of the rectifier's input, as the producers'
 * weight_geom gives them; its prunable weights are its producers' weight
 * initializers, each in at most one layer (the first rectifier in graph
 * order claims it).
 *
 * A rectifier is one node (NP_OPF_RECTIFIER: Relu, LeakyRelu, PRelu, Clip
 * with min 0, Gelu)
 * or a decomposed GELU (erf or tanh form, as PyTorch and TensorFlow
 * exporters write it) or SiLU (x * Sigmoid(x)) whose intermediate values
 * nothing outside the pattern reads; then z is the pattern's x and the
 * pattern is one rectifier.  HardSwish and HardSigmoid are not rectifiers.
 *
 * The analysis borrows pointers into the model: an np_layers is valid
 * until the graph is mutated, and owns only its arrays (np_layers_free).
 */
#ifndef NEPENC_LAYERS_H
#define NEPENC_LAYERS_H

#include "ir.h"
#include "status.h"

typedef enum np_rect_kind {
	NP_RECT_RELU,
	NP_RECT_LEAKY_RELU,
	NP_RECT_PRELU,
	NP_RECT_CLIP,          /* Clip with min 0 (ReLU6: max 6) */
	NP_RECT_GELU,          /* Gelu op, or decomposed (erf or tanh form) */
	NP_RECT_SILU           /* x * Sigmoid(x) */
} np_rect_kind;

const char *np_rect_kind_name(np_rect_kind k);

/* Neuron states.  Relu-like rectifiers use OFF and ON; Clip(0,6) also
 * OFF_HI (z > max).  Index into np_layer_profile.counts. */
enum { NP_STATE_OFF = 0, NP_STATE_ON = 1, NP_STATE_OFF_HI = 2, NP_MAX_STATES = 3 };

/* How the rectifier is written in the graph. */
typedef enum np_rect_form {
	NP_FORM_OP,            /* one node: Relu, LeakyRelu, PRelu, Clip, Gelu */
	NP_FORM_ERF,           /* x * 0.5 * (1 + Erf(x / sqrt 2)), any order */
	NP_FORM_TANH,          /* 0.5 * x * (1 + Tanh(sqrt(2/pi) *
	                        *   (x + 0.044715 * x^3))), Pow or Mul cube */
	NP_FORM_SIGMOID        /* x * Sigmoid(x) */
} np_rect_form;

typedef struct np_layer {
	np_rect_kind kind;
	np_rect_form form;
	np_node *rectifier;    /* the node whose output is the activation */
	np_node **pattern;     /* every node of a pattern rectifier (incl.),
	                        * graph order; not the Constant nodes of its
	                        * operands (dead code once it is gone) */
	int n_pattern;
	np_value *z;           /* pre-activation: the rectifier's input (x) */
	np_value *out;         /* activation */
	float clip_min, clip_max;   /* NP_RECT_CLIP */
	float slope;           /* NP_RECT_LEAKY_RELU alpha */
	np_node **producers;   /* Conv/Gemm/MatMul nodes, graph order */
	int n_producers;
	np_value **weights;    /* prunable weight initializers (claimed) */
	int n_weights;
	int64_t neurons;       /* channels of z; -1 when unknown */
	/* Axis of z holding the neurons, from the first producer's weight
	 * geometry (the op table's y_last): 1 (Conv NCHW, Gemm [N, C], and
	 * a layer without producers), or -1 for z's last axis (MatMul with
	 * an initializer weight: an encoder MLP's [B, T, C], whose every
	 * batch x token position is a sample of each neuron).  For a rank-2
	 * z both are axis 1. */
	int axis;
	int64_t n_prunable;    /* elements in weights[] */
} np_layer;

typedef struct np_layers {
	np_layer *v;
	int n;
} np_layers;

/* The kind as `nepenc inspect` names it: "relu", "leaky_relu", "prelu",
 * "relu6" (Clip 0..6) or "clip", "gelu", "gelu(tanh)" (Gelu op with
 * approximate="tanh"), "gelu(erf pattern)", "gelu(tanh pattern)",
 * "silu(pattern)".  Static string. */
const char *np_layer_kind_label(const np_layer *L);

np_status np_find_layers(const np_model *m, np_layers *out, np_error *err);
void np_layers_free(np_layers *ls);

/* L->axis made an index into a z of the given rank (-1: rank - 1). */
int np_layer_axis(const np_layer *L, int rank);

/* Float value of a scalar constant (initializer or Constant node output);
 * false if v is not one. */
bool np_value_scalar(const np_value *v, double *out);

/* Trainable parameters: float initializers, except BatchNormalization
 * running statistics (inputs 3 and 4); an initializer copied by Identity
 * (the exporter's way of storing equal parameters once) counts per copy. */
int64_t np_model_param_count(const np_model *m);

#endif
