/* onnx_load.c - ONNX ModelProto -> IR; see onnx_io.h.
 *
 * The file is unpacked by protobuf-c, converted to the IR at once and the
 * protobuf structs are freed.  Everything the IR does not model is kept as
 * packed blobs so the emitter can write the model back faithfully.  Input
 * may be hostile: counts and sizes are checked before anything is
 * allocated from them (protobuf-c already bounds-checks the wire format).
 */
/* realpath() is an XSI extension of POSIX. */
#define _XOPEN_SOURCE 700

#include "onnx_io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx.pb-c.h"
#include "safeio.h"

/* Nested graphs (If/Loop/Scan bodies) deeper than this are refused rather
 * than walked recursively without bound. */
#define NP_MAX_NESTING 64
/* Protobuf messages nested deeper than this are refused before
 * protobuf-c unpacks them (it recurses once per level on the C stack).
 * A graph level is three messages (Graph, Node, Attribute); types nest
 * too (TypeProto sequence of sequence of ...). */
#define NP_MAX_MESSAGE_DEPTH 256

typedef struct loader {
	np_model *m;
	np_arena *a;
	np_graph *g;
	const char *base_dir;     /* NULL: external data refused */
	char *base_real;          /* malloc: realpath(base_dir), lazily */
	np_error *err;
	const char *folder;       /* for messages: "the model's folder" */
	int ext_cap;              /* room in m->ext_files */
} loader;

/* ------------------------------------------------------------ name sets */

/* A set of borrowed strings that remembers insertion order, so walking it
 * is deterministic.  Arena-owned: temporary, small next to the model. */
typedef struct strset {
	const char **slots;
	size_t cap;
	const char **items;
	size_t n, cap_items;
} strset;

static size_t str_hash(const char *s)
{
	size_t h = 1469598103934665603u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211u;
	return h;
}

static const char **strset_slot(const strset *s, const char *str)
{
	size_t i = str_hash(str) & (s->cap - 1);
	while (s->slots[i] && strcmp(s->slots[i], str) != 0)
		i = (i + 1) & (s->cap - 1);
	return &s->slots[i];
}

static bool strset_has(const strset *s, const char *str)
{
	return s->cap && *strset_slot(s, str);
}

static void strset_rehash(np_arena *a, strset *s)
{
	size_t cap = s->cap ? s->cap * 2 : 16;
	strset t = { np_arena_alloc(a, cap * sizeof(char *)), cap,
	             s->items, s->n, s->cap_items };
	for (size_t i = 0; i < s->n; i++)
		*strset_slot(&t, s->items[i]) = s->items[i];
	*s = t;
}

/* Adds str; false when it was there already. */
static bool strset_add(np_arena *a, strset *s, const char *str)
{
	if (strset_has(s, str))
		return false;
	if (2 * (s->n + 1) > s->cap)
		strset_rehash(a, s);
	if (s->n == s->cap_items) {
		size_t nc = s->cap_items ? 2 * s->cap_items : 16;
		s->items = np_arena_grow(a, s->items,
		                         s->cap_items * sizeof(char *),
		                         nc * sizeof(char *));
		s->cap_items = nc;
	}
	s->items[s->n++] = str;
	*strset_slot(s, str) = str;
	return true;
}

/* A map from borrowed strings to counters (zero when absent). */
typedef struct strcount {
	const char **keys;
	unsigned *vals;
	size_t cap, n;
} strcount;

static unsigned *strcount_at(np_arena *a, strcount *m, const char *key)
{
	if (2 * (m->n + 1) > m->cap) {
		strcount t = { 0 };
		t.cap = m->cap ? 2 * m->cap : 16;
		t.keys = np_arena_alloc(a, t.cap * sizeof *t.keys);
		t.vals = np_arena_alloc(a, t.cap * sizeof *t.vals);
		for (size_t i = 0; i < m->cap; i++) {
			if (!m->keys[i])
				continue;
			size_t j = str_hash(m->keys[i]) & (t.cap - 1);
			while (t.keys[j])
				j = (j + 1) & (t.cap - 1);
			t.keys[j] = m->keys[i];
			t.vals[j] = m->vals[i];
		}
		t.n = m->n;
		*m = t;
	}
	size_t i = str_hash(key) & (m->cap - 1);
	while (m->keys[i] && strcmp(m->keys[i], key) != 0)
		i = (i + 1) & (m->cap - 1);
	if (!m->keys[i]) {
		m->keys[i] = key;
		m->n++;
	}
	return &m->vals[i];
}

/* -------------------------------------------------------------- helpers */

static bool nonempty(const char *s)
{
	return s && *s;
}

static char *adup(loader *L, const char *s)
{
	return np_arena_strdup(L->a, s);
}

/* IR counts are int; a protobuf count beyond that cannot be represented. */
static np_status check_count(loader *L, size_t n, const char *what)
{
	if (n > INT_MAX)
		return np_fail(L->err, NP_ERR_UNSUPPORTED, "too many %s (%zu)",
		               what, n);
	return NP_OK;
}

static void pack_blob(loader *L, const ProtobufCMessage *msg, np_bytes *out)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t *p = np_arena_alloc(L->a, n ? n : 1);
	protobuf_c_message_pack(msg, p);
	out->data = p;
	out->len = n;
}

/* out = arena array of the packed bytes of arr[0..n), messages of one
 * protobuf-c type. */
#define PACK_BLOBS(L, arr, n, out) do {                                    \
		(out) = np_arena_alloc((L)->a, ((n) ? (n) : 1) * sizeof(np_bytes)); \
		for (size_t i_ = 0; i_ < (n); i_++)                                \
			pack_blob((L), &(arr)[i_]->base, &(out)[i_]);              \
	} while (0)

/* "[3,4]" into buf, shortened with "..." when long. */
static const char *fmt_dims(char *buf, size_t cap, const int64_t *dims,
                            size_t rank)
{
	size_t k = 0, i = 0;
	buf[k++] = '[';
	for (; i < rank && k + 24 < cap; i++)
		k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? "," : "",
		                      (long long)dims[i]);
	if (i < rank)
		k += (size_t)snprintf(buf + k, cap - k, ",...");
	snprintf(buf + k, cap - k, "]");
	return buf;
}

static void store_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void store_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void store_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* -------------------------------------------------------------- tensors */

typedef struct tshape {
	int dtype;
	int rank;
	const int64_t *dims;
	int64_t nelem;
	size_t need;              /* payload bytes (numeric dtypes) */
} tshape;

static np_status tensor_shape_of(loader *L, const Onnx__TensorProto *tp,
                                 const char *label, tshape *sh)
{
	char d[128];
	int dt = tp->has_data_type ? tp->data_type : 0;
	if (dt <= NP_UNDEFINED || dt > NP_DTYPE_MAX)
		return np_fail(L->err, NP_ERR_INVALID,
		               "tensor '%s' has unknown data type %d", label, dt);
	if (tp->n_dims > NP_MAX_RANK)
		return np_fail(L->err, NP_ERR_UNSUPPORTED,
		               "tensor '%s' has rank %zu, more than %d", label,
		               tp->n_dims, NP_MAX_RANK);
	for (size_t i = 0; i < tp->n_dims; i++)
		if (tp->dims[i] < 0)
			return np_fail(L->err, NP_ERR_INVALID,
			               "tensor '%s' has a negative dim %lld",
			               label, (long long)tp->dims[i]);
	sh->dtype = dt;
	sh->rank = (int)tp->n_dims;
	sh->dims = tp->dims;
	sh->nelem = np_dims_product(tp->dims, sh->rank);
	size_t es = np_dtype_size(dt);
	if (sh->nelem < 0 || (es && (uint64_t)sh->nelem > SIZE_MAX / es))
		return np_fail(L->err, NP_ERR_INVALID, "tensor '%s' dims %s overflow",
		               label, fmt_dims(d, sizeof d, tp->dims, tp->n_dims));
	sh->need = (size_t)sh->nelem * es;
	return NP_OK;
}

