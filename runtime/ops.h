/* ops.h - the runtime's op table (built from ops.def). */
#ifndef NEPENC_OPS_H
#define NEPENC_OPS_H

#include <stdint.h>
#include <string.h>

#include "rt.h"

#define NP_OP(name, sym) extern const np_op sym;
#include "ops.def"
#undef NP_OP

/* bf16 <-> f32 for loops over values stored in bf16 (rt.h, PRECISION):
 * the top half of the float, rounded to nearest even (a NaN stays a
 * NaN), as oneDNN converts. */
static inline uint16_t np_bf16_of(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)(u >> 16 | 0x40u);
	u += 0x7fffu + (u >> 16 & 1u);
	return (uint16_t)(u >> 16);
}

static inline float np_f32_of(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

/* Element j of a float tensor's buffer, stored in f32 or bf16. */
static inline float np_load(const void *p, int64_t j, bool bf16)
{
	return bf16 ? np_f32_of(((const uint16_t *)p)[j]) : ((const float *)p)[j];
}

static inline void np_store(void *p, int64_t j, float v, bool bf16)
{
	if (bf16)
		((uint16_t *)p)[j] = np_bf16_of(v);
	else
		((float *)p)[j] = v;
}

/* Loops over bf16-stored values are compiled for AVX-512 (16 lanes):
 * every CPU that stores values in bf16 has it (bf16 needs AVX512_BF16
 * or AMX: np_rt_bf16_supported), and np_bf16_simd_cpu() says so before
 * an op chooses such a loop. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define NP_BF16_SIMD __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
static inline bool np_bf16_simd_cpu(void)
{
	return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	       __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}
#else
#define NP_BF16_SIMD
static inline bool np_bf16_simd_cpu(void) { return true; }
#endif

/* The op for an IR node (default domain only), NULL if unknown. */
const np_op *np_op_find(const char *domain, const char *op_type);

/* An op's identity without its name: one constant per ops.def line
 * (NP_OPK_Conv ...), in that order.  For a pass about one op; what is
 * generic asks the op's facts (rt.h, FACTS). */
typedef enum np_op_kind {
	NP_OPK_NONE = -1,            /* not in the table (or another domain) */
#define NP_OP(name, sym) NP_OPK_##name,
#include "ops.def"
#undef NP_OP
	NP_OPK_COUNT
} np_op_kind;

/* n's kind, domain-checked as np_op_find; NP_OPK_NONE for NULL. */
np_op_kind np_node_kind(const np_node *n);
/* n's op (np_op_find of its domain and op_type); NULL for NULL. */
const np_op *np_node_op(const np_node *n);
/* The ONNX op_type of a kind, for passes that create nodes; NULL for
 * NP_OPK_NONE. */
const char *np_op_name(np_op_kind k);
/* n's op's flags (np_op_flag); 0 for an unknown op or NULL. */
unsigned np_node_flags(const np_node *n);
/* Input i's bit in one of an op's input masks (trainable ...). */
static inline bool np_op_input_bit(unsigned mask, int i)
{
	return i >= 0 && i < 32 && ((mask >> i) & 1u) != 0;
}
/* The weight geometry of node n's weight of shape [rank, dims]; false
 * when n is not a linear op or the shape does not fit it. */
bool np_node_weight_geom(const np_node *n, int rank, const int64_t *dims,
                         np_weight_geom *g);

/* Shared by ops' flops facts: the elements of s per example (dims after
 * the first; -1 if s is NULL or one is unknown), and one FLOP per output
 * element (element-wise and broadcasting ops). */
int64_t np_shape_per_example(const np_shape *s);
int64_t np_flops_per_element(const np_node *n, const np_shape *const *in,
                             int n_in, const np_shape *out);

/* Shared by ops: broadcast output shape of two inputs (numpy rules). */
np_status np_rt_broadcast_shape(const np_xnode *x, const np_rtensor *a,
                                const np_rtensor *b, np_rtensor *out,
                                np_error *err);

/* Shared by the data-movement, comparison and reduction ops (movement.c,
 * compare.c, reduce.c): */

/* The values of input i, a constant int64/int32 tensor of rank <= 1 of
 * at most max entries (axes, shapes, starts): the planner knows them at
 * plan time or the op cannot plan (NP_ERR_UNSUPPORTED, naming it). */
np_status np_rt_const_ints(const np_xnode *x, int i, int64_t *v, int max,
                           int *n, np_error *err);
/* axis in [-rank, rank) made non-negative, or an error naming x. */
np_status np_rt_norm_axis(const np_xnode *x, int64_t axis, int rank,
                          int *out, np_error *err);
/* Element strides of t along the rank axes of a shape it broadcasts to
 * (numpy rules, t right-aligned): 0 where t has 1 or no axis. */
void np_rt_bcast_strides(const np_rtensor *t, int rank, const int64_t *dims,
                         int64_t *str);
/* dst (t's shape) = src (shape [rank, dims], which t broadcasts to)
 * summed over the axes t is broadcast along: a broadcast operand's
 * gradient.  Parallel over dst's elements, each summed in a fixed order
 * (no atomics): the result does not depend on the thread count. */
void np_rt_sum_to(const float *src, int rank, const int64_t *dims,
                  const np_rtensor *t, float *dst);

#endif
