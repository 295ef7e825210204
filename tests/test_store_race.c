/*
 * test_store_race.c - the record store (store/): concurrency: CAS increments,
 * readers racing commits, create-only races, stalled commits. The fixture and
 * helpers the test_store_*.c files share are in store_helpers.h.
 */
#include "helpers.h"
#include "io.h"
#include "jnl.h"
#include "store.h"
#include "store_helpers.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

TestSuite(store, .init = store_setup, .fini = sandbox_store_rm, .timeout = 120);

/* ---- concurrency -------------------------------------------------------- */

#define CAS_THREADS 16
#define CAS_ROUNDS 200

struct cas_worker {
	struct store *s;
	pthread_barrier_t *go;
	int err; /* first unexpected error */
	unsigned retries;
};

static void *cas_increment(void *arg)
{
	struct cas_worker *w = arg;

	pthread_barrier_wait(w->go);
	for (int i = 0; i < CAS_ROUNDS && !w->err; i++) {
		for (;;) {
			struct store_meta m;
			char text[32];
			void *buf = NULL;
			size_t len;
			long n;
			int rc = store_get(w->s, "counter", &buf, &len, &m);

			if (rc) {
				w->err = rc;
				break;
			}
			snprintf(text, sizeof(text), "%.*s", (int)len,
				 (char *)buf);
			free(buf);
			n = strtol(text, NULL, 10);
			snprintf(text, sizeof(text), "%ld", n + 1);
			rc = put_if(w->s, "counter", text,
				    STORE_COND_IF_VERSION, m.version, NULL);
			if (rc == 0)
				break;
			if (rc != -ESTALE) {
				w->err = rc;
				break;
			}
			w->retries++;
		}
	}
	return NULL;
}

static void cas_body(enum store_backend b)
{
	struct store *s = open_store(b);
	struct cas_worker w[CAS_THREADS];
	pthread_t t[CAS_THREADS];
	pthread_barrier_t go;
	char want[16];

	must_put(s, "counter", "0");
	pthread_barrier_init(&go, NULL, CAS_THREADS);
	for (int i = 0; i < CAS_THREADS; i++) {
		w[i] = (struct cas_worker){.s = s, .go = &go};
		cr_assert_eq(pthread_create(&t[i], NULL, cas_increment, &w[i]),
			     0);
	}
	for (int i = 0; i < CAS_THREADS; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(w[i].err, 0, "%s: thread %d: %s", bname(b), i,
			     strerror(-w[i].err));
	}
	pthread_barrier_destroy(&go);
	snprintf(want, sizeof(want), "%d", CAS_THREADS * CAS_ROUNDS);
	expect(s, "counter", want, CAS_THREADS * CAS_ROUNDS + 1);
	close_store(s);
	if (b == STORE_BACKEND_FILE) {
		s = open_store(b);
		expect(s, "counter", want, CAS_THREADS * CAS_ROUNDS + 1);
		close_store(s);
	}
}

Test(store, concurrent_cas_increments_lose_nothing_file)
{
	cas_body(STORE_BACKEND_FILE);
}

Test(store, concurrent_cas_increments_lose_nothing_memory)
{
	cas_body(STORE_BACKEND_MEMORY);
}

/* Readers racing commits to the same record always get a whole version:
   content and version number that belong together, never an error. */
struct racer {
	struct store *s;
	atomic_bool stop;
	int err; /* first error of a reader */
	unsigned reads;
	unsigned mismatch; /* content of another version than reported */
};

static void *race_reader(void *arg)
{
	struct racer *r = arg;

	while (!atomic_load(&r->stop) && !r->err) {
		struct store_meta m;
		void *buf = NULL;
		size_t len;
		unsigned long long v = 0;
		int rc = store_get(r->s, "hot", &buf, &len, &m);

		if (rc) {
			r->err = rc;
			break;
		}
		char head[24] = "";

		memcpy(head, buf,
		       len < sizeof(head) - 1 ? len : sizeof(head) - 1);
		if (sscanf(head, "v=%llu;", &v) != 1 || v != m.version)
			r->mismatch++;
		free(buf);
		r->reads++;
	}
	return NULL;
}

static void readers_body(enum store_backend b)
{
	struct store *s = open_store(b);
	struct racer r[4];
	pthread_t t[4];
	char text[600];

	for (int i = 0; i < 4; i++)
		r[i] = (struct racer){.s = s};
	must_put(s, "hot", "v=1;");
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, race_reader, &r[i]);
	for (unsigned v = 2; v <= 1000; v++) {
		int n = snprintf(text, sizeof(text), "v=%u;", v);

		memset(text + n, 'p', (v * 7) % 500);
		text[n + (v * 7) % 500] = '\0';
		cr_assert_eq(must_put(s, "hot", text), v);
	}
	for (int i = 0; i < 4; i++) {
		atomic_store(&r[i].stop, true);
		pthread_join(t[i], NULL);
		cr_assert_eq(r[i].err, 0, "%s: a reader got %s", bname(b),
			     strerror(-r[i].err));
		cr_assert_eq(r[i].mismatch, 0,
			     "%s: %u reads saw content of another version",
			     bname(b), r[i].mismatch);
		cr_assert_gt(r[i].reads, 0);
	}
	close_store(s);
}

Test(store, readers_racing_commits_always_get_a_whole_version)
{
	for (size_t i = 0; i < 2; i++)
		readers_body(backends[i]);
}

