/*
 * history.c - the history repository (STORE/history.git) and its writer
 * thread: creating and opening it, refs/heads/main, notify, drain,
 * backpressure, and the cleanup of blob links at recovery. One batch is
 * history_batch.c; the index is history_index.c; reads are
 * history_read.c.
 *
 * Durability: libgit2 writes objects without fsync (we turn its
 * per-object fsync off). Each batch writes its objects and the new ref as
 * refs/heads/main.lock, makes all of them durable with one syncfs of the
 * repository's file system, and only then renames the lock file over
 * refs/heads/main and fsyncs refs/heads (git's own lock-file protocol).
 * So the ref never names an object that a power cut could lose, and the
 * Recfs-Upto of the commit it names is the durable "done".
 *
 * The writer: waits for notifications, runs batches, and after a failed
 * one waits (100 ms, doubling up to 10 s) before it tries again, unless a
 * drain asks; a drain waits for that backoff too, but at most 1 s, so
 * that drains asked again and again (readers of ID@N on a full disk) do
 * not make it spin. A drain returns the error of a batch that failed
 * while it waited. A batch that fails with ENOSPC and holds a delete or
 * a rename is tried once more at once if the store could free its space
 * reserve for it (space_low); after a failure with ENOSPC, batches are
 * cut to the room there is (history_batch.c). It is started on first use
 * (hist_start, a notify, a drain or a throttle), never by hist_open: threads do
 * not survive fork(), and the mount opens the store before it daemonises
 * (fuse_daemonize).
 */
#include "hist_i.h"
#include <git2/sys/mempack.h>
#include <git2/sys/odb_backend.h>
#include <git2/sys/repository.h>
#include "store_i.h"
#include "io.h"
#include "jnl.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_LAG_MAX 100000
#define BACKOFF_MIN_NS (100 * 1000000LL)
#define BACKOFF_MAX_NS (10 * 1000000000LL)
#define KICK_WAIT_MAX_NS (1000000000LL) /* a drain waits for a retry */
#define REF_MAIN "refs/heads/main"
#define SIDE_NAME HIST_SIDE_NAME
#define HIST_NEW_DIR HIST_DIR ".new"

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Wait on a CLOCK_MONOTONIC condition variable until `end` (ns). */
static int wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t end)
{
	struct timespec ts = {.tv_sec = (time_t)(end / 1000000000),
			      .tv_nsec = (long)(end % 1000000000)};

	return pthread_cond_timedwait(cv, mu, &ts);
}

static int cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t a;
	int rc;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	rc = -pthread_cond_init(cv, &a);
	pthread_condattr_destroy(&a);
	return rc;
}

int hist_git_error(int gerr, const char *what, const char *id)
{
	int saved = errno;
	const git_error *e = git_error_last();
	const char *msg = e && e->message ? e->message : "unknown error";
	int rc;

	switch (gerr) {
	case GIT_ENOTFOUND:
		rc = -ENOENT;
		break;
	case GIT_EEXISTS:
		rc = -EEXIST;
		break;
	case GIT_ELOCKED:
		rc = -EBUSY;
		break;
	case GIT_EMODIFIED:
		rc = -ESTALE;
		break;
	case GIT_EINVALID:
	case GIT_EINVALIDSPEC:
		rc = -EINVAL;
		break;
	default:
		if (e && e->klass == GIT_ERROR_NOMEMORY)
			rc = -ENOMEM;
		else if (e && e->klass == GIT_ERROR_OS && saved > 0)
			rc = -saved;
		else
			rc = -EIO;
		/* errno may be gone by now, the message keeps strerror's */
		if (rc == -EIO && strstr(msg, strerror(ENOSPC)))
			rc = -ENOSPC;
	}
	/* on a full disk the batch says so, once (history_batch.c) */
	if (id)
		rlog(rc == -ENOSPC ? RLOG_DEBUG : RLOG_ERR,
		     "record %s: history: %s: %s", id, what, msg);
	else
		rlog(rc == -ENOSPC ? RLOG_DEBUG : RLOG_ERR, "history: %s: %s",
		     what, msg);
	return rc;
}

