/*
 * history_epoch.c - putting a new history epoch in place (a prune,
 * history_prune.c), crash-safely, and finishing one that a crash cut
 * short when the history is opened again.
 *
 * A prune never changes an object or a file of the history in place.
 * It writes the new epoch's objects as one pack into
 * history.git/recfs-prune/ (HIST_PRUNE_DIR), makes it durable (syncfs),
 * and then writes the intent: recfs-prune/intent, naming that pack and
 * the new heads of refs/heads/main and refs/heads/recfs-versions (temp
 * file, fsync, rename, directory fsync). The intent is the commit point.
 * Before it, a crash leaves the old history, and the next open removes
 * recfs-prune/. From it on, the prune is finished by hist_epoch_install,
 * run again at every open until it succeeds; each of its steps can be
 * done twice:
 *
 *   1. the pack moves into objects/pack (.pack, then .idx), fsync;
 *   2. both refs are written git's way (NAME.lock, fsync, rename) and
 *      refs/heads fsynced: they now name objects that are all in place;
 *   3. every other pack and every loose object is removed (the old
 *      epoch: what is still reachable is in the new pack), fsync;
 *   4. the intent and recfs-prune/ are removed, fsync.
 *
 * Between 1 and 3 the repository holds both epochs, and refs name one
 * of them (or main the old one and the side branch the new one, which is
 * as consistent): git fsck is clean at every step. history.idx names
 * commits of the old epoch until it is rebuilt; hist_index_load does
 * that by itself when the last commit it names is not in the history of
 * refs/heads/main, so a crash needs nothing more here.
 */
#include "hist_i.h"
#include "io.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INTENT "intent"
#define INTENT_TMP "intent.tmp"
#define INTENT_MAGIC "recfs-prune 1\n"
#define INTENT_MAX 512

/* ---- the intent ---------------------------------------------------------- */

int hist_epoch_intent_write(struct hist *h, int dirfd,
			    const struct hist_epoch *ep)
{
	char buf[INTENT_MAX], m[GIT_OID_HEXSZ + 1], s[GIT_OID_HEXSZ + 1];
	ssize_t n;
	int fd, rc, len;

	git_oid_tostr(m, sizeof(m), &ep->main);
	if (ep->has_side)
		git_oid_tostr(s, sizeof(s), &ep->side);
	len = snprintf(buf, sizeof(buf),
		       INTENT_MAGIC "pack %s\nmain %s\n"
				    "side %s\n",
		       ep->pack, m, ep->has_side ? s : "-");
	if (len < 0 || (size_t)len >= sizeof(buf))
		return -ENAMETOOLONG;
	unlinkat(dirfd, INTENT_TMP, 0);
	fd = io_openat(h->o.io, "hist.prune.intent", dirfd, INTENT_TMP,
		       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		       0600);
	if (fd < 0)
		return fd;
	n = io_pwrite_all(h->o.io, "hist.prune.intent", fd, buf, (size_t)len,
			  0);
	rc = n < 0 ? (int)n : 0;
	if (rc == 0)
		rc = io_fsync(h->o.io, "hist.prune.intent.sync", fd);
	close(fd);
	if (rc == 0)
		rc = io_renameat(h->o.io, "hist.prune.intent.rename", dirfd,
				 INTENT_TMP, dirfd, INTENT, 0);
	if (rc == 0)
		rc = io_fsync(h->o.io, "hist.prune.intent.dirsync", dirfd);
	if (rc)
		rerr_set(rc, "%s/%s/%s: cannot write: %s", h->path,
			 HIST_PRUNE_DIR, INTENT, strerror(-rc));
	return rc;
}

/* One "KEY VALUE\n" line of the intent at *p. */
static int intent_line(char **p, const char *key, char *val, size_t len)
{
	size_t k = strlen(key);
	char *nl;

	if (strncmp(*p, key, k) != 0 || (*p)[k] != ' ')
		return -EBADMSG;
	nl = strchr(*p + k + 1, '\n');
	if (!nl || (size_t)(nl - (*p + k + 1)) >= len)
		return -EBADMSG;
	memcpy(val, *p + k + 1, (size_t)(nl - (*p + k + 1)));
	val[nl - (*p + k + 1)] = '\0';
	*p = nl + 1;
	return 0;
}

