/* onnx_save.c - IR -> ONNX ModelProto -> file (see onnx_io.h).
 *
 * The protobuf structs are built in a scratch arena freed at the end.
 * Tensor payloads are referenced, not copied, except where a typed field
 * needs widening (int8 -> int32_data...).  Pieces the IR keeps as packed
 * blobs are unpacked for the duration, because generated code embeds
 * sub-messages by pointer, and freed after packing.
 *
 * Output order follows the IR's orders only (no pointers, no time), so the
 * same IR gives the same bytes.  protobuf-c packs fields by field number,
 * like the reference implementation, so a model that went through the IR
 * unchanged usually comes back byte for byte.
 */
#include "onnx_io.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "atomic.h"
#include "onnx.pb-c.h"

/* Payload alignment inside the external-data file (page size, for mmap). */
#define SV_EXT_ALIGN 4096
/* Room kept below NP_EXTERNAL_THRESHOLD for the size estimate's slack. */
#define SV_EXT_MARGIN ((uint64_t)1 << 20)

typedef struct sv_init {
	Onnx__TensorProto *pb;
	const np_tensor *t;
	bool external;
	uint64_t offset;
} sv_init;

typedef struct sv_ctx {
	np_arena *arena;
	np_error *err;
	bool failed;
	ProtobufCMessage **unpacked;    /* malloc'd; freed after packing */
	int n_unpacked, cap_unpacked;
	sv_init *inits;                 /* graph initializers, in order */
	int n_inits;
	/* What is being built, for messages about a kept blob. */
	const np_node *node;
	const char *attr;
	const char *value;
} sv_ctx;

/* ------------------------------------------------------------ helpers */

static void *sv_nomem(sv_ctx *c)
{
	np_fail(c->err, NP_ERR_NOMEM, "out of memory building the model");
	c->failed = true;
	return NULL;
}

/* Zeroed; never NULL for a zero count, so NULL always means failure. */
static void *sv_alloc(sv_ctx *c, size_t count, size_t size)
{
	if (size && count > SIZE_MAX / size)
		return sv_nomem(c);
	size_t n = count * size;
	void *p = np_arena_alloc(c->arena, n ? n : 1);
	return p ? p : sv_nomem(c);
}

#define SV_NEW(c, var, type, initfn) \
	type *var = sv_alloc((c), 1, sizeof(type)); \
	if (!var) \
		return NULL; \
	initfn(var)

/* protobuf-c fields are char * but packing never writes through them. */
static char *sv_str(const char *s)
{
	return (char *)s;
}

/* Doc strings: empty means absent. */
static char *sv_doc(const char *s)
{
	return (s && *s) ? (char *)s : NULL;
}

static void *sv_bad_blob(sv_ctx *c, const char *what)
{
	if (c->attr)
		np_fail(c->err, NP_ERR_FORMAT, "cannot decode the kept %s of "
		        "attribute '%s' (node %s, op %s)", what, c->attr,
		        c->node->name ? c->node->name : "",
		        c->node->op_type ? c->node->op_type : "");
	else if (c->value)
		np_fail(c->err, NP_ERR_FORMAT, "cannot decode the kept %s of "
		        "value '%s'", what, c->value);
	else
		np_fail(c->err, NP_ERR_FORMAT, "cannot decode the kept %s", what);
	c->failed = true;
	return NULL;
}

static ProtobufCMessage *sv_unpack(sv_ctx *c, const ProtobufCMessageDescriptor *d,
                                   np_bytes b, const char *what)
{
	if (c->n_unpacked == c->cap_unpacked) {
		int cap = c->cap_unpacked ? 2 * c->cap_unpacked : 16;
		void *p = realloc(c->unpacked, (size_t)cap * sizeof *c->unpacked);
		if (!p)
			return sv_nomem(c);
		c->unpacked = p;
		c->cap_unpacked = cap;
	}
	ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, b.len, b.data);
	if (!m)
		return sv_bad_blob(c, what);
	c->unpacked[c->n_unpacked++] = m;
	return m;
}

/* ------------------------------------------------------------ tensors */

