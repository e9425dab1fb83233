/* json.c - streaming JSON writer; see json.h. */
#include "json.h"

#include <math.h>
#include <stdlib.h>

void np_json_init(np_json *j, FILE *out)
{
	j->out = out;
	j->depth = 0;
	j->need_comma[0] = false;
}

static void np_json_quote(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", out); break;
		case '\\': fputs("\\\\", out); break;
		case '\n': fputs("\\n", out); break;
		case '\r': fputs("\\r", out); break;
		case '\t': fputs("\\t", out); break;
		default:
			if (*p < 0x20)
				fprintf(out, "\\u%04x", *p);
			else
				fputc(*p, out);
		}
	}
	fputc('"', out);
}

static void np_json_key(np_json *j, const char *key)
{
	if (j->need_comma[j->depth])
		fputc(',', j->out);
	j->need_comma[j->depth] = true;
	if (key) {
		np_json_quote(j->out, key);
		fputc(':', j->out);
	}
}

static void np_json_open(np_json *j, const char *key, char c)
{
	np_json_key(j, key);
	fputc(c, j->out);
	if (j->depth + 1 < NP_JSON_MAX_DEPTH)
		j->depth++;
	j->need_comma[j->depth] = false;
	j->closer[j->depth] = c == '{' ? '}' : ']';
}

void np_json_begin_object(np_json *j, const char *key)
{
	np_json_open(j, key, '{');
}

void np_json_begin_array(np_json *j, const char *key)
{
	np_json_open(j, key, '[');
}

void np_json_end(np_json *j)
{
	if (j->depth == 0)
		return;
	fputc(j->closer[j->depth], j->out);
	j->depth--;
	if (j->depth == 0)
		fputc('\n', j->out);
}

void np_json_string(np_json *j, const char *key, const char *s)
{
	np_json_key(j, key);
	if (s)
		np_json_quote(j->out, s);
	else
		fputs("null", j->out);
}

void np_json_int(np_json *j, const char *key, int64_t v)
{
	np_json_key(j, key);
	fprintf(j->out, "%lld", (long long)v);
}

void np_json_double(np_json *j, const char *key, double v)
{
	np_json_key(j, key);
	if (isfinite(v)) {
		/* Shortest of %.15g and %.17g that reads back exactly. */
		char buf[32];
		snprintf(buf, sizeof buf, "%.15g", v);
		if (strtod(buf, NULL) != v)
			snprintf(buf, sizeof buf, "%.17g", v);
		fputs(buf, j->out);
	}
	else
		fputs("null", j->out);
}

void np_json_bool(np_json *j, const char *key, bool v)
{
	np_json_key(j, key);
	fputs(v ? "true" : "false", j->out);
}