/* Read the intent (untrusted: a file). -ENOENT if there is none. */
static int intent_read(struct hist *h, int dirfd, struct hist_epoch *ep)
{
	char buf[INTENT_MAX + 1], m[GIT_OID_HEXSZ + 2], s[GIT_OID_HEXSZ + 2];
	char *p = buf;
	ssize_t n;
	int fd, rc;

	fd = openat(dirfd, INTENT, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = io_pread_all(h->o.io, NULL, fd, buf, INTENT_MAX, 0);
	close(fd);
	if (n < 0)
		return (int)n;
	buf[n] = '\0';
	memset(ep, 0, sizeof(*ep));
	rc = strncmp(p, INTENT_MAGIC, strlen(INTENT_MAGIC)) ? -EBADMSG : 0;
	p += rc ? 0 : strlen(INTENT_MAGIC);
	if (rc == 0)
		rc = intent_line(&p, "pack", ep->pack, sizeof(ep->pack));
	if (rc == 0)
		rc = intent_line(&p, "main", m, sizeof(m));
	if (rc == 0)
		rc = intent_line(&p, "side", s, sizeof(s));
	if (rc == 0 &&
	    (strncmp(ep->pack, "pack-", 5) != 0 ||
	     strspn(ep->pack + 5, "0123456789abcdef") != strlen(ep->pack + 5) ||
	     git_oid_fromstr(&ep->main, m) < 0 || *p))
		rc = -EBADMSG;
	ep->has_side = rc == 0 && strcmp(s, "-") != 0;
	if (ep->has_side && git_oid_fromstr(&ep->side, s) < 0)
		rc = -EBADMSG;
	if (rc)
		rerr_set(rc,
			 "%s/%s/%s: not a prune intent recfs wrote; the prune "
			 "it names is not finished (remove %s/%s to keep the "
			 "history as it is)",
			 h->path, HIST_PRUNE_DIR, INTENT, h->path,
			 HIST_PRUNE_DIR);
	return rc;
}

/* ---- the steps ------------------------------------------------------------
 */

/* Step 1: the pack into objects/pack, if it is not there yet. */
static int move_pack(struct hist *h, int dirfd, int packfd, const char *pack)
{
	static const char *const ext[] = {".pack", ".idx"};
	char name[HIST_PACK_NAME_MAX];
	struct stat st;
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < 2; i++) {
		snprintf(name, sizeof(name), "%s%s", pack, ext[i]);
		rc = io_renameat(h->o.io, "hist.prune.install", dirfd, name,
				 packfd, name, 0);
		if (rc == -ENOENT && fstatat(packfd, name, &st, 0) == 0)
			rc = 0; /* moved before a crash */
	}
	if (rc == 0)
		rc = io_fsync(h->o.io, "hist.prune.install", packfd);
	return rc;
}

/* Step 2: refs/heads/NAME names `oid`, durably (the directory's fsync
   follows for both refs). */
static int set_ref(struct hist *h, const char *name, const git_oid *oid)
{
	char line[GIT_OID_HEXSZ + 2], lock[64];
	ssize_t n;
	int fd, rc;

	git_oid_tostr(line, sizeof(line), oid);
	line[GIT_OID_HEXSZ] = '\n';
	snprintf(lock, sizeof(lock), "%s.lock", name);
	unlinkat(h->heads_fd, lock, 0);
	fd = io_openat(h->o.io, "hist.prune.ref", h->heads_fd, lock,
		       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		       0600);
	if (fd < 0)
		return fd;
	n = io_pwrite_all(h->o.io, "hist.prune.ref", fd, line,
			  GIT_OID_HEXSZ + 1, 0);
	rc = n < 0 ? (int)n : 0;
	if (rc == 0)
		rc = io_fsync(h->o.io, "hist.prune.ref.sync", fd);
	close(fd);
	if (rc == 0)
		rc = io_renameat(h->o.io, "hist.prune.ref.rename", h->heads_fd,
				 lock, h->heads_fd, name, 0);
	if (rc)
		unlinkat(h->heads_fd, lock, 0);
	return rc;
}

/* Remove every entry of directory `dirfd` but `keep` (a pack name
   without suffix, or NULL), index files first: a pack without its index
   is never looked at, an index without its pack is an error to git. */
static int remove_all_but(struct hist *h, int dirfd, const char *keep)
{
	size_t klen = keep ? strlen(keep) : 0;
	int rc = 0;

	for (int pass = 0; rc == 0 && pass < 2; pass++) {
		struct dirent *de;
		DIR *dir = NULL;

		rc = util_opendir_fd(dirfd, &dir);
		while (rc == 0 && (de = readdir(dir)) != NULL) {
			const char *d = de->d_name, *dot = strrchr(d, '.');
			bool idx = dot && strcmp(dot, ".idx") == 0;

			if (!strcmp(d, ".") || !strcmp(d, "..") ||
			    (keep && !strncmp(d, keep, klen) &&
			     d[klen] == '.') ||
			    (pass == 0 && !idx))
				continue;
			rc = io_unlinkat(h->o.io, "hist.prune.unlink", dirfd, d,
					 0);
			if (rc == -ENOENT)
				rc = 0;
		}
		if (dir)
			closedir(dir);
	}
	if (rc == 0)
		rc = io_fsync(h->o.io, "hist.prune.unlink", dirfd);
	return rc;
}

/* Is `d` the name of a loose object directory ("00" to "ff")? */
static bool fanout_dir(const char *d)
{
	return strlen(d) == 2 && strspn(d, "0123456789abcdef") == 2;
}

