/*
 * ctl_watch.c - recfsctl watch TARGET [PREFIX] [--from REVISION] (SPEC
 * section 7): one JSON line per committed change, in revision order, as
 * changes happen.
 *
 * The changes are read from the store directory (store_changes_*,
 * store/changes.c): the history, then the journal. On a mount point the
 * store directory is the one its daemon names in .recfs/status, read
 * directly (without the lock, as `recfsctl log` reads the history), and a
 * journal record is printed only once the mount's revision
 * (user.recfs.revision of its root) says it is committed, so nothing is
 * printed that a failed fdatasync could still take back.
 *
 * Waiting costs nothing while idle: poll(2) on an inotify watch of the
 * journal directory (every commit writes there), a signalfd (SIGINT,
 * SIGTERM: exit 0) and, for a mount point, /proc/self/mountinfo, which
 * is pollable (POLLPRI) when the mount table changes: the watch ends
 * (exit 0) once TARGET is no longer the mount it was, after printing
 * every change committed before. A store directory is followed across
 * unmounts and mounts. The only timed wait is the short one (1 ms
 * doubling to 200 ms) while a written record is not yet committed.
 */
#include "ctl.h"
#include "store.h"
#include "changes.h"
#include "id.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 1
#define BACKOFF_MAX_MS 200

struct watch {
	const char *target;
	bool mount;	    /* target is a mount point */
	dev_t mount_dev;    /* ... whose st_dev this is */
	const char *prefix; /* NULL: every ID */
	size_t prefix_len;
};

/* The store revision of a mount (its root's user.recfs.revision). */
static int mount_revision(const char *mnt, uint64_t *rev)
{
	char v[32], *end;
	ssize_t n = getxattr(mnt, "user.recfs.revision", v, sizeof(v) - 1);

	if (n <= 0)
		return n < 0 ? -errno : -EIO;
	v[n] = '\0';
	errno = 0;
	*rev = strtoull(v, &end, 10);
	return errno || *end ? -EIO : 0;
}

/* Is w->target still the mount we started on? */
static bool still_mounted(const struct watch *w)
{
	struct stat st;

	return stat(w->target, &st) == 0 && st.st_dev == w->mount_dev &&
	       ctl_is_mount(w->target);
}

static bool wanted(const struct watch *w, const char *id)
{
	return !w->prefix ||
	       (strncmp(id, w->prefix, w->prefix_len) == 0 &&
		(id[w->prefix_len] == '\0' || id[w->prefix_len] == '/'));
}

static void print_change(const struct store_change *ch)
{
	char when[64], hash[64];
	struct tm tm;

	if (!gmtime_r(&ch->time.tv_sec, &tm) ||
	    !strftime(when, 32, "%Y-%m-%dT%H:%M:%S", &tm))
		snprintf(when, 32, "%lld", (long long)ch->time.tv_sec);
	snprintf(when + strlen(when), sizeof(when) - strlen(when), ".%09ldZ",
		 ch->time.tv_nsec);
	printf("{\"revision\":%" PRIu64 ",\"op\":\"%s\",\"id\":", ch->revision,
	       ch->op == STORE_CHANGE_DELETE ? "delete" : "put");
	ctl_json_str(stdout, ch->id);
	printf(",\"version\":%" PRIu64, ch->version);
	if (ch->op == STORE_CHANGE_PUT && ch->hash_valid) {
		store_hash_format(ch->hash, hash);
		printf(",\"hash\":\"%s\"", hash);
	} else {
		printf(",\"hash\":null");
	}
	if (ch->op == STORE_CHANGE_PUT)
		printf(",\"size\":%" PRIu64, ch->size);
	else
		printf(",\"size\":null");
	printf(",\"time\":\"%s\",\"uid\":%u,\"pid\":%u,\"comm\":", when,
	       ch->uid, ch->pid);
	ctl_json_str(stdout, ch->comm);
	if (ch->other) {
		printf(ch->op == STORE_CHANGE_PUT ? ",\"from\":" : ",\"to\":");
		ctl_json_str(stdout, ch->other);
	}
	if (ch->op == STORE_CHANGE_PUT && ch->symlink)
		printf(",\"symlink\":true");
	printf("}\n");
}

/* Where the changes are: the store directory itself, or the one the
   daemon of mount point w->target names. */
static int resolve(struct watch *w, char *store, size_t len)
{
	struct stat st;

	switch (ctl_target(w->target)) {
	case CTL_STORE:
		snprintf(store, len, "%s", w->target);
		return 0;
	case CTL_NEITHER:
		return -ENOENT;
	case CTL_MOUNT:
		break;
	}
	if (ctl_mount_store(w->target, store, len) != 0 ||
	    stat(w->target, &st) != 0) {
		fprintf(stderr,
			"recfsctl watch: %s: the daemon does not say where "
			"its store is\n",
			w->target);
		return -EIO;
	}
	w->mount = true;
	w->mount_dev = st.st_dev;
	return 0;
}

