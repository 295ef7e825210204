/*
 * test_reserve.c - the space reserve (store/reserve.c, SPEC section 8):
 * its size, STORE/reserve preallocated at open, a delete or rename that
 * meets ENOSPC tried once more with the reserve given back (and not
 * more), a commit of new content that meets it failing without touching
 * the reserve, no room at open not being fatal, and, on a real full
 * tmpfs, new content kept from what deletes free until the reserve's
 * size is free again, and a store that opens on a full disk. ENOSPC
 * comes from the failpoints of base/io.c ("commit.journal",
 * "reserve.alloc") or from a full tmpfs.
 *
 * Each test builds its store in a fresh sandbox directory (sandbox.h).
 */
#include "admin.h"
#include "helpers.h"
#include "io.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "store_history.h"
#include "store_i.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define MiB (1ull << 20)

static void setup(void)
{
	sandbox_store("reserve", true);
}

TestSuite(reserve, .init = setup, .fini = sandbox_store_rm, .timeout = 120);

/* ---- helpers ------------------------------------------------------------ */

static struct store *open_store(struct io *io)
{
	struct store_opts o = {.path = spath, .create = true, .io = io};
	return open_ok(&o);
}

static int put_str(struct store *s, const char *id, const char *text)
{
	return store_put(s, id, text, strlen(text), NULL, NULL);
}

static struct store_status status(struct store *s)
{
	struct store_status st;

	store_status_get(s, &st);
	return st;
}

/* Size and allocated bytes of STORE/reserve. */
static void reserve_file(uint64_t *size, uint64_t *allocated)
{
	char p[PATH_MAX + 64];
	struct stat st;

	snprintf(p, sizeof(p), "%s/reserve", spath);
	cr_assert_eq(stat(p, &st), 0, "%s: %s", p, strerror(errno));
	cr_expect_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	*size = (uint64_t)st.st_size;
	*allocated = (uint64_t)st.st_blocks * 512;
}

/*
 * The store on a small file system: the sandbox as a tmpfs of `size`, in
 * a mount namespace of this test process's own (gone with it), or, if
 * $RECFS_TEST_SMALL_FS names one, a directory on a small file system made
 * by root (an ext4 image, say, to run as another user: a user meets
 * ENOSPC while root's reserved blocks are still free). Returns whether
 * it mounted the tmpfs.
 */
static bool store_on_small_fs(const char *size)
{
	const char *dir = getenv("RECFS_TEST_SMALL_FS");

	if (dir && *dir) {
		snprintf(spath, sizeof(spath), "%s/store", dir);
		return false;
	}
	small_fs(base, size);
	return true;
}

/* Rename "a" to "b" (even n) or back (odd n). */
static void flip(struct store *s, int n)
{
	int rc = store_rename(s, n % 2 ? "b" : "a", n % 2 ? "a" : "b", NULL,
			      NULL, NULL);

	cr_assert_eq(rc, 0, "rename %d: %s", n, strerror(-rc));
}

/* ---- tests -------------------------------------------------------------- */

Test(reserve, its_size_follows_the_records_and_the_file_system)
{
	cr_expect_eq(reserve_size_for(0, 0), 8 * MiB);
	cr_expect_eq(reserve_size_for(1000, 0), 8 * MiB + 256000);
	cr_expect_eq(reserve_size_for(1000000, 0), 64 * MiB, "at most 64 MiB");
	cr_expect_eq(reserve_size_for(0, 16 * MiB), 2 * MiB,
		     "at most 1/8 of the file system");
	cr_expect_eq(reserve_size_for(0, 1024 * MiB), 8 * MiB);
}

Test(reserve, opening_a_store_preallocates_STORE_reserve)
{
	struct store *s = open_store(NULL);
	struct store_status st = status(s);
	uint64_t size, allocated;

	cr_assert(st.reserve_held);
	cr_expect_eq(st.reserve_released, 0);
	cr_expect_eq(st.space_error, 0);
	reserve_file(&size, &allocated);
	cr_expect_eq(size, st.reserve_bytes);
	cr_expect_geq(allocated, st.reserve_bytes, "only %llu bytes allocated",
		      (unsigned long long)allocated);
	cr_assert_eq(store_close(s), 0);
	/* and again at the next open, not twice */
	s = open_store(NULL);
	reserve_file(&size, &allocated);
	cr_expect_eq(size, status(s).reserve_bytes);
	cr_assert_eq(store_close(s), 0);
}

