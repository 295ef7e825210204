/*
 * bench_etcd - the gateway ceiling: durable puts of --size bytes (default
 * 4096) per second into a local etcd cluster through the client of
 * store/etcd.h (one POST /v3/kv/put each over a kept-alive connection),
 * side by side with `etcdctl put` of the same values in a loop (a process
 * and a gRPC connection per put), for 1 and 16 threads (--threads), on a
 * 1-member and a 3-member cluster (--members), each for --seconds.
 *
 * Every put is durable when it returns: etcd answers after the entry is in
 * the WAL (fdatasync) of a majority of members. The members run here (on
 * free 127.0.0.1 ports, tests/etcd_helpers.c), with their data in a new
 * directory under --dir (default /var/tmp: the disk, not tmpfs), and are
 * stopped and removed at the end. Each thread cycles over 64 keys of its
 * own. Prints one line per cluster and thread count: puts/s through the
 * gateway, through etcdctl, their ratio, and the gateway's mean latency.
 */
#include "bench_util.h"
#include "err.h"
#include "etcd.h"
#include "etcd_helpers.h"

#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_THREADS 64
#define KEYS_PER_THREAD 64

struct config {
	const char *dir;
	double seconds;
	size_t size;
	uint64_t members[4];
	int nmembers;
	uint64_t threads[8];
	int nthreads;
	int no_etcdctl;
};

struct worker {
	struct etcd *e;		       /* gateway; NULL: etcdctl */
	const struct etcd_cluster *cl; /* etcdctl's endpoints */
	const char *value;
	size_t size;
	int id;
	double deadline;
	uint64_t ops;
	double busy; /* seconds in puts */
	char err[300];
	pthread_t th;
};

static int put_gateway(struct worker *w, const char *key)
{
	int rc = etcd_put(w->e, key, strlen(key), w->value, w->size, 0, NULL);

	if (rc)
		snprintf(w->err, sizeof(w->err), "%s", rerr_what(rc));
	return rc;
}

extern char **environ;

static int put_etcdctl(struct worker *w, const char *key)
{
	char *argv[] = {(char *)"etcdctl",
			(char *)"--endpoints",
			(char *)w->cl->uri_members,
			(char *)"put",
			(char *)key,
			(char *)w->value,
			NULL};
	posix_spawn_file_actions_t fa;
	int rc, status = 0;
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	rc = posix_spawnp(&pid, "etcdctl", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc == 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0)
		return 0;
	snprintf(w->err, sizeof(w->err), "etcdctl put %s: %s", key,
		 rc ? strerror(rc) : "failed (exit status)");
	return -1;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	char key[64];
	double t;

	while ((t = bench_now()) < w->deadline) {
		snprintf(key, sizeof(key), "bench/%d/%llu", w->id,
			 (unsigned long long)(w->ops % KEYS_PER_THREAD));
		if (w->e ? put_gateway(w, key) : put_etcdctl(w, key))
			break;
		w->busy += bench_now() - t;
		w->ops++;
	}
	return NULL;
}

/* Run `n` threads putting through the gateway (e) or etcdctl (e NULL):
   puts/s (-1 on a failure, said on stderr), mean latency in *lat_ms. */
static double run(const struct config *cfg, const struct etcd_cluster *cl,
		  struct etcd *e, int n, const char *value, double *lat_ms)
{
	static struct worker w[MAX_THREADS];
	double start = bench_now(), busy = 0;
	uint64_t ops = 0;
	int failed = 0;

	for (int i = 0; i < n; i++) {
		w[i] = (struct worker){.e = e,
				       .cl = cl,
				       .value = value,
				       .size = cfg->size,
				       .id = i,
				       .deadline = start + cfg->seconds};
		pthread_create(&w[i].th, NULL, work, &w[i]);
	}
	for (int i = 0; i < n; i++) {
		pthread_join(w[i].th, NULL);
		ops += w[i].ops;
		busy += w[i].busy;
		if (w[i].err[0] && !failed++)
			fprintf(stderr, "bench_etcd: %s\n", w[i].err);
	}
	*lat_ms = ops ? busy / (double)ops * 1000 : 0;
	return failed ? -1 : (double)ops / (bench_now() - start);
}

