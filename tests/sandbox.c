/*
 * sandbox.c - see sandbox.h.
 */
#include "sandbox.h"
#include "sandbox_store.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *sandbox_root(void)
{
	const char *e = getenv("RECFS_TEST_TMPDIR");

	if (e && *e)
		return e;
	if (access("/dev/shm", W_OK | X_OK) == 0)
		return "/dev/shm";
	return "/tmp";
}

void sandbox_new(char *dir, size_t len, const char *name, bool quiet)
{
	sandbox_new_in(dir, len, sandbox_root(), name, quiet);
}

void sandbox_new_in(char *dir, size_t len, const char *root, const char *name,
		    bool quiet)
{
	snprintf(dir, len, "%s/recfs-%s.XXXXXX", root, name);
	cr_assert_not_null(mkdtemp(dir), "mkdtemp %s: %s", dir,
			   strerror(errno));
	if (quiet && !getenv("RECFS_TEST_VERBOSE")) {
		int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);

		if (fd >= 0) {
			dup2(fd, 2);
			close(fd);
		}
	}
}

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	if (flag == FTW_DP) {
		chmod(path, 0700);
		rmdir(path);
	} else {
		unlink(path);
	}
	return 0;
}

void sandbox_rm(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char base[PATH_MAX];
char spath[PATH_MAX + 32];
char gitdir[PATH_MAX + 64];

void sandbox_store(const char *name, bool quiet)
{
	sandbox_new(base, sizeof(base), name, quiet);
	snprintf(spath, sizeof(spath), "%s/store", base);
	snprintf(gitdir, sizeof(gitdir), "%s/history.git", spath);
}

void sandbox_store_rm(void)
{
	sandbox_rm(base);
}
