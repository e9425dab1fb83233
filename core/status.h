/* status.h - how errors flow up in nepenc.
 *
 * A function that can fail returns np_status (or NULL) and fills the
 * caller's np_error with one line saying what went wrong, naming the node,
 * op, tensor or offset where known.  Only main() prints it, prefixed with
 * "nepenc: FILE: ", and picks the exit status (np_exit_code()).  Library
 * code never prints errors and never exits.
 */
#ifndef NEPENC_STATUS_H
#define NEPENC_STATUS_H

#include <stddef.h>

typedef enum np_status {
	NP_OK = 0,
	NP_ERR_IO,            /* cannot open, read or write a file */
	NP_ERR_FORMAT,        /* not ONNX / not the data format / truncated */
	NP_ERR_INVALID,       /* well-formed but inconsistent (graph, dims) */
	NP_ERR_UNSUPPORTED,   /* valid but outside what nepenc does */
	NP_ERR_NOMEM,
	NP_ERR_USAGE,         /* bad flags or configuration: exit 2 */
	NP_ERR_INTERRUPTED    /* SIGINT/SIGTERM */
} np_status;

typedef struct np_error {
	np_status status;
	char msg[1024];
	/* The file the error is about when it is not the one the command
	 * was given (a data file, an external-data file); main prints it
	 * instead.  Empty otherwise. */
	char file[512];
} np_error;

/* Record an error (first one wins: a later call does not overwrite a
 * message already set) and return st. */
np_status np_fail(np_error *err, np_status st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Same, naming the file the error is about. */
np_status np_fail_file(np_error *err, np_status st, const char *file,
                       const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void np_error_clear(np_error *err);
/* 1 for a failed run, 2 for a usage error, 130/143 style for signals. */
int np_exit_code(np_status st);

#endif
