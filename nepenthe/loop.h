/* loop.h - what the two iteration loops share (nepenthe.c, easier.c):
 * private to the nepenthe layer. */
#ifndef NEPENC_LOOP_H
#define NEPENC_LOOP_H

#include "nepenthe.h"

/* Fine-tune rt for o->train.epochs (none: nothing) with a shuffle seeded
 * by the iteration, a progress line and the loss watch. */
np_status np_loop_finetune(np_rt *rt, const np_run_data *d, const np_nepenthe_opts *o,
                           int it, np_error *err);

/* A new zeroed iteration at the end of run->it, index set; NULL (err
 * set) when out of memory. */
np_iteration *np_run_add_iteration(np_run *run, np_error *err);

/* Fraction of the layers' prunable weights that are masked in rt. */
double np_loop_sparsity(np_rt *rt, const np_layers *ls);

#endif