/* Elements of the narrow kinds, widened as ONNX stores them in int32_data. */
static int32_t sv_narrow_at(const uint8_t *p, int dtype, size_t i)
{
	switch (dtype) {
	case NP_INT8:
		return (int8_t)p[i];
	case NP_INT16: {
		int16_t v;
		memcpy(&v, p + 2 * i, 2);
		return v;
	}
	case NP_UINT16: case NP_FLOAT16: case NP_BFLOAT16: {
		uint16_t v;
		memcpy(&v, p + 2 * i, 2);
		return v;
	}
	default:                        /* UINT8, BOOL */
		return p[i];
	}
}

static bool sv_typed_int32(sv_ctx *c, Onnx__TensorProto *p, const np_tensor *t)
{
	size_t n = (size_t)t->nelem;
	int32_t *out = sv_alloc(c, n, sizeof *out);
	if (!out)
		return false;
	for (size_t i = 0; i < n; i++)
		out[i] = sv_narrow_at(t->data, t->dtype, i);
	p->n_int32_data = n;
	p->int32_data = out;
	return true;
}

static bool sv_typed_uint32(sv_ctx *c, Onnx__TensorProto *p, const np_tensor *t)
{
	size_t n = (size_t)t->nelem;
	uint64_t *out = sv_alloc(c, n, sizeof *out);
	if (!out)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint32_t v;
		memcpy(&v, (const uint8_t *)t->data + 4 * i, 4);
		out[i] = v;
	}
	p->n_uint64_data = n;
	p->uint64_data = out;
	return true;
}

/* The typed field the input used (stored_as == 1).  Payloads are little
 * endian in memory like the host, so the wide kinds are referenced. */
static bool sv_typed(sv_ctx *c, Onnx__TensorProto *p, const np_tensor *t)
{
	size_t n = t->nbytes;
	switch (t->dtype) {
	case NP_FLOAT: case NP_COMPLEX64:
		p->n_float_data = n / 4;
		p->float_data = t->data;
		return true;
	case NP_DOUBLE: case NP_COMPLEX128:
		p->n_double_data = n / 8;
		p->double_data = t->data;
		return true;
	case NP_INT64:
		p->n_int64_data = n / 8;
		p->int64_data = t->data;
		return true;
	case NP_UINT64:
		p->n_uint64_data = n / 8;
		p->uint64_data = t->data;
		return true;
	case NP_INT32:
		p->n_int32_data = n / 4;
		p->int32_data = t->data;
		return true;
	case NP_UINT32:
		return sv_typed_uint32(c, p, t);
	default:
		return sv_typed_int32(c, p, t);
	}
}

static bool sv_strings(sv_ctx *c, Onnx__TensorProto *p, const np_tensor *t)
{
	size_t n = (size_t)t->nelem;
	if (n && !t->strings)
		return true;
	ProtobufCBinaryData *s = sv_alloc(c, n, sizeof *s);
	if (!s)
		return false;
	for (size_t i = 0; i < n; i++) {
		s[i].len = t->string_lens[i];
		s[i].data = t->strings[i];
	}
	p->n_string_data = n;
	p->string_data = s;
	return true;
}

static Onnx__TensorProto *sv_tensor(sv_ctx *c, const np_tensor *t,
                                    const char *name)
{
	SV_NEW(c, p, Onnx__TensorProto, onnx__tensor_proto__init);
	p->n_dims = (size_t)t->rank;
	p->dims = t->dims;
	p->has_data_type = 1;
	p->data_type = t->dtype;
	p->name = sv_str(name);
	p->doc_string = sv_doc(t->doc_string);
	if (t->dtype == NP_STRING)
		return sv_strings(c, p, t) ? p : NULL;
	size_t esize = np_dtype_size(t->dtype);
	if (esize == 0)
		return p;               /* UNDEFINED: no payload to write */
	if (t->nelem < 0 || t->nbytes != (size_t)t->nelem * esize) {
		np_fail(c->err, NP_ERR_INVALID, "tensor '%s' holds %zu bytes, "
		        "%" PRId64 " %s elements need %zu", name ? name : "",
		        t->nbytes, t->nelem, np_dtype_name(t->dtype),
		        (size_t)t->nelem * esize);
		c->failed = true;
		return NULL;
	}
	if (t->stored_as == 1)
		return sv_typed(c, p, t) ? p : NULL;
	p->has_raw_data = 1;
	p->raw_data.len = t->nbytes;
	p->raw_data.data = t->data;
	return p;
}

/* -------------------------------------------------------------- types */