struct creator {
	struct store *s;
	pthread_barrier_t *go;
	const char *id;
	char text[32];
	int rc;
	struct store_result res;
};

static void *create_one(void *arg)
{
	struct creator *c = arg;

	pthread_barrier_wait(c->go);
	c->rc = put_if(c->s, c->id, c->text, STORE_COND_CREATE, 0, &c->res);
	return NULL;
}

static void create_race_body(enum store_backend b)
{
	struct store *s = open_store(b);
	struct creator c[CAS_THREADS];
	pthread_t t[CAS_THREADS];
	pthread_barrier_t go;

	pthread_barrier_init(&go, NULL, CAS_THREADS);
	for (int round = 0; round < 10; round++) {
		char id[16];
		int winners = 0, winner = -1;

		snprintf(id, sizeof(id), "only%d", round);
		for (int i = 0; i < CAS_THREADS; i++) {
			c[i] = (struct creator){.s = s, .go = &go, .id = id};
			snprintf(c[i].text, sizeof(c[i].text), "thread %d", i);
			pthread_create(&t[i], NULL, create_one, &c[i]);
		}
		for (int i = 0; i < CAS_THREADS; i++) {
			pthread_join(t[i], NULL);
			if (c[i].rc == 0) {
				winners++;
				winner = i;
			} else {
				cr_assert_eq(c[i].rc, -ESTALE, "%s: %s",
					     bname(b), strerror(-c[i].rc));
				cr_assert_eq(c[i].res.current, 1);
			}
		}
		cr_assert_eq(winners, 1, "%s: %d threads created %s", bname(b),
			     winners, id);
		expect(s, id, c[winner].text, 1);
	}
	pthread_barrier_destroy(&go);
	close_store(s);
}

Test(store, create_only_race_has_exactly_one_winner)
{
	for (size_t i = 0; i < 2; i++)
		create_race_body(backends[i]);
}

/*
 * A commit stalled at a failpoint holds up only later changes to its own
 * record. (A stall inside the journal's own write or fdatasync, jnl.write
 * or jnl.fsync, necessarily blocks every commit: there is one log, as
 * with SQLite's WAL, and the group-commit leader writes for everyone. So
 * those points are not tested as non-blocking.)
 */
struct bg_put {
	struct store *s;
	const char *id;
	const void *buf;
	size_t len;
	int rc;
	atomic_bool done;
};

static void *bg_put_fn(void *arg)
{
	struct bg_put *p = arg;

	p->rc = put_buf(p->s, p->id, p->buf, p->len, STORE_COND_ANY, 0, NULL);
	atomic_store(&p->done, true);
	return NULL;
}

static void *bg_put_two(void *arg)
{
	struct bg_put *p = arg;

	p->rc = put(p->s, "y", "why", NULL);
	if (p->rc == 0)
		p->rc = put(p->s, "z", "zed", NULL);
	atomic_store(&p->done, true);
	return NULL;
}

static bool wait_until(atomic_bool *flag, struct io *io, const char *point,
		       int ms)
{
	for (int i = 0; i < ms; i++) {
		if (flag && atomic_load(flag))
			return true;
		if (point && io_stalled(io, point) == 1)
			return true;
		usleep(1000);
	}
	return false;
}

static void stall_case(const char *point, size_t xlen)
{
	struct bg_put a = {.id = "x"}, other = {0};
	pthread_t ta, tb;
	struct io *io = NULL;
	struct store *s;
	uint8_t *x = malloc(xlen);

	cr_assert_not_null(x);
	fill(x, xlen, 3);
	cr_assert_eq(io_new(&io), 0);
	s = open_io(STORE_BACKEND_FILE, io);
	must_put(s, "x", "old x");
	a.s = other.s = s;
	a.buf = x;
	a.len = xlen;
	cr_assert_eq(io_arm(io, point, IO_STALL, 0, 1, 1), 0);
	pthread_create(&ta, NULL, bg_put_fn, &a);
	cr_assert(wait_until(NULL, io, point, 10000), "%s: never stalled",
		  point);

	pthread_create(&tb, NULL, bg_put_two, &other);
	if (!wait_until(&other.done, NULL, NULL, 10000)) {
		io_release(io);
		cr_assert_fail("%s: commits to y and z waited for the stalled "
			       "commit to x",
			       point);
	}
	pthread_join(tb, NULL);
	cr_assert_eq(other.rc, 0, "%s: %s", point, strerror(-other.rc));
	expect(s, "y", "why", 1);
	expect(s, "z", "zed", 1);
	/* readers of x are not held up either: they see the old version */
	expect(s, "x", "old x", 1);
	cr_assert_not(atomic_load(&a.done), "%s: the stall did not hold",
		      point);
	cr_assert_eq(io_stalled(io, point), 1);

	io_release(io);
	pthread_join(ta, NULL);
	cr_assert_eq(a.rc, 0, "%s: stalled commit: %s", point, strerror(-a.rc));
	expect_buf(s, "x", x, xlen, 2);
	close_store(s);
	io_free(io);
	free(x);
}

Test(store, commit_stalled_at_publish_does_not_block_other_records)
{
	stall_case("commit.publish", 100);
}

Test(store, commit_stalled_before_journal_does_not_block_other_records)
{
	stall_case("commit.journal", 100);
}

Test(store, commit_stalled_at_stage_fsync_does_not_block_other_records)
{
	stall_case("stage.fsync", BIG_LEN);
}
