/*
 * test_crash_kill.c - the durability protocol of the store: random kills of a
 * child making random changes from several threads. The fixture and the
 * failpoint tables are in crash_helpers.h.
 */
#include "admin.h"
#include "crash_helpers.h"
#include "helpers.h"
#include "io.h"
#include "store.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

TestSuite(crash, .init = crash_setup, .fini = sandbox_store_rm, .timeout = 300);

/* ---- (d) random kills
 * -------------------------------------------------------- */

#define KILL_ROUNDS 30
#define KILL_THREADS 4
#define KILL_PER_THREAD 3 /* records of each thread */
#define KILL_IDS (KILL_THREADS * KILL_PER_THREAD)
#define KILL_MAX_OPS 3000 /* per thread */
#define KILL_MIN_ACKS 2	  /* before most kills: see the test */

/* Thread t of the child changes only records t*3 .. t*3+2. */
static const char *const kill_ids[KILL_IDS] = {
	"r0", "r1", "ns/r0", "r2", "r3", "ns/r1",
	"r4", "r5", "ns/r2", "r6", "r7", "ns/r3",
};

/* What a record is: compared in full after each round. */
struct rstate {
	uint8_t exists;
	uint8_t bad; /* could not be read */
	uint32_t mode;
	uint64_t version; /* of a deleted record: its last; 0: never */
	uint8_t hash[16];
};

/* A message from a child thread: 'B' before a change (with the states it
   will leave), 'A' once it is acknowledged. Smaller than PIPE_BUF, so
   writes from several threads do not interleave. */
struct kmsg {
	uint32_t seq;
	char kind;
	uint8_t thread;
	uint8_t n;
	uint8_t idx[2];
	struct rstate st[2];
};

static void read_state(struct store *s, const char *id, struct rstate *st,
		       void **content, size_t *clen)
{
	struct store_meta m;
	void *buf = NULL;
	size_t len = 0;
	uint64_t v = 0;
	int rc = store_get(s, id, &buf, &len, &m);

	memset(st, 0, sizeof(*st));
	if (rc == 0) {
		st->exists = 1;
		st->version = m.version;
		st->mode = m.mode;
		hash_of(buf, len, st->hash);
	} else if (rc == -ENOENT) {
		store_last_version(s, id, &v);
		st->version = v;
	} else {
		st->bad = 1;
	}
	if (content) {
		*content = buf;
		*clen = len;
	} else {
		free(buf);
	}
}

static bool same_state(const struct rstate *a, const struct rstate *b)
{
	return !a->bad && !b->bad && a->exists == b->exists &&
	       a->version == b->version &&
	       (!a->exists ||
		(a->mode == b->mode && memcmp(a->hash, b->hash, 16) == 0));
}

static uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

struct kill_worker {
	struct store *s;
	int wfd;
	unsigned t;
	unsigned round;
	uint64_t rnd;
};

static void send_msg(int fd, const struct kmsg *m)
{
	if (write(fd, m, sizeof(*m)) != (ssize_t)sizeof(*m))
		_exit(9);
}

/* One thread of the child: random changes to its own records until
   killed; says what it does and what was acknowledged, and checks each
   result itself (exit 10: a change failed, 11: a wrong result). */