Test(reserve, a_delete_or_rename_meeting_enospc_is_tried_once_more_with_it)
{
	struct io *io = NULL;
	struct store *s;
	struct store_status st;
	unsigned hits;

	cr_assert_eq(io_new(&io), 0);
	s = open_store(io);
	cr_assert_eq(put_str(s, "a", "alpha"), 0);
	cr_assert_eq(put_str(s, "b", "beta"), 0);

	hits = io_hits(io, "commit.journal");
	cr_assert_eq(io_arm(io, "commit.journal", IO_FAIL, ENOSPC, 1, 1), 0);
	cr_expect_eq(store_delete(s, "a", NULL, NULL, NULL), 0);
	cr_expect_eq(io_hits(io, "commit.journal"), hits + 2, "tried twice");
	st = status(s);
	cr_expect_eq(st.reserve_released, 1);
	cr_expect_eq(st.space_error, -ENOSPC);
	cr_expect_str_eq(st.space_error_what, "deleting a record");
	/* there is room here: it is made again after the change */
	cr_expect(st.reserve_held);

	cr_assert_eq(io_arm(io, "commit.journal", IO_FAIL, ENOSPC, 1, 1), 0);
	cr_expect_eq(store_rename(s, "b", "c", NULL, NULL, NULL), 0);
	st = status(s);
	cr_expect_eq(st.reserve_released, 2);
	cr_expect_str_eq(st.space_error_what, "renaming a record");
	cr_assert_eq(store_close(s), 0);
	io_free(io);
}

Test(reserve, a_delete_meeting_enospc_twice_fails_without_looping)
{
	struct io *io = NULL;
	struct store *s;
	void *buf = NULL;
	size_t len;
	unsigned hits;

	cr_assert_eq(io_new(&io), 0);
	s = open_store(io);
	cr_assert_eq(put_str(s, "a", "alpha"), 0);
	hits = io_hits(io, "commit.journal");
	cr_assert_eq(io_arm(io, "commit.journal", IO_FAIL, ENOSPC, 1, 0), 0);
	cr_expect_eq(store_delete(s, "a", NULL, NULL, NULL), -ENOSPC);
	cr_expect_eq(io_hits(io, "commit.journal"), hits + 2, "tried %u times",
		     io_hits(io, "commit.journal") - hits);
	cr_expect_eq(status(s).reserve_released, 1);
	cr_expect_eq(store_get(s, "a", &buf, &len, NULL), 0,
		     "a is still there");
	free(buf);
	io_disarm_all(io);
	cr_expect_eq(store_delete(s, "a", NULL, NULL, NULL), 0);
	cr_assert_eq(store_close(s), 0);
	io_free(io);
}

Test(reserve, a_commit_of_content_meeting_enospc_fails_and_leaves_it)
{
	struct io *io = NULL;
	struct store *s;
	struct store_status st;
	void *buf = NULL;
	size_t len;

	cr_assert_eq(io_new(&io), 0);
	s = open_store(io);
	cr_assert_eq(put_str(s, "a", "old"), 0);
	cr_assert_eq(io_arm(io, "commit.journal", IO_FAIL, ENOSPC, 1, 1), 0);
	cr_expect_eq(put_str(s, "a", "new"), -ENOSPC);
	st = status(s);
	cr_expect(st.reserve_held);
	cr_expect_eq(st.reserve_released, 0, "content never takes it");
	cr_expect_eq(st.space_error, -ENOSPC);
	cr_expect_str_eq(st.space_error_what, "committing");
	cr_assert_eq(store_get(s, "a", &buf, &len, NULL), 0);
	cr_expect(len == 3 && !memcmp(buf, "old", 3), "the old version");
	free(buf);
	cr_assert_eq(store_close(s), 0);
	io_free(io);
}

Test(reserve, no_room_for_it_at_open_is_not_fatal_and_it_comes_back)
{
	struct io *io = NULL;
	struct store *s;
	uint64_t size, allocated;

	cr_assert_eq(io_new(&io), 0);
	cr_assert_eq(io_arm(io, "reserve.alloc", IO_FAIL, ENOSPC, 1, 1), 0);
	s = open_store(io);
	cr_expect_not(status(s).reserve_held);
	reserve_file(&size, &allocated);
	cr_expect_eq(size, 0);
	/* a change made with room: the reserve is made then */
	cr_assert_eq(put_str(s, "a", "alpha"), 0);
	cr_expect(status(s).reserve_held);
	reserve_file(&size, &allocated);
	cr_expect_eq(size, status(s).reserve_bytes);
	cr_assert_eq(store_close(s), 0);
	io_free(io);
}