static Onnx__TensorShapeProto *sv_shape(sv_ctx *c, const np_value *v)
{
	SV_NEW(c, s, Onnx__TensorShapeProto, onnx__tensor_shape_proto__init);
	s->n_dim = (size_t)v->rank;
	s->dim = sv_alloc(c, s->n_dim, sizeof *s->dim);
	if (!s->dim)
		return NULL;
	for (int i = 0; i < v->rank; i++) {
		const np_dim *d = &v->dims[i];
		SV_NEW(c, p, Onnx__TensorShapeProto__Dimension,
		       onnx__tensor_shape_proto__dimension__init);
		/* A resolved value wins over a leftover symbolic name. */
		if (d->value >= 0) {
			p->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
			p->dim_value = d->value;
		} else if (d->param) {
			p->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
			p->dim_param = sv_str(d->param);
		}
		p->denotation = sv_str(d->denotation);
		s->dim[i] = p;
	}
	return s;
}

/* TypeProto of v; *out stays NULL when v has no type. */
static bool sv_type(sv_ctx *c, const np_value *v, Onnx__TypeProto **out)
{
	*out = NULL;
	if (!v->has_type)
		return true;
	if (v->type_blob) {
		np_bytes b = { v->type_blob, v->type_blob_len };
		c->value = v->name;
		*out = (Onnx__TypeProto *)sv_unpack(c, &onnx__type_proto__descriptor,
		                                    b, "type");
		c->value = NULL;
		return *out != NULL;
	}
	Onnx__TypeProto *tp = sv_alloc(c, 1, sizeof *tp);
	Onnx__TypeProto__Tensor *tt = sv_alloc(c, 1, sizeof *tt);
	if (!tp || !tt)
		return false;
	onnx__type_proto__init(tp);
	onnx__type_proto__tensor__init(tt);
	if (v->dtype != NP_UNDEFINED) {
		tt->has_elem_type = 1;
		tt->elem_type = v->dtype;
	}
	if (v->has_shape && !(tt->shape = sv_shape(c, v)))
		return false;
	tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
	tp->tensor_type = tt;
	tp->denotation = sv_str(v->denotation);
	*out = tp;
	return true;
}

static Onnx__ValueInfoProto *sv_value_info(sv_ctx *c, const np_value *v)
{
	SV_NEW(c, p, Onnx__ValueInfoProto, onnx__value_info_proto__init);
	p->name = sv_str(v->name);
	p->doc_string = sv_doc(v->doc_string);
	return sv_type(c, v, &p->type) ? p : NULL;
}

static Onnx__ValueInfoProto **sv_value_infos(sv_ctx *c, np_value **vs, int n)
{
	Onnx__ValueInfoProto **out = sv_alloc(c, (size_t)n, sizeof *out);
	if (!out)
		return NULL;
	for (int i = 0; i < n; i++)
		if (!(out[i] = sv_value_info(c, vs[i])))
			return NULL;
	return out;
}

/* --------------------------------------------------------- attributes */

/* Unpack n kept blobs into out[], one message kind. */
static bool sv_blobs(sv_ctx *c, const ProtobufCMessageDescriptor *d,
                     const np_bytes *b, size_t n, void **out,
                     const char *what)
{
	for (size_t i = 0; i < n; i++)
		if (!(out[i] = sv_unpack(c, d, b[i], what)))
			return false;
	return true;
}

