/* dist.c - data-parallel runs over MPI, or the single-rank case; see
 * dist.h. */
#include "config.h"

#include "dist.h"

#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "progress.h"

#ifdef NEPENC_MPI
#include <mpi.h>
#endif

static int np_rank = 0, np_size = 1;
#ifdef NEPENC_MPI
/* np_dist_isums' reduce-scatters and all-gathers, each on a duplicate
 * of MPI_COMM_WORLD: collectives must start in the same order on every
 * rank per communicator, and an all-gather starts when its reduce-scatter
 * is seen done, at a different moment on each rank. */
static MPI_Comm np_comm_rs = MPI_COMM_NULL, np_comm_ag = MPI_COMM_NULL;
#endif
static bool np_started = false;      /* np_dist_init called MPI_Init */
static bool np_agreed_failure = false;
static double np_comm_seconds = 0;   /* np_dist_comm_seconds */
static double np_comm_total = 0;     /* np_dist_comm_total_seconds */

/* A blocking collective that began at t0 has ended: both clocks. */
static void np_comm_add(double t0)
{
	double dt = np_now() - t0;
	np_comm_seconds += dt;
	np_comm_total += dt;
}

/* One slot of np_dist_isums (dist.h). */
struct np_isum {
	float *v;
	size_t each;               /* floats of each rank's slice */
	int stage;                 /* 1 reduce-scatter, 2 all-gather, 3 done */
#ifdef NEPENC_MPI
	MPI_Request req;
#endif
};

struct np_dist_isums {
	int n;
	int started;               /* slots started, in order */
	int gathered;              /* of those, whose all-gather started */
	int busy;                  /* started and not seen done */
	double since;              /* when busy last went from 0 to 1 */
	struct np_isum slot[];
};

np_dist_isums *np_dist_isums_new(int n)
{
	np_dist_isums *s = calloc(1, sizeof *s + sizeof(struct np_isum) * (size_t)(n + 1));
	if (s)
		s->n = n;
	return s;
}

void np_dist_isums_free(np_dist_isums *s)
{
	free(s);
}

bool np_dist_built(void)
{
#ifdef NEPENC_MPI
	return true;
#else
	return false;
#endif
}

const char *np_dist_library(void)
{
#ifdef NEPENC_MPI
	static char buf[MPI_MAX_LIBRARY_VERSION_STRING + 1];
	int len = 0;
	if (!buf[0]) {
		MPI_Get_library_version(buf, &len);
		buf[len < (int)sizeof buf ? len : (int)sizeof buf - 1] = '\0';
		/* Its first line only. */
		buf[strcspn(buf, "\n")] = '\0';
	}
	return buf;
#else
	return NULL;
#endif
}

int np_dist_rank(void) { return np_rank; }
int np_dist_size(void) { return np_size; }
double np_dist_comm_seconds(void) { return np_comm_seconds; }
double np_dist_comm_total_seconds(void) { return np_comm_total; }

/* Rank r's share of n items over size ranks. */
static void np_share_of(int64_t n, int r, int size, int64_t *first, int64_t *count)
{
	int64_t q = n / size, rem = n % size;
	*first = q * r + (rem < r ? rem : r);
	*count = q + (r < rem);
}

void np_dist_share(int64_t n, int64_t *first, int64_t *count)
{
	np_share_of(n, np_rank, np_size, first, count);
}

#ifdef NEPENC_MPI

/* Started by a launcher?  Open MPI's mpirun, PMIx (srun --mpi=pmix,
 * Open MPI 5), PMI-1/2 (srun --mpi=pmi2, MPICH's hydra). */
static bool np_launched(void)
{
	static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK",
	                                   "PMI_SIZE", "PMI_RANK"};
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
		if (getenv(vars[i]))
			return true;
	return false;
}

np_status np_dist_init(int *argc, char ***argv, np_error *err)
{
	if (!np_launched())
		return NP_OK;
	int provided = 0;
	if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
		return np_fail(err, NP_ERR_IO, "MPI_Init failed");
	np_started = true;
	MPI_Comm_rank(MPI_COMM_WORLD, &np_rank);
	MPI_Comm_size(MPI_COMM_WORLD, &np_size);
	if (np_size > 1) {
		MPI_Comm_dup(MPI_COMM_WORLD, &np_comm_rs);
		MPI_Comm_dup(MPI_COMM_WORLD, &np_comm_ag);
	}
	return NP_OK;
}

void np_dist_finalize(void)
{
	if (np_comm_rs != MPI_COMM_NULL)
		MPI_Comm_free(&np_comm_rs);
	if (np_comm_ag != MPI_COMM_NULL)
		MPI_Comm_free(&np_comm_ag);
	if (np_started)
		MPI_Finalize();
	np_started = false;
}

