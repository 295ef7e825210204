/*
 * store_init.c - making a store directory (store_init): the directories,
 * the history's repository, the format file last; with `adopt`, the
 * files already there become records (one rename each).
 *
 * Errors are reported (err.h) naming the path and the cause. What an
 * adoption leaves out, and how much it took, is logged: the call
 * succeeds, so there is no caller to report it to.
 */
#include "store_i.h"
#include "err.h"
#include "format.h"
#include "history.h"
#include "id.h"
#include "lock.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
		rc = rerr_set(-ENOTEMPTY,
			      "%s: directory is not empty (found \"%s\"); "
			      "`recfsctl init --adopt %s` makes its files "
			      "records",
			      path, n, path);
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
		    !strcmp(n, HIST_INDEX_FILE) || !strcmp(n, HIST_VDX_FILE)) {
			/* a note, not an error: the adoption goes on */
			rlog_warn("%s/%s: not a valid record name; left "
				  "outside the store",
				  path, n);
			continue;
		}
		if (renameat(dirfd, n, recfd, n) < 0) {
			rc = rerr_set(-errno, "%s/%s: cannot adopt: %s", path,
				      n, strerror(errno));
			goto out;
		}
		moved++;
	}
	if (moved && fsync(recfd) < 0)
		rc = rerr_set(-errno, "%s/%s: fsync: %s", path,
			      STORE_RECORDS_DIR, strerror(errno));
	/* a note of what was done: the caller learns only that it worked */
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

	if (!adopt && mkdir(path, 0700) < 0 && errno != EEXIST)
		return rerr_set(-errno, "%s: cannot create: %s", path,
				strerror(errno));
	dirfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dirfd < 0)
		return rerr_set(-errno, "%s: %s", path, strerror(errno));
	if (fstatat(dirfd, FORMAT_FILE, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		rc = rerr_set(-EEXIST, "%s: already a recfs store", path);
		goto out;
	}
	if (!adopt && (rc = check_empty(dirfd, path)) != 0)
		goto out;
	if (fchmod(dirfd, 0700) < 0) {
		rc = rerr_set(-errno, "%s: chmod: %s", path, strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (mkdirat(dirfd, dirs[i], 0700) < 0 && errno != EEXIST) {
			rc = rerr_set(-errno, "%s/%s: %s", path, dirs[i],
				      strerror(errno));
			goto out;
		}
	if (adopt && (rc = adopt_files(dirfd, path)) != 0)
		goto out;
	if (mkdirat(dirfd, STORE_JOURNAL_DIR "/" HIST_BLOBS_DIR, 0700) < 0 &&
	    errno != EEXIST) {
		rc = rerr_set(-errno, "%s/%s/%s: %s", path, STORE_JOURNAL_DIR,
			      HIST_BLOBS_DIR, strerror(errno));
		goto out;
	}
	rc = hist_init_repo(path, dirfd);
	if (rc == -EEXIST)
		rc = 0; /* left by an init that crashed before the format */
	if (rc) {
		rerr_prefix(rc, "%s: the history repository", path);
		goto out;
	}
	/* The format file comes last: it marks a complete store. */
	rc = format_write(NULL, dirfd);
	if (rc)
		rerr_prefix(rc, "%s", path);
	else
		rerr_clear(); /* nothing failed in the end */
out:
	close(dirfd);
	return rc;
}
