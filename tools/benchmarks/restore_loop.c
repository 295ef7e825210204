/*
 * bench_restore_loop - the disk's own durable small-file restore, the
 * baseline of sync=close in `tools/bench restore`.
 *
 * usage: bench_restore_loop SRC DST
 *
 * Copies the tree SRC (directories and regular files only) into the
 * existing empty directory DST, one file at a time, each the way a
 * careful program makes a file durable and atomic on a plain disk:
 * write its bytes to DIR/.NAME.tmp, fdatasync, close, rename to
 * DIR/NAME. Directories are made with mkdir and not synced (recfs's
 * sync=close does not sync a namespace per file either). Prints nothing;
 * exits 1 with the path and cause on the first error.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUF_SIZE (1 << 16)

static char buf[BUF_SIZE];

static int fail(const char *what, const char *path)
{
	fprintf(stderr, "bench_restore_loop: %s %s: %s\n", what, path,
		strerror(errno));
	return -1;
}

/* Copy the regular file `name` of `sdir` to `ddir`, durably. */
static int copy_file(int sdir, int ddir, const char *name)
{
	char tmp[NAME_MAX + 8];
	int in, out = -1, rc = -1;
	ssize_t n;

	snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
	in = openat(sdir, name, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return fail("open", name);
	out = openat(ddir, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		fail("create", tmp);
		goto done;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n) {
			fail("write", tmp);
			goto done;
		}
	if (n < 0) {
		fail("read", name);
		goto done;
	}
	if (fdatasync(out) != 0) {
		fail("fdatasync", tmp);
		goto done;
	}
	if (close(out) != 0) {
		out = -1;
		fail("close", tmp);
		goto done;
	}
	out = -1;
	if (renameat(ddir, tmp, ddir, name) != 0) {
		fail("rename", name);
		goto done;
	}
	rc = 0;
done:
	if (out >= 0)
		close(out);
	close(in);
	return rc;
}

/* Copy the directory `sdir` into `ddir`, recursively. Takes both fds. */
static int copy_dir(int sdir, int ddir)
{
	DIR *d = fdopendir(sdir);
	struct dirent *de;
	int rc = 0;

	if (!d) {
		close(sdir);
		close(ddir);
		return fail("opendir", "(source)");
	}
	while (rc == 0 && (de = readdir(d))) {
		const char *n = de->d_name;
		int s, t;

		if (n[0] == '.' && (!n[1] || (n[1] == '.' && !n[2])))
			continue;
		if (de->d_type == DT_REG) {
			rc = copy_file(sdir, ddir, n);
			continue;
		}
		if (de->d_type != DT_DIR)
			continue;
		if (mkdirat(ddir, n, 0755) != 0 && errno != EEXIST) {
			rc = fail("mkdir", n);
			break;
		}
		s = openat(sdir, n, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		t = openat(ddir, n, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (s < 0 || t < 0) {
			rc = fail("open", n);
			if (s >= 0)
				close(s);
			if (t >= 0)
				close(t);
			break;
		}
		rc = copy_dir(s, t);
	}
	closedir(d);
	close(ddir);
	return rc;
}

int main(int argc, char **argv)
{
	int s, d;

	if (argc != 3) {
		fprintf(stderr, "usage: bench_restore_loop SRC DST\n");
		return 2;
	}
	s = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s < 0)
		return fail("open", argv[1]) ? 1 : 0;
	d = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d < 0) {
		close(s);
		return fail("open", argv[2]) ? 1 : 0;
	}
	return copy_dir(s, d) ? 1 : 0;
}
