/*
 * bench_util.c - the helpers the benchmarks share (bench_util.h).
 */
#include "bench_util.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int bench_parse_list(char *list, uint64_t max, uint64_t *v, int cap)
{
	char *save = NULL;
	int n = 0;

	for (char *t = strtok_r(list, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		unsigned long long x = strtoull(t, NULL, 10);

		if (x < 1 || x > max || n == cap)
			return -1;
		v[n++] = x;
	}
	return n ? n : -1;
}

int bench_workdir(char *dir, size_t len, const char *parent, const char *name,
		  const char *prog)
{
	snprintf(dir, len, "%s/%s.XXXXXX", parent, name);
	if (mkdtemp(dir))
		return 0;
	fprintf(stderr, "%s: %s: %s\n", prog, dir, strerror(errno));
	return -1;
}

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

void bench_rm_tree(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void bench_workdir_done(const char *dir, bool keep)
{
	if (!keep)
		bench_rm_tree(dir);
	else
		printf("# kept %s\n", dir);
}
