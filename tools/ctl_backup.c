/*
 * ctl_backup.c - `recfsctl backup TARGET DEST` (SPEC sections 1 and 7):
 * a consistent copy of a store, with its history, that mounts as it is.
 *
 * TARGET is a mount point: the daemon makes the copy (it holds the store
 * lock), asked through the control channel (setxattr of
 * user.recfs.ctl.backup on the mount root, see fusefs/ctl.c), which
 * returns when the copy is durable. TARGET is an unmounted store: the
 * tool opens it and makes the copy itself. Both are store_backup.
 */
#include "admin.h"
#include "ctl.h"
#include "err.h"
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#define CTL_XATTR "user.recfs.ctl."

int ctl_send(const char *mnt, const char *verb, const char *arg)
{
	char name[64], why[600];
	ssize_t n;
	int rc;

	snprintf(name, sizeof(name), CTL_XATTR "%s", verb);
	if (setxattr(mnt, name, arg, strlen(arg), 0) == 0)
		return 0;
	rc = -errno;
	/* the setxattr carries an errno; the daemon keeps the cause for
	   this process to read (fusefs/ctl.c) */
	n = getxattr(mnt, CTL_XATTR "error", why, sizeof(why) - 1);
	if (n > 0) {
		why[n] = '\0';
		rerr_set(rc, "%s", why);
	}
	return rc;
}

const char *ctl_send_why(int rc, const char *eperm)
{
	if (rc == -EPERM)
		return eperm;
	/* a verb it knows but cannot do says why (ctl_send kept it) */
	if (rc == -EOPNOTSUPP && !(rerr_last() && rerr_last()->code == rc))
		return "the daemon does not know this request (an older "
		       "recfs?)";
	return ctl_why(rc);
}

int ctl_mount_store(const char *mnt, char *out, size_t len)
{
	char path[PATH_MAX];
	json_error_t jerr;
	json_t *root, *v;
	int rc = 0;

	snprintf(path, sizeof(path), "%s/.recfs/status", mnt);
	root = json_load_file(path, 0, &jerr);
	if (!root)
		return -EIO;
	v = json_object_get(root, "store");
	if (!json_is_string(v) || !json_string_value(v)[0] ||
	    strlen(json_string_value(v)) >= len)
		rc = -ENOENT; /* a daemon that does not say */
	else
		snprintf(out, len, "%s", json_string_value(v));
	json_decref(root);
	return rc;
}

