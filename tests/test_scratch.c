/*
 * test_scratch.c - scratch files (store/scratch.c): plain files kept in
 * STORE/scratch that survive a close and reopen, keep namespaces from
 * going while they hold some, refuse symlinks planted in the store, and
 * are never seen by store_list, verify or the history; backups carry
 * them. Renames between scratch files and records: test_scratch_commit.c.
 * The fixture is in scratch_helpers.h.
 */
#include "admin.h"
#include "helpers.h"
#include "io.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "scratch.h"
#include "scratch_helpers.h"
#include "store.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

TestSuite(scratch, .init = scratch_setup, .fini = sandbox_store_rm,
	  .timeout = 300);

/* ---- plain files that stay ---------------------------------------------- */

Test(scratch, survives_close_and_reopen_with_mode_and_xattrs)
{
	struct store *s = open_store(NULL);
	struct names nm = {0};
	char val[16] = "";
	struct stat st;
	int fd = -1;

	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	mk_scratch_buf(s, "ns/.f.abc123", "hello", 5, 0640);
	set_xattr(s, "ns/.f.abc123", "user.k", "v");
	cr_assert_eq(store_close(s), 0);

	s = open_store(NULL);
	cr_assert_eq(store_scratch_stat(s, "ns/.f.abc123", &st), 0);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 0640, "mode %o", st.st_mode & 07777);
	cr_assert_eq(st.st_size, 5);
	expect_scratch(s, "ns/.f.abc123", "hello");
	cr_assert_eq(store_scratch_open(s, "ns/.f.abc123", O_RDONLY, 0, &fd),
		     0);
	cr_assert_eq(fgetxattr(fd, "user.k", val, sizeof(val)), 1);
	close(fd);
	cr_assert_eq(store_scratch_list(s, "ns", collect, &nm), 0);
	cr_assert_str_eq(nm.buf, ".f.abc123;");
	/* not a record: neither listed nor found as one */
	memset(&nm, 0, sizeof(nm));
	cr_assert_eq(store_list(s, "ns", collect, &nm), 0);
	cr_assert_eq(nm.n, 0, "store_list: %s", nm.buf);
	cr_assert_eq(store_get(s, "ns/.f.abc123", &(void *){NULL}, &(size_t){0},
			       NULL),
		     -ENOENT);
	store_close(s);
}

Test(scratch, fsync_syncs_the_file_and_its_directory)
{
	struct io *io = NULL;
	struct store *s;
	int fd = -1;

	cr_assert_eq(io_new(&io), 0);
	s = open_store(io);
	cr_assert_eq(
		store_scratch_open(s, ".x.swp", O_RDWR | O_CREAT, 0600, &fd),
		0);
	cr_assert_eq(pwrite(fd, "swap", 4, 0), 4);
	cr_assert_eq(store_scratch_fsync(s, ".x.swp", fd), 0);
	cr_assert_eq(io_hits(io, "scratch.fsync"), 1);
	cr_assert_eq(io_hits(io, "scratch.dirsync"), 1);
	/* its errors are the caller's */
	cr_assert_eq(io_arm(io, "scratch.fsync", IO_FAIL, EIO, 1, 1), 0);
	cr_assert_eq(store_scratch_fsync(s, ".x.swp", fd), -EIO);
	close(fd);
	store_close(s);
	s = open_store(NULL);
	expect_scratch(s, ".x.swp", "swap");
	store_close(s);
	io_free(io);
}

