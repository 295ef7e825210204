/*
 * fdcheck - what an open descriptor sees when another process changes
 * its name (SPEC 3: fstat works after the name is removed or replaced; a
 * record replaced by rename leaves the descriptors opened before on the
 * version they had; an in-place rewrite is seen by them).
 *
 *   fdcheck [-r N|all] PATH OUT -- CMD [ARG...]
 *
 * Opens PATH O_RDONLY, reads N bytes (default 0; "all": to EOF), runs CMD
 * as a child process and waits for it, then fstat()s the descriptor,
 * reads on from where it was to EOF, and preads it from offset 0 to EOF.
 * Writes the bytes of the reads (the first N and the rest) to OUT and
 * those of the pread to OUT.pread, and prints one line per step:
 *   cmd: exit 0
 *   fstat: ok size 123        (or: fstat: error No such file ...)
 *   read: ok 123 bytes
 *   pread: ok 123 bytes
 * Exit 0 if every step worked, 1 if one failed, 2 on a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct buf {
	char *p;
	size_t n, cap;
};

static int buf_grow(struct buf *b, size_t more)
{
	if (b->n + more <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 65536;
	while (cap < b->n + more)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

/* read (pread if off >= 0) up to max bytes (SIZE_MAX: to EOF) into b */
static int slurp(int fd, struct buf *b, size_t max, off_t off)
{
	size_t done = 0;

	while (done < max) {
		size_t want = max - done < 65536 ? max - done : 65536;
		ssize_t r;

		if (buf_grow(b, want) != 0)
			return -ENOMEM;
		if (off >= 0)
			r = pread(fd, b->p + b->n, want, off + (off_t)done);
		else
			r = read(fd, b->p + b->n, want);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		b->n += (size_t)r;
		done += (size_t)r;
	}
	return 0;
}

static int save(const char *path, const struct buf *b)
{
	FILE *fp = fopen(path, "w");

	if (!fp)
		return -1;
	if (b->n && fwrite(b->p, 1, b->n, fp) != b->n) {
		fclose(fp);
		return -1;
	}
	return fclose(fp) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct buf rd = {0}, pr = {0};
	size_t first = 0;
	struct stat st;
	const char *path, *out;
	char *pread_out, **cmd;
	int c, fd, status, rc = 0, e;
	pid_t pid;

	while ((c = getopt(argc, argv, "+r:")) != -1) {
		if (c != 'r')
			goto usage;
		first = strcmp(optarg, "all") == 0 ? SIZE_MAX
						   : strtoul(optarg, NULL, 0);
	}
	if (argc - optind < 4 || strcmp(argv[optind + 2], "--") != 0)
		goto usage;
	path = argv[optind];
	out = argv[optind + 1];
	cmd = argv + optind + 3;

	fd = open(path, O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "fdcheck: open %s: %s\n", path,
			strerror(errno));
		return 1;
	}
	if (first && (e = slurp(fd, &rd, first, -1)) != 0) {
		printf("read (first %zu): error %s\n", first, strerror(-e));
		rc = 1;
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		perror("fdcheck: fork");
		return 1;
	}
	if (pid == 0) {
		close(fd);
		execvp(cmd[0], cmd);
		fprintf(stderr, "fdcheck: exec %s: %s\n", cmd[0],
			strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	printf("cmd: exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		rc = 1;
	if (fstat(fd, &st) != 0) {
		printf("fstat: error %s\n", strerror(errno));
		rc = 1;
	} else {
		printf("fstat: ok size %lld\n", (long long)st.st_size);
	}
	if ((e = slurp(fd, &rd, SIZE_MAX, -1)) != 0) {
		printf("read: error %s\n", strerror(-e));
		rc = 1;
	} else {
		printf("read: ok %zu bytes\n", rd.n);
	}
	if ((e = slurp(fd, &pr, SIZE_MAX, 0)) != 0) {
		printf("pread: error %s\n", strerror(-e));
		rc = 1;
	} else {
		printf("pread: ok %zu bytes\n", pr.n);
	}
	close(fd);
	pread_out = malloc(strlen(out) + sizeof(".pread"));
	if (!pread_out)
		return 1;
	strcpy(pread_out, out);
	strcat(pread_out, ".pread");
	if (save(out, &rd) != 0 || save(pread_out, &pr) != 0) {
		fprintf(stderr, "fdcheck: cannot write %s: %s\n", out,
			strerror(errno));
		rc = 1;
	}
	free(pread_out);
	free(rd.p);
	free(pr.p);
	return rc;
usage:
	fprintf(stderr, "usage: fdcheck [-r N|all] PATH OUT -- CMD [ARG...]\n");
	return 2;
}