/* Is `dest` usable: absent, or an empty directory? */
static int check_dest(const char *dest)
{
	struct stat st;
	struct dirent *d;
	DIR *dir;
	int rc = 0;

	if (lstat(dest, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return -EEXIST;
	dir = opendir(dest);
	if (!dir)
		return -errno;
	while ((d = readdir(dir)) != NULL)
		if (strcmp(d->d_name, ".") && strcmp(d->d_name, "..")) {
			rc = -ENOTEMPTY;
			break;
		}
	closedir(dir);
	return rc;
}

/* `dest` as an absolute path through the real path of its parent (the
   daemon runs in "/"). */
static int absolute_dest(const char *dest, char *out, size_t len)
{
	char parent[PATH_MAX], real[PATH_MAX];
	const char *slash = strrchr(dest, '/'), *base;

	if (slash && slash[1] == '\0' && slash > dest) {
		/* "dest/": the trailing slash says nothing */
		size_t n = (size_t)(slash - dest);

		snprintf(parent, sizeof(parent), "%.*s", (int)n, dest);
		return absolute_dest(parent, out, len);
	}
	if (!slash) {
		snprintf(parent, sizeof(parent), ".");
		base = dest;
	} else {
		snprintf(parent, sizeof(parent), "%.*s",
			 slash == dest ? 1 : (int)(slash - dest), dest);
		base = slash + 1;
	}
	if (!base[0] || !strcmp(base, ".") || !strcmp(base, ".."))
		return -EINVAL;
	if (!realpath(parent, real))
		return -errno;
	if ((size_t)snprintf(out, len, "%s/%s", strcmp(real, "/") ? real : "",
			     base) >= len)
		return -ENAMETOOLONG;
	return 0;
}

/* Is the parent of `dest` (absolute) on the file system mounted at
   `mnt`? The daemon refuses that too. */
static bool on_mount(const char *mnt, const char *dest)
{
	char parent[PATH_MAX];
	const char *slash = strrchr(dest, '/');
	struct stat a, b;

	snprintf(parent, sizeof(parent), "%.*s",
		 slash == dest ? 1 : (int)(slash - dest), dest);
	return stat(parent, &a) == 0 && stat(mnt, &b) == 0 &&
	       a.st_dev == b.st_dev;
}

static const char *mount_error(int rc)
{
	if (rc == -EROFS)
		return "the mount is read-only, so the kernel refuses the "
		       "request; nothing changes in a read-only mounted store: "
		       "copy it with `rsync -a STORE/ DEST/`";
	return ctl_send_why(rc, "only the user running the daemon, or root, "
				"may ask it for a backup");
}

/* The backup of mount point `mnt` into `dest`, made by its daemon. */
static int backup_by_mount(const char *mnt, const char *dest)
{
	int rc;

	if (on_mount(mnt, dest)) {
		fprintf(stderr,
			"recfsctl backup: %s: inside the mount %s; give a "
			"directory outside it\n",
			dest, mnt);
		return EXIT_FAIL;
	}
	rc = ctl_send(mnt, "backup", dest);
	if (rc) {
		fprintf(stderr, "recfsctl backup: %s: %s\n", mnt,
			mount_error(rc));
		return EXIT_FAIL;
	}
	if (!ctl_is_store_dir(dest)) {
		/* a daemon without the control channel accepts user.recfs.*
		   and does nothing */
		fprintf(stderr,
			"recfsctl backup: %s: the daemon made no copy (an "
			"older recfs?)\n",
			mnt);
		return EXIT_FAIL;
	}
	printf("backup of %s written to %s\n", mnt, dest);
	return EXIT_OK;
}

int ctl_backup(int argc, char **argv)
{
	struct store_backup_report rep;
	char dest[PATH_MAX];
	struct store *s = NULL;
	const char *target;
	int rc;

	if (argc != 3)
		return ctl_usage_error("expects TARGET and DEST");
	target = argv[1];
	rc = check_dest(argv[2]);
	if (rc == 0)
		rc = absolute_dest(argv[2], dest, sizeof(dest));
	if (rc) {
		fprintf(stderr, "recfsctl backup: %s: %s\n", argv[2],
			rc == -EEXIST || rc == -ENOTEMPTY
				? "exists and is not an empty directory; "
				  "give a new one"
				: ctl_why(rc));
		return EXIT_FAIL;
	}
	switch (ctl_target(target)) {
	case CTL_NEITHER:
		return EXIT_FAIL;
	case CTL_MOUNT:
		return backup_by_mount(target, dest);
	case CTL_STORE:
		break;
	}
	if (ctl_open_target(target, &s))
		return EXIT_FAIL;
	rc = store_backup(s, dest, &rep);
	if (rc)
		ctl_error(rc, "backup %s", dest);
	else
		printf("backup of %s at revision %" PRIu64 " written to %s "
		       "(%" PRIu64 " records, %" PRIu64 " files, %" PRIu64
		       " bytes)\n",
		       target, rep.revision, dest, rep.records, rep.files,
		       rep.bytes);
	if (rc == 0 && rep.history_done < rep.revision)
		printf("its history.git has the versions up to revision "
		       "%" PRIu64 "; its journal has the rest, which its first "
		       "open writes to its history\n",
		       rep.history_done);
	if (store_close(s) && rc == 0)
		rc = -EIO;
	return rc ? EXIT_FAIL : EXIT_OK;
}
