/*
 * racers - readers that open a record while another process commits it
 * read whole versions, never one cut at another version's size.
 *
 *   racers [-r READERS] [-s SECONDS] FILE   (FILE on a recfs mount)
 *
 * One writer (the parent) rewrites FILE over and over through FILE@V, V
 * its version (open O_TRUNC + write + close), as tools/torture's clients
 * do: its bytes are in a draft of their own, so readers of FILE see
 * committed versions only. (The writes of FILE's own descriptors are seen
 * by its readers on the mount, as on a disk: README, "The mount and the
 * kernel's caches".) The content of its k-th write says k and has a
 * length of its own: "k <k> ", k % 13 'x's and a newline.
 *
 * READERS children, all at once, loop: read user.recfs.version, open FILE
 * afresh, read it to EOF, close, read the version again. When the two
 * versions agree (no commit during the read) the read must be one whole
 * write, and the write of that version: versions go up one per write, so
 * k - version is the same for every such read of the run.
 *
 * The race it found: an open that found the daemon already showing the
 * new version while the kernel still held the old size read the new
 * content cut at that size (t_contention saw "1000" at the version
 * holding "1000\n"). Prints the counts and the first few bad reads;
 * exit 0 if there was none, 1 otherwise, 2 on a setup error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define LINE 64
#define MAX_READERS 16

static int content(char *p, long k)
{
	int n = snprintf(p, LINE, "k %ld ", k);

	for (long i = 0; i < k % 13; i++)
		p[n++] = 'x';
	p[n++] = '\n';
	return n;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long version_of(const char *path)
{
	char buf[32];
	ssize_t n = getxattr(path, "user.recfs.version", buf, sizeof(buf) - 1);

	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return strtol(buf, NULL, 10);
}

/* Read path whole into buf (NUL-terminated); its length, or -1. */
static ssize_t read_whole(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t got = 0;
	ssize_t n;

	if (fd < 0)
		return -1;
	while (got < cap - 1 && (n = read(fd, buf + got, cap - 1 - got)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			close(fd);
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	return (ssize_t)got;
}

/* The write a read holds (its k), or -1 if it is no whole write. */
static long whole_write(const char *buf, ssize_t len)
{
	char want[LINE];
	char *end;
	long k;

	if (strncmp(buf, "k ", 2) != 0)
		return -1;
	k = strtol(buf + 2, &end, 10);
	if (end == buf + 2 || k < 0)
		return -1;
	if (content(want, k) != len || memcmp(want, buf, (size_t)len) != 0)
		return -1;
	return k;
}

struct tally {
	long reads, checked, bad;
};

static void report(int idx, const char *what, long v, const char *buf,
		   ssize_t len)
{
	fprintf(stderr, "reader %d: version %ld reads %zd bytes \"", idx, v,
		len);
	for (ssize_t i = 0; i < len; i++)
		fprintf(stderr,
			buf[i] >= ' ' && buf[i] <= '~' ? "%c" : "\\x%02x",
			(unsigned char)buf[i]);
	fprintf(stderr, "\": %s\n", what);
}

/* One reader until the deadline; exit status: bad reads > 0. */
static int reader(int idx, const char *path, double deadline)
{
	struct tally t = {0};
	long offset = LONG_MIN;
	char buf[LINE * 2];

	while (now_s() < deadline) {
		long v1 = version_of(path);
		ssize_t len = read_whole(path, buf, sizeof(buf));
		long v2 = version_of(path);
		long k;

		if (len < 0 || v1 < 0 || v2 < 0)
			continue;
		t.reads++;
		/* a commit between two read(2)s of one open may mix two
		   versions, as on a disk: only reads with no commit between
		   the two versions are checked */
		if (v1 != v2)
			continue;
		t.checked++;
		k = whole_write(buf, len);
		if (k < 0) {
			if (t.bad++ < 5)
				report(idx, "not one whole version", v1, buf,
				       len);
			continue;
		}
		if (offset == LONG_MIN)
			offset = k - v1;
		else if (k - v1 != offset && t.bad++ < 5)
			report(idx, "not the write of that version", v1, buf,
			       len);
	}
	printf("reader %d: %ld reads, %ld with no commit during them, "
	       "%ld bad\n",
	       idx, t.reads, t.checked, t.bad);
	return t.bad ? 1 : 0;
}

/* Writes 0, 1, 2, ... until the deadline (write 0 whatever the time),
   each through FILE@V (FILE itself while it does not exist). */
static int writer(const char *path, long from, double deadline, long *writes)
{
	char buf[LINE], name[4096];
	long v = version_of(path);

	for (long k = from; k == 0 || now_s() < deadline; k++) {
		int n = content(buf, k);
		int fd;

		if (v > 0)
			snprintf(name, sizeof(name), "%s@%ld", path, v);
		else
			snprintf(name, sizeof(name), "%s", path);
		fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0 || write(fd, buf, (size_t)n) != n || close(fd) < 0) {
			perror(name);
			return -1;
		}
		if ((v = version_of(path)) < 0) {
			perror(path);
			return -1;
		}
		*writes = k;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int readers = 4, opt, bad = 0;
	double seconds = 5, deadline;
	pid_t pids[MAX_READERS];
	long writes = 0;

	while ((opt = getopt(argc, argv, "r:s:")) != -1) {
		if (opt == 'r')
			readers = atoi(optarg);
		else if (opt == 's')
			seconds = atof(optarg);
		else
			goto usage;
	}
	if (optind + 1 != argc || readers < 1 || readers > MAX_READERS ||
	    seconds <= 0)
		goto usage;
	deadline = now_s() + seconds;
	if (writer(argv[optind], 0, 0, &writes) != 0)
		return 2;
	fflush(stdout);
	for (int i = 0; i < readers; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("fork");
			return 2;
		}
		if (pids[i] == 0)
			_exit(reader(i, argv[optind], deadline));
	}
	if (writer(argv[optind], 1, deadline, &writes) != 0)
		bad = 2;
	for (int i = 0; i < readers; i++) {
		int st;

		if (waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0)
			bad = bad ? bad : 1;
	}
	printf("writer: %ld writes; %s\n", writes,
	       bad ? "BAD READS" : "no bad read");
	return bad;
usage:
	fprintf(stderr, "usage: racers [-r READERS] [-s SECONDS] FILE\n");
	return 2;
}
