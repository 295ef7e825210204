/*
 * bench_history - how fast the git history (store/history.h) follows the
 * store, and what reading an old version costs.
 *
 * For each record count (--records, default 1000 and 100000) and each
 * layout (flat: every record in one namespace; sharded: --shards
 * namespaces, default 256):
 *  - catch-up: the records are created (--threads writers) while the
 *    history writer is held back, then it is let go; versions/s of the
 *    drain is the history's own throughput;
 *  - sustained: --rate versions/s (default 500) to random records for
 *    --seconds (default 10), paced by 8 writer threads; the history lag
 *    is sampled every 100 ms. It keeps up if the lag at the end is under
 *    a second's worth of versions and the drain afterwards is quick;
 *  - reads: store_history_get of version 1 of random records (old: they
 *    have newer versions) against store_get of their current version.
 * Then the same sustained run on one hot record.
 *
 * Stores are made under --dir (default /var/tmp, on the disk) and removed
 * unless --keep.
 */
#include "admin.h"
#include "bench_util.h"
#include "io.h"
#include "log.h"
#include "store.h"
#include "store_history.h"

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PACERS 8
#define MAX_SIZES 8

struct config {
	char dir[4096];
	uint64_t records[MAX_SIZES];
	int nrecords;
	unsigned shards;
	double seconds;
	unsigned rate;
	size_t size;
	int threads;
	unsigned reads;
	bool keep;
	bool no_hot;
	uint64_t versions; /* --versions: the one-deep-record run alone */
};

struct layout {
	const struct config *cfg;
	uint64_t n;
	unsigned shards; /* 0: flat */
	char path[4200];
	struct store *s;
	struct io *io;
};

static void record_id(const struct layout *l, uint64_t i, char *buf, size_t len)
{
	if (l->shards)
		snprintf(buf, len, "s%03u/r%07" PRIu64,
			 (unsigned)(i % l->shards), i);
	else
		snprintf(buf, len, "r%07" PRIu64, i);
}

static int put_version(struct layout *l, const char *id, uint64_t tag,
		       uint8_t *buf)
{
	int n = snprintf((char *)buf, l->cfg->size, "%s %" PRIu64 " ", id, tag);

	for (size_t i = (size_t)(n > 0 ? n : 0); i < l->cfg->size; i++)
		buf[i] = (uint8_t)('a' + (tag + i) % 26);
	return store_put(l->s, id, buf, l->cfg->size, NULL, NULL);
}

/* ---- setup ------------------------------------------------------------- */

struct filler {
	struct layout *l;
	uint64_t from, to;
	int rc;
	pthread_t t;
};

static void *fill_main(void *arg)
{
	struct filler *f = arg;
	uint8_t *buf = malloc(f->l->cfg->size);
	char id[64];

	if (!buf) {
		f->rc = -ENOMEM;
		return NULL;
	}
	for (uint64_t i = f->from; i < f->to && !f->rc; i++) {
		record_id(f->l, i, id, sizeof(id));
		f->rc = put_version(f->l, id, 0, buf);
		if (f->rc)
			fprintf(stderr, "bench_history: put %s: %s\n", id,
				strerror(-f->rc));
	}
	free(buf);
	return NULL;
}

static int open_layout(struct layout *l, const char *name)
{
	struct store_opts o = {.create = true,
			       .history_lag_max = UINT64_MAX / 2};
	int rc;

	snprintf(l->path, sizeof(l->path), "%s/%s", l->cfg->dir, name);
	rc = io_new(&l->io);
	o.io = l->io;
	o.path = l->path;
	if (rc == 0)
		rc = store_open(&l->s, &o);
	if (rc)
		fprintf(stderr, "bench_history: %s: %s\n", l->path,
			strerror(-rc));
	return rc;
}

/* Bytes on disk under `path` (nftw has no context argument: the sum is
   returned through a file-scope variable, reset by each call). */
static uint64_t du_sum;

static int du_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	du_sum += (uint64_t)sb->st_blocks * 512;
	return 0;
}

