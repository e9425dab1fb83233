/* ops.h - the runtime's op table (built from ops.def). */
#ifndef NEPENC_OPS_H
#define NEPENC_OPS_H

#include "rt.h"

#define NP_OP(name, sym) extern const np_op sym;
#include "ops.def"
#undef NP_OP

/* The op for an IR node (default domain only), NULL if unknown. */
const np_op *np_op_find(const char *domain, const char *op_type);

/* Shared by ops: broadcast output shape of two inputs (numpy rules). */
np_status np_rt_broadcast_shape(const np_xnode *x, const np_rtensor *a,
                                const np_rtensor *b, np_rtensor *out,
                                np_error *err);

#endif
