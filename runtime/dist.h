/* dist.h - data-parallel runs over MPI (`mpirun -np N nepenc ...`).
 *
 * One process per rank, each with the whole model and its own runtime.
 * Training, evaluation and profiling split their examples over the ranks
 * (np_dist_share) and add up what each rank found: gradients (before the
 * optimizer step, train.c), BatchNormalization's running statistics (at
 * the end of each epoch), hit and state counts (int64, exact), losses and
 * Wanda norms (double, summed in one fixed order and handed to every rank,
 * so that every rank takes the same decisions).  Only rank 0 prints and
 * writes files (the command line's job).
 *
 * Built without MPI (configure --without-mpi, or no MPI found) every
 * function here is the single-rank case: rank 0 of 1, sums are no-ops,
 * np_dist_agree returns its argument.  Built with MPI but started without
 * a launcher (no mpirun/srun environment), nepenc does not initialise MPI
 * at all and is the same single process as without it.
 *
 * ERRORS
 *   Collectives must be entered by every rank in the same order, so a rank
 *   that fails must not simply return: the loops call np_dist_agree() at
 *   fixed points (every training step, the end of an evaluation or
 *   profile, after loading data, after writing the outputs) with their
 *   local status; it returns the error of the lowest failing rank, the
 *   same on every rank, and they all unwind together.  A failure that
 *   never reaches such a point (np_dist_failed_alone()) ends the job with
 *   np_dist_abort() (MPI_Abort), after main has printed it.  Collectives
 *   use MPI's default error handler (MPI_ERRORS_ARE_FATAL): a broken
 *   connection or a dead peer ends the job instead of hanging, and Open
 *   MPI's mpirun kills every rank when one dies.
 *
 * Nothing here allocates: sums work in place in the caller's buffer, so a
 * collective never fails on one rank alone.  Call only from the main
 * thread (MPI_THREAD_FUNNELED).
 */
#ifndef NEPENC_DIST_H
#define NEPENC_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Was nepenc built with MPI? */
bool np_dist_built(void);
/* The MPI library, one line ("Open MPI v4.1.4, ..."), or NULL without. */
const char *np_dist_library(void);

/* Start MPI when a launcher started this process (Open MPI's mpirun, a
 * PMI/PMIx launcher such as srun or MPICH's hydra); otherwise, and
 * without MPI, nothing.  Call once, first thing in main (after any
 * re-exec: MPI_Init must run in the process that stays). */
np_status np_dist_init(int *argc, char ***argv, np_error *err);
/* MPI_Finalize when np_dist_init started MPI. */
void np_dist_finalize(void);

int np_dist_rank(void);
int np_dist_size(void);

/* This rank's part of n items: [*first, *first + *count), contiguous,
 * the parts in rank order and their sizes within one of each other. */
void np_dist_share(int64_t n, int64_t *first, int64_t *count);

/* Every rank calls it at the same point with its own status: returns
 * NP_OK when every rank had NP_OK, else the error of the lowest failing
 * rank, copied into err on every rank. */
np_status np_dist_agree(np_status st, np_error *err);
/* After a failure: true when no np_dist_agree() reported it to the other
 * ranks (they may be waiting in a collective); false with one rank. */
bool np_dist_failed_alone(np_status st);
/* End every rank with exit status code (MPI_Abort); returns only with one
 * rank. */
void np_dist_abort(int code);

/* In-place sums over the ranks, the same result on every rank. */
void np_dist_sum_i64(int64_t *v, size_t n);
/* Reduced on rank 0 in rank order, then broadcast. */
void np_dist_sum_f64(double *v, size_t n);
/* Float sums of n values in a buffer of np_dist_padded(n) floats (the
 * tail is scratch): each slice of the buffer is reduced on one rank,
 * then every rank gets every slice (reduce-scatter + all-gather, the
 * ring all-reduce's traffic: 2 (N-1)/N x 4n bytes per rank). */
size_t np_dist_padded(size_t n);
void np_dist_sum_f32(float *v, size_t n);
/* v holds n items of width floats, this rank's share of them
 * (np_dist_share) filled in: afterwards every rank holds all of them.
 * Its two small arrays' allocation is agreed on (np_dist_agree). */
np_status np_dist_gather_shares(float *v, int64_t n, int64_t width,
                                np_error *err);
/* The bytes of v from rank root to every rank. */
void np_dist_bcast(void *v, size_t bytes, int root);

/* Seconds spent in this rank's collectives so far (the all-reduce share
 * of a step, for benchmarks). */
double np_dist_comm_seconds(void);

#endif