static np_status size_mismatch(loader *L, const char *label, const tshape *sh,
                               unsigned long long have)
{
	char d[128], dt[32];
	/* Upper case, as TensorProto spells data types (FLOAT, INT64). */
	size_t k = 0;
	for (const char *p = np_dtype_name(sh->dtype); *p && k + 1 < sizeof dt;)
		dt[k++] = (char)(*p >= 'a' && *p <= 'z' ? *p++ - 'a' + 'A' : *p++);
	dt[k] = '\0';
	return np_fail(L->err, NP_ERR_INVALID,
	               "tensor '%s' has %llu bytes, its dims %s of %s need %zu",
	               label, have, fmt_dims(d, sizeof d, sh->dims,
	                                     (size_t)sh->rank), dt, sh->need);
}

static np_tensor *new_tensor(loader *L, const Onnx__TensorProto *tp,
                             const tshape *sh, int stored_as)
{
	np_tensor *t = np_model_new_tensor(L->m, sh->dtype, sh->rank, sh->dims,
	                                   L->err);
	if (!t)
		return NULL;
	if (sh->dtype != NP_STRING && t->nbytes != sh->need) {
		np_fail(L->err, NP_ERR_INVALID,
		        "internal: tensor payload of %zu bytes, expected %zu",
		        t->nbytes, sh->need);
		return NULL;
	}
	t->name = adup(L, tp->name);
	t->doc_string = adup(L, tp->doc_string);
	t->stored_as = stored_as;
	return t;
}

static np_tensor *string_tensor(loader *L, const Onnx__TensorProto *tp,
                                const char *label, const tshape *sh)
{
	if (tp->has_raw_data || (tp->has_data_location &&
	    tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)) {
		np_fail(L->err, NP_ERR_UNSUPPORTED, "tensor '%s' of STRING is not "
		        "stored in string_data", label);
		return NULL;
	}
	if ((uint64_t)tp->n_string_data != (uint64_t)sh->nelem) {
		char d[128];
		np_fail(L->err, NP_ERR_INVALID,
		        "tensor '%s' has %zu strings, its dims %s need %lld", label,
		        tp->n_string_data, fmt_dims(d, sizeof d, sh->dims,
		                                    (size_t)sh->rank),
		        (long long)sh->nelem);
		return NULL;
	}
	np_tensor *t = new_tensor(L, tp, sh, 1);
	if (!t)
		return NULL;
	size_t n = tp->n_string_data;
	if (!t->strings || !t->string_lens) {
		t->strings = np_arena_alloc(L->a, (n ? n : 1) * sizeof(uint8_t *));
		t->string_lens = np_arena_alloc(L->a, (n ? n : 1) *
		                                sizeof(size_t));
	}
	for (size_t i = 0; i < n; i++) {
		t->strings[i] = np_arena_memdup(L->a, tp->string_data[i].data,
		                                tp->string_data[i].len);
		t->string_lens[i] = tp->string_data[i].len;
	}
	return t;
}

/* Entries of the typed field that holds dtype, and payload bytes each. */
static size_t typed_count(const Onnx__TensorProto *tp, int dtype,
                          size_t *entry_bytes)
{
	*entry_bytes = np_dtype_size(dtype);
	switch (dtype) {
	case NP_COMPLEX64:
		*entry_bytes = 4;
		/* fall through */
	case NP_FLOAT:
		return tp->n_float_data;
	case NP_INT32: case NP_INT16: case NP_INT8: case NP_UINT16:
	case NP_UINT8: case NP_BOOL: case NP_FLOAT16: case NP_BFLOAT16:
		return tp->n_int32_data;
	case NP_INT64:
		return tp->n_int64_data;
	case NP_COMPLEX128:
		*entry_bytes = 8;
		/* fall through */
	case NP_DOUBLE:
		return tp->n_double_data;
	case NP_UINT32: case NP_UINT64:
		return tp->n_uint64_data;
	default:
		return 0;
	}
}

/* Typed field -> little-endian raw payload, narrowing per dtype. */
static void typed_to_raw(const Onnx__TensorProto *tp, int dtype, uint8_t *out)
{
	size_t es = np_dtype_size(dtype);
	switch (dtype) {
	case NP_FLOAT: case NP_COMPLEX64:
		for (size_t i = 0; i < tp->n_float_data; i++) {
			uint32_t u;
			memcpy(&u, &tp->float_data[i], 4);
			store_le32(out + 4 * i, u);
		}
		break;
	case NP_DOUBLE: case NP_COMPLEX128:
		for (size_t i = 0; i < tp->n_double_data; i++) {
			uint64_t u;
			memcpy(&u, &tp->double_data[i], 8);
			store_le64(out + 8 * i, u);
		}
		break;
	case NP_INT64:
		for (size_t i = 0; i < tp->n_int64_data; i++)
			store_le64(out + 8 * i, (uint64_t)tp->int64_data[i]);
		break;
	case NP_UINT32:
		for (size_t i = 0; i < tp->n_uint64_data; i++)
			store_le32(out + 4 * i, (uint32_t)tp->uint64_data[i]);
		break;
	case NP_UINT64:
		for (size_t i = 0; i < tp->n_uint64_data; i++)
			store_le64(out + 8 * i, tp->uint64_data[i]);
		break;
	default:      /* the int32_data kinds */
		for (size_t i = 0; i < tp->n_int32_data; i++) {
			uint32_t v = (uint32_t)tp->int32_data[i];
			if (es == 4)
				store_le32(out + 4 * i, v);
			else if (es == 2)
				store_le16(out + 2 * i, (uint16_t)v);
			else
				out[i] = (uint8_t)v;
		}
		break;
	}
}

static np_tensor *typed_tensor(loader *L, const Onnx__TensorProto *tp,
                               const char *label, const tshape *sh)
{
	size_t eb;
	size_t n = typed_count(tp, sh->dtype, &eb);
	if (n > SIZE_MAX / eb || n * eb != sh->need) {
		size_mismatch(L, label, sh, n > SIZE_MAX / eb ?
		              ULLONG_MAX : (unsigned long long)(n * eb));
		return NULL;
	}
	np_tensor *t = new_tensor(L, tp, sh, 1);
	if (t && sh->need)
		typed_to_raw(tp, sh->dtype, t->data);
	return t;
}

/* The payload is taken over from the unpacked message (protobuf-c's
 * default allocator is malloc) instead of copied: big models would
 * otherwise need their weights in memory twice. */
static np_tensor *raw_tensor(loader *L, Onnx__TensorProto *tp,
                             const char *label, const tshape *sh)
{
	if (tp->raw_data.len != sh->need) {
		size_mismatch(L, label, sh, tp->raw_data.len);
		return NULL;
	}
	np_tensor *t = new_tensor(L, tp, sh, 0);
	if (t && sh->need && tp->raw_data.data) {
		np_tensor_set_data(t, tp->raw_data.data, sh->need);
		tp->raw_data.data = NULL;
		tp->raw_data.len = 0;
	}
	return t;
}

/* ------------------------------------------------------- external data */

typedef struct extref {
	const char *location;
	int64_t offset;
	int64_t length;           /* -1: to the end of the file */
} extref;