Test(reserve, on_a_full_disk_renames_get_room_that_new_content_cannot_take)
{
	char filler[PATH_MAX + 64];
	struct store_status st;
	struct statvfs vfs;
	struct store *s;
	uint64_t room;
	char *big;
	size_t len;
	int n, rc;

	bool mounted = store_on_small_fs("16m");

	s = open_store(NULL);
	cr_assert_eq(statvfs(spath, &vfs), 0);
	cr_assert_eq(status(s).reserve_bytes,
		     reserve_size_for(1, (uint64_t)vfs.f_blocks * vfs.f_frsize),
		     "1/8 of a small file system");
	cr_assert_eq(put_str(s, "a", "a record renamed again and again"), 0);
	/* nothing the history or a checkpoint could free later */
	cr_assert_eq(store_history_drain(s, 10000), 0);
	cr_assert_eq(store_checkpoint(s), 0);
	snprintf(filler, sizeof(filler), "%s.filler", spath);
	fill_fs(filler);
	/* renames work on the full disk: the reserve makes room for their
	   journal records once the journal's own slack is used up */
	for (n = 0; n < 8192 && status(s).reserve_released == 0; n++)
		flip(s, n);
	st = status(s);
	cr_expect_eq(st.reserve_released, 1);
	cr_expect_not(st.reserve_held, "no room to make it again");
	/* by a rename, or by the history writer, whose batch holds them */
	cr_expect(!strcmp(st.space_error_what, "renaming a record") ||
			  !strcmp(st.space_error_what, "writing the history"),
		  "given back while %s", st.space_error_what);
	for (int i = 0; i < 64; i++, n++) /* more of them */
		flip(s, n);
	/* what it freed is not for new content */
	cr_assert_eq(statvfs(spath, &vfs), 0);
	room = (uint64_t)(geteuid() == 0 ? vfs.f_bfree : vfs.f_bavail) *
	       vfs.f_frsize;
	cr_assert_lt(room, st.reserve_bytes, "room %llu",
		     (unsigned long long)room);
	len = room / 2;
	big = malloc(len);
	cr_assert_not_null(big);
	memset(big, 'b', len);
	rc = store_put(s, "new", big, len, NULL, NULL);
	cr_expect_eq(rc, -ENOSPC, "put of %zu bytes with %llu free: %s", len,
		     (unsigned long long)room, strerror(-rc));
	cr_expect_str_eq(status(s).space_error_what, "committing");
	/* room again: it goes in, and the reserve is held again */
	cr_assert_eq(unlink(filler), 0);
	cr_expect_eq(store_put(s, "new", big, len, NULL, NULL), 0);
	cr_expect(status(s).reserve_held);
	free(big);
	cr_assert_eq(store_close(s), 0);
	if (mounted)
		cr_assert_eq(umount2(base, MNT_DETACH), 0);
	else
		sandbox_rm(spath);
}

Test(reserve, a_store_opens_on_a_full_disk_with_it)
{
	char filler[PATH_MAX + 64];
	bool mounted = store_on_small_fs("16m");
	struct store_status st;
	struct store *s;
	int rc;

	s = open_store(NULL);
	cr_assert_eq(put_str(s, "a", "alpha"), 0);
	cr_assert(status(s).reserve_held);
	snprintf(filler, sizeof(filler), "%s.filler", spath);
	fill_fs(filler);
	(void)store_close(s); /* its checkpoint may fail: no room */
	/* the open needs room (a journal segment, a checkpoint): the
	   reserve gives it; it cannot be made again after */
	s = open_store(NULL);
	st = status(s);
	cr_expect_not(st.reserve_held);
	cr_expect_eq(st.reserve_released, 1);
	rc = store_delete(s, "a", NULL, NULL, NULL);
	cr_expect_eq(rc, 0, "delete after the open: %s", strerror(-rc));
	cr_assert_eq(unlink(filler), 0);
	cr_assert_eq(put_str(s, "b", "beta"), 0);
	cr_expect(status(s).reserve_held, "made again once there is room");
	cr_assert_eq(store_close(s), 0);
	if (mounted)
		cr_assert_eq(umount2(base, MNT_DETACH), 0);
	else
		sandbox_rm(spath);
}
