/*
 * coherent - after close(2) returns in one process, another process sees
 * the new version (SPEC 3: "Once close(2) of a commit has returned, every
 * later open, stat, read or getfattr from any process sees the new
 * version").
 *
 *   coherent [-n ROUNDS] [-x] FILE
 *
 * Two processes: A (the parent) writes FILE ROUNDS times, each round in
 * one of four ways, in turn: open O_WRONLY|O_TRUNC + write + close; open
 * O_WRONLY (no O_TRUNC) + pwrite + ftruncate + close; open O_APPEND +
 * write + close; and one round in 8, write FILE.tmp and rename it onto
 * FILE. Each makes one new
 * version with a size and content of its own. After each close(2) or
 * rename(2) has returned, A sends B (a child, long-lived, so that no exec
 * is timed) the round and the content FILE must now have. B then,
 * with direct system calls, stat()s FILE, reads user.recfs.version with
 * getxattr (-x: expected to be the version of round 0 plus the round),
 * opens FILE afresh, fstat()s and reads it to EOF, and counts each answer
 * that is not the round's: a stale stat size, version, fstat size or
 * content. It prints the first few stale answers and the counts; exit 0
 * if there was none, 1 otherwise, 2 on a setup error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define MAXCONTENT 4096
#define LINE 64

/* the line of a round; the size changes from a round to the next */
static int line(char *p, long round)
{
	int n = snprintf(p, LINE, "round %ld ", round);

	for (long i = 0; i < round % 13; i++)
		p[n++] = 'x';
	p[n++] = '\n';
	return n;
}