/* The signals that end the watch, as a file descriptor to poll. */
static int signals_fd(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -1;
	return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* Has SIGINT or SIGTERM come (without taking it)? */
static bool signalled(int sig_fd)
{
	struct pollfd p = {.fd = sig_fd, .events = POLLIN};

	return poll(&p, 1, 0) == 1;
}

/* Print what is there (up to `durable`); 0 (caught up), -EAGAIN (a
   record waits to be committed), -EINTR (a signal came during a long
   catch-up), or -errno. */
static int print_available(const struct watch *w, struct store_changes *c,
			   uint64_t durable, int sig_fd)
{
	struct store_change ch;
	unsigned n = 0;
	int rc;

	while ((rc = store_changes_next(c, durable, &ch)) == 1) {
		if (wanted(w, ch.id))
			print_change(&ch);
		if (++n % 1024 == 0 && signalled(sig_fd)) {
			rc = -EINTR;
			break;
		}
	}
	if (fflush(stdout) != 0 || ferror(stdout))
		return errno == EPIPE ? -EPIPE : -EIO;
	return rc;
}

static int watch_loop(struct watch *w, struct store_changes *c)
{
	struct pollfd p[3];
	/* on a mount, nothing is known committed until its root says */
	uint64_t durable = w->mount ? 0 : UINT64_MAX;
	int backoff = 0, n = 2, rc;
	bool ended = false;

	p[0] = (struct pollfd){.fd = store_changes_fd(c), .events = POLLIN};
	p[1] = (struct pollfd){.fd = signals_fd(), .events = POLLIN};
	if (p[1].fd < 0) {
		perror("recfsctl watch: signalfd");
		return EXIT_FAIL;
	}
	if (w->mount) {
		/* readable always; POLLPRI when the mount table changed */
		p[2] = (struct pollfd){.fd = open("/proc/self/mountinfo",
						  O_RDONLY | O_CLOEXEC),
				       .events = POLLPRI};
		n = p[2].fd >= 0 ? 3 : 2;
	}
	for (;;) {
		if (w->mount && !ended && mount_revision(w->target, &durable))
			ended = !still_mounted(w);
		if (ended)
			durable = UINT64_MAX; /* no daemon: all is final */
		rc = print_available(w, c, durable, p[1].fd);
		if (rc == -EPIPE || rc == -EINTR)
			break; /* the reader went away, or a signal came */
		if (rc < 0 && rc != -EAGAIN) {
			ctl_error(rc, "%s", w->target);
			close(p[1].fd);
			return EXIT_FAIL;
		}
		if (ended)
			break;
		if (rc == -EAGAIN)
			backoff = backoff ? backoff * 2 : BACKOFF_MIN_MS;
		else
			backoff = 0;
		if (backoff > BACKOFF_MAX_MS)
			backoff = BACKOFF_MAX_MS;
		if (poll(p, (nfds_t)n, backoff ? backoff : -1) < 0 &&
		    errno != EINTR) {
			perror("recfsctl watch: poll");
			break;
		}
		if (p[1].revents)
			break; /* SIGINT or SIGTERM: what was read is out */
		if (n == 3 && (p[2].revents & (POLLPRI | POLLERR)))
			ended = !still_mounted(w);
	}
	close(p[1].fd);
	if (n == 3)
		close(p[2].fd);
	return EXIT_OK;
}

int ctl_watch(int argc, char **argv)
{
	const char *from = ctl_take_option(&argc, argv, "--from");
	struct watch w = {0};
	struct store_changes *c = NULL;
	char store[4096], *end, *prefix = NULL;
	uint64_t after = STORE_CHANGES_NOW;
	int rc, ret;

	if (argc != 2 && argc != 3)
		return ctl_usage_error("expects TARGET [PREFIX]");
	if (from) {
		errno = 0;
		after = strtoull(from, &end, 10);
		if (errno || end == from || *end || from[0] < '0' ||
		    from[0] > '9' || after == 0 || after == UINT64_MAX)
			return ctl_usage_error("--from takes a store revision "
					       "(1, 2, ...)");
		after--;
	}
	w.target = argv[1];
	if (argc == 3) {
		size_t n = strlen(argv[2]);

		prefix = argv[2];
		while (n > 1 && prefix[n - 1] == '/')
			prefix[--n] = '\0';
		if (id_check(prefix) != 0)
			return ctl_usage_error("PREFIX is a record ID or a "
					       "namespace (a, a/b)");
		w.prefix = prefix;
		w.prefix_len = n;
	}
	if (resolve(&w, store, sizeof(store)))
		return EXIT_FAIL;
	if (w.mount && after == STORE_CHANGES_NOW) {
		/* from now on: what the daemon says is committed now */
		rc = mount_revision(w.target, &after);
		if (rc) {
			fprintf(stderr, "recfsctl watch: %s: revision: %s\n",
				w.target, ctl_why(rc));
			return EXIT_FAIL;
		}
	}
	rc = store_changes_open(&c, store, after);
	if (rc) {
		fprintf(stderr,
			"recfsctl watch: %s: cannot read its changes: "
			"%s\n",
			store, ctl_why(rc));
		return EXIT_FAIL;
	}
	ret = watch_loop(&w, c);
	store_changes_free(c);
	return ret;
}
