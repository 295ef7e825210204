/*
 * jnlbig_fixture.c - the shared part of the tests of multi-frame journal
 * records (jnlbig_fixture.h).
 */
#include "jnlbig_fixture.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];
int dfd = -1;
struct io *io;
struct jnl *j;

void dir_clear(void)
{
	DIR *d;
	struct dirent *de;
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	cr_assert_geq(fd, 0);
	d = fdopendir(fd);
	cr_assert_not_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			unlinkat(dfd, de->d_name, 0);
	closedir(d);
}

void setup(void)
{
	strcpy(tmpdir, "/tmp/recfs-jnlbig.XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	dfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(dfd, 0);
	cr_assert_eq(io_new(&io), 0);
}

void teardown(void)
{
	jnl_close(j);
	j = NULL;
	io_free(io);
	io = NULL;
	if (dfd >= 0) {
		dir_clear();
		close(dfd);
	}
	dfd = -1;
	rmdir(tmpdir);
}

void open_at(uint64_t next)
{
	struct jnl_opts o = {.io = io, .dirfd = dfd, .next_seq = next};

	jnl_close(j);
	j = NULL;
	cr_assert_eq(jnl_open(&j, &o), 0, "jnl_open(%" PRIu64 ")", next);
}

off_t seg_size(uint64_t first)
{
	char name[32];
	struct stat st;

	snprintf(name, sizeof(name), "%020" PRIu64 ".log", first);
	cr_assert_eq(fstatat(dfd, name, &st, 0), 0, "stat %s", name);
	return st.st_size;
}

/* ---- payloads: frame k of record seq, recognisable byte by byte ------ */

static uint8_t pat(uint64_t seq, unsigned k, size_t i)
{
	return (uint8_t)(seq * 31 + k * 7 + i * 13 + (i >> 9));
}

void fill(uint8_t *p, size_t len, uint64_t seq, unsigned k)
{
	for (size_t i = 0; i < len; i++)
		p[i] = pat(seq, k, i);
}

bool check_fill(const uint8_t *p, size_t len, uint64_t seq, unsigned k,
		bool quick)
{
	size_t n = quick && len > 64 ? 64 : len;

	for (size_t i = 0; i < n; i++)
		if (p[i] != pat(seq, k, i))
			return false;
	return true;
}

static uint8_t *scratch(size_t len)
{
	static uint8_t *buf;
	static size_t cap;

	if (len > cap) {
		free(buf);
		buf = malloc(len);
		cr_assert_not_null(buf);
		cap = len;
	}
	return buf;
}

/* An ordinary record of one frame: frame 0 of `want`. */
void append_rec(uint64_t want, size_t len)
{
	uint8_t *p = scratch(len + 1);
	struct iovec v = {p, len};
	uint64_t seq = 0;

	fill(p, len, want, 0);
	cr_assert_eq(jnl_append(j, &v, 1, &seq), 0, "append %" PRIu64, want);
	cr_assert_eq(seq, want);
}

/* Write frames 0..n-1 of record `want` (lens[k] bytes each): n-1 with
   jnl_big_add, the last with jnl_big_commit. Returns commit's rc. */
int big_rec(uint64_t want, unsigned n, const size_t *lens)
{
	struct jnl_big *b = NULL;
	uint64_t seq = 0;
	int rc;

	cr_assert_eq(jnl_big_begin(j, &b), 0);
	for (unsigned k = 0; k + 1 < n; k++) {
		uint8_t *p = scratch(lens[k] + 1);
		struct iovec v = {p, lens[k]};

		fill(p, lens[k], want, k);
		rc = jnl_big_add(b, &v, 1);
		if (rc < 0) {
			jnl_big_abort(b);
			return rc;
		}
	}
	{
		uint8_t *p = scratch(lens[n - 1] + 1);
		struct iovec v[2] = {
			{p, lens[n - 1] / 2},
			{p + lens[n - 1] / 2, lens[n - 1] - lens[n - 1] / 2}};

		fill(p, lens[n - 1], want, n - 1);
		rc = jnl_big_commit(b, v, 2, &seq);
	}
	if (rc == 0)
		cr_assert_eq(seq, want);
	return rc;
}

/* ---- what readers saw ------------------------------------------------ */

void frames_add(struct frames *f, uint64_t seq, const void *p, size_t len)
{
	size_t i = f->n;

	cr_assert_lt(i, MAXF);
	f->k[i] = i > 0 && f->seq[i - 1] == seq ? f->k[i - 1] + 1 : 0;
	f->seq[i] = seq;
	f->len[i] = len;
	f->ok[i] = check_fill(p, len, seq, f->k[i], f->quick);
	memset(f->head[i], 0, sizeof(f->head[i]));
	memcpy(f->head[i], p, len < 23 ? len : 23);
	f->n++;
}

int collect(void *arg, uint64_t seq, const void *p, size_t len)
{
	frames_add(arg, seq, p, len);
	return 0;
}

void expect_frames(const struct frames *f, const struct want *w, size_t nw)
{
	size_t i = 0;

	for (size_t r = 0; r < nw; r++)
		for (unsigned k = 0; k < w[r].n; k++, i++) {
			cr_assert_lt(i, f->n, "frame %u of %" PRIu64 " missing",
				     k, w[r].seq);
			cr_expect_eq(f->seq[i], w[r].seq, "frame %zu seq", i);
			cr_expect_eq(f->k[i], k, "frame %zu index", i);
			cr_expect_eq(f->len[i], w[r].lens[k], "frame %zu len",
				     i);
			cr_expect(f->ok[i], "frame %zu payload", i);
		}
	cr_assert_eq(f->n, i, "frames");
}

struct frames *scan_after(uint64_t after, int want_rc,
			  struct jnl_scan_report *rep)
{
	struct frames *f = calloc(1, sizeof(*f));
	struct jnl_scan_report r;

	cr_assert_not_null(f);
	cr_assert_eq(jnl_scan(io, dfd, after, collect, f, &r), want_rc,
		     "jnl_scan rc");
	if (rep)
		*rep = r;
	return f;
}

/* The same scan without a callback must agree (no look-ahead there). */
void scan_nocb_agrees(uint64_t after, int want_rc,
		      const struct jnl_scan_report *r)
{
	struct jnl_scan_report r2;

	cr_assert_eq(jnl_scan(io, dfd, after, NULL, NULL, &r2), want_rc);
	if (want_rc == 0) {
		cr_expect_eq(r2.records, r->records);
		cr_expect_eq(r2.last_seq, r->last_seq);
		cr_expect_eq(r2.torn_bytes, r->torn_bytes);
		cr_expect_eq(r2.zero_bytes, r->zero_bytes);
	}
}

/* Every frame a cursor from `after` returns up to `upto`. */
struct frames *cursor_all(uint64_t after, uint64_t upto, int want_rc)
{
	struct frames *f = calloc(1, sizeof(*f));
	struct jnl_cursor *c = NULL;
	const void *p;
	uint64_t seq;
	size_t len;
	int rc;

	cr_assert_not_null(f);
	cr_assert_eq(jnl_cursor_open(io, dfd, after, &c), 0);
	while ((rc = jnl_cursor_next(c, upto, &seq, &p, &len)) == 1)
		frames_add(f, seq, p, len);
	cr_assert_eq(rc, want_rc, "cursor rc %d", rc);
	jnl_cursor_close(c);
	return f;
}

uint8_t *read_seg(uint64_t first, size_t *size)
{
	char name[32];
	struct stat st;
	uint8_t *buf;
	int fd;

	snprintf(name, sizeof(name), "%020" PRIu64 ".log", first);
	fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size);
	cr_assert_not_null(buf);
	cr_assert_eq(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*size = (size_t)st.st_size;
	return buf;
}

void write_seg(uint64_t first, const uint8_t *buf, size_t size)
{
	char name[32];
	int fd;

	snprintf(name, sizeof(name), "%020" PRIu64 ".log", first);
	fd = openat(dfd, name, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, buf, size), (ssize_t)size);
	close(fd);
}