static bool sv_attr_list(sv_ctx *c, Onnx__AttributeProto *p, const np_attr *a)
{
	size_t n = (size_t)a->n;
	switch (a->type) {
	case NP_ATTR_FLOATS:
		p->n_floats = n;
		p->floats = a->floats;
		return true;
	case NP_ATTR_INTS:
		p->n_ints = n;
		p->ints = a->ints;
		return true;
	case NP_ATTR_STRINGS:
		p->strings = sv_alloc(c, n, sizeof *p->strings);
		if (!p->strings)
			return false;
		for (size_t i = 0; i < n; i++) {
			p->strings[i].len = a->strings[i].len;
			p->strings[i].data = (uint8_t *)a->strings[i].data;
		}
		p->n_strings = n;
		return true;
	case NP_ATTR_TENSORS:
		p->tensors = sv_alloc(c, n, sizeof *p->tensors);
		if (!p->tensors)
			return false;
		for (size_t i = 0; i < n; i++)
			if (!(p->tensors[i] = sv_tensor(c, a->tensors[i],
			                                 a->tensors[i]->name)))
				return false;
		p->n_tensors = n;
		return true;
	case NP_ATTR_GRAPHS:
		p->n_graphs = n;
		return (p->graphs = sv_alloc(c, n, sizeof *p->graphs)) &&
		       sv_blobs(c, &onnx__graph_proto__descriptor, a->blobs, n,
		                (void **)p->graphs, "graph");
	case NP_ATTR_SPARSE_TENSORS:
		p->n_sparse_tensors = n;
		return (p->sparse_tensors = sv_alloc(c, n, sizeof *p->sparse_tensors)) &&
		       sv_blobs(c, &onnx__sparse_tensor_proto__descriptor, a->blobs,
		                n, (void **)p->sparse_tensors, "sparse tensor");
	case NP_ATTR_TYPE_PROTOS:
		p->n_type_protos = n;
		return (p->type_protos = sv_alloc(c, n, sizeof *p->type_protos)) &&
		       sv_blobs(c, &onnx__type_proto__descriptor, a->blobs, n,
		                (void **)p->type_protos, "type");
	default:
		return true;            /* UNDEFINED or unknown: name only */
	}
}

static bool sv_attr_value(sv_ctx *c, Onnx__AttributeProto *p, const np_attr *a)
{
	switch (a->type) {
	case NP_ATTR_FLOAT:
		p->has_f = 1;
		p->f = a->f;
		return true;
	case NP_ATTR_INT:
		p->has_i = 1;
		p->i = a->i;
		return true;
	case NP_ATTR_STRING:
		p->has_s = 1;
		p->s.len = a->s.len;
		p->s.data = (uint8_t *)a->s.data;
		return true;
	case NP_ATTR_TENSOR:
		return !a->t || (p->t = sv_tensor(c, a->t, a->t->name));
	case NP_ATTR_GRAPH:
		return sv_blobs(c, &onnx__graph_proto__descriptor, a->blobs, 1,
		                (void **)&p->g, "graph");
	case NP_ATTR_SPARSE_TENSOR:
		return sv_blobs(c, &onnx__sparse_tensor_proto__descriptor, a->blobs,
		                1, (void **)&p->sparse_tensor, "sparse tensor");
	case NP_ATTR_TYPE_PROTO:
		return sv_blobs(c, &onnx__type_proto__descriptor, a->blobs, 1,
		                (void **)&p->tp, "type");
	default:
		return sv_attr_list(c, p, a);
	}
}

static Onnx__AttributeProto *sv_attr(sv_ctx *c, const np_node *n,
                                     const np_attr *a)
{
	SV_NEW(c, p, Onnx__AttributeProto, onnx__attribute_proto__init);
	p->name = sv_str(a->name);
	p->ref_attr_name = sv_str(a->ref_attr_name);
	p->doc_string = sv_doc(a->doc_string);
	p->has_type = 1;
	p->type = (Onnx__AttributeProto__AttributeType)a->type;
	if (a->ref_attr_name && a->ref_attr_name[0] && !a->ref_has_value)
		return p;               /* a bare reference carries no value */
	c->node = n;
	c->attr = a->name ? a->name : "";
	bool ok = sv_attr_value(c, p, a);
	c->attr = NULL;
	return ok ? p : NULL;
}

/* -------------------------------------------------------------- nodes */

static char **sv_names(sv_ctx *c, np_value **vs, int n)
{
	char **out = sv_alloc(c, (size_t)n, sizeof *out);
	if (!out)
		return NULL;
	for (int i = 0; i < n; i++)
		out[i] = sv_str(vs[i] ? vs[i]->name : "");
	return out;
}

static Onnx__NodeProto *sv_node(sv_ctx *c, const np_node *n)
{
	SV_NEW(c, p, Onnx__NodeProto, onnx__node_proto__init);
	p->n_input = (size_t)n->n_inputs;
	p->n_output = (size_t)n->n_outputs;
	p->n_attribute = (size_t)n->n_attrs;
	p->input = sv_names(c, n->inputs, n->n_inputs);
	p->output = sv_names(c, n->outputs, n->n_outputs);
	p->attribute = sv_alloc(c, p->n_attribute, sizeof *p->attribute);
	if (!p->input || !p->output || !p->attribute)
		return NULL;
	p->name = sv_str(n->name);
	p->op_type = sv_str(n->op_type);
	/* The default domain is written as absent, as onnx.helper does. */
	p->domain = (n->domain && *n->domain) ? sv_str(n->domain) : NULL;
	p->doc_string = sv_doc(n->doc_string);
	for (int i = 0; i < n->n_attrs; i++)
		if (!(p->attribute[i] = sv_attr(c, n, &n->attrs[i])))
			return NULL;
	return p;
}

