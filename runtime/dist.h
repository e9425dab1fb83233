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
 * Nothing here allocates but np_dist_isums_new (whose failure the caller
 * agrees on): sums work in place in the caller's buffer, so a collective
 * never fails on one rank alone.  Call only from the main thread
 * (MPI_THREAD_FUNNELED).
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

/* Sums started now and finished later, to overlap them with computing
 * (the gradient buckets of train.c): a set of slots, each one float sum
 * of np_dist_sum_f32's kind (reduce-scatter, then all-gather: the same
 * result on every rank, and the same as np_dist_sum_f32 of those floats
 * whenever the order of the float sums is fixed by the ranks alone, as
 * with 2 ranks, whose a + b is b + a).  They run on communicators of
 * their own (duplicates of MPI_COMM_WORLD made by np_dist_init), so the
 * blocking collectives above never mix with them; every rank must start
 * the same sums, of the same sizes, in the same order, and wait for them
 * before its next blocking collective.  MPI makes progress only inside
 * MPI calls here (one thread): call np_dist_isums_test often.
 *
 * np_dist_isums_new: n slots, malloc'd, owned by the caller, freed with
 * np_dist_isums_free (never with a sum in flight: wait first); NULL when
 * out of memory.  np_dist_isum_start starts the next slot's sum (slots
 * in turn from 0) of v[0..n) in a buffer of np_dist_padded(n) floats (the
 * tail is scratch), n at most NP_DIST_ISUM_MAX; v stays the caller's
 * but must not be touched until np_dist_isums_wait returns.  _test moves
 * every started sum on without blocking; _wait blocks until every
 * started sum is done and makes the set empty again (slot 0 next).  One
 * rank: the sums are no-ops. */
#define NP_DIST_ISUM_MAX ((size_t)1 << 28)
typedef struct np_dist_isums np_dist_isums;
np_dist_isums *np_dist_isums_new(int n);
void np_dist_isums_free(np_dist_isums *s);
void np_dist_isum_start(np_dist_isums *s, float *v, size_t n);
void np_dist_isums_test(np_dist_isums *s);
void np_dist_isums_wait(np_dist_isums *s);

/* Seconds this rank's training waited for communication so far: inside
 * every blocking collective, and inside the calls that start, test and
 * wait for the sums above (what overlapping did not hide; bench/scaling's
 * "exposed" share of a step). */
double np_dist_comm_seconds(void);
/* Seconds some communication was in flight: the blocking collectives,
 * and from the start of a sum of np_dist_isums until its end was seen
 * (at a test or wait: at most one test interval late), overlapping sums
 * counted once (the "total" share; equal to np_dist_comm_seconds
 * without overlap). */
double np_dist_comm_total_seconds(void);

#endif
