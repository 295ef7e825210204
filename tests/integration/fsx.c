/*
 * fsx - a file system exerciser in the spirit of the classic fsx (Apple,
 * then xfstests): random operations on one file and on an in-memory model
 * of what it must hold, compared after every read.
 *
 *   fsx [-n OPS] [-l MAXLEN] [-o MAXOP] [-M] [-A] [-v] -s SEED FILE
 *
 * Operations: pwrite at a random offset and size (write(2) at the end
 * when the descriptor is O_APPEND), pread and compare, ftruncate up or
 * down, fstat size, fsync, close and reopen (plain, O_TRUNC or O_APPEND;
 * close(2) must return 0), a shared writable mmap written, msync'ed and
 * read back, a read-only mmap compared, and preads through a second,
 * long-lived O_RDONLY descriptor after an fsync of the first (SPEC 3: an
 * open descriptor sees the commits made to its record in place; fsync
 * is a commit point). -M leaves mmap out, -A reopening with O_APPEND
 * (to look past a first failure there), -v prints every operation.
 *
 * The same SEED gives the same sequence of operations. On the first
 * mismatch or unexpected error it prints the seed, the operation number,
 * the last operations and a hexdump of the file and the model around the
 * first differing byte, and exits 1. Exit 0: all operations matched;
 * 2: usage or setup error. Bytes at even offsets written by operation N
 * hold N's low byte, so a stale byte names the write it came from.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum op {
	OP_WRITE,
	OP_READ,
	OP_READ2,
	OP_TRUNCATE,
	OP_CLOSEOPEN,
	OP_FSYNC,
	OP_FSTAT,
	OP_MAPWRITE,
	OP_MAPREAD,
	OP_REOPEN2,
	OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
	"write", "read",  "read2",    "truncate", "closeopen",
	"fsync", "fstat", "mapwrite", "mapread",  "reopen2",
};

/* relative weights; mmap ops get 0 with -M */
static unsigned op_weight[OP_COUNT] = {24, 18, 8, 7, 7, 4, 5, 8, 5, 2};

#define HISTORY 24

struct fsx {
	const char *path;
	uint64_t seed;
	uint64_t rng;
	long nops;
	size_t maxlen;
	size_t maxop;
	bool verbose;
	long opnum;
	int fd;		      /* O_RDWR [| O_APPEND] */
	int fd2;	      /* O_RDONLY, long-lived */
	bool append;	      /* fd is O_APPEND */
	bool no_append;	      /* -A: never reopen O_APPEND */
	unsigned char *model; /* maxlen bytes; zero past size */
	size_t size;
	unsigned char *buf; /* maxlen bytes of scratch */
	long pagesize;
	char history[HISTORY][128];
	long counts[OP_COUNT];
};

