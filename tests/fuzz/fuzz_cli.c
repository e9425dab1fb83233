/* fuzz_cli.c - libFuzzer target: the command-line parser.  The input is
 * argv[1..] separated by NUL bytes.  Run configurations are not read
 * (the fuzzer would be steering file names): --config FILE is dropped.
 * Run it where there is no nepenc.xml (the build folder): a chdir()
 * here would break libFuzzer's relative corpus paths. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	char *buf = malloc(size + 1);
	char *argv[66];
	int argc = 0;
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	argv[argc++] = "nepenc";
	for (char *p = buf; p < buf + size && argc < 64; p += strlen(p) + 1) {
		if (!strncmp(p, "--config", 8) || !strcmp(p, "--help") ||
		    !strcmp(p, "-h") || !strcmp(p, "--version") || !strcmp(p, "-V"))
			continue;
		argv[argc++] = p;
	}
	argv[argc] = NULL;
	static char *av[] = {"x", NULL};
	optind = 0;
	opterr = 0;
	getopt(1, av, "");
	np_cli c;
	np_cli_parse(&c, argc, argv);
	np_cli_free(&c);
	free(buf);
	return 0;
}