np_status np_dist_agree(np_status st, np_error *err)
{
	if (np_size == 1)
		return st;
	double t0 = np_now();
	int mine = st != NP_OK ? np_rank : np_size, first = np_size;
	MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
	if (first < np_size) {
		/* The lowest failing rank's message, on every rank. */
		if (first == np_rank) {
			if (err->status == NP_OK)
				err->status = st;
			/* Rank 0 prints it: say whose it was. */
			size_t len = strlen(err->msg);
			if (np_rank > 0 && len + 16 < sizeof err->msg)
				snprintf(err->msg + len, sizeof err->msg - len, " (rank %d)", np_rank);
		}
		MPI_Bcast(err, (int)sizeof *err, MPI_BYTE, first, MPI_COMM_WORLD);
		np_agreed_failure = true;
		st = err->status != NP_OK ? err->status : NP_ERR_INVALID;
	}
	np_comm_add(t0);
	return st;
}

void np_dist_abort(int code)
{
	if (np_started && np_size > 1)
		MPI_Abort(MPI_COMM_WORLD, code);
}

/* Counts past INT_MAX go in pieces. */
#define NP_DIST_PIECE ((size_t)1 << 28)

void np_dist_sum_i64(int64_t *v, size_t n)
{
	if (np_size == 1)
		return;
	double t0 = np_now();
	for (size_t i = 0; i < n; i += NP_DIST_PIECE) {
		size_t m = n - i < NP_DIST_PIECE ? n - i : NP_DIST_PIECE;
		MPI_Allreduce(MPI_IN_PLACE, v + i, (int)m, MPI_INT64_T, MPI_SUM,
		              MPI_COMM_WORLD);
	}
	np_comm_add(t0);
}

void np_dist_sum_f64(double *v, size_t n)
{
	if (np_size == 1)
		return;
	double t0 = np_now();
	for (size_t i = 0; i < n; i += NP_DIST_PIECE) {
		size_t m = n - i < NP_DIST_PIECE ? n - i : NP_DIST_PIECE;
		/* MPI_Reduce's order is fixed for a fixed communicator;
		 * MPI_Allreduce's result may differ between ranks. */
		MPI_Reduce(np_rank == 0 ? MPI_IN_PLACE : v + i, v + i, (int)m,
		           MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
		MPI_Bcast(v + i, (int)m, MPI_DOUBLE, 0, MPI_COMM_WORLD);
	}
	np_comm_add(t0);
}

size_t np_dist_padded(size_t n)
{
	size_t s = (size_t)np_size;
	return (n + s - 1) / s * s;
}

void np_dist_sum_f32(float *v, size_t n)
{
	if (np_size == 1)
		return;
	double t0 = np_now();
	size_t s = (size_t)np_size, total = np_dist_padded(n);
	memset(v + n, 0, sizeof(float) * (total - n));
	size_t piece = NP_DIST_PIECE / s * s;
	for (size_t i = 0; i < total; i += piece) {
		size_t m = total - i < piece ? total - i : piece, each = m / s;
		float *b = v + i;
		/* In place: the rank's reduced slice lands at the front of b,
		 * then moves to its own place for the all-gather. */
		MPI_Reduce_scatter_block(MPI_IN_PLACE, b, (int)each, MPI_FLOAT, MPI_SUM,
		                         MPI_COMM_WORLD);
		if (np_rank > 0)
			memmove(b + (size_t)np_rank * each, b, sizeof(float) * each);
		MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, b, (int)each, MPI_FLOAT,
		              MPI_COMM_WORLD);
	}
	np_comm_add(t0);
}

/* Is the request done?  block: wait until it is. */
static bool np_req_done(MPI_Request *req, bool block)
{
	int done = 1;
	if (block)
		MPI_Wait(req, MPI_STATUS_IGNORE);
	else
		MPI_Test(req, &done, MPI_STATUS_IGNORE);
	return done != 0;
}

/* Moves s's sums on: each slot's all-gather starts (in slot order) once
 * its reduce-scatter is done; block: wait for every one to end.  t0:
 * when the caller began; the time since then is waited for, and when
 * the last sum in flight ended, its stretch of time in flight ends now. */
static void np_isums_poll(np_dist_isums *s, bool block, double t0)
{
	while (s->gathered < s->started) {
		struct np_isum *q = &s->slot[s->gathered];
		if (!np_req_done(&q->req, block))
			break;
		/* As np_dist_sum_f32: the reduced slice is at the front. */
		if (np_rank > 0)
			memmove(q->v + (size_t)np_rank * q->each, q->v, sizeof(float) * q->each);
		MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, q->v, (int)q->each,
		               MPI_FLOAT, np_comm_ag, &q->req);
		q->stage = 2;
		s->gathered++;
	}
	for (int i = 0; i < s->gathered; i++) {
		struct np_isum *q = &s->slot[i];
		if (q->stage != 2 || !np_req_done(&q->req, block))
			continue;
		q->stage = 3;
		s->busy--;
	}
	double t1 = np_now();
	np_comm_seconds += t1 - t0;
	if (s->busy == 0)
		np_comm_total += t1 - s->since;
}

