/* cmd_model.c - the command that needs no data: inspect. */
#include "commands.h"

#include <stdio.h>

#include "inspect.h"
#include "onnx_io.h"
#include "session.h"

np_status np_cmd_inspect(const np_cli *c, np_error *err)
{
	np_model *m = np_cli_load_model(c, err);
	if (!m)
		return err->status;
	np_status st = np_inspect(m, stdout, c->json, err);
	np_model_free(m);
	return st;
}
