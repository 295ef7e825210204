/*
 * fsbench.c - the timed loops of tools/bench/fs. The driver compiles it at
 * bench time (cc -O2, with base/util.c) into its temp dir and runs each
 * loop against the recfs mount, a passthrough_ll mount and a plain
 * directory, side by side.
 *
 * Every loop does its setup and warm-up untimed, then prints one number
 * on stdout: a rate (operations or MiB per second). Errors go to stderr
 * with a non-zero exit, so the driver never reports a rate for work that
 * failed. Absolute rates are noise on a shared VM; the driver reports
 * ratios between targets measured in the same run.
 *
 *   fsbench commit MODE DIR COUNT PROCS   durable 4 KiB commits/s
 *       MODE recfs:   open(O_CREAT|O_TRUNC) + write + close per record
 *                     (close is the durable commit)
 *       MODE durable: write a temp file, fsync, rename, fsync the dir
 *   fsbench mkfiles DIR FROM TO SIZE      create f<FROM>..f<TO-1>, untimed
 *   fsbench readfiles DIR COUNT SIZE [DIR...]  open+read+close of each,
 *       warm: one untimed pass per DIR, then the timed one, the DIRs
 *       taking turns every 250 files; one rate per DIR
 *   fsbench seqwrite MODE FILE MIB        sequential write in 1 MiB
 *       writes, then close (MODE recfs: close commits; MODE durable:
 *       fsync before close); MiB/s
 *   fsbench seqread FILE                  one untimed pass, then timed;
 *                                         MiB/s
 *   fsbench xattr COUNT FILE:NAME[:VALUE]...  getxattr calls/s on each
 *       FILE (with VALUE: setxattr it first, untimed), taking turns every
 *       2000 calls; one rate per FILE
 */
#ifndef _GNU_SOURCE /* also given on the command line, for base/util.c */
#define _GNU_SOURCE
#endif
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1u << 20)
#define REC_SIZE 4096

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(const char *what, const char *path)
{
	fprintf(stderr, "fsbench: %s %s: %s\n", what, path ? path : "",
		strerror(errno));
}

/* Parse a positive count; 0 on error. */
/* MODE: "recfs" (*recfs true) or "durable"; -1 if neither. */
static int mode_arg(const char *s, bool *recfs)
{
	*recfs = strcmp(s, "recfs") == 0;
	return *recfs || strcmp(s, "durable") == 0 ? 0 : -1;
}

static unsigned long count_arg(const char *s)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v == 0)
		return 0;
	return v;
}

/* Read fd to its end; returns bytes read or -1. */
static ssize_t read_to_end(int fd, char *buf, size_t bufsz)
{
	ssize_t total = 0;

	for (;;) {
		ssize_t n = read(fd, buf, bufsz);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return total;
		total += n;
	}
}

/* ---- (a) commits -------------------------------------------------------- */

/* One record the recfs way: the close is the commit and says if it held. */
static int commit_recfs(const char *path, const char *buf)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0) {
		fail("open", path);
		return -1;
	}
	if (util_write_all(fd, buf, REC_SIZE) < 0) {
		fail("write", path);
		close(fd);
		return -1;
	}
	if (close(fd) < 0) {
		fail("close (commit)", path);
		return -1;
	}
	return 0;
}

/* One record the durable POSIX way (SQLite, ALICE): temp, fsync, rename,
   fsync the directory. */
static int commit_durable(int dirfd, const char *dir, const char *name,
			  const char *buf)
{
	char tmp[4096], dst[4096];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s/%s.tmp", dir, name);
	snprintf(dst, sizeof(dst), "%s/%s", dir, name);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fail("open", tmp);
		return -1;
	}
	if (util_write_all(fd, buf, REC_SIZE) < 0 || fsync(fd) < 0) {
		fail("write+fsync", tmp);
		close(fd);
		return -1;
	}
	if (close(fd) < 0 || rename(tmp, dst) < 0 || fsync(dirfd) < 0) {
		fail("close+rename+fsync dir", dst);
		return -1;
	}
	return 0;
}

static int commit_worker(bool recfs, const char *dir, unsigned id,
			 unsigned long count)
{
	char buf[REC_SIZE], name[64], path[4096];
	int dirfd = -1, rc = 1;

	memset(buf, 'a' + (int)(id % 26), sizeof(buf));
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		fail("open", dir);
		goto out;
	}
	for (unsigned long i = 0; i < count; i++) {
		/* distinct content per record: no store may dedup it away */
		snprintf(buf, sizeof(buf), "%u-%lu\n", id, i);
		snprintf(name, sizeof(name), "c%u-%lu", id, i);
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		if (recfs ? commit_recfs(path, buf)
			  : commit_durable(dirfd, dir, name, buf))
			goto out;
	}
	rc = 0;
out:
	if (dirfd >= 0)
		close(dirfd);
	return rc;
}

/*
 * COUNT commits spread over PROCS processes. The children are forked and
 * waiting before the clock starts; closing the pipe releases them all.
 */
