/*
 * ctl_history.c - recfsctl subcommands over the history (SPEC sections 5
 * and 7): log, diff, rollback. They open an unmounted store; on a mount
 * point, diff reads MNT/ID@N and rollback writes MNT/ID@N, so the daemon
 * does the work under its lock, and log reads the store's history.git
 * directly, read-only and without the lock (store_open_history: git
 * readers are safe next to the daemon's writer), after asking the daemon
 * to write its history up to now (the control verb "drain").
 */
#include "buf.h"
#include "ctl.h"
#include "store.h"
#include "store_history.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

/* ---- shared ------------------------------------------------------------- */

bool ctl_is_store_dir(const char *dir)
{
	char path[4096];
	struct stat st;

	snprintf(path, sizeof(path), "%s/format.json", dir);
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool ctl_is_mount(const char *dir)
{
	char v[32];

	return getxattr(dir, "user.recfs.revision", v, sizeof(v)) > 0;
}

enum ctl_target ctl_target(const char *target)
{
	if (ctl_is_store_dir(target))
		return CTL_STORE;
	if (ctl_is_mount(target))
		return CTL_MOUNT;
	if (strncmp(target, "etcd://", 7) == 0) {
		fprintf(stderr,
			"recfsctl %s: %s: a store on etcd has no history yet "
			"(a later phase of issue 16); give the mount point of "
			"a store on etcd where a command works without it "
			"(show, update, stats)\n",
			ctl_name(), target);
		return CTL_NEITHER;
	}
	fprintf(stderr,
		"recfsctl %s: %s: neither a recfs mount point nor a store "
		"directory\n",
		ctl_name(), target);
	return CTL_NEITHER;
}

static int parse_version(const char *s, uint64_t *v)
{
	char *end;

	errno = 0;
	*v = strtoull(s, &end, 10);
	return (errno || end == s || *end || *s == '-') ? -EINVAL : 0;
}

static void iso_time(const struct timespec *t, char buf[40])
{
	struct tm tm;

	if (!gmtime_r(&t->tv_sec, &tm) ||
	    !strftime(buf, 40, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, 40, "%lld", (long long)t->tv_sec);
}

void ctl_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* ---- log ---------------------------------------------------------------- */

struct log_out {
	bool json;
	unsigned n;
};

static int log_one(void *arg, const char *id, const struct store_version *v)
{
	struct log_out *o = arg;
	char when[40], hash[64] = "";

	iso_time(&v->time, when);
	if (v->hash_valid)
		store_hash_format(v->hash, hash);
	o->n++;
	if (o->json) {
		printf("{\"id\":");
		ctl_json_str(stdout, id);
		printf(",\"version\":%" PRIu64 ",\"revision\":%" PRIu64
		       ",\"time\":\"%s\",\"uid\":%u,\"pid\":%u,\"comm\":",
		       v->version, v->revision, when, v->uid, v->pid);
		ctl_json_str(stdout, v->comm);
		printf(",\"size\":%" PRIu64
		       ",\"hash\":\"%s\",\"commit\":\"%s\","
		       "\"deleted\":%s,\"pruned\":%s}\n",
		       v->size, hash, v->commit, v->deleted ? "true" : "false",
		       v->pruned ? "true" : "false");
		return 0;
	}
	printf("%-8" PRIu64 " %-9" PRIu64 " %s %6u %-16s %10" PRIu64
	       " %.12s %s%s\n",
	       v->version, v->revision, when, v->uid,
	       v->comm[0] ? v->comm : "-", v->size,
	       v->commit[0] ? v->commit : "pending", id,
	       v->deleted  ? " (deleted)"
	       : v->pruned ? " (pruned)"
			   : "");
	return 0;
}

/*
 * The history of the store mounted on `mnt`: the daemon writes what it
 * has not yet (if we may ask it: its user or root; else what git has is
 * listed), then history.git is read directly.
 */
static int open_mount_history(const char *mnt, struct store **s)
{
	char store[4096];
	int rc;

	rc = ctl_mount_store(mnt, store, sizeof(store));
	if (rc) {
		fprintf(stderr,
			"recfsctl log: %s: the daemon does not say "
			"where its store is (an older recfs?)\n",
			mnt);
		return rc;
	}
	/* not ours to ask (EPERM), or a read-only mount: nothing to drain */
	rc = ctl_send(mnt, "drain", "");
	if (rc && rc != -EPERM && rc != -ETIMEDOUT && rc != -EROFS)
		fprintf(stderr, "recfsctl log: %s: history: %s\n", mnt,
			ctl_why(rc));
	rc = store_open_history(s, store);
	if (rc)
		fprintf(stderr,
			"recfsctl log: %s: cannot read the history of "
			"%s: %s\n",
			mnt, store, ctl_why(rc));
	return rc;
}

int ctl_log(int argc, char **argv)
{
	struct log_out o = {.json = ctl_take_flag(&argc, argv, "--json")};
	struct store *s = NULL;
	const char *id;
	int rc;

	if (argc != 2 && argc != 3)
		return ctl_usage_error("expects TARGET [ID]");
	id = argc == 3 ? argv[2] : NULL;
	switch (ctl_target(argv[1])) {
	case CTL_NEITHER:
		return EXIT_FAIL;
	case CTL_MOUNT:
		if (open_mount_history(argv[1], &s))
			return EXIT_FAIL;
		break;
	case CTL_STORE:
		if (ctl_open_target(argv[1], &s))
			return EXIT_FAIL;
		rc = store_history_drain(s, 10000);
		if (rc && rc != -ETIMEDOUT)
			fprintf(stderr, "recfsctl log: history: %s\n",
				ctl_why(rc));
	}
	if (!o.json)
		printf("%-8s %-9s %-20s %6s %-16s %10s %-12s %s\n", "VERSION",
		       "REVISION", "TIME", "UID", "COMMAND", "SIZE", "COMMIT",
		       "ID");
	rc = store_history_each(s, id, log_one, &o);
	if (rc)
		ctl_error(rc, "%s", id ? id : argv[1]);
	else if (id && o.n == 0)
		fprintf(stderr, "recfsctl log: record %s: no history\n", id);
	store_close(s);
	return rc || (id && o.n == 0) ? EXIT_FAIL : EXIT_OK;
}

/* ---- reading a version from a store or a mount --------------------------- */

/* Content of ID@N (N 0: the current version) into *buf. */
static int get_version(const char *target, struct store *s, const char *id,
		       uint64_t n, void **buf, size_t *len)
{
	struct buf b = BUF_INIT;
	char path[8192];
	int fd, rc;

	if (s && n)
		return store_history_get(s, id, n, buf, len, NULL);
	if (s)
		return store_get(s, id, buf, len, NULL);
	if (n)
		snprintf(path, sizeof(path), "%s/%s@%" PRIu64, target, id, n);
	else
		snprintf(path, sizeof(path), "%s/%s", target, id);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = buf_read_fd(&b, fd, SIZE_MAX);
	close(fd);
	if (rc) {
		buf_free(&b);
		return rc;
	}
	*buf = buf_detach(&b, len);
	return *buf ? 0 : -ENOMEM;
}

/* Open `target` as a store (if it is one) or accept it as a mount. */
static int open_target(const char *target, struct store **s)
{
	*s = NULL;
	switch (ctl_target(target)) {
	case CTL_STORE:
		return ctl_open_store(target, false, s) ? -EIO : 0;
	case CTL_MOUNT:
		return 0;
	default:
		return -EINVAL;
	}
}

static int write_tmp(const void *buf, size_t len, char path[64])
{
	int fd, rc;

	snprintf(path, 64, "/tmp/recfsctl.XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	rc = util_write_all(fd, buf, len);
	close(fd);
	return rc;
}

/* ---- diff --------------------------------------------------------------- */

int ctl_diff(int argc, char **argv)
{
	char a_path[64] = "", b_path[64] = "", la[64], lb[64];
	void *a = NULL, *b = NULL;
	size_t alen = 0, blen = 0;
	struct store *s = NULL;
	uint64_t n, m;
	int rc, status = 2;
	pid_t pid;

	if (argc != 5)
		return ctl_usage_error("expects TARGET ID N M");
	if (parse_version(argv[3], &n) || parse_version(argv[4], &m) || !n ||
	    !m)
		return ctl_usage_error("N and M are versions (1, 2, ...)");
	if (open_target(argv[1], &s))
		return EXIT_FAIL;
	rc = get_version(argv[1], s, argv[2], n, &a, &alen);
	if (rc == 0)
		rc = get_version(argv[1], s, argv[2], m, &b, &blen);
	if (rc) {
		ctl_error(rc, "record %s", argv[2]);
		goto out;
	}
	rc = write_tmp(a, alen, a_path);
	if (rc == 0)
		rc = write_tmp(b, blen, b_path);
	if (rc)
		goto out;
	snprintf(la, sizeof(la), "%.40s@%" PRIu64, argv[2], n);
	snprintf(lb, sizeof(lb), "%.40s@%" PRIu64, argv[2], m);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		execlp("diff", "diff", "-u", "--label", la, "--label", lb,
		       a_path, b_path, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	status = WIFEXITED(status) ? WEXITSTATUS(status) : 2;
out:
	if (a_path[0])
		unlink(a_path);
	if (b_path[0])
		unlink(b_path);
	free(a);
	free(b);
	store_close(s);
	/* like diff(1): 0 same, 1 different */
	return rc ? EXIT_FAIL : status == 0 || status == 1 ? status : EXIT_FAIL;
}

/* ---- rollback ----------------------------------------------------------- */

/* Through a mount: write the content of ID@N as ID@current. */
static int rollback_mount(const char *mnt, const char *id, const void *buf,
			  size_t len)
{
	char path[8192], v[32];
	uint64_t cur;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%s", mnt, id);
	n = getxattr(path, "user.recfs.version", v, sizeof(v) - 1);
	if (n < 0 && errno != ENOENT)
		return -errno;
	v[n > 0 ? n : 0] = '\0';
	cur = n > 0 ? strtoull(v, NULL, 10) : 0;
	snprintf(path, sizeof(path), "%s/%s@%" PRIu64, mnt, id, cur);
	return util_write_file(path, buf, len);
}

int ctl_rollback(int argc, char **argv)
{
	const char *to = ctl_take_option(&argc, argv, "--to");
	bool dry = ctl_take_flag(&argc, argv, "--dry-run");
	struct store_result res = {0};
	struct store *s = NULL;
	void *buf = NULL;
	size_t len = 0;
	uint64_t n;
	int rc;

	if (argc == 2 && to)
		return ctl_rollback_store(argc, argv, to, dry);
	if (argc != 3 || !to)
		return ctl_usage_error("expects TARGET ID --to N, or STORE "
				       "--to REVISION|DATE");
	if (dry)
		return ctl_usage_error("--dry-run is for STORE --to "
				       "REVISION|DATE");
	if (parse_version(to, &n) || n == 0)
		return ctl_usage_error("--to takes a version (1, 2, ...)");
	if (open_target(argv[1], &s))
		return EXIT_FAIL;
	rc = get_version(argv[1], s, argv[2], n, &buf, &len);
	if (rc == 0 && s) {
		struct store_meta m;
		struct store_commit_args a = {.mode = -1};

		/* conditional on the version we saw: never a blind write */
		rc = store_stat(s, argv[2], &m, false);
		a.cond.kind =
			rc == 0 ? STORE_COND_IF_VERSION : STORE_COND_CREATE;
		a.cond.version = rc == 0 ? m.version : 0;
		rc = rc == 0 || rc == -ENOENT
			     ? store_put(s, argv[2], buf, len, &a, &res)
			     : rc;
	} else if (rc == 0) {
		rc = rollback_mount(argv[1], argv[2], buf, len);
	}
	if (rc)
		ctl_error(rc, "record %s", argv[2]);
	else if (s)
		printf("%s: version %" PRIu64 " has the content of version "
		       "%" PRIu64 "%s\n",
		       argv[2], res.version, n,
		       res.noop ? " (it already had it)" : "");
	else
		printf("%s: rolled back to the content of version %" PRIu64
		       "\n",
		       argv[2], n);
	free(buf);
	if (store_close(s) && rc == 0)
		rc = -EIO;
	return rc ? EXIT_FAIL : EXIT_OK;
}

/* ---- show ID@N ---------------------------------------------------------- */

int ctl_show_version(const char *target, const char *id, uint64_t n)
{
	struct store *s = NULL;
	void *buf = NULL;
	size_t len = 0;
	int rc;

	if (open_target(target, &s))
		return EXIT_FAIL;
	rc = get_version(target, s, id, n, &buf, &len);
	if (rc)
		ctl_error(rc, "record %s@%" PRIu64, id, n);
	else if (fwrite(buf, 1, len, stdout) != len)
		rc = -EIO;
	free(buf);
	store_close(s);
	return rc ? EXIT_FAIL : EXIT_OK;
}
