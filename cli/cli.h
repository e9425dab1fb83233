/* cli.h - nepenc's command line: one option table for every command.
 *
 *   nepenc MODEL -o OUT [options]        compile (the main job)
 *   nepenc inspect [--json] MODEL
 *   nepenc eval MODEL --data SPEC [options]
 *   nepenc finetune MODEL -o OUT --data SPEC [options]
 *   nepenc profile MODEL --data SPEC [options]
 *
 * np_cli_parse() fills an np_cli from argv and the run configuration
 * file, printing usage errors itself (the parser is part of the program's
 * front end, not the library), and returns 0 to go on, 2 for a usage
 * error, -1 when --help or --version was printed.  Each command states
 * which options it takes; another option is a usage error naming the
 * command (a setting of the configuration file that the command does not
 * take is ignored: one file serves every command of a pipeline).
 */
#ifndef NEPENC_CLI_H
#define NEPENC_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "data.h"
#include "ir.h"
#include "runconfig.h"
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
	int easier_map;              /* np_easier_map: --easier-map */
	double min_live;             /* --min-live (0: off) */
	const char *report, *plot;
	np_data_opts dopts;
	int64_t batch;
	int threads;
	bool bf16;                   /* --precision bf16 */
	np_train_opts train;
	/* Set by a flag or the run configuration: --lr, --weight-decay
	 * (AdamW's defaults otherwise), --momentum or --nesterov (SGD only),
	 * --beta1, --beta2 or --adam-eps (AdamW only). */
	bool lr_set, wd_set, sgd_set, adam_set;
	/* The run configuration (DESIGN.md section 8): --config FILE, else
	 * MODEL.nepenc.xml, else ./nepenc.xml; conf.path is NULL when none
	 * was read (inspect never reads one).  Flags override it. */
	const char *config;
	np_runconfig conf;
	/* Dependency output (-MD, -MF FILE, -MT TARGET, --depfile FILE):
	 * depfile NULL = none; dep_target NULL = the -o path. */
	const char *depfile;
	const char *dep_target;
	/* With a depfile: where np_cli_load_model() records the files the
	 * command read (main.c owns it); NULL otherwise. */
	struct np_deps *deps;
	np_arena *arena;             /* strings made while parsing */
} np_cli;

/* np_cli_free() must be called after np_cli_parse(), whatever it
 * returned. */
int np_cli_parse(np_cli *c, int argc, char **argv);
void np_cli_free(np_cli *c);
void np_cli_help(FILE *out);

#endif
