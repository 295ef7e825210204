/*
 * bench_commit - durable commits per second through the store versus a
 * plain C loop doing the same durable work on the same disk.
 *
 * For 1, 4 and 16 threads (--threads), each for --seconds N (in --rounds
 * slices that alternate between the two, so that the drift of a shared or
 * virtual disk hits both alike):
 *  - native: every thread replaces its own files, one at a time, the way
 *    a careful program does: write a temp file, fsync it, rename it over
 *    the target, fsync the directory;
 *  - recfs: every thread store_put()s its own records (file backend, a
 *    fresh store), each put durable when it returns.
 * Both write --size bytes (default 4096) per commit and cycle over 64
 * names per thread. Prints a table with the ratio recfs/native and the
 * journal's group commit: commits per journal fdatasync ("batch").
 *
 * The stores are made in a fresh directory under --dir (default: a new
 * directory under /var/tmp, which is on the disk, not tmpfs), removed at
 * the end unless --keep.
 */
#include "bench_util.h"
#include "io.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define NAMES_PER_THREAD 64
#define MAX_THREADS 256

struct config {
	char dir[4096];
	double seconds;
	size_t size;
	int threads[16];
	int nthreads;
	int rounds;
	bool keep;
	const char *only; /* "native", "recfs" or NULL: both */
};

struct run {
	const struct config *cfg;
	const char *where; /* native: the directory; recfs: NULL */
	struct store *store;
	struct io *io; /* recfs: counts the journal's fdatasyncs */
	pthread_barrier_t start;
	double seconds; /* of this slice */
	double deadline;
	atomic_int failed;
	uint64_t ops; /* over all slices */
	double elapsed;
};

struct worker {
	struct run *run;
	int id;
	uint64_t ops;
	pthread_t thread;
};

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(i * 31 + seed);
}

/* One durable replace of `name` in `dirfd`: the native baseline. */
static int native_commit(int dirfd, const char *name, const char *tmp,
			 const uint8_t *buf, size_t len)
{
	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			0600);
	int rc;

	if (fd < 0)
		return -errno;
	rc = util_write_all(fd, buf, len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
		rc = -errno;
	if (rc == 0 && fsync(dirfd) < 0)
		rc = -errno;
	if (rc)
		unlinkat(dirfd, tmp, 0);
	return rc;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;
	uint8_t *buf = malloc(r->cfg->size);
	char name[64], tmp[64];
	int dirfd = -1, rc = 0;

	if (!buf) {
		atomic_store(&r->failed, ENOMEM);
		pthread_barrier_wait(&r->start);
		return NULL;
	}
	if (r->where) {
		dirfd = open(r->where, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dirfd < 0)
			atomic_store(&r->failed, errno);
	}
	snprintf(tmp, sizeof(tmp), ".t%d.tmp", w->id);
	pthread_barrier_wait(&r->start);
	while (!atomic_load(&r->failed) && bench_now() < r->deadline) {
		snprintf(name, sizeof(name), "t%d-r%llu", w->id,
			 (unsigned long long)(w->ops % NAMES_PER_THREAD));
		fill(buf, r->cfg->size, (unsigned)w->ops);
		if (r->where)
			rc = native_commit(dirfd, name, tmp, buf, r->cfg->size);
		else
			rc = store_put(r->store, name, buf, r->cfg->size, NULL,
				       NULL);
		if (rc) {
			fprintf(stderr, "bench_commit: %s %s: %s\n",
				r->where ? "native" : "recfs", name,
				strerror(-rc));
			atomic_store(&r->failed, -rc);
			break;
		}
		w->ops++;
	}
	if (dirfd >= 0)
		close(dirfd);
	free(buf);
	return NULL;
}

/* Run `threads` workers for r->seconds, adding to r->ops and r->elapsed.
   Returns 0, or -1 on failure. */
