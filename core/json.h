/* json.h - a small streaming JSON writer for --json reports.
 *
 * Commas and nesting are tracked for the caller:
 *   np_json j; np_json_init(&j, stdout);
 *   np_json_begin_object(&j, NULL);
 *   np_json_int(&j, "nodes", 13);
 *   np_json_begin_array(&j, "layers"); ... np_json_end(&j);
 *   np_json_end(&j);                      (prints a final newline)
 * A NULL key is for array elements and the top level.
 */
#ifndef NEPENC_JSON_H
#define NEPENC_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define NP_JSON_MAX_DEPTH 32

typedef struct np_json {
	FILE *out;
	int depth;
	bool need_comma[NP_JSON_MAX_DEPTH];
	char closer[NP_JSON_MAX_DEPTH];     /* '}' or ']' per open level */
} np_json;

void np_json_init(np_json *j, FILE *out);
void np_json_begin_object(np_json *j, const char *key);
void np_json_begin_array(np_json *j, const char *key);
void np_json_end(np_json *j);
void np_json_string(np_json *j, const char *key, const char *s);
void np_json_int(np_json *j, const char *key, int64_t v);
/* Non-finite numbers are written as null. */
void np_json_double(np_json *j, const char *key, double v);
void np_json_bool(np_json *j, const char *key, bool v);

#endif
