/*
 * bench_util.h - what the benchmarks built by meson share: a monotonic
 * clock, comma-separated number lists, and the scratch directory their
 * stores are made in.
 */
#ifndef RECFS_BENCH_UTIL_H
#define RECFS_BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Seconds on the monotonic clock. */
double bench_now(void);

/*
 * Parse `list` ("1,4,16"; cut up in place) into v[0..cap): returns how
 * many, or -1 if it is empty, has more than `cap` numbers, or one outside
 * 1..max.
 */
int bench_parse_list(char *list, uint64_t max, uint64_t *v, int cap);

/*
 * Make a new directory `parent`/`name`.XXXXXX into dir[len]. Returns 0,
 * or -1 after telling stderr why (as `prog`: ...).
 */
int bench_workdir(char *dir, size_t len, const char *parent, const char *name,
		  const char *prog);

/* Remove the tree `dir` (as far as it can). */
void bench_rm_tree(const char *dir);

/* Remove the tree `dir`, or with `keep` say on stdout that it is kept. */
void bench_workdir_done(const char *dir, bool keep);

#endif
