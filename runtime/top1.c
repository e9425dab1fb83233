/* top1.c - top-1 accuracy of a runtime or a model; see top1.h. */
#include "top1.h"

#include "progress.h"
#include "train.h"

np_status np_top1(np_rt *rt, const np_dataset *d, int64_t batch,
                  const float *teacher, double *top1, np_error *err)
{
	if (!d) {
		*top1 = -1;
		return NP_OK;
	}
	np_eval_result r;
	np_status st = np_evaluate(rt, d, batch, teacher, &r, err);
	if (st == NP_OK)
		*top1 = r.top1;
	return st;
}

np_status np_model_top1(const np_model *m, const np_dataset *d, int64_t batch,
                        const float *teacher, int threads, bool quiet,
                        double *top1, np_error *err)
{
	if (!d) {
		*top1 = -1;
		return NP_OK;
	}
	/* np_rt_new takes a non-const model; it only reads it. */
	np_rt *rt = np_rt_new((np_model *)m, threads, err);
	if (!rt)
		return err->status;
	np_progress pr = {.quiet = quiet};
	np_rt_set_progress(rt, np_progress_rt, &pr);
	np_status st = np_top1(rt, d, batch, teacher, top1, err);
	np_rt_free(rt);
	return st;
}