static bool parse_i64(const char *s, int64_t *out)
{
	if (!nonempty(s) || *s == '-' || *s == '+' || *s == ' ')
		return false;
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || v < 0)
		return false;
	*out = v;
	return true;
}

static np_status ext_fields(loader *L, const Onnx__TensorProto *tp,
                            const char *label, extref *x)
{
	x->location = NULL;
	x->offset = 0;
	x->length = -1;
	for (size_t i = 0; i < tp->n_external_data; i++) {
		const char *k = tp->external_data[i]->key;
		const char *v = tp->external_data[i]->value;
		if (!k)
			continue;
		if (!strcmp(k, "location"))
			x->location = v;
		else if ((!strcmp(k, "offset") && !parse_i64(v, &x->offset)) ||
		         (!strcmp(k, "length") && !parse_i64(v, &x->length)))
			return np_fail(L->err, NP_ERR_INVALID,
			               "tensor '%s' has a bad external data %s '%s'",
			               label, k, v ? v : "");
	}
	if (!nonempty(x->location))
		return np_fail(L->err, NP_ERR_INVALID,
		               "tensor '%s' has external data without a location",
		               label);
	return NP_OK;
}

static np_status leaves_folder(loader *L, const char *loc, const char *label)
{
	return np_fail(L->err, NP_ERR_INVALID, "external data path '%s' leaves "
	               "%s (tensor '%s')", loc, L->folder, label);
}

/* The real path of the external file, checked to lie inside base_dir even
 * after symlinks are followed.  *out is malloc'd. */
static np_status ext_resolve(loader *L, const char *loc, const char *label,
                             char **out)
{
	if (!L->base_dir)
		return np_fail(L->err, NP_ERR_UNSUPPORTED, "tensor '%s' has "
		               "external data, but %s is unknown", label, L->folder);
	if (!np_path_inside(loc))
		return leaves_folder(L, loc, label);
	if (!L->base_real && !(L->base_real = realpath(L->base_dir, NULL)))
		return np_fail(L->err, NP_ERR_IO, "cannot resolve %s '%s': %s",
		               L->folder, L->base_dir, strerror(errno));
	size_t bl = strlen(L->base_dir), ll = strlen(loc);
	char *full = malloc(bl + ll + 2);
	if (!full)
		return np_fail(L->err, NP_ERR_NOMEM, "out of memory");
	memcpy(full, L->base_dir, bl);
	full[bl] = '/';
	memcpy(full + bl + 1, loc, ll + 1);
	char *real = realpath(full, NULL);
	int e = errno;
	free(full);
	if (!real)
		return np_fail(L->err, NP_ERR_IO, "cannot read external data '%s' "
		               "(tensor '%s'): %s", loc, label, strerror(e));
	size_t rl = strlen(L->base_real);
	bool root = rl == 1 && L->base_real[0] == '/';
	if (strncmp(real, L->base_real, rl) != 0 ||
	    (!root && real[rl] != '/')) {
		free(real);
		return leaves_folder(L, loc, label);
	}
	*out = real;
	return NP_OK;
}

static np_status read_at(loader *L, int fd, uint8_t *dst, size_t n,
                         int64_t off, const char *loc, const char *label)
{
	while (n) {
		size_t chunk = n > ((size_t)1 << 30) ? (size_t)1 << 30 : n;
		ssize_t r = pread(fd, dst, chunk, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return np_fail(L->err, NP_ERR_IO, "cannot read external "
			               "data '%s' (tensor '%s'): %s", loc, label,
			               r < 0 ? strerror(errno) : "file shrank");
		dst += r;
		n -= (size_t)r;
		off += r;
	}
	return NP_OK;
}

/* Checks offset/length against the file, then reads the payload. */
static np_tensor *ext_load(loader *L, const Onnx__TensorProto *tp,
                           const char *label, const tshape *sh,
                           const extref *x, int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		np_fail(L->err, NP_ERR_IO, "external data '%s' (tensor '%s') is "
		        "not a regular file", x->location, label);
		return NULL;
	}
	int64_t size = st.st_size;
	int64_t len = x->length >= 0 ? x->length :
	              (x->offset <= size ? size - x->offset : 0);
	if (x->offset > size || len > size - x->offset) {
		np_fail(L->err, NP_ERR_FORMAT, "external data file '%s' is too "
		        "short for tensor '%s' (needs %lld bytes at offset %lld, "
		        "has %lld)", x->location, label, (long long)len,
		        (long long)x->offset, (long long)size);
		return NULL;
	}
	if ((uint64_t)len != (uint64_t)sh->need) {
		size_mismatch(L, label, sh, (unsigned long long)len);
		return NULL;
	}
	np_tensor *t = new_tensor(L, tp, sh, 2);
	if (!t || (sh->need && read_at(L, fd, t->data, sh->need, x->offset,
	                               x->location, label)))
		return NULL;
	return t;
}

/* Remember that the model read loc (np_model.ext_files), once. */
static np_status ext_record(loader *L, const char *loc)
{
	const char *path = strcmp(L->base_dir, ".") == 0 ? np_arena_strdup(L->a, loc)
	                   : np_arena_printf(L->a, "%s/%s", L->base_dir, loc);
	if (!path)
		return np_fail(L->err, NP_ERR_NOMEM, "out of memory");
	np_model *m = L->m;
	for (int i = 0; i < m->n_ext_files; i++)
		if (strcmp(m->ext_files[i], path) == 0)
			return NP_OK;
	if (m->n_ext_files == L->ext_cap) {
		size_t sz = sizeof *m->ext_files;
		int cap = L->ext_cap ? 2 * L->ext_cap : 4;
		const char **v = np_arena_grow(L->a, m->ext_files, sz * (size_t)L->ext_cap,
		                               sz * (size_t)cap);
		if (!v)
			return np_fail(L->err, NP_ERR_NOMEM, "out of memory");
		m->ext_files = v;
		L->ext_cap = cap;
	}
	m->ext_files[m->n_ext_files++] = path;
	return NP_OK;
}

static np_tensor *external_tensor(loader *L, const Onnx__TensorProto *tp,
                                  const char *label, const tshape *sh)
{
	extref x;
	char *real = NULL;
	if (ext_fields(L, tp, label, &x) ||
	    ext_resolve(L, x.location, label, &real))
		return NULL;
	/* A FIFO or a device named by the model would block or never end. */
	const char *why;
	int fd = np_open_input(real, NULL, &why);
	free(real);
	if (fd < 0) {
		np_fail(L->err, NP_ERR_IO, "cannot read external data '%s' "
		        "(tensor '%s'): %s", x.location, label, why);
		return NULL;
	}
	np_tensor *t = ext_load(L, tp, label, sh, &x, fd);
	close(fd);
	if (t && ext_record(L, x.location) != NP_OK)
		return NULL;
	return t;
}

