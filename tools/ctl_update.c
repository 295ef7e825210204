/*
 * ctl_update.c - `recfsctl update TARGET ID -- CMD ARGS...` (SPEC
 * section 7): the compare-and-swap read-modify-write loop.
 *
 * Each round reads ID and the version it is at, pipes the content
 * through CMD and commits CMD's output conditionally on that version:
 * through a mount as a write to ID@N (ID@0 if it did not exist), on an
 * unmounted store with STORE_COND_IF_VERSION / STORE_COND_CREATE. A
 * conflict (ESTALE) starts a new round after a jittered exponential
 * backoff, within a bound on rounds and on total time.
 */
#include "buf.h"
#include "ctl.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define MAX_OUTPUT (1ull << 30)

struct update {
	const char *target;
	const char *id;
	char **cmd;
	unsigned retries;
	double timeout;	     /* seconds */
	unsigned backoff_ms; /* first backoff */
	struct store *store; /* unmounted store, or NULL for a mount */
	unsigned seed;
};

/* A content read or to write (p malloc'ed). */
struct content {
	char *p;
	size_t len;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* All of fd into b->p (malloc'ed); -EFBIG past `max` bytes. */
static int read_all(int fd, struct content *b, size_t max)
{
	struct buf r = BUF_INIT;
	int rc = buf_read_fd(&r, fd, max);

	if (rc) {
		buf_free(&r);
		b->p = NULL;
		b->len = 0;
		return rc;
	}
	b->p = buf_detach(&r, &b->len);
	return b->p ? 0 : -ENOMEM;
}

static char *join(const char *mnt, const char *id, uint64_t cond, bool with)
{
	size_t n = strlen(mnt) + strlen(id) + 32;
	char *p = malloc(n);

	if (!p)
		return NULL;
	if (with)
		snprintf(p, n, "%s/%s@%" PRIu64, mnt, id, cond);
	else
		snprintf(p, n, "%s/%s", mnt, id);
	return p;
}

/* The version of a record through a mount; 0 if it does not exist. */
static int mount_version(const char *path, uint64_t *v)
{
	char val[32];
	ssize_t n = getxattr(path, "user.recfs.version", val, sizeof(val) - 1);

	if (n < 0)
		return errno == ENOENT ? (*v = 0, 0) : -errno;
	val[n] = '\0';
	*v = strtoull(val, NULL, 10);
	return 0;
}

/*
 * Read content and version consistently: the version before and after
 * the read must agree (versions only grow, so the content read between
 * two equal readings is that version's).
 */
static int read_mount(const struct update *u, struct content *b, uint64_t *ver)
{
	char *path = join(u->target, u->id, 0, false);
	int rc = -EAGAIN;

	if (!path)
		return -ENOMEM;
	for (int tries = 0; tries < 100 && rc == -EAGAIN; tries++) {
		uint64_t v1, v2;
		int fd;

		rc = mount_version(path, &v1);
		if (rc)
			break;
		b->p = NULL;
		b->len = 0;
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 && errno != ENOENT) {
			rc = -errno;
			break;
		}
		if (fd >= 0) {
			rc = read_all(fd, b, MAX_OUTPUT);
			close(fd);
			if (rc)
				break;
		}
		rc = mount_version(path, &v2);
		if (rc == 0 && (v1 != v2 || (fd < 0) != (v1 == 0))) {
			free(b->p);
			rc = -EAGAIN;
		}
		*ver = v1;
	}
	free(path);
	return rc;
}

/* Commit through the mount as ID@ver; -ESTALE on a conflict. */
static int write_mount(const struct update *u, const struct content *out,
		       uint64_t ver)
{
	char *path = join(u->target, u->id, ver, true);
	int rc;

	if (!path)
		return -ENOMEM;
	rc = util_write_file(path, out->p, out->len);
	free(path);
	return rc;
}

static int read_store(const struct update *u, struct content *b, uint64_t *ver)
{
	struct store_meta m;
	void *p = NULL;
	int rc = store_get(u->store, u->id, &p, &b->len, &m);

	if (rc == -ENOENT) {
		b->p = NULL;
		b->len = 0;
		*ver = 0;
		return 0;
	}
	b->p = p;
	*ver = rc ? 0 : m.version;
	return rc;
}

static int write_store(const struct update *u, const struct content *out,
		       uint64_t ver)
{
	struct store_commit_args a = {.mode = -1};

	a.cond.kind = ver ? STORE_COND_IF_VERSION : STORE_COND_CREATE;
	a.cond.version = ver;
	return store_put(u->store, u->id, out->p, out->len, &a, NULL);
}

/* Run the command with `in` on stdin; its stdout into *out. Returns 0,
   -errno, or 1 if the command failed (message printed). */
static int run_cmd(const struct update *u, const struct content *in,
		   struct content *out)
{
	int infd = memfd_create("recfsctl-update", MFD_CLOEXEC),
	    p[2] = {-1, -1};
	int status, rc;
	pid_t pid;