static uint64_t du(const char *path)
{
	du_sum = 0;
	nftw(path, du_one, 16, FTW_PHYS);
	return du_sum;
}

/* Close the store, and remove it unless --keep. */
static void close_layout(struct layout *l)
{
	int rc = store_close(l->s);

	if (rc)
		fprintf(stderr, "bench_history: close %s: %s\n", l->path,
			strerror(-rc));
	io_free(l->io);
	l->s = NULL;
	l->io = NULL;
	if (!l->cfg->keep)
		bench_rm_tree(l->path);
}

/* Create the records while the history is held back, then time its
   catch-up. */
static int catch_up(struct layout *l)
{
	int threads = l->cfg->threads;
	struct filler *f = calloc((size_t)threads, sizeof(*f));
	char id[64];
	double t0, t1, t2;
	unsigned commits;
	int rc = 0;

	if (!f)
		return -ENOMEM;
	for (unsigned i = 0; l->shards && i < l->shards && rc == 0; i++) {
		snprintf(id, sizeof(id), "s%03u", i);
		rc = store_mkdir(l->s, id, 0700);
	}
	/* the first version goes through, then the writer waits */
	rc = rc ? rc : store_put(l->s, "warm", "up", 2, NULL, NULL);
	rc = rc ? rc : store_history_drain(l->s, 0);
	rc = rc ? rc : io_arm(l->io, "hist.read", IO_STALL, 0, 1, 1);
	t0 = bench_now();
	for (int i = 0; i < threads && rc == 0; i++) {
		f[i].l = l;
		f[i].from = l->n * (uint64_t)i / (uint64_t)threads;
		f[i].to = l->n * (uint64_t)(i + 1) / (uint64_t)threads;
		pthread_create(&f[i].t, NULL, fill_main, &f[i]);
	}
	for (int i = 0; i < threads && rc == 0; i++) {
		pthread_join(f[i].t, NULL);
		rc = rc ? rc : f[i].rc;
	}
	t1 = bench_now();
	commits = io_hits(l->io, "hist.commit");
	for (int i = 0; i < 5000 && rc == 0 && !io_stalled(l->io, "hist.read");
	     i++)
		usleep(1000);
	io_release(l->io);
	rc = rc ? rc : store_history_drain(l->s, 0);
	t2 = bench_now();
	commits = io_hits(l->io, "hist.commit") - commits;
	free(f);
	if (rc)
		return rc;
	printf("  create %7" PRIu64 " records: %8.0f commits/s; history "
	       "catch-up %8.0f versions/s (%.2f s, %u git commits)\n",
	       l->n, (double)l->n / (t1 - t0), (double)l->n / (t2 - t1),
	       t2 - t1, commits);
	return 0;
}

/* ---- sustained load ------------------------------------------------------ */

struct pace {
	struct layout *l;
	const char *hot; /* one record, or NULL: random ones */
	double t0, period;
	int k; /* this pacer: versions k, k + PACERS, ... */
	atomic_bool *stop;
	uint64_t done;
	double worst; /* longest put, s */
	int rc;
	pthread_t t;
};

static void *pace_main(void *arg)
{
	struct pace *p = arg;
	uint8_t *buf = malloc(p->l->cfg->size);
	unsigned seed = (unsigned)p->k * 7919u + 1;
	char id[64];

	if (!buf) {
		p->rc = -ENOMEM;
		return NULL;
	}
	for (uint64_t v = (uint64_t)p->k; !atomic_load(p->stop); v += PACERS) {
		double due = p->t0 + (double)v * p->period, t;

		while ((t = bench_now()) < due && !atomic_load(p->stop))
			usleep((useconds_t)((due - t) * 1e6 > 2000
						    ? 2000
						    : (due - t) * 1e6 + 1));
		if (atomic_load(p->stop))
			break;
		if (p->hot)
			snprintf(id, sizeof(id), "%s", p->hot);
		else
			record_id(p->l, (uint64_t)rand_r(&seed) % p->l->n, id,
				  sizeof(id));
		t = bench_now();
		p->rc = put_version(p->l, id, v + 1, buf);
		t = bench_now() - t;
		if (t > p->worst)
			p->worst = t;
		if (p->rc) {
			fprintf(stderr, "bench_history: put %s: %s\n", id,
				strerror(-p->rc));
			break;
		}
		p->done++;
	}
	free(buf);
	return NULL;
}

