/*
 * retain.c - retention policies (SPEC section 7, `recfsctl retain`):
 * per prefix, keep the newest N versions of each record, or the versions
 * that were current at some time within the last D days; by default
 * everything is kept forever.
 *
 * The policies are STORE/retain.json (RETAIN_FILE), one line of JSON:
 *   {"retain":1,"policies":[{"prefix":"logs","keep":3},
 *                           {"prefix":"/","days":30}]}
 * written atomically (temp file 0600, fsync, rename, directory fsync);
 * a store without the file has no policy. It is untrusted input: at most
 * RETAIN_FILE_MAX bytes and RETAIN_MAX policies, each checked.
 *
 * A prefix is "/" (every record) or an ID or namespace: "a/b" covers the
 * record a/b and every record under a/b/ (not a/bc). Of the policies
 * that cover a record, the one with the longest prefix applies.
 *
 * A prune (store_retain_prune) drains the history first, so that every
 * version is in git, then picks, per record covered by a policy, the
 * versions past it among those with content that the history holds
 * (never the current version of a record: its newest, unless it is
 * deleted), has the history prune them (hist_prune: a new epoch, crash
 * safe), and checkpoints, so that the journal segments that still held
 * their content are dropped.
 *
 *   --keep N  the N newest versions are kept (the current one among them)
 *   --days D  a version is kept while it was current at some time in the
 *             last D days: it is pruned once the change that replaced it
 *             (its next version, or the delete) is more than D days old
 *
 * History remote (SPEC 7, recfs -o history_remote): a prune first pushes
 * the history there (retain_remote_ok) and prunes nothing if that fails,
 * nor any version written after the revision that push covered.
 */
#include "store_i.h"
#include "admin.h"
#include "history.h"
#include "id.h"
#include "io.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RETAIN_FILE "retain.json"
#define RETAIN_TMP "retain.json.tmp"
#define RETAIN_FILE_MAX (1u << 20)
#define RETAIN_MAX 1024
#define RETAIN_DRAIN_MS 60000
#define DAY_NS (86400LL * 1000000000LL)

/* ---- prefixes ------------------------------------------------------------ */

int store_retain_prefix_check(const char *prefix, char *msg, size_t len)
{
	char id[ID_MAX_LEN + 2];
	size_t n = strlen(prefix);

	if (strcmp(prefix, "/") == 0)
		return 0;
	if (n == 0 || n > ID_MAX_LEN + 1) {
		snprintf(msg, len, "an empty or too long prefix");
		return -EINVAL;
	}
	if (strpbrk(prefix, "*?[")) {
		snprintf(msg, len,
			 "patterns are not prefixes: give a namespace (a/b), "
			 "a record ID, or / for every record");
		return -EINVAL;
	}
	memcpy(id, prefix, n + 1);
	if (n > 1 && id[n - 1] == '/')
		id[n - 1] = '\0'; /* "a/b/" is "a/b" */
	if (id[0] == '/' || id_check(id) != 0) {
		snprintf(msg, len,
			 "not a record ID or namespace (relative, no . or .. "
			 "components), nor / for every record");
		return -EINVAL;
	}
	return 0;
}

/* The prefix as stored: "a/b/" is "a/b". */
static void prefix_norm(char *p)
{
	size_t n = strlen(p);

	if (n > 1 && p[n - 1] == '/')
		p[n - 1] = '\0';
}

/* How well `prefix` covers `id`: its length + 1, or 0 if it does not. */
static size_t prefix_match(const char *prefix, const char *id)
{
	size_t n = strlen(prefix);

	if (strcmp(prefix, "/") == 0)
		return 1;
	if (strncmp(prefix, id, n) == 0 && (id[n] == '\0' || id[n] == '/'))
		return n + 1;
	return 0;
}

/* ---- the file ---------------------------------------------------------- */

struct policies {
	struct store_retain_policy *v;
	size_t n;
};

static void policies_free(struct policies *ps)
{
	for (size_t i = 0; i < ps->n; i++)
		free((char *)ps->v[i].prefix);
	free(ps->v);
	ps->v = NULL;
	ps->n = 0;
}

static int policy_parse(json_t *o, struct store_retain_policy *p)
{
	json_t *pre = json_object_get(o, "prefix");
	json_t *keep = json_object_get(o, "keep");
	json_t *days = json_object_get(o, "days");
	json_t *n = keep ? keep : days;
	char msg[160], *pre_copy;

	if (!json_is_object(o) || !json_is_string(pre) || !n ||
	    (keep && days) || !json_is_integer(n) ||
	    json_integer_value(n) < 1 ||
	    store_retain_prefix_check(json_string_value(pre), msg,
				      sizeof(msg)) != 0)
		return -EBADMSG;
	p->kind = keep ? STORE_RETAIN_KEEP : STORE_RETAIN_DAYS;
	p->n = (uint64_t)json_integer_value(n);
	pre_copy = strdup(json_string_value(pre));
	if (!pre_copy)
		return -ENOMEM;
	prefix_norm(pre_copy);
	p->prefix = pre_copy;
	return 0;
}

