/*
 * spool.c - a temp file written and read back sequentially through one
 * fixed buffer, so that a change of any size is held on disk, not in
 * memory (txn.c). The file has no name: O_TMPFILE in STORE/tmp (nothing
 * is left behind by a crash), or a memfd for the memory backend.
 *
 * Failpoints: "txn.spool.open", "txn.spool.write", "txn.spool.read".
 */
#include "store_i.h"
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SPOOL_BUF (256u << 10)

int spool_open(struct store *s, struct spool *sp)
{
	memset(sp, 0, sizeof(*sp));
	sp->io = s->io;
	sp->fd = -1;
	sp->buf = malloc(SPOOL_BUF);
	if (!sp->buf)
		return -ENOMEM;
	/* near the stages; or, where the backend has no such file
	   (-ENOTSUP, which is -EOPNOTSUPP) or the file system no O_TMPFILE
	   (-EOPNOTSUPP, -EISDIR), a memfd */
	if (store_journaled(s))
		(void)s->be->ops->spool_new(s->be, &sp->fd);
	if (!store_journaled(s) || sp->fd == -EOPNOTSUPP || sp->fd == -EISDIR) {
		sp->fd = memfd_create("recfs-txn", MFD_CLOEXEC);
		sp->fd = sp->fd < 0 ? -errno : sp->fd;
	}
	if (sp->fd < 0) {
		int rc = sp->fd;

		spool_close(sp);
		return rc;
	}
	return 0;
}

void spool_close(struct spool *sp)
{
	if (sp->fd >= 0)
		close(sp->fd);
	free(sp->buf);
	memset(sp, 0, sizeof(*sp));
	sp->fd = -1;
}

static int spool_flush(struct spool *sp)
{
	ssize_t n;

	if (sp->reading || sp->len == 0)
		return 0;
	n = io_pwrite_all(sp->io, "txn.spool.write", sp->fd, sp->buf, sp->len,
			  (off_t)sp->off);
	if (n < 0)
		return (int)n;
	sp->off += sp->len;
	sp->len = 0;
	return 0;
}

int spool_write(struct spool *sp, const void *p, size_t n)
{
	const uint8_t *b = p;
	int rc;

	if (sp->reading)
		return -EINVAL;
	while (n) {
		size_t k = SPOOL_BUF - sp->len < n ? SPOOL_BUF - sp->len : n;

		memcpy(sp->buf + sp->len, b, k);
		sp->len += k;
		sp->size += k;
		b += k;
		n -= k;
		if (sp->len == SPOOL_BUF && (rc = spool_flush(sp)) != 0)
			return rc;
	}
	return 0;
}

int spool_rewind(struct spool *sp)
{
	int rc = spool_flush(sp);

	if (rc)
		return rc;
	sp->reading = true;
	sp->off = 0;
	sp->len = sp->pos = 0;
	return 0;
}

int spool_read(struct spool *sp, void *p, size_t n)
{
	uint8_t *b = p;

	if (!sp->reading)
		return -EINVAL;
	while (n) {
		size_t k;

		if (sp->pos == sp->len) {
			ssize_t got;

			sp->off += sp->len;
			sp->len = sp->pos = 0;
			got = io_pread_all(sp->io, "txn.spool.read", sp->fd,
					   sp->buf, SPOOL_BUF, (off_t)sp->off);
			if (got < 0)
				return (int)got;
			if (got == 0)
				return -EBADMSG; /* shorter than written */
			sp->len = (size_t)got;
		}
		k = sp->len - sp->pos < n ? sp->len - sp->pos : n;
		memcpy(b, sp->buf + sp->pos, k);
		sp->pos += k;
		b += k;
		n -= k;
	}
	return 0;
}

uint64_t spool_tell(const struct spool *sp)
{
	return sp->reading ? sp->off + sp->pos : sp->size;
}

bool spool_at_end(const struct spool *sp)
{
	return spool_tell(sp) >= sp->size;
}

int spool_pwrite(struct spool *sp, const void *p, size_t n, uint64_t at)
{
	ssize_t w;

	/* what the reader has buffered of it is not read again before the
	   next rewind, which drops the buffer */
	if (!sp->reading || at + n > sp->size)
		return -EINVAL;
	w = io_pwrite_all(sp->io, "txn.spool.write", sp->fd, p, n, (off_t)at);
	return w < 0 ? (int)w : 0;
}