/* label names the tensor in messages (its name, or node.attribute). */
static np_tensor *convert_tensor(loader *L, Onnx__TensorProto *tp,
                                 const char *label)
{
	tshape sh;
	if (tensor_shape_of(L, tp, label, &sh))
		return NULL;
	if (sh.dtype == NP_STRING)
		return string_tensor(L, tp, label, &sh);
	if (tp->has_data_location &&
	    tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
		return external_tensor(L, tp, label, &sh);
	if (tp->has_raw_data)
		return raw_tensor(L, tp, label, &sh);
	return typed_tensor(L, tp, label, &sh);
}

/* --------------------------------------------------------------- types */

static np_status convert_shape(loader *L, np_value *v,
                               const Onnx__TensorShapeProto *sp)
{
	char d[128];
	v->has_shape = true;
	if (check_count(L, sp->n_dim, "dims"))
		return L->err->status;
	v->rank = (int)sp->n_dim;
	v->dims = np_arena_alloc(L->a, (sp->n_dim ? sp->n_dim : 1) *
	                         sizeof(np_dim));
	int64_t *known = np_arena_alloc(L->a, (sp->n_dim ? sp->n_dim : 1) *
	                                sizeof(int64_t));
	size_t nk = 0;
	for (size_t i = 0; i < sp->n_dim; i++) {
		const Onnx__TensorShapeProto__Dimension *dp = sp->dim[i];
		np_dim *dim = &v->dims[i];
		dim->value = -1;
		dim->denotation = adup(L, dp->denotation);
		if (dp->value_case ==
		    ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
			if (dp->dim_value < 0)
				return np_fail(L->err, NP_ERR_INVALID, "value '%s' "
				               "has a negative dim %lld", v->name,
				               (long long)dp->dim_value);
			dim->value = known[nk++] = dp->dim_value;
		} else if (dp->value_case ==
		           ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM) {
			dim->param = adup(L, dp->dim_param);
		}
	}
	if (np_dims_product(known, (int)nk) < 0)
		return np_fail(L->err, NP_ERR_INVALID, "value '%s' shape %s "
		               "overflows", v->name, fmt_dims(d, sizeof d, known,
		                                              nk));
	return NP_OK;
}

/* Tensor types go to dtype + dims; any other TypeProto is kept packed. */
static np_status convert_type(loader *L, np_value *v,
                              const Onnx__TypeProto *tp)
{
	v->has_type = tp != NULL;
	v->has_shape = false;
	v->dtype = NP_UNDEFINED;
	v->rank = 0;
	v->dims = NULL;
	v->type_blob = NULL;
	v->type_blob_len = 0;
	if (!tp)
		return NP_OK;
	v->denotation = adup(L, tp->denotation);
	if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
	    !tp->tensor_type) {
		np_bytes b;
		pack_blob(L, &tp->base, &b);
		v->type_blob = b.data;
		v->type_blob_len = b.len;
		return NP_OK;
	}
	const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
	v->dtype = tt->has_elem_type ? tt->elem_type : NP_UNDEFINED;
	return tt->shape ? convert_shape(L, v, tt->shape) : NP_OK;
}

static np_status value_info_name(loader *L, const Onnx__ValueInfoProto *vi,
                                 const char *what, size_t i)
{
	if (!nonempty(vi->name))
		return np_fail(L->err, NP_ERR_INVALID, "%s %zu has no name",
		               what, i);
	return NP_OK;
}

static np_status apply_value_info(loader *L, np_value *v,
                                  const Onnx__ValueInfoProto *vi)
{
	if (vi->doc_string)
		v->doc_string = adup(L, vi->doc_string);
	return convert_type(L, v, vi->type);
}

/* ------------------------------------------------- nested-graph scopes */

static np_status graph_free_names(loader *L, const Onnx__GraphProto *gp,
                                  strset *out, int depth, const char *node,
                                  const char *op);

static np_status attr_free_names(loader *L, const Onnx__AttributeProto *ap,
                                 strset *out, int depth, const char *node,
                                 const char *op)
{
	if (ap->g && graph_free_names(L, ap->g, out, depth + 1, node, op))
		return L->err->status;
	for (size_t k = 0; k < ap->n_graphs; k++)
		if (graph_free_names(L, ap->graphs[k], out, depth + 1, node, op))
			return L->err->status;
	return NP_OK;
}

static void add_free(loader *L, const strset *defs, strset *out,
                     const char *name)
{
	if (nonempty(name) && !strset_has(defs, name))
		strset_add(L->a, out, name);
}

/* Names gp (and graphs nested in it) reads without defining them: they
 * come from an enclosing scope. */
static np_status graph_free_names(loader *L, const Onnx__GraphProto *gp,
                                  strset *out, int depth, const char *node,
                                  const char *op)
{
	if (depth > NP_MAX_NESTING)
		return np_fail(L->err, NP_ERR_UNSUPPORTED, "graphs nested deeper "
		               "than %d (node %s, op %s)", NP_MAX_NESTING, node, op);
	strset defs = { 0 };
	for (size_t i = 0; i < gp->n_input; i++)
		if (gp->input[i]->name)
			strset_add(L->a, &defs, gp->input[i]->name);
	for (size_t i = 0; i < gp->n_initializer; i++)
		if (gp->initializer[i]->name)
			strset_add(L->a, &defs, gp->initializer[i]->name);
	for (size_t i = 0; i < gp->n_sparse_initializer; i++) {
		const Onnx__TensorProto *sv = gp->sparse_initializer[i]->values;
		if (sv && sv->name)
			strset_add(L->a, &defs, sv->name);
	}
	for (size_t i = 0; i < gp->n_node; i++)
		for (size_t j = 0; j < gp->node[i]->n_output; j++)
			strset_add(L->a, &defs, gp->node[i]->output[j]);
	for (size_t i = 0; i < gp->n_node; i++) {
		const Onnx__NodeProto *np = gp->node[i];
		for (size_t j = 0; j < np->n_input; j++)
			add_free(L, &defs, out, np->input[j]);
		strset inner = { 0 };
		for (size_t j = 0; j < np->n_attribute; j++)
			if (attr_free_names(L, np->attribute[j], &inner, depth,
			                    node, op))
				return L->err->status;
		for (size_t j = 0; j < inner.n; j++)
			add_free(L, &defs, out, inner.items[j]);
	}
	for (size_t i = 0; i < gp->n_output; i++)
		add_free(L, &defs, out, gp->output[i]->name);
	return NP_OK;
}

/* ----------------------------------------------------------- attributes */

/* ONNX IR 1 had no type field: infer it from the field that is set. */
static int infer_attr_type(const Onnx__AttributeProto *ap)
{
	if (ap->has_type)
		return (int)ap->type;
	if (ap->has_f) return NP_ATTR_FLOAT;
	if (ap->has_i) return NP_ATTR_INT;
	if (ap->has_s) return NP_ATTR_STRING;
	if (ap->t) return NP_ATTR_TENSOR;
	if (ap->g) return NP_ATTR_GRAPH;
	if (ap->sparse_tensor) return NP_ATTR_SPARSE_TENSOR;
	if (ap->tp) return NP_ATTR_TYPE_PROTO;
	if (ap->n_floats) return NP_ATTR_FLOATS;
	if (ap->n_ints) return NP_ATTR_INTS;
	if (ap->n_strings) return NP_ATTR_STRINGS;
	if (ap->n_tensors) return NP_ATTR_TENSORS;
	if (ap->n_graphs) return NP_ATTR_GRAPHS;
	if (ap->n_sparse_tensors) return NP_ATTR_SPARSE_TENSORS;
	if (ap->n_type_protos) return NP_ATTR_TYPE_PROTOS;
	return NP_ATTR_UNDEFINED;
}

/* Byte strings get a NUL after them so they can be used as C strings. */
static np_bytes dup_bytes(loader *L, ProtobufCBinaryData b)
{
	uint8_t *p = np_arena_alloc(L->a, b.len + 1);
	if (b.len)
		memcpy(p, b.data, b.len);
	return (np_bytes){ p, b.len };
}

typedef struct attr_ctx {
	const char *node, *op;
	strset *free_names;
} attr_ctx;

static np_status attr_missing(loader *L, const np_attr *at, const attr_ctx *c)
{
	return np_fail(L->err, NP_ERR_INVALID, "attribute '%s' has no value "
	               "(node %s, op %s)", at->name, c->node, c->op);
}

