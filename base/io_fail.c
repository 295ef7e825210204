/*
 * io_fail.c - the failpoints of the I/O shim (io.h): arming them (also
 * from a spec string), counting hits, and passing a point (io_fp_pass),
 * which fails, shortens, crashes or stalls the call as armed. The
 * wrapped calls themselves are io.c.
 *
 * Two tables live in a `struct io`:
 *
 * - the hit counters, one slot per point name ever reached. They are
 *   looked up without a lock: slots are only appended (under io->lock),
 *   a slot's name never changes once published, and `nslots` is stored
 *   with release order after the slot is filled, so a reader that loads it
 *   with acquire order sees complete slots. Counters are atomics.
 * - the armed failpoints, protected by io->lock. `narmed` mirrors their
 *   number in an atomic so that a call at an unarmed point never takes
 *   the lock: the fast path is a hash, a short scan and two atomics.
 */
#include "io.h"
#include "io_i.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IO_MAX_ARMED 64	 /* failpoints armed at once */
#define IO_MAX_SLOTS 256 /* distinct point names counted */
#define IO_NAME_MAX 64	 /* longest point name + 1 */

struct io_slot {
	char *name;	  /* immutable once published */
	uint32_t hash;	  /* of name */
	atomic_uint hits; /* times reached */
	unsigned stalled; /* threads stalled here; protected by lock */
};

struct io_fp {
	char name[IO_NAME_MAX];
	enum io_action act;
	int err;
	unsigned nth;	/* fire from this hit on (1-based) */
	unsigned times; /* fire this many times; 0 = forever */
	unsigned seen;	/* hits since armed */
	unsigned fired; /* times fired */
};

struct io {
	pthread_mutex_t lock;
	pthread_cond_t wake; /* stalled threads wait here */
	pthread_cond_t idle; /* io_free waits here for stalled threads */

	struct io_slot slots[IO_MAX_SLOTS]; /* appended under lock */
	atomic_uint nslots;
	bool slots_full_warned; /* protected by lock */

	struct io_fp armed[IO_MAX_ARMED]; /* protected by lock */
	atomic_uint narmed;		  /* written under lock */

	uint64_t gen;	   /* bumped by io_release; protected by lock */
	unsigned nstalled; /* protected by lock */
	bool closing;	   /* io_free in progress; protected by lock */
};