static int run_slice(struct run *r, int threads)
{
	struct worker *w = calloc((size_t)threads, sizeof(*w));
	double t0, t1;
	uint64_t ops = 0;

	if (!w)
		return -1;
	pthread_barrier_init(&r->start, NULL, (unsigned)threads + 1);
	for (int i = 0; i < threads; i++) {
		w[i].run = r;
		w[i].id = i;
		if (pthread_create(&w[i].thread, NULL, worker_main, &w[i])) {
			fprintf(stderr, "bench_commit: cannot start threads\n");
			exit(1);
		}
	}
	r->deadline = bench_now() + r->seconds;
	t0 = bench_now();
	pthread_barrier_wait(&r->start);
	for (int i = 0; i < threads; i++) {
		pthread_join(w[i].thread, NULL);
		ops += w[i].ops;
	}
	t1 = bench_now();
	pthread_barrier_destroy(&r->start);
	free(w);
	r->ops += ops;
	r->elapsed += t1 - t0;
	return atomic_load(&r->failed) ? -1 : 0;
}

static int native_prepare(struct run *r, char *where, size_t len, int threads)
{
	if (snprintf(where, len, "%s/native-%d", r->cfg->dir, threads) >=
		    (int)len ||
	    mkdir(where, 0700) < 0) {
		fprintf(stderr, "bench_commit: %s: %s\n", where,
			strerror(errno));
		return -1;
	}
	r->where = where;
	return 0;
}

static int recfs_prepare(struct run *r, char *where, size_t len, int threads)
{
	struct store_opts o = {.backend = STORE_BACKEND_FILE, .create = true};
	int rc;

	rc = io_new(&r->io);
	if (rc) {
		fprintf(stderr, "bench_commit: %s\n", strerror(-rc));
		return -1;
	}
	o.io = r->io;
	if (snprintf(where, len, "%s/store-%d", r->cfg->dir, threads) >=
	    (int)len)
		return -1;
	o.path = where;
	rc = store_open(&r->store, &o);
	if (rc) {
		fprintf(stderr, "bench_commit: store %s: %s\n", where,
			strerror(-rc));
		return -1;
	}
	return 0;
}

static int recfs_finish(struct run *r)
{
	int rc = store_close(r->store);

	r->store = NULL;
	io_free(r->io);
	r->io = NULL;
	if (rc)
		fprintf(stderr, "bench_commit: closing the store: %s\n",
			strerror(-rc));
	return rc ? -1 : 0;
}

static double rate(const struct run *r)
{
	return r->elapsed > 0 ? (double)r->ops / r->elapsed : 0;
}

/* One line of the table: both sides for `threads`, slices interleaved. */
static int bench(const struct config *cfg, int threads)
{
	bool do_native = !cfg->only || !strcmp(cfg->only, "native");
	bool do_recfs = !cfg->only || !strcmp(cfg->only, "recfs");
	struct run native = {.cfg = cfg}, recfs = {.cfg = cfg};
	char nwhere[4200], rwhere[4200];
	unsigned syncs = 0;
	int rc = 0;

	native.seconds = recfs.seconds = cfg->seconds / cfg->rounds;
	if (do_native &&
	    native_prepare(&native, nwhere, sizeof(nwhere), threads))
		return -1;
	if (do_recfs && recfs_prepare(&recfs, rwhere, sizeof(rwhere), threads))
		return -1;
	for (int i = 0; i < cfg->rounds && rc == 0; i++) {
		if (i == 0 && do_recfs)
			syncs = io_hits(recfs.io, "jnl.fsync");
		if (do_native)
			rc = run_slice(&native, threads);
		if (rc == 0 && do_recfs)
			rc = run_slice(&recfs, threads);
	}
	if (do_recfs)
		syncs = io_hits(recfs.io, "jnl.fsync") - syncs;
	if (do_recfs && recfs_finish(&recfs))
		rc = -1;
	if (rc)
		return -1;
	printf("%-8d %10.0f %10.0f ", threads, rate(&native), rate(&recfs));
	printf("%6.2fx",
	       do_native && do_recfs ? rate(&recfs) / rate(&native) : 0.0);
	printf(" %6.1f\n", syncs ? (double)recfs.ops / syncs : 0.0);
	fflush(stdout);
	return 0;
}