static np_status attr_tensors(loader *L, np_attr *at,
                              const Onnx__AttributeProto *ap,
                              const attr_ctx *c)
{
	if (at->type == NP_ATTR_TENSOR) {
		if (!ap->t)
			return attr_missing(L, at, c);
		const char *label = nonempty(ap->t->name) ? ap->t->name :
			np_arena_printf(L->a, "%s.%s", c->node, at->name);
		at->t = convert_tensor(L, ap->t, label);
		return at->t ? NP_OK : L->err->status;
	}
	at->n = (int)ap->n_tensors;
	at->tensors = np_arena_alloc(L->a, (ap->n_tensors ? ap->n_tensors : 1) *
	                             sizeof(np_tensor *));
	for (size_t k = 0; k < ap->n_tensors; k++) {
		Onnx__TensorProto *tp = ap->tensors[k];
		const char *label = nonempty(tp->name) ? tp->name :
			np_arena_printf(L->a, "%s.%s[%zu]", c->node, at->name, k);
		if (!(at->tensors[k] = convert_tensor(L, tp, label)))
			return L->err->status;
	}
	return NP_OK;
}

/* GRAPH(S), SPARSE_TENSOR(S), TYPE_PROTO(S): packed blobs, n of them
 * (1 for the singular kinds).  Graphs are walked for outer-scope names
 * first. */
static np_status attr_blobs(loader *L, np_attr *at,
                            const Onnx__AttributeProto *ap, const attr_ctx *c)
{
	int t = at->type;
	if ((t == NP_ATTR_GRAPH && !ap->g) ||
	    (t == NP_ATTR_SPARSE_TENSOR && !ap->sparse_tensor) ||
	    (t == NP_ATTR_TYPE_PROTO && !ap->tp))
		return attr_missing(L, at, c);
	if (check_count(L, ap->n_graphs, "attribute values") ||
	    check_count(L, ap->n_sparse_tensors, "attribute values") ||
	    check_count(L, ap->n_type_protos, "attribute values"))
		return L->err->status;
	if ((t == NP_ATTR_GRAPH || t == NP_ATTR_GRAPHS) &&
	    attr_free_names(L, ap, c->free_names, 0, c->node, c->op))
		return L->err->status;
	at->n = 1;
	at->blobs = np_arena_alloc(L->a, sizeof(np_bytes));
	switch (t) {
	case NP_ATTR_GRAPH:
		pack_blob(L, &ap->g->base, at->blobs);
		break;
	case NP_ATTR_SPARSE_TENSOR:
		pack_blob(L, &ap->sparse_tensor->base, at->blobs);
		break;
	case NP_ATTR_TYPE_PROTO:
		pack_blob(L, &ap->tp->base, at->blobs);
		break;
	case NP_ATTR_GRAPHS:
		at->n = (int)ap->n_graphs;
		PACK_BLOBS(L, ap->graphs, ap->n_graphs, at->blobs);
		break;
	case NP_ATTR_SPARSE_TENSORS:
		at->n = (int)ap->n_sparse_tensors;
		PACK_BLOBS(L, ap->sparse_tensors, ap->n_sparse_tensors, at->blobs);
		break;
	default:
		at->n = (int)ap->n_type_protos;
		PACK_BLOBS(L, ap->type_protos, ap->n_type_protos, at->blobs);
		break;
	}
	return NP_OK;
}

static np_status attr_lists(loader *L, np_attr *at,
                            const Onnx__AttributeProto *ap)
{
	size_t n = at->type == NP_ATTR_FLOATS ? ap->n_floats :
	           at->type == NP_ATTR_INTS ? ap->n_ints : ap->n_strings;
	if (check_count(L, n, "attribute values"))
		return L->err->status;
	at->n = (int)n;
	if (at->type == NP_ATTR_FLOATS) {
		at->floats = np_arena_memdup(L->a, ap->floats, n * sizeof(float));
	} else if (at->type == NP_ATTR_INTS) {
		at->ints = np_arena_memdup(L->a, ap->ints, n * sizeof(int64_t));
	} else {
		at->strings = np_arena_alloc(L->a, (n ? n : 1) *
		                             sizeof(np_bytes));
		for (size_t k = 0; k < n; k++)
			at->strings[k] = dup_bytes(L, ap->strings[k]);
	}
	return NP_OK;
}

/* The field of the attribute's type is set. */
static bool attr_has_value(const Onnx__AttributeProto *ap, int type)
{
	switch (type) {
	case NP_ATTR_FLOAT: return ap->has_f;
	case NP_ATTR_INT: return ap->has_i;
	case NP_ATTR_STRING: return ap->has_s;
	case NP_ATTR_TENSOR: return ap->t != NULL;
	case NP_ATTR_GRAPH: return ap->g != NULL;
	case NP_ATTR_SPARSE_TENSOR: return ap->sparse_tensor != NULL;
	case NP_ATTR_TYPE_PROTO: return ap->tp != NULL;
	case NP_ATTR_FLOATS: return ap->n_floats;
	case NP_ATTR_INTS: return ap->n_ints;
	case NP_ATTR_STRINGS: return ap->n_strings;
	case NP_ATTR_TENSORS: return ap->n_tensors;
	case NP_ATTR_GRAPHS: return ap->n_graphs;
	case NP_ATTR_SPARSE_TENSORS: return ap->n_sparse_tensors;
	case NP_ATTR_TYPE_PROTOS: return ap->n_type_protos;
	default: return false;
	}
}

static np_status convert_attr(loader *L, np_attr *at,
                              const Onnx__AttributeProto *ap,
                              const attr_ctx *c)
{
	if (!nonempty(ap->name))
		return np_fail(L->err, NP_ERR_INVALID, "an attribute has no name "
		               "(node %s, op %s)", c->node, c->op);
	at->name = adup(L, ap->name);
	at->doc_string = adup(L, ap->doc_string);
	/* Empty is no reference (protobuf strings may hold a NUL byte): NULL,
	 * as the emitter tests it. */
	at->ref_attr_name = nonempty(ap->ref_attr_name) ? adup(L, ap->ref_attr_name)
	                                                : NULL;
	at->type = infer_attr_type(ap);
	/* A reference to a function's attribute needs no value; one that has
	 * a value keeps it, so the emitter can write the file back whole. */
	if (nonempty(ap->ref_attr_name)) {
		if (!attr_has_value(ap, at->type))
			return NP_OK;
		at->ref_has_value = true;
	}
	switch (at->type) {
	case NP_ATTR_FLOAT: at->f = ap->f; return NP_OK;
	case NP_ATTR_INT: at->i = ap->i; return NP_OK;
	case NP_ATTR_STRING: at->s = dup_bytes(L, ap->s); return NP_OK;
	case NP_ATTR_TENSOR: case NP_ATTR_TENSORS:
		if (check_count(L, ap->n_tensors, "attribute values"))
			return L->err->status;
		return attr_tensors(L, at, ap, c);
	case NP_ATTR_FLOATS: case NP_ATTR_INTS: case NP_ATTR_STRINGS:
		return attr_lists(L, at, ap);
	case NP_ATTR_GRAPH: case NP_ATTR_GRAPHS: case NP_ATTR_SPARSE_TENSOR:
	case NP_ATTR_SPARSE_TENSORS: case NP_ATTR_TYPE_PROTO:
	case NP_ATTR_TYPE_PROTOS:
		return attr_blobs(L, at, ap, c);
	default:
		return np_fail(L->err, NP_ERR_INVALID, "attribute '%s' has "
		               "unknown type %d (node %s, op %s)", at->name,
		               at->type, c->node, c->op);
	}
}

/* ---------------------------------------------------------------- nodes */