static int sustained(struct layout *l, const char *hot)
{
	struct pace p[PACERS];
	atomic_bool stop = false;
	char git[4300];
	uint64_t size0;
	struct store_status st;
	uint64_t max_lag = 0, end_lag, total = 0, rev0;
	double t0, t1, t2, worst = 0;
	unsigned commits;
	int rc = 0;

	snprintf(git, sizeof(git), "%s/history.git", l->path);
	size0 = du(git);
	rev0 = store_revision(l->s);
	commits = io_hits(l->io, "hist.commit");
	t0 = bench_now();
	for (int i = 0; i < PACERS; i++) {
		p[i] = (struct pace){.l = l,
				     .hot = hot,
				     .t0 = t0,
				     .k = i,
				     .period = 1.0 / l->cfg->rate,
				     .stop = &stop};
		pthread_create(&p[i].t, NULL, pace_main, &p[i]);
	}
	while (bench_now() - t0 < l->cfg->seconds) {
		usleep(100000);
		store_status_get(l->s, &st);
		if (st.history_lag > max_lag)
			max_lag = st.history_lag;
	}
	atomic_store(&stop, true);
	for (int i = 0; i < PACERS; i++) {
		pthread_join(p[i].t, NULL);
		total += p[i].done;
		rc = rc ? rc : p[i].rc;
		if (p[i].worst > worst)
			worst = p[i].worst;
	}
	t1 = bench_now();
	store_status_get(l->s, &st);
	end_lag = st.history_lag;
	rc = rc ? rc : store_history_drain(l->s, 0);
	t2 = bench_now();
	commits = io_hits(l->io, "hist.commit") - commits;
	if (rc)
		return rc;
	printf("  %-26s %6.0f versions/s for %.0f s: history lag max %" PRIu64
	       ", at end %" PRIu64 " (%s), drain %.3f s; %u git commits "
	       "(%.0f versions each); slowest put %.1f ms\n",
	       hot ? "sustained, one hot record:"
		   : "sustained, random records:",
	       (double)total / (t1 - t0), t1 - t0, max_lag, end_lag,
	       end_lag <= l->cfg->rate ? "keeps up" : "FALLS BEHIND", t2 - t1,
	       commits,
	       commits ? (double)(store_revision(l->s) - rev0) / commits : 0.0,
	       worst * 1e3);
	printf("  %-26s history.git grew by %.1f MB (%.0f bytes per "
	       "version)\n",
	       "", (double)(du(git) - size0) / 1e6,
	       (double)(du(git) - size0) / (double)(total ? total : 1));
	fflush(stdout);
	return 0;
}

/* ---- reads --------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int reads(struct layout *l)
{
	unsigned n = l->cfg->reads;
	double *th = calloc(n, sizeof(double)), *tc = calloc(n, sizeof(double));
	unsigned seed = 12345;
	double sh = 0, sc = 0;
	char id[64];
	int rc = 0;

	if (!th || !tc)
		rc = -ENOMEM;
	for (unsigned i = 0; i < n && rc == 0; i++) {
		void *buf = NULL;
		size_t len;
		double t;

		record_id(l, (uint64_t)rand_r(&seed) % l->n, id, sizeof(id));
		t = bench_now();
		rc = store_history_get(l->s, id, 1, &buf, &len, NULL);
		th[i] = bench_now() - t;
		free(buf);
		buf = NULL;
		t = bench_now();
		if (rc == 0)
			rc = store_get(l->s, id, &buf, &len, NULL);
		tc[i] = bench_now() - t;
		free(buf);
		sh += th[i];
		sc += tc[i];
	}
	if (rc == 0) {
		qsort(th, n, sizeof(double), cmp_double);
		qsort(tc, n, sizeof(double), cmp_double);
		printf("  read %u random records: history_get of version 1 "
		       "%.1f us mean, %.1f us p99; store_get of the current "
		       "%.1f us mean, %.1f us p99\n",
		       n, sh / n * 1e6, th[n * 99 / 100] * 1e6, sc / n * 1e6,
		       tc[n * 99 / 100] * 1e6);
	} else {
		fprintf(stderr, "bench_history: read %s: %s\n", id,
			strerror(-rc));
	}
	free(th);
	free(tc);
	return rc;
}

/* ---- main ------------------------------------------------------------------
 */