static uint32_t name_hash(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

static struct io_slot *slot_find(struct io *io, const char *point,
				 uint32_t hash)
{
	unsigned n = atomic_load_explicit(&io->nslots, memory_order_acquire);

	for (unsigned i = 0; i < n; i++) {
		struct io_slot *s = &io->slots[i];

		if (s->hash == hash && strcmp(s->name, point) == 0)
			return s;
	}
	return NULL;
}

/* Find or add the slot of `point`; NULL if the table is full or on ENOMEM
 * (the hit is then not counted, which only affects io_hits). */
static struct io_slot *slot_get(struct io *io, const char *point)
{
	uint32_t hash = name_hash(point);
	struct io_slot *s = slot_find(io, point, hash);
	unsigned n;

	if (s)
		return s;
	pthread_mutex_lock(&io->lock);
	s = slot_find(io, point, hash);
	if (s)
		goto out;
	n = atomic_load_explicit(&io->nslots, memory_order_relaxed);
	if (n == IO_MAX_SLOTS) {
		if (!io->slots_full_warned)
			rlog_warn("io: more than %d failpoint names, "
				  "not counting \"%s\"",
				  IO_MAX_SLOTS, point);
		io->slots_full_warned = true;
		goto out;
	}
	s = &io->slots[n];
	s->name = strdup(point);
	if (!s->name) {
		s = NULL;
		goto out;
	}
	s->hash = hash;
	atomic_init(&s->hits, 0);
	s->stalled = 0;
	atomic_store_explicit(&io->nslots, n + 1, memory_order_release);
out:
	pthread_mutex_unlock(&io->lock);
	return s;
}

static struct io_fp *fp_find(struct io *io, const char *point)
{
	unsigned n = atomic_load_explicit(&io->narmed, memory_order_relaxed);

	for (unsigned i = 0; i < n; i++)
		if (strcmp(io->armed[i].name, point) == 0)
			return &io->armed[i];
	return NULL;
}

/* Called with io->lock held. */
static void fp_remove(struct io *io, struct io_fp *fp)
{
	unsigned n = atomic_load_explicit(&io->narmed, memory_order_relaxed);

	*fp = io->armed[n - 1];
	atomic_store_explicit(&io->narmed, n - 1, memory_order_relaxed);
}

/* Called with io->lock held; returns with it held. */
static void stall(struct io *io, struct io_slot *slot)
{
	uint64_t gen = io->gen;

	if (slot)
		slot->stalled++;
	io->nstalled++;
	while (gen == io->gen && !io->closing)
		pthread_cond_wait(&io->wake, &io->lock);
	if (slot)
		slot->stalled--;
	io->nstalled--;
	if (io->closing && io->nstalled == 0)
		pthread_cond_broadcast(&io->idle);
}

/*
 * Pass failpoint `point`: count the hit and, if it is armed and due, act.
 * Returns 0 to go on with the call, or -err. *is_short (if not NULL) is
 * set when an IO_SHORT fired; callers that cannot write half pass NULL
 * and IO_SHORT then acts like IO_FAIL.
 */
int io_fp_pass(struct io *io, const char *point, bool *is_short)
{
	struct io_slot *slot;
	struct io_fp *fp;
	enum io_action act;
	int rc = 0;

	if (!io || !point)
		return 0;
	slot = slot_get(io, point);
	if (slot)
		atomic_fetch_add_explicit(&slot->hits, 1, memory_order_relaxed);
	if (atomic_load_explicit(&io->narmed, memory_order_relaxed) == 0)
		return 0;

	pthread_mutex_lock(&io->lock);
	fp = fp_find(io, point);
	if (!fp)
		goto out;
	fp->seen++;
	if (fp->seen < fp->nth)
		goto out;
	act = fp->act;
	rc = -fp->err;
	fp->fired++;
	if (fp->times != 0 && fp->fired >= fp->times)
		fp_remove(io, fp);
	switch (act) {
	case IO_FAIL:
		break;
	case IO_SHORT:
		if (is_short)
			*is_short = true;
		break;
	case IO_CRASH:
		/* Like kill -9: no atexit handlers, no stdio flush. */
		_exit(IO_CRASH_STATUS);
	case IO_STALL:
		stall(io, slot);
		rc = 0;
		break;
	}
out:
	pthread_mutex_unlock(&io->lock);
	return rc;
}

int io_fp_gate(struct io *io, const char *point)
{
	int rc;

	do
		rc = io_fp_pass(io, point, NULL);
	while (rc == -EINTR);
	return rc;
}

/* Initialise io's lock and condvars: all of them or none. */
static int sync_init(struct io *io)
{
	int rc = util_sync_init(&io->lock, &io->wake);

	if (rc < 0)
		return rc;
	rc = -pthread_cond_init(&io->idle, NULL);
	if (rc < 0) {
		pthread_cond_destroy(&io->wake);
		pthread_mutex_destroy(&io->lock);
	}
	return rc;
}

int io_new(struct io **out)
{
	struct io *io = NULL;
	int rc = 0;

	io = calloc(1, sizeof(*io));
	if (!io) {
		rc = -ENOMEM;
		goto out;
	}
	rc = sync_init(io);
	if (rc < 0)
		goto out;
	atomic_init(&io->nslots, 0);
	atomic_init(&io->narmed, 0);
	*out = io;
	io = NULL;
out:
	free(io);
	return rc;
}

void io_free(struct io *io)
{
	unsigned n;

	if (!io)
		return;
	/* Stalled threads still use io->lock: wait until they are out. */
	pthread_mutex_lock(&io->lock);
	io->closing = true;
	pthread_cond_broadcast(&io->wake);
	while (io->nstalled > 0)
		pthread_cond_wait(&io->idle, &io->lock);
	pthread_mutex_unlock(&io->lock);

	n = atomic_load(&io->nslots);
	for (unsigned i = 0; i < n; i++)
		free(io->slots[i].name);
	pthread_cond_destroy(&io->idle);
	pthread_cond_destroy(&io->wake);
	pthread_mutex_destroy(&io->lock);
	free(io);
}

int io_arm(struct io *io, const char *point, enum io_action act, int err,
	   unsigned nth, unsigned times)
{
	struct io_fp *fp;
	unsigned n;
	int rc = 0;

	if (!io || !point || !*point || strlen(point) >= IO_NAME_MAX)
		return -EINVAL;
	if (act != IO_FAIL && act != IO_SHORT && act != IO_CRASH &&
	    act != IO_STALL)
		return -EINVAL;
	if (err < 0)
		return -EINVAL;

	pthread_mutex_lock(&io->lock);
	fp = fp_find(io, point);
	if (!fp) {
		n = atomic_load_explicit(&io->narmed, memory_order_relaxed);
		if (n == IO_MAX_ARMED) {
			rc = -ENOMEM;
			goto out;
		}
		fp = &io->armed[n];
		atomic_store_explicit(&io->narmed, n + 1, memory_order_relaxed);
	}
	memset(fp, 0, sizeof(*fp));
	strcpy(fp->name, point);
	fp->act = act;
	fp->err = err ? err : EIO;
	fp->nth = nth ? nth : 1;
	fp->times = times;
out:
	pthread_mutex_unlock(&io->lock);
	return rc;
}

static const struct {
	const char *name;
	int err;
} errno_names[] = {
	{"EIO", EIO},
	{"ENOSPC", ENOSPC},
	{"EDQUOT", EDQUOT},
	{"EROFS", EROFS},
	{"ENOMEM", ENOMEM},
	{"EINTR", EINTR},
	{"EAGAIN", EAGAIN},
	{"EACCES", EACCES},
	{"EPERM", EPERM},
	{"ENOENT", ENOENT},
	{"EEXIST", EEXIST},
	{"EBADF", EBADF},
	{"EFBIG", EFBIG},
	{"EINVAL", EINVAL},
	{"EMFILE", EMFILE},
	{"ENFILE", ENFILE},
	{"EXDEV", EXDEV},
	{"ENOSYS", ENOSYS},
	{"EBUSY", EBUSY},
	{"ESTALE", ESTALE},
	{"ENOTDIR", ENOTDIR},
	{"EISDIR", EISDIR},
	{"ENOTEMPTY", ENOTEMPTY},
	{"ENAMETOOLONG", ENAMETOOLONG},
	{"ETIMEDOUT", ETIMEDOUT},
	{"EBADMSG", EBADMSG},
	{"EOVERFLOW", EOVERFLOW},
	{"EOPNOTSUPP", EOPNOTSUPP},
};

static int parse_uint(const char *s, size_t len, unsigned *out)
{
	unsigned long v = 0;

	if (len == 0 || len > 9)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = (unsigned)v;
	return 0;
}

static int parse_errno(const char *s, size_t len, int *out)
{
	unsigned v;

	if (len > 0 && s[0] >= '0' && s[0] <= '9') {
		if (parse_uint(s, len, &v) < 0 || v == 0 || v > 4095)
			return -EINVAL;
		*out = (int)v;
		return 0;
	}
	for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]);
	     i++) {
		if (strlen(errno_names[i].name) == len &&
		    memcmp(errno_names[i].name, s, len) == 0) {
			*out = errno_names[i].err;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_action(const char *s, size_t len, enum io_action *out)
{
	static const char *const names[] = {
		[IO_FAIL] = "fail",
		[IO_SHORT] = "short",
		[IO_CRASH] = "crash",
		[IO_STALL] = "stall",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0) {
			*out = (enum io_action)i;
			return 0;
		}
	}
	return -EINVAL;
}

struct fp_spec {
	char name[IO_NAME_MAX];
	enum io_action act;
	int err;
	unsigned nth;
	unsigned times;
};

/* Parse one "point=action[:errno][@nth][*times]" of `len` bytes. */
static int parse_item(const char *s, size_t len, struct fp_spec *fs)
{
	const char *end = s + len;
	const char *eq = memchr(s, '=', len);
	const char *p, *q;

	if (!eq || eq == s || (size_t)(eq - s) >= IO_NAME_MAX)
		return -EINVAL;
	memcpy(fs->name, s, (size_t)(eq - s));
	fs->name[eq - s] = '\0';
	fs->err = EIO;
	fs->nth = 1;
	fs->times = 1;

	p = eq + 1;
	for (q = p; q < end && *q != ':' && *q != '@' && *q != '*'; q++)
		;
	if (parse_action(p, (size_t)(q - p), &fs->act) < 0)
		return -EINVAL;
	p = q;
	if (p < end && *p == ':') {
		for (q = ++p; q < end && *q != '@' && *q != '*'; q++)
			;
		if (parse_errno(p, (size_t)(q - p), &fs->err) < 0)
			return -EINVAL;
		p = q;
	}
	if (p < end && *p == '@') {
		for (q = ++p; q < end && *q != '*'; q++)
			;
		if (parse_uint(p, (size_t)(q - p), &fs->nth) < 0 ||
		    fs->nth == 0)
			return -EINVAL;
		p = q;
	}
	if (p < end && *p == '*') {
		p++;
		if (parse_uint(p, (size_t)(end - p), &fs->times) < 0)
			return -EINVAL;
		p = end;
	}
	return p == end ? 0 : -EINVAL;
}

int io_arm_spec(struct io *io, const char *spec)
{
	struct fp_spec *items = NULL;
	size_t n = 0;
	const char *s, *comma;
	int rc = 0;

	if (!io || !spec)
		return -EINVAL;
	if (!*spec)
		return 0;
	items = calloc(IO_MAX_ARMED, sizeof(*items));
	if (!items)
		return -ENOMEM;
	/* Parse everything first: a bad spec arms nothing. */
	for (s = spec;; s = comma + 1) {
		comma = strchr(s, ',');
		if (!comma)
			comma = s + strlen(s);
		if (n == IO_MAX_ARMED) {
			rc = -EINVAL;
			goto out;
		}
		rc = parse_item(s, (size_t)(comma - s), &items[n++]);
		if (rc < 0)
			goto out;
		if (!*comma)
			break;
	}
	for (size_t i = 0; i < n; i++) {
		rc = io_arm(io, items[i].name, items[i].act, items[i].err,
			    items[i].nth, items[i].times);
		if (rc < 0)
			goto out;
	}
out:
	if (rc < 0)
		rlog_err("io: bad failpoint spec \"%s\"", spec);
	free(items);
	return rc;
}

void io_disarm_all(struct io *io)
{
	if (!io)
		return;
	pthread_mutex_lock(&io->lock);
	atomic_store_explicit(&io->narmed, 0, memory_order_relaxed);
	io->gen++;
	pthread_cond_broadcast(&io->wake);
	pthread_mutex_unlock(&io->lock);
}

void io_release(struct io *io)
{
	if (!io)
		return;
	pthread_mutex_lock(&io->lock);
	io->gen++;
	pthread_cond_broadcast(&io->wake);
	pthread_mutex_unlock(&io->lock);
}

unsigned io_hits(struct io *io, const char *point)
{
	struct io_slot *s;

	if (!io || !point)
		return 0;
	s = slot_find(io, point, name_hash(point));
	return s ? atomic_load_explicit(&s->hits, memory_order_relaxed) : 0;
}

unsigned io_stalled(struct io *io, const char *point)
{
	struct io_slot *s;
	unsigned n = 0;

	if (!io || !point)
		return 0;
	s = slot_find(io, point, name_hash(point));
	if (!s)
		return 0;
	pthread_mutex_lock(&io->lock);
	n = s->stalled;
	pthread_mutex_unlock(&io->lock);
	return n;
}

int io_point(struct io *io, const char *point)
{
	return io_fp_pass(io, point, NULL);
}