static char *join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = malloc(la + lb + 2);

	if (p) {
		memcpy(p, a, la);
		p[la] = '/';
		memcpy(p + la + 1, b, lb + 1);
	}
	return p;
}

/* ---- creating the repository ----------------------------------------- */

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	if (flag == FTW_DP)
		return rmdir(path) < 0 ? -1 : 0;
	return unlink(path) < 0 ? -1 : 0;
}

/* The store is 0700 and its files 0600 whatever the umask (SPEC 6). */
static int fix_mode(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	if (S_ISLNK(sb->st_mode))
		return 0;
	return chmod(path, S_ISDIR(sb->st_mode) ? 0700 : 0600) < 0 ? -1 : 0;
}

static int configure(git_repository *repo)
{
	git_config *cfg = NULL;
	int rc;

	rc = git_repository_config(&cfg, repo);
	/* every valid record ID must be a valid path: "GIT~1", ".git." */
	if (rc == 0)
		rc = git_config_set_bool(cfg, "core.protectNTFS", 0);
	if (rc == 0)
		rc = git_config_set_bool(cfg, "core.protectHFS", 0);
	if (rc == 0)
		rc = git_config_set_bool(cfg, "core.logAllRefUpdates", 0);
	git_config_free(cfg);
	return rc;
}

