/*
 * store_stage.c - stages, the private temp files that become a record's
 * next content at commit: made, copied from a record, read and written
 * through the store's I/O shim (failpoints "stage.read", "stage.write",
 * "stage.copy", "stage.writeback"), hashed as in-order writes arrive so
 * that a commit need not read them again; and the content hash (xxh3-128)
 * of a file.
 */
#include "store_i.h"
#include "err.h"
#include "io.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

void store_hash_format(const uint8_t hash[16], char buf[64])
{
	static const char hex[] = "0123456789abcdef";
	char *p = buf + sprintf(buf, "xxh3-128:");

	for (int i = 0; i < 16; i++) {
		*p++ = hex[hash[i] >> 4];
		*p++ = hex[hash[i] & 15];
	}
	*p = '\0';
}

static int hash_fd(struct io *io, int fd, uint8_t hash[16], uint64_t *size)
{
	enum { CHUNK = 256 * 1024 };
	XXH3_state_t *st = XXH3_createState();
	uint8_t *buf = malloc(CHUNK);
	uint64_t off = 0;
	int rc = 0;

	if (!st || !buf) {
		rc = -ENOMEM;
		goto out;
	}
	XXH3_128bits_reset(st);
	for (;;) {
		ssize_t n = io_pread_all(io, "hash.read", fd, buf, CHUNK,
					 (off_t)off);

		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		if (n == 0)
			break;
		XXH3_128bits_update(st, buf, (size_t)n);
		off += (uint64_t)n;
	}
	XXH128_canonicalFromHash((XXH128_canonical_t *)hash,
				 XXH3_128bits_digest(st));
	if (size)
		*size = off;
out:
	free(buf);
	XXH3_freeState(st);
	return rc;
}

int store_hash_fd(struct store *s, int fd, uint8_t hash[16], uint64_t *size)
{
	return hash_fd(s->io, fd, hash, size);
}

/* RECFS_PARANOID: the running hash must be the content's. */
static void check_running_hash(struct store_stage *st, const uint8_t hash[16],
			       uint64_t size)
{
	uint8_t full[16];
	uint64_t n;

	if (hash_fd(NULL, st->fd, full, &n) == 0 &&
	    (n != size || memcmp(full, hash, 16) != 0)) {
		/* a bug, not an error: logged, as nothing returns */
		rlog_err("stage %s: running hash of %" PRIu64
			 " bytes differs from its content (%" PRIu64
			 " bytes): a change bypassed store_stage_write",
			 st->name, size, n);
		abort();
	}
}

int store_stage_hash(struct store *s, struct store_stage *st, uint8_t hash[16],
		     uint64_t *size)
{
	struct stat sb;

	if (st->hash_off || fstat(st->fd, &sb) < 0 ||
	    (uint64_t)sb.st_size != st->hashed)
		return store_hash_fd(s, st->fd, hash, size);
	XXH128_canonicalFromHash((XXH128_canonical_t *)hash,
				 st->hs ? XXH3_128bits_digest(st->hs)
					: XXH3_128bits(NULL, 0));
	*size = st->hashed;
	if (s->paranoid)
		check_running_hash(st, hash, *size);
	return 0;
}

int store_stage_new(struct store *s, struct store_stage **out)
{
	struct store_stage *st = calloc(1, sizeof(*st));
	int rc;

	*out = NULL;
	if (!st)
		return -ENOMEM;
	st->s = s;
	st->fd = -1;
	rc = s->be->ops->stage_new(s->be, st);
	if (rc) {
		free(st);
		return rc;
	}
	*out = st;
	return 0;
}

int store_stage_of(struct store *s, const char *point, const void *buf,
		   size_t len, struct store_stage **out)
{
	ssize_t n;
	int rc = store_stage_new(s, out);

	if (rc)
		return rc;
	n = io_pwrite_all(s->io, point, (*out)->fd, buf, len, 0);
	if (n < 0) {
		store_stage_free(*out);
		*out = NULL;
		return (int)n;
	}
	return 0;
}

