/*
 * ctl.c - the control channel of a mount: recfsctl asks the running
 * daemon to do something with its open store by setting the extended
 * attribute `user.recfs.ctl.VERB` on the mount root, with the verb's
 * argument as the value. The setxattr is synchronous: it returns 0 once
 * the operation is done, or its -errno.
 *
 * Only the daemon's own user and root may use it (anyone else: EPERM).
 * The names are never listed by listxattr and read as ENODATA, so
 * `rsync -aX` and `cp -a` of the mount root never copy them and cannot
 * trigger anything. The work runs in the FUSE thread that got the
 * request; other requests go on meanwhile (commits wait while a backup
 * holds the store's gate).
 *
 * A request that fails says why in the daemon's log, and to its caller:
 * the same process reads `user.recfs.ctl.error` on the mount root next
 * (fs_ctl_error; the setxattr itself can carry only an errno).
 *
 * To add a verb: a function `int verb(struct fs_ctx *, who, const char *arg)`
 * and a line in `verbs` below (and a word in man/recfs.1).
 */
#include "admin.h"
#include "err.h"
#include "fs_i.h"
#include "log.h"
#include "store_history.h"
#include "txn.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CTL_ARG_MAX 4096
#define CTL_DRAIN_DEFAULT_MS 10000
#define CTL_DRAIN_MAX_MS 600000

/* Is `path` (absolute) on this mount? Then the daemon would wait for
   itself: a backup there is refused. */
static bool on_this_mount(struct fs_ctx *c, const char *path)
{
	char parent[PATH_MAX];
	const char *slash = strrchr(path, '/');
	struct stat a, b;

	if (!c->cfg.mountpoint)
		return false;
	snprintf(parent, sizeof(parent), "%.*s",
		 slash == path ? 1 : (int)(slash - path), path);
	/* stat() of our own mount is answered by another of our threads;
	   nothing is held here */
	return stat(parent, &a) == 0 && stat(c->cfg.mountpoint, &b) == 0 &&
	       a.st_dev == b.st_dev;
}

/* Is directory `path` itself on this mount (its root, say)? */
static bool dir_on_this_mount(struct fs_ctx *c, const char *path)
{
	struct stat a, b;

	return c->cfg.mountpoint && stat(path, &a) == 0 &&
	       stat(c->cfg.mountpoint, &b) == 0 && a.st_dev == b.st_dev;
}

/* backup DEST: a consistent copy of the store (store_backup). */
static int ctl_backup(struct fs_ctx *c, const struct store_who *who,
		      const char *arg)
{
	if (arg[0] != '/') {
		rlog_err("ctl backup: %s: not an absolute path", arg);
		return -EINVAL;
	}
	if (on_this_mount(c, arg)) {
		rlog_err("ctl backup: %s: inside the mount itself", arg);
		return -EINVAL;
	}
	return store_backup(c->store, arg, NULL); /* it logs what it did */
}

/* drain [MS]: write the history up to now; wait at most MS (10 s). */
static int ctl_drain(struct fs_ctx *c, const struct store_who *who,
		     const char *arg)
{
	unsigned long ms = CTL_DRAIN_DEFAULT_MS;
	char *end;

	if (arg[0]) {
		errno = 0;
		ms = strtoul(arg, &end, 10);
		if (errno || *end || arg[0] == '-' || ms == 0)
			return -EINVAL;
		if (ms > CTL_DRAIN_MAX_MS)
			ms = CTL_DRAIN_MAX_MS;
	}
	return store_history_drain(c->store, (unsigned)ms);
}

/* checkpoint: fold the journal into the records and a new snapshot. */
static int ctl_checkpoint(struct fs_ctx *c, const struct store_who *who,
			  const char *arg)
{
	return arg[0] ? -EINVAL : store_checkpoint(c->store);
}

