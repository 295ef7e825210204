/*
 * store.c - a store's lifecycle: opening (a file store: its directory,
 * format, lock, backend, journal, history, recovery, space reserve; or
 * a memory one), closing, the threads started once serving, the counts,
 * and the lock helpers of recfsctl. Creating a store is store_init.c;
 * reading records store_read.c; stages store_stage.c; namespaces
 * store_ns.c; changes commit.c; recovery and snapshots recover.c.
 *
 * Errors are reported (err.h), each naming the store's path and the
 * cause; nothing here logs.
 */
#include "store_i.h"
#include "admin.h"
#include "store_history.h"
#include "err.h"
#include "format.h"
#include "history.h"
#include "io.h"
#include "jnl.h"
#include "lock.h"
#include "etcd_hist.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_CHECKPOINT_BYTES (64ull << 20)

const char *store_path(const struct store *s)
{
	return s->path;
}

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
		if (rc && rc != -EEXIST)
			return rerr_set(rc, "%s/%s: cannot create: %s", s->path,
					STORE_SCRATCH_DIR, strerror(-rc));
	}
	s->scratch_fd = openat(s->dirfd, STORE_SCRATCH_DIR,
			       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (s->scratch_fd >= 0 || (errno == ENOENT && s->opts.read_only))
		return 0;
	return rerr_set(-errno, "%s/%s: %s", s->path, STORE_SCRATCH_DIR,
			strerror(errno));
}

static int open_file_store(struct store *s)
{
	char msg[512] = "";
	int rc;

	rc = format_open_dir(s->path, &s->dirfd);
	if (rc == -ENOENT && s->opts.create) {
		/* no directory, or no format file in it: make the store */
		rerr_clear();
		rc = store_init(s->path, false);
		if (rc == 0)
			rc = format_open_dir(s->path, &s->dirfd);
	}
	if (rc)
		return rc;
	if (s->opts.no_write)
		rc = lock_acquire_shared(&s->lock, s->dirfd, msg, sizeof(msg));
	else
		rc = lock_acquire(&s->lock, s->dirfd, msg, sizeof(msg));
	if (rc && msg[0])
		return rerr_set(rc, "%s: %s", s->path, msg);
	if (rc)
		return rerr_prefix(rc, "%s: lock", s->path);
	rc = be_file_open(&s->be, s->io, s->dirfd);
	if (rc)
		return rerr_prefix(rc, "%s", s->path);
	rc = s->be->tree ? open_scratch_dir(s) : 0; /* backend.h */
	if (rc)
		return rc;
	s->jnl_dirfd = openat(s->dirfd, STORE_JOURNAL_DIR,
			      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (s->jnl_dirfd < 0)
		return rerr_set(-errno, "%s/%s: %s", s->path, STORE_JOURNAL_DIR,
				strerror(errno));
	/*
	 * The history first: recovery keeps what it has not written yet.
	 * Its writer thread is not started here (a daemon forks after
	 * store_open) but on first use: see store_hist_start.
	 */
	if (!s->opts.read_only)
		reserve_yield_at_open(s->io, s->dirfd, s->path);
	rc = store_hist_open(s);
	if (rc)
		return rerr_prefix(rc, "%s: history", s->path);
	rc = store_recover(s);
	if (rc)
		return rerr_prefix(rc, "%s: recovery", s->path);
	if (!s->opts.read_only) {
		uint64_t records, tombstones;

		store_counts(s, &records, &tombstones);
		rc = reserve_open(&s->reserve, s->io, s->dirfd, s->path,
				  records);
	}
	return rc;
}

/* One record's state from an own_commit backend into the index. */
static int load_one(void *arg, const struct rec *r)
{
	struct store *s = arg;
	struct apply a = {.steps = APPLY_INDEX};

	return change_apply(s, r, r->meta.revision, &a);
}

/*
 * A store on etcd (etcd://...; backend.h, be_etcd.c): no directory, lock,
 * journal, recovery nor reserve: the index is loaded from etcd, and
 * etcd's revision is the store's. Its history, with history_dir, is
 * written by the mount elected to (etcd_hist.h).
 */
static int open_etcd_store(struct store *s)
{
	uint64_t rev = 0;
	int rc = idx_init(&s->ix);

	if (rc == 0)
		rc = be_etcd_open(&s->be, s->path, s->opts.create,
				  &s->opts.max_record_size);
	if (rc == 0)
		rc = s->be->ops->load(s->be, load_one, s, &rev);
	if (rc)
		return rerr_prefix(rc, "%s", s->path);
	s->revision = rev;
	if (s->opts.history_dir && !s->opts.read_only)
		rc = ehist_open(s, s->opts.history_dir, &s->eh);
	s->opts.history_dir = NULL; /* the caller's: ehist keeps a copy */
	return rc ? rerr_prefix(rc, "%s", s->path) : 0;
}

static bool is_etcd_uri(const char *path)
{
	return path && strncmp(path, "etcd://", 7) == 0;
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
	if (!s->opts.max_record_size && !is_etcd_uri(opts->path))
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
	/* file://STORE is STORE */
	if (opts->path && strncmp(opts->path, "file://", 7) == 0)
		s->path = strdup(opts->path + 7);
	else
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
		rc = rerr_set(-EINVAL, "store_open: a file store needs a path");
	} else if (is_etcd_uri(s->path)) {
		rc = open_etcd_store(s);
	} else {
		rc = open_file_store(s);
	}
out:
	if (rc) {
		s->opts.read_only = true; /* no checkpoint on the way out */
		store_close(s);
		return rc;
	}
	rerr_clear(); /* what failed on the way was dealt with */
	*out = s;
	return 0;
}

int store_open_history(struct store **out, const char *path)
{
	struct store_opts o = {.path = path, .read_only = true};
	struct store *s = calloc(1, sizeof(*s));
	int rc;

	*out = NULL;
	if (is_etcd_uri(path)) {
		free(s);
		return rerr_set(-ENOTSUP,
				"%s: a store on etcd has no history yet (a "
				"later phase of issue 16)",
				path);
	}
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
	rc = format_open_dir(path, &s->dirfd);
	if (rc)
		goto out;
	/* read-only: no lock, no journal, no writer; nothing is written */
	rc = store_hist_open(s);
	if (rc)
		rerr_prefix(rc, "%s: history", path);
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
	ehist_stop(s->eh); /* an etcd store: leave the election */
	store_hist_stop(s);
	if (s->jnl && !s->opts.read_only && !s->broken)
		rc = store_checkpoint(s);
	store_hist_free(s);
	ehist_free(s->eh);
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
	(void)ehist_start(s->eh); /* logged */
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

/* `fn` (a lock.h call) on the store directory `path`, opened for it. */
static int on_store_dir(const char *path,
			int (*fn)(int dirfd, char *msg, size_t msglen),
			char *msg, size_t msglen)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	rc = fn(fd, msg, msglen);
	close(fd);
	return rc;
}

int store_lock_holder(const char *path, char *msg, size_t msglen)
{
	return on_store_dir(path, lock_holder, msg, msglen);
}

int store_unlock_force(const char *path, char *msg, size_t msglen)
{
	return on_store_dir(path, lock_force, msg, msglen);
}