/* Per node of the file, what pass 1 decided. */
typedef struct pending {
	const char *name;
	np_value **outs;
	np_value **ins;           /* linked once every node is in the graph */
	np_node *node;
} pending;

/* Unique node names: given names win over generated ones (the first of
 * duplicates keeps its name, later ones become name_1, ...); unnamed
 * nodes become <OpType>_<index>.  next remembers, per base name, the
 * first suffix not tried yet: suffixes below it are taken for good, so
 * k duplicates of one name cost O(k), not O(k^2). */
static const char *pick_node_name(loader *L, const strset *given_names,
                                  strset *taken, strcount *next,
                                  const Onnx__NodeProto *np, size_t index)
{
	bool given = nonempty(np->name);
	const char *base = given ? np->name :
		np_arena_printf(L->a, "%s_%zu", np->op_type, index);
	const char *name = base;
	bool ok = given ? !strset_has(taken, name) :
		!strset_has(taken, name) && !strset_has(given_names, name);
	if (!ok) {
		unsigned *k = strcount_at(L->a, next, base);
		do {
			name = np_arena_printf(L->a, "%s_%u", base, ++*k);
			ok = !strset_has(taken, name) &&
			     !strset_has(given_names, name);
		} while (!ok);
	}
	name = adup(L, name);
	strset_add(L->a, taken, name);
	return name;
}

static np_status defined_twice(loader *L, const char *name, const char *node,
                               const char *op)
{
	return np_fail(L->err, NP_ERR_INVALID, "value '%s' is defined twice "
	               "(node %s, op %s)", name, node, op);
}

/* Pass 1: op types, node names and every node output value, so that
 * pass 2 can resolve inputs whatever the order of nodes in the file. */
static np_status declare_nodes(loader *L, const Onnx__GraphProto *gp,
                               pending *pn)
{
	strset given = { 0 }, taken = { 0 };
	strcount next = { 0 };
	for (size_t i = 0; i < gp->n_node; i++) {
		const Onnx__NodeProto *np = gp->node[i];
		if (!nonempty(np->op_type))
			return np_fail(L->err, NP_ERR_INVALID, "node %zu%s%s%s has "
			               "an empty op_type", i,
			               nonempty(np->name) ? " ('" : "",
			               nonempty(np->name) ? np->name : "",
			               nonempty(np->name) ? "')" : "");
		if (nonempty(np->name))
			strset_add(L->a, &given, np->name);
	}
	for (size_t i = 0; i < gp->n_node; i++) {
		const Onnx__NodeProto *np = gp->node[i];
		pn[i].name = pick_node_name(L, &given, &taken, &next, np, i);
		if (check_count(L, np->n_output, "node outputs") ||
		    check_count(L, np->n_input, "node inputs") ||
		    check_count(L, np->n_attribute, "attributes"))
			return L->err->status;
		pn[i].outs = np_arena_alloc(L->a, (np->n_output ? np->n_output : 1)
		                            * sizeof(np_value *));
		for (size_t j = 0; j < np->n_output; j++) {
			const char *o = np->output[j];
			if (!nonempty(o))
				continue;
			if (np_graph_find(L->g, o))
				return defined_twice(L, o, pn[i].name, np->op_type);
			if (!(pn[i].outs[j] = np_graph_new_value(L->g, o, L->err)))
				return L->err->status;
		}
	}
	return NP_OK;
}

static np_status resolve_implicit(loader *L, np_node *n, const strset *fr)
{
	n->n_implicit = 0;
	n->implicit = fr->n ? np_arena_alloc(L->a, fr->n * sizeof(np_value *))
	                    : NULL;
	for (size_t k = 0; k < fr->n; k++) {
		np_value *v = np_graph_find(L->g, fr->items[k]);
		if (!v)
			return np_fail(L->err, NP_ERR_INVALID, "subgraph input '%s' "
			               "has no producer (node %s, op %s)",
			               fr->items[k], n->name, n->op_type);
		n->implicit[n->n_implicit++] = v;
	}
	return NP_OK;
}

/* Pass 2: inputs, attributes, outer-scope reads, then the node itself.
 * Nodes are appended with their inputs unset, linked when all are in:
 * np_graph_insert_node() would otherwise move each before its consumers
 * listed earlier, which is quadratic on a file listed backwards.
 * np_graph_toposort() then orders them. */
static np_status define_node(loader *L, const Onnx__NodeProto *np,
                             pending *pn)
{
	const char *name = pn->name, *op = np->op_type;
	size_t n_in = np->n_input;
	np_value **ins = np_arena_alloc(L->a, (n_in ? n_in : 1) *
	                                sizeof(np_value *));
	for (size_t j = 0; j < n_in; j++) {
		if (!nonempty(np->input[j]))
			continue;
		if (!(ins[j] = np_graph_find(L->g, np->input[j])))
			return np_fail(L->err, NP_ERR_INVALID, "node input '%s' has "
			               "no producer (node %s, op %s)", np->input[j],
			               name, op);
	}
	strset fr = { 0 };
	attr_ctx c = { name, op, &fr };
	np_attr *attrs = np_arena_alloc(L->a, (np->n_attribute ?
	                                np->n_attribute : 1) * sizeof(np_attr));
	for (size_t j = 0; j < np->n_attribute; j++)
		if (convert_attr(L, &attrs[j], np->attribute[j], &c))
			return L->err->status;
	np_value **none = np_arena_alloc(L->a, (n_in ? n_in : 1) *
	                                 sizeof(np_value *));
	np_node *n = np_graph_new_node(L->g, op, np->domain ? np->domain : "",
	                               name, none, (int)n_in, pn->outs,
	                               (int)np->n_output);
	if (!n)
		return np_fail(L->err, NP_ERR_NOMEM, "cannot create node %s", name);
	n->doc_string = adup(L, np->doc_string);
	n->attrs = attrs;
	n->n_attrs = (int)np->n_attribute;
	if (resolve_implicit(L, n, &fr))
		return L->err->status;
	np_graph_insert_node(L->g, n);
	pn->ins = ins;
	pn->node = n;
	return NP_OK;
}

static np_status convert_nodes(loader *L, Onnx__GraphProto *gp)
{
	if (check_count(L, gp->n_node, "nodes"))
		return L->err->status;
	pending *pn = np_arena_alloc(L->a, (gp->n_node ? gp->n_node : 1) *
	                             sizeof(pending));
	if (declare_nodes(L, gp, pn))
		return L->err->status;
	for (size_t i = 0; i < gp->n_node; i++)
		if (define_node(L, gp->node[i], &pn[i]))
			return L->err->status;
	for (size_t i = 0; i < gp->n_node; i++)
		for (int j = 0; j < pn[i].node->n_inputs; j++)
			np_node_set_input(pn[i].node, j, pn[i].ins[j]);
	return NP_OK;
}

/* ---------------------------------------------------------------- graph */

static np_status convert_initializers(loader *L, Onnx__GraphProto *gp)
{
	if (check_count(L, gp->n_initializer, "initializers"))
		return L->err->status;
	for (size_t i = 0; i < gp->n_initializer; i++) {
		Onnx__TensorProto *tp = gp->initializer[i];
		if (!nonempty(tp->name))
			return np_fail(L->err, NP_ERR_INVALID,
			               "initializer %zu has no name", i);
		if (np_graph_find(L->g, tp->name))
			return np_fail(L->err, NP_ERR_INVALID, "value '%s' is "
			               "defined twice (initializer)", tp->name);
		np_tensor *t = convert_tensor(L, tp, tp->name);
		if (!t || !np_graph_add_initializer(L->g, tp->name, t, L->err))
			return L->err->status;
	}
	return NP_OK;
}