static int cmd_commit(int argc, char **argv)
{
	unsigned long count, procs, per;
	int go[2], status, bad = 0;
	pid_t *pids = NULL;
	bool recfs;
	double t0, t1;
	char c;

	if (argc != 6 || mode_arg(argv[2], &recfs))
		return 2;
	count = count_arg(argv[4]);
	procs = count_arg(argv[5]);
	if (!count || !procs || count < procs)
		return 2;
	per = count / procs;
	pids = calloc(procs, sizeof(*pids));
	if (!pids || pipe(go) < 0)
		return 1;
	for (unsigned long p = 0; p < procs; p++) {
		pids[p] = fork();
		if (pids[p] < 0) {
			fail("fork", NULL);
			bad = 1;
			break;
		}
		if (pids[p] == 0) {
			close(go[1]);
			while (read(go[0], &c, 1) < 0 && errno == EINTR)
				;
			_exit(commit_worker(recfs, argv[3], (unsigned)p, per));
		}
	}
	close(go[0]);
	t0 = now_s();
	close(go[1]);
	for (unsigned long p = 0; p < procs; p++) {
		if (pids[p] <= 0)
			continue;
		while (waitpid(pids[p], &status, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			bad = 1;
	}
	t1 = now_s();
	free(pids);
	if (bad)
		return 1;
	printf("%.1f\n", (double)(per * procs) / (t1 - t0));
	return 0;
}

/* ---- (b) small reads ---------------------------------------------------- */

static int cmd_mkfiles(int argc, char **argv)
{
	unsigned long from, to, size;
	char path[4096], *buf;
	int fd;

	if (argc != 6)
		return 2;
	from = strtoul(argv[3], NULL, 10);
	to = count_arg(argv[4]);
	size = count_arg(argv[5]);
	if (!to || from >= to || !size || !(buf = malloc(size)))
		return 2;
	for (unsigned long i = from; i < to; i++) {
		memset(buf, 'a' + (int)(i % 26), size);
		snprintf(buf, size, "%lu\n", i);
		snprintf(path, sizeof(path), "%s/f%lu", argv[2], i);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0 || util_write_all(fd, buf, size) < 0 ||
		    close(fd) < 0) {
			fail("create", path);
			free(buf);
			return 1;
		}
	}
	free(buf);
	return 0;
}

/* Open+read+close of f<from>..f<to-1> in dir; -1 on error. */
static int read_pass(const char *dir, unsigned long from, unsigned long to,
		     size_t size, char *buf, size_t bufsz)
{
	char path[4096];

	for (unsigned long i = from; i < to; i++) {
		ssize_t n;
		int fd;

		snprintf(path, sizeof(path), "%s/f%lu", dir, i);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			fail("open", path);
			return -1;
		}
		n = read_to_end(fd, buf, bufsz);
		close(fd);
		if (n != (ssize_t)size) {
			fprintf(stderr,
				"fsbench: %s: read %zd bytes, "
				"expected %zu\n",
				path, n, size);
			return -1;
		}
	}
	return 0;
}

/* Print one rate per target, in the order given. */
static void print_rates(unsigned long count, const double *secs, int n)
{
	for (int k = 0; k < n; k++)
		printf("%s%.1f", k ? " " : "", (double)count / secs[k]);
	printf("\n");
}

/*
 * readfiles DIR COUNT SIZE [DIR...]: an untimed pass over every DIR, then
 * the timed one, the DIRs taking turns every CHUNK files (rotating who
 * goes first) so that load from elsewhere hits them alike.
 */
static int cmd_readfiles(int argc, char **argv)
{
	enum { FILES_TURN = 250, MAXT = 8 };
	unsigned long count, size;
	const char *dirs[MAXT];
	double secs[MAXT] = {0};
	char buf[65536];
	int nt = 0;

	if (argc < 5 || argc - 4 > MAXT)
		return 2;
	count = count_arg(argv[3]);
	size = count_arg(argv[4]);
	if (!count || !size)
		return 2;
	dirs[nt++] = argv[2];
	for (int i = 5; i < argc; i++)
		dirs[nt++] = argv[i];
	for (int k = 0; k < nt; k++)
		if (read_pass(dirs[k], 0, count, size, buf, sizeof(buf)))
			return 1;
	for (unsigned long from = 0, c = 0; from < count;
	     from += FILES_TURN, c++) {
		unsigned long to =
			from + FILES_TURN < count ? from + FILES_TURN : count;

		for (int j = 0; j < nt; j++) {
			int k = (int)((c + (unsigned long)j) %
				      (unsigned long)nt);
			double t0 = now_s();

			if (read_pass(dirs[k], from, to, size, buf,
				      sizeof(buf)))
				return 1;
			secs[k] += now_s() - t0;
		}
	}
	print_rates(count, secs, nt);
	return 0;
}

/* ---- (c) sequential ----------------------------------------------------- */

