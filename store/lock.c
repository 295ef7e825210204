/*
 * lock.c - the store lock: STORE/lock, a JSON holder record
 * {"pid":N,"host":"...","start":"..."} held with flock(LOCK_EX).
 *
 * The flock is what excludes a second holder; the record only tells people
 * who holds it. The kernel drops a flock when the last fd of its open file
 * description is closed, so a holder killed with SIGKILL leaves a record
 * but no flock: the next acquire on this host sees the flock free and
 * recovers the lock (with a warning). A record naming another host is
 * refused even when the flock is free, because flock does not reach across
 * hosts on network filesystems: a person decides (`recfsctl unlock
 * --force`).
 *
 * The record is untrusted input: it is read bounded (LOCK_MAX_BYTES),
 * checked field by field, and whatever it says is cleaned of control
 * characters before it goes into a message.
 */
#include "lock.h"
#include "util.h"
#include "err.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOCK_MAX_BYTES 4096	    /* a longer record is garbage */
#define LOCK_HOST_MAX 256	    /* host names in records, with the NUL */
#define LOCK_TIME_MAX 64	    /* start times in records, with the NUL */
#define LOCK_OPEN_TRIES 8	    /* lock file replaced under us: retry */
#define LOCK_BUSY_TRIES 5	    /* flock busy: retry (lock_holder probes) */
#define LOCK_BUSY_WAIT_NS 10000000L /* 10 ms between those tries */

struct store_lock {
	int fd;			   /* holds the flock */
	bool shared;		   /* lock_acquire_shared: no record of ours */
	char host[LOCK_HOST_MAX];  /* our host name, cleaned */
	char start[LOCK_TIME_MAX]; /* when we took the lock */
};

/* A holder record as read from the lock file. */
struct holder {
	bool empty; /* no record: fresh file or released cleanly */
	long long pid;
	char host[LOCK_HOST_MAX];
	char start[LOCK_TIME_MAX];
};

static int our_host(char *buf, size_t len)
{
	char raw[HOST_NAME_MAX + 1];

	if (gethostname(raw, sizeof(raw)) < 0)
		return -errno;
	raw[sizeof(raw) - 1] = '\0';
	/* cleaned like a record's host, so the two compare equal */
	util_clean_copy(buf, len, raw);
	return 0;
}

static ssize_t pread_full(int fd, char *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static int pwrite_full(int fd, const char *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, buf + done, len - done, (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

/* Copy a string member of `obj` into dst; false if absent, not a string,
 * empty or too long. */
static bool get_str(json_t *obj, const char *key, char *dst, size_t len)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    json_string_length(v) >= len)
		return false;
	util_clean_copy(dst, len, json_string_value(v));
	return true;
}

/*
 * Read the holder record of the open lock file `fd` into *h. Returns 0
 * (h->empty if there is none), -EBADMSG with `why` filled if it is not a
 * valid record, or -errno on a read error.
 */
static int holder_read(int fd, struct holder *h, char *why, size_t whylen)
{
	char buf[LOCK_MAX_BYTES + 1];
	json_error_t jerr;
	json_t *doc = NULL;
	json_t *pid = NULL;
	ssize_t n;
	int ret;

	memset(h, 0, sizeof(*h));
	n = pread_full(fd, buf, sizeof(buf));
	if (n < 0) {
		ret = (int)n;
		util_say(why, whylen, "cannot read it: %s", strerror(-ret));
		goto out;
	}
	if (n == 0) {
		h->empty = true;
		ret = 0;
		goto out;
	}
	ret = -EBADMSG;
	if (n > LOCK_MAX_BYTES) {
		util_say(why, whylen, "larger than %d bytes", LOCK_MAX_BYTES);
		goto out;
	}
	doc = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		char text[JSON_ERROR_TEXT_LENGTH];

		util_clean_copy(text, sizeof(text), jerr.text);
		util_say(why, whylen, "not valid JSON at line %d column %d: %s",
			 jerr.line, jerr.column, text);
		goto out;
	}
	if (!json_is_object(doc)) {
		util_say(why, whylen, "not a JSON object");
		goto out;
	}
	pid = json_object_get(doc, "pid");
	/* pid 0 and negative pids would make kill() signal whole groups */
	if (!json_is_integer(pid) || json_integer_value(pid) <= 0 ||
	    json_integer_value(pid) > INT_MAX) {
		util_say(why, whylen,
			 "\"pid\" is missing or not a positive integer");
		goto out;
	}
	h->pid = json_integer_value(pid);
	if (!get_str(doc, "host", h->host, sizeof(h->host))) {
		util_say(why, whylen, "\"host\" is missing or not a host name");
		goto out;
	}
	if (!get_str(doc, "start", h->start, sizeof(h->start))) {
		util_say(why, whylen, "\"start\" is missing or not a time");
		goto out;
	}
	ret = 0;
out:
	json_decref(doc);
	return ret;
}