static int bench_layout(const struct config *cfg, uint64_t n, unsigned shards)
{
	struct layout l = {.cfg = cfg, .n = n, .shards = shards};
	char name[64];
	int rc;

	snprintf(name, sizeof(name), "store-%" PRIu64 "-%s", n,
		 shards ? "sharded" : "flat");
	printf("%" PRIu64 " records, %s:\n", n,
	       shards ? "sharded" : "one flat namespace");
	if (shards)
		printf("  (%u namespaces)\n", shards);
	fflush(stdout);
	rc = open_layout(&l, name);
	if (rc == 0)
		rc = catch_up(&l);
	fflush(stdout);
	if (rc == 0)
		rc = sustained(&l, NULL);
	fflush(stdout);
	if (rc == 0)
		rc = reads(&l);
	fflush(stdout);
	if (l.s)
		close_layout(&l);
	return rc;
}

static int bench_hot(const struct config *cfg)
{
	struct layout l = {.cfg = cfg, .n = 1};
	double t0, t1, t2;
	uint8_t *buf = malloc(cfg->size);
	unsigned n = 10000;
	int rc;

	printf("one hot record:\n");
	rc = buf ? open_layout(&l, "store-hot") : -ENOMEM;
	rc = rc ? rc : store_put(l.s, "warm", "up", 2, NULL, NULL);
	rc = rc ? rc : store_history_drain(l.s, 0);
	rc = rc ? rc : io_arm(l.io, "hist.read", IO_STALL, 0, 1, 1);
	t0 = bench_now();
	for (unsigned i = 0; i < n && rc == 0; i++)
		rc = put_version(&l, "hot", i + 1, buf);
	t1 = bench_now();
	for (int i = 0; i < 5000 && rc == 0 && !io_stalled(l.io, "hist.read");
	     i++)
		usleep(1000);
	if (l.io)
		io_release(l.io);
	rc = rc ? rc : store_history_drain(l.s, 0);
	t2 = bench_now();
	if (rc == 0)
		printf("  %u versions: %8.0f commits/s; history catch-up %8.0f "
		       "versions/s\n",
		       n, n / (t1 - t0), n / (t2 - t1));
	fflush(stdout);
	rc = rc ? rc : sustained(&l, "hot");
	free(buf);
	if (l.s)
		close_layout(&l);
	return rc;
}

/* ---- one record with many versions (--versions) -------------------------- */

/* Mean seconds of `reps` store_history_get of `version` of `id` (0: the
   current version, store_get); *first: the first call alone. */
static int time_get(struct layout *l, const char *id, uint64_t version,
		    unsigned reps, double *first, double *mean)
{
	double sum = 0;
	int rc = 0;

	for (unsigned i = 0; i < reps && rc == 0; i++) {
		void *buf = NULL;
		size_t len;
		double t = bench_now();

		rc = version ? store_history_get(l->s, id, version, &buf, &len,
						 NULL)
			     : store_get(l->s, id, &buf, &len, NULL);
		t = bench_now() - t;
		free(buf);
		if (i == 0)
			*first = t;
		sum += t;
	}
	*mean = sum / reps;
	if (rc)
		fprintf(stderr, "bench_history: get %s@%" PRIu64 ": %s\n", id,
			version, strerror(-rc));
	return rc;
}

static int count_one(void *arg, const char *id, const struct store_version *v)
{
	(void)id;
	(void)v;
	++*(uint64_t *)arg;
	return 0;
}

/* Reopened (no chain held in memory yet): the first and mean reads of
   version 1, the middle one and the current one, and a log. */
