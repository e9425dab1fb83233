/* atomic.h - output files that appear whole or not at all.
 *
 * np_atomic_open() creates "DIR/.NAME.XXXXXX" beside the target and
 * registers it; np_atomic_commit() fsyncs, closes and renames it over the
 * target; np_atomic_abort() closes and unlinks it.  A SIGINT/SIGTERM
 * handler installed by main calls np_atomic_cleanup_signal(), which only
 * unlinks the registered temporary names (async-signal-safe).
 */
#ifndef NEPENC_ATOMIC_H
#define NEPENC_ATOMIC_H

#include <stdio.h>

#include "status.h"

typedef struct np_atomic_file np_atomic_file;

np_atomic_file *np_atomic_open(const char *target, np_error *err);
FILE *np_atomic_stream(np_atomic_file *f);
np_status np_atomic_commit(np_atomic_file *f, np_error *err);
void np_atomic_abort(np_atomic_file *f);
void np_atomic_cleanup_signal(void);

#endif
