/*
 * fuzz_jnl.c - libFuzzer target for the journal's framing and scan.
 *
 * Every input is decoded frame by frame with jnl_frame_decode_part (and
 * jnl_frame_decode, which must agree except that it refuses the frames of
 * multi-frame records). An input that starts like a segment
 * (JNL_SEGMENT_MAGIC) is also written as a segment file into a
 * per-process temp dir and read back with jnl_scan; the scan must account
 * for every byte (header + frames + torn tail) and hand out consecutive
 * seqs (the frames of a multi-frame record share one). If it holds
 * records, a second segment that continues it (same payloads and frame
 * marks, next seqs, the same torn tail renumbered likewise) is added and
 * the two are scanned together.
 */
#include "jnl.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One temp dir per process, emptied for each input, removed at exit. */
static char dir_path[] = "/tmp/recfs-fuzz-jnl.XXXXXX";
static int dir_fd = -1;

#define check(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			abort();                                               \
		}                                                              \
	} while (0)

static void dir_clear(void)
{
	DIR *d;
	struct dirent *de;
	int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	check(fd >= 0);
	d = fdopendir(fd);
	check(d != NULL);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			unlinkat(dir_fd, de->d_name, 0);
	closedir(d);
}

static void dir_remove(void)
{
	dir_clear();
	close(dir_fd);
	rmdir(dir_path);
}

