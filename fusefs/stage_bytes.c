/*
 * stage_bytes.c - moving bytes between the stages of drafts: an append
 * draft that turns into a patch puts its added bytes on top of a copy of
 * the record, and a commit of part of an append draft moves the rest into
 * a stage of its own (draft.c). Declared in fs_i.h.
 */
#include "fs_i.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

int fs_stage_append(struct store_stage *from, struct store_stage *to)
{
	char *buf = malloc(1 << 16);
	uint64_t at, off = 0;
	struct stat sb;
	ssize_t n = 0;

	if (!buf)
		return -ENOMEM;
	if (fstat(store_stage_fd(to), &sb) < 0) {
		free(buf);
		return -errno;
	}
	at = (uint64_t)sb.st_size;
	while ((n = store_stage_pread(from, buf, 1 << 16, off)) > 0) {
		ssize_t w = store_stage_write(to, buf, (size_t)n, at + off);

		if (w < 0) {
			n = w;
			break;
		}
		off += (uint64_t)n;
	}
	free(buf);
	return n < 0 ? (int)n : 0;
}

int fs_stage_split(struct store *s, struct store_stage *st, uint64_t at,
		   struct store_stage **tail)
{
	char buf[1 << 14];
	struct stat sb;
	uint64_t off = 0;
	ssize_t n = 0;
	int rc;

	*tail = NULL;
	if (fstat(store_stage_fd(st), &sb) < 0)
		return -errno;
	if (at >= (uint64_t)sb.st_size)
		return 0;
	rc = store_stage_new(s, tail);
	while (rc == 0 && at + off < (uint64_t)sb.st_size) {
		n = store_stage_pread(st, buf, sizeof(buf), at + off);
		if (n <= 0)
			rc = n < 0 ? (int)n : -EIO;
		else if ((n = store_stage_write(*tail, buf, (size_t)n, off)) <
			 0)
			rc = (int)n;
		else
			off += (uint64_t)n;
	}
	if (rc == 0)
		rc = store_stage_truncate(st, at);
	return rc;
}
