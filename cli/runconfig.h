/* runconfig.h - the run configuration file (DESIGN.md section 8).
 *
 * An XML file, checked against data/nepenc-config.rng (compiled in), with
 * one element per long option of the command line:
 *
 *   <nepenc>
 *     <data>idx:train-images-idx3-ubyte.gz,train-labels-idx1-ubyte.gz</data>
 *     <zeta>0.5</zeta>
 *     <nesterov>true</nesterov>
 *   </nepenc>
 *
 * np_runconfig_load() parses and validates it and returns its settings in
 * document order, values trimmed, relative paths of data specs, output,
 * report, plot and depfile made relative to the current folder (they are
 * written relative to the file's folder).  Applying them (and letting flags
 * win) is the command line's business (cli.c).
 *
 * Named runconfig, not config: "config.h" is autoconf's header, and a
 * a config.h in cli/ would shadow it for every file in cli/.
 */
#ifndef NEPENC_RUNCONFIG_H
#define NEPENC_RUNCONFIG_H

#include <stdbool.h>

#include "ir.h"
#include "status.h"

typedef struct np_setting {
	const char *name;    /* the long option, e.g. "zeta" */
	const char *value;   /* trimmed text, paths rebased */
	int line;            /* of the element, for messages */
	/* An output path (output, report, plot, depfile) that is absolute
	 * or climbs out of the file's folder with "..", in a file that was
	 * not named by --config (see np_runconfig_load). */
	bool escapes;
} np_setting;

/* Everything below lives in the arena, freed by np_runconfig_free(). */
typedef struct np_runconfig {
	np_arena *arena;
	const char *path;    /* the file, as found */
	np_setting *v;
	int n;
} np_runconfig;

/* Read and validate PATH.  known: NULL-terminated names of the options the
 * program has, only used to word messages ("unknown setting <x>").
 * confine: the file was found rather than named (MODEL.nepenc.xml,
 * ./nepenc.xml): it may come with a model fetched from anywhere, so its
 * output paths are flagged (escapes) when they leave its folder, and
 * the caller refuses those it would use.  On
 * failure returns NP_ERR_USAGE (or NP_ERR_NOMEM), err->file is "PATH:LINE"
 * (or PATH when no line applies) and err->msg one line saying what is
 * wrong; rc is left empty. */
np_status np_runconfig_load(const char *path, const char *const *known,
                            bool confine, np_runconfig *rc, np_error *err);
void np_runconfig_free(np_runconfig *rc);

/* "dir/model.onnx" -> "dir/model.nepenc.xml" (a name without the .onnx
 * suffix gets ".nepenc.xml" appended), allocated in a. */
char *np_runconfig_beside(np_arena *a, const char *model);

/* PATH names a file (or something else that is not a folder): worth
 * trying to read as a configuration. */
bool np_runconfig_exists(const char *path);

#endif