/* Graph inputs; before IR 4 initializers were listed here too. */
static np_status convert_inputs(loader *L, const Onnx__GraphProto *gp)
{
	np_graph *g = L->g;
	if (check_count(L, gp->n_input, "graph inputs"))
		return L->err->status;
	g->n_inputs = (int)gp->n_input;
	g->inputs = np_arena_alloc(L->a, (gp->n_input ? gp->n_input : 1) *
	                           sizeof(np_value *));
	for (size_t i = 0; i < gp->n_input; i++) {
		const Onnx__ValueInfoProto *vi = gp->input[i];
		if (value_info_name(L, vi, "graph input", i))
			return L->err->status;
		np_value *v = np_graph_find(g, vi->name);
		if (v && (v->is_input || !v->init))
			return np_fail(L->err, NP_ERR_INVALID, "value '%s' is "
			               "defined twice (graph input)", vi->name);
		if (!v && !(v = np_graph_new_value(g, vi->name, L->err)))
			return L->err->status;
		v->is_input = true;
		g->inputs[i] = v;
		if (apply_value_info(L, v, vi))
			return L->err->status;
	}
	return NP_OK;
}

/* Sparse initializers stay packed; their names are defined values. */
static np_status convert_sparse(loader *L, const Onnx__GraphProto *gp)
{
	np_graph *g = L->g;
	if (check_count(L, gp->n_sparse_initializer, "sparse initializers"))
		return L->err->status;
	g->n_sparse_initializers = (int)gp->n_sparse_initializer;
	PACK_BLOBS(L, gp->sparse_initializer, gp->n_sparse_initializer,
	           g->sparse_initializers);
	for (size_t i = 0; i < gp->n_sparse_initializer; i++) {
		const Onnx__TensorProto *sv = gp->sparse_initializer[i]->values;
		if (!sv || !nonempty(sv->name))
			return np_fail(L->err, NP_ERR_INVALID,
			               "sparse initializer %zu has no name", i);
		if (np_graph_find(g, sv->name))
			return np_fail(L->err, NP_ERR_INVALID, "value '%s' is "
			               "defined twice (sparse initializer)", sv->name);
		np_value *v = np_graph_new_value(g, sv->name, L->err);
		if (!v)
			return L->err->status;
		v->is_sparse_init = true;
	}
	return NP_OK;
}

static np_status convert_outputs(loader *L, const Onnx__GraphProto *gp)
{
	np_graph *g = L->g;
	if (check_count(L, gp->n_output, "graph outputs"))
		return L->err->status;
	g->n_outputs = (int)gp->n_output;
	g->outputs = np_arena_alloc(L->a, (gp->n_output ? gp->n_output : 1) *
	                            sizeof(np_value *));
	for (size_t i = 0; i < gp->n_output; i++) {
		const Onnx__ValueInfoProto *vi = gp->output[i];
		if (value_info_name(L, vi, "graph output", i))
			return L->err->status;
		np_value *v = np_graph_find(g, vi->name);
		if (!v)
			return np_fail(L->err, NP_ERR_INVALID, "graph output '%s' is "
			               "not produced by any node, input or "
			               "initializer", vi->name);
		v->is_output = true;
		g->outputs[i] = v;
		/* A graph input's own type stays: the emitter writes one. */
		if (!v->is_input && apply_value_info(L, v, vi))
			return L->err->status;
	}
	return NP_OK;
}

/* value_info entries add types to existing values; an entry naming no
 * value is kept (written back) on a value of its own. */
static np_status convert_value_info(loader *L, const Onnx__GraphProto *gp)
{
	np_graph *g = L->g;
	if (check_count(L, gp->n_value_info, "value_info entries"))
		return L->err->status;
	g->n_value_info = (int)gp->n_value_info;
	g->value_info = np_arena_alloc(L->a, (gp->n_value_info ?
	                               gp->n_value_info : 1) * sizeof(np_value *));
	for (size_t i = 0; i < gp->n_value_info; i++) {
		const Onnx__ValueInfoProto *vi = gp->value_info[i];
		if (value_info_name(L, vi, "value_info", i))
			return L->err->status;
		np_value *v = np_graph_find(g, vi->name);
		if (!v && !(v = np_graph_new_value(g, vi->name, L->err)))
			return L->err->status;
		g->value_info[i] = v;
		if (!v->is_input && !v->is_output && !v->in_value_info &&
		    apply_value_info(L, v, vi))
			return L->err->status;
		v->in_value_info = true;
	}
	return NP_OK;
}

static np_status convert_graph(loader *L, Onnx__GraphProto *gp)
{
	np_graph *g = L->g;
	g->name = adup(L, gp->name);
	g->doc_string = adup(L, gp->doc_string);
	if (convert_initializers(L, gp) || convert_inputs(L, gp) ||
	    convert_sparse(L, gp) || convert_nodes(L, gp) ||
	    convert_outputs(L, gp) || convert_value_info(L, gp))
		return L->err->status;
	if (check_count(L, gp->n_quantization_annotation, "annotations"))
		return L->err->status;
	g->n_quantization_annotation = (int)gp->n_quantization_annotation;
	PACK_BLOBS(L, gp->quantization_annotation,
	           gp->n_quantization_annotation, g->quantization_annotation);
	/* ONNX requires topological order; a file that breaks it is sorted,
	 * and a cycle is an error.  Stable: a valid order is kept. */
	return np_graph_toposort(g, L->err);
}

/* ---------------------------------------------------------------- model */

static np_status convert_model(loader *L, Onnx__ModelProto *mp)
{
	np_model *m = L->m;
	m->ir_version = mp->ir_version;
	if (check_count(L, mp->n_opset_import, "opset imports") ||
	    check_count(L, mp->n_metadata_props, "metadata entries") ||
	    check_count(L, mp->n_functions, "functions") ||
	    check_count(L, mp->n_training_info, "training infos"))
		return L->err->status;
	m->n_opsets = (int)mp->n_opset_import;
	m->opsets = np_arena_alloc(L->a, (mp->n_opset_import ?
	                           mp->n_opset_import : 1) * sizeof(np_opset));
	for (size_t i = 0; i < mp->n_opset_import; i++) {
		const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
		m->opsets[i].domain = adup(L, o->domain ? o->domain : "");
		m->opsets[i].version = o->version;
	}
	m->producer_name = adup(L, mp->producer_name);
	m->producer_version = adup(L, mp->producer_version);
	m->domain = adup(L, mp->domain);
	m->has_model_version = mp->has_model_version;
	m->model_version = mp->model_version;
	m->doc_string = adup(L, mp->doc_string);
	m->n_metadata = (int)mp->n_metadata_props;
	m->metadata = np_arena_alloc(L->a, (mp->n_metadata_props ?
	                             mp->n_metadata_props : 1) * sizeof(np_kv));
	for (size_t i = 0; i < mp->n_metadata_props; i++) {
		m->metadata[i].key = adup(L, mp->metadata_props[i]->key);
		m->metadata[i].value = adup(L, mp->metadata_props[i]->value);
	}
	m->n_functions = (int)mp->n_functions;
	PACK_BLOBS(L, mp->functions, mp->n_functions, m->functions);
	m->n_training_info = (int)mp->n_training_info;
	PACK_BLOBS(L, mp->training_info, mp->n_training_info,
	           m->training_info);
	return convert_graph(L, mp->graph);
}

/* ------------------------------------------------------ wire pre-scan */

static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