int store_stage_copy(struct store *s, const char *id, uint64_t *base,
		     struct store_stage **out)
{
	struct store_reader *r = NULL;
	struct store_stage *st = NULL;
	ssize_t n;
	int rc;

	*out = NULL;
	*base = 0;
	rc = store_reader_open(s, id, &r);
	if (rc && rc != -ENOENT)
		return rc;
	rc = store_stage_new(s, &st);
	if (rc)
		goto out;
	if (r) {
		n = io_copy_fd(s->io, "stage.copy", store_reader_fd(r), st->fd);
		if (n < 0) {
			rc = rerr_set((int)n,
				      "record %s: copy into stage %s: %s", id,
				      st->name, strerror((int)-n));
			goto out;
		}
		*base = store_reader_meta(r)->version;
	}
	*out = st;
	st = NULL;
out:
	store_stage_free(st);
	store_reader_free(r);
	return rc;
}

int store_stage_fd(const struct store_stage *st)
{
	return st->fd;
}

/* Bytes [off, off + n) of st now hold buf. */
static void stage_hash_update(struct store_stage *st, const void *buf, size_t n,
			      uint64_t off)
{
	if (st->hash_off)
		return;
	if (off != st->hashed) {
		st->hash_off = true;
		return;
	}
	if (!st->hs) {
		st->hs = XXH3_createState();
		if (!st->hs || XXH3_128bits_reset(st->hs) != XXH_OK) {
			st->hash_off = true;
			return;
		}
	}
	if (XXH3_128bits_update(st->hs, buf, n) != XXH_OK) {
		st->hash_off = true;
		return;
	}
	st->hashed += n;
}

/*
 * A stage written in order gets its writeback started every
 * STAGE_WRITEBACK bytes, without waiting for it, so that the fsync at
 * commit finds most of a big content already on its way to the disk
 * (the disk works while the writer still copies) instead of all of it.
 */
#define STAGE_WRITEBACK (8u << 20)

/* The in-order write of n bytes just hashed ended at st->hashed. */
static void stage_writeback(struct store_stage *st, size_t n)
{
	uint64_t from = (st->hashed - n) / STAGE_WRITEBACK * STAGE_WRITEBACK;
	uint64_t to = st->hashed / STAGE_WRITEBACK * STAGE_WRITEBACK;

	/* a hint: durability still comes from the fsync at commit, so a
	   failure here (or a stage that is not a file) changes nothing */
	if (to > from && io_point(st->s->io, "stage.writeback") == 0)
		(void)sync_file_range(st->fd, (off_t)from, (off_t)(to - from),
				      SYNC_FILE_RANGE_WRITE);
}

ssize_t store_stage_pread(struct store_stage *st, void *buf, size_t len,
			  uint64_t off)
{
	if (off > INT64_MAX)
		return -EINVAL;
	return io_pread_all(st->s->io, "stage.read", st->fd, buf, len,
			    (off_t)off);
}

ssize_t store_stage_write(struct store_stage *st, const void *buf, size_t len,
			  uint64_t off)
{
	ssize_t n = io_pwrite_all(st->s->io, "stage.write", st->fd, buf, len,
				  (off_t)off);

	if (n < 0) {
		st->hash_off = true; /* some of it may be there */
		return n;
	}
	stage_hash_update(st, buf, (size_t)n, off);
	if (!st->hash_off)
		stage_writeback(st, (size_t)n);
	return n;
}

int store_stage_truncate(struct store_stage *st, uint64_t size)
{
	if (size > INT64_MAX)
		return -EFBIG;
	if (ftruncate(st->fd, (off_t)size) < 0) {
		st->hash_off = true;
		return -errno;
	}
	if (size == 0) { /* empty: nothing hashed, nothing out of order */
		st->hashed = 0;
		st->hash_off = false;
		if (st->hs)
			XXH3_128bits_reset(st->hs);
	} else if (size != st->hashed) {
		st->hash_off = true;
	}
	return 0;
}

void store_stage_free(struct store_stage *st)
{
	if (!st)
		return;
	st->s->be->ops->stage_drop(st->s->be, st);
	XXH3_freeState(st->hs);
	free(st);
}
