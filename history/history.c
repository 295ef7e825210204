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
#include "history_remote.h"
#include <git2/sys/mempack.h>
#include <git2/sys/odb_backend.h>
#include <git2/sys/repository.h>
#include "io.h"
#include "err.h"
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
#define REF_MAIN "refs/heads/main"
#define SIDE_NAME HIST_SIDE_NAME
#define HIST_NEW_DIR HIST_DIR ".new"

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
	char *path = hist_join(store_path, HIST_NEW_DIR);
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
		rerr_set(rc, "%s/%s: cannot create the history: %s", store_path,
			 HIST_DIR, strerror(-rc));
	git_libgit2_shutdown();
	free(path);
	return rc;
}

/* ---- opening ----------------------------------------------------------- */

static int open_dir(int dirfd, const char *name, const char *what, int *out)
{
	*out = openat(dirfd, name,
		      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (*out >= 0)
		return 0;
	return rerr_set(-errno, "%s/%s: %s", what, name, strerror(errno));
}

static int open_dirs(struct hist *h)
{
	struct stat st;
	int rc;

	if (fstatat(h->o.store_dirfd, HIST_DIR, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return rerr_set(-ENOTDIR, "%s: not a directory", h->path);
	rc = open_dir(h->o.store_dirfd, HIST_DIR, h->o.store_path, &h->repo_fd);
	if (rc == 0)
		rc = open_dir(h->repo_fd, "refs/heads", h->path, &h->heads_fd);
	if (rc == -ENOENT) /* a history.git that is not a repository */
		rc = rerr_set(-EBADMSG,
			      "%s: not a git repository (no "
			      "refs/heads)",
			      h->path);
	if (rc || h->o.read_only)
		return rc;
	if (mkdirat(h->o.jnl_dirfd, HIST_BLOBS_DIR, 0700) == 0)
		fsync(h->o.jnl_dirfd);
	rc = open_dir(h->o.jnl_dirfd, HIST_BLOBS_DIR, "journal", &h->blobs_fd);
	/* a lock of ours left by a crash (logged: notes) */
	if (rc == 0 && unlinkat(h->heads_fd, "main.lock", 0) == 0)
		rlog_info("%s: removed a stale %s.lock", h->path, REF_MAIN);
	if (rc == 0 && unlinkat(h->heads_fd, SIDE_NAME ".lock", 0) == 0)
		rlog_info("%s: removed a stale %s.lock", h->path,
			  HIST_REF_SIDE);
	if (rc == 0)
		hist_pack_clean(h); /* only tidying */
	return rc;
}

static int open_repo(struct hist *h, git_repository **out, bool writer)
{
	int rc = git_repository_open_ext(
		out, h->path,
		GIT_REPOSITORY_OPEN_NO_SEARCH | GIT_REPOSITORY_OPEN_BARE, NULL);

	if (rc == 0 && writer)
		rc = hist_writer_odb(*out, h->path, h->repo_fd, &h->pack_gen,
				     &h->mempack, &h->pack_backend,
				     &h->big_odb);
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
	h->vdx.fd = -1;
	if (!h->o.lag_max)
		h->o.lag_max = DEFAULT_LAG_MAX;
	h->path = hist_join(opts->store_path, HIST_DIR);
	h->idx_path = hist_join(opts->store_path, HIST_INDEX_FILE);
	if (!h->path || !h->idx_path || hidx_init(&h->ix) ||
	    pthread_mutex_init(&h->mu, NULL) ||
	    pthread_mutex_init(&h->rmu, NULL) ||
	    pthread_rwlock_init(&h->ix_lock, NULL) ||
	    pthread_rwlock_init(&h->epoch_lock, NULL) ||
	    pthread_mutex_init(&h->chain_mu, NULL) ||
	    util_cond_init_mono(&h->wake) || util_cond_init_mono(&h->moved)) {
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
	/*
	 * Small pack windows, few of them mapped: libgit2 maps a pack in
	 * windows of 1 GiB, up to 8 GiB in all, and what it touched stays
	 * in the process's RSS (file pages) while mapped: one revision of
	 * 1,000,000 parts wrote and read back ten packs of 45 MB.
	 */
	git_libgit2_opts(GIT_OPT_SET_MWINDOW_SIZE, (size_t)HIST_MWINDOW);
	git_libgit2_opts(GIT_OPT_SET_MWINDOW_MAPPED_LIMIT,
			 (size_t)HIST_MWINDOW_MAPPED);
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
		rc = hist_head_read(h);
	if (rc == 0)
		rc = hist_index_load(h);
	/* logged: a note, the open goes on (the index catches up) */
	if (rc == 0 && h->has_head && h->ix.upto != h->done)
		rlog_warn("%s: the index ends at revision %" PRIu64
			  ", the history at %" PRIu64,
			  h->idx_path, h->ix.upto, h->done);
	if (rc) {
		rerr_prefix(rc, "%s: cannot open the history", h->path);
		hist_close(h);
		return rc;
	}
	h->target = h->done;
	*out = h;
	return 0;
}

uint64_t hist_done(struct hist *h)
{
	return util_locked_u64(&h->mu, &h->done);
}

int hist_error(struct hist *h)
{
	return util_locked_int(&h->mu, &h->err);
}

void hist_close(struct hist *h)
{
	if (!h)
		return;
	hist_stop(h);
	hist_remote_free(h);
	if (h->cur)
		h->o.src.close(h->cur);
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
	hvdx_close(h);
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
