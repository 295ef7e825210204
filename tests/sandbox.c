/*
 * sandbox.c - see sandbox.h.
 */
#include "sandbox.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
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

void sandbox_new(char *base, size_t len, const char *name, bool quiet)
{
	sandbox_new_in(base, len, sandbox_root(), name, quiet);
}

void sandbox_new_in(char *base, size_t len, const char *root, const char *name,
		    bool quiet)
{
	snprintf(base, len, "%s/recfs-%s.XXXXXX", root, name);
	cr_assert_not_null(mkdtemp(base), "mkdtemp %s: %s", base,
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