static uint64_t rnd(struct fsx *f)
{
	/* splitmix64 */
	uint64_t z = (f->rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static size_t rnd_below(struct fsx *f, size_t n)
{
	return n ? (size_t)(rnd(f) % n) : 0;
}

static void logop(struct fsx *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void logop(struct fsx *f, const char *fmt, ...)
{
	char *h = f->history[f->opnum % HISTORY];
	int n = snprintf(h, sizeof(f->history[0]), "%6ld ", f->opnum);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(h + n, sizeof(f->history[0]) - (size_t)n, fmt, ap);
	va_end(ap);
	if (f->verbose)
		printf("%s\n", h);
}

static void dump_history(const struct fsx *f)
{
	long first = f->opnum - HISTORY + 1;

	printf("last operations (op number, what, file size after):\n");
	for (long i = first < 1 ? 1 : first; i <= f->opnum; i++)
		printf("  %s\n", f->history[i % HISTORY]);
}

static void hexdump_line(const char *who, size_t base, const unsigned char *p,
			 size_t from, size_t to, size_t mark)
{
	printf("  %-5s %08zx:", who, base);
	for (size_t i = base; i < base + 16; i++) {
		if (i < from || i >= to)
			printf("   ");
		else
			printf("%c%02x", i == mark ? '*' : ' ', p[i - from]);
	}
	printf("\n");
}

/*
 * The failure report: the seed and op number, what was expected, a
 * hexdump of both sides around the first differing byte (file offsets),
 * the last operations. Exits 1.
 */
static void fail(struct fsx *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

static void fail(struct fsx *f, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	printf("fsx: FAIL seed %" PRIu64 " op %ld (%s): ", f->seed, f->opnum,
	       f->path);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	dump_history(f);
	printf("fsx: seed %" PRIu64 ": first failure at op %ld of %ld\n",
	       f->seed, f->opnum, f->nops);
	fflush(stdout);
	exit(1);
}

/*
 * Compare n bytes that the file gave at file offset off with the model;
 * what says how they were read. On a difference: the hexdump and fail().
 */
static void compare(struct fsx *f, const char *what, const unsigned char *got,
		    size_t off, size_t n)
{
	const unsigned char *want = f->model + off;
	size_t i, lo, hi;

	if (memcmp(got, want, n) == 0)
		return;
	for (i = 0; got[i] == want[i]; i++)
		;
	fflush(stdout);
	printf("fsx: %s at offset %zu (0x%zx), %zu bytes: first difference at "
	       "file offset %zu (0x%zx): file has 0x%02x, model 0x%02x\n",
	       what, off, off, n, off + i, off + i, got[i], want[i]);
	lo = (off + i) & ~(size_t)15;
	lo = lo >= off + 32 ? lo - 32 : off & ~(size_t)15;
	hi = off + i + 48;
	if (hi > off + n)
		hi = off + n;
	for (size_t b = lo; b < hi; b += 16) {
		hexdump_line("file", b, got, off, off + n, off + i);
		hexdump_line("model", b, want, off, off + n, off + i);
	}
	{
		size_t ndiff = 0;
		for (size_t k = i; k < n; k++)
			ndiff += got[k] != want[k];
		printf("fsx: %zu of the %zu bytes differ\n", ndiff, n);
	}
	fail(f, "%s returned bytes that differ from the model", what);
}

/* pread until n bytes or EOF; returns the count, fails on an error */
static size_t pread_full(struct fsx *f, int fd, const char *what,
			 unsigned char *p, size_t n, size_t off)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = pread(fd, p + done, n - done, (off_t)(off + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			fail(f, "%s: pread(%zu, %zu): %s", what, n - done,
			     off + done, strerror(errno));
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return done;
}

static void fill(struct fsx *f, unsigned char *p, size_t off, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = ((off + i) & 1) ? (unsigned char)rnd(f)
				       : (unsigned char)f->opnum;
}

static int open_main(struct fsx *f, int extra)
{
	int fd;

	do
		fd = open(f->path, O_RDWR | extra);
	while (fd < 0 && errno == EINTR);
	return fd;
}

static void do_write(struct fsx *f)
{
	size_t off, len;
	ssize_t r;

	len = 1 + rnd_below(f, f->maxop);
	if (f->append) {
		off = f->size;
		if (off + len > f->maxlen)
			len = f->maxlen - off;
		if (len == 0) {
			logop(f, "write (append): skipped, file full");
			return;
		}
	} else {
		off = rnd_below(f, f->maxlen);
		if (off + len > f->maxlen)
			len = f->maxlen - off;
	}
	fill(f, f->buf, off, len);
	if (f->append)
		r = write(f->fd, f->buf, len);
	else
		r = pwrite(f->fd, f->buf, len, (off_t)off);
	if (r < 0 || (size_t)r != len) {
		logop(f, "%s %zu+%zu", f->append ? "append" : "write", off,
		      len);
		fail(f, "%s(%zu at %zu) returned %zd: %s",
		     f->append ? "write" : "pwrite", len, off, r,
		     r < 0 ? strerror(errno) : "short write");
	}
	memcpy(f->model + off, f->buf, len);
	if (off + len > f->size)
		f->size = off + len;
	logop(f, "%s %zu+%zu -> size %zu", f->append ? "append" : "write", off,
	      len, f->size);
}

/* a random range mostly inside the file, sometimes across its end */
static void pick_range(struct fsx *f, size_t *off, size_t *len)
{
	size_t span = f->size + f->size / 8 + 1;

	*off = rnd_below(f, span);
	*len = 1 + rnd_below(f, f->maxop);
	if (*off + *len > f->maxlen) {
		*len = f->maxlen > *off ? f->maxlen - *off : 0;
		if (*len == 0) {
			*off = 0;
			*len = 1;
		}
	}
}

static void check_read(struct fsx *f, int fd, const char *what)
{
	size_t off, len, want, got;

	pick_range(f, &off, &len);
	want = off >= f->size ? 0 : (off + len > f->size ? f->size - off : len);
	logop(f, "%s %zu+%zu (expect %zu bytes)", what, off, len, want);
	got = pread_full(f, fd, what, f->buf, len, off);
	if (got != want) {
		if (got > want)
			compare(f, what, f->buf, off, got);
		fail(f,
		     "%s at %zu of %zu bytes gave %zu bytes, expected %zu "
		     "(file size %zu)",
		     what, off, len, got, want, f->size);
	}
	compare(f, what, f->buf, off, got);
}

static void do_fsync(struct fsx *f, const char *why)
{
	if (fsync(f->fd) != 0)
		fail(f, "fsync%s: %s", why, strerror(errno));
}

static void do_truncate(struct fsx *f)
{
	size_t n;

	if (rnd(f) & 1)
		n = rnd_below(f, f->size + 1);
	else
		n = f->size + rnd_below(f, f->maxlen - f->size + 1);
	logop(f, "truncate %zu -> %zu", f->size, n);
	if (ftruncate(f->fd, (off_t)n) != 0)
		fail(f, "ftruncate(%zu): %s", n, strerror(errno));
	if (n < f->size)
		memset(f->model + n, 0, f->size - n);
	f->size = n;
}

static void do_closeopen(struct fsx *f)
{
	static const int variants[] = {0, 0, O_TRUNC, O_APPEND};
	static const char *const vnames[] = {"", "", "|O_TRUNC", "|O_APPEND"};
	unsigned v = (unsigned)rnd_below(f, 4);

	if (v == 3 && f->no_append)
		v = 0;

	logop(f, "close, open O_RDWR%s", vnames[v]);
	if (close(f->fd) != 0) {
		f->fd = -1;
		fail(f, "close: %s", strerror(errno));
	}
	f->fd = open_main(f, variants[v]);
	if (f->fd < 0)
		fail(f, "open(O_RDWR%s): %s", vnames[v], strerror(errno));
	f->append = variants[v] == O_APPEND;
	if (variants[v] == O_TRUNC) {
		memset(f->model, 0, f->size);
		f->size = 0;
	}
}

static void do_fstat(struct fsx *f)
{
	struct stat st;

	logop(f, "fstat (expect size %zu)", f->size);
	if (fstat(f->fd, &st) != 0)
		fail(f, "fstat: %s", strerror(errno));
	if ((size_t)st.st_size != f->size)
		fail(f, "fstat says size %lld, the model %zu",
		     (long long)st.st_size, f->size);
}

/*
 * mmap [pg, off+len) of the file, pg the page below off: compare what the
 * mapping shows with the model, then (write) store new bytes, msync.
 */
static void do_map(struct fsx *f, bool write)
{
	size_t off, len, pg, maplen;
	unsigned char *p;
	int prot = PROT_READ | (write ? PROT_WRITE : 0);

	if (f->size == 0) {
		logop(f, "map%s: skipped, empty file",
		      write ? "write" : "read");
		return;
	}
	off = rnd_below(f, f->size);
	len = 1 + rnd_below(f, f->maxop);
	if (off + len > f->size)
		len = f->size - off;
	pg = off & ~((size_t)f->pagesize - 1);
	maplen = off + len - pg;
	logop(f, "map%s %zu+%zu (size %zu)", write ? "write" : "read", off, len,
	      f->size);
	p = mmap(NULL, maplen, prot, MAP_SHARED, f->fd, (off_t)pg);
	if (p == MAP_FAILED)
		fail(f, "mmap(MAP_SHARED, PROT_READ%s, %zu at %zu): %s",
		     write ? "|PROT_WRITE" : "", maplen, pg, strerror(errno));
	compare(f,
		write ? "mapwrite (the mapping before the store)" : "mapread",
		p + (off - pg), off, len);
	if (write) {
		fill(f, f->buf, off, len);
		memcpy(p + (off - pg), f->buf, len);
		memcpy(f->model + off, f->buf, len);
		if (msync(p, maplen, MS_SYNC) != 0)
			fail(f, "msync: %s", strerror(errno));
		compare(f, "mapwrite (the mapping after msync)", p + (off - pg),
			off, len);
	}
	if (munmap(p, maplen) != 0)
		fail(f, "munmap: %s", strerror(errno));
}

static void do_reopen2(struct fsx *f)
{
	logop(f, "reopen the second descriptor");
	if (close(f->fd2) != 0)
		fail(f, "close of the second descriptor: %s", strerror(errno));
	f->fd2 = open(f->path, O_RDONLY);
	if (f->fd2 < 0)
		fail(f, "open O_RDONLY: %s", strerror(errno));
}

static enum op pick_op(struct fsx *f)
{
	unsigned total = 0, r;

	for (int i = 0; i < OP_COUNT; i++)
		total += op_weight[i];
	r = (unsigned)rnd_below(f, total);
	for (int i = 0; i < OP_COUNT; i++) {
		if (r < op_weight[i])
			return (enum op)i;
		r -= op_weight[i];
	}
	return OP_READ;
}

static void step(struct fsx *f)
{
	enum op op = pick_op(f);

	f->counts[op]++;
	logop(f, "%s", op_names[op]);
	switch (op) {
	case OP_WRITE:
		do_write(f);
		break;
	case OP_READ:
		check_read(f, f->fd, "read");
		break;
	case OP_READ2:
		/* a commit point first: the other descriptor then sees it */
		do_fsync(f, " (before read2)");
		check_read(f, f->fd2, "read2");
		break;
	case OP_TRUNCATE:
		do_truncate(f);
		break;
	case OP_CLOSEOPEN:
		do_closeopen(f);
		break;
	case OP_FSYNC:
		logop(f, "fsync");
		do_fsync(f, "");
		break;
	case OP_FSTAT:
		do_fstat(f);
		break;
	case OP_MAPWRITE:
		do_map(f, true);
		break;
	case OP_MAPREAD:
		do_map(f, false);
		break;
	case OP_REOPEN2:
		do_reopen2(f);
		break;
	case OP_COUNT:
		break;
	}
}

/* the end: close, then a fresh descriptor and stat see the whole model */
static void final_check(struct fsx *f)
{
	struct stat st;
	size_t got;

	f->opnum++;
	logop(f, "close both, open O_RDONLY, read all, stat");
	if (close(f->fd) != 0) {
		f->fd = -1;
		fail(f, "final close: %s", strerror(errno));
	}
	f->fd = -1;
	close(f->fd2);
	f->fd2 = open(f->path, O_RDONLY);
	if (f->fd2 < 0)
		fail(f, "final open: %s", strerror(errno));
	got = pread_full(f, f->fd2, "final read", f->buf, f->maxlen, 0);
	if (got != f->size)
		fail(f, "final read gave %zu bytes, the model has %zu", got,
		     f->size);
	compare(f, "final read", f->buf, 0, got);
	if (stat(f->path, &st) != 0)
		fail(f, "final stat: %s", strerror(errno));
	if ((size_t)st.st_size != f->size)
		fail(f, "final stat says size %lld, the model %zu",
		     (long long)st.st_size, f->size);
	close(f->fd2);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: fsx [-n OPS] [-l MAXLEN] [-o MAXOP] [-M] [-A] [-v] "
		"-s SEED FILE\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct fsx f = {.nops = 3000,
			.maxlen = 256 * 1024,
			.maxop = 64 * 1024,
			.fd = -1,
			.fd2 = -1};
	bool have_seed = false, mmap_on = true;
	int c;

	while ((c = getopt(argc, argv, "n:l:o:s:MAv")) != -1) {
		switch (c) {
		case 'n':
			f.nops = strtol(optarg, NULL, 0);
			break;
		case 'l':
			f.maxlen = strtoul(optarg, NULL, 0);
			break;
		case 'o':
			f.maxop = strtoul(optarg, NULL, 0);
			break;
		case 's':
			f.seed = strtoull(optarg, NULL, 0);
			have_seed = true;
			break;
		case 'M':
			mmap_on = false;
			break;
		case 'A':
			f.no_append = true;
			break;
		case 'v':
			f.verbose = true;
			break;
		default:
			usage();
		}
	}
	if (!have_seed || optind + 1 != argc || f.nops < 1 || f.maxlen < 1 ||
	    f.maxop < 1)
		usage();
	f.path = argv[optind];
	f.rng = f.seed;
	f.pagesize = sysconf(_SC_PAGESIZE);
	if (!mmap_on)
		op_weight[OP_MAPWRITE] = op_weight[OP_MAPREAD] = 0;
	f.model = calloc(1, f.maxlen);
	f.buf = calloc(1, f.maxlen);
	if (!f.model || !f.buf) {
		fprintf(stderr, "fsx: out of memory\n");
		return 2;
	}
	printf("fsx: seed %" PRIu64
	       ", %ld ops, file %s, maxlen %zu, maxop %zu, "
	       "mmap %s, O_APPEND %s\n",
	       f.seed, f.nops, f.path, f.maxlen, f.maxop,
	       mmap_on ? "on" : "off", f.no_append ? "off" : "on");
	fflush(stdout);

	/* created and closed first: the run is about an existing file (a
	 * second open of a file still being created is t_fileops' matter) */
	f.fd = open(f.path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (f.fd < 0 || close(f.fd) != 0) {
		fprintf(stderr, "fsx: create %s: %s\n", f.path,
			strerror(errno));
		return 2;
	}
	f.fd = open(f.path, O_RDWR);
	if (f.fd < 0) {
		fprintf(stderr, "fsx: open %s: %s\n", f.path, strerror(errno));
		return 2;
	}
	f.fd2 = open(f.path, O_RDONLY);
	if (f.fd2 < 0) {
		fprintf(stderr, "fsx: open %s: %s\n", f.path, strerror(errno));
		return 2;
	}
	for (f.opnum = 1; f.opnum <= f.nops; f.opnum++)
		step(&f);
	f.opnum = f.nops;
	final_check(&f);
	printf("fsx: seed %" PRIu64 ": %ld ops ok, final size %zu (", f.seed,
	       f.nops, f.size);
	for (int i = 0; i < OP_COUNT; i++)
		printf("%s%s %ld", i ? ", " : "", op_names[i], f.counts[i]);
	printf(")\n");
	free(f.model);
	free(f.buf);
	return 0;
}
