/*
 * backup_dest.c - the destination of a backup (backup_dest.h): opened
 * only if empty or absent, refused inside the store, removed again after
 * a failure, its name made durable in its parent.
 */
#include "backup_dest.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void backup_remove_tree(int dfd)
{
	struct dirent *d;
	DIR *dir;

	if (util_opendir_fd(dfd, &dir))
		return;
	while ((d = readdir(dir)) != NULL) {
		struct stat st;
		int sub;

		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
			continue;
		if (fstatat(dfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			sub = openat(dfd, d->d_name,
				     O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
					     O_CLOEXEC);
			if (sub >= 0) {
				backup_remove_tree(sub);
				close(sub);
			}
			unlinkat(dfd, d->d_name, AT_REMOVEDIR);
		} else {
			unlinkat(dfd, d->d_name, 0);
		}
	}
	closedir(dir);
}

int backup_open_dest(const char *dest, int *dfd, bool *created)
{
	struct dirent *d;
	DIR *dir;
	int fd, rc = 0;

	*created = false;
	if (mkdir(dest, 0700) == 0)
		*created = true;
	else if (errno != EEXIST)
		return -errno;
	fd = open(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		rc = errno == ENOTDIR || errno == ELOOP ? -EEXIST : -errno;
		goto out;
	}
	if (!*created) {
		rc = util_opendir_fd(fd, &dir);
		if (rc)
			goto out;
		while ((d = readdir(dir)) != NULL)
			if (strcmp(d->d_name, ".") && strcmp(d->d_name, "..")) {
				rc = -ENOTEMPTY;
				break;
			}
		closedir(dir);
		if (rc == 0 && fchmod(fd, 0700) < 0)
			rc = -errno;
	}
out:
	if (rc) {
		if (fd >= 0)
			close(fd);
		if (*created)
			rmdir(dest);
		return rc;
	}
	*dfd = fd;
	return 0;
}

int backup_check_outside(const char *store_path, const char *dest)
{
	char parent[PATH_MAX], real[PATH_MAX], store[PATH_MAX];
	const char *slash = strrchr(dest, '/');
	size_t n;

	if (!slash)
		snprintf(parent, sizeof(parent), ".");
	else if (slash == dest)
		snprintf(parent, sizeof(parent), "/");
	else
		snprintf(parent, sizeof(parent), "%.*s", (int)(slash - dest),
			 dest);
	if (!realpath(parent, real) || !realpath(store_path, store))
		return -errno;
	n = strlen(store);
	if (!strncmp(real, store, n) && (real[n] == '/' || real[n] == '\0'))
		return -EINVAL;
	return 0;
}

int backup_parent_sync(const char *dest)
{
	char parent[PATH_MAX];
	const char *slash = strrchr(dest, '/');
	int fd, rc = 0;

	if (!slash)
		snprintf(parent, sizeof(parent), ".");
	else
		snprintf(parent, sizeof(parent), "%.*s",
			 slash == dest ? 1 : (int)(slash - dest), dest);
	fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}
