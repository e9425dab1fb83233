/* status.c - error recording; see status.h. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>

np_status np_fail(np_error *err, np_status st, const char *fmt, ...)
{
	if (err && err->status == NP_OK) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		va_end(ap);
		err->status = st;
	}
	return st;
}

np_status np_fail_file(np_error *err, np_status st, const char *file,
                       const char *fmt, ...)
{
	if (err && err->status == NP_OK) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		va_end(ap);
		snprintf(err->file, sizeof err->file, "%s", file ? file : "");
		err->status = st;
	}
	return st;
}

void np_error_clear(np_error *err)
{
	err->status = NP_OK;
	err->msg[0] = '\0';
	err->file[0] = '\0';
}

int np_exit_code(np_status st)
{
	switch (st) {
	case NP_OK: return 0;
	case NP_ERR_USAGE: return 2;
	case NP_ERR_INTERRUPTED: return 130;
	default: return 1;
	}
}
