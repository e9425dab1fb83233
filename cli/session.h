/* session.h - what every command that runs a model on data opens first:
 * the model, its runtime, and the shape facts the data is checked
 * against.
 *
 *   np_session s = {0};
 *   np_session_open(&s, cli, &err);            load + runtime
 *   np_session_data(&s, cli, cli->data, &d, &err);   load + check data
 *   ...
 *   np_session_close(&s);                      also after a failed open
 *
 * Commands that train untie the model before its runtime exists:
 *   np_session_load(&s, cli, &err);
 *   np_session_untie(&s, cli, log, &err);
 *   np_session_start(&s, cli, &err);
 */
#ifndef NEPENC_SESSION_H
#define NEPENC_SESSION_H

#include <stdint.h>

#include "cli.h"
#include "data.h"
#include "ir.h"
#include "progress.h"
#include "rt.h"
#include "status.h"

typedef struct np_session {
	np_model *m;
	np_rt *rt;
	const char *input;           /* the model's single input; NULL when
	                              * it has several (named arrays) */
	int64_t classes;             /* width of its [N, classes] output */
	np_progress eval_progress;   /* the runtime's evaluations */
} np_session;

/* Load c->model; with a depfile, record the files read (c->deps). */
np_model *np_cli_load_model(const np_cli *c, np_error *err);
/* Load c->model and find its input and class count. */
np_status np_session_load(np_session *s, const np_cli *c, np_error *err);
/* Build its runtime with c->threads threads and c's precision; its
 * evaluations draw progress unless c->quiet. */
np_status np_session_start(np_session *s, const np_cli *c, np_error *err);
/* np_session_load, then np_session_start. */
np_status np_session_open(np_session *s, const np_cli *c, np_error *err);
/* Before training, between load and start: give every parameter the
 * exporter stored once and recreated with Identity its own initializer
 * (passes/untie.c; log may be NULL). */
struct np_pass_log;
np_status np_session_untie(np_session *s, const np_cli *c,
                           struct np_pass_log *log, np_error *err);
/* Load a data spec with c's preprocessing and check it fits the model
 * (input shape; labels below the class count). */
np_status np_session_data(const np_session *s, const np_cli *c,
                          const char *spec, np_dataset *d, np_error *err);
void np_session_close(np_session *s);

#endif