/* -------------------------------------------------------------- graph */

static bool sv_nodes(sv_ctx *c, Onnx__GraphProto *p, const np_graph *g)
{
	p->node = sv_alloc(c, (size_t)g->n_nodes, sizeof *p->node);
	if (!p->node)
		return false;
	for (int i = 0; i < g->n_nodes; i++) {
		if (g->nodes[i]->removed)
			continue;
		if (!(p->node[p->n_node++] = sv_node(c, g->nodes[i])))
			return false;
	}
	return true;
}

static bool sv_initializers(sv_ctx *c, Onnx__GraphProto *p, const np_graph *g)
{
	size_t n = (size_t)g->n_initializers;
	p->initializer = sv_alloc(c, n, sizeof *p->initializer);
	c->inits = sv_alloc(c, n, sizeof *c->inits);
	if (!p->initializer || !c->inits)
		return false;
	for (size_t i = 0; i < n; i++) {
		const np_value *v = g->initializers[i];
		if (!v->init) {
			np_fail(c->err, NP_ERR_INVALID,
			        "initializer '%s' has no tensor", v->name);
			c->failed = true;
			return false;
		}
		if (!(p->initializer[i] = sv_tensor(c, v->init, v->name)))
			return false;
		c->inits[i].pb = p->initializer[i];
		c->inits[i].t = v->init;
	}
	p->n_initializer = n;
	c->n_inits = (int)n;
	return true;
}

static Onnx__GraphProto *sv_graph(sv_ctx *c, const np_graph *g)
{
	SV_NEW(c, p, Onnx__GraphProto, onnx__graph_proto__init);
	p->name = sv_str(g->name);
	p->doc_string = sv_doc(g->doc_string);
	if (!sv_nodes(c, p, g) || !sv_initializers(c, p, g))
		return NULL;
	p->n_input = (size_t)g->n_inputs;
	p->n_output = (size_t)g->n_outputs;
	p->n_value_info = (size_t)g->n_value_info;
	p->n_sparse_initializer = (size_t)g->n_sparse_initializers;
	p->n_quantization_annotation = (size_t)g->n_quantization_annotation;
	p->input = sv_value_infos(c, g->inputs, g->n_inputs);
	p->output = p->input ? sv_value_infos(c, g->outputs, g->n_outputs) : NULL;
	p->value_info = p->output ?
		sv_value_infos(c, g->value_info, g->n_value_info) : NULL;
	if (!p->value_info)
		return NULL;
	p->sparse_initializer = sv_alloc(c, p->n_sparse_initializer,
	                                 sizeof *p->sparse_initializer);
	p->quantization_annotation = sv_alloc(c, p->n_quantization_annotation,
	                                      sizeof *p->quantization_annotation);
	if (!p->sparse_initializer || !p->quantization_annotation ||
	    !sv_blobs(c, &onnx__sparse_tensor_proto__descriptor,
	              g->sparse_initializers, p->n_sparse_initializer,
	              (void **)p->sparse_initializer, "sparse initializer") ||
	    !sv_blobs(c, &onnx__tensor_annotation__descriptor,
	              g->quantization_annotation, p->n_quantization_annotation,
	              (void **)p->quantization_annotation,
	              "quantization annotation"))
		return NULL;
	return p;
}

/* -------------------------------------------------------------- model */

static bool sv_opsets(sv_ctx *c, Onnx__ModelProto *p, const np_model *m)
{
	p->n_opset_import = (size_t)m->n_opsets;
	p->opset_import = sv_alloc(c, p->n_opset_import, sizeof *p->opset_import);
	if (!p->opset_import)
		return false;
	for (int i = 0; i < m->n_opsets; i++) {
		Onnx__OperatorSetIdProto *o = sv_alloc(c, 1, sizeof *o);
		if (!o)
			return false;
		onnx__operator_set_id_proto__init(o);
		o->domain = sv_str(m->opsets[i].domain);
		o->has_version = 1;
		o->version = m->opsets[i].version;
		p->opset_import[i] = o;
	}
	return true;
}

