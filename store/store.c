/*
 * store.c - opening, closing and creating stores; reading records and
 * their metadata; namespaces. Changes are in commit.c, recovery and
 * snapshots in recover.c, verify in verify.c, the history in
 * store_hist.c.
 */
#include "store_i.h"
#include "util.h"
#include "format.h"
#include "history.h"
#include "id.h"
#include "io.h"
#include "jnl.h"
#include "lock.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define DEFAULT_CHECKPOINT_BYTES (64ull << 20)

const char *store_path(const struct store *s)
{
	return s->path;
}

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

/* ---- init --------------------------------------------------------------- */

/* Is `dirfd` empty but for the subdirectories a store creates? */
static int check_empty(int dirfd, const char *path)
{
	struct dirent *d;
	DIR *dir;
	int rc = util_opendir_fd(dirfd, &dir);

	if (rc)
		return rc;
	while ((d = readdir(dir)) != NULL) {
		const char *n = d->d_name;

		if (!strcmp(n, ".") || !strcmp(n, "..") ||
		    !strcmp(n, STORE_RECORDS_DIR) ||
		    !strcmp(n, STORE_JOURNAL_DIR) || !strcmp(n, STORE_TMP_DIR))
			continue;
		if (!strcmp(n, HIST_DIR) || !strcmp(n, HIST_DIR ".new"))
			continue; /* store_init makes it */
		rlog_err("%s: directory is not empty (found \"%s\"); "
			 "`recfsctl init --adopt %s` makes its files records",
			 path, n, path);
		rc = -ENOTEMPTY;
		break;
	}
	closedir(dir);
	return rc;
}

/* Move every top-level entry of `dirfd` that can be a record under
   records/ (one rename each, nothing is rewritten). */