static void *kill_worker(void *arg)
{
	struct kill_worker *w = arg;
	struct store_commit_args app = {.cond = {STORE_COND_APPEND, 0},
					.mode = -1};
	uint8_t *big = malloc(BIG_LEN);
	struct store *s = w->s;
	char text[300];

	if (!big)
		_exit(7);
	for (uint32_t seq = 1; seq <= KILL_MAX_OPS; seq++) {
		struct kmsg m = {
			.seq = seq, .kind = 'B', .thread = (uint8_t)w->t};
		struct rstate cur[2], after;
		unsigned r = (unsigned)(xorshift(&w->rnd) % 100);
		unsigned a = (unsigned)(xorshift(&w->rnd) % KILL_PER_THREAD);
		unsigned b =
			(unsigned)(xorshift(&w->rnd) % (KILL_PER_THREAD - 1));
		void *old = NULL;
		size_t olen = 0, len;
		int rc = 0;

		b = b >= a ? b + 1 : b;
		a += w->t * KILL_PER_THREAD;
		b += w->t * KILL_PER_THREAD;
		read_state(s, kill_ids[a], &cur[0], &old, &olen);
		read_state(s, kill_ids[b], &cur[1], NULL, NULL);
		if (cur[0].bad || cur[1].bad)
			_exit(6);
		m.idx[0] = (uint8_t)a;
		m.idx[1] = (uint8_t)b;
		m.n = 1;
		m.st[0] = cur[0];
		if (r >= 55 && r < 80 && !cur[0].exists)
			r = 0; /* delete, rename, set_meta need a record */
		if (r < 47) {  /* put, sometimes a big one */
			const void *data = text;

			/* unique content: an equal one would be a no-op */
			len = (size_t)snprintf(text, sizeof(text),
					       "%s@%u.%u:", kill_ids[a],
					       w->round, seq);
			memset(text + len, 'x', 200);
			len += xorshift(&w->rnd) % 200;
			if (r >= 45) {
				fill(big, BIG_LEN, seq);
				memcpy(big, text, 32);
				data = big;
				len = BIG_LEN;
			}
			m.st[0].exists = 1;
			m.st[0].version = cur[0].version + 1;
			m.st[0].mode = cur[0].exists ? cur[0].mode : 0644;
			hash_of(data, len, m.st[0].hash);
			send_msg(w->wfd, &m);
			rc = put(s, kill_ids[a], data, len);
		} else if (r < 55) { /* append */
			uint8_t *nb;

			len = (size_t)snprintf(text, sizeof(text), "+%u;", seq);
			nb = malloc(olen + len);
			if (!nb)
				_exit(7);
			if (olen)
				memcpy(nb, old, olen);
			memcpy(nb + olen, text, len);
			m.st[0].exists = 1;
			m.st[0].version = cur[0].version + 1;
			m.st[0].mode = cur[0].exists ? cur[0].mode : 0644;
			hash_of(nb, olen + len, m.st[0].hash);
			free(nb);
			send_msg(w->wfd, &m);
			rc = store_put(s, kill_ids[a], text, len, &app, NULL);
		} else if (r < 63) { /* delete */
			m.st[0].exists = 0;
			send_msg(w->wfd, &m);
			rc = store_delete(s, kill_ids[a], NULL, NULL, NULL);
		} else if (r < 72) { /* rename a onto b */
			m.n = 2;
			m.st[0].exists = 0;
			m.st[1] = cur[0];
			m.st[1].version = cur[1].version + 1;
			send_msg(w->wfd, &m);
			rc = store_rename(s, kill_ids[a], kill_ids[b], NULL,
					  NULL, NULL);
		} else if (r < 80) { /* set_meta */
			m.st[0].mode = cur[0].mode == 0600 ? 0640 : 0600;
			send_msg(w->wfd, &m);
			rc = store_set_meta(s, kill_ids[a], NULL,
					    (int)m.st[0].mode);
		} else if (r < 83) {
			m.n = 0;
			send_msg(w->wfd, &m);
			rc = store_checkpoint(s);
		} else { /* only read */
			free(old);
			continue;
		}
		free(old);
		if (rc)
			_exit(10);
		for (unsigned i = 0; i < m.n; i++) {
			read_state(s, kill_ids[m.idx[i]], &after, NULL, NULL);
			if (!same_state(&after, &m.st[i])) {
				fprintf(stderr,
					"kill child: op %u on %s: is e%d v%llu "
					"m%o bad%d, expected e%d v%llu m%o\n",
					r, kill_ids[m.idx[i]], after.exists,
					(unsigned long long)after.version,
					after.mode, after.bad, m.st[i].exists,
					(unsigned long long)m.st[i].version,
					m.st[i].mode);
				_exit(11);
			}
		}
		m.kind = 'A';
		send_msg(w->wfd, &m);
	}
	free(big);
	return NULL;
}

