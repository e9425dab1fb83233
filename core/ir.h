/* ir.h - nepenc's intermediate representation of an ONNX model.
 *
 * The loader converts an ONNX ModelProto into this IR at once and frees the
 * protobuf structs; passes rewrite the IR; the emitter converts it back.
 *
 * OWNERSHIP
 *   - An np_model owns everything reachable from it: its graph, every node,
 *     value, attribute, tensor and string.  np_model_free() releases all.
 *   - Small objects (strings, nodes, values, attribute arrays) come from the
 *     model's arena (np_arena); they are never freed one by one, only with
 *     the model.  Removing a node unlinks it; its memory stays in the arena.
 *   - Tensor payloads (np_tensor.data) are malloc'd and owned by their
 *     np_tensor; np_tensor_set_data() frees the old payload.  Every tensor is
 *     created through np_model_new_tensor(), which links it into the model's
 *     tensor list so np_model_free() can release the payload.
 *   - Pieces the IR does not model (nested graphs of If/Loop/Scan, sparse
 *     tensors, non-tensor types such as sequences and maps, model-local
 *     functions, training info) are kept as the packed protobuf bytes of the
 *     input ("blobs", arena-owned) and written back verbatim.
 *
 * USE-DEF
 *   Every value has at most one producer (a node output, or none for graph
 *   inputs and initializers) and a list of uses (node, input index).  The
 *   mutation functions below keep producer and uses consistent; passes must
 *   not assign node->inputs[i] directly.  Graph outputs are not uses: they
 *   are flagged with value->is_output.
 *
 * ORDER
 *   graph->nodes is kept in a topological order.  np_graph_insert_node()
 *   places a node before its first consumer; np_graph_toposort() recomputes
 *   a stable order (ties keep the original order) and fails on a cycle.
 */
#ifndef NEPENC_IR_H
#define NEPENC_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* ONNX TensorProto.DataType, same numbers. */
typedef enum np_dtype {
	NP_UNDEFINED = 0, NP_FLOAT = 1, NP_UINT8 = 2, NP_INT8 = 3,
	NP_UINT16 = 4, NP_INT16 = 5, NP_INT32 = 6, NP_INT64 = 7,
	NP_STRING = 8, NP_BOOL = 9, NP_FLOAT16 = 10, NP_DOUBLE = 11,
	NP_UINT32 = 12, NP_UINT64 = 13, NP_COMPLEX64 = 14, NP_COMPLEX128 = 15,
	NP_BFLOAT16 = 16,
	NP_DTYPE_MAX = 16
} np_dtype;

/* Bytes per element, 0 for STRING and UNDEFINED or an unknown code. */
size_t np_dtype_size(int dtype);
const char *np_dtype_name(int dtype);

/* ---------------------------------------------------------------- arena */

typedef struct np_arena np_arena;

/* Allocation failure calls the handler main() installed (which must not
 * return); see arena.c. */