/* A revision, or "@EPOCH": the last revision at or before that time. */
static int ctl_revision(struct fs_ctx *c, const char *arg, uint64_t *rev)
{
	const char *digits = arg[0] == '@' ? arg + 1 : arg;
	unsigned long long v;
	char *end;

	if (digits[0] < '0' || digits[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(digits, &end, 10);
	if (errno || *end)
		return -EINVAL;
	if (arg[0] == '@') {
		struct timespec when = {.tv_sec = (time_t)v};

		if (v > (unsigned long long)INT64_MAX / 2)
			return -EINVAL;
		return store_revision_at(c->store, &when, rev);
	}
	*rev = v;
	return 0;
}

/* rollback REVISION|@EPOCH: every record as it was then, as one change
   (store_rollback_to), made by the caller. */
static int ctl_rollback(struct fs_ctx *c, const struct store_who *who,
			const char *arg)
{
	struct store_bulk_args a = {0};
	struct store_bulk_result res;
	uint64_t rev = 0;
	int rc = ctl_revision(c, arg, &rev);

	if (rc) {
		rlog_err("ctl rollback %s: not a revision nor @EPOCH", arg);
		return rc;
	}
	a.who = who;
	rc = store_rollback_to(c->store, rev, &a, &res);
	if (rc == 0) /* changed where the kernel could not see */
		fs_inval_all(c);
	if (rc == 0)
		rlog_info("ctl rollback to revision %" PRIu64 ": revision "
			  "%" PRIu64 ", %zu new versions, %zu deleted, %zu as "
			  "they were",
			  rev, res.revision, res.puts, res.deletes, res.noops);
	return rc;
}

/* import DIR: the regular files under DIR (absolute, not on this mount)
   as new versions, one change (store_import), made by the caller. */
static int ctl_import(struct fs_ctx *c, const struct store_who *who,
		      const char *arg)
{
	struct store_bulk_args a = {0};
	struct store_bulk_result res;
	int rc;

	if (arg[0] != '/') {
		rlog_err("ctl import: %s: not an absolute path", arg);
		return -EINVAL;
	}
	if (on_this_mount(c, arg) || dir_on_this_mount(c, arg)) {
		rlog_err("ctl import: %s: inside the mount itself", arg);
		return -EINVAL;
	}
	a.who = who;
	rc = store_import(c->store, arg, &a, &res);
	if (rc == 0)
		fs_inval_all(c);
	if (rc == 0)
		rlog_info("ctl import %s: revision %" PRIu64 ", %zu new "
			  "versions, %zu unchanged, %zu skipped",
			  arg, res.revision, res.puts, res.noops, res.skipped);
	return rc;
}

/* retain keep N PREFIX | days D PREFIX | off PREFIX | prune: a retention
   policy set (store_retain_set, which prunes at once) or a prune. */
static int ctl_retain(struct fs_ctx *c, const struct store_who *who,
		      const char *arg)
{
	struct store_retain_policy p = {0};
	struct store_retain_report rep;
	const char *sp = strchr(arg, ' ');
	unsigned long long n = 0;
	char *end = NULL;
	int rc;

	if (strcmp(arg, "prune") == 0) {
		rc = store_retain_prune(c->store, &rep);
	} else if (strncmp(arg, "off ", 4) == 0) {
		p.prefix = arg + 4;
		p.kind = STORE_RETAIN_OFF;
		rc = store_retain_set(c->store, &p, &rep);
	} else if (sp && (strncmp(arg, "keep ", 5) == 0 ||
			  strncmp(arg, "days ", 5) == 0)) {
		if (sp[1] >= '0' && sp[1] <= '9')
			n = strtoull(sp + 1, &end, 10);
		if (!end || *end != ' ' || n == 0)
			return -EINVAL;
		p.prefix = end + 1;
		p.kind = arg[0] == 'k' ? STORE_RETAIN_KEEP : STORE_RETAIN_DAYS;
		p.n = n;
		rc = store_retain_set(c->store, &p, &rep);
	} else {
		return -EINVAL;
	}
	if (rc == 0)
		rlog_info("ctl retain %s: pruned %" PRIu64 " versions of "
			  "%" PRIu64 " records",
			  arg, rep.versions, rep.records);
	return rc;
}

/* push [URL]: the history to its remote (or to URL) now. */
static int ctl_push(struct fs_ctx *c, const struct store_who *who,
		    const char *arg)
{
	return store_history_push(c->store, arg[0] ? arg : NULL);
}

static const struct {
	const char *name;
	int (*run)(struct fs_ctx *c, const struct store_who *who,
		   const char *arg);
} verbs[] = {
	{"backup", ctl_backup},
	{"rollback", ctl_rollback},
	{"import", ctl_import},
	{"drain", ctl_drain},
	{"checkpoint", ctl_checkpoint},
	{"retain", ctl_retain},
	{"push", ctl_push},
};

/* Keep (pid 0: drop) the cause of pid's last request. mu held. */
static void ctl_err_keep(struct fs_ctx *c, pid_t pid, const char *msg)
{
	struct fs_ctl_err *e = NULL;

	for (unsigned i = 0; i < FS_CTL_ERRS; i++)
		if (c->ctl_errs[i].pid == pid)
			c->ctl_errs[i].pid = 0;
	if (!msg)
		return;
	e = &c->ctl_errs[c->ctl_err_next++ % FS_CTL_ERRS];
	e->pid = pid;
	snprintf(e->msg, sizeof(e->msg), "%s", msg);
}

int fs_ctl_error(struct fs_ctx *c, pid_t pid, char *buf, size_t size)
{
	int n = -ENODATA;

	pthread_mutex_lock(&c->mu);
	for (unsigned i = 0; i < FS_CTL_ERRS && n < 0; i++) {
		const struct fs_ctl_err *e = &c->ctl_errs[i];

		if (pid == 0 || e->pid != pid)
			continue;
		n = (int)strlen(e->msg);
		if (size && (size_t)n <= size)
			memcpy(buf, e->msg, (size_t)n);
		else if (size)
			n = -ERANGE;
	}
	pthread_mutex_unlock(&c->mu);
	return n;
}

int fs_ctl(struct fs_ctx *c, fuse_req_t req, const char *verb,
	   const char *value, size_t size)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	char arg[CTL_ARG_MAX + 1];
	struct store_who who;
	int rc;

	if (fc->uid != 0 && fc->uid != getuid()) {
		rlog_warn("ctl %s: refused to uid %u (pid %d)", verb,
			  (unsigned)fc->uid, (int)fc->pid);
		return -EPERM;
	}
	if (size > CTL_ARG_MAX || (size && memchr(value, '\0', size)))
		return -EINVAL;
	if (size)
		memcpy(arg, value, size);
	arg[size] = '\0';
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strcmp(verb, verbs[i].name) != 0)
			continue;
		pthread_mutex_lock(&c->mu);
		c->ctl_calls++;
		ctl_err_keep(c, fc->pid, NULL);
		pthread_mutex_unlock(&c->mu);
		rlog_info("ctl %s %s (uid %u, pid %d)", verb, arg,
			  (unsigned)fc->uid, (int)fc->pid);
		fs_who(req, &who);
		rc = verbs[i].run(c, &who, arg);
		if (rc) {
			rlog_err("ctl %s %s: %s", verb, arg, rerr_what(rc));
			pthread_mutex_lock(&c->mu);
			ctl_err_keep(c, fc->pid, rerr_what(rc));
			pthread_mutex_unlock(&c->mu);
		}
		return rc;
	}
	return -EOPNOTSUPP;
}