static void kill_child(int wfd, unsigned round)
{
	struct store_opts o = {.path = spath, .checkpoint_bytes = 256 << 10};
	struct kill_worker w[KILL_THREADS];
	pthread_t t[KILL_THREADS];
	struct store *s = NULL;

	if (store_open(&s, &o))
		_exit(3);
	for (unsigned i = 0; i < KILL_THREADS; i++) {
		w[i] = (struct kill_worker){
			.s = s,
			.wfd = wfd,
			.t = i,
			.round = round,
			.rnd = (round * KILL_THREADS + i + 1) *
			       0x9e3779b97f4a7c15ull,
		};
		if (pthread_create(&t[i], NULL, kill_worker, &w[i]))
			_exit(8);
	}
	for (unsigned i = 0; i < KILL_THREADS; i++)
		pthread_join(t[i], NULL);
	_exit(0);
}

/* Number of 'A' messages among the whole messages in buf[0..len). */
static unsigned count_acks(const uint8_t *buf, size_t len)
{
	unsigned n = 0;

	for (size_t off = 0; off + sizeof(struct kmsg) <= len;
	     off += sizeof(struct kmsg))
		n += buf[off + offsetof(struct kmsg, kind)] == 'A';
	return n;
}

/* Read the child's messages into `buf` until EOF. */
static size_t drain_all(int fd, uint8_t *buf, size_t len, size_t cap)
{
	for (;;) {
		ssize_t n;

		cr_assert_lt(len, cap, "the child said too much");
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return len;
		len += (size_t)n;
	}
}

/*
 * Read the child's messages into `buf` until it has acknowledged `acks`
 * changes and `delay_ms` more have passed (or EOF). `acks` is a
 * condition, not a time: how soon the child gets there depends on the
 * load of the machine, what it has done by then does not.
 */
static size_t drain_until(int fd, uint8_t *buf, size_t cap, unsigned acks,
			  uint64_t delay_ms)
{
	uint64_t deadline = 0;
	size_t len = 0;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int wait = -1;
		ssize_t n;

		if (!deadline && count_acks(buf, len) >= acks)
			deadline = now_ms() + delay_ms;
		if (deadline) {
			uint64_t t = now_ms();

			if (t >= deadline)
				return len;
			wait = (int)(deadline - t);
		}
		if (poll(&p, 1, wait) <= 0)
			continue;
		cr_assert_lt(len, cap, "the child said too much");
		n = read(fd, buf + len, cap - len);
		if (n <= 0)
			return len;
		len += (size_t)n;
	}
}

static bool touches(const struct kmsg *m, unsigned id)
{
	for (unsigned i = 0; i < m->n; i++)
		if (m->idx[i] == id)
			return true;
	return false;
}

/*
 * Children of KILL_THREADS threads make random changes to their own
 * records and are killed at a random moment (in recovery, in the middle
 * of a group commit, a checkpoint, ...). After each kill every
 * acknowledged change must be there, and each change in flight must be
 * all there or not at all.
 */
