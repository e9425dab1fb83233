/* fuzz_config.c - libFuzzer target: the run configuration reader (XML,
 * RelaxNG) through the command line, as nepenc reads it: --config FILE,
 * then the settings applied to the option table. */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* GNU getopt keeps state between calls: optind = 0 starts afresh. */
static void fz_reset_getopt(void)
{
	static char *av[] = {"x", NULL};
	optind = 0;
	opterr = 0;
	getopt(1, av, "");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[512];
	fz_file(path, sizeof path, "conf.xml", data, size);
	char *argv[] = {"nepenc", "eval", "--config", path, "model.onnx", NULL};
	fz_reset_getopt();
	np_cli c;
	np_cli_parse(&c, 5, argv);
	np_cli_free(&c);
	char *argv2[] = {"nepenc", "model.onnx", "-o", "out.onnx", "--config",
	                 path, NULL};
	fz_reset_getopt();
	np_cli_parse(&c, 6, argv2);
	np_cli_free(&c);
	return 0;
}