static Onnx__StringStringEntryProto *sv_entry(sv_ctx *c, const char *key,
                                              const char *value)
{
	SV_NEW(c, e, Onnx__StringStringEntryProto,
	       onnx__string_string_entry_proto__init);
	e->key = sv_str(key);
	e->value = sv_str(value);
	return e;
}

static bool sv_metadata(sv_ctx *c, Onnx__ModelProto *p, const np_model *m)
{
	p->n_metadata_props = (size_t)m->n_metadata;
	p->metadata_props = sv_alloc(c, p->n_metadata_props,
	                             sizeof *p->metadata_props);
	if (!p->metadata_props)
		return false;
	for (int i = 0; i < m->n_metadata; i++)
		if (!(p->metadata_props[i] = sv_entry(c, m->metadata[i].key,
		                                      m->metadata[i].value)))
			return false;
	return true;
}

static Onnx__ModelProto *sv_model(sv_ctx *c, const np_model *m)
{
	SV_NEW(c, p, Onnx__ModelProto, onnx__model_proto__init);
	p->has_ir_version = 1;
	p->ir_version = m->ir_version;
	p->producer_name = sv_str(m->producer_name);
	p->producer_version = sv_str(m->producer_version);
	p->domain = sv_str(m->domain);
	p->has_model_version = m->has_model_version;
	p->model_version = m->model_version;
	p->doc_string = sv_doc(m->doc_string);
	p->n_training_info = (size_t)m->n_training_info;
	p->n_functions = (size_t)m->n_functions;
	p->training_info = sv_alloc(c, p->n_training_info, sizeof *p->training_info);
	p->functions = sv_alloc(c, p->n_functions, sizeof *p->functions);
	if (!p->training_info || !p->functions ||
	    !sv_opsets(c, p, m) || !sv_metadata(c, p, m) ||
	    !(p->graph = sv_graph(c, m->graph)) ||
	    !sv_blobs(c, &onnx__training_info_proto__descriptor, m->training_info,
	              p->n_training_info, (void **)p->training_info,
	              "training info") ||
	    !sv_blobs(c, &onnx__function_proto__descriptor, m->functions,
	              p->n_functions, (void **)p->functions, "function"))
		return NULL;
	return p;
}

/* ------------------------------------------------------ external data */