/* Replace the record in `fd` with ours: truncate, write, fsync. */
static int record_write(int fd, pid_t pid, const char *host, const char *start)
{
	char buf[LOCK_MAX_BYTES];
	json_t *rec = NULL;
	size_t n;
	int ret;

	rec = json_pack("{s:I, s:s, s:s}", "pid", (json_int_t)pid, "host", host,
			"start", start);
	if (!rec) {
		ret = -ENOMEM;
		goto out;
	}
	n = json_dumpb(rec, buf, sizeof(buf) - 1, JSON_COMPACT);
	if (n == 0 || n > sizeof(buf) - 1) {
		ret = -ENOMEM;
		goto out;
	}
	buf[n++] = '\n';
	if (ftruncate(fd, 0) < 0) {
		ret = -errno;
		goto out;
	}
	ret = pwrite_full(fd, buf, n);
	if (ret < 0)
		goto out;
	if (fsync(fd) < 0)
		ret = -errno;
out:
	if (ret < 0)
		rerr_set(ret, "%s: cannot write the holder record: %s",
			 LOCK_FILE, strerror(-ret));
	json_decref(rec);
	return ret;
}

static int flock_nb(int fd, int op)
{
	int r;

	do {
		r = flock(fd, op | LOCK_NB);
	} while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

/*
 * Open the lock file and take the flock. Returns 0 (locked), -EBUSY
 * (someone holds it; *fdp is open so the record can be read) or -errno
 * (*fdp is -1).
 */
static int open_and_flock(int dirfd, bool shared, int *fdp, char *msg,
			  size_t msglen)
{
	const int flags = shared ? O_RDONLY : O_RDWR | O_CREAT;
	const int op = shared ? LOCK_SH : LOCK_EX;
	const struct timespec nap = {0, LOCK_BUSY_WAIT_NS};
	struct stat st;
	struct stat now;
	int fd = -1;
	int tries;
	int busy;
	int ret = -EBUSY;

	for (tries = 0; tries < LOCK_OPEN_TRIES; tries++) {
		fd = openat(dirfd, LOCK_FILE, flags | O_NOFOLLOW | O_CLOEXEC,
			    0600);
		if (fd < 0) {
			ret = -errno;
			util_say(msg, msglen, "cannot open the lock file: %s",
				 strerror(-ret));
			goto out;
		}
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			ret = -EINVAL;
			util_say(msg, msglen,
				 "the lock file is not a regular file");
			goto out;
		}
		/*
		 * A few short retries when busy: lock_holder() takes the
		 * flock shared for an instant to see whether anyone holds it.
		 */
		for (busy = 0; busy < LOCK_BUSY_TRIES; busy++) {
			ret = flock_nb(fd, op);
			if (ret != -EWOULDBLOCK)
				break;
			nanosleep(&nap, NULL);
		}
		if (ret == -EWOULDBLOCK) {
			ret = -EBUSY;
			goto out;
		}
		if (ret < 0) {
			util_say(msg, msglen, "cannot lock the lock file: %s",
				 strerror(-ret));
			goto out;
		}
		/*
		 * `unlock --force` may have removed the file between our open
		 * and our flock: then we locked an orphan inode and must
		 * start over on the file that is there now.
		 */
		if (fstatat(dirfd, LOCK_FILE, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
		    now.st_dev == st.st_dev && now.st_ino == st.st_ino) {
			*fdp = fd;
			return 0;
		}
		close(fd);
		fd = -1;
	}
	ret = -EBUSY;
	util_say(msg, msglen, "the lock file keeps being replaced");
out:
	if (ret == -EBUSY && fd >= 0) {
		*fdp = fd;
		return ret;
	}
	if (fd >= 0)
		close(fd);
	*fdp = -1;
	return ret;
}

/* Say who holds a flock we could not get. */
static void describe_busy(int fd, char *msg, size_t msglen)
{
	struct holder h;
	char why[160];

	if (holder_read(fd, &h, why, sizeof(why)) < 0)
		util_say(msg, msglen,
			 "store is locked by another process (its lock record "
			 "is "
			 "unreadable: %s)",
			 why);
	else if (h.empty)
		util_say(msg, msglen,
			 "store is locked by another process (its lock record "
			 "is "
			 "not written yet)");
	else
		util_say(msg, msglen,
			 "store is locked by pid %lld on host %s since %s",
			 h.pid, h.host, h.start);
}

/*
 * We hold the flock: decide from the old record whether we may take over.
 * Returns 0 (take it) or -EBUSY (another host's record) or -errno.
 */
static int judge_record(int fd, const char *host, bool shared, char *msg,
			size_t msglen)
{
	struct holder h;
	char why[160];
	int ret;

	ret = holder_read(fd, &h, why, sizeof(why));
	if (ret == -EBADMSG) {
		/* nobody on this host holds it; another host would have
		 * written a valid record: a torn write or junk */
		if (!shared)
			rlog_warn("lock: replacing an unreadable lock record "
				  "(%s)",
				  why);
		return 0;
	}
	if (ret < 0) {
		util_say(msg, msglen, "cannot read the lock file: %s", why);
		return ret;
	}
	if (h.empty)
		return 0;
	if (strcmp(h.host, host) != 0) {
		util_say(msg, msglen,
			 "store lock is held by host %s (pid %lld, since %s) "
			 "and "
			 "cannot be checked from here; run `recfsctl unlock "
			 "--force "
			 "STORE` if that process is gone",
			 h.host, h.pid, h.start);
		return -EBUSY;
	}
	if (shared)
		rlog_info("lock: the stale lock record of pid %lld (since %s) "
			  "is left as it is (opened read-only)",
			  h.pid, h.start);
	else if (kill((pid_t)h.pid, 0) < 0 && errno == ESRCH)
		rlog_warn("recovered stale lock of pid %lld (since %s)", h.pid,
			  h.start);
	else
		rlog_warn("recovered stale lock of pid %lld (since %s): that "
			  "pid is running but did not hold the lock",
			  h.pid, h.start);
	return 0;
}

int lock_acquire(struct store_lock **out, int dirfd, char *msg, size_t msglen)
{
	struct store_lock *l = NULL;
	int fd = -1;
	int ret;

	*out = NULL;
	util_say(msg, msglen, "%s", "");
	l = calloc(1, sizeof(*l));
	if (!l) {
		ret = -ENOMEM;
		goto out;
	}
	l->fd = -1;
	ret = our_host(l->host, sizeof(l->host));
	if (ret < 0) {
		util_say(msg, msglen, "cannot get the host name: %s",
			 strerror(-ret));
		goto out;
	}
	ret = open_and_flock(dirfd, false, &fd, msg, msglen);
	if (ret == -EBUSY && fd >= 0)
		describe_busy(fd, msg, msglen);
	if (ret < 0)
		goto out;
	ret = judge_record(fd, l->host, false, msg, msglen);
	if (ret < 0)
		goto out;
	ret = util_now_iso(l->start, sizeof(l->start));
	if (ret < 0)
		goto out;
	ret = record_write(fd, getpid(), l->host, l->start);
	if (ret < 0) {
		util_say(msg, msglen, "cannot write the lock file: %s",
			 strerror(-ret));
		goto out;
	}
	l->fd = fd;
	fd = -1;
	*out = l;
	l = NULL;
out:
	/* closing our fd drops our flock, if we had it */
	if (fd >= 0)
		close(fd);
	free(l);
	return ret;
}

int lock_acquire_shared(struct store_lock **out, int dirfd, char *msg,
			size_t msglen)
{
	struct store_lock *l = NULL;
	int fd = -1;
	int ret;

	*out = NULL;
	util_say(msg, msglen, "%s", "");
	l = calloc(1, sizeof(*l));
	if (!l) {
		ret = -ENOMEM;
		goto out;
	}
	l->fd = -1;
	l->shared = true;
	ret = our_host(l->host, sizeof(l->host));
	if (ret < 0) {
		util_say(msg, msglen, "cannot get the host name: %s",
			 strerror(-ret));
		goto out;
	}
	ret = open_and_flock(dirfd, true, &fd, msg, msglen);
	if (ret == -EBUSY && fd >= 0)
		describe_busy(fd, msg, msglen);
	if (ret == -ENOENT) {
		/* no lock file, so no holder; creating one is a write */
		util_say(msg, msglen, "%s", "");
		ret = 0;
	} else if (ret == 0) {
		ret = judge_record(fd, l->host, true, msg, msglen);
	}
	if (ret < 0)
		goto out;
	l->fd = fd;
	fd = -1;
	*out = l;
	l = NULL;
out:
	if (fd >= 0)
		close(fd);
	free(l);
	return ret;
}

/*
 * The flock belongs to the open file description, which fork() shares: a
 * daemon that forks and lets its parent exit keeps the lock in the child,
 * which then calls this so the record names it. Only one of the two
 * processes may call lock_release() (it empties the record both see).
 */
int lock_refresh(struct store_lock *l)
{
	if (!l || l->fd < 0 || l->shared)
		return -EINVAL;
	return record_write(l->fd, getpid(), l->host, l->start);
}

void lock_release(struct store_lock *l)
{
	if (!l)
		return;
	/* empty first: once the flock drops, a waiter may read it */
	if (l->fd >= 0 && !l->shared && ftruncate(l->fd, 0) < 0)
		/* a release returns nothing: a note */
		rlog_warn("lock: cannot empty the lock file: %s",
			  strerror(errno));
	if (l->fd >= 0)
		close(l->fd);
	free(l);
}

/*
 * Probes with a shared flock taken and dropped at once (flock has no
 * "test" operation); lock_acquire() retries briefly so that a probe does
 * not make it fail.
 */
int lock_holder(int dirfd, char *msg, size_t msglen)
{
	struct holder h;
	struct stat st;
	char why[160];
	bool held;
	int fd = -1;
	int hr;
	int ret;

	fd = openat(dirfd, LOCK_FILE,
		    O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		if (ret == -ENOENT)
			util_say(msg, msglen, "store is not locked");
		else
			util_say(msg, msglen, "cannot open the lock file: %s",
				 strerror(-ret));
		goto out;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		util_say(msg, msglen, "the lock file is not a regular file");
		goto out;
	}
	ret = flock_nb(fd, LOCK_SH);
	if (ret < 0 && ret != -EWOULDBLOCK) {
		util_say(msg, msglen, "cannot test the lock: %s",
			 strerror(-ret));
		goto out;
	}
	held = ret == -EWOULDBLOCK;
	hr = holder_read(fd, &h, why, sizeof(why));
	if (hr < 0 && hr != -EBADMSG) {
		ret = hr;
		util_say(msg, msglen, "cannot read the lock file: %s", why);
		goto out;
	}
	ret = 0;
	if (held) {
		describe_busy(fd, msg, msglen);
	} else if (hr == 0 && !h.empty) {
		char host[LOCK_HOST_MAX];

		ret = our_host(host, sizeof(host));
		if (ret < 0) {
			util_say(msg, msglen, "cannot get the host name: %s",
				 strerror(-ret));
			goto out;
		}
		if (strcmp(h.host, host) != 0) {
			util_say(msg, msglen,
				 "store lock is held by host %s (pid %lld, "
				 "since "
				 "%s); it cannot be checked from here",
				 h.host, h.pid, h.start);
		} else {
			ret = -ENOENT;
			util_say(msg, msglen,
				 "store is not locked (the stale record of pid "
				 "%lld since %s will be recovered)",
				 h.pid, h.start);
		}
	} else if (hr == -EBADMSG) {
		ret = -ENOENT;
		util_say(msg, msglen,
			 "store is not locked (an unreadable lock record will "
			 "be "
			 "replaced: %s)",
			 why);
	} else {
		ret = -ENOENT;
		util_say(msg, msglen, "store is not locked");
	}
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

/*
 * May `unlock --force` remove the lock whose file is open as `fd`? It takes
 * the flock itself, so that a holder on this host shows as busy (and no
 * one takes the lock between this check and the unlink, which the caller
 * does while it holds the flock; a waiter then finds the file replaced,
 * see open_and_flock). Returns 0 (remove it; `msg` says whose it was),
 * -EBUSY (a live process on this host holds it; `msg` names it) or -errno.
 */
static int judge_force(int fd, char *msg, size_t msglen)
{
	const struct timespec nap = {0, LOCK_BUSY_WAIT_NS};
	char host[LOCK_HOST_MAX];
	char who[LOCK_HOST_MAX + 2 * LOCK_TIME_MAX];
	struct holder h;
	char why[160];
	int busy;
	int hr;
	int ret;

	ret = our_host(host, sizeof(host));
	if (ret < 0) {
		util_say(msg, msglen, "cannot get the host name: %s",
			 strerror(-ret));
		return ret;
	}
	/* retried briefly: lock_holder() probes with a shared flock */
	for (busy = 0; busy < LOCK_BUSY_TRIES; busy++) {
		ret = flock_nb(fd, LOCK_EX);
		if (ret != -EWOULDBLOCK)
			break;
		nanosleep(&nap, NULL);
	}
	if (ret < 0 && ret != -EWOULDBLOCK) {
		util_say(msg, msglen, "cannot test the lock: %s",
			 strerror(-ret));
		return ret;
	}
	hr = holder_read(fd, &h, why, sizeof(why));
	if (hr < 0 && hr != -EBADMSG) {
		util_say(msg, msglen, "cannot read the lock file: %s", why);
		return hr;
	}
	if (hr == 0 && !h.empty && strcmp(h.host, host) != 0) {
		/* flock may not reach across hosts: a person decided */
		util_say(msg, msglen,
			 "removing the lock of pid %lld on host %s (since "
			 "%s), which cannot be checked from here: make sure "
			 "that process is gone",
			 h.pid, h.host, h.start);
		return 0;
	}
	if (ret == -EWOULDBLOCK) {
		describe_busy(fd, who, sizeof(who));
		util_say(msg, msglen,
			 "%s: a live process on this host holds it; unmount "
			 "the store (or stop that process) instead",
			 who);
		return -EBUSY;
	}
	if (hr == 0 && !h.empty)
		util_say(msg, msglen,
			 "removing the stale lock of pid %lld on host %s "
			 "(since %s): no process holds it",
			 h.pid, h.host, h.start);
	else
		util_say(msg, msglen, "store was not locked");
	return 0;
}

int lock_force(int dirfd, char *msg, size_t msglen)
{
	struct stat st;
	int fd = -1;
	int ret;

	util_say(msg, msglen, "%s", "");
	fd = openat(dirfd, LOCK_FILE,
		    O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		ret = errno == ENOENT ? 0 : -errno;
		util_say(msg, msglen, "%s",
			 ret ? strerror(-ret) : "store was not locked");
		goto out;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		util_say(msg, msglen, "the lock file is not a regular file");
		goto out;
	}
	ret = judge_force(fd, msg, msglen);
	if (ret < 0)
		goto out;
	/* still holding the flock (unless another host's), so no one on
	   this host takes the lock in between */
	if (unlinkat(dirfd, LOCK_FILE, 0) < 0 && errno != ENOENT) {
		ret = -errno;
		util_say(msg, msglen, "cannot remove the lock file: %s",
			 strerror(-ret));
	}
out:
	if (fd >= 0)
		close(fd);
	return ret;
}