static int deep_reads(struct layout *l, const char *id)
{
	uint64_t n = l->cfg->versions, listed = 0;
	double f1, m1, fm, mm, fc, mc, t;
	struct store_opts o = {.io = l->io, .path = l->path};
	int rc = store_close(l->s);

	l->s = NULL;
	t = bench_now();
	rc = rc ? rc : store_open(&l->s, &o);
	t = bench_now() - t;
	if (rc == 0)
		printf("  reopened in %.3f s\n", t);
	rc = rc ? rc : time_get(l, id, 1, 100, &f1, &m1);
	rc = rc ? rc : time_get(l, id, n / 2, 100, &fm, &mm);
	rc = rc ? rc : time_get(l, id, 0, 100, &fc, &mc);
	if (rc)
		return rc;
	printf("  store_history_get %s@1: first %.1f us, mean %.1f us; "
	       "@%" PRIu64 ": first %.1f us, mean %.1f us\n",
	       id, f1 * 1e6, m1 * 1e6, n / 2, fm * 1e6, mm * 1e6);
	printf("  store_get %s (current): first %.1f us, mean %.1f us\n", id,
	       fc * 1e6, mc * 1e6);
	printf("  ratio @1/current: first %.2fx, mean %.2fx\n", f1 / fc,
	       m1 / mc);
	t = bench_now();
	rc = store_history_each(l->s, id, count_one, &listed);
	t = bench_now() - t;
	if (rc == 0)
		printf("  store_history_each %s (log): %" PRIu64
		       " versions in %.3f s\n",
		       id, listed, t);
	return rc;
}

static int bench_deep(const struct config *cfg)
{
	struct layout l = {.cfg = cfg, .n = 1};
	struct store_opts o = {.create = true,
			       .history_lag_max = UINT64_MAX / 2};
	uint8_t *buf = malloc(cfg->size);
	double t0, t1, t2;
	int rc = buf ? 0 : -ENOMEM;

	printf("one record, %" PRIu64 " versions:\n", cfg->versions);
	snprintf(l.path, sizeof(l.path), "%s/store-deep", cfg->dir);
	rc = rc ? rc : io_new(&l.io);
	o.io = l.io;
	o.path = l.path;
	rc = rc ? rc : store_open(&l.s, &o);
	t0 = bench_now();
	for (uint64_t i = 0; i < cfg->versions && rc == 0; i++)
		rc = put_version(&l, "deep", i + 1, buf);
	t1 = bench_now();
	rc = rc ? rc : store_history_drain(l.s, 0);
	t2 = bench_now();
	if (rc == 0)
		printf("  made in %.2f s (sync=close), history drained "
		       "%.2f s later\n",
		       t1 - t0, t2 - t1);
	fflush(stdout);
	rc = rc ? rc : deep_reads(&l, "deep");
	if (rc)
		fprintf(stderr, "bench_history: %s: %s\n", l.path,
			strerror(-rc));
	if (cfg->keep)
		printf("# store: %s (record deep)\n", l.path);
	free(buf);
	if (l.s)
		close_layout(&l);
	else
		io_free(l.io);
	return rc;
}

static int usage(FILE *to, int status)
{
	fprintf(to,
		"usage: bench_history [--dir DIR] [--records 1000,100000] "
		"[--shards N] [--seconds S]\n"
		"                     [--rate R] [--size BYTES] [--threads T] "
		"[--reads N] [--no-hot] [--keep]\n"
		"       bench_history --versions N [--dir DIR] [--size BYTES] "
		"[--keep]\n"
		"  --dir DIR       make the stores in a new directory under "
		"DIR "
		"(default /var/tmp)\n"
		"  --records LIST  record counts (default 1000,100000)\n"
		"  --shards N      namespaces of the sharded layout (default "
		"256; 0: flat only)\n"
		"  --seconds S     length of each sustained run (default 10)\n"
		"  --rate R        versions/s of the sustained runs (default "
		"500)\n"
		"  --size BYTES    bytes per version (default 256)\n"
		"  --threads T     writers creating the records (default 16)\n"
		"  --reads N       reads timed per layout (default 1000)\n"
		"  --no-hot        skip the one-hot-record run\n"
		"  --versions N    only this: one record with N versions, "
		"reopened;\n"
		"                  reading version 1 against the current "
		"one, and\n"
		"                  listing them all\n"
		"  --debug         log the timings of every history batch\n"
		"  --keep          keep the stores\n");
	return status;
}