/* protobuf-c unpacks nested messages recursively on the C stack, so a
 * file of a few thousand nested If bodies (94 KB) overflows it before
 * any check of ours could run.  This walks the wire format first, with
 * an explicit stack, descending only into fields that the schema (the
 * generated descriptors) says are messages, and refuses more than
 * NP_MAX_NESTING nested graphs or NP_MAX_MESSAGE_DEPTH nested messages.
 * Malformed wire data is refused here too: protobuf-c would refuse it,
 * perhaps only after recursing somewhere deep. */
static np_status wire_prescan(const uint8_t *buf, size_t len,
                              const ProtobufCMessageDescriptor *root,
                              const char *what, np_error *err)
{
	struct frame {
		const uint8_t *p, *end;
		const ProtobufCMessageDescriptor *d;
	} st[NP_MAX_MESSAGE_DEPTH];
	int top = 0, graphs = root == &onnx__graph_proto__descriptor;
	st[0] = (struct frame){ buf, buf + len, root };
	while (top >= 0) {
		struct frame *f = &st[top];
		if (f->p == f->end) {
			graphs -= f->d == &onnx__graph_proto__descriptor;
			top--;
			continue;
		}
		uint64_t tag, v;
		size_t at = (size_t)(f->p - buf);
		if (!wire_varint(&f->p, f->end, &tag) || (tag >> 3) == 0 ||
		    (tag >> 3) > UINT32_MAX)
			goto bad;
		switch (tag & 7) {
		case 0:
			if (!wire_varint(&f->p, f->end, &v))
				goto bad;
			continue;
		case 1:
		case 5: {
			size_t n = (tag & 7) == 1 ? 8 : 4;
			if ((size_t)(f->end - f->p) < n)
				goto bad;
			f->p += n;
			continue;
		}
		case 2:
			break;
		default:        /* groups: protobuf-c does not take them */
			goto bad;
		}
		if (!wire_varint(&f->p, f->end, &v) ||
		    v > (uint64_t)(f->end - f->p))
			goto bad;
		const uint8_t *body = f->p;
		f->p += v;
		const ProtobufCFieldDescriptor *fd =
			protobuf_c_message_descriptor_get_field(f->d, (unsigned)(tag >> 3));
		if (!fd || fd->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		const ProtobufCMessageDescriptor *sub = fd->descriptor;
		int g = graphs + (sub == &onnx__graph_proto__descriptor);
		if (g > NP_MAX_NESTING + 1)
			return np_fail(err, NP_ERR_UNSUPPORTED, "graphs nested deeper "
			               "than %d (at byte %zu)", NP_MAX_NESTING, at);
		if (top + 1 >= NP_MAX_MESSAGE_DEPTH)
			return np_fail(err, NP_ERR_UNSUPPORTED, "protobuf messages "
			               "nested deeper than %d (at byte %zu)",
			               NP_MAX_MESSAGE_DEPTH, at);
		graphs = g;
		st[++top] = (struct frame){ body, body + v, sub };
	}
	return NP_OK;
bad:
	return np_fail(err, NP_ERR_FORMAT, "not %s (protobuf parse failed)", what);
}

static Onnx__ModelProto *unpack_model(const uint8_t *buf, size_t len,
                                      np_error *err)
{
	if (len == 0) {
		np_fail(err, NP_ERR_FORMAT, "not an ONNX model (empty file)");
		return NULL;
	}
	if (wire_prescan(buf, len, &onnx__model_proto__descriptor,
	                 "an ONNX model", err))
		return NULL;
	Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, buf);
	if (!mp) {
		np_fail(err, NP_ERR_FORMAT,
		        "not an ONNX model (protobuf parse failed)");
		return NULL;
	}
	if (!mp->graph) {
		np_fail(err, NP_ERR_FORMAT, "not an ONNX model (no graph)");
		onnx__model_proto__free_unpacked(mp, NULL);
		return NULL;
	}
	return mp;
}

/* Converts and frees mp (the IR takes some of its buffers over). */
static np_model *convert_and_free(Onnx__ModelProto *mp, const char *base_dir,
                                  np_error *err)
{
	np_model *m = np_model_new();
	if (!m) {
		np_fail(err, NP_ERR_NOMEM, "out of memory");
	} else {
		loader L = { m, m->arena, m->graph, base_dir, NULL, err,
		             "the model's folder", 0 };
		np_status st = convert_model(&L, mp);
		free(L.base_real);
		if (st != NP_OK) {
			np_model_free(m);
			m = NULL;
		}
	}
	onnx__model_proto__free_unpacked(mp, NULL);
	return m;
}

np_model *np_onnx_load_buffer(const uint8_t *buf, size_t len,
                              const char *base_dir, np_error *err)
{
	Onnx__ModelProto *mp = unpack_model(buf, len, err);
	return mp ? convert_and_free(mp, base_dir, err) : NULL;
}

/* ----------------------------------------------------------------- file */

/* Whole file into a malloc'd buffer: a regular file (a FIFO would
 * block, /dev/zero would never end) of at most 2 GiB, the most a
 * protobuf message can be. */
static np_status read_file(const char *path, uint8_t **out, size_t *len,
                           np_error *err)
{
	np_input_fail how;
	const char *why;
	*out = np_read_input(path, NP_MAX_MODEL_BYTES, len, &how, &why);
	if (*out)
		return NP_OK;
	if (how == NP_INPUT_TOO_BIG)
		return np_fail(err, NP_ERR_FORMAT, "cannot read: larger than 2 GiB, "
		               "the most a protobuf file can be");
	return np_fail(err, how == NP_INPUT_NOMEM ? NP_ERR_NOMEM : NP_ERR_IO,
	               "cannot read: %s", why);
}

/* dirname() without modifying path: malloc'd. */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return strdup(".");
	size_t n = slash == path ? 1 : (size_t)(slash - path);
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, path, n);
		d[n] = '\0';
	}
	return d;
}

np_model *np_onnx_load(const char *path, np_error *err)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	if (read_file(path, &buf, &len, err))
		return NULL;
	/* The file's bytes are not needed once unpacked. */
	Onnx__ModelProto *mp = unpack_model(buf, len, err);
	free(buf);
	if (!mp)
		return NULL;
	char *dir = dir_of(path);
	np_model *m = NULL;
	if (!dir) {
		np_fail(err, NP_ERR_NOMEM, "out of memory");
		onnx__model_proto__free_unpacked(mp, NULL);
	} else {
		m = convert_and_free(mp, dir, err);
	}
	free(dir);
	if (m)
		m->path = np_arena_strdup(m->arena, path);
	return m;
}

np_tensor *np_onnx_read_tensor(np_model *m, const char *path, np_error *err)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	if (read_file(path, &buf, &len, err))
		return NULL;
	Onnx__TensorProto *tp = NULL;
	np_status st = wire_prescan(buf, len, &onnx__tensor_proto__descriptor,
	                            "an ONNX TensorProto", err);
	if (st == NP_OK)
		tp = onnx__tensor_proto__unpack(NULL, len, buf);
	free(buf);
	if (st != NP_OK)
		return NULL;
	if (!tp) {
		np_fail(err, NP_ERR_FORMAT, "not an ONNX TensorProto (protobuf parse failed)");
		return NULL;
	}
	char *dir = dir_of(path);
	np_tensor *t = NULL;
	if (!dir) {
		np_fail(err, NP_ERR_NOMEM, "out of memory");
	} else {
		loader L = { m, m->arena, m->graph, dir, NULL, err,
		             "the tensor file's folder", 0 };
		t = convert_tensor(&L, tp, tp->name && *tp->name ? tp->name : "tensor");
		free(L.base_real);
	}
	free(dir);
	onnx__tensor_proto__free_unpacked(tp, NULL);
	return t;
}
