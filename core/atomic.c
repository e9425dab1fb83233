/* atomic.c - output files that appear whole or not at all (see atomic.h).
 *
 * Temporary names live in a fixed static table so that a signal handler can
 * walk it without taking locks or touching the heap: a slot's name (the
 * template mkstemp completes in place) is written before its flag says
 * "live", and the flag is cleared before the name is reused.  Opening and committing are for one thread at a time.
 */
#include "atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* Outputs open at once: the model, its .data file, a report or two. */
#define NP_ATOMIC_SLOTS 16

enum { SLOT_FREE = 0, SLOT_CLAIMED = 1, SLOT_LIVE = 2 };

static char np_atomic_names[NP_ATOMIC_SLOTS][PATH_MAX];
static volatile sig_atomic_t np_atomic_state[NP_ATOMIC_SLOTS];

struct np_atomic_file {
	FILE *fp;
	int slot;
	char *target;                  /* malloc'd copy */
};

static int claim_slot(void)
{
	for (int i = 0; i < NP_ATOMIC_SLOTS; i++) {
		if (np_atomic_state[i] == SLOT_FREE) {
			np_atomic_state[i] = SLOT_CLAIMED;
			return i;
		}
	}
	return -1;
}

static void release_slot(int slot)
{
	np_atomic_state[slot] = SLOT_FREE;
}

/* Split target into its folder (for messages and the temp name) and base. */
static void split_path(const char *target, char *dir, size_t dir_size,
                       const char **base)
{
	const char *slash = strrchr(target, '/');
	if (!slash) {
		snprintf(dir, dir_size, ".");
		*base = target;
	} else if (slash == target) {
		snprintf(dir, dir_size, "/");
		*base = slash + 1;
	} else {
		snprintf(dir, dir_size, "%.*s", (int)(slash - target), target);
		*base = slash + 1;
	}
}

/* Write the temp template into slot's buffer: "DIR/.BASE.XXXXXX". */
static int make_template(int slot, const char *target)
{
	const char *slash = strrchr(target, '/');
	size_t dir_len = slash ? (size_t)(slash - target) + 1 : 0;
	const char *base = target + dir_len;
	int n = snprintf(np_atomic_names[slot], PATH_MAX, "%.*s.%s.XXXXXX",
	                 (int)dir_len, target, base);
	return (n < 0 || n >= PATH_MAX) ? -1 : 0;
}

np_atomic_file *np_atomic_open(const char *target, np_error *err)
{
	char dir[PATH_MAX];
	const char *base;
	split_path(target, dir, sizeof dir, &base);

	np_atomic_file *f = calloc(1, sizeof *f);
	char *copy = f ? strdup(target) : NULL;
	if (!copy) {
		free(f);
		np_fail(err, NP_ERR_NOMEM, "out of memory opening %s", target);
		return NULL;
	}
	f->target = copy;
	f->slot = claim_slot();
	if (f->slot < 0) {
		np_fail(err, NP_ERR_IO, "cannot create a file in %s: "
		        "too many output files open", dir);
		goto fail;
	}
	if (*base == '\0') {
		np_fail(err, NP_ERR_IO, "cannot write %s: %s", target,
		        strerror(EISDIR));
		goto fail;
	}
	if (make_template(f->slot, target) < 0) {
		np_fail(err, NP_ERR_IO, "cannot create a file in %s: %s", dir,
		        strerror(ENAMETOOLONG));
		goto fail;
	}
	/* Live before the file exists: a signal that arrives as mkstemp's
	 * open() returns (the file there, its name in the slot, the flag not
	 * yet set) would otherwise leave the file behind.  Earlier, the
	 * handler unlinks a name that does not exist (the template, or
	 * mkstemp's try under way): harmless. */
	np_atomic_state[f->slot] = SLOT_LIVE;
	int fd = mkstemp(np_atomic_names[f->slot]);
	if (fd < 0) {
		np_atomic_state[f->slot] = SLOT_CLAIMED;
		np_fail(err, NP_ERR_IO, "cannot create a file in %s: %s", dir,
		        strerror(errno));
		goto fail;
	}
	f->fp = fdopen(fd, "wb");
	if (!f->fp) {
		int e = errno;
		close(fd);
		np_atomic_state[f->slot] = SLOT_CLAIMED;
		unlink(np_atomic_names[f->slot]);
		np_fail(err, NP_ERR_IO, "cannot create a file in %s: %s", dir,
		        strerror(e));
		goto fail;
	}
	return f;
fail:
	if (f->slot >= 0)
		release_slot(f->slot);
	free(f->target);
	free(f);
	return NULL;
}

FILE *np_atomic_stream(np_atomic_file *f)
{
	return f ? f->fp : NULL;
}

/* Drop the temp file and the handle; errno-neutral for the caller. */
static void discard(np_atomic_file *f)
{
	int e = errno;
	if (f->fp)
		fclose(f->fp);
	np_atomic_state[f->slot] = SLOT_CLAIMED;
	unlink(np_atomic_names[f->slot]);
	release_slot(f->slot);
	free(f->target);
	free(f);
	errno = e;
}

static mode_t current_umask(void)
{
	mode_t m = umask(022);
	umask(m);
	return m;
}

/* Make the rename itself durable; failure here loses nothing written. */
static void sync_dir_of(const char *target)
{
	char dir[PATH_MAX];
	const char *base;
	split_path(target, dir, sizeof dir, &base);
	int fd = open(dir, O_RDONLY);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

np_status np_atomic_commit(np_atomic_file *f, np_error *err)
{
	int fd = fileno(f->fp);
	int e = 0;
	if (fflush(f->fp) != 0)
		e = errno ? errno : EIO;
	else if (ferror(f->fp))
		e = EIO;           /* an earlier write failed; errno is gone */
	else if (fsync(fd) != 0 && errno != EINVAL)
		e = errno;
	else if (fchmod(fd, 0666 & ~current_umask()) != 0)
		e = errno;
	FILE *fp = f->fp;
	f->fp = NULL;
	if (fclose(fp) != 0 && !e)
		e = errno ? errno : EIO;
	if (!e && rename(np_atomic_names[f->slot], f->target) != 0)
		e = errno;
	if (e) {
		np_fail(err, NP_ERR_IO, "cannot write %s: %s", f->target,
		        strerror(e));
		discard(f);
		return NP_ERR_IO;
	}
	sync_dir_of(f->target);
	np_atomic_state[f->slot] = SLOT_CLAIMED;
	release_slot(f->slot);
	free(f->target);
	free(f);
	return NP_OK;
}

void np_atomic_abort(np_atomic_file *f)
{
	if (f)
		discard(f);
}

void np_atomic_cleanup_signal(void)
{
	for (int i = 0; i < NP_ATOMIC_SLOTS; i++) {
		if (np_atomic_state[i] == SLOT_LIVE) {
			unlink(np_atomic_names[i]);
			np_atomic_state[i] = SLOT_CLAIMED;
		}
	}
}
