/*
 * bench_scale_gen - the tree of small files that `tools/bench scale`
 * imports into a store and measures a plain directory with.
 *
 * usage: bench_scale_gen N PLAIN CHUNKS CHUNK
 *
 * Writes N small files (64..1024 bytes of pseudo-random text, the same for
 * the same N) under PLAIN:
 *   flat/rNNNNNNN            N/10 of them (at most 100,000): one large
 *                            namespace
 *   dNNNN/rNNNNNNN           the others, 1000 per directory
 * and hard-links each one under CHUNKS/cNNNN/ with the same relative path,
 * CHUNK files per chunk directory, so that each chunk can be imported as
 * one store change (`recfsctl import STORE CHUNKS/cNNNN`) and the chunks
 * removed afterwards without copying anything. Prints the number of
 * chunks on stdout.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FLAT_MAX 100000
#define PER_DIR 1000

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int mkdir_ok(const char *path)
{
	if (mkdir(path, 0755) == 0 || errno == EEXIST)
		return 0;
	fprintf(stderr, "bench_scale_gen: mkdir %s: %s\n", path,
		strerror(errno));
	return -1;
}

/* The relative path of file i, its directory part in dir[]. */
static void rel_path(uint64_t i, uint64_t flat, char *dir, size_t dn, char *rel,
		     size_t rn)
{
	if (i < flat)
		snprintf(dir, dn, "flat");
	else
		snprintf(dir, dn, "d%04llu",
			 (unsigned long long)((i - flat) / PER_DIR));
	snprintf(rel, rn, "%s/r%07llu", dir, (unsigned long long)i);
}

static int write_one(const char *path, uint64_t i)
{
	char buf[1100];
	size_t len = 64 + next() % 961, n = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0) {
		fprintf(stderr, "bench_scale_gen: %s: %s\n", path,
			strerror(errno));
		return -1;
	}
	n = (size_t)snprintf(buf, sizeof(buf), "record %llu\n",
			     (unsigned long long)i);
	while (n < len) {
		uint64_t r = next();

		for (int k = 0; k < 8 && n < len; k++, r >>= 8)
			buf[n++] = (char)('a' + (r & 0xff) % 26);
	}
	buf[len - 1] = '\n';
	if (write(fd, buf, len) != (ssize_t)len || close(fd) != 0) {
		fprintf(stderr, "bench_scale_gen: %s: short write\n", path);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	char dir[64], rel[96], last_dir[64] = "", path[4096], link_to[4096];
	uint64_t n, chunk, flat, last_chunk = UINT64_MAX;

	if (argc != 5 || (n = strtoull(argv[1], NULL, 10)) == 0 ||
	    (chunk = strtoull(argv[4], NULL, 10)) == 0) {
		fprintf(stderr,
			"usage: bench_scale_gen N PLAIN CHUNKS CHUNK\n");
		return 2;
	}
	flat = n / 10 < FLAT_MAX ? n / 10 : FLAT_MAX;
	if (mkdir_ok(argv[2]) || mkdir_ok(argv[3]))
		return 1;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t c = i / chunk;

		rel_path(i, flat, dir, sizeof(dir), rel, sizeof(rel));
		if (c != last_chunk) {
			snprintf(path, sizeof(path), "%s/c%04llu", argv[3],
				 (unsigned long long)c);
			if (mkdir_ok(path))
				return 1;
			last_chunk = c;
			last_dir[0] = '\0';
		}
		if (strcmp(dir, last_dir) != 0) {
			snprintf(path, sizeof(path), "%s/%s", argv[2], dir);
			snprintf(link_to, sizeof(link_to), "%s/c%04llu/%s",
				 argv[3], (unsigned long long)c, dir);
			if (mkdir_ok(path) || mkdir_ok(link_to))
				return 1;
			snprintf(last_dir, sizeof(last_dir), "%s", dir);
		}
		snprintf(path, sizeof(path), "%s/%s", argv[2], rel);
		snprintf(link_to, sizeof(link_to), "%s/c%04llu/%s", argv[3],
			 (unsigned long long)c, rel);
		if (write_one(path, i))
			return 1;
		if (link(path, link_to) != 0) {
			fprintf(stderr, "bench_scale_gen: link %s: %s\n",
				link_to, strerror(errno));
			return 1;
		}
	}
	printf("%llu\n", (unsigned long long)(last_chunk + 1));
	return 0;
}