Test(scratch, open_honours_its_flags_and_the_namespace_rules)
{
	struct store *s = open_store(NULL);
	struct stat st;
	mode_t old = umask(022);
	int fd = -1;

	cr_assert_eq(
		store_scratch_open(s, "nope/.x.1", O_RDWR | O_CREAT, 0600, &fd),
		-ENOENT);
	cr_assert_eq(store_scratch_open(s, "absent~", O_RDONLY, 0, &fd),
		     -ENOENT);
	cr_assert_eq(store_scratch_open(s, "a@3", O_RDWR | O_CREAT, 0600, &fd),
		     -EINVAL);
	cr_assert_eq(store_scratch_open(s, "../x", O_RDWR | O_CREAT, 0600, &fd),
		     -EINVAL);
	cr_assert_eq(store_scratch_open(s, "x", O_RDONLY | O_DIRECTORY, 0, &fd),
		     -EINVAL);
	cr_assert_eq(fd, -1);
	/* the mode asked, exactly (no umask) */
	cr_assert_eq(store_scratch_open(s, "4913", O_WRONLY | O_CREAT | O_EXCL,
					0604, &fd),
		     0);
	close(fd);
	cr_assert_eq(store_scratch_stat(s, "4913", &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0604, "mode %o", st.st_mode & 07777);
	cr_assert_eq(store_scratch_open(s, "4913", O_WRONLY | O_CREAT | O_EXCL,
					0600, &fd),
		     -EEXIST);
	/* O_TRUNC of an existing one */
	mk_scratch(s, "f~", "abc");
	cr_assert_eq(store_scratch_open(s, "f~", O_WRONLY | O_TRUNC, 0, &fd),
		     0);
	close(fd);
	cr_assert_eq(store_scratch_stat(s, "f~", &st), 0);
	cr_assert_eq(st.st_size, 0);
	/* a namespace is not a scratch file, nor can one take its name */
	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	cr_assert_eq(store_scratch_open(s, "ns", O_RDWR | O_CREAT, 0600, &fd),
		     -EISDIR);
	cr_assert_eq(store_mkdir(s, "f~", 0755), -EEXIST);
	cr_assert_eq(store_scratch_rename(s, "f~", "ns"), -EISDIR);
	put_str(s, "r", "rec");
	cr_assert_eq(store_scratch_from_record(s, "r", "ns", NULL), -EISDIR);
	expect_record(s, "r", "rec", 3, 1);
	umask(old);
	store_close(s);
}

Test(scratch, list_names_only_the_files_of_that_namespace)
{
	struct store *s = open_store(NULL);
	struct names nm = {0};

	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	cr_assert_eq(store_mkdir(s, "ns/sub", 0755), 0);
	mk_scratch(s, "top~", "1");
	mk_scratch(s, "ns/.a.swp", "2");
	mk_scratch(s, "ns/sub/sedAbc123", "3");
	put_str(s, "ns/rec", "r");
	cr_assert_eq(store_scratch_list(s, "", collect, &nm), 0);
	cr_assert_str_eq(nm.buf, "top~;"); /* not the directory ns/ */
	memset(&nm, 0, sizeof(nm));
	cr_assert_eq(store_scratch_list(s, "ns", collect, &nm), 0);
	cr_assert_str_eq(nm.buf, ".a.swp;");
	memset(&nm, 0, sizeof(nm));
	cr_assert_eq(store_scratch_list(s, "ns/sub", collect, &nm), 0);
	cr_assert_str_eq(nm.buf, "sedAbc123;");
	memset(&nm, 0, sizeof(nm));
	cr_assert_eq(store_list(s, "ns", collect, &nm), 0);
	cr_assert_eq(nm.n, 2, "store_list: %s", nm.buf); /* rec, sub/ */
	cr_assert_null(strstr(nm.buf, ".a.swp"));
	store_close(s);
}

Test(scratch, rename_replaces_the_target_and_moves_between_namespaces)
{
	struct io *io = NULL;
	struct store *s;

	cr_assert_eq(io_new(&io), 0);
	s = open_store(io);
	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	mk_scratch(s, ".a.1", "one");
	mk_scratch(s, ".a.2", "two");
	cr_assert_eq(store_scratch_rename(s, ".a.1", ".a.2"), 0);
	cr_assert(!scratch_there(s, ".a.1"));
	expect_scratch(s, ".a.2", "one");
	cr_assert_eq(store_scratch_rename(s, ".a.2", "ns/.a.3"), 0);
	expect_scratch(s, "ns/.a.3", "one");
	cr_assert(!scratch_there(s, ".a.2"));
	cr_assert_geq(io_hits(io, "scratch.rename.dirsync"), 3);
	cr_assert_eq(store_scratch_rename(s, "ns/.a.3", "none/.a.3"), -ENOENT);
	cr_assert_eq(store_scratch_rename(s, ".nope", ".a.4"), -ENOENT);
	expect_scratch(s, "ns/.a.3", "one");
	store_close(s);
	io_free(io);
}

/* ---- namespaces --------------------------------------------------------- */

Test(scratch, rmdir_refuses_a_namespace_holding_scratch_files)
{
	struct store *s = open_store(NULL);
	char p[PATH_MAX + 64];
	struct stat st;

	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	mk_scratch(s, "ns/.x.swp", "s");
	cr_assert_eq(store_rmdir(s, "ns"), -ENOTEMPTY);
	expect_scratch(s, "ns/.x.swp", "s");
	cr_assert_eq(store_scratch_unlink(s, "ns/.x.swp"), 0);
	cr_assert_eq(store_scratch_unlink(s, "ns/.x.swp"), -ENOENT);
	cr_assert_eq(store_rmdir(s, "ns"), 0);
	snprintf(p, sizeof(p), "%s/scratch/ns", spath);
	cr_assert_eq(lstat(p, &st), -1, "scratch/ns left behind");
	cr_assert_eq(store_scratch_open(s, "ns/.y", O_RDWR | O_CREAT, 0600,
					&(int){-1}),
		     -ENOENT);
	store_close(s);
}

Test(scratch, rename_ns_holding_scratch_files_is_exdev)
{
	struct store *s = open_store(NULL);

	cr_assert_eq(store_mkdir(s, "a", 0755), 0);
	mk_scratch(s, "a/.x.1", "s");
	cr_assert_eq(store_rename_ns(s, "a", "b"), -EXDEV);
	expect_scratch(s, "a/.x.1", "s");
	cr_assert_eq(store_scratch_unlink(s, "a/.x.1"), 0);
	cr_assert_eq(store_rename_ns(s, "a", "b"), 0);
	mk_scratch(s, "b/.x.2", "t");
	expect_scratch(s, "b/.x.2", "t");
	cr_assert(!scratch_there(s, "a/.x.1"));
	store_close(s);
}

/* ---- the store directory ------------------------------------------------ */

Test(scratch, symlinks_planted_in_the_scratch_tree_are_refused)
{
	struct store *s = open_store(NULL);
	char p[PATH_MAX + 64], out[PATH_MAX + 64];
	struct names nm = {0};
	struct stat st;
	int fd = -1;

	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	snprintf(out, sizeof(out), "%s/outside", base);
	cr_assert_eq(mkdir(out, 0700), 0);
	snprintf(p, sizeof(p), "%s/outside/secret", base);
	cr_assert_eq(close(open(p, O_CREAT | O_WRONLY, 0600)), 0);
	/* a file and a namespace directory replaced by symlinks */
	snprintf(p, sizeof(p), "%s/scratch/link~", spath);
	cr_assert_eq(symlink(out, p), 0);
	snprintf(p, sizeof(p), "%s/scratch/ns", spath);
	cr_assert_eq(symlink(out, p), 0);

	cr_assert_eq(store_scratch_open(s, "link~", O_RDONLY, 0, &fd), -ELOOP);
	cr_assert_eq(store_scratch_stat(s, "link~", &st), -ELOOP);
	cr_assert_eq(store_scratch_unlink(s, "link~"), -ELOOP);
	cr_assert_eq(store_scratch_open(s, "ns/secret", O_RDWR, 0, &fd),
		     -ELOOP);
	cr_assert_eq(
		store_scratch_open(s, "ns/new~", O_RDWR | O_CREAT, 0600, &fd),
		-ELOOP);
	cr_assert_eq(store_scratch_commit(s, "ns/secret", "f", NULL, NULL),
		     -ELOOP);
	cr_assert_eq(fd, -1);
	cr_assert_eq(store_scratch_list(s, "", collect, &nm), 0);
	cr_assert_eq(nm.n, 0, "listed: %s", nm.buf);
	cr_assert_neq(store_scratch_list(s, "ns", collect, &nm), 0);
	snprintf(p, sizeof(p), "%s/outside/new~", base);
	cr_assert_eq(lstat(p, &st), -1, "created outside the store");
	snprintf(p, sizeof(p), "%s/scratch/link~", spath);
	cr_assert_eq(lstat(p, &st), 0, "the link was removed");
	store_close(s);
}

Test(scratch, verify_is_clean_with_scratch_files)
{
	struct store *s = open_store(NULL);
	struct store_verify_report rep;

	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	put_str(s, "a", "1");
	put_str(s, "ns/b", "2");
	mk_scratch(s, ".a.XXXXXX", "3");
	mk_scratch(s, "ns/b~", "4");
	mk_scratch(s, "ns/4913", "");
	cr_assert_eq(store_verify(s, &rep), 0);
	cr_assert_eq(rep.records, 2);
	cr_assert_eq(rep.strays, 0);
	cr_assert_eq(rep.unindexed, 0);
	cr_assert_eq(rep.bad, 0);
	cr_assert_eq(rep.hist_bad, 0);
	store_close(s);
	s = open_store(NULL);
	cr_assert_eq(store_verify(s, &rep), 0);
	cr_assert_eq(rep.records, 2);
	expect_scratch(s, "ns/b~", "4");
	store_close(s);
}

Test(scratch, backup_carries_scratch_files)
{
	struct store *s = open_store(NULL);
	struct timespec t = {1650000000, 5};
	char val[8] = "";
	struct stat st;
	int fd = -1;

	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	put_str(s, "ns/f", "rec");
	mk_scratch_buf(s, "ns/.f.swp", "swap", 4, 0640);
	set_xattr(s, "ns/.f.swp", "user.s", "x");
	set_mtime(s, "ns/.f.swp", &t);
	cr_assert_eq(store_backup(s, dpath, NULL), 0);
	store_close(s);

	s = open_opts(dpath, NULL, false);
	expect_record(s, "ns/f", "rec", 3, 1);
	expect_scratch(s, "ns/.f.swp", "swap");
	cr_assert_eq(store_scratch_stat(s, "ns/.f.swp", &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0640);
	cr_assert_eq(st.st_mtim.tv_sec, t.tv_sec);
	cr_assert_eq(store_scratch_open(s, "ns/.f.swp", O_RDONLY, 0, &fd), 0);
	cr_assert_eq(fgetxattr(fd, "user.s", val, sizeof(val)), 1);
	close(fd);
	store_close(s);
}

Test(scratch, read_only_store_reads_but_refuses_changes)
{
	struct store *s = open_store(NULL);
	int fd = -1;

	put_str(s, "f", "rec");
	mk_scratch(s, "f~", "bak");
	store_close(s);
	s = open_opts(spath, NULL, true);
	expect_scratch(s, "f~", "bak");
	cr_assert_eq(store_scratch_open(s, "f~", O_RDWR, 0, &fd), -EROFS);
	cr_assert_eq(store_scratch_open(s, "g~", O_RDONLY | O_CREAT, 0600, &fd),
		     -EROFS);
	cr_assert_eq(store_scratch_unlink(s, "f~"), -EROFS);
	cr_assert_eq(store_scratch_rename(s, "f~", "g~"), -EROFS);
	cr_assert_eq(store_scratch_commit(s, "f~", "f", NULL, NULL), -EROFS);
	cr_assert_eq(store_scratch_from_record(s, "f", "g~", NULL), -EROFS);
	store_close(s);
}

Test(scratch, memory_backend_has_no_scratch_files)
{
	struct store_opts o = {.backend = STORE_BACKEND_MEMORY};
	struct store *s = NULL;
	struct names nm = {0};
	struct stat st;
	int fd = -1;

	cr_assert_eq(store_open(&s, &o), 0);
	cr_assert_eq(store_mkdir(s, "ns", 0755), 0);
	cr_assert_eq(store_scratch_open(s, "x~", O_RDWR | O_CREAT, 0600, &fd),
		     -ENOTSUP);
	cr_assert_eq(store_scratch_stat(s, "x~", &st), -ENOTSUP);
	cr_assert_eq(store_scratch_list(s, "", collect, &nm), -ENOTSUP);
	cr_assert_eq(store_scratch_unlink(s, "x~"), -ENOTSUP);
	cr_assert_eq(store_scratch_rename(s, "x~", "y~"), -ENOTSUP);
	cr_assert_eq(store_scratch_commit(s, "x~", "x", NULL, NULL), -ENOTSUP);
	cr_assert_eq(store_scratch_from_record(s, "x", "x~", NULL), -ENOTSUP);
	/* namespaces work as before */
	cr_assert_eq(store_rmdir(s, "ns"), 0);
	store_close(s);
}

Test(scratch, a_symlink_planted_as_the_scratch_tree_fails_the_open)
{
	struct store_opts o = {.path = spath};
	struct store *s = open_store(NULL);
	char p[PATH_MAX + 64], out[PATH_MAX + 64];

	store_close(s);
	snprintf(p, sizeof(p), "%s/scratch", spath);
	snprintf(out, sizeof(out), "%s/outside", base);
	cr_assert_eq(mkdir(out, 0700), 0);
	cr_assert_eq(rmdir(p), 0);
	cr_assert_eq(symlink(out, p), 0);
	cr_assert_neq(store_open(&s, &o), 0);
	cr_assert_null(s);
	cr_assert_eq(rmdir(out), 0, "something was made outside the store");
}
