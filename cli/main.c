/* main.c - the nepenc program: parse the command line, run one command,
 * print its error as "nepenc: FILE: what" and exit.  The only place that
 * exits. */
#include "config.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic.h"
#include "cli.h"
#include "commands.h"
#include "depfile.h"
#include "dist.h"
#include "ir.h"
#include "rt.h"
#include "status.h"

/* Interrupted: remove temporary outputs, then die by the same signal so
 * the caller (make, a shell) sees what happened. */
static void np_on_signal(int sig)
{
	np_atomic_cleanup_signal();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void np_on_oom(size_t size)
{
	fprintf(stderr, "nepenc: out of memory (%zu bytes)\n", size);
	exit(1);
}

/* The files the command read: the model and its external data, the data
 * specs it loads, the run configuration. */
static void np_collect_deps(const np_cli *c, np_deps *d)
{
	bool nepenthe = c->command == NP_CMD_COMPILE && strcmp(c->passes, "none") != 0;
	if (nepenthe || c->command == NP_CMD_FINETUNE) {
		np_deps_add_spec(d, c->data);
		if (nepenthe && c->val)
			np_deps_add_spec(d, c->val);
		if (c->test)
			np_deps_add_spec(d, c->test);
		if (c->dopts.classes)   /* folder: data's class list */
			np_deps_add(d, c->dopts.classes);
	}
	if (c->conf.path)
		np_deps_add(d, c->conf.path);
}

/* After the output is written: the rule for make (-MD, -MF, --depfile).
 * d holds the model's files already (np_cli_load_model, during the run). */
static np_status np_write_depfile(const np_cli *c, np_deps *d, np_error *err)
{
	np_collect_deps(c, d);
	return np_deps_write(d, c->depfile, c->dep_target, c->output, err);
}

/* How long an idle OpenMP thread spins before it sleeps.  libgomp's
 * default (300,000 spins) keeps both threads spinning between oneDNN's
 * parallel regions: when another process wants a core, the spinner holds
 * it while the thread that has work waits.  resnet14 fine-tuning, 6,400
 * images, 2 threads, 2-core Xeon (docs/performance.md), idle / beside one
 * busy process: default 1460-1492 / 310-316 img/s, 3000 spins 1449-1460 /
 * 461-472, OMP_WAIT_POLICY=PASSIVE 1307-1316 / 442-449.  3000 keeps idle
 * speed (-1%) and is the fastest beside a competitor. */
#define NP_GOMP_SPINCOUNT "3000"

/* libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when it is
 * loaded, before main: to change the default nepenc sets GOMP_SPINCOUNT
 * and runs itself again (once: the variable is then set).  A user's own
 * OMP_WAIT_POLICY or GOMP_SPINCOUNT is left alone; if the exec fails,
 * nepenc runs on with libgomp's default. */
static void np_bound_omp_spinning(char **argv)
{
	if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT"))
		return;
	if (setenv("GOMP_SPINCOUNT", NP_GOMP_SPINCOUNT, 1) != 0)
		return;
	execv("/proc/self/exe", argv);
}

/* Ranks other than 0 of a data-parallel run (runtime/dist.h) print
 * nothing: their standard output goes to /dev/null, their progress is
 * quiet, and the errors every rank shares are printed by rank 0.  Their
 * standard error stays open for what only they know (a failure of their
 * own, sanitizer reports). */
static void np_quiet_rank(void)
{
	if (np_dist_rank() != 0 && !freopen("/dev/null", "w", stdout))
		fclose(stdout);
}

/* The command line is the same on every rank, and so are its errors:
 * rank 0 says them.  Runs parse with the other ranks' stderr on
 * /dev/null. */
static int np_parse_once(np_cli *c, int argc, char **argv)
{
	int saved = -1, null = -1;
	if (np_dist_rank() != 0) {
		fflush(stderr);
		saved = dup(2);
		null = open("/dev/null", O_WRONLY);
		if (saved >= 0 && null >= 0)
			dup2(null, 2);
	}
	int rc = np_cli_parse(c, argc, argv);
	if (saved >= 0) {
		fflush(stderr);
		dup2(saved, 2);
		close(saved);
	}
	if (null >= 0)
		close(null);
	return rc;
}

int main(int argc, char **argv)
{
	np_bound_omp_spinning(argv);
	np_set_oom_handler(np_on_oom);
	signal(SIGINT, np_on_signal);
	signal(SIGTERM, np_on_signal);
	np_error err = {0};
	/* After the re-exec: MPI starts in the process that stays. */
	if (np_dist_init(&argc, &argv, &err) != NP_OK) {
		fprintf(stderr, "nepenc: %s\n", err.msg);
		return 1;
	}
	np_quiet_rank();
	np_cli c;
	int rc = np_parse_once(&c, argc, argv);
	if (rc != 0) {
		np_cli_free(&c);
		np_dist_finalize();
		return rc < 0 ? 0 : rc;
	}
	if (np_dist_rank() != 0) {
		c.quiet = true;
		c.verbose = false;
	}
	/* -v: the runtime names operators whose layout fell back to plain. */
	np_rt_set_verbose(c.verbose);
	static np_status (*const run[])(const np_cli *, np_error *) = {
		[NP_CMD_COMPILE] = np_cmd_compile,
		[NP_CMD_INSPECT] = np_cmd_inspect,
		[NP_CMD_EVAL] = np_cmd_eval,
		[NP_CMD_FINETUNE] = np_cmd_finetune,
		[NP_CMD_PROFILE] = np_cmd_profile,
	};
	np_deps deps;
	np_deps_init(&deps);
	c.deps = c.depfile ? &deps : NULL;
	np_status st = run[c.command](&c, &err);
	/* Every rank that got here without an error of its own: rank 0
	 * writes the depfile, and the others learn how that went. */
	if (st == NP_OK && c.depfile) {
		if (np_dist_rank() == 0)
			st = np_write_depfile(&c, &deps, &err);
		st = np_dist_agree(st, &err);
	}
	np_deps_free(&deps);
	if (np_dist_failed_alone(st)) {
		/* The other ranks may wait for this one in a collective: say
		 * why, remove this rank's temporary files, end them all. */
		fprintf(stderr, "nepenc: %s: %s (rank %d)\n", err.file[0] ? err.file : c.model,
		        err.msg, np_dist_rank());
		np_cli_free(&c);
		np_atomic_cleanup_signal();
		np_dist_abort(np_exit_code(st));
		return np_exit_code(st);
	}
	if (st != NP_OK && np_dist_rank() == 0)
		fprintf(stderr, "nepenc: %s: %s\n", err.file[0] ? err.file : c.model, err.msg);
	np_cli_free(&c);
	np_dist_finalize();
	return st == NP_OK ? 0 : np_exit_code(st);
}