static int adopt_files(int dirfd, const char *path)
{
	int recfd = -1, moved = 0;
	struct dirent *d;
	DIR *dir;
	int rc = util_opendir_fd(dirfd, &dir);

	if (rc)
		return rc;
	recfd = openat(dirfd, STORE_RECORDS_DIR,
		       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (recfd < 0) {
		rc = -errno;
		goto out;
	}
	while ((d = readdir(dir)) != NULL) {
		const char *n = d->d_name;
		size_t base;
		uint64_t v;

		if (!strcmp(n, ".") || !strcmp(n, "..") ||
		    !strcmp(n, STORE_RECORDS_DIR) ||
		    !strcmp(n, STORE_JOURNAL_DIR) || !strcmp(n, STORE_TMP_DIR))
			continue;
		if (id_component_forbidden(n, strlen(n)) ||
		    id_split_cond(n, strlen(n), &base, &v) != 0 ||
		    !strcmp(n, ".recfs") || !strcmp(n, FORMAT_FILE) ||
		    !strcmp(n, LOCK_FILE) || !strcmp(n, STORE_INDEX_FILE) ||
		    !strcmp(n, HIST_DIR) || !strcmp(n, HIST_DIR ".new") ||
		    !strcmp(n, HIST_INDEX_FILE)) {
			rlog_warn("%s/%s: not a valid record name; left "
				  "outside the store",
				  path, n);
			continue;
		}
		if (renameat(dirfd, n, recfd, n) < 0) {
			rc = -errno;
			rlog_err("%s/%s: cannot adopt: %s", path, n,
				 strerror(errno));
			goto out;
		}
		moved++;
	}
	if (moved && fsync(recfd) < 0)
		rc = -errno;
	rlog_info("%s: adopted %d top-level entries as records", path, moved);
out:
	if (recfd >= 0)
		close(recfd);
	closedir(dir);
	return rc;
}

int store_init(const char *path, bool adopt)
{
	static const char *const dirs[] = {STORE_RECORDS_DIR, STORE_JOURNAL_DIR,
					   STORE_TMP_DIR};
	int dirfd = -1, rc = 0;
	struct stat st;

	if (!adopt && mkdir(path, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		rlog_err("%s: cannot create: %s", path, strerror(errno));
		return rc;
	}
	dirfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dirfd < 0) {
		rc = -errno;
		rlog_err("%s: %s", path, strerror(errno));
		return rc;
	}
	if (fstatat(dirfd, FORMAT_FILE, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		rlog_err("%s: already a recfs store", path);
		rc = -EEXIST;
		goto out;
	}
	if (!adopt && (rc = check_empty(dirfd, path)) != 0)
		goto out;
	if (fchmod(dirfd, 0700) < 0) {
		rc = -errno;
		goto out;
	}
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (mkdirat(dirfd, dirs[i], 0700) < 0 && errno != EEXIST) {
			rc = -errno;
			rlog_err("%s/%s: %s", path, dirs[i], strerror(errno));
			goto out;
		}
	if (adopt && (rc = adopt_files(dirfd, path)) != 0)
		goto out;
	if (mkdirat(dirfd, STORE_JOURNAL_DIR "/" HIST_BLOBS_DIR, 0700) < 0 &&
	    errno != EEXIST) {
		rc = -errno;
		rlog_err("%s/%s/%s: %s", path, STORE_JOURNAL_DIR,
			 HIST_BLOBS_DIR, strerror(errno));
		goto out;
	}
	rc = hist_init_repo(path, dirfd);
	if (rc == -EEXIST)
		rc = 0; /* left by an init that crashed before the format */
	if (rc)
		goto out;
	/* The format file comes last: it marks a complete store. */
	rc = format_write(NULL, dirfd);
	if (rc)
		rlog_err("%s/%s: cannot write: %s", path, FORMAT_FILE,
			 strerror(-rc));
out:
	close(dirfd);
	return rc;
}

/* ---- open / close ------------------------------------------------------- */

/*
 * STORE/scratch, made (0700, STORE synced) on the first open that may
 * write: stores made before it have none. A read-only open of such a
 * store has no scratch files.
 */
static int open_scratch_dir(struct store *s)
{
	int rc;

	if (!s->opts.read_only) {
		rc = io_mkdirat(s->io, "scratch.mkdir", s->dirfd,
				STORE_SCRATCH_DIR, 0700);
		if (rc == 0)
			rc = io_fsync(s->io, "scratch.mkdir.dirsync", s->dirfd);
		if (rc && rc != -EEXIST) {
			rlog_err("%s/%s: cannot create: %s", s->path,
				 STORE_SCRATCH_DIR, strerror(-rc));
			return rc;
		}
	}
	s->scratch_fd = openat(s->dirfd, STORE_SCRATCH_DIR,
			       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (s->scratch_fd >= 0 || (errno == ENOENT && s->opts.read_only))
		return 0;
	rc = -errno;
	rlog_err("%s/%s: %s", s->path, STORE_SCRATCH_DIR, strerror(errno));
	return rc;
}

static int open_file_store(struct store *s)
{
	char why[512] = "";
	char msg[512] = "";
	int rc;

	s->dirfd =
		open(s->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (s->dirfd < 0 && errno == ENOENT && s->opts.create) {
		rc = store_init(s->path, false);
		if (rc)
			return rc;
		s->dirfd = open(s->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
						 O_CLOEXEC);
	}
	if (s->dirfd < 0) {
		rc = -errno;
		rlog_err("%s: cannot open store: %s", s->path, strerror(errno));
		return rc;
	}
	rc = format_check(s->dirfd, s->path, why, sizeof(why));
	if (rc == -ENOENT && s->opts.create) {
		close(s->dirfd);
		s->dirfd = -1;
		rc = store_init(s->path, false);
		if (rc)
			return rc;
		return open_file_store(s);
	}
	if (rc) {
		rlog_err("%s", why[0] ? why : "cannot read the format file");
		if (rc == -ENOENT)
			rlog_err(
				"%s: not a recfs store (no %s); create one "
				"with `recfsctl init %s`, or make the files "
				"in it records with `recfsctl init --adopt %s`",
				s->path, FORMAT_FILE, s->path, s->path);
		return rc;
	}
	if (s->opts.no_write)
		rc = lock_acquire_shared(&s->lock, s->dirfd, msg, sizeof(msg));
	else
		rc = lock_acquire(&s->lock, s->dirfd, msg, sizeof(msg));
	if (rc) {
		rlog_err("%s: %s", s->path, msg[0] ? msg : strerror(-rc));
		return rc;
	}
	rc = be_file_open(&s->be, s->io, s->dirfd);
	if (rc == 0)
		rc = open_scratch_dir(s);
	if (rc)
		return rc;
	s->jnl_dirfd = openat(s->dirfd, STORE_JOURNAL_DIR,
			      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (s->jnl_dirfd < 0) {
		rc = -errno;
		rlog_err("%s/%s: %s", s->path, STORE_JOURNAL_DIR,
			 strerror(errno));
		return rc;
	}
	/*
	 * The history first: recovery keeps what it has not written yet.
	 * Its writer thread is not started here (a daemon forks after
	 * store_open) but on first use: see store_hist_start.
	 */
	if (!s->opts.read_only)
		reserve_yield_at_open(s->io, s->dirfd, s->path);
	rc = store_hist_open(s);
	if (rc == 0)
		rc = store_recover(s);
	if (rc == 0 && !s->opts.read_only) {
		uint64_t records, tombstones;

		store_counts(s, &records, &tombstones);
		rc = reserve_open(&s->reserve, s->io, s->dirfd, s->path,
				  records);
	}
	return rc;
}

int store_open(struct store **out, const struct store_opts *opts)
{
	struct store *s = calloc(1, sizeof(*s));
	int rc;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->opts = *opts;
	s->dirfd = -1;
	s->jnl_dirfd = -1;
	s->blobs_fd = -1;
	s->scratch_fd = -1;
	s->io = opts->io;
	s->paranoid = getenv("RECFS_PARANOID") &&
		      strcmp(getenv("RECFS_PARANOID"), "1") == 0;
	if (!s->opts.max_record_size)
		s->opts.max_record_size = STORE_DEFAULT_MAX_RECORD;
	if (!s->opts.checkpoint_bytes)
		s->opts.checkpoint_bytes = DEFAULT_CHECKPOINT_BYTES;
	if (s->opts.no_write) {
		s->opts.read_only = true;
		s->opts.create = false;
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->ckpt_mu, NULL);
	pthread_mutex_init(&s->retain_mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	pthread_rwlock_init(&s->gate, NULL);
	s->path = opts->path ? strdup(opts->path) : NULL;
	if (opts->path && !s->path) {
		rc = -ENOMEM;
		goto out;
	}
	if (opts->backend == STORE_BACKEND_MEMORY) {
		rc = idx_init(&s->ix);
		if (rc == 0)
			rc = be_memory_open(&s->be, !opts->no_cas);
	} else if (!s->path) {
		rc = -EINVAL;
	} else {
		rc = open_file_store(s);
	}
out:
	if (rc) {
		s->opts.read_only = true; /* no checkpoint on the way out */
		store_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

int store_open_history(struct store **out, const char *path)
{
	struct store_opts o = {.path = path, .read_only = true};
	struct store *s = calloc(1, sizeof(*s));
	char why[512] = "";
	int rc;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->opts = o;
	s->dirfd = s->jnl_dirfd = s->blobs_fd = s->scratch_fd = -1;
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->ckpt_mu, NULL);
	pthread_mutex_init(&s->retain_mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	pthread_rwlock_init(&s->gate, NULL);
	s->path = strdup(path);
	rc = s->path ? idx_init(&s->ix) : -ENOMEM;
	if (rc)
		goto out;
	s->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (s->dirfd < 0) {
		rc = -errno;
		rlog_err("%s: cannot open store: %s", path, strerror(errno));
		goto out;
	}
	rc = format_check(s->dirfd, path, why, sizeof(why));
	if (rc) {
		rlog_err("%s", why[0] ? why : "cannot read the format file");
		goto out;
	}
	/* read-only: no lock, no journal, no writer; nothing is written */
	rc = store_hist_open(s);
out:
	if (rc) {
		store_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

int store_close(struct store *s)
{
	int rc = 0;

	if (!s)
		return 0;
	store_retain_timer_stop(s); /* after a prune in progress */
	sbatch_free(s); /* what sync=batch queued: durable, in place */
	/* history first, so that the checkpoint can drop what it wrote */
	store_hist_stop(s);
	if (s->jnl && !s->opts.read_only && !s->broken)
		rc = store_checkpoint(s);
	store_hist_free(s);
	reserve_free(s->reserve);
	jnl_close(s->jnl);
	if (s->be)
		s->be->ops->free(s->be);
	lock_release(s->lock);
	idx_destroy(&s->ix);
	if (s->jnl_dirfd >= 0)
		close(s->jnl_dirfd);
	if (s->scratch_fd >= 0)
		close(s->scratch_fd);
	if (s->dirfd >= 0)
		close(s->dirfd);
	pthread_rwlock_destroy(&s->gate);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->ckpt_mu);
	pthread_mutex_destroy(&s->retain_mu);
	pthread_mutex_destroy(&s->mu);
	free(s->path);
	free(s);
	return rc;
}

int store_serve_start(struct store *s)
{
	/* after the fork: the threads can start now */
	(void)store_hist_start(s);
	if (!s->opts.read_only && s->be && s->be->ops->start)
		(void)s->be->ops->start(s->be);
	if (!s->opts.read_only && s->hist)
		(void)store_retain_timer_start(s); /* logged */
	return s->lock ? lock_refresh(s->lock) : 0;
}

uint64_t store_revision(struct store *s)
{
	uint64_t rev;

	if (s->jnl) /* with sync=batch, acknowledged but maybe not durable */
		return jnl_written_seq(s->jnl);
	pthread_mutex_lock(&s->mu);
	rev = s->revision;
	pthread_mutex_unlock(&s->mu);
	return rev;
}

struct counts {
	uint64_t live, tomb;
};

static int count_one(void *arg, struct entry *e)
{
	struct counts *c = arg;

	if (e->meta.deleted || e->meta.version == 0)
		c->tomb++;
	else
		c->live++;
	return 0;
}

void store_counts(struct store *s, uint64_t *records, uint64_t *tombstones)
{
	struct counts c = {0, 0};

	pthread_mutex_lock(&s->mu);
	idx_each(&s->ix, count_one, &c);
	pthread_mutex_unlock(&s->mu);
	if (records)
		*records = c.live;
	if (tombstones)
		*tombstones = c.tomb;
}

void store_wait_idle(struct store *s, struct entry *e)
{
	while (e->busy)
		pthread_cond_wait(&s->cv, &s->mu);
}

/* ---- reading ------------------------------------------------------------ */

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

/* ---- stages ------------------------------------------------------------- */

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
		n = io_copy_fd(s->io, "stage.copy", r->fd, st->fd);
		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		*base = r->meta.version;
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

/* ---- xattrs (reads; changes are in commit.c) -------------------------------
 */

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

/* ---- namespaces --------------------------------------------------------- */

/* "" (the root) or a valid ID. */
static int check_ns(const char *ns)
{
	return ns[0] == '\0' ? 0 : id_check(ns);
}

int store_list(struct store *s, const char *ns, store_list_cb cb, void *arg)
{
	int rc = check_ns(ns);

	sbatch_drain(s); /* new records of sync=batch are listed */
	return rc ? rc : s->be->ops->list(s->be, ns, cb, arg);
}

int store_ns_stat(struct store *s, const char *ns, struct stat *st)
{
	int rc = check_ns(ns);

	if (rc == 0)
		rc = s->be->ops->stat(s->be, ns, st);
	if (rc == 0 && !S_ISDIR(st->st_mode))
		rc = -ENOTDIR;
	return rc;
}

/* Namespace changes hold the gate exclusively: no commit is between its
   namespace check and its rename into place meanwhile. */
int store_mkdir(struct store *s, const char *ns, mode_t mode)
{
	struct entry *e;
	struct stat st;
	int rc = id_check(ns);

	if (rc)
		return rc;
	if (s->opts.read_only)
		return -EROFS;
	pthread_rwlock_wrlock(&s->gate);
	sbatch_drain(s); /* sync=batch: nothing in flight either */
	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, ns, strlen(ns));
	rc = (e && !e->meta.deleted && e->meta.version) ? -EEXIST : 0;
	pthread_mutex_unlock(&s->mu);
	if (rc == 0 && store_scratch_stat(s, ns, &st) == 0)
		rc = -EEXIST; /* a scratch file has that name */
	if (rc == 0)
		rc = s->be->ops->mkdir(s->be, ns, mode);
	pthread_rwlock_unlock(&s->gate);
	return rc;
}

int store_rmdir(struct store *s, const char *ns)
{
	int rc = id_check(ns);

	if (rc)
		return rc;
	if (s->opts.read_only)
		return -EROFS;
	pthread_rwlock_wrlock(&s->gate);
	sbatch_drain(s); /* sync=batch: nothing in flight either */
	/* its scratch directory first: it goes only if empty, and an empty
	   one left by a failed rmdir below is no harm (made on demand) */
	rc = scratch_ns_drop(s, ns);
	if (rc == 0)
		rc = s->be->ops->rmdir(s->be, ns);
	pthread_rwlock_unlock(&s->gate);
	return rc;
}

static int any_entry(void *arg, const char *name, bool is_ns)
{
	return 1;
}

int store_rename_ns(struct store *s, const char *from, const char *to)
{
	struct stat st;
	int rc = id_check(from);

	if (rc == 0)
		rc = id_check(to);
	if (rc)
		return rc;
	if (s->opts.read_only)
		return -EROFS;
	pthread_rwlock_wrlock(&s->gate);
	sbatch_drain(s); /* sync=batch: nothing in flight either */
	rc = s->be->ops->list(s->be, from, any_entry, NULL);
	if (rc == 1)
		rc = -EXDEV; /* holds records: mv falls back to copy+delete */
	else if (rc == 0 && s->be->ops->stat(s->be, to, &st) == 0 &&
		 !S_ISDIR(st.st_mode))
		rc = -ENOTDIR;
	/* scratch files are not moved either: their directories must be
	   empty (and go), `to`'s as rename(2) wants it */
	if (rc == 0 && (rc = scratch_ns_drop(s, from)) == -ENOTEMPTY)
		rc = -EXDEV;
	if (rc == 0)
		rc = scratch_ns_drop(s, to);
	if (rc == 0)
		rc = s->be->ops->ns_rename(s->be, from, to);
	pthread_rwlock_unlock(&s->gate);
	return rc;
}

int store_ns_set_meta(struct store *s, const char *ns,
		      const struct timespec *mtime, int mode)
{
	int rc = check_ns(ns);

	if (rc)
		return rc;
	if (s->opts.read_only)
		return -EROFS;
	return s->be->ops->ns_set_meta(s->be, ns, mtime, mode);
}

/* ---- lock helpers for recfsctl ------------------------------------------ */

int store_lock_holder(const char *path, char *msg, size_t msglen)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	rc = lock_holder(fd, msg, msglen);
	close(fd);
	return rc;
}

int store_unlock_force(const char *path, char *msg, size_t msglen)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	rc = lock_force(fd, msg, msglen);
	close(fd);
	return rc;
}

int store_ns_set_owner(struct store *s, const char *ns, uint32_t uid,
		       uint32_t gid)
{
	int rc = check_ns(ns);

	if (rc)
		return rc;
	if (s->opts.read_only)
		return -EROFS;
	return s->be->ops->ns_set_owner(s->be, ns, uid, gid);
}
