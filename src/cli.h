/* cli.h - nepenc's command line: one option table for every command.
 *
 *   nepenc MODEL -o OUT [options]        compile (the main job)
 *   nepenc inspect [--json] MODEL
 *   nepenc eval MODEL --data SPEC [options]
 *   nepenc finetune MODEL -o OUT --data SPEC [options]
 *   nepenc profile MODEL --data SPEC [options]
 *
 * np_cli_parse() fills an np_cli from argv, printing usage errors itself
 * (the parser is part of the program's front end, not the library), and
 * returns 0 to go on, 2 for a usage error, -1 when --help or --version
 * was printed.  Each command states which options it takes; another
 * option is a usage error naming the command.
 */
#ifndef NEPENC_CLI_H
#define NEPENC_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "data.h"
#include "status.h"
#include "train.h"

typedef enum np_command_id {
	NP_CMD_COMPILE,
	NP_CMD_INSPECT,
	NP_CMD_EVAL,
	NP_CMD_FINETUNE,
	NP_CMD_PROFILE
} np_command_id;

typedef struct np_cli {
	np_command_id command;
	const char *command_name;
	const char *model;
	const char *output;
	const char *passes;
	bool json;
	bool external_data;
	bool quiet, verbose;
	const char *data, *val, *test;
	bool no_dont_care;
	/* NEPENTHE (compile) */
	double zeta, theta, entropy_eps;
	int max_iter, backoff;
	int method;                  /* np_method */
	int criterion;               /* np_criterion */
	int fold;                    /* np_fold_policy */
	bool no_entropy_budget, no_neuron_selection;
	const char *report, *plot;
	np_data_opts dopts;
	int64_t batch;
	int threads;
	np_train_opts train;
} np_cli;

int np_cli_parse(np_cli *c, int argc, char **argv);
void np_cli_help(FILE *out);

#endif