static const char *sv_basename(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

static bool sv_can_be_external(const np_tensor *t)
{
	return t->dtype != NP_STRING && np_dtype_size(t->dtype) > 0 &&
	       t->nbytes > 0 && t->data;
}

/* Point initializer i at [offset, offset + nbytes) of the data file. */
static bool sv_set_external(sv_ctx *c, sv_init *in, const char *location)
{
	Onnx__TensorProto *p = in->pb;
	p->has_raw_data = 0;
	p->raw_data.len = 0;
	p->raw_data.data = NULL;
	p->n_float_data = p->n_int32_data = p->n_int64_data = 0;
	p->n_double_data = p->n_uint64_data = 0;
	p->has_data_location = 1;
	p->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
	p->n_external_data = 3;
	p->external_data = sv_alloc(c, 3, sizeof *p->external_data);
	char *off = np_arena_printf(c->arena, "%" PRIu64, in->offset);
	char *len = np_arena_printf(c->arena, "%zu", in->t->nbytes);
	if (!p->external_data || !off || !len)
		return sv_nomem(c);
	return (p->external_data[0] = sv_entry(c, "location", location)) &&
	       (p->external_data[1] = sv_entry(c, "offset", off)) &&
	       (p->external_data[2] = sv_entry(c, "length", len));
}

/* Largest first (ties: graph order) so few tensors move out. */
static int sv_cmp_size_desc(const void *a, const void *b)
{
	const sv_init *x = *(sv_init *const *)a, *y = *(sv_init *const *)b;
	if (x->t->nbytes != y->t->nbytes)
		return x->t->nbytes < y->t->nbytes ? 1 : -1;
	return x < y ? -1 : x > y;
}

/* Too big for one protobuf: move the largest payloads out until it fits. */
static bool sv_choose_by_size(sv_ctx *c, Onnx__ModelProto *pb,
                              const char *location)
{
	uint64_t size = onnx__model_proto__get_packed_size(pb);
	if (size < NP_EXTERNAL_THRESHOLD)
		return true;
	sv_init **order = sv_alloc(c, (size_t)c->n_inits, sizeof *order);
	if (!order)
		return false;
	int n = 0;
	for (int i = 0; i < c->n_inits; i++)
		if (!c->inits[i].external && sv_can_be_external(c->inits[i].t))
			order[n++] = &c->inits[i];
	qsort(order, (size_t)n, sizeof *order, sv_cmp_size_desc);
	/* Each move shrinks the model by at least the tensor's own shrink
	 * (enclosing length prefixes only get shorter). */
	for (int i = 0; i < n && size + SV_EXT_MARGIN >= NP_EXTERNAL_THRESHOLD; i++) {
		uint64_t before = onnx__tensor_proto__get_packed_size(order[i]->pb);
		order[i]->external = true;
		order[i]->offset = UINT64_MAX;  /* widest string, for the estimate */
		if (!sv_set_external(c, order[i], location))
			return false;
		size -= before - onnx__tensor_proto__get_packed_size(order[i]->pb);
	}
	return true;
}

/* Decide which initializers go to the data file and lay them out; returns
 * how many (0: no data file). */
static int sv_place_external(sv_ctx *c, Onnx__ModelProto *pb,
                             const char *path, const np_save_opts *o)
{
	const char *location = np_arena_printf(c->arena, "%s.data",
	                                       sv_basename(path));
	if (!location) {
		sv_nomem(c);
		return -1;
	}
	for (int i = 0; i < c->n_inits && o->external_data; i++) {
		sv_init *in = &c->inits[i];
		if (sv_can_be_external(in->t) &&
		    in->t->nbytes >= o->external_min_bytes) {
			in->external = true;
			if (!sv_set_external(c, in, location))
				return -1;
		}
	}
	if (!sv_choose_by_size(c, pb, location))
		return -1;
	uint64_t end = 0;
	int count = 0;
	for (int i = 0; i < c->n_inits; i++) {
		sv_init *in = &c->inits[i];
		if (!in->external)
			continue;
		in->offset = (end + SV_EXT_ALIGN - 1) / SV_EXT_ALIGN * SV_EXT_ALIGN;
		end = in->offset + in->t->nbytes;
		if (!sv_set_external(c, in, location))
			return -1;
		count++;
	}
	uint64_t size = onnx__model_proto__get_packed_size(pb);
	if (size >= NP_EXTERNAL_THRESHOLD) {
		np_fail(c->err, NP_ERR_UNSUPPORTED, "the model needs %" PRIu64
		        " bytes even with its initializers in %s; protobuf stops"
		        " at 2 GiB", size, location);
		c->failed = true;
		return -1;
	}
	return count;
}

/* -------------------------------------------------------------- files */

static np_status sv_io_error(np_error *err, const char *path, int e)
{
	return np_fail(err, NP_ERR_IO, "cannot write %s: %s", path,
	               strerror(e ? e : EIO));
}

static np_status sv_write_data(sv_ctx *c, const char *data_path,
                               np_atomic_file **out)
{
	static const uint8_t zeros[SV_EXT_ALIGN];
	np_atomic_file *f = np_atomic_open(data_path, c->err);
	if (!f)
		return c->err->status;
	FILE *fp = np_atomic_stream(f);
	uint64_t pos = 0;
	for (int i = 0; i < c->n_inits; i++) {
		const sv_init *in = &c->inits[i];
		if (!in->external)
			continue;
		size_t pad = (size_t)(in->offset - pos);
		errno = 0;
		if (fwrite(zeros, 1, pad, fp) != pad ||
		    fwrite(in->t->data, 1, in->t->nbytes, fp) != in->t->nbytes) {
			np_status st = sv_io_error(c->err, data_path, errno);
			np_atomic_abort(f);
			return st;
		}
		pos = in->offset + in->t->nbytes;
	}
	*out = f;
	return NP_OK;
}

/* Streams the packed bytes into the file: no second copy of a big model. */
typedef struct sv_sink {
	ProtobufCBuffer base;
	FILE *fp;
	int err;                        /* first errno, 0 while all is well */
} sv_sink;

static void sv_sink_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
	sv_sink *s = (sv_sink *)b;
	if (s->err || len == 0)
		return;
	errno = 0;
	if (fwrite(data, 1, len, s->fp) != len)
		s->err = errno ? errno : EIO;
}