static int cmd_seqwrite(int argc, char **argv)
{
	unsigned long mib;
	bool recfs;
	double t0, t1;
	char *buf;
	int fd;

	if (argc != 5 || mode_arg(argv[2], &recfs))
		return 2;
	mib = count_arg(argv[4]);
	if (!mib || !(buf = malloc(CHUNK)))
		return 2;
	for (size_t i = 0; i < CHUNK; i++)
		buf[i] = (char)(i * 2654435761u >> 24);
	t0 = now_s();
	fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fail("open", argv[3]);
		free(buf);
		return 1;
	}
	for (unsigned long i = 0; i < mib; i++) {
		memcpy(buf, &i, sizeof(i)); /* no two chunks alike */
		if (util_write_all(fd, buf, CHUNK) < 0) {
			fail("write", argv[3]);
			close(fd);
			free(buf);
			return 1;
		}
	}
	if (!recfs && fsync(fd) < 0) {
		fail("fsync", argv[3]);
		close(fd);
		free(buf);
		return 1;
	}
	if (close(fd) < 0) {
		fail("close", argv[3]);
		free(buf);
		return 1;
	}
	t1 = now_s();
	free(buf);
	printf("%.1f\n", (double)mib / (t1 - t0));
	return 0;
}

static int cmd_seqread(int argc, char **argv)
{
	ssize_t first = -1, n = -1;
	double t0 = 0, t1 = 0;
	char *buf;

	if (argc != 3 || !(buf = malloc(CHUNK)))
		return 2;
	for (int pass = 0; pass < 2; pass++) {
		int fd;

		t0 = now_s();
		fd = open(argv[2], O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			fail("open", argv[2]);
			free(buf);
			return 1;
		}
		n = read_to_end(fd, buf, CHUNK);
		close(fd);
		t1 = now_s();
		if (n < 0) {
			fail("read", argv[2]);
			free(buf);
			return 1;
		}
		if (pass == 0)
			first = n;
	}
	free(buf);
	if (n != first || n == 0) {
		fprintf(stderr, "fsbench: %s: read %zd then %zd bytes\n",
			argv[2], first, n);
		return 1;
	}
	printf("%.1f\n", (double)n / (1 << 20) / (t1 - t0));
	return 0;
}

/* ---- (d) getxattr ------------------------------------------------------- */

/*
 * xattr COUNT FILE:NAME[:VALUE]...: getxattr calls/s on each FILE (with
 * VALUE: setxattr it first, untimed), the targets taking turns every
 * CHUNK calls.
 */
static int cmd_xattr(int argc, char **argv)
{
	enum { CALLS_TURN = 2000, MAXT = 8 };
	char *file[MAXT], *name[MAXT], val[256];
	double secs[MAXT] = {0};
	unsigned long count;
	int nt = argc - 3;

	if (argc < 4 || nt > MAXT)
		return 2;
	count = count_arg(argv[2]);
	if (!count)
		return 2;
	for (int k = 0; k < nt; k++) {
		char *v;

		file[k] = argv[3 + k];
		name[k] = strchr(file[k], ':');
		if (!name[k])
			return 2;
		*name[k]++ = '\0';
		v = strchr(name[k], ':');
		if (v) {
			*v++ = '\0';
			if (setxattr(file[k], name[k], v, strlen(v), 0) < 0) {
				fail("setxattr", file[k]);
				return 1;
			}
		}
		if (getxattr(file[k], name[k], val, sizeof(val)) < 0) {
			fail("getxattr", file[k]);
			return 1;
		}
	}
	for (unsigned long done = 0, c = 0; done < count;
	     done += CALLS_TURN, c++) {
		unsigned long n =
			count - done < CALLS_TURN ? count - done : CALLS_TURN;

		for (int j = 0; j < nt; j++) {
			int k = (int)((c + (unsigned long)j) %
				      (unsigned long)nt);
			double t0 = now_s();

			for (unsigned long i = 0; i < n; i++) {
				if (getxattr(file[k], name[k], val,
					     sizeof(val)) < 0) {
					fail("getxattr", file[k]);
					return 1;
				}
			}
			secs[k] += now_s() - t0;
		}
	}
	print_rates(count, secs, nt);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
		{"commit", cmd_commit},	      {"mkfiles", cmd_mkfiles},
		{"readfiles", cmd_readfiles}, {"seqwrite", cmd_seqwrite},
		{"seqread", cmd_seqread},     {"xattr", cmd_xattr},
	};
	int rc;

	for (size_t i = 0; argc > 1 && i < sizeof(cmds) / sizeof(cmds[0]);
	     i++) {
		if (strcmp(argv[1], cmds[i].name) != 0)
			continue;
		rc = cmds[i].fn(argc, argv);
		if (rc == 2)
			fprintf(stderr,
				"fsbench %s: bad arguments (see the "
				"top of fsbench.c)\n",
				argv[1]);
		return rc;
	}
	fprintf(stderr, "usage: fsbench commit|mkfiles|readfiles|seqwrite|"
			"seqread|xattr ARGS (see the top of fsbench.c)\n");
	return 2;
}