	if (infd < 0 || util_write_all(infd, in->p, in->len) ||
	    lseek(infd, 0, SEEK_SET) < 0 || pipe2(p, O_CLOEXEC) < 0) {
		rc = -errno;
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		goto out;
	}
	if (pid == 0) {
		dup2(infd, 0);
		dup2(p[1], 1);
		execvp(u->cmd[0], u->cmd);
		fprintf(stderr, "recfsctl update: %s: %s\n", u->cmd[0],
			strerror(errno));
		_exit(127);
	}
	close(p[1]);
	p[1] = -1;
	rc = read_all(p[0], out, MAX_OUTPUT);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		fprintf(stderr,
			"recfsctl update: %s: command failed (%s %d); nothing "
			"written\n",
			u->id, WIFEXITED(status) ? "exit status" : "signal",
			WIFEXITED(status) ? WEXITSTATUS(status)
					  : WTERMSIG(status));
		free(out->p);
		rc = 1;
	}
out:
	if (infd >= 0)
		close(infd);
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	return rc;
}

/* Sleep before round `n` (1, 2, ...): base * 2^(n-1), capped at 1 s,
   times a random factor in [0.5, 1.5). */
static void backoff(struct update *u, unsigned n, double deadline)
{
	double ms = u->backoff_ms, left = (deadline - now_s()) * 1000;
	struct timespec ts;

	for (unsigned i = 1; i < n && ms < 1000; i++)
		ms *= 2;
	if (ms > 1000)
		ms = 1000;
	ms *= 0.5 + (double)rand_r(&u->seed) / ((double)RAND_MAX + 1);
	if (ms > left)
		ms = left > 0 ? left : 0;
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)((ms - (double)ts.tv_sec * 1000) * 1e6);
	nanosleep(&ts, NULL);
}

static int update_loop(struct update *u)
{
	double start = now_s(), deadline = start + u->timeout;
	unsigned round;

	for (round = 0; round <= u->retries; round++) {
		struct content in = {0}, out = {0};
		uint64_t ver = 0;
		int rc;

		if (round)
			backoff(u, round, deadline);
		if (now_s() >= deadline)
			break;
		rc = u->store ? read_store(u, &in, &ver)
			      : read_mount(u, &in, &ver);
		if (rc == 0)
			rc = run_cmd(u, &in, &out);
		free(in.p);
		if (rc == 1)
			return EXIT_FAIL;
		if (rc == 0) {
			rc = u->store ? write_store(u, &out, ver)
				      : write_mount(u, &out, ver);
			free(out.p);
		}
		if (rc == 0)
			return EXIT_OK;
		if (rc != -ESTALE && rc != -EAGAIN) {
			ctl_error(rc, "record %s", u->id);
			return EXIT_FAIL;
		}
	}
	fprintf(stderr,
		"recfsctl update: record %s: gave up after %u conflicting "
		"rounds in %.1f s (raise --retries or --timeout)\n",
		u->id, round, now_s() - start);
	return EXIT_FAIL;
}

static int parse_opts(struct update *u, int *argc, char **argv)
{
	const char *r = ctl_take_option(argc, argv, "--retries");
	const char *t = ctl_take_option(argc, argv, "--timeout");
	const char *b = ctl_take_option(argc, argv, "--backoff-ms");
	char *end;

	u->retries = 100;
	u->timeout = 30;
	u->backoff_ms = 2;
	if (r && ((u->retries = (unsigned)strtoul(r, &end, 10)) == 0 || *end))
		return ctl_usage_error("--retries takes a whole number >= 1");
	if (t && ((u->timeout = strtod(t, &end)) <= 0 || *end))
		return ctl_usage_error("--timeout takes seconds > 0");
	if (b &&
	    ((u->backoff_ms = (unsigned)strtoul(b, &end, 10)) == 0 || *end))
		return ctl_usage_error(
			"--backoff-ms takes a whole number >= 1");
	return 0;
}

int ctl_update(int argc, char **argv)
{
	struct update u = {0};
	int dash = 0, rc;

	rc = parse_opts(&u, &argc, argv);
	if (rc)
		return rc;
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--")) {
			dash = i;
			break;
		}
	if (dash != 3 || dash + 1 >= argc)
		return ctl_usage_error("expects TARGET ID -- CMD [ARGS...]");
	u.target = argv[1];
	u.id = argv[2];
	u.cmd = argv + dash + 1;
	if (getrandom(&u.seed, sizeof(u.seed), 0) != sizeof(u.seed))
		u.seed = (unsigned)getpid();
	switch (ctl_target(u.target)) {
	case CTL_STORE:
		if (ctl_open_target(u.target, &u.store))
			return EXIT_FAIL;
		break;
	case CTL_MOUNT:
		break;
	case CTL_NEITHER:
		return EXIT_FAIL;
	}
	rc = update_loop(&u);
	if (u.store && store_close(u.store) && rc == EXIT_OK)
		rc = EXIT_FAIL;
	return rc;
}
