/* arena.c - bump allocator owning the IR's small objects; see ir.h. */
#include "ir.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NP_ARENA_BLOCK (64 * 1024)

typedef struct np_block {
	struct np_block *next;
	size_t used, size;
	_Alignas(16) unsigned char data[];
} np_block;

struct np_arena {
	np_block *head;
};

static void *np_oom(size_t size);

/* Never NULL: failure goes to the OOM handler, as for np_arena_alloc. */
np_arena *np_arena_new(void)
{
	np_arena *a = calloc(1, sizeof(np_arena));
	return a ? a : np_oom(sizeof(np_arena));
}

void np_arena_free(np_arena *a)
{
	if (!a)
		return;
	for (np_block *b = a->head, *next; b; b = next) {
		next = b->next;
		free(b);
	}
	free(a);
}

/* Running out of memory while building the IR is not recoverable in any
 * useful way, so, as Redis's zmalloc does, allocation failure goes to a
 * handler that main() installs (it prints one line and exits); the
 * library itself never exits.  Without a handler: abort(). */
static void (*np_oom_handler)(size_t);

void np_set_oom_handler(void (*handler)(size_t size))
{
	np_oom_handler = handler;
}

static void *np_oom(size_t size)
{
	if (np_oom_handler)
		np_oom_handler(size);
	abort();
}

void *np_arena_alloc(np_arena *a, size_t size)
{
	size = (size + 15) & ~(size_t)15;
	np_block *b = a->head;
	if (!b || b->size - b->used < size) {
		size_t bsize = size > NP_ARENA_BLOCK / 4 ? size : NP_ARENA_BLOCK;
		b = malloc(sizeof(np_block) + bsize);
		if (!b)
			return np_oom(size);
		b->size = bsize;
		b->used = 0;
		/* Big blocks go behind the current one so it keeps filling. */
		if (a->head && bsize != NP_ARENA_BLOCK) {
			b->next = a->head->next;
			a->head->next = b;
		} else {
			b->next = a->head;
			a->head = b;
		}
	}
	void *p = b->data + b->used;
	b->used += size;
	memset(p, 0, size);
	return p;
}

void *np_arena_grow(np_arena *a, void *old, size_t old_size, size_t new_size)
{
	if (new_size <= old_size)
		return old;
	void *p = np_arena_alloc(a, new_size);
	if (p && old && old_size)
		memcpy(p, old, old_size);
	return p;
}

char *np_arena_strdup(np_arena *a, const char *s)
{
	return s ? np_arena_memdup(a, s, strlen(s) + 1) : NULL;
}

void *np_arena_memdup(np_arena *a, const void *p, size_t n)
{
	void *q = np_arena_alloc(a, n ? n : 1);
	if (n)
		memcpy(q, p, n);
	return q;
}

char *np_arena_printf(np_arena *a, const char *fmt, ...)
{
	va_list ap, ap2;
	va_start(ap, fmt);
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	size_t size = (size_t)(n < 0 ? 0 : n) + 1;
	char *s = np_arena_alloc(a, size);
	if (n > 0)
		vsnprintf(s, size, fmt, ap2);
	va_end(ap2);
	return s;
}
