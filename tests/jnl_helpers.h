/*
 * jnl_helpers.h - the fixture of the test_jnl*.c executables (suite
 * "jnl"): each test gets a fresh sandbox directory (on /tmp, a real file
 * system) holding the journal, an io for failpoints, and the journal `j`
 * (closed by the teardown).
 */
#ifndef RECFS_TEST_JNL_HELPERS_H
#define RECFS_TEST_JNL_HELPERS_H

#include "io.h"
#include "jnl.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

extern char tmpdir[PATH_MAX];
extern int dfd; /* tmpdir, open */
extern struct io *io;
extern struct jnl *j;

/* The TestSuite's .init and .fini. */
void jnl_setup(void);
void jnl_teardown(void);

/* (Re)open `j` with next_seq `next`, asserting that it opens. */
void open_at(uint64_t next);
int append_str(const char *s, uint64_t *seq);
/* Append `s`, asserting that it works and gets seq `want`. */
void append_ok(const char *s, uint64_t want);

/* The name of segment `first`, its size, its existence; an fd of it. */
void seg_path(char *buf, size_t len, uint64_t first);
off_t seg_size(uint64_t first);
/* Does segment `first` hold only zeros from offset `from` on? */
bool seg_zeros_from(uint64_t first, uint64_t from);
bool seg_exists(uint64_t first);
int seg_fd(uint64_t first);

/* What a scan returned. */
struct seen {
	size_t n;
	uint64_t seq[4096];
	char *payload[4096];
	int stop_at; /* return 7 at this record (1-based), 0 = never */
};

/* The jnl_scan callback filling a struct seen. */
int collect(void *arg, uint64_t seq, const void *p, size_t len);
void seen_free(struct seen *s);
/* jnl_scan after `after`, asserting it returns `want_rc`; its report in
 *rep (may be NULL). Caller frees with seen_free. */
struct seen *scan(uint64_t after, int want_rc, struct jnl_scan_report *rep);
/* Records first..first+n-1 with payloads "<prefix><seq>". */
void expect_records(struct seen *s, uint64_t first, size_t n,
		    const char *prefix);
/* Append those records. */
void append_n(uint64_t first, size_t n, const char *prefix);

#endif