static void dir_init(void)
{
	if (dir_fd >= 0) {
		dir_clear();
		return;
	}
	check(mkdtemp(dir_path) != NULL);
	dir_fd = open(dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	check(dir_fd >= 0);
	atexit(dir_remove);
	rlog_set_level(RLOG_ERR); /* torn tails are the common case here */
}

static void write_seg(uint64_t first, const void *a, size_t alen, const void *b,
		      size_t blen)
{
	char name[32];
	int fd;

	snprintf(name, sizeof(name), "%020" PRIu64 ".log", first);
	fd = openat(dir_fd, name, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC,
		    0600);
	check(fd >= 0);
	check(write(fd, a, alen) == (ssize_t)alen);
	if (blen)
		check(write(fd, b, blen) == (ssize_t)blen);
	close(fd);
}

static void truncate_seg(uint64_t first, size_t len)
{
	char name[32];
	int fd;

	snprintf(name, sizeof(name), "%020" PRIu64 ".log", first);
	fd = openat(dir_fd, name, O_WRONLY | O_CLOEXEC);
	check(fd >= 0);
	check(ftruncate(fd, (off_t)len) == 0);
	close(fd);
}

/* What the scan callback saw (n records in nf frames); `frames`
   re-encodes them from seq `base`. */
struct seen {
	uint64_t n, nf, first, last, bytes;
	uint64_t base;
	uint8_t *frames;
	size_t len, cap, prev; /* prev: offset of the last frame in frames */
};

static void reencode(uint8_t *frame, uint64_t seq, bool more)
{
	uint32_t plen = 0;

	for (int i = 3; i >= 0; i--)
		plen = (plen << 8) | frame[4 + i];
	plen &= ~JNL_FRAME_MORE;
	{
		struct iovec v = {frame + JNL_FRAME_HDR, plen};

		jnl_frame_encode_part(frame, seq, more, &v, 1);
	}
}

static int on_record(void *arg, uint64_t seq, const void *payload, size_t len)
{
	struct seen *s = arg;
	size_t need = JNL_FRAME_HDR + len;
	bool cont = s->nf > 0 && seq == s->last;

	check(len <= JNL_MAX_RECORD);
	if (!cont) {
		if (s->n == 0)
			s->first = seq;
		else
			check(seq == s->last + 1);
		s->n++;
	}
	s->last = seq;
	s->nf++;
	s->bytes += need;
	if (s->base) {
		if (s->len + need > s->cap) {
			size_t cap = 2 * (s->len + need);
			uint8_t *p = realloc(s->frames, cap);

			check(p != NULL);
			s->frames = p;
			s->cap = cap;
		}
		if (cont) /* the frame before was not the last of its record */
			reencode(s->frames + s->prev, s->base + s->n - 1, true);
		if (len)
			memcpy(s->frames + s->len + JNL_FRAME_HDR, payload,
			       len);
		{
			struct iovec v = {s->frames + s->len + JNL_FRAME_HDR,
					  len};

			jnl_frame_encode_part(s->frames + s->len,
					      s->base + s->n - 1, false, &v, 1);
		}
		s->prev = s->len;
		s->len += need;
	}
	return 0;
}

static void decode_all(const uint8_t *data, size_t size)
{
	const uint8_t *payload;
	uint8_t hdr[JNL_FRAME_HDR];
	uint64_t seq;
	size_t off = 0, len, need;
	bool more;
	long n, n1;

	while (off < size) {
		n = jnl_frame_decode_part(data + off, size - off, &seq,
					  &payload, &len, &more, &need);
		n1 = jnl_frame_decode(data + off, size - off, NULL, NULL, NULL,
				      NULL);
		check(n1 == (n > 0 && more ? -EBADMSG : n) ||
		      (n1 == -EBADMSG && n == 0 && size - off >= 8));
		if (n < 0)
			return;
		if (n == 0) {
			check(need > size - off);
			check(need <= JNL_FRAME_HDR + (size_t)JNL_MAX_RECORD);
			return;
		}
		check((size_t)n <= size - off);
		check((size_t)n == JNL_FRAME_HDR + len);
		check(payload == data + off + JNL_FRAME_HDR);
		{
			struct iovec v = {(void *)payload, len};

			jnl_frame_encode_part(hdr, seq, more, &v, 1);
		}
		check(memcmp(hdr, data + off, JNL_FRAME_HDR) == 0);
		off += (size_t)n;
	}
}

/*
 * A torn tail may start with whole frames of a multi-frame record that
 * lacks its last frame (seq: the record after the last one): give them
 * the seq `seq` that record has in the second segment.
 */
static void renumber_tail(uint8_t *p, size_t len, uint64_t seq)
{
	size_t off = 0, plen;
	bool more = true;
	long n;

	while (more && off < len) {
		n = jnl_frame_decode_part(p + off, len - off, NULL, NULL, &plen,
					  &more, NULL);
		if (n <= 0)
			return;
		check(more); /* else the scan would have taken it */
		reencode(p + off, seq, true);
		off += (size_t)n;
	}
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jnl_scan_report r1, r2;
	struct seen s1 = {0}, s2 = {0};
	uint8_t hdr[JNL_FILE_HDR];
	uint64_t first, next, after;
	size_t valid, tail;
	int rc;

	decode_all(data, size);
	if (size >= JNL_FILE_HDR)
		decode_all(data + JNL_FILE_HDR, size - JNL_FILE_HDR);
	if (size < JNL_FILE_HDR || memcmp(data, JNL_SEGMENT_MAGIC, 8) != 0)
		return 0;

	first = get_le64(data + 8);
	if (first > UINT64_MAX / 2)
		return 0; /* keep seq arithmetic below away from wrapping */
	dir_init();
	write_seg(first, data, size, NULL, 0);

	rc = jnl_scan(NULL, dir_fd, 0, on_record, &s1, &r1);
	/* Only a well-checksummed frame with the wrong seq is corruption. */
	check(rc == 0 || rc == -EBADMSG);
	if (rc != 0)
		goto out;
	check(r1.segments == 1);
	check(r1.records == s1.n);
	if (first == 0)
		goto out; /* a record of seq 0 is never passed (seq > after) */
	check(JNL_FILE_HDR + s1.bytes + r1.torn_bytes + r1.zero_bytes == size);
	check(s1.n == 0 || (s1.first == first && r1.last_seq == s1.last));
	if (s1.n == 0)
		goto out;

	/* Continue it with a second segment: same payloads, next seqs. */
	next = first + s1.n;
	tail = (size_t)(r1.torn_bytes + r1.zero_bytes);
	valid = size - tail;
	s1.base = next;
	s1.n = s1.nf = s1.bytes = 0;
	rc = jnl_scan(NULL, dir_fd, 0, on_record, &s1, &r1);
	check(rc == 0);
	truncate_seg(first, valid);
	memcpy(hdr, JNL_SEGMENT_MAGIC, 8);
	for (int i = 0; i < 8; i++)
		hdr[8 + i] = (uint8_t)(next >> (8 * i));
	{
		size_t blen = s1.len + tail;
		uint8_t *body = malloc(blen ? blen : 1);

		check(body != NULL);
		if (s1.len)
			memcpy(body, s1.frames, s1.len);
		memcpy(body + s1.len, data + valid, tail);
		renumber_tail(body + s1.len, tail, next + s1.n);
		write_seg(next, hdr, sizeof(hdr), body, blen);
		free(body);
	}

	after = first + s1.n / 2;
	rc = jnl_scan(NULL, dir_fd, after, on_record, &s2, &r2);
	check(rc == 0);
	check(r2.segments == 2);
	check(r2.torn_bytes == r1.torn_bytes && r2.zero_bytes == r1.zero_bytes);
	check(r2.last_seq == next + s1.n - 1);
	check(r2.records == next + s1.n - 1 - after);
	check(s2.n == r2.records && (s2.n == 0 || s2.first == after + 1));
out:
	free(s1.frames);
	free(s2.frames);
	return 0;
}