void np_dist_isum_start(np_dist_isums *s, float *v, size_t n)
{
	if (np_size == 1 || s->started >= s->n)
		return;
	double t0 = np_now();
	size_t total = np_dist_padded(n);
	memset(v + n, 0, sizeof(float) * (total - n));
	struct np_isum *q = &s->slot[s->started++];
	q->v = v;
	q->each = total / (size_t)np_size;
	q->stage = 1;
	if (s->busy++ == 0)
		s->since = t0;
	MPI_Ireduce_scatter_block(MPI_IN_PLACE, v, (int)q->each, MPI_FLOAT, MPI_SUM,
	                          np_comm_rs, &q->req);
	np_isums_poll(s, false, t0);
}

/* Nothing in flight: no MPI call, no time counted (so the time waited
 * stays within the time in flight). */
void np_dist_isums_test(np_dist_isums *s)
{
	if (np_size > 1 && s->busy > 0)
		np_isums_poll(s, false, np_now());
}

void np_dist_isums_wait(np_dist_isums *s)
{
	if (np_size > 1 && s->busy > 0)
		np_isums_poll(s, true, np_now());
	s->started = s->gathered = s->busy = 0;
}

np_status np_dist_gather_shares(float *v, int64_t n, int64_t width,
                                np_error *err)
{
	if (np_size == 1)
		return NP_OK;
	int *counts = malloc(sizeof(int) * (size_t)(2 * np_size));
	np_status st = NP_OK;
	if (!counts)
		st = np_fail(err, NP_ERR_NOMEM, "out of memory");
	else if (n * width > INT_MAX)   /* the same on every rank */
		st = np_fail(err, NP_ERR_UNSUPPORTED, "%lld x %lld floats are too many "
		             "to gather over MPI", (long long)n, (long long)width);
	if ((st = np_dist_agree(st, err)) != NP_OK) {
		free(counts);
		return st;
	}
	int *displs = counts + np_size;
	for (int r = 0; r < np_size; r++) {
		int64_t first, count;
		np_share_of(n, r, np_size, &first, &count);
		counts[r] = (int)(count * width);
		displs[r] = (int)(first * width);
	}
	double t0 = np_now();
	MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, v, counts, displs,
	               MPI_FLOAT, MPI_COMM_WORLD);
	np_comm_add(t0);
	free(counts);
	return NP_OK;
}

void np_dist_bcast(void *v, size_t bytes, int root)
{
	if (np_size == 1)
		return;
	double t0 = np_now();
	for (size_t i = 0; i < bytes; i += NP_DIST_PIECE) {
		size_t m = bytes - i < NP_DIST_PIECE ? bytes - i : NP_DIST_PIECE;
		MPI_Bcast((char *)v + i, (int)m, MPI_BYTE, root, MPI_COMM_WORLD);
	}
	np_comm_add(t0);
}

#else /* one rank */

np_status np_dist_init(int *argc, char ***argv, np_error *err)
{
	(void)argc;
	(void)argv;
	(void)err;
	return NP_OK;
}

void np_dist_finalize(void) { np_started = false; }
np_status np_dist_agree(np_status st, np_error *err) { (void)err; return st; }
void np_dist_abort(int code) { (void)code; }
void np_dist_sum_i64(int64_t *v, size_t n) { (void)v; (void)n; }
void np_dist_sum_f64(double *v, size_t n) { (void)v; (void)n; }
size_t np_dist_padded(size_t n) { return n; }
void np_dist_sum_f32(float *v, size_t n) { (void)v; (void)n; }
void np_dist_bcast(void *v, size_t bytes, int root) { (void)v; (void)bytes; (void)root; }
void np_dist_isum_start(np_dist_isums *s, float *v, size_t n) { (void)s; (void)v; (void)n; }
void np_dist_isums_test(np_dist_isums *s) { (void)s; }
void np_dist_isums_wait(np_dist_isums *s) { (void)s; }

np_status np_dist_gather_shares(float *v, int64_t n, int64_t width, np_error *err)
{
	(void)v;
	(void)n;
	(void)width;
	(void)err;
	return NP_OK;
}

#endif

bool np_dist_failed_alone(np_status st)
{
	return st != NP_OK && np_size > 1 && !np_agreed_failure;
}