static np_status sv_write_model(sv_ctx *c, const Onnx__ModelProto *pb,
                                const char *path, np_atomic_file **out)
{
	np_atomic_file *f = np_atomic_open(path, c->err);
	if (!f)
		return c->err->status;
	sv_sink sink = { { sv_sink_append }, np_atomic_stream(f), 0 };
	protobuf_c_message_pack_to_buffer(&pb->base, &sink.base);
	/* Flush now: a full disk must show before the data file is renamed. */
	errno = 0;
	if (!sink.err && fflush(sink.fp) != 0)
		sink.err = errno ? errno : EIO;
	if (sink.err) {
		np_status st = sv_io_error(c->err, path, sink.err);
		np_atomic_abort(f);
		return st;
	}
	*out = f;
	return NP_OK;
}

/* The data file is committed first so the model never names a missing
 * file; any failure before the model's rename leaves neither changed. */
static np_status sv_write_files(sv_ctx *c, const Onnx__ModelProto *pb,
                                const char *path, int n_external)
{
	np_atomic_file *df = NULL, *mf = NULL;
	np_status st = NP_OK;
	char *data_path = NULL;
	if (n_external > 0) {
		data_path = np_arena_printf(c->arena, "%s.data", path);
		if (!data_path)
			return np_fail(c->err, NP_ERR_NOMEM,
			               "out of memory building the model");
		st = sv_write_data(c, data_path, &df);
	}
	if (st == NP_OK)
		st = sv_write_model(c, pb, path, &mf);
	if (st == NP_OK && df) {
		st = np_atomic_commit(df, c->err);
		df = NULL;
	}
	if (st == NP_OK) {
		st = np_atomic_commit(mf, c->err);
		mf = NULL;
	}
	np_atomic_abort(df);
	np_atomic_abort(mf);
	return st;
}

np_status np_onnx_save(const np_model *m, const char *path,
                       const np_save_opts *opts, np_error *err)
{
	static const np_save_opts defaults;
	sv_ctx c = { .err = err };
	if (!opts)
		opts = &defaults;
	if (!m || !m->graph)
		return np_fail(err, NP_ERR_INVALID, "no model to write");
	c.arena = np_arena_new();
	if (!c.arena)
		return np_fail(err, NP_ERR_NOMEM, "out of memory building the model");

	np_status st = NP_OK;
	Onnx__ModelProto *pb = sv_model(&c, m);
	int n_external = pb ? sv_place_external(&c, pb, path, opts) : -1;
	if (n_external < 0 || c.failed)
		st = err->status != NP_OK ? err->status : NP_ERR_NOMEM;
	else
		st = sv_write_files(&c, pb, path, n_external);

	for (int i = 0; i < c.n_unpacked; i++)
		protobuf_c_message_free_unpacked(c.unpacked[i], NULL);
	free(c.unpacked);
	np_arena_free(c.arena);
	return st;
}

np_model *np_model_clone(const np_model *m, np_error *err)
{
	sv_ctx c = { .err = err };
	c.arena = np_arena_new();
	if (!c.arena) {
		np_fail(err, NP_ERR_NOMEM, "out of memory copying the model");
		return NULL;
	}
	np_model *copy = NULL;
	Onnx__ModelProto *pb = sv_model(&c, m);
	if (pb && !c.failed) {
		size_t len = onnx__model_proto__get_packed_size(pb);
		uint8_t *buf = malloc(len ? len : 1);
		if (!buf) {
			np_fail(err, NP_ERR_NOMEM, "out of memory copying the model");
		} else {
			onnx__model_proto__pack(pb, buf);
			copy = np_onnx_load_buffer(buf, len, NULL, err);
			free(buf);
		}
	} else if (err->status == NP_OK) {
		np_fail(err, NP_ERR_NOMEM, "out of memory copying the model");
	}
	if (copy && m->path)
		copy->path = np_arena_strdup(copy->arena, m->path);
	for (int i = 0; i < c.n_unpacked; i++)
		protobuf_c_message_free_unpacked(c.unpacked[i], NULL);
	free(c.unpacked);
	np_arena_free(c.arena);
	return copy;
}
