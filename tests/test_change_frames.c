/*
 * test_change_frames.c - `recfsctl watch` (store_changes_*) over a change
 * of many journal frames: REC_TXN_PART frames, then the REC_TXN frame
 * that ends the change, all with one seq (written with jnl_big_*, as the
 * store writes a large change). Every part comes once, with the change's
 * revision, in order; a change whose last frame is not written yet is
 * not handed out at all.
 */
#include "changes.h"
#include "helpers.h"
#include "jnl.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "store_i.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define PARTS 4 /* a frame */
#define FRAMES 3

static void setup(void)
{
	sandbox_store("chframes", true);
}

TestSuite(change_frames, .init = setup, .fini = sandbox_store_rm,
	  .timeout = 120);

static int count(void *arg, uint64_t seq, const void *payload, size_t len)
{
	(void)seq;
	(void)payload;
	(void)len;
	return 0;
}

/* Frame k of the change: PARTS puts of "big/kK-pI", as `type`. */
static uint8_t *frame(int k, int type, size_t *len)
{
	struct rec parts[PARTS];
	char ids[PARTS][32];
	uint8_t *p = NULL;

	for (int i = 0; i < PARTS; i++) {
		snprintf(ids[i], sizeof(ids[i]), "big/k%d-p%d", k, i);
		parts[i] = (struct rec){.type = REC_PUT};
		parts[i].id = ids[i];
		parts[i].id_len = strlen(ids[i]);
		parts[i].meta.version = 1;
		parts[i].meta.size = 1;
		parts[i].has_data = true;
		parts[i].data = (const uint8_t *)"x";
		parts[i].data_len = 1;
	}
	cr_assert_eq(codec_encode_txn(parts, PARTS, &p, len), 0);
	p[0] = (uint8_t)type;
	return p;
}

/* The changes store_changes hands out after revision 1. */
static size_t read_changes(struct store_change *out, size_t max, uint64_t *pos)
{
	struct store_changes *c = NULL;
	struct store_change ch;
	size_t n = 0;
	int rc;

	cr_assert_eq(store_changes_open(&c, spath, 1), 0);
	while ((rc = store_changes_next(c, UINT64_MAX, &ch)) == 1) {
		cr_assert_lt(n, max);
		out[n] = ch;
		out[n].id = strdup(ch.id);
		n++;
	}
	cr_assert_eq(rc, 0);
	*pos = store_changes_pos(c);
	store_changes_free(c);
	return n;
}

/* Append the change: FRAMES frames, the last one only if `end`; else
   *seen gets what a watch finds meanwhile (the frames before the last
   written, as a crash could leave them), then they are dropped. */
static void write_change(bool end, size_t *seen, uint64_t *pos)
{
	struct store_change ch[2 * PARTS * FRAMES];
	struct jnl_scan_report rep = {0};
	struct jnl_opts o = {0};
	struct jnl_big *b = NULL;
	struct jnl *j = NULL;
	char path[PATH_MAX + 64];
	uint64_t seq = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", spath, STORE_JOURNAL_DIR);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(jnl_scan(NULL, fd, 0, count, NULL, &rep), 0);
	o.dirfd = fd;
	/* the store checkpointed its journal at close: its next segment
	   starts after revision 1 */
	o.next_seq = (rep.last_seq > 1 ? rep.last_seq : 1) + 1;
	cr_assert_eq(jnl_open(&j, &o), 0);
	cr_assert_eq(jnl_big_begin(j, &b), 0);
	for (int k = 0; k < FRAMES; k++) {
		size_t len;
		uint8_t *p =
			frame(k, k + 1 < FRAMES ? REC_TXN_PART : REC_TXN, &len);
		struct iovec iov = {p, len};

		if (k + 1 < FRAMES)
			cr_assert_eq(jnl_big_add(b, &iov, 1), 0);
		else if (end)
			cr_assert_eq(jnl_big_commit(b, &iov, 1, &seq), 0);
		free(p);
	}
	if (!end) {
		*seen = read_changes(ch, 2 * PARTS * FRAMES, pos);
		jnl_big_abort(b);
	} else
		cr_assert_eq(seq, o.next_seq);
	jnl_close(j);
	close(fd);
}

static void first_revision(void)
{
	struct store_opts o = {.path = spath, .create = true};
	struct store *s = open_ok(&o);
	struct store_result r;

	cr_assert_eq(store_put(s, "one", "1", 1, NULL, &r), 0);
	cr_assert_eq(r.revision, 1);
	store_close(s);
}

Test(change_frames, every_part_of_a_change_of_many_frames_once)
{
	struct store_change ch[2 * PARTS * FRAMES];
	char want[32];
	uint64_t pos;
	size_t n;

	first_revision();
	write_change(true, NULL, NULL);
	n = read_changes(ch, 2 * PARTS * FRAMES, &pos);
	cr_assert_eq(n, PARTS * FRAMES, "%zu changes", n);
	cr_assert_eq(pos, 2);
	for (size_t i = 0; i < n; i++) {
		snprintf(want, sizeof(want), "big/k%zu-p%zu", i / PARTS,
			 i % PARTS);
		cr_assert_str_eq(ch[i].id, want);
		cr_assert_eq(ch[i].revision, 2);
		cr_assert_eq(ch[i].op, STORE_CHANGE_PUT);
		free((char *)ch[i].id);
	}
}

Test(change_frames, a_change_without_its_last_frame_is_not_handed_out)
{
	uint64_t pos = 0;
	size_t seen = 1;

	first_revision();
	write_change(false, &seen, &pos);
	cr_assert_eq(seen, 0, "%zu changes of an unfinished change", seen);
	cr_assert_eq(pos, 1);
}