static int bench_cluster(const struct config *cfg, size_t members,
			 const char *value)
{
	struct etcd_cluster cl;
	struct etcd *e = NULL;
	char msg[512];
	double gw = 0, ctl = 0, lat, ctl_lat;
	char ratio[32] = "-";
	int rc;

	if (etcd_cluster_start(&cl, members, cfg->dir, msg, sizeof(msg))) {
		fprintf(stderr, "bench_etcd: %s\n", msg);
		return -1;
	}
	rc = etcd_open(cl.endpoints, members, NULL, &e);
	if (rc) {
		fprintf(stderr, "bench_etcd: %s\n", rerr_what(rc));
		etcd_cluster_stop(&cl);
		return -1;
	}
	for (int i = 0; i < cfg->nthreads; i++) {
		int n = (int)cfg->threads[i];

		gw = run(cfg, &cl, e, n, value, &lat);
		if (!cfg->no_etcdctl)
			ctl = run(cfg, &cl, NULL, n, value, &ctl_lat);
		if (gw < 0 || ctl < 0)
			break;
		if (ctl > 0)
			snprintf(ratio, sizeof(ratio), "%.2fx", gw / ctl);
		printf("%7zu %7d %11.0f %11.0f %11s %6.2f\n", members, n, gw,
		       ctl, ratio, lat);
		fflush(stdout);
	}
	etcd_close(e);
	etcd_cluster_stop(&cl);
	return gw < 0 || ctl < 0 ? -1 : 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_etcd [--seconds S] [--size BYTES] "
		   "[--members 1,3] [--threads 1,16]\n"
		   "                  [--dir DIR] [--no-etcdctl]\n");
}

static int parse(int argc, char **argv, struct config *cfg)
{
	static const struct option opts[] = {
		{"seconds", 1, NULL, 's'}, {"size", 1, NULL, 'b'},
		{"members", 1, NULL, 'm'}, {"threads", 1, NULL, 't'},
		{"dir", 1, NULL, 'd'},	   {"no-etcdctl", 0, NULL, 'n'},
		{"help", 0, NULL, 'h'},	   {NULL, 0, NULL, 0}};
	char l1[] = "1,3", l2[] = "1,16";
	int c;

	*cfg = (struct config){.dir = "/var/tmp", .seconds = 5, .size = 4096};
	cfg->nmembers = bench_parse_list(l1, ETCD_MAX_MEMBERS, cfg->members, 4);
	cfg->nthreads = bench_parse_list(l2, MAX_THREADS, cfg->threads, 8);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 's')
			cfg->seconds = atof(optarg);
		else if (c == 'b')
			cfg->size = strtoul(optarg, NULL, 10);
		else if (c == 'm')
			cfg->nmembers = bench_parse_list(
				optarg, ETCD_MAX_MEMBERS, cfg->members, 4);
		else if (c == 't')
			cfg->nthreads = bench_parse_list(optarg, MAX_THREADS,
							 cfg->threads, 8);
		else if (c == 'd')
			cfg->dir = optarg;
		else if (c == 'n')
			cfg->no_etcdctl = 1;
		else
			return c == 'h' ? 1 : -1;
	}
	if (cfg->seconds <= 0 || cfg->size < 1 || cfg->size > 1 << 20 ||
	    cfg->nmembers < 0 || cfg->nthreads < 0 || optind != argc)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	struct config cfg;
	char *value;
	int rc = parse(argc, argv, &cfg);

	if (rc) {
		usage(rc > 0 ? stdout : stderr);
		return rc > 0 ? 0 : 2;
	}
	value = malloc(cfg.size + 1);
	if (!value)
		return 1;
	for (size_t i = 0; i < cfg.size; i++)
		value[i] = (char)('a' + i % 26);
	value[cfg.size] = '\0';
	printf("bench_etcd: durable %zu-byte puts/s, %.1f s each, data under "
	       "%s\n",
	       cfg.size, cfg.seconds, cfg.dir);
	printf("members threads   gateway/s   etcdctl/s  gw/etcdctl  gw-ms\n");
	fflush(stdout);
	rc = 0;
	for (int i = 0; i < cfg.nmembers && !rc; i++)
		rc = bench_cluster(&cfg, cfg.members[i], value);
	free(value);
	return rc ? 1 : 0;
}
