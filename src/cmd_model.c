/* cmd_model.c - the commands that need no data: inspect, and compile
 * (for now: --passes none, the model written back through the IR). */
#include "commands.h"

#include <stdio.h>

#include "inspect.h"
#include "onnx_io.h"

np_status np_cmd_inspect(const np_cli *c, np_error *err)
{
	np_model *m = np_onnx_load(c->model, err);
	if (!m)
		return err->status;
	np_status st = np_inspect(m, stdout, c->json, err);
	np_model_free(m);
	return st;
}

np_status np_cmd_compile(const np_cli *c, np_error *err)
{
	np_model *m = np_onnx_load(c->model, err);
	if (!m)
		return err->status;
	np_save_opts so = {.external_data = c->external_data};
	np_status st = np_onnx_save(m, c->output, &so, err);
	if (st != NP_OK && !err->file[0])
		snprintf(err->file, sizeof err->file, "%s", c->output);
	np_model_free(m);
	return st;
}
