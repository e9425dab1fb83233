/* top1.h - top-1 accuracy of a runtime or a model on a dataset, the one
 * helper the commands, the NEPENTHE loop and the emission use.
 *
 * Against d's labels, or against teacher logits (one row per example of
 * d) when teacher is non-NULL: then "accuracy" is top-1 agreement with
 * the model that made them (DESIGN.md section 5).  *top1 (percent) is
 * written only when the evaluation succeeded, so a caller cannot read
 * the figure of a failed one; d NULL (no such split) gives -1 and NP_OK.
 */
#ifndef NEPENC_TOP1_H
#define NEPENC_TOP1_H

#include <stdbool.h>
#include <stdint.h>

#include "data.h"
#include "ir.h"
#include "rt.h"
#include "status.h"

/* On rt's current weights (inference mode). */
np_status np_top1(np_rt *rt, const np_dataset *d, int64_t batch,
                  const float *teacher, double *top1, np_error *err);

/* On model m, with a runtime of its own (threads, 0 = all cores) freed
 * before returning; progress lines on stderr unless quiet. */
np_status np_model_top1(const np_model *m, const np_dataset *d, int64_t batch,
                        const float *teacher, int threads, bool quiet,
                        double *top1, np_error *err);

#endif
