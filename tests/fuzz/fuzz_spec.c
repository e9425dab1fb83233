/* fuzz_spec.c - libFuzzer target: the data-spec parser (idx:, npy:,
 * cifar10:, pb:) and the file list it gives for dependency rules. */
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void count(void *ctx, const char *path)
{
	*(size_t *)ctx += strlen(path) + 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 8192)
		return 0;
	char *spec = malloc(size + 1);
	if (!spec)
		return 0;
	memcpy(spec, data, size);
	spec[size] = '\0';
	/* folder:DIR walks DIR's tree: "folder:/" would list the whole file
	 * system.  Its parsing is fuzz_image's and folder.test's business. */
	if (strncmp(spec, "folder:", 7) == 0) {
		free(spec);
		return 0;
	}
	size_t total = 0;
	np_error err = {0};
	np_data_files(spec, count, &total, &err);
	free(spec);
	return 0;
}