int hist_init_repo(const char *store_path, int store_dirfd)
{
	git_repository_init_options o;
	git_repository *repo = NULL;
	char *path = join(store_path, HIST_NEW_DIR);
	struct stat st;
	int rc, fd;

	if (!path)
		return -ENOMEM;
	if (fstatat(store_dirfd, HIST_DIR, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		free(path);
		return -EEXIST;
	}
	git_libgit2_init();
	git_repository_init_options_init(&o,
					 GIT_REPOSITORY_INIT_OPTIONS_VERSION);
	/* a half-made one from a crash */
	if (fstatat(store_dirfd, HIST_NEW_DIR, &st, AT_SYMLINK_NOFOLLOW) == 0)
		nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	o.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKDIR |
		  GIT_REPOSITORY_INIT_NO_REINIT;
	o.mode = GIT_REPOSITORY_INIT_SHARED_UMASK;
	o.initial_head = "main";
	o.description = "recfs history: every version of every record";
	rc = git_repository_init_ext(&repo, path, &o);
	if (rc == 0)
		rc = configure(repo);
	if (rc < 0)
		rc = hist_git_error(rc, "creating " HIST_DIR, NULL);
	git_repository_free(repo);
	if (rc == 0 && nftw(path, fix_mode, 16, FTW_PHYS) != 0)
		rc = -errno;
	if (rc == 0) {
		fd = openat(store_dirfd, HIST_NEW_DIR,
			    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		rc = fd < 0 ? -errno : io_syncfs(NULL, NULL, fd);
		if (fd >= 0)
			close(fd);
	}
	if (rc == 0 &&
	    renameat(store_dirfd, HIST_NEW_DIR, store_dirfd, HIST_DIR) < 0)
		rc = -errno;
	if (rc == 0 && fsync(store_dirfd) < 0)
		rc = -errno;
	if (rc)
		rlog_err("%s/%s: cannot create the history: %s", store_path,
			 HIST_DIR, strerror(-rc));
	git_libgit2_shutdown();
	free(path);
	return rc;
}

/* ---- opening ----------------------------------------------------------- */

static int skip_ver(void *arg, const struct hmsg_ver *v)
{
	return 0;
}

/* Read refs/heads/recfs-versions (see hist_side_prepare), if any. */
static int read_side(struct hist *h)
{
	int rc = git_reference_name_to_id(&h->side, h->repo, HIST_REF_SIDE);

	h->has_side = rc == 0;
	if (rc == GIT_ENOTFOUND)
		return 0;
	return rc < 0 ? hist_git_error(rc, "reading " HIST_REF_SIDE, NULL) : 0;
}

/* Read refs/heads/main: head, its tree and its Recfs-Upto (done). */
static int read_head(struct hist *h)
{
	git_commit *c = NULL;
	char hexid[GIT_OID_HEXSZ + 1];
	const char *msg;
	unsigned bad = 0;
	uint64_t upto = 0;
	int rc;

	rc = git_reference_name_to_id(&h->head, h->repo, REF_MAIN);
	if (rc == GIT_ENOTFOUND)
		return 0; /* no commit yet */
	if (rc < 0)
		return hist_git_error(rc, "reading " REF_MAIN, NULL);
	h->has_head = true;
	git_oid_tostr(hexid, sizeof(hexid), &h->head);
	rc = git_commit_lookup(&c, h->repo, &h->head);
	if (rc == 0)
		rc = git_commit_tree(&h->head_tree, c);
	if (rc < 0) {
		rc = hist_git_error(rc, "reading the last commit", NULL);
		goto out;
	}
	msg = git_commit_message_raw(c);
	rc = hmsg_parse(msg, strlen(msg), skip_ver, NULL, &upto, &bad);
	if (rc == 0 && upto == 0) {
		rlog_err("%s: %s (commit %s) has no Recfs-Upto line: not a "
			 "recfs history",
			 h->path, REF_MAIN, hexid);
		rc = -EBADMSG;
	}
	h->done = upto;
	if (rc == 0)
		rc = read_side(h);
out:
	git_commit_free(c);
	return rc;
}

int hist_head_reload(struct hist *h)
{
	int rc;

	git_tree_free(h->head_tree);
	h->head_tree = NULL;
	h->has_head = h->has_side = h->has_ref_maybe = false;
	pthread_mutex_lock(&h->mu); /* read_head sets done (unchanged) */
	rc = read_head(h);
	pthread_mutex_unlock(&h->mu);
	return rc;
}

static int open_dir(int dirfd, const char *name, const char *what, int *out)
{
	*out = openat(dirfd, name,
		      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (*out >= 0)
		return 0;
	rlog_err("%s/%s: %s", what, name, strerror(errno));
	return -errno;
}

static int open_dirs(struct hist *h)
{
	struct stat st;
	int rc;

	if (fstatat(h->o.store_dirfd, HIST_DIR, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode)) {
		rlog_err("%s: not a directory", h->path);
		return -ENOTDIR;
	}
	rc = open_dir(h->o.store_dirfd, HIST_DIR, h->o.store_path, &h->repo_fd);
	if (rc == 0)
		rc = open_dir(h->repo_fd, "refs/heads", h->path, &h->heads_fd);
	if (rc == -ENOENT)
		rc = -EBADMSG; /* a history.git that is not a repository */
	if (rc || h->o.read_only)
		return rc;
	if (mkdirat(h->o.jnl_dirfd, HIST_BLOBS_DIR, 0700) == 0)
		fsync(h->o.jnl_dirfd);
	rc = open_dir(h->o.jnl_dirfd, HIST_BLOBS_DIR, "journal", &h->blobs_fd);
	/* a lock of ours left by a crash */
	if (rc == 0 && unlinkat(h->heads_fd, "main.lock", 0) == 0)
		rlog_info("%s: removed a stale %s.lock", h->path, REF_MAIN);
	if (rc == 0 && unlinkat(h->heads_fd, SIDE_NAME ".lock", 0) == 0)
		rlog_info("%s: removed a stale %s.lock", h->path,
			  HIST_REF_SIDE);
	if (rc == 0)
		hist_pack_clean(h); /* only tidying */
	return rc;
}

/* A loose backend with the store's modes (directories 0700, files 0600,
   whatever the umask) and no fsync (see the top). */
static int loose_backend(git_odb *odb, const char *objects, int prio)
{
	git_odb_backend *loose = NULL;
	int rc = git_odb_backend_loose(&loose, objects, -1, 0, 0700, 0600);

	if (rc == 0 && (rc = git_odb_add_backend(odb, loose, prio)) < 0)
		loose->free(loose);
	return rc;
}

/*
 * The writer's object databases: the mempack that holds a batch's
 * objects until they are written as one pack (history_pack.c), loose
 * objects and packs; and one of loose objects alone, for the blobs too
 * large to hold in memory (*big).
 */
static int writer_odb(git_repository *repo, const char *path, int repo_fd,
		      git_odb_backend **mempack, git_odb_backend **packs,
		      git_odb **big)
{
	git_odb_backend *pack = NULL, *mem = NULL, *in_mem = NULL,
			*in_pack = NULL;
	git_odb *odb = NULL, *b = NULL;
	char *objects = join(path, "objects");
	int rc;

	if (!objects)
		return -ENOMEM;
	rc = git_odb_new(&odb);
	if (rc == 0)
		rc = git_odb_new(&b);
	if (rc == 0)
		rc = loose_backend(b, objects, 1);
	if (rc == 0)
		rc = hist_pack_backend(&mem);
	if (rc == 0 && (rc = git_odb_add_backend(odb, mem, 3)) == 0) {
		in_mem = mem; /* the odb's now */
		mem = NULL;
	}
	if (rc == 0)
		rc = loose_backend(odb, objects, 2);
	if (rc == 0)
		rc = hist_pack_packs(&pack, objects, repo_fd);
	if (rc == 0 && (rc = git_odb_add_backend(odb, pack, 1)) == 0) {
		in_pack = pack;
		pack = NULL;
	}
	if (rc == 0)
		rc = git_repository_set_odb(repo, odb);
	/* only now: on failure the old ones stay in use */
	if (rc == 0) {
		*mempack = in_mem;
		*packs = in_pack;
		git_odb_free(*big);
		*big = b;
		b = NULL;
	}
	if (pack)
		pack->free(pack);
	if (mem)
		mem->free(mem);
	git_odb_free(odb);
	git_odb_free(b);
	free(objects);
	return rc;
}

int hist_reopen_odbs(struct hist *h)
{
	char *objects = join(h->path, "objects");
	git_odb *odb = NULL;
	int rc;

	if (!objects)
		return -ENOMEM;
	rc = writer_odb(h->repo, h->path, h->repo_fd, &h->mempack,
			&h->pack_backend, &h->big_odb);
	if (rc == 0)
		rc = git_odb_open(&odb, objects);
	if (rc == 0) {
		pthread_mutex_lock(&h->rmu);
		rc = git_repository_set_odb(h->rrepo, odb);
		pthread_mutex_unlock(&h->rmu);
	}
	git_odb_free(odb);
	free(objects);
	return rc < 0 ? hist_git_error(rc, "opening the objects again", NULL)
		      : rc;
}

static int open_repo(struct hist *h, git_repository **out, bool writer)
{
	int rc = git_repository_open_ext(
		out, h->path,
		GIT_REPOSITORY_OPEN_NO_SEARCH | GIT_REPOSITORY_OPEN_BARE, NULL);

	if (rc == 0 && writer)
		rc = writer_odb(*out, h->path, h->repo_fd, &h->mempack,
				&h->pack_backend, &h->big_odb);
	return rc < 0 ? hist_git_error(rc, "opening the repository", NULL) : 0;
}

static int hist_alloc(struct hist **out, const struct hist_opts *opts)
{
	struct hist *h = calloc(1, sizeof(*h));

	*out = NULL;
	if (!h)
		return -ENOMEM;
	h->o = *opts;
	h->repo_fd = h->heads_fd = h->blobs_fd = h->idx_fd = h->idx_rfd = -1;
	if (!h->o.lag_max)
		h->o.lag_max = DEFAULT_LAG_MAX;
	h->path = join(opts->store_path, HIST_DIR);
	h->idx_path = join(opts->store_path, HIST_INDEX_FILE);
	if (!h->path || !h->idx_path || hidx_init(&h->ix) ||
	    pthread_mutex_init(&h->mu, NULL) ||
	    pthread_mutex_init(&h->rmu, NULL) ||
	    pthread_rwlock_init(&h->ix_lock, NULL) ||
	    pthread_rwlock_init(&h->epoch_lock, NULL) ||
	    pthread_mutex_init(&h->chain_mu, NULL) ||
	    cond_init_mono(&h->wake) || cond_init_mono(&h->moved)) {
		/* the sync objects need no destroy on Linux */
		hidx_destroy(&h->ix);
		free(h->path);
		free(h->idx_path);
		free(h);
		return -ENOMEM;
	}
	*out = h;
	return 0;
}

int hist_open(struct hist **out, const struct hist_opts *opts)
{
	struct hist *h = NULL;
	int rc;

	*out = NULL;
	rc = hist_alloc(&h, opts);
	if (rc)
		return rc;
	git_libgit2_init();
	h->git_inited = true;
	/*
	 * Process-wide: libgit2 must not fsync each object (a batch is made
	 * durable with one syncfs, see the top). git_libgit2_opts sets a
	 * global of the library, so it applies to every repository of this
	 * process; nothing else in recfs uses libgit2.
	 */
	git_libgit2_opts(GIT_OPT_ENABLE_FSYNC_GITDIR, 0);
	/*
	 * No object cache: libgit2 keeps every tree and commit it parses,
	 * up to 256 MiB by default, and the writer parses the trees of each
	 * new commit, so the daemon's memory grew with the history (measured
	 * under tools/torture --contention: 0.6 MB at 12 s, 2.1 MB at 42 s;
	 * with a 1 MiB cap still 1.3 MB, as the cache counts raw object
	 * sizes). Each batch makes new trees, so the writer never finds one
	 * there again; readers look up a commit and a tree per call.
	 */
	git_libgit2_opts(GIT_OPT_ENABLE_CACHING, 0);
	rc = open_dirs(h);
	if (rc == -ENOENT) {
		hist_close(h);
		return rc; /* the caller may create one */
	}
	/* a prune a crash cut short: finished (or undone) before the
	   objects are looked at; a read-only open sees the old epoch or
	   the new one, both whole */
	if (rc == 0 && !h->o.read_only)
		rc = hist_epoch_recover(h);
	if (rc == 0)
		rc = open_repo(h, &h->repo, !h->o.read_only);
	if (rc == 0)
		rc = open_repo(h, &h->rrepo, false);
	if (rc == 0)
		rc = read_head(h);
	if (rc == 0)
		rc = hist_index_load(h);
	if (rc == 0 && h->has_head && h->ix.upto != h->done)
		rlog_warn("%s: the index ends at revision %" PRIu64
			  ", the history at %" PRIu64,
			  h->idx_path, h->ix.upto, h->done);
	if (rc) {
		rlog_err("%s: cannot open the history: %s", h->path,
			 strerror(-rc));
		hist_close(h);
		return rc;
	}
	h->target = h->done;
	*out = h;
	return 0;
}

uint64_t hist_done(struct hist *h)
{
	uint64_t v;

	pthread_mutex_lock(&h->mu);
	v = h->done;
	pthread_mutex_unlock(&h->mu);
	return v;
}

int hist_error(struct hist *h)
{
	int v;

	pthread_mutex_lock(&h->mu);
	v = h->err;
	pthread_mutex_unlock(&h->mu);
	return v;
}

/* ---- refs/heads/main ----------------------------------------------------- */

/* Is the ref still where we left it? (Another git process may have
   moved it: then we stop rather than lose its commits.) */
static int ref_check(struct hist *h)
{
	git_oid cur;
	int rc = git_reference_name_to_id(&cur, h->repo, REF_MAIN);

	if (rc == GIT_ENOTFOUND && !h->has_head)
		return 0;
	if (rc < 0)
		return hist_git_error(rc, "reading " REF_MAIN, NULL);
	if ((h->has_head && git_oid_equal(&cur, &h->head)) ||
	    (h->has_ref_maybe && git_oid_equal(&cur, &h->ref_maybe)))
		return 0;
	rlog_err("%s: %s was moved by something else than recfs; the "
		 "history stops until it points at the last recfs commit again",
		 h->path, REF_MAIN);
	return -ESTALE;
}

/* Write `oid` into refs/heads/NAME.lock (O_EXCL, 0600), not synced: the
   batch's syncfs makes it durable with the objects it names. */
static int ref_write_lock(struct hist *h, const char *lock, const git_oid *oid)
{
	char line[GIT_OID_HEXSZ + 2];
	ssize_t n;
	int fd, rc;

	git_oid_tostr(line, sizeof(line), oid);
	line[GIT_OID_HEXSZ] = '\n';
	unlinkat(h->heads_fd, lock, 0);
	fd = io_openat(h->o.io, "hist.ref.open", h->heads_fd, lock,
		       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		       0600);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	n = io_pwrite_all(h->o.io, "hist.ref.write", fd, line,
			  GIT_OID_HEXSZ + 1, 0);
	rc = n < 0 ? (int)n : 0;
	close(fd);
out:
	if (rc) {
		unlinkat(h->heads_fd, lock, 0);
		rlog_err("%s: cannot write refs/heads/%s: %s", h->path, lock,
			 strerror(-rc));
	}
	return rc;
}

int hist_ref_prepare(struct hist *h, const git_oid *oid)
{
	int rc = ref_check(h);

	return rc ? rc : ref_write_lock(h, "main.lock", oid);
}

int hist_side_prepare(struct hist *h, const git_oid *oid)
{
	return ref_write_lock(h, SIDE_NAME ".lock", oid);
}

int hist_side_commit(struct hist *h)
{
	/* no directory fsync of its own: hist_ref_commit's, of the same
	   directory, follows; if that fails the batch is tried again with
	   a side commit on top of this one */
	int rc = io_renameat(h->o.io, "hist.ref.rename", h->heads_fd,
			     SIDE_NAME ".lock", h->heads_fd, SIDE_NAME, 0);

	if (rc)
		rlog_err("%s: cannot update %s: %s", h->path, HIST_REF_SIDE,
			 strerror(-rc));
	return rc;
}

int hist_ref_commit(struct hist *h, const git_oid *oid)
{
	int rc = io_renameat(h->o.io, "hist.ref.rename", h->heads_fd,
			     "main.lock", h->heads_fd, "main", 0);

	if (rc == 0) {
		/* the ref may name `oid` now, whatever follows */
		h->ref_maybe = *oid;
		h->has_ref_maybe = true;
		rc = io_fsync(h->o.io, "hist.ref.dirsync", h->heads_fd);
	}
	if (rc)
		rlog_err("%s: cannot update %s: %s", h->path, REF_MAIN,
			 strerror(-rc));
	return rc;
}

void hist_ref_abort(struct hist *h)
{
	unlinkat(h->heads_fd, "main.lock", 0);
	unlinkat(h->heads_fd, SIDE_NAME ".lock", 0);
}

/* ---- the writer ------------------------------------------------------------
 */

static void *writer_main(void *arg)
{
	struct hist *h = arg;
	int64_t backoff = 0, next_try = 0, next_kick = 0;

	pthread_mutex_lock(&h->mu);
	while (!h->stop) {
		bool pending = h->target > h->done;
		uint64_t upto = 0, before = h->done;
		int64_t until = h->kicks ? next_kick : next_try;
		int rc;

		if (!pending || h->paused || mono_ns() < until) {
			if (pending && !h->paused)
				wait_until(&h->wake, &h->mu, until);
			else
				pthread_cond_wait(&h->wake, &h->mu);
			continue;
		}
		h->begun++;
		h->in_batch = true;
		pthread_mutex_unlock(&h->mu);
		rc = hist_batch_run(h, &upto);
		/* the store's reserve is for a batch that frees space once
		   written: deletes and renames (SPEC section 8) */
		if (rc == -ENOSPC && h->o.space_low &&
		    h->o.space_low(h->o.arg, h->batch_frees))
			rc = hist_batch_run(h, &upto);
		pthread_mutex_lock(&h->mu);
		h->in_batch = false;
		h->attempts++;
		h->err = rc;
		if (rc == 0) {
			if (upto > h->done)
				h->done = upto;
			backoff = next_try = next_kick = 0;
		} else {
			backoff = backoff ? 2 * backoff : BACKOFF_MIN_NS;
			if (backoff > BACKOFF_MAX_NS)
				backoff = BACKOFF_MAX_NS;
			next_try = mono_ns() + backoff;
			next_kick = mono_ns() + (backoff < KICK_WAIT_MAX_NS
							 ? backoff
							 : KICK_WAIT_MAX_NS);
		}
		pthread_cond_broadcast(&h->moved);
		if (rc == 0 && h->done == before && !h->stop)
			/* nothing readable up to target: should not happen;
			   do not spin */
			wait_until(&h->wake, &h->mu,
				   mono_ns() + BACKOFF_MIN_NS);
	}
	h->running = false;
	pthread_cond_broadcast(&h->moved);
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

/* Start the writer if it is not running yet. h->mu held. */
static int start_locked(struct hist *h)
{
	int rc;

	if (h->started || h->stop || h->o.read_only)
		return h->o.read_only ? -EROFS : 0;
	rc = -pthread_create(&h->thread, NULL, writer_main, h);
	h->running = h->started = rc == 0;
	if (rc)
		rlog_err("%s: cannot start the history writer: %s", h->path,
			 strerror(-rc));
	return rc;
}

int hist_start(struct hist *h)
{
	int rc;

	pthread_mutex_lock(&h->mu);
	rc = start_locked(h);
	pthread_mutex_unlock(&h->mu);
	return rc;
}

void hist_notify(struct hist *h, uint64_t rev)
{
	pthread_mutex_lock(&h->mu);
	start_locked(h);
	if (rev > h->target) {
		h->target = rev;
		/* a writer collecting a batch reads it all at its deadline:
		   waking it for every commit would cost a switch each */
		if (!h->wake_at || rev >= h->wake_at)
			pthread_cond_signal(&h->wake);
	}
	pthread_mutex_unlock(&h->mu);
}

int hist_drain(struct hist *h, uint64_t rev, unsigned timeout_ms)
{
	int64_t end = mono_ns() + (int64_t)timeout_ms * 1000000;
	uint64_t start;
	int rc = 0;

	pthread_mutex_lock(&h->mu);
	start_locked(h);
	if (rev > h->target)
		h->target = rev;
	/*
	 * Only the outcome of an attempt begun after this call counts: one
	 * already in flight may have failed on a fault since cleared. The
	 * writer is one thread, so attempts end in the order they begin.
	 */
	start = h->begun;
	h->kicks++;
	pthread_cond_signal(&h->wake);
	while (h->done < rev) {
		if (h->attempts > start && h->err) {
			rc = h->err;
			break;
		}
		if (!h->running) {
			rc = -EAGAIN;
			break;
		}
		if (!timeout_ms)
			pthread_cond_wait(&h->moved, &h->mu);
		else if (wait_until(&h->moved, &h->mu, end) == ETIMEDOUT &&
			 h->done < rev) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	h->kicks--;
	pthread_mutex_unlock(&h->mu);
	return rc;
}

int hist_throttle(struct hist *h, uint64_t rev, unsigned timeout_ms)
{
	int64_t end = mono_ns() + (int64_t)timeout_ms * 1000000;
	int rc = 0;

	pthread_mutex_lock(&h->mu);
	start_locked(h);
	while (h->running && rev > h->done + h->o.lag_max) {
		if (wait_until(&h->moved, &h->mu, end) == ETIMEDOUT &&
		    rev > h->done + h->o.lag_max) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&h->mu);
	return rc;
}

void hist_pause(struct hist *h)
{
	pthread_mutex_lock(&h->mu);
	h->paused++;
	while (h->in_batch)
		pthread_cond_wait(&h->moved, &h->mu);
	pthread_mutex_unlock(&h->mu);
}

void hist_resume(struct hist *h)
{
	pthread_mutex_lock(&h->mu);
	if (h->paused)
		h->paused--;
	pthread_cond_broadcast(&h->wake);
	pthread_mutex_unlock(&h->mu);
}

void hist_stop(struct hist *h)
{
	bool join_it;

	pthread_mutex_lock(&h->mu);
	join_it = h->started;
	h->started = false;
	h->stop = true;
	pthread_cond_broadcast(&h->wake);
	pthread_mutex_unlock(&h->mu);
	if (join_it)
		pthread_join(h->thread, NULL);
}

void hist_close(struct hist *h)
{
	if (!h)
		return;
	hist_stop(h);
	jnl_cursor_close(h->cur);
	git_tree_free(h->head_tree);
	git_repository_free(h->repo);
	git_odb_free(h->big_odb);
	git_repository_free(h->rrepo);
	if (h->git_inited)
		git_libgit2_shutdown();
	hidx_destroy(&h->ix);
	if (h->repo_fd >= 0)
		close(h->repo_fd);
	if (h->heads_fd >= 0)
		close(h->heads_fd);
	if (h->blobs_fd >= 0)
		close(h->blobs_fd);
	if (h->idx_fd >= 0)
		close(h->idx_fd);
	if (h->idx_rfd >= 0)
		close(h->idx_rfd);
	hist_chains_free(h);
	pthread_mutex_destroy(&h->chain_mu);
	pthread_cond_destroy(&h->wake);
	pthread_cond_destroy(&h->moved);
	pthread_rwlock_destroy(&h->ix_lock);
	pthread_mutex_destroy(&h->rmu);
	pthread_mutex_destroy(&h->mu);
	free(h->path);
	free(h->idx_path);
	free(h);
}

/* ---- blob links -----------------------------------------------------------
 */

struct names {
	char **v;
	size_t n, cap;
};

static int add_stage(struct names *ns, const struct rec *r)
{
	if (r->type != REC_PUT || !r->stage)
		return 0;
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? 2 * ns->cap : 16;
		char **p = realloc(ns->v, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		ns->v = p;
		ns->cap = cap;
	}
	ns->v[ns->n] = strndup(r->stage, r->stage_len);
	return ns->v[ns->n++] ? 0 : -ENOMEM;
}

/* The stages the journal still names (a txn's parts too). */
static int collect_stage(void *arg, uint64_t seq, const void *payload,
			 size_t len)
{
	struct rec r, part;
	size_t off = 0;
	int rc;

	if (codec_decode(payload, len, &r))
		return 0; /* recovery reports bad records */
	if (r.type != REC_TXN && r.type != REC_TXN_PART)
		return add_stage(arg, &r);
	while (codec_txn_next(&r, &off, &part) == 1)
		if ((rc = add_stage(arg, &part)) != 0)
			return rc;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int hist_clean_blobs(struct hist *h)
{
	struct names ns = {0};
	struct dirent *de;
	DIR *dir = NULL;
	int rc, removed = 0;

	if (h->blobs_fd < 0)
		return 0;
	rc = jnl_scan(h->o.io, h->o.jnl_dirfd, h->done, collect_stage, &ns,
		      NULL);
	if (rc)
		goto out;
	if (ns.n)
		qsort(ns.v, ns.n, sizeof(*ns.v), cmp_str);
	rc = util_opendir_fd(h->blobs_fd, &dir);
	if (rc)
		goto out;
	while ((de = readdir(dir)) != NULL) {
		const char *name = de->d_name;

		if (!strcmp(name, ".") || !strcmp(name, "..") ||
		    (ns.n &&
		     bsearch(&name, ns.v, ns.n, sizeof(*ns.v), cmp_str)))
			continue;
		if (unlinkat(h->blobs_fd, name, 0) == 0)
			removed++;
		else
			rlog_warn("journal/%s/%s: cannot remove: %s",
				  HIST_BLOBS_DIR, name, strerror(errno));
	}
	if (removed && fsync(h->blobs_fd) < 0)
		rc = -errno;
out:
	if (dir)
		closedir(dir);
	for (size_t i = 0; i < ns.n; i++)
		free(ns.v[i]);
	free(ns.v);
	if (rc)
		rlog_err("journal/%s: cleanup failed: %s", HIST_BLOBS_DIR,
			 strerror(-rc));
	return rc;
}
