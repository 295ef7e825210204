/*
 * test_history_chunks.c - a batch larger than what the writer holds in
 * memory (hist_i.h: hist_spool_mem, hist_sort_run, hist_tree_chunk, made
 * tiny here): its versions spilled to the spool file, its tree changes
 * sorted in many runs and merged, its tree and side tree built a few
 * paths at a time. What git holds must be what one update of the whole
 * batch would have made: every version's block and blob, the head tree,
 * the hidden versions on the side branch, no blob left unreachable. And
 * a head commit streamed as a loose object is read back at open by
 * streaming it too (history_refs.c).
 */
#include "helpers.h"
#include "hist_i.h"
#include "history_helpers.h"
#include "sandbox.h"
#include "store.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void tiny(void)
{
	history_setup();
	hist_spool_mem = 200;
	hist_sort_run = 300;
	hist_tree_chunk = 3;
	hist_head_stream_min = 0;
	hist_stream_commit_min = 1;
}

static void restore(void)
{
	hist_spool_mem = (size_t)1 << 20;
	hist_sort_run = (size_t)4 << 20;
	hist_tree_chunk = 65536;
	hist_head_stream_min = (size_t)1 << 20;
	hist_stream_commit_min = 16384;
	history_teardown();
}

TestSuite(history_chunks, .init = tiny, .fini = restore, .timeout = 300);

#define NREC 60
#define NHOT 9

Test(history_chunks, a_batch_in_many_chunks_is_one_whole_commit)
{
	static struct wrote w[NREC + NHOT];
	static char text[NREC + NHOT][32];
	struct log l;
	size_t n = 0;
	char id[32], *out;
	struct store *s = open_slow(60000, NULL);

	wait_history(s, put(s, "warm", "up").revision);
	cr_assert_eq(store_mkdir(s, "ns", 0700), 0);
	cr_assert_eq(store_mkdir(s, "ns/deep", 0700), 0);
	for (int i = 0; i < NREC; i++) {
		struct store_result r;

		snprintf(id, sizeof(id), "%s%02d",
			 i % 3 == 0   ? "ns/r"
			 : i % 3 == 1 ? "ns/deep/r"
				      : "r",
			 i);
		snprintf(text[n], sizeof(text[n]), "rec-%d", i);
		r = put(s, id, text[n]);
		w[n] = (struct wrote){strdup(id), r.version, r.revision,
				      text[n], strlen(text[n])};
		n++;
		if (i == NREC / 2)
			for (int k = 0; k < NHOT; k++) {
				snprintf(text[n], sizeof(text[n]), "hot-%d", k);
				r = put(s, "ns/hot", text[n]);
				w[n] = (struct wrote){strdup("ns/hot"),
						      r.version, r.revision,
						      text[n], strlen(text[n])};
				n++;
			}
	}
	cr_assert_eq(store_delete(s, "r05", NULL, NULL, NULL), 0);
	drain(s);
	read_log(&l);
	cr_assert_eq(l.commits, 2, "%zu commits", l.commits);
	for (size_t i = 0; i < n; i++)
		check_version(s, &l, &w[i]);
	check_tree(s);
	/* every blob reachable (the trees between chunks are not: git gc
	   removes them) */
	out = run("git -C '%s' fsck --no-progress --dangling 2>&1 | "
		  "grep -c 'dangling blob' || true",
		  gitdir);
	cr_assert_eq(atoi(out), 0, "dangling blobs: %s", out);
	free(out);
	/* the hidden versions, one tree entry each, on the side branch:
	   the hot record's but its last, and r05's before its delete */
	out = run("git -C '%s' ls-tree -r refs/heads/recfs-versions | wc -l",
		  gitdir);
	cr_assert_eq(atoi(out), NHOT, "side entries: %s", out);
	free(out);
	out = run("git -C '%s' ls-tree -r refs/heads/main | wc -l", gitdir);
	/* the records, less r05, and ns/hot and warm */
	cr_assert_eq(atoi(out), NREC + 1, "main entries: %s", out);
	free(out);
	log_free(&l);
	for (size_t i = 0; i < n; i++)
		free((char *)w[i].id);
	close_store(s);
}

Test(history_chunks, file_and_namespace_swap_across_chunks)
{
	struct store *s = open_slow(60000, NULL);
	char *out;

	wait_history(s, put(s, "warm", "up").revision);
	for (int i = 0; i < 8; i++) {
		char id[16];

		snprintf(id, sizeof(id), "f%d", i);
		put(s, id, "x");
	}
	cr_assert_eq(store_mkdir(s, "a", 0700), 0);
	put(s, "a/b", "b");
	drain(s);
	/* "a/b" goes, then "a" is a record, among others: in one commit */
	cr_assert_eq(store_delete(s, "a/b", NULL, NULL, NULL), 0);
	cr_assert_eq(store_rmdir(s, "a"), 0);
	put(s, "a", "file");
	for (int i = 0; i < 8; i++) {
		char id[16];

		snprintf(id, sizeof(id), "f%d", i);
		put(s, id, "y");
	}
	drain(s);
	check_tree(s);
	/* and the other way round */
	cr_assert_eq(store_delete(s, "a", NULL, NULL, NULL), 0);
	cr_assert_eq(store_mkdir(s, "a", 0700), 0);
	put(s, "a/b", "d");
	put(s, "f0", "z");
	drain(s);
	check_tree(s);
	out = run("git -C '%s' cat-file -p refs/heads/main:a/b", gitdir);
	cr_assert_str_eq(out, "d");
	free(out);
	close_store(s);
}

Test(history_chunks, a_reopened_history_goes_on_from_its_streamed_head)
{
	const struct block *b;
	struct log l;
	struct store *s = open_store();
	char *out;

	put(s, "a", "1");
	put(s, "b", "1");
	drain(s);
	close_store(s);
	/* the head commit (streamed, loose) gives the tree and Recfs-Upto:
	   nothing is written twice, the next commit goes on from it */
	s = open_store();
	put(s, "a", "2");
	drain(s);
	read_log(&l);
	cr_assert_eq(l.last_upto, store_revision(s));
	cr_assert_eq(find_blocks(&l, "a", 1, false, &b), 1);
	cr_assert_eq(find_blocks(&l, "b", 1, false, &b), 1);
	cr_assert_eq(find_blocks(&l, "a", 2, false, &b), 1);
	check_tree(s);
	out = run("git -C '%s' cat-file -p refs/heads/main:b", gitdir);
	cr_assert_str_eq(out, "1");
	free(out);
	log_free(&l);
	close_store(s);
}