/* Step 3: the old epoch's objects go: other packs, loose objects. */
static int remove_old(struct hist *h, int objfd, int packfd, const char *pack)
{
	struct dirent *de;
	DIR *dir = NULL;
	int rc = remove_all_but(h, packfd, pack);

	if (rc == 0)
		rc = util_opendir_fd(objfd, &dir);
	while (rc == 0 && (de = readdir(dir)) != NULL) {
		int fd;

		if (!fanout_dir(de->d_name))
			continue;
		fd = openat(objfd, de->d_name,
			    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			rc = -errno;
			break;
		}
		rc = remove_all_but(h, fd, NULL);
		close(fd);
		if (rc == 0)
			rc = io_unlinkat(h->o.io, "hist.prune.unlink", objfd,
					 de->d_name, AT_REMOVEDIR);
		if (rc == -ENOENT)
			rc = 0;
	}
	if (dir)
		closedir(dir);
	/* git's list of packs, if something wrote one: it names old ones */
	if (rc == 0 && unlinkat(objfd, "info/packs", 0) < 0 && errno != ENOENT)
		rc = -errno;
	if (rc == 0)
		rc = io_fsync(h->o.io, "hist.prune.unlink", objfd);
	return rc;
}

/* Step 4: the intent and its directory. */
static int remove_intent(struct hist *h, int dirfd)
{
	int rc = io_unlinkat(h->o.io, "hist.prune.done", dirfd, INTENT, 0);

	if (rc == 0 || rc == -ENOENT)
		rc = remove_all_but(h, dirfd, NULL);
	if (rc == 0)
		rc = io_unlinkat(h->o.io, "hist.prune.done", h->repo_fd,
				 HIST_PRUNE_DIR, AT_REMOVEDIR);
	if (rc == 0)
		rc = io_fsync(h->o.io, "hist.prune.done", h->repo_fd);
	return rc;
}

int hist_epoch_install(struct hist *h, int dirfd, const struct hist_epoch *ep)
{
	int objfd = -1, packfd = -1, rc;

	objfd = openat(h->repo_fd, "objects",
		       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (objfd >= 0)
		packfd =
			openat(objfd, "pack",
			       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	rc = objfd < 0 || packfd < 0 ? -errno : 0;
	if (rc == 0)
		rc = move_pack(h, dirfd, packfd, ep->pack);
	if (rc == 0 && ep->has_side)
		rc = set_ref(h, HIST_SIDE_NAME, &ep->side);
	if (rc == 0)
		rc = set_ref(h, "main", &ep->main);
	if (rc == 0)
		rc = io_fsync(h->o.io, "hist.prune.ref.dirsync", h->heads_fd);
	if (rc == 0)
		rc = remove_old(h, objfd, packfd, ep->pack);
	if (rc == 0)
		rc = remove_intent(h, dirfd);
	if (rc)
		rerr_prefix(rc,
			    "%s: cannot put the new history epoch in place "
			    "(finished at the next open)",
			    h->path);
	if (packfd >= 0)
		close(packfd);
	if (objfd >= 0)
		close(objfd);
	return rc;
}

int hist_epoch_recover(struct hist *h)
{
	struct hist_epoch ep;
	struct stat st;
	int dirfd, rc;

	if (fstatat(h->repo_fd, HIST_PRUNE_DIR, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	dirfd = openat(h->repo_fd, HIST_PRUNE_DIR,
		       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	rc = intent_read(h, dirfd, &ep);
	if (rc == -ENOENT) {
		/* cut short before its commit point: the old epoch stays */
		rc = remove_intent(h, dirfd);
		if (rc == 0) /* logged: a note on an open that succeeds */
			rlog_info("%s: removed a prune that a crash cut short "
				  "(the history is as it was)",
				  h->path);
	} else if (rc == 0) {
		rc = hist_epoch_install(h, dirfd, &ep);
		if (rc == 0) /* logged: a note on an open that succeeds */
			rlog_info("%s: finished a prune that a crash cut "
				  "short",
				  h->path);
	}
	close(dirfd);
	return rc;
}

/* ---- size ------------------------------------------------------------------
 */

/* Add the sizes of the files in `dirfd` (and, depth 1, its fan-out
   directories) to *bytes. */
static int dir_bytes(int dirfd, int depth, uint64_t *bytes)
{
	struct dirent *de;
	DIR *dir = NULL;
	int rc = util_opendir_fd(dirfd, &dir);

	while (rc == 0 && (de = readdir(dir)) != NULL) {
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISREG(st.st_mode))
			*bytes += (uint64_t)st.st_size;
		else if (S_ISDIR(st.st_mode) && depth > 0) {
			int fd = openat(dirfd, de->d_name,
					O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
						O_CLOEXEC);

			if (fd >= 0) {
				rc = dir_bytes(fd, depth - 1, bytes);
				close(fd);
			}
		}
	}
	if (dir)
		closedir(dir);
	return rc;
}

int hist_size(struct hist *h, uint64_t *bytes)
{
	int fd = openat(h->repo_fd, "objects",
			O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int rc;

	*bytes = 0;
	if (fd < 0)
		return -errno;
	rc = dir_bytes(fd, 1, bytes);
	close(fd);
	return rc;
}
