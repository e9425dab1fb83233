/* safeio.c - opening the files nepenc reads; see safeio.h. */
#include "safeio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_of(mode_t m)
{
	if (S_ISDIR(m))
		return "not a regular file (a folder)";
	if (S_ISFIFO(m))
		return "not a regular file (a FIFO)";
	if (S_ISCHR(m) || S_ISBLK(m))
		return "not a regular file (a device)";
	if (S_ISSOCK(m))
		return "not a regular file (a socket)";
	return "not a regular file";
}

int np_open_input(const char *path, int64_t *size, const char **why)
{
	/* O_NONBLOCK: opening a FIFO without a writer returns at once
	 * instead of waiting for one; O_NOCTTY: a terminal never becomes
	 * ours.  The flag stays set: it has no effect on a regular file
	 * (open(2)), the only kind returned, and clearing it cost two system
	 * calls per file, which counts in a folder of small images. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		*why = strerror(errno);
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		*why = strerror(errno);
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		*why = kind_of(st.st_mode);
		close(fd);
		return -1;
	}
	if (size)
		*size = (int64_t)st.st_size;
	return fd;
}

bool np_path_inside(const char *rel)
{
	if (rel[0] == '/')
		return false;
	long depth = 0;
	for (const char *p = rel; *p;) {
		size_t len = strcspn(p, "/");
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			if (--depth < 0)
				return false;
		} else if (len && !(len == 1 && p[0] == '.')) {
			depth++;
		}
		p += len;
		p += *p == '/';
	}
	return true;
}

uint8_t *np_read_input(const char *path, uint64_t max, size_t *len,
                       np_input_fail *how, const char **why)
{
	*how = NP_INPUT_IO;
	*len = 0;
	int64_t size;
	int fd = np_open_input(path, &size, why);
	if (fd < 0)
		return NULL;
	if ((uint64_t)size > max) {
		*how = NP_INPUT_TOO_BIG;
		*why = "file too large";
		close(fd);
		return NULL;
	}
	/* The size is a hint: the file may change while read.  One byte
	 * more than expected tells growth from the end. */
	size_t cap = (size_t)size + 2, n = 0;
	uint8_t *buf = malloc(cap);
	while (buf) {
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*why = strerror(errno);
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if ((uint64_t)n > max) {
			*how = NP_INPUT_TOO_BIG;
			*why = "file too large";
			goto fail;
		}
		if (n == cap - 1) {
			size_t nc = cap * 2 > max + 2 ? (size_t)max + 2 : cap * 2;
			uint8_t *nb = realloc(buf, nc);
			if (!nb)
				break;
			buf = nb;
			cap = nc;
		}
	}
	close(fd);
	if (!buf || n == cap - 1) {
		free(buf);
		*how = NP_INPUT_NOMEM;
		*why = "out of memory";
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
fail:
	free(buf);
	close(fd);
	return NULL;
}