static int parse_records(struct config *cfg, char *list)
{
	int n = bench_parse_list(list, 10000000, cfg->records, MAX_SIZES);

	if (n < 0)
		return -1;
	cfg->nrecords = n;
	return 0;
}

/* The options into *cfg and *parent: -1 to go on, else main's exit
   status (usage printed). */
static int parse_args(int argc, char **argv, struct config *cfg,
		      const char **parent)
{
	static const struct option longopts[] = {
		{"dir", required_argument, NULL, 'd'},
		{"records", required_argument, NULL, 'n'},
		{"shards", required_argument, NULL, 'S'},
		{"seconds", required_argument, NULL, 's'},
		{"rate", required_argument, NULL, 'r'},
		{"size", required_argument, NULL, 'z'},
		{"threads", required_argument, NULL, 't'},
		{"reads", required_argument, NULL, 'R'},
		{"no-hot", no_argument, NULL, 'H'},
		{"versions", required_argument, NULL, 'V'},
		{"keep", no_argument, NULL, 'k'},
		{"debug", no_argument, NULL, 'D'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			*parent = optarg;
			break;
		case 'n':
			if (parse_records(cfg, optarg))
				return usage(stderr, 2);
			break;
		case 'S':
			cfg->shards = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 's':
			cfg->seconds = strtod(optarg, NULL);
			break;
		case 'r':
			cfg->rate = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'z':
			cfg->size = strtoul(optarg, NULL, 10);
			break;
		case 't':
			cfg->threads = atoi(optarg);
			break;
		case 'R':
			cfg->reads = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'H':
			cfg->no_hot = true;
			break;
		case 'V':
			cfg->versions = strtoull(optarg, NULL, 10);
			break;
		case 'k':
			cfg->keep = true;
			break;
		case 'D':
			rlog_set_level(RLOG_DEBUG); /* per-batch timings */
			break;
		case 'h':
			return usage(stdout, 0);
		default:
			return usage(stderr, 2);
		}
	}
	if (optind != argc || cfg->seconds <= 0 || cfg->rate < 1 ||
	    cfg->size < 64 || cfg->size > (1u << 20) || cfg->threads < 1 ||
	    cfg->threads > 256 || cfg->reads < 1 || cfg->shards > 4096)
		return usage(stderr, 2);
	return -1;
}

int main(int argc, char **argv)
{
	struct config cfg = {.records = {1000, 100000},
			     .nrecords = 2,
			     .shards = 256,
			     .seconds = 10,
			     .rate = 500,
			     .size = 256,
			     .threads = 16,
			     .reads = 1000};
	const char *parent = "/var/tmp";
	int status = parse_args(argc, argv, &cfg, &parent);

	if (status >= 0)
		return status;
	status = 0;
	if (bench_workdir(cfg.dir, sizeof(cfg.dir), parent, "recfs-bench-hist",
			  "bench_history"))
		return 1;
	printf("# history of %zu-byte versions in %s; sustained runs at %u "
	       "versions/s for %.3g s\n",
	       cfg.size, cfg.dir, cfg.rate, cfg.seconds);
	if (cfg.versions) {
		status = bench_deep(&cfg) ? 1 : 0;
		cfg.nrecords = 0;
		cfg.no_hot = true;
	}
	for (int i = 0; i < cfg.nrecords && status == 0; i++) {
		if (bench_layout(&cfg, cfg.records[i], 0))
			status = 1;
		if (status == 0 && cfg.shards &&
		    bench_layout(&cfg, cfg.records[i], cfg.shards))
			status = 1;
	}
	if (status == 0 && !cfg.no_hot && bench_hot(&cfg))
		status = 1;
	bench_workdir_done(cfg.dir, cfg.keep);
	return status;
}
