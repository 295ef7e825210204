/*
 * torture_client.c - one process of `tools/torture --contention`: for
 * SECONDS, CAS-increment shared counters through a mount and overwrite its
 * own record, the way a careful program would, and log what was
 * acknowledged. Compiled by tools/torture at run time with base/util.c
 * (it is a test client, not part of recfs, so meson does not build it).
 *
 * usage: torture_client MNT SECONDS SEED IDX NCTR OUT
 *
 * An increment of MNT/ctr/cK reads the version (user.recfs.version), the
 * content and the version again (equal: the content is that version's,
 * as versions only grow), then writes n+1 to MNT/ctr/cK@VERSION: the
 * commit, at close(2), succeeds only if cK is still at VERSION, else
 * ESTALE (at open if already stale) and it retries after a short random
 * backoff. A plain write replaces MNT/p/pIDX (O_TRUNC, last writer wins).
 *
 * Writes OUT.incs ("K VALUE @VERSION" per acknowledged increment: no two
 * may have the same value), OUT.own (the last acknowledged content of its
 * record) and OUT.stats ("NAME VALUE" lines, the last "status" and the
 * exit status). Exit 0, or 1 after an unexpected error (printed on
 * stderr): anything but ESTALE/ENOENT from a conditional write, a counter
 * that does not read as a number, a failed plain write.
 */
#ifndef _GNU_SOURCE /* also given on the command line, for base/util.c */
#define _GNU_SOURCE
#endif
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define VER_ATTR "user.recfs.version"
#define OWN_MAX 9000

struct client {
	const char *mnt;
	unsigned idx, nctr;
	uint64_t rng;
	FILE *incs;
	char own[OWN_MAX];
	size_t own_len;
	bool own_set;
	unsigned long n_incs, n_conflicts, n_writes, n_retries;
	double max_lat_ms;
};

static uint64_t next_rand(struct client *c)
{
	/* xorshift64* */
	c->rng ^= c->rng >> 12;
	c->rng ^= c->rng << 25;
	c->rng ^= c->rng >> 27;
	return c->rng * 0x2545F4914F6CDD1Dull;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

/* The version of `path`; -errno on failure. */
static int version_of(const char *path, uint64_t *v)
{
	char val[32];
	ssize_t n = getxattr(path, VER_ATTR, val, sizeof(val) - 1);

	if (n < 0)
		return -errno;
	val[n] = '\0';
	*v = strtoull(val, NULL, 10);
	return 0;
}

/* Read a small file whole; -errno on failure. */
static int read_small(const char *path, char *buf, size_t cap, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t got = 0;
	int rc = 0;

	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n = read(fd, buf + got, cap - 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got == cap - 1)
			break;
	}
	close(fd);
	buf[got] = '\0';
	*len = got;
	return rc;
}

/* One acknowledged increment of counter k (retrying conflicts), or a
   give-up at the deadline; -1 on an unexpected error. */
static int increment(struct client *c, unsigned k, double deadline)
{
	char path[4096], cond[4200], buf[64], out[32];
	double t0 = now_s();
	unsigned attempt;

	snprintf(path, sizeof(path), "%s/ctr/c%u", c->mnt, k);
	for (attempt = 0; now_s() < deadline; attempt++) {
		uint64_t v1, v2, n;
		size_t len = 0;
		char *end;
		int rc;

		if (attempt) {
			unsigned cap = attempt < 6 ? 1u << attempt : 64;

			sleep_ms((unsigned)(next_rand(c) % cap));
		}
		rc = version_of(path, &v1);
		if (rc == 0)
			rc = read_small(path, buf, sizeof(buf), &len);
		if (rc == 0)
			rc = version_of(path, &v2);
		if (rc) {
			fprintf(stderr, "torture_client %u: reading %s: %s\n",
				c->idx, path, strerror(-rc));
			return -1;
		}
		if (v1 != v2) {
			c->n_retries++;
			continue;
		}
		errno = 0;
		n = strtoull(buf, &end, 10);
		if (len == 0 || end == buf || strcmp(end, "\n") != 0 || errno) {
			fprintf(stderr,
				"torture_client %u: %s at version %" PRIu64
				" reads \"%.40s\": not a counter (torn?)\n",
				c->idx, path, v1, buf);
			return -1;
		}
		snprintf(cond, sizeof(cond), "%s@%" PRIu64, path, v1);
		len = (size_t)snprintf(out, sizeof(out), "%" PRIu64 "\n",
				       n + 1);
		rc = util_write_file(cond, out, len);
		if (rc == -ESTALE || rc == -ENOENT) {
			/* ENOENT: the lookup of a stale ID@N, before create */
			c->n_conflicts++;
			continue;
		}
		if (rc) {
			fprintf(stderr, "torture_client %u: cp to %s: %s\n",
				c->idx, cond, strerror(-rc));
			return -1;
		}
		fprintf(c->incs, "%u %" PRIu64 " @%" PRIu64 "\n", k, n + 1, v1);
		c->n_incs++;
		if ((now_s() - t0) * 1000 > c->max_lat_ms)
			c->max_lat_ms = (now_s() - t0) * 1000;
		return 0;
	}
	return 0;
}

