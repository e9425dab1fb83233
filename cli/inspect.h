/* inspect.h - `nepenc inspect`: what a model holds, for people and JSON. */
#ifndef NEPENC_INSPECT_H
#define NEPENC_INSPECT_H

#include <stdbool.h>
#include <stdio.h>

#include "ir.h"
#include "status.h"

np_status np_inspect(const np_model *m, FILE *out, bool json, np_error *err);

#endif