Test(crash, random_kills_lose_nothing_acknowledged)
{
	static uint8_t
		msgs[2 * KILL_THREADS * KILL_MAX_OPS * sizeof(struct kmsg)];
	struct rstate model[KILL_IDS] = {0};
	uint64_t rnd = 88172645463325252ull;
	unsigned lost = 0, torn = 0, in_flight = 0, acked = 0;
	struct store *s;

	next_case();
	s = open_store(NULL, 0);
	cr_assert_eq(store_mkdir(s, "ns", 0700), 0);
	cr_assert_eq(store_close(s), 0);
	for (int round = 0; round < KILL_ROUNDS; round++) {
		struct kmsg pend[KILL_THREADS] = {0}, m;
		bool has[KILL_THREADS] = {0};
		struct rstate now[KILL_IDS];
		int fds[2], status;
		uint64_t need, wait_ms;
		size_t len;
		pid_t pid;

		cr_assert_eq(pipe(fds), 0);
		pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			close(fds[0]);
			kill_child(fds[1], (unsigned)round);
		}
		close(fds[1]);
		/* Every fourth round is killed 1-40 ms after the start (maybe
		   in recovery, maybe before any change); the others 0-9 ms
		   after the child has acknowledged KILL_MIN_ACKS..+15 changes.
		   So the rounds together always check more than KILL_ROUNDS
		   acknowledged changes, however slow the machine is. */
		need = round % 4 ? KILL_MIN_ACKS + xorshift(&rnd) % 16 : 0;
		wait_ms = need ? xorshift(&rnd) % 10 : 1 + xorshift(&rnd) % 40;
		len = drain_until(fds[0], msgs, sizeof(msgs), (unsigned)need,
				  wait_ms);
		kill(pid, SIGKILL);
		len = drain_all(fds[0], msgs, len, sizeof(msgs));
		close(fds[0]);
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFSIGNALED(status) || (WIFEXITED(status) &&
						  WEXITSTATUS(status) == 0),
			  "round %d: the child found a wrong result (exit %d)",
			  round, WEXITSTATUS(status));

		for (size_t off = 0; off + sizeof(m) <= len; off += sizeof(m)) {
			memcpy(&m, msgs + off, sizeof(m));
			cr_assert_lt(m.thread, KILL_THREADS);
			if (m.kind == 'B') {
				pend[m.thread] = m;
				has[m.thread] = true;
				continue;
			}
			cr_assert(has[m.thread] && pend[m.thread].seq == m.seq);
			for (unsigned i = 0; i < m.n; i++)
				model[m.idx[i]] = m.st[i];
			has[m.thread] = false;
			acked++;
		}

		s = open_store(NULL, 0);
		for (unsigned i = 0; i < KILL_IDS; i++)
			read_state(s, kill_ids[i], &now[i], NULL, NULL);
		for (unsigned t = 0; t < KILL_THREADS; t++) {
			bool is_old = true, is_new = true;

			if (!has[t])
				continue;
			in_flight++;
			for (unsigned i = 0; i < pend[t].n; i++) {
				unsigned k = pend[t].idx[i];

				is_old = is_old &&
					 same_state(&now[k], &model[k]);
				is_new = is_new &&
					 same_state(&now[k], &pend[t].st[i]);
			}
			if (!is_old && !is_new) {
				cr_log_error("round %d: a change of thread %u "
					     "is half done",
					     round, t);
				torn++;
			}
			for (unsigned i = 0; i < pend[t].n; i++)
				model[pend[t].idx[i]] = now[pend[t].idx[i]];
		}
		for (unsigned i = 0; i < KILL_IDS; i++) {
			unsigned t = i / KILL_PER_THREAD;

			if (has[t] && touches(&pend[t], i))
				continue; /* checked above */
			if (same_state(&now[i], &model[i]))
				continue;
			cr_log_error("round %d: %s is at version %llu%s, "
				     "expected %llu",
				     round, kill_ids[i],
				     (unsigned long long)now[i].version,
				     now[i].exists ? "" : " (deleted)",
				     (unsigned long long)model[i].version);
			if (now[i].version < model[i].version)
				lost++;
			else
				torn++;
			model[i] = now[i];
		}
		check_no_strays("random kills", false);
		check_verify_all(s, "random kills");
		cr_assert_eq(store_close(s), 0);
	}
	cr_log_info("random kills: %u acknowledged changes, %u in flight at "
		    "the kills",
		    acked, in_flight);
	cr_assert_eq(lost + torn, 0, "lost=%u torn=%u", lost, torn);
	cr_assert_gt(acked, KILL_ROUNDS, "too few changes to mean much");
}
