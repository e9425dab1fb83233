/* depfile.c - the dependency rule of a run; see depfile.h. */
#include "depfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "atomic.h"
#include "data.h"

void np_deps_init(np_deps *d)
{
	memset(d, 0, sizeof *d);
	d->arena = np_arena_new();
}

void np_deps_free(np_deps *d)
{
	np_arena_free(d->arena);
	memset(d, 0, sizeof *d);
}

/* FNV-1a. */
static unsigned np_path_hash(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* The slot of path: where it is, or the empty one it would go to. */
static int *np_deps_find(const np_deps *d, const char *path)
{
	unsigned mask = (unsigned)d->nslot - 1;
	for (unsigned i = np_path_hash(path) & mask;; i = (i + 1) & mask)
		if (!d->slot[i] || strcmp(d->v[d->slot[i] - 1], path) == 0)
			return &d->slot[i];
}

/* Keep the table at most half full. */
static void np_deps_rehash(np_deps *d)
{
	int n = d->nslot ? 2 * d->nslot : 64;
	d->slot = np_arena_alloc(d->arena, (size_t)n * sizeof *d->slot);
	memset(d->slot, 0, (size_t)n * sizeof *d->slot);
	d->nslot = n;
	for (int i = 0; i < d->n; i++)
		*np_deps_find(d, d->v[i]) = i + 1;
}

void np_deps_add(np_deps *d, const char *path)
{
	if (2 * (d->n + 1) > d->nslot)
		np_deps_rehash(d);
	int *slot = np_deps_find(d, path);
	if (*slot)
		return;
	*slot = d->n + 1;
	if (d->n == d->cap) {
		int cap = d->cap ? 2 * d->cap : 16;
		d->v = np_arena_grow(d->arena, d->v, (size_t)d->cap * sizeof *d->v,
		                     (size_t)cap * sizeof *d->v);
		d->cap = cap;
	}
	d->v[d->n++] = np_arena_strdup(d->arena, path);
}

/* ------------------------------------------------------------- model */

/* What the loader read: the file and its external data (np_model). */
void np_deps_add_model(np_deps *d, const np_model *m)
{
	if (m->path)
		np_deps_add(d, m->path);
	for (int i = 0; i < m->n_ext_files; i++)
		np_deps_add(d, m->ext_files[i]);
}

/* ------------------------------------------------------------ data files */

static void np_deps_add_cb(void *ctx, const char *path)
{
	np_deps_add(ctx, path);
}

/* The files data.c reads for the spec (np_data_files).  The run has
 * loaded the spec already, so an error here cannot happen in practice;
 * what was listed before it stays. */
void np_deps_add_spec(np_deps *d, const char *spec)
{
	np_error err = {0};
	if (spec)
		(void)np_data_files(spec, np_deps_add_cb, d, &err);
}

/* ------------------------------------------------------------ the rule */

/* As libcpp's munge(): backslashes before a space or tab are doubled and
 * the blank gets one more; '$' -> "$$"; '#' -> "\#". */
bool np_make_escape(const char *name, char *buf, size_t size)
{
	size_t k = 0, slashes = 0;
	for (const char *p = name; *p; p++) {
		char c = *p;
		if (c == '\n' || c == '\r')
			return false;
		if (k + slashes + 3 >= size)
			return false;
		if (c == ' ' || c == '\t') {
			for (; slashes; slashes--)
				buf[k++] = '\\';
			buf[k++] = '\\';
		} else if (c == '$') {
			buf[k++] = '$';
		} else if (c == '#') {
			buf[k++] = '\\';
		}
		slashes = c == '\\' ? slashes + 1 : 0;
		buf[k++] = c;
	}
	buf[k] = '\0';
	return true;
}

static np_status np_escaped(const char *name, char *buf, size_t size,
                            const char *file, np_error *err)
{
	if (np_make_escape(name, buf, size))
		return NP_OK;
	return np_fail_file(err, NP_ERR_UNSUPPORTED, file, "cannot name '%s' in a "
	                    "dependency rule (a newline in it, or too long)", name);
}

static np_status np_rule(FILE *f, const np_deps *d, const char *target,
                         const char *out, const char *file, np_error *err)
{
	char buf[4096 * 2 + 8];
	np_status st = NP_OK;
	if (!target) {
		st = np_escaped(out, buf, sizeof buf, file, err);
		target = buf;
	}
	if (st == NP_OK)
		fprintf(f, "%s:", target);
	for (int i = 0; st == NP_OK && i < d->n; i++) {
		st = np_escaped(d->v[i], buf, sizeof buf, file, err);
		if (st == NP_OK)
			fprintf(f, " %s%s", buf, i + 1 < d->n ? " \\\n" : "\n");
	}
	if (st == NP_OK && d->n == 0)
		fputc('\n', f);
	/* -MP: a file removed since must not stop make ("No rule to make
	 * target"); the model is left out as gcc leaves out the source. */
	for (int i = 1; st == NP_OK && i < d->n; i++) {
		st = np_escaped(d->v[i], buf, sizeof buf, file, err);
		if (st == NP_OK)
			fprintf(f, "\n%s:\n", buf);
	}
	return st;
}

np_status np_deps_write(const np_deps *d, const char *file, const char *target,
                        const char *out, np_error *err)
{
	np_atomic_file *af = np_atomic_open(file, err);
	if (!af) {
		if (!err->file[0])
			snprintf(err->file, sizeof err->file, "%s", file);
		return err->status;
	}
	np_status st = np_rule(np_atomic_stream(af), d, target, out, file, err);
	if (st != NP_OK) {
		np_atomic_abort(af);
		return st;
	}
	st = np_atomic_commit(af, err);
	if (st != NP_OK && !err->file[0])
		snprintf(err->file, sizeof err->file, "%s", file);
	return st;
}
