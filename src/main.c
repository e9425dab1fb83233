/* main.c - the nepenc program: parse the command line, run one command,
 * print its error as "nepenc: FILE: what" and exit.  The only place that
 * exits. */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "atomic.h"
#include "cli.h"
#include "commands.h"
#include "ir.h"
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

int main(int argc, char **argv)
{
	np_set_oom_handler(np_on_oom);
	signal(SIGINT, np_on_signal);
	signal(SIGTERM, np_on_signal);
	np_cli c;
	int rc = np_cli_parse(&c, argc, argv);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	static np_status (*const run[])(const np_cli *, np_error *) = {
		[NP_CMD_COMPILE] = np_cmd_compile,
		[NP_CMD_INSPECT] = np_cmd_inspect,
		[NP_CMD_EVAL] = np_cmd_eval,
		[NP_CMD_FINETUNE] = np_cmd_finetune,
		[NP_CMD_PROFILE] = np_cmd_profile,
	};
	np_error err = {0};
	np_status st = run[c.command](&c, &err);
	if (st == NP_OK)
		return 0;
	fprintf(stderr, "nepenc: %s: %s\n", err.file[0] ? err.file : c.model, err.msg);
	return np_exit_code(st);
}