static int usage(FILE *to, int status)
{
	fprintf(to,
		"usage: bench_commit [--dir DIR] [--seconds N] [--size BYTES] "
		"[--threads 1,4,16] [--rounds R] [--keep]\n"
		"                    [--only native|recfs]\n"
		"  --dir DIR      make the stores in a new directory under "
		"DIR\n"
		"                 (default /var/tmp: on the disk, not tmpfs)\n"
		"  --seconds N    measure each side for N seconds per thread "
		"count (default 3)\n"
		"  --size BYTES   bytes per commit (default 4096)\n"
		"  --threads LIST thread counts (default 1,4,16)\n"
		"  --rounds R     alternate the two sides R times (default 3)\n"
		"  --keep         do not remove the stores afterwards\n"
		"  --only WHICH   run only \"native\" or \"recfs\" "
		"(profiling)\n");
	return status;
}

static int parse_threads(struct config *cfg, char *list)
{
	uint64_t v[16];
	int n = bench_parse_list(list, MAX_THREADS, v, 16);

	if (n < 0)
		return -1;
	cfg->nthreads = n;
	for (int i = 0; i < n; i++)
		cfg->threads[i] = (int)v[i];
	return 0;
}

static const char *fs_name(const char *dir)
{
	struct statfs sf;

	if (statfs(dir, &sf) < 0)
		return "?";
	switch ((unsigned long)sf.f_type) {
	case TMPFS_MAGIC:
		return "tmpfs (not a disk: the figures mean little)";
	case EXT4_SUPER_MAGIC:
		return "ext4";
	case XFS_SUPER_MAGIC:
		return "xfs";
	case BTRFS_SUPER_MAGIC:
		return "btrfs";
	default:
		return "other";
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dir", required_argument, NULL, 'd'},
		{"seconds", required_argument, NULL, 's'},
		{"size", required_argument, NULL, 'z'},
		{"threads", required_argument, NULL, 't'},
		{"keep", no_argument, NULL, 'k'},
		{"rounds", required_argument, NULL, 'r'},
		{"only", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct config cfg = {.seconds = 3,
			     .rounds = 3,
			     .size = 4096,
			     .threads = {1, 4, 16},
			     .nthreads = 3};
	const char *parent = "/var/tmp";
	int c, status = 0;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			parent = optarg;
			break;
		case 's':
			cfg.seconds = strtod(optarg, NULL);
			if (!(cfg.seconds > 0 && cfg.seconds < 3600))
				return usage(stderr, 2);
			break;
		case 'z':
			cfg.size = strtoul(optarg, NULL, 10);
			if (cfg.size < 1 || cfg.size > (64u << 20))
				return usage(stderr, 2);
			break;
		case 't':
			if (parse_threads(&cfg, optarg))
				return usage(stderr, 2);
			break;
		case 'k':
			cfg.keep = true;
			break;
		case 'r':
			cfg.rounds = (int)strtol(optarg, NULL, 10);
			if (cfg.rounds < 1 || cfg.rounds > 100)
				return usage(stderr, 2);
			break;
		case 'o':
			if (strcmp(optarg, "native") && strcmp(optarg, "recfs"))
				return usage(stderr, 2);
			cfg.only = optarg;
			break;
		case 'h':
			return usage(stdout, 0);
		default:
			return usage(stderr, 2);
		}
	}
	if (optind != argc)
		return usage(stderr, 2);
	if (bench_workdir(cfg.dir, sizeof(cfg.dir), parent, "recfs-bench",
			  "bench_commit"))
		return 1;
	printf("# %zu-byte durable commits, %.3g s per side in %d slices, in "
	       "%s (%s)\n",
	       cfg.size, cfg.seconds, cfg.rounds, cfg.dir, fs_name(cfg.dir));
	printf("%-8s %10s %10s %7s %6s\n", "threads", "native/s", "recfs/s",
	       "ratio", "batch");
	fflush(stdout);
	for (int i = 0; i < cfg.nthreads && status == 0; i++)
		if (bench(&cfg, cfg.threads[i]))
			status = 1;
	bench_workdir_done(cfg.dir, cfg.keep);
	return status;
}