/* Replace the own record with new content. */
static int own_write(struct client *c, unsigned long seq)
{
	char path[4096], buf[OWN_MAX];
	size_t len, fill = (size_t)(next_rand(c) % 8192);
	double t0 = now_s(), lat;
	int rc;

	len = (size_t)snprintf(buf, sizeof(buf), "p%u seq %lu %" PRIu64 "\n",
			       c->idx, seq, next_rand(c) % 1000000);
	for (size_t i = 0; i < fill; i++)
		buf[len++] = (char)('a' + next_rand(c) % 26);
	snprintf(path, sizeof(path), "%s/p/p%u", c->mnt, c->idx);
	rc = util_write_file(path, buf, len);
	if (rc) {
		fprintf(stderr, "torture_client %u: write %s: %s\n", c->idx,
			path, strerror(-rc));
		return -1;
	}
	memcpy(c->own, buf, len);
	c->own_len = len;
	c->own_set = true;
	c->n_writes++;
	lat = (now_s() - t0) * 1000;
	if (lat > c->max_lat_ms)
		c->max_lat_ms = lat;
	return 0;
}

int main(int argc, char **argv)
{
	struct client c = {0};
	char path[4096];
	double deadline;
	unsigned long seq = 0;
	int ret = 0;
	FILE *f;

	if (argc != 7) {
		fprintf(stderr, "usage: torture_client MNT SECONDS SEED IDX "
				"NCTR OUT\n");
		return 2;
	}
	c.mnt = argv[1];
	deadline = now_s() + strtod(argv[2], NULL);
	c.rng = strtoull(argv[3], NULL, 10) * 0x9E3779B97F4A7C15ull + 1;
	c.idx = (unsigned)strtoul(argv[4], NULL, 10);
	c.nctr = (unsigned)strtoul(argv[5], NULL, 10);
	if (c.nctr == 0) {
		fprintf(stderr, "torture_client: NCTR must be >= 1\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s.incs", argv[6]);
	c.incs = fopen(path, "w");
	if (!c.incs) {
		perror(path);
		return 1;
	}
	setvbuf(c.incs, NULL, _IOLBF, 0);
	while (now_s() < deadline) {
		int rc;

		if (next_rand(&c) % 100 < 70)
			rc = increment(&c, (unsigned)(next_rand(&c) % c.nctr),
				       deadline);
		else
			rc = own_write(&c, ++seq);
		if (rc) {
			ret = 1;
			break;
		}
	}
	if (fclose(c.incs) != 0)
		ret = 1;
	snprintf(path, sizeof(path), "%s.own", argv[6]);
	if (c.own_set && util_write_file(path, c.own, c.own_len) != 0)
		ret = 1;
	snprintf(path, sizeof(path), "%s.stats", argv[6]);
	f = fopen(path, "w");
	if (!f)
		return 1;
	fprintf(f,
		"increments %lu\nconflicts %lu\nwrites %lu\nretries %lu\n"
		"maxlat_ms %.0f\nstatus %d\n",
		c.n_incs, c.n_conflicts, c.n_writes, c.n_retries, c.max_lat_ms,
		ret);
	if (fclose(f) != 0)
		ret = 1;
	return ret;
}