/* what B must see after a round */
struct expect {
	long round;
	int len;
	char data[MAXCONTENT];
};

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n) {
		ssize_t r = write(fd, c, n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

static int read_full(int fd, void *p, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = read(fd, (char *)p + done, n - done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (int)done;
}

enum style { W_TRUNC, W_RENAME, W_OVERWRITE, W_APPEND, W_N };
static const char *const style_names[W_N] = {
	"O_TRUNC",
	"rename",
	"overwrite+ftruncate",
	"O_APPEND",
};
/* the ways in turn; a rename (two commits: FILE.tmp, then FILE) is rarer */
static const enum style styles[8] = {
	W_TRUNC, W_OVERWRITE, W_APPEND, W_RENAME,
	W_TRUNC, W_OVERWRITE, W_APPEND, W_TRUNC,
};
#define STYLE(round) styles[(round) % 8]

/*
 * A's round: make e (round and previous content) the next version in
 * one of the four ways; 0, or -1 with errno.
 */
static int write_round(const char *path, const char *tmp, struct expect *e,
		       long round, enum style how)
{
	char l[LINE];
	int n = line(l, round), fd, err, rc = 0;

	if (how == W_APPEND && e->len + n > MAXCONTENT)
		how = W_TRUNC;
	e->round = round;
	if (how == W_APPEND) {
		memcpy(e->data + e->len, l, (size_t)n);
		e->len += n;
	} else {
		memcpy(e->data, l, (size_t)n);
		e->len = n;
	}
	switch (how) {
	case W_TRUNC:
		fd = open(path, O_WRONLY | O_TRUNC | O_CREAT, 0644);
		break;
	case W_RENAME:
		fd = open(tmp, O_WRONLY | O_TRUNC | O_CREAT, 0644);
		break;
	case W_OVERWRITE:
		fd = open(path, O_WRONLY);
		break;
	default:
		fd = open(path, O_WRONLY | O_APPEND);
		break;
	}
	if (fd < 0)
		return -1;
	if (how == W_OVERWRITE) {
		if (pwrite(fd, l, (size_t)n, 0) != n || ftruncate(fd, n) != 0)
			rc = -1;
	} else if (write_all(fd, l, (size_t)n) != 0) {
		rc = -1;
	}
	err = errno;
	if (close(fd) != 0 && rc == 0) {
		rc = -1;
		err = errno;
	}
	if (rc == 0 && how == W_RENAME && rename(tmp, path) != 0) {
		rc = -1;
		err = errno;
	}
	errno = err;
	return rc;
}

static long get_version(const char *path)
{
	char v[32];
	ssize_t n = getxattr(path, "user.recfs.version", v, sizeof(v) - 1);

	if (n < 0)
		return -1;
	v[n] = 0;
	return strtol(v, NULL, 10);
}

enum stale { S_STAT, S_VERSION, S_OPEN, S_FSTAT, S_CONTENT, S_N };
static const char *const stale_names[S_N] = {
	"stat size", "getxattr version", "open", "fstat size", "content",
};

/* B: answer each round A announces; returns the exit status */
static int reader(const char *path, bool xattr, int from_a, int to_a)
{
	long counts[S_N] = {0}, v0 = -1, round, total = 0, rounds = 0;
	static struct expect e;
	static char got[MAXCONTENT * 2];
	int printed = 0;

	while (read_full(from_a, &e, sizeof(e)) == sizeof(e)) {
		int n = e.len, fd, r;
		const char *want = e.data;
		bool bad[S_N] = {false};

		round = e.round;
		struct stat st = {0}, fst = {0};
		long v = -2;

		memset(got, 0, sizeof(got));
		if (stat(path, &st) != 0 || st.st_size != n)
			bad[S_STAT] = true;
		if (xattr) {
			v = get_version(path);
			if (round == 0)
				v0 = v;
			else if (v0 < 0 || v != v0 + round)
				bad[S_VERSION] = true;
		}
		fd = open(path, O_RDONLY);
		if (fd < 0) {
			bad[S_OPEN] = true;
			r = -1;
		} else {
			if (fstat(fd, &fst) != 0 || fst.st_size != n)
				bad[S_FSTAT] = true;
			r = read_full(fd, got, sizeof(got));
			close(fd);
		}
		if (r != n || memcmp(got, want, (size_t)n) != 0)
			bad[S_CONTENT] = true;
		for (int i = 0; i < S_N; i++) {
			if (!bad[i])
				continue;
			counts[i]++;
			total++;
			if (printed++ < 10) {
				printf("round %ld (%s): stale %s (stat size "
				       "%lld, fstat size %lld, want %d; "
				       "version %ld, want %ld; read %d bytes, "
				       "ending %.*s)\n",
				       round, style_names[STYLE(round)],
				       stale_names[i], (long long)st.st_size,
				       (long long)fst.st_size, n, v, v0 + round,
				       r > 0 ? r : 0,
				       r > 1 ? (r - 1 < 24 ? r - 1 : 24) : 0,
				       r > 1 ? got + r - 1 -
						       (r - 1 < 24 ? r - 1 : 24)
					     : got);
			}
		}
		rounds++;
		fflush(stdout);
		if (write_all(to_a, "k", 1) != 0)
			break;
	}
	printf("reader: %ld rounds, %ld stale answers (", rounds, total);
	for (int i = 0; i < S_N; i++)
		printf("%s%s %ld", i ? ", " : "", stale_names[i], counts[i]);
	printf(")\n");
	fflush(stdout);
	return total ? 1 : 0;
}

int main(int argc, char **argv)
{
	long rounds = 10000, failed_writes = 0;
	bool xattr = false;
	int c, a2b[2], b2a[2], status;
	struct timespec t0, t1;
	pid_t pid;

	while ((c = getopt(argc, argv, "n:x")) != -1) {
		switch (c) {
		case 'n':
			rounds = strtol(optarg, NULL, 0);
			break;
		case 'x':
			xattr = true;
			break;
		default:
			goto usage;
		}
	}
	if (optind + 1 != argc || rounds < 1)
		goto usage;
	const char *path = argv[optind];
	static struct expect e;
	char *tmp = malloc(strlen(path) + sizeof(".tmp"));

	if (!tmp)
		return 2;
	strcpy(tmp, path);
	strcat(tmp, ".tmp");
	if (write_round(path, tmp, &e, 0, W_TRUNC) != 0) {
		fprintf(stderr, "coherent: create %s: %s\n", path,
			strerror(errno));
		return 2;
	}
	if (pipe(a2b) != 0 || pipe(b2a) != 0) {
		perror("coherent: pipe");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		perror("coherent: fork");
		return 2;
	}
	if (pid == 0) {
		close(a2b[1]);
		close(b2a[0]);
		_exit(reader(path, xattr, a2b[0], b2a[1]));
	}
	close(a2b[0]);
	close(b2a[1]);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long round = 0; round <= rounds; round++) {
		char ack;

		if (round > 0 &&
		    write_round(path, tmp, &e, round, STYLE(round)) != 0) {
			if (failed_writes++ < 10)
				printf("round %ld (%s): the writer failed: "
				       "%s\n",
				       round, style_names[STYLE(round)],
				       strerror(errno));
		}
		/* close(2) (or rename(2)) has returned: now B looks */
		if (write_all(a2b[1], &e, sizeof(e)) != 0 ||
		    read_full(b2a[0], &ack, 1) != 1) {
			fprintf(stderr, "coherent: the reader went away\n");
			break;
		}
	}
	close(a2b[1]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("writer: %ld rounds in %.1f s, %ld failed writes\n", rounds,
	       (double)(t1.tv_sec - t0.tv_sec) +
		       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
	       failed_writes);
	free(tmp);
	if (failed_writes)
		return 1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
usage:
	fprintf(stderr, "usage: coherent [-n ROUNDS] [-x] FILE\n");
	return 2;
}
