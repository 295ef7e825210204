/*
 * jnl_helpers.c - the fixture of the test_jnl*.c executables (suite
 * "jnl"): a journal directory in a sandbox, and helpers on its records
 * and segments (jnl_helpers.h).
 */
#include "jnl_helpers.h"
#include "io.h"
#include "jnl.h"
#include "sandbox.h"

#include <criterion/criterion.h>

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char tmpdir[PATH_MAX];
int dfd = -1;
struct io *io;
struct jnl *j;

void jnl_setup(void)
{
	sandbox_new_in(tmpdir, sizeof(tmpdir), "/tmp", "jnl", false);
	dfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(dfd, 0);
	cr_assert_eq(io_new(&io), 0);
}

void jnl_teardown(void)
{
	jnl_close(j);
	j = NULL;
	io_free(io);
	io = NULL;
	close(dfd);
	dfd = -1;
	sandbox_rm(tmpdir);
}

void open_at(uint64_t next)
{
	struct jnl_opts o = {.io = io, .dirfd = dfd, .next_seq = next};

	jnl_close(j);
	j = NULL;
	cr_assert_eq(jnl_open(&j, &o), 0, "jnl_open(%" PRIu64 ")", next);
}

int append_str(const char *s, uint64_t *seq)
{
	struct iovec v = {.iov_base = (void *)s, .iov_len = strlen(s)};

	return jnl_append(j, &v, 1, seq);
}

void append_ok(const char *s, uint64_t want)
{
	uint64_t seq = 0;

	cr_assert_eq(append_str(s, &seq), 0, "append \"%s\"", s);
	cr_assert_eq(seq, want);
}

void seg_path(char *buf, size_t len, uint64_t first)
{
	snprintf(buf, len, "%020" PRIu64 ".log", first);
}

off_t seg_size(uint64_t first)
{
	char name[32];
	struct stat st;

	seg_path(name, sizeof(name), first);
	cr_assert_eq(fstatat(dfd, name, &st, 0), 0, "stat %s", name);
	return st.st_size;
}

/* Does segment `first` hold only zeros from offset `from` on? */
bool seg_zeros_from(uint64_t first, uint64_t from)
{
	char name[32], buf[4096];
	bool zeros = true;
	ssize_t n;
	int fd;

	seg_path(name, sizeof(name), first);
	fd = openat(dfd, name, O_RDONLY);
	cr_assert_geq(fd, 0, "open %s", name);
	while (zeros && (n = pread(fd, buf, sizeof(buf), (off_t)from)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			zeros = zeros && buf[i] == 0;
		from += (uint64_t)n;
	}
	close(fd);
	return zeros;
}

bool seg_exists(uint64_t first)
{
	char name[32];

	seg_path(name, sizeof(name), first);
	return faccessat(dfd, name, F_OK, 0) == 0;
}

int seg_fd(uint64_t first)
{
	char name[32];
	int fd;

	seg_path(name, sizeof(name), first);
	fd = openat(dfd, name, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0, "open %s", name);
	return fd;
}

int collect(void *arg, uint64_t seq, const void *p, size_t len)
{
	struct seen *s = arg;
	char *copy = malloc(len + 1);

	cr_assert_not_null(copy);
	cr_assert_lt(s->n, 4096);
	memcpy(copy, p, len);
	copy[len] = '\0';
	s->seq[s->n] = seq;
	s->payload[s->n++] = copy;
	if (s->stop_at && (int)s->n == s->stop_at)
		return 7;
	return 0;
}

void seen_free(struct seen *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->payload[i]);
	free(s);
}

struct seen *scan(uint64_t after, int want_rc, struct jnl_scan_report *rep)
{
	struct seen *s = calloc(1, sizeof(*s));
	struct jnl_scan_report r;

	cr_assert_not_null(s);
	cr_assert_eq(jnl_scan(io, dfd, after, collect, s, &r), want_rc,
		     "jnl_scan rc");
	if (want_rc == 0) {
		cr_assert_eq(r.records, s->n);
		for (size_t i = 1; i < s->n; i++)
			cr_assert_eq(s->seq[i], s->seq[i - 1] + 1);
	}
	if (rep)
		*rep = r;
	return s;
}

/* Records first..first+n-1 with payloads "<prefix><seq>". */
void expect_records(struct seen *s, uint64_t first, size_t n,
		    const char *prefix)
{
	char want[64];

	cr_assert_eq(s->n, n, "records");
	for (size_t i = 0; i < n; i++) {
		snprintf(want, sizeof(want), "%s%" PRIu64, prefix, first + i);
		cr_expect_eq(s->seq[i], first + i);
		cr_expect_str_eq(s->payload[i], want);
	}
}

void append_n(uint64_t first, size_t n, const char *prefix)
{
	char buf[64];

	for (size_t i = 0; i < n; i++) {
		snprintf(buf, sizeof(buf), "%s%" PRIu64, prefix, first + i);
		append_ok(buf, first + i);
	}
}