/* Read STORE/retain.json; none is no policy. */
static int policies_load(struct store *s, struct policies *ps)
{
	char *buf = NULL;
	json_t *root = NULL, *arr;
	json_error_t jerr;
	struct stat st;
	ssize_t n;
	int fd, rc = 0;

	memset(ps, 0, sizeof(*ps));
	fd = openat(s->dirfd, RETAIN_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > RETAIN_FILE_MAX) {
		rc = -EBADMSG;
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	n = io_pread_all(s->io, "retain.read", fd, buf, (size_t)st.st_size, 0);
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	root = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
	arr = root ? json_object_get(root, "policies") : NULL;
	if (!json_is_array(arr) ||
	    json_integer_value(json_object_get(root, "retain")) != 1 ||
	    json_array_size(arr) > RETAIN_MAX) {
		rc = -EBADMSG;
		goto out;
	}
	ps->v = calloc(json_array_size(arr) + 1, sizeof(*ps->v));
	rc = ps->v ? 0 : -ENOMEM;
	for (size_t i = 0; rc == 0 && i < json_array_size(arr); i++) {
		rc = policy_parse(json_array_get(arr, i), &ps->v[ps->n]);
		ps->n += rc == 0;
	}
out:
	if (rc == -EBADMSG)
		rerr_set(rc,
			 "%s/%s: not a retention policy file recfs wrote "
			 "(corrupt?); nothing is pruned until it is fixed or "
			 "removed",
			 s->path, RETAIN_FILE);
	if (rc)
		policies_free(ps);
	json_decref(root);
	free(buf);
	close(fd);
	return rc;
}

static int policies_save(struct store *s, const struct policies *ps)
{
	json_t *root = json_object(), *arr = json_array();
	char *text = NULL;
	ssize_t n;
	int fd = -1, rc = root && arr ? 0 : -ENOMEM;

	for (size_t i = 0; rc == 0 && i < ps->n; i++) {
		const struct store_retain_policy *p = &ps->v[i];

		if (json_array_append_new(
			    arr,
			    json_pack("{s:s, s:I}", "prefix", p->prefix,
				      p->kind == STORE_RETAIN_KEEP ? "keep"
								   : "days",
				      (json_int_t)p->n)))
			rc = -ENOMEM;
	}
	if (rc == 0 && (json_object_set_new(root, "retain", json_integer(1)) ||
			json_object_set(root, "policies", arr)))
		rc = -ENOMEM;
	if (rc == 0 && !(text = json_dumps(root, JSON_COMPACT)))
		rc = -ENOMEM;
	if (rc == 0) {
		unlinkat(s->dirfd, RETAIN_TMP, 0);
		fd = io_openat(s->io, "retain.write", s->dirfd, RETAIN_TMP,
			       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
				       O_CLOEXEC,
			       0600);
		rc = fd < 0 ? fd : 0;
	}
	if (rc == 0) {
		size_t len = strlen(text);

		text[len] = '\n'; /* one line; json_dumps' NUL is not written */
		n = io_pwrite_all(s->io, "retain.write", fd, text, len + 1, 0);
		rc = n < 0 ? (int)n : 0;
	}
	if (rc == 0)
		rc = io_fsync(s->io, "retain.fsync", fd);
	if (rc == 0)
		rc = io_renameat(s->io, "retain.rename", s->dirfd, RETAIN_TMP,
				 s->dirfd, RETAIN_FILE, 0);
	if (rc == 0)
		rc = io_fsync(s->io, "retain.dirsync", s->dirfd);
	if (fd >= 0)
		close(fd);
	if (rc)
		unlinkat(s->dirfd, RETAIN_TMP, 0);
	free(text);
	json_decref(arr);
	json_decref(root);
	return rc;
}

/* Set (or, STORE_RETAIN_OFF, remove) the policy of p->prefix in ps. */
static int policies_change(struct policies *ps,
			   const struct store_retain_policy *p)
{
	struct store_retain_policy *v;
	size_t i;

	for (i = 0; i < ps->n && strcmp(ps->v[i].prefix, p->prefix); i++)
		;
	if (p->kind == STORE_RETAIN_OFF) {
		if (i == ps->n)
			return -ENOENT;
		free((char *)ps->v[i].prefix);
		ps->v[i] = ps->v[--ps->n];
		return 0;
	}
	if (i == ps->n) {
		if (ps->n >= RETAIN_MAX)
			return -ENOSPC;
		v = realloc(ps->v, (ps->n + 1) * sizeof(*v));
		if (!v)
			return -ENOMEM;
		ps->v = v;
		if (!(v[i].prefix = strdup(p->prefix)))
			return -ENOMEM; /* stays valid: ps->n unchanged */
		ps->n++;
	}
	ps->v[i].kind = p->kind;
	ps->v[i].n = p->n;
	return 0;
}

/* The policy that applies to `id`, or NULL. */
static const struct store_retain_policy *policy_of(const struct policies *ps,
						   const char *id)
{
	const struct store_retain_policy *best = NULL;
	size_t best_len = 0;

	for (size_t i = 0; i < ps->n; i++) {
		size_t m = prefix_match(ps->v[i].prefix, id);

		if (m > best_len) {
			best = &ps->v[i];
			best_len = m;
		}
	}
	return best;
}

/* ---- what a prune takes -------------------------------------------------- */

/* A version of a record a policy covers, as the history has it. */
struct rv {
	char *id;
	uint64_t version, size;
	int64_t time_ns;
	bool content; /* neither a delete nor already pruned / missing */
	bool pushed;  /* the history remote has it (or there is none) */
};

struct plan {
	const struct policies *ps;
	struct rv *v;
	size_t n, cap;
	int err;
	uint64_t pushed; /* the remote has the history up to this revision
			    (UINT64_MAX: there is none) */
};

static int collect_rv(void *arg, const char *id, const hist_version *hv)
{
	struct plan *pl = arg;
	struct rv *v;

	if (!policy_of(pl->ps, id))
		return 0;
	v = util_grow(pl->v, &pl->cap, pl->n, sizeof(*v), 256);
	if (!v)
		return -ENOMEM;
	pl->v = v;
	v = &pl->v[pl->n];
	v->id = strdup(id);
	if (!v->id)
		return -ENOMEM;
	v->version = hv->version;
	v->size = hv->size;
	v->time_ns = (int64_t)hv->time.tv_sec * 1000000000 + hv->time.tv_nsec;
	v->content = !hv->deleted && !hv->pruned && !hv->missing;
	v->pushed = hv->revision <= pl->pushed;
	pl->n++;
	return 0;
}

static int rv_cmp(const void *a, const void *b)
{
	const struct rv *x = a, *y = b;
	int c = strcmp(x->id, y->id);

	if (c)
		return c;
	if (x->version != y->version)
		return x->version < y->version ? -1 : 1;
	/* a delete comes after the version it deletes (same number) */
	return (int)y->content - (int)x->content;
}

static void plan_free(struct plan *pl)
{
	for (size_t i = 0; i < pl->n; i++)
		free(pl->v[i].id);
	free(pl->v);
}

/*
 * Of one record's entries g[0..n) (oldest first), mark the versions to
 * prune by setting their `content` to false and their size into *bytes;
 * returns how many. `live`: the record exists now (its newest version is
 * current).
 */
static uint64_t pick(const struct store_retain_policy *p, struct rv *g,
		     size_t n, bool live, int64_t now, uint64_t *bytes,
		     bool *out)
{
	uint64_t kept = 0, count = 0;

	for (size_t i = n; i-- > 0;) {
		bool go = false;

		out[i] = false;
		if (!g[i].content)
			continue;
		if (live && kept == 0) { /* the current version */
			kept++;
			continue;
		}
		if (p->kind == STORE_RETAIN_KEEP)
			go = kept >= p->n;
		else /* replaced by the next entry: when */
			go = i + 1 < n &&
			     g[i + 1].time_ns < now - (int64_t)p->n * DAY_NS;
		if (!go || !g[i].pushed) { /* SPEC 7: not before the remote */
			kept++;
			continue;
		}
		out[i] = true;
		*bytes += g[i].size;
		count++;
	}
	return count;
}

/* The versions to prune now into *out (borrowing IDs from pl), counted
   in rep. */
static int plan_make(struct store *s, struct plan *pl,
		     struct hist_prune_ver **out, size_t *nout,
		     struct store_retain_report *rep)
{
	struct timespec ts;
	struct hist_prune_ver *v = NULL;
	bool *go = NULL;
	size_t k = 0;
	int rc;

	*out = NULL;
	*nout = 0;
	rc = hist_each(s->hist, NULL, collect_rv, pl);
	if (rc)
		return rc;
	if (pl->n) /* qsort wants an array */
		qsort(pl->v, pl->n, sizeof(*pl->v), rv_cmp);
	v = calloc(pl->n + 1, sizeof(*v));
	go = calloc(pl->n + 1, sizeof(*go));
	if (!v || !go) {
		free(v);
		free(go);
		return -ENOMEM;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	if (s->opts.retain_now_ns) /* tests */
		ts = (struct timespec){
			.tv_sec = (time_t)(s->opts.retain_now_ns / 1000000000),
			.tv_nsec = (long)(s->opts.retain_now_ns % 1000000000)};
	for (size_t i = 0, j; i < pl->n; i = j) {
		uint64_t c;

		for (j = i; j < pl->n && !strcmp(pl->v[j].id, pl->v[i].id); j++)
			;
		c = pick(policy_of(pl->ps, pl->v[i].id), &pl->v[i], j - i,
			 store_is_live(s, pl->v[i].id),
			 (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec,
			 &rep->bytes, &go[i]);
		rep->versions += c;
		rep->records += c > 0;
		for (size_t m = i; m < j; m++)
			if (go[m])
				v[k++] = (struct hist_prune_ver){
					pl->v[m].id, pl->v[m].version};
	}
	free(go);
	*out = v;
	*nout = k;
	return 0;
}

/* SPEC 7: with a history remote, nothing is pruned before the remote
   has it: pushed first (store_remote.c), or nothing is pruned; versions
   written after that push are not pruned (pick). */
static int retain_remote_ok(struct store *s, struct plan *pl)
{
	return store_remote_has_history(s, &pl->pushed);
}

/* ---- the API ------------------------------------------------------------- */

static int prune_locked(struct store *s, const struct policies *ps,
			struct store_retain_report *rep)
{
	struct plan pl = {.ps = ps};
	struct hist_prune_report hr;
	struct hist_prune_ver *v = NULL;
	size_t n = 0;
	int rc;

	/* a prune of this process that could not finish holds the writer:
	   finished first (nothing pruned yet), so that the drain can */
	rc = hist_prune(s->hist, NULL, 0, &hr);
	if (rc == 0)
		rc = hist_drain(s->hist, store_revision(s), RETAIN_DRAIN_MS);
	if (rc)
		rerr_set(rc,
			 "%s: prune: the history is not written (%s): "
			 "nothing pruned",
			 s->path, rerr_what(rc));
	if (rc == 0)
		rc = retain_remote_ok(s, &pl);
	if (rc == 0)
		rc = plan_make(s, &pl, &v, &n, rep);
	if (rc == 0)
		rc = hist_prune(s->hist, v, n, &hr);
	if (rc == 0 && n) {
		rep->history_before = hr.bytes_before;
		rep->history_after = hr.bytes_after;
		/* the journal segments that still hold their content */
		rc = store_checkpoint(s);
		/* logged: a note on a prune that succeeded */
		rlog_info("%s: pruned %" PRIu64 " versions of %" PRIu64
			  " records; history %" PRIu64 " -> %" PRIu64
			  " bytes, head %s",
			  s->path, rep->versions, rep->records, hr.bytes_before,
			  hr.bytes_after, hr.head);
	}
	free(v);
	plan_free(&pl);
	return rc;
}

static int retain_ready(struct store *s)
{
	if (!s->hist || s->dirfd < 0)
		return -ENOTSUP;
	return s->opts.read_only ? -EROFS : 0;
}

int store_retain_set(struct store *s, const struct store_retain_policy *p,
		     struct store_retain_report *rep)
{
	struct policies ps;
	char msg[160];
	int rc;

	memset(rep, 0, sizeof(*rep));
	rc = retain_ready(s);
	if (rc)
		return rc;
	if (store_retain_prefix_check(p->prefix, msg, sizeof(msg)) ||
	    (p->kind != STORE_RETAIN_OFF && p->n == 0))
		return -EINVAL;
	pthread_mutex_lock(&s->retain_mu);
	rc = policies_load(s, &ps);
	if (rc == 0) {
		struct store_retain_policy q = *p;
		char pre[ID_MAX_LEN + 2];

		snprintf(pre, sizeof(pre), "%s", p->prefix);
		prefix_norm(pre);
		q.prefix = pre;
		rc = policies_change(&ps, &q);
	}
	if (rc == 0)
		rc = policies_save(s, &ps);
	rep->policies = ps.n;
	if (rc == 0 && p->kind != STORE_RETAIN_OFF)
		rc = prune_locked(s, &ps, rep);
	pthread_mutex_unlock(&s->retain_mu);
	policies_free(&ps);
	return rc;
}

int store_retain_prune(struct store *s, struct store_retain_report *rep)
{
	struct policies ps;
	int rc;

	memset(rep, 0, sizeof(*rep));
	rc = retain_ready(s);
	if (rc)
		return rc;
	pthread_mutex_lock(&s->retain_mu);
	rc = policies_load(s, &ps);
	rep->policies = ps.n;
	if (rc == 0 && ps.n)
		rc = prune_locked(s, &ps, rep);
	pthread_mutex_unlock(&s->retain_mu);
	policies_free(&ps);
	return rc;
}

/* The start of a plan or a summary: the history's size and the
   policies (free them). */
static int report_begin(struct store *s, struct store_retain_report *rep,
			struct policies *ps)
{
	int rc;

	memset(rep, 0, sizeof(*rep));
	if (!s->hist || s->dirfd < 0)
		return -ENOTSUP;
	rc = hist_size(s->hist, &rep->history_before);
	if (rc == 0)
		rc = policies_load(s, ps);
	if (rc == 0)
		rep->policies = ps->n;
	return rc;
}

int store_retain_plan(struct store *s, struct store_retain_report *rep)
{
	struct policies ps;
	struct plan pl;
	struct hist_prune_ver *v = NULL;
	size_t n;
	int rc = report_begin(s, rep, &ps);

	if (rc)
		return rc;
	pl = (struct plan){.ps = &ps, .pushed = UINT64_MAX};
	if (ps.n)
		rc = plan_make(s, &pl, &v, &n, rep);
	free(v);
	plan_free(&pl);
	policies_free(&ps);
	return rc;
}

int store_retain_summary(struct store *s, struct store_retain_report *rep)
{
	struct policies ps;
	int rc = report_begin(s, rep, &ps);

	if (rc == 0)
		policies_free(&ps);
	return rc;
}

int store_retain_each(struct store *s, store_retain_cb fn, void *arg)
{
	struct policies ps;
	int rc;

	if (s->dirfd < 0)
		return -ENOTSUP;
	rc = policies_load(s, &ps);
	for (size_t i = 0; rc == 0 && i < ps.n; i++)
		rc = fn(arg, &ps.v[i]);
	policies_free(&ps);
	return rc;
}

/* ---- the periodic prune ----------------------------------------------------
 */

#define PERIOD_DEFAULT_S 86400u
#define FIRST_DELAY_S 60u

struct retain_timer {
	pthread_t thread;
	pthread_mutex_t mu; /* protects stop */
	pthread_cond_t cv;  /* CLOCK_MONOTONIC */
	bool stop;
};

static void *timer_main(void *arg)
{
	struct store *s = arg;
	struct retain_timer *t = s->retain_timer;
	unsigned period = s->opts.retain_period_s ? s->opts.retain_period_s
						  : PERIOD_DEFAULT_S;
	struct timespec at;

	clock_gettime(CLOCK_MONOTONIC, &at);
	at.tv_sec += period < FIRST_DELAY_S ? period : FIRST_DELAY_S;
	pthread_mutex_lock(&t->mu);
	while (!t->stop) {
		struct store_retain_report rep;
		const char *why;
		int rc;

		if (pthread_cond_timedwait(&t->cv, &t->mu, &at) != ETIMEDOUT)
			continue;
		pthread_mutex_unlock(&t->mu);
		rc = store_retain_prune(s, &rep);
		why = rc ? rerr_take(rc) : NULL;
		/* logged: the timer thread has no caller to report to */
		if (rc)
			rlog_err("%s", why ? why : strerror(-rc));
		pthread_mutex_lock(&t->mu);
		clock_gettime(CLOCK_MONOTONIC, &at);
		at.tv_sec += period;
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

int store_retain_timer_start(struct store *s)
{
	struct retain_timer *t;
	int rc;

	if (s->retain_timer)
		return 0;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->mu, NULL);
	util_cond_init_mono(&t->cv);
	s->retain_timer = t;
	rc = -pthread_create(&t->thread, NULL, timer_main, s);
	if (rc) {
		/* logged: store_serve_start goes on without the timer */
		rlog_err("%s: cannot start the periodic prune: %s", s->path,
			 strerror(-rc));
		s->retain_timer = NULL;
		pthread_cond_destroy(&t->cv);
		pthread_mutex_destroy(&t->mu);
		free(t);
	}
	return rc;
}

void store_retain_timer_stop(struct store *s)
{
	struct retain_timer *t = s->retain_timer;

	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	t->stop = true;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
	pthread_join(t->thread, NULL);
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
	free(t);
	s->retain_timer = NULL;
}
