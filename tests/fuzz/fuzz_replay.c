/*
 * fuzz_replay.c - libFuzzer target for journal replay: mutated journals
 * (and index snapshots) through the real recovery of store_open.
 *
 * A template store is made once per process with store_init (format
 * file, empty records/, journal/, tmp/ and history.git), in /dev/shm when
 * there is one (the checkpoint that ends a recovery calls syncfs), next to
 * a file "outside" that nothing may touch. For each input the working
 * store is a fresh copy of the template, optionally given a few records,
 * a namespace and a stage, and the input becomes its journal:
 *
 *   byte 0 & 3 == 0  the rest is one segment file, as is (named after the
 *                    first seq in its header, or 1 with byte 0 & 4)
 *   byte 0 & 3 == 1  a valid segment header (first seq 1 + byte 1 % 4),
 *                    then one well-framed record per [u16 len][payload]
 *                    chunk; a chunk length of 0xffff makes the rest a
 *                    raw (torn) tail
 *   byte 0 & 3 == 2  the same, but the chunks before a 0xfffe length are
 *                    the framed REC_STATE records of an index snapshot
 *                    whose revision is the first seq - 1
 *   byte 0 & 3 == 3  the same, but a 0xfffe length starts a second
 *                    segment that continues the first
 *   byte 0 & 8       records/a, records/ns/b and tmp/st.1 exist first
 *
 * then store_open, store_verify and store_close run; the history writer
 * runs too (the journal is its queue), committing at once and drained by
 * verify and close. Whatever the bytes, nothing crashes, leaks or hangs, a
 * corrupt journal gives an error, the format file and the file outside
 * the store are untouched and nothing appears next to the store. A store
 * that opened once opens again (its checkpoint is readable) with the same
 * revision and record counts.
 *
 * The store's error log is sent to /dev/null while it runs (it is long
 * for corrupt input); RECFS_FUZZ_VERBOSE=1 keeps it, to replay one input.
 */
#include "store_i.h"
#include "admin.h"
#include "format.h"
#include "jnl.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int saved_stderr = -1;
static bool verbose;

static void quiet(bool on)
{
	static int devnull = -1;

	if (verbose)
		return;
	if (devnull < 0)
		devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (saved_stderr < 0)
		saved_stderr = fcntl(2, F_DUPFD_CLOEXEC, 3);
	if (devnull >= 0 && saved_stderr >= 0)
		dup2(on ? devnull : saved_stderr, 2);
}

#define check(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			quiet(false);                                          \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			abort();                                               \
		}                                                              \
	} while (0)

static char shm_path[] = "/dev/shm/recfs-fuzz-replay.XXXXXX";
static char tmp_path[] = "/tmp/recfs-fuzz-replay.XXXXXX";
static char *base_path;
static char store_dir[64];
static int base_fd = -1, store_fd = -1, template_fd = -1;
static char *format_text;
static size_t format_len;

static const char outside_text[] = "outside the store: never touched\n";

/* Remove everything in directory `fd` (recursively); `fd` stays open. */
static void empty_dir(int fd)
{
	int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	DIR *d;

	check(dfd >= 0);
	d = fdopendir(dfd);
	check(d != NULL);
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (unlinkat(fd, de->d_name, 0) == 0)
			continue;
		if (errno == EISDIR || errno == EPERM) {
			int sub = openat(fd, de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
						 O_CLOEXEC);

			check(sub >= 0);
			empty_dir(sub);
			close(sub);
			check(unlinkat(fd, de->d_name, AT_REMOVEDIR) == 0);
		} else {
			check(!"cannot remove a file of the fuzz store");
		}
	}
	closedir(d);
}

static void base_remove(void)
{
	if (base_fd < 0)
		return;
	empty_dir(base_fd);
	close(base_fd);
	close(store_fd);
	close(template_fd);
	rmdir(base_path);
}

static char *read_at(int dfd, const char *name, size_t *len)
{
	char *buf = malloc(FORMAT_MAX_BYTES + 1);
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	ssize_t n;

	check(buf != NULL && fd >= 0);
	n = read(fd, buf, FORMAT_MAX_BYTES + 1);
	close(fd);
	check(n >= 0 && n <= FORMAT_MAX_BYTES);
	*len = (size_t)n;
	return buf;
}

static void write_at(int dfd, const char *name, const void *p, size_t len)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			0600);

	check(fd >= 0);
	check(len == 0 || write(fd, p, len) == (ssize_t)len);
	close(fd);
}

