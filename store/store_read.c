/*
 * store_read.c - reading records: readers that open a record's content
 * consistently with the index (store_reader_*), whole contents
 * (store_get), metadata (store_stat, with the hash computed on demand),
 * and xattr reads (changes are in commit.c). A file found on disk that
 * the index does not know (adopted, or changed outside recfs) is taken
 * as it is.
 */
#include "store_i.h"
#include "id.h"
#include "io.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct store_reader {
	struct store *s;
	int fd;
	struct store_meta meta;
};

/* A file not (or no longer) matching the index: take it as it is. mu held.
   Returns the entry or NULL on ENOMEM. */
static struct entry *adopt_locked(struct store *s, const char *id,
				  struct entry *e, const struct stat *st)
{
	if (!e)
		e = idx_add(&s->ix, id, strlen(id));
	if (!e)
		return NULL;
	if (e->meta.version == 0) {
		/* never seen: an adopted plain file is version 1 */
		e->meta.version = 1;
		e->meta.hash_valid = false;
	} else if (e->ino && e->meta.size != (uint64_t)st->st_size) {
		/* a note on a read that succeeds: nothing to report to */
		rlog_warn("record %s: changed outside recfs (size %llu, "
			  "expected %llu); run recfsctl verify",
			  id, (unsigned long long)st->st_size,
			  (unsigned long long)e->meta.size);
		e->meta.hash_valid = false;
	}
	if (e->meta.size != (uint64_t)st->st_size || e->ino == 0) {
		if (!e->meta.revision) {
			/* an adopted file keeps what it had on disk */
			e->meta.mtime = st->st_mtim;
			e->meta.mode = st->st_mode & 07777;
			e->meta.uid = st->st_uid;
			e->meta.gid = st->st_gid;
		}
		e->meta.size = (uint64_t)st->st_size;
	}
	e->ino = (uint64_t)st->st_ino;
	return e;
}

/*
 * Is the file we opened (`st`) still the one at `id`? Called with mu held
 * and the entry not busy, so no commit can replace it meanwhile.
 */
static bool still_there(struct store *s, const char *id, const struct stat *st)
{
	struct stat now;

	return s->be->ops->stat(s->be, id, &now) == 0 &&
	       now.st_ino == st->st_ino && now.st_dev == st->st_dev;
}

/*
 * An own_commit backend (etcd) keeps every version under its own name:
 * the version the index knows now is read, whatever commit is in flight
 * (it becomes current only when the index is updated).
 */
static int open_by_version(struct store *s, const char *id, int *fdp,
			   struct store_meta *meta)
{
	struct entry *e;
	struct stat st;
	bool live;

	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, id, strlen(id));
	live = e && !e->meta.deleted && e->meta.version;
	if (live)
		*meta = e->meta;
	pthread_mutex_unlock(&s->mu);
	if (!live)
		return s->be->ops->stat(s->be, id, &st) == 0 ? -EISDIR
							     : -ENOENT;
	return s->be->ops->open_version(s->be, id, meta->version, fdp, NULL);
}

/*
 * Open `id`'s content and find its metadata, consistently: the inode we
 * opened must be the one the index knows. If a commit renamed a new file
 * into place but has not updated the index yet, wait for it and retry.
 */
static int open_consistent(struct store *s, const char *id, int *fdp,
			   struct store_meta *meta)
{
	store_wait_pending(s, id);
	for (;;) {
		struct entry *e;
		struct stat st;
		int fd = -1, rc;

		rc = s->be->ops->open(s->be, id, &fd);
		if (rc)
			return rc;
		if (fstat(fd, &st) < 0) {
			rc = -errno;
			close(fd);
			return rc;
		}
		pthread_mutex_lock(&s->mu);
		e = idx_find(&s->ix, id, strlen(id));
		if (e && e->busy && e->pending_ino == (uint64_t)st.st_ino) {
			store_wait_idle(s, e);
			pthread_mutex_unlock(&s->mu);
			close(fd);
			continue;
		}
		if (e && e->meta.deleted) {
			rc = -ENOENT;
			if (e->busy) {
				store_wait_idle(s, e);
				rc = -EAGAIN;
			}
		} else if (!e || e->ino != (uint64_t)st.st_ino) {
			if (e && e->busy) {
				store_wait_idle(s, e);
				rc = -EAGAIN;
			} else if (e && e->ino && !still_there(s, id, &st)) {
				/* a commit replaced the file after we opened
				   it: ours is stale, not "changed outside" */
				rc = -EAGAIN;
			} else if (!adopt_locked(s, id, e, &st)) {
				rc = -ENOMEM;
			}
		}
		if (rc == 0)
			*meta = idx_find(&s->ix, id, strlen(id))->meta;
		pthread_mutex_unlock(&s->mu);
		if (rc == -EAGAIN) {
			close(fd);
			continue;
		}
		if (rc) {
			close(fd);
			return rc;
		}
		*fdp = fd;
		return 0;
	}
}