void np_set_oom_handler(void (*handler)(size_t size));
np_arena *np_arena_new(void);
void np_arena_free(np_arena *a);
void *np_arena_alloc(np_arena *a, size_t size);          /* zeroed, 16-aligned */
void *np_arena_grow(np_arena *a, void *old, size_t old_size, size_t new_size);
char *np_arena_strdup(np_arena *a, const char *s);       /* NULL -> NULL */
void *np_arena_memdup(np_arena *a, const void *p, size_t n);
char *np_arena_printf(np_arena *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------- tensors */

#define NP_MAX_RANK 16

typedef struct np_tensor {
	struct np_tensor *next_in_model;  /* model's tensor list */
	const char *name;                 /* may be NULL (attribute tensors) */
	const char *doc_string;
	int dtype;                        /* np_dtype */
	int rank;
	int64_t *dims;                    /* arena; rank entries */
	int64_t nelem;                    /* product of dims (1 for rank 0) */
	/* Numeric payload: nelem * np_dtype_size(dtype) bytes, little endian,
	 * as ONNX raw_data.  Owned (malloc). */
	void *data;
	size_t nbytes;
	/* STRING payload: nelem byte strings (arena-owned). */
	uint8_t **strings;
	size_t *string_lens;
	/* Where the loader found the payload, kept for the emitter's choices:
	 * 0 = raw_data, 1 = typed field (float_data...), 2 = external file. */
	int stored_as;
} np_tensor;

/* ------------------------------------------------------------- values */

typedef struct np_dim {
	int64_t value;        /* >= 0 when known, -1 when unknown/symbolic */
	const char *param;    /* symbolic name (e.g. "N"), or NULL */
	const char *denotation;
} np_dim;

struct np_node;

typedef struct np_use {
	struct np_node *node;
	int index;            /* input index; -1 for an implicit (subgraph) use */
} np_use;

typedef struct np_value {
	const char *name;
	const char *doc_string;
	/* Type: has_type says a TypeProto was given.  For tensors, dtype and
	 * shape; has_shape says whether a TensorShapeProto was given (rank 0
	 * with has_shape is a scalar).  Non-tensor types are kept packed in
	 * type_blob and dtype is NP_UNDEFINED. */
	bool has_type;
	bool has_shape;
	int dtype;
	int rank;
	np_dim *dims;
	const char *denotation;        /* TypeProto.denotation */
	const uint8_t *type_blob;      /* packed TypeProto for non-tensors */
	size_t type_blob_len;

	struct np_node *producer;      /* NULL for graph inputs, initializers */
	int producer_index;            /* output index in producer */
	np_use *uses;
	int n_uses, cap_uses;

	np_tensor *init;               /* initializer payload, or NULL */
	bool is_input;                 /* listed in graph.input */
	bool is_output;                /* listed in graph.output */
	bool in_value_info;            /* listed in graph.value_info */
	bool is_sparse_init;           /* named by graph.sparse_initializer
	                                * (payload kept packed in the graph) */
	int id;                        /* index in graph->values */
} np_value;

/* ---------------------------------------------------------- attributes */

/* ONNX AttributeProto.AttributeType, same numbers. */
typedef enum np_attr_type {
	NP_ATTR_UNDEFINED = 0, NP_ATTR_FLOAT = 1, NP_ATTR_INT = 2,
	NP_ATTR_STRING = 3, NP_ATTR_TENSOR = 4, NP_ATTR_GRAPH = 5,
	NP_ATTR_FLOATS = 6, NP_ATTR_INTS = 7, NP_ATTR_STRINGS = 8,
	NP_ATTR_TENSORS = 9, NP_ATTR_GRAPHS = 10, NP_ATTR_SPARSE_TENSOR = 11,
	NP_ATTR_SPARSE_TENSORS = 12, NP_ATTR_TYPE_PROTO = 13,
	NP_ATTR_TYPE_PROTOS = 14
} np_attr_type;

typedef struct np_bytes {
	const uint8_t *data;
	size_t len;
} np_bytes;

typedef struct np_attr {
	const char *name;
	const char *doc_string;
	const char *ref_attr_name;     /* inside functions; usually NULL */
	int type;                      /* np_attr_type */
	float f;
	int64_t i;
	np_bytes s;                    /* STRING (not NUL-terminated in ONNX) */
	np_tensor *t;                  /* TENSOR */
	int n;                         /* element count of the list kinds */
	float *floats;
	int64_t *ints;
	np_bytes *strings;
	np_tensor **tensors;
	/* GRAPH, SPARSE_TENSOR, TYPE_PROTO: one packed blob; the plural kinds:
	 * n packed blobs.  Written back verbatim. */
	np_bytes *blobs;
	/* With ref_attr_name: the file gave a value as well; it is kept and
	 * written back (ONNX says to use the reference, but the value is
	 * part of the file).  Without ref_attr_name the value is always
	 * there and this is false. */
	bool ref_has_value;
} np_attr;

/* --------------------------------------------------------------- nodes */

typedef struct np_node {
	const char *name;              /* unique in the graph after load */
	const char *op_type;
	const char *domain;            /* "" for the default ONNX domain */
	const char *doc_string;
	np_value **inputs;             /* NULL entry = omitted optional input */
	int n_inputs;
	np_value **outputs;            /* NULL entry = omitted optional output */
	int n_outputs;
	np_attr *attrs;
	int n_attrs;
	/* Values of the enclosing graph that a nested graph attribute reads
	 * by name (If/Loop/Scan bodies).  They count as uses (index -1). */
	np_value **implicit;
	int n_implicit;
	struct np_graph *graph;        /* the graph that created it */
	bool removed;                  /* unlinked; memory stays in the arena */
	int id;                        /* position in graph->nodes, refreshed */
} np_node;

/* --------------------------------------------------------------- graph */

typedef struct np_kv {
	const char *key;
	const char *value;
} np_kv;

typedef struct np_graph {
	const char *name;
	const char *doc_string;
	np_node **nodes;               /* topological order */
	int n_nodes, cap_nodes;
	np_value **values;             /* every value, by creation */
	int n_values, cap_values;
	np_value **inputs;             /* graph.input order */
	int n_inputs;
	np_value **outputs;            /* graph.output order */
	int n_outputs;
	np_value **initializers;       /* graph.initializer order */
	int n_initializers, cap_initializers;
	np_value **value_info;         /* graph.value_info order */
	int n_value_info;
	np_bytes *sparse_initializers; /* packed SparseTensorProto, verbatim */
	int n_sparse_initializers;
	np_bytes *quantization_annotation; /* packed TensorAnnotation */
	int n_quantization_annotation;
	/* name -> value hash (open addressing over graph->values). */
	np_value **hash;
	size_t hash_cap;
	struct np_model *model;
} np_graph;

typedef struct np_opset {
	const char *domain;            /* "" or "ai.onnx" for the default */
	int64_t version;
} np_opset;

typedef struct np_model {
	np_arena *arena;
	int64_t ir_version;
	np_opset *opsets;
	int n_opsets;
	const char *producer_name;
	const char *producer_version;
	const char *domain;
	int64_t model_version;
	bool has_model_version;
	const char *doc_string;
	np_kv *metadata;
	int n_metadata;
	np_bytes *functions;           /* packed FunctionProto, verbatim */
	int n_functions;
	np_bytes *training_info;       /* packed TrainingInfoProto, verbatim */
	int n_training_info;
	np_graph *graph;
	np_tensor *tensors;            /* list of every tensor, for freeing */
	const char *path;              /* file it was loaded from, or NULL */
	/* The external-data files the loader read, each once, named as it
	 * opened them: "FOLDER/LOCATION", FOLDER the model's ("LOCATION"
	 * alone for a model named without one).  Arena strings; depfiles
	 * list them. */
	const char **ext_files;
	int n_ext_files;
} np_model;

/* --------------------------------------------------------------- model */

np_model *np_model_new(void);
void np_model_free(np_model *m);
/* Opset version of a domain ("" and "ai.onnx" are the same), 0 if absent. */
int64_t np_model_opset(const np_model *m, const char *domain);
void np_model_set_metadata(np_model *m, const char *key, const char *value);
const char *np_model_get_metadata(const np_model *m, const char *key);

/* A tensor owned by the model; payload zeroed (numeric) for dims given. */
np_tensor *np_model_new_tensor(np_model *m, int dtype, int rank,
                               const int64_t *dims, np_error *err);
/* Replace the payload; takes ownership of data (malloc'd). */
void np_tensor_set_data(np_tensor *t, void *data, size_t nbytes);
/* nelem of dims, with overflow check: -1 when the product overflows int64
 * or a dim is negative. */
int64_t np_dims_product(const int64_t *dims, int rank);

/* --------------------------------------------------------------- graph */

/* Find a value by name, NULL if none. */
np_value *np_graph_find(const np_graph *g, const char *name);
/* Create a value; fails (NULL, err set) if the name exists. */
np_value *np_graph_new_value(np_graph *g, const char *name, np_error *err);
/* A value whose name is unique in the graph: base, base_1, base_2, ... */
np_value *np_graph_new_unique_value(np_graph *g, const char *base);
/* A node name not used yet in the graph: base, base_1, ... (arena string) */
const char *np_graph_unique_node_name(np_graph *g, const char *base);

/* Add an initializer value holding t (t->name is set to the value name). */
np_value *np_graph_add_initializer(np_graph *g, const char *name,
                                   np_tensor *t, np_error *err);

/* Create a node with n_in inputs (NULL entries allowed) and n_out outputs
 * (values must have no producer yet).  Not yet in graph->nodes: call
 * np_graph_insert_node() after setting attributes. */
np_node *np_graph_new_node(np_graph *g, const char *op_type,
                           const char *domain, const char *name,
                           np_value **in, int n_in,
                           np_value **out, int n_out);
/* Place node in graph->nodes before its first consumer (or at the end),
 * and record its uses and productions. */
void np_graph_insert_node(np_graph *g, np_node *n);
/* Unlink a node: drop its uses and its productions, remove from nodes.
 * Its output values stay in the graph, producer NULL. */
void np_graph_remove_node(np_graph *g, np_node *n);
/* Set input i of n to v (v may be NULL), keeping uses consistent. */
void np_node_set_input(np_node *n, int i, np_value *v);
/* Every use of from (node inputs, implicit uses) now reads to.  If from is
 * a graph output, the graph output is NOT changed (the caller decides). */
void np_value_replace_uses(np_value *from, np_value *to);
/* Make n produce `to` in place of its output `from`; the remaining readers
 * of `from` read `to` (the same data).  `to` must have no producer.  The
 * usual way for a rewrite to keep a graph output's name. */
void np_node_replace_output(np_node *n, np_value *from, np_value *to);
/* Recompute graph->nodes in topological order, stable; NP_ERR_INVALID on a
 * cycle (message names a node on it). */
np_status np_graph_toposort(np_graph *g, np_error *err);
/* Remove nodes none of whose outputs reach a graph output, and
 * initializers nothing reads (graph inputs are kept). */
int np_graph_dead_code(np_graph *g);
/* Check use-def links, order and names; for tests and debug builds. */
np_status np_graph_verify(const np_graph *g, np_error *err);

/* ---------------------------------------------------------- attributes */

const np_attr *np_node_attr(const np_node *n, const char *name);
int64_t np_node_attr_int(const np_node *n, const char *name, int64_t dflt);
float np_node_attr_float(const np_node *n, const char *name, float dflt);
/* NUL-terminated copy in the arena, or dflt. */
const char *np_node_attr_string(const np_node *n, const char *name,
                                const char *dflt);
/* INTS attribute: count in *n_out, NULL if absent. */
const int64_t *np_node_attr_ints(const np_node *n, const char *name,
                                 int *n_out);
/* Add or replace an attribute (copied into the arena). */
void np_node_set_attr_int(np_node *n, const char *name, int64_t v);
void np_node_set_attr_float(np_node *n, const char *name, float v);
void np_node_set_attr_ints(np_node *n, const char *name,
                           const int64_t *v, int count);
void np_node_set_attr_string(np_node *n, const char *name, const char *v);
void np_node_remove_attr(np_node *n, const char *name);

/* Longest path (in nodes) from a graph input to a graph output; -1 when
 * out of memory (callers must not print it). */
int np_graph_depth(const np_graph *g);

#endif