static void base_init(void)
{
	struct stat st;

	verbose = getenv("RECFS_FUZZ_VERBOSE") != NULL;
	base_path = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode)
			    ? shm_path
			    : tmp_path;
	check(mkdtemp(base_path) != NULL);
	base_fd = open(base_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	check(base_fd >= 0);
	atexit(base_remove);
	snprintf(store_dir, sizeof(store_dir), "%s/template", base_path);
	rlog_set_level(RLOG_ERR);
	quiet(true);
	check(store_init(store_dir, false) == 0);
	quiet(false);
	template_fd = open(store_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	check(template_fd >= 0);
	format_text = read_at(template_fd, FORMAT_FILE, &format_len);
	snprintf(store_dir, sizeof(store_dir), "%s/store", base_path);
	check(mkdir(store_dir, 0700) == 0);
	store_fd = open(store_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	check(store_fd >= 0);
	write_at(base_fd, "outside", outside_text, sizeof(outside_text) - 1);
}

static int sub_fd(const char *name)
{
	int fd = openat(store_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	check(fd >= 0);
	return fd;
}

/* Copy the tree at `src` into the (empty) directory `dst`. */
static void copy_tree(int src, int dst)
{
	int dfd = openat(src, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	struct stat st;
	DIR *d;

	check(dfd >= 0);
	d = fdopendir(dfd);
	check(d != NULL);
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		check(fstatat(src, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0);
		if (S_ISDIR(st.st_mode)) {
			int a, b;

			check(mkdirat(dst, de->d_name, st.st_mode & 07777) ==
			      0);
			a = openat(src, de->d_name,
				   O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			b = openat(dst, de->d_name,
				   O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			check(a >= 0 && b >= 0);
			copy_tree(a, b);
			close(a);
			close(b);
		} else {
			size_t len;
			char *text;

			check(S_ISREG(st.st_mode));
			check(st.st_size <= FORMAT_MAX_BYTES);
			text = read_at(src, de->d_name, &len);
			write_at(dst, de->d_name, text, len);
			fchmodat(dst, de->d_name, st.st_mode & 07777, 0);
			free(text);
		}
	}
	closedir(d);
}

/* A fresh copy of the template store, plus the optional fixtures. */
static void store_reset(bool fixtures)
{
	int fd;

	empty_dir(store_fd);
	copy_tree(template_fd, store_fd);
	if (!fixtures)
		return;
	fd = sub_fd(STORE_RECORDS_DIR);
	write_at(fd, "a", "A\n", 2);
	check(mkdirat(fd, "ns", 0700) == 0);
	write_at(fd, "ns/b", "B\n", 2);
	close(fd);
	fd = sub_fd(STORE_TMP_DIR);
	write_at(fd, "st.1", "staged content\n", 15);
	close(fd);
}

/* ---- building the journal from the input --------------------------------- */

struct out {
	uint8_t *p;
	size_t len, cap;
};

static void put(struct out *o, const void *src, size_t n)
{
	if (o->len + n > o->cap) {
		size_t cap = o->cap ? o->cap : 4096;

		while (cap < o->len + n)
			cap *= 2;
		o->p = realloc(o->p, cap);
		check(o->p != NULL);
		o->cap = cap;
	}
	if (n)
		memcpy(o->p + o->len, src, n);
	o->len += n;
}

static void put_file_hdr(struct out *o, const char *magic, uint64_t v)
{
	uint8_t h[JNL_FILE_HDR];

	memcpy(h, magic, 8);
	for (int i = 0; i < 8; i++)
		h[8 + i] = (uint8_t)(v >> (8 * i));
	put(o, h, sizeof(h));
}

static void put_frame(struct out *o, uint64_t seq, const uint8_t *p, size_t len)
{
	uint8_t h[JNL_FRAME_HDR];
	struct iovec v = {(void *)p, len};

	jnl_frame_encode(h, seq, &v, 1);
	put(o, h, sizeof(h));
	put(o, p, len);
}

static void write_segment(int jfd, uint64_t first, const struct out *o)
{
	char name[32];

	snprintf(name, sizeof(name), "%020" PRIu64 ".log", first);
	write_at(jfd, name, o->p, o->len);
}

/* Modes 1..3 (see the top of the file). */
static void build_framed(const uint8_t *d, size_t n, unsigned mode)
{
	struct out seg = {0}, snap = {0};
	uint64_t first = 1 + (n ? d[0] % 4 : 0), seq = first;
	bool in_snap = mode == 2;
	int jfd = sub_fd(STORE_JOURNAL_DIR);
	size_t off = n ? 1 : 0;

	if (mode == 2)
		put_file_hdr(&snap, JNL_SNAPSHOT_MAGIC, first - 1);
	put_file_hdr(&seg, JNL_SEGMENT_MAGIC, first);
	while (off + 2 <= n) {
		size_t len = d[off] | (size_t)d[off + 1] << 8;

		off += 2;
		if (len == 0xffff) {
			put(&seg, d + off, n - off);
			off = n;
			break;
		}
		if (len == 0xfffe) {
			if (in_snap) {
				in_snap = false;
			} else if (mode == 3) {
				write_segment(jfd, first, &seg);
				seg.len = 0;
				first = seq;
				put_file_hdr(&seg, JNL_SEGMENT_MAGIC, first);
			}
			continue;
		}
		if (len > n - off)
			len = n - off;
		if (in_snap)
			put_frame(&snap, 0, d + off, len);
		else
			put_frame(&seg, seq++, d + off, len);
		off += len;
	}
	write_segment(jfd, first, &seg);
	if (mode == 2)
		write_at(store_fd, STORE_INDEX_FILE, snap.p, snap.len);
	close(jfd);
	free(seg.p);
	free(snap.p);
}

static void build_raw(const uint8_t *d, size_t n, bool name_one)
{
	uint64_t first = 0;
	struct out o = {(uint8_t *)d, n, n};
	int jfd = sub_fd(STORE_JOURNAL_DIR);

	if (!name_one && n >= JNL_FILE_HDR)
		for (int i = 7; i >= 0; i--)
			first = (first << 8) | d[8 + i];
	write_segment(jfd, name_one || !first ? 1 : first, &o);
	close(jfd);
}

/* ---- the checks -------------------------------------------------------- */

/* Nothing new next to the store; the outside file and format.json kept. */
static void check_contained(void)
{
	int dfd = openat(base_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	size_t len, names = 0;
	char *text;
	DIR *d;

	check(dfd >= 0);
	d = fdopendir(dfd);
	check(d != NULL);
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		check(!strcmp(de->d_name, "store") ||
		      !strcmp(de->d_name, "template") ||
		      !strcmp(de->d_name, "outside"));
		names++;
	}
	closedir(d);
	check(names == 3);
	text = read_at(base_fd, "outside", &len);
	check(len == sizeof(outside_text) - 1 &&
	      memcmp(text, outside_text, len) == 0);
	free(text);
	text = read_at(store_fd, FORMAT_FILE, &len);
	check(len == format_len && memcmp(text, format_text, len) == 0);
	free(text);
}

static bool expected_open_error(int rc)
{
	switch (rc) {
	case -EBADMSG: /* corrupt journal or snapshot */
	case -ENOENT:  /* a namespace of a replayed record is missing */
	case -ENOTDIR: /* ... or is a file */
	case -EISDIR:  /* a record replayed over a namespace */
	case -EXDEV:   /* an ID that would leave records/ */
	case -ELOOP:
	case -EBUSY: /* a stage named "." or ".." */
	case -EINVAL:
	case -ENOTEMPTY:
	case -EEXIST:
	case -ENAMETOOLONG:
	case -EFBIG:
		return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct store_opts o = {.backend = STORE_BACKEND_FILE};
	struct store_verify_report rep;
	struct store *s = NULL;
	uint64_t rev1, live1, tomb1, rev2, live2, tomb2;
	unsigned mode;
	int rc;

	if (size < 1)
		return 0;
	if (base_fd < 0)
		base_init();
	mode = data[0] & 3;
	store_reset(data[0] & 8);
	if (mode == 0)
		build_raw(data + 1, size - 1, data[0] & 4);
	else
		build_framed(data + 1, size - 1, mode);

	o.path = store_dir;
	/* the history writer runs too (the journal is its queue): let it
	   commit at once, and wait for it */
	o.history_delay_ms = 1;
	o.history_drain_ms = 10000;
	quiet(true);
	rc = store_open(&s, &o);
	quiet(false);
	if (rc) {
		check(s == NULL);
		if (!expected_open_error(rc)) {
			fprintf(stderr, "store_open: unexpected %d (%s)\n", rc,
				strerror(-rc));
			check(!"store_open gave an unexpected error");
		}
		check_contained();
		return 0;
	}
	quiet(true);
	rc = store_verify(s, &rep);
	quiet(false);
	check(rc == 0 || rc < 0);
	check(rep.bad <= rep.records + 1000000);
	rev1 = store_revision(s);
	store_counts(s, &live1, &tomb1);
	quiet(true);
	rc = store_close(s);
	quiet(false);
	check(rc <= 0);
	check_contained();

	/* what opened once opens again, the same */
	s = NULL;
	quiet(true);
	rc = store_open(&s, &o);
	quiet(false);
	if (rc) {
		fprintf(stderr, "reopen: %d (%s)\n", rc, strerror(-rc));
		check(!"a store that opened does not open again");
	}
	rev2 = store_revision(s);
	store_counts(s, &live2, &tomb2);
	check(rev2 == rev1);
	/* a REC_META for an ID the store has no version of leaves an entry
	   of version 0 (counted as a tombstone) that no snapshot keeps */
	check(live2 == live1 && tomb2 <= tomb1);
	quiet(true);
	rc = store_close(s);
	quiet(false);
	check(rc <= 0);
	check_contained();
	return 0;
}