int store_reader_open(struct store *s, const char *id,
		      struct store_reader **out)
{
	struct store_reader *r;
	int rc;

	*out = NULL;
	rc = id_check(id);
	if (rc)
		return rc;
	if (s->broken)
		return s->broken;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->s = s;
	if (s->be->own_commit)
		rc = open_by_version(s, id, &r->fd, &r->meta);
	else
		rc = open_consistent(s, id, &r->fd, &r->meta);
	if (rc) {
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

const struct store_meta *store_reader_meta(const struct store_reader *r)
{
	return &r->meta;
}

int store_reader_fd(const struct store_reader *r)
{
	return r->fd;
}

ssize_t store_reader_pread(struct store_reader *r, void *buf, size_t len,
			   off_t off)
{
	return io_pread_all(r->s->io, "read.pread", r->fd, buf, len, off);
}

void store_reader_free(struct store_reader *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	free(r);
}

int store_get(struct store *s, const char *id, void **buf, size_t *len,
	      struct store_meta *meta)
{
	struct store_reader *r = NULL;
	uint8_t *p = NULL;
	ssize_t n;
	int rc;

	rc = store_reader_open(s, id, &r);
	if (rc)
		return rc;
	p = malloc(r->meta.size ? r->meta.size : 1);
	if (!p) {
		rc = -ENOMEM;
		goto out;
	}
	n = store_reader_pread(r, p, r->meta.size, 0);
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	*buf = p;
	*len = (size_t)n;
	p = NULL;
	if (meta)
		*meta = r->meta;
out:
	free(p);
	store_reader_free(r);
	return rc;
}

/* Compute and keep the hash of an adopted file (or one changed outside). */
static int fill_hash(struct store *s, const char *id, struct store_meta *meta)
{
	struct store_reader *r = NULL;
	struct entry *e;
	uint8_t hash[16];
	struct stat st;
	uint64_t size;
	int rc;

	rc = store_reader_open(s, id, &r);
	if (rc)
		return rc;
	rc = store_hash_fd(s, r->fd, hash, &size);
	if (rc == 0 && fstat(r->fd, &st) < 0)
		rc = -errno;
	if (rc)
		goto out;
	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, id, strlen(id));
	if (e && e->ino == (uint64_t)st.st_ino && !e->busy) {
		memcpy(e->meta.hash, hash, 16);
		e->meta.size = size;
		e->meta.hash_valid = true;
		*meta = e->meta;
	} else {
		*meta = r->meta;
		memcpy(meta->hash, hash, 16);
		meta->hash_valid = true;
	}
	pthread_mutex_unlock(&s->mu);
out:
	store_reader_free(r);
	return rc;
}

int store_stat(struct store *s, const char *id, struct store_meta *meta,
	       bool want_hash)
{
	struct entry *e;
	struct stat st;
	int rc;

	rc = id_check(id);
	if (rc)
		return rc;
	store_wait_pending(s, id);
	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, id, strlen(id));
	if (e && !e->meta.deleted && e->meta.version) {
		*meta = e->meta;
		pthread_mutex_unlock(&s->mu);
		goto hash;
	}
	pthread_mutex_unlock(&s->mu);
	rc = s->be->ops->stat(s->be, id, &st);
	if (rc)
		return rc;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	if (e)
		return -ENOENT; /* tombstone: the file is on its way out */
	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, id, strlen(id));
	if (!e || !e->meta.version)
		e = adopt_locked(s, id, e, &st);
	if (e)
		*meta = e->meta;
	pthread_mutex_unlock(&s->mu);
	if (!e)
		return -ENOMEM;
hash:
	if (want_hash && !meta->hash_valid)
		return fill_hash(s, id, meta);
	return 0;
}

int store_last_version(struct store *s, const char *id, uint64_t *version)
{
	struct entry *e;

	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, id, strlen(id));
	*version = e ? e->meta.version : 0;
	pthread_mutex_unlock(&s->mu);
	return *version ? 0 : -ENOENT;
}

ssize_t store_xattr_get(struct store *s, const char *id, const char *name,
			void *value, size_t size)
{
	struct store_meta meta;
	const uint8_t *v;
	struct entry *e;
	ssize_t rc;
	size_t n;

	rc = store_stat(s, id, &meta, false);
	if (rc)
		return rc;
	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, id, strlen(id));
	rc = e ? xa_get(e->xa, e->xa_len, name, &v, &n) : -ENODATA;
	if (rc == 0) {
		if (size && n > size) {
			rc = -ERANGE;
		} else {
			if (size)
				memcpy(value, v, n);
			rc = (ssize_t)n;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

ssize_t store_xattr_list(struct store *s, const char *id, char *list,
			 size_t size)
{
	struct store_meta meta;
	struct entry *e;
	ssize_t rc;

	rc = store_stat(s, id, &meta, false);
	if (rc)
		return rc;
	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, id, strlen(id));
	rc = e ? xa_list(e->xa, e->xa_len, list, size) : 0;
	pthread_mutex_unlock(&s->mu);
	return rc;
}
