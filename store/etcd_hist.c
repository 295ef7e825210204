/*
 * etcd_hist.c - who writes the history of a store on etcd, and how a
 * writer takes over (etcd_hist.h; the design is in recfs(5), A STORE ON
 * ETCD).
 *
 * Election: every mount with a history directory runs one thread. It
 * holds a lease of EHIST_TTL_S seconds (kept alive every second) and
 * tries a txn "create_revision(P/hist/leader) == 0 -> put P/hist/leader
 * = HOST-PID on the lease"; the mount whose txn succeeds writes the
 * history until its lease ends (a crash, kill -9, a mount cut off from
 * etcd for longer than the TTL) or it unmounts (revoke: at once).
 *
 * The done marker: after each batch, the leader puts P/hist/done = the
 * last revision the history remote has (pushed_upto; without a remote,
 * what the local git has), with the compare value(P/hist/leader) == me,
 * so a deposed writer cannot move it; a failed compare ends its term.
 * P/hist/done is thus never ahead of git: a crash between git and the
 * marker leaves git ahead, and the next writer starts from the Recfs-Upto
 * of main's head (which it fetched), strictly after what git has.
 */
#include "etcd_hist.h"
#include "history_remote.h"
#include "err.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOOP_MS 300

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* P/hist/NAME, malloc'ed. */
static char *hkey(const struct ehist *eh, const char *name, size_t *len)
{
	char *k = NULL;
	int n = asprintf(&k, "%s/hist/%s", eh->prefix, name);

	*len = n < 0 ? 0 : (size_t)n;
	return n < 0 ? NULL : k;
}

/* ---- fetching the remote (a takeover) ----------------------------------- */

/* Make refs/heads/NAME the remote's, unless ours already descends from
   it (commits of ours the remote has not been given yet). */
static int adopt_ref(git_repository *repo, const char *name)
{
	char tmp[128], ref[128];
	git_oid theirs, ours;
	git_reference *r = NULL;
	int rc;

	snprintf(tmp, sizeof(tmp), "refs/recfs-fetch/%s", name);
	snprintf(ref, sizeof(ref), "refs/heads/%s", name);
	if (git_reference_name_to_id(&theirs, repo, tmp) != 0)
		return 0; /* the remote has none */
	rc = git_reference_name_to_id(&ours, repo, ref);
	if (rc == 0 && (git_oid_equal(&ours, &theirs) ||
			git_graph_descendant_of(repo, &ours, &theirs) == 1))
		rc = 0;
	else
		rc = git_reference_create(&r, repo, ref, &theirs, 1,
					  "recfs: history takeover");
	git_reference_free(r);
	if (git_reference_lookup(&r, repo, tmp) == 0) {
		git_reference_delete(r);
		git_reference_free(r);
	}
	return rc < 0 ? hist_git_error(rc, "taking the remote's history", NULL)
		      : 0;
}

static int fetch_remote(struct ehist *eh)
{
	char s1[] = "+refs/heads/main:refs/recfs-fetch/main";
	char s2[] = "+refs/heads/recfs-versions:refs/recfs-fetch/"
		    "recfs-versions";
	char *specs[] = {s1, s2};
	git_strarray rs = {specs, 2};
	git_repository *repo = NULL;
	git_remote *rm = NULL;
	git_remote_create_options ro;
	char *path = NULL;
	int rc;

	if (asprintf(&path, "%s/%s", eh->dir, HIST_DIR) < 0)
		return -ENOMEM;
	git_libgit2_init();
	/* no url.*.insteadOf: libgit2 1.5 leaks its PCRE2 match data there
	   (see history_remote.c's remote_new) */
	git_remote_create_options_init(&ro, GIT_REMOTE_CREATE_OPTIONS_VERSION);
	ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF |
		   GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
	rc = git_repository_open_bare(&repo, path);
	ro.repository = repo;
	if (rc == 0)
		rc = git_remote_create_with_opts(&rm, eh->url, &ro);
	if (rc == 0)
		rc = git_remote_fetch(rm, &rs, NULL, "recfs: history takeover");
	if (rc < 0)
		rc = hist_git_error(rc, "fetching the history remote", NULL);
	if (rc == 0)
		rc = adopt_ref(repo, "main");
	if (rc == 0)
		rc = adopt_ref(repo, "recfs-versions");
	git_remote_free(rm);
	git_repository_free(repo);
	git_libgit2_shutdown();
	free(path);
	if (rc)
		rerr_prefix(rc, "%s: history remote %s", eh->dir, eh->url);
	return rc;
}

/* ---- terms ------------------------------------------------------------- */

static int open_term_hist(struct ehist *eh, struct hist **out)
{
	struct store *s = eh->s;
	struct hist_opts o = {
		.io = s->io,
		.store_path = eh->dir,
		.store_dirfd = eh->dirfd,
		.jnl_dirfd = eh->jnlfd,
		.src = ehist_source(eh),
		.batch_max = s->opts.history_batch_max,
		.delay_ms = s->opts.history_delay_ms,
		.lag_max = s->opts.history_lag_max,
		.arg = s,
	};
	int rc = eh->url ? fetch_remote(eh) : 0;

	if (rc == 0)
		rc = hist_open(out, &o);
	if (rc == 0 && eh->url && (rc = hist_remote_set(*out, eh->url)) != 0) {
		hist_close(*out);
		*out = NULL;
	}
	return rc;
}

/* The watch that tells the writer of new revisions (P/ from `from`). */
static int notify_open(struct ehist *eh, uint64_t from)
{
	char key[1024], end[1024];
	size_t kl = (size_t)snprintf(key, sizeof(key), "%s/", eh->prefix);
	struct etcd_watch_req req = {.key = key,
				     .key_len = kl,
				     .range_end = end,
				     .start_revision = (int64_t)from};

	req.range_end_len = etcd_prefix_end(end, key, kl);
	return etcd_watch_open(eh->e, &req, &eh->w);
}

/* Read P/hist/done into *done (0 if none). */
static int done_read(struct ehist *eh, uint64_t *done)
{
	struct etcd_kv kv = {0};
	size_t kl;
	char *k = hkey(eh, "done", &kl);
	int rc = k ? etcd_get(eh->e, k, kl, &kv, NULL) : -ENOMEM;

	free(k);
	*done = 0;
	if (rc == -ENOENT)
		return 0;
	if (rc == 0)
		*done = strtoull(kv.value, NULL, 10);
	etcd_kv_free(&kv);
	return rc;
}

static void term_begin(struct ehist *eh)
{
	struct store *s = eh->s;
	struct hist *h = NULL, *old = s->hist;
	uint64_t marker = 0;
	int rc = done_read(eh, &marker);

	if (rc == 0)
		rc = open_term_hist(eh, &h);
	if (rc == 0)
		rc = notify_open(eh, hist_done(h) + 1);
	if (rc) { /* logged: the thread resigns and tries again later */
		rlog_err("%s: elected to write the history, but cannot: %s",
			 s->path, rerr_what(rc));
		hist_close(h);
		return;
	}
	if (marker > hist_done(h)) /* logged: a note, it goes on */
		rlog_warn("%s: %s/%s has the history up to revision %" PRIu64
			  " only, P/hist/done says %" PRIu64 ": another "
			  "mount wrote it%s",
			  s->path, eh->dir, HIST_DIR, hist_done(h), marker,
			  eh->url ? " and did not push it"
				  : " (set -o history_remote to share it)");
	pthread_mutex_lock(&eh->mu);
	if (old && eh->nretired < EHIST_RETIRED_MAX)
		eh->retired[eh->nretired++] = old;
	eh->done_put = marker;
	eh->leader = true;
	snprintf(eh->writer, sizeof(eh->writer), "%s", eh->me);
	pthread_mutex_unlock(&eh->mu);
	__atomic_store_n(&s->hist, h, __ATOMIC_RELEASE);
	(void)hist_start(h);
	rlog_info("%s: this mount writes the history now, from revision "
		  "%" PRIu64 " on (%s/%s)",
		  s->path, hist_done(h) + 1, eh->dir, HIST_DIR);
}

static void term_end(struct ehist *eh, const char *why)
{
	struct hist *h = eh->s->hist;

	pthread_mutex_lock(&eh->mu);
	eh->leader = false;
	eh->writer[0] = '\0';
	pthread_mutex_unlock(&eh->mu);
	if (eh->w)
		etcd_watch_close(eh->w);
	eh->w = NULL;
	if (h)
		hist_stop(h); /* after its batch: git stays whole */
	/* logged: the thread tries to be elected again */
	rlog_warn("%s: this mount no longer writes the history: %s",
		  eh->s->path, why);
}

/* Put P/hist/done = what git (the remote) has, if it moved. */
static void mark_done(struct ehist *eh)
{
	struct hist *h = eh->s->hist;
	struct hist_remote_status rs;
	uint64_t upto;
	size_t ll, dl;
	char *lk = hkey(eh, "leader", &ll), *dk = hkey(eh, "done", &dl);
	char val[32];
	int rc;

	if (!h || !lk || !dk)
		goto out;
	upto = hist_done(h);
	if (eh->url) {
		hist_remote_status(h, &rs);
		upto = rs.pushed_upto;
	}
	if (upto <= eh->done_put)
		goto out;
	snprintf(val, sizeof(val), "%" PRIu64, upto);
	struct etcd_cmp c = {.key = lk,
			     .key_len = ll,
			     .target = ETCD_VALUE,
			     .result = ETCD_EQUAL,
			     .value = eh->me,
			     .value_len = strlen(eh->me)};
	struct etcd_op op = {.type = ETCD_OP_PUT,
			     .key = dk,
			     .key_len = dl,
			     .value = val,
			     .value_len = strlen(val)};
	struct etcd_txn t = {
		.cmp = &c, .n_cmp = 1, .success = &op, .n_success = 1};

	rc = etcd_txn(eh->e, &t, NULL);
	if (rc == 0)
		eh->done_put = upto;
	else if (rc == -ECANCELED)
		term_end(eh, "P/hist/leader is not this mount's (its "
				 "lease expired, or another mount's)");
out:
	free(lk);
	free(dk);
}

/* ---- the election ------------------------------------------------------ */

/* Try to become the leader: 1 if this mount is it now, 0, or -errno. */
static int elect(struct ehist *eh)
{
	struct etcd_txn_result res = {0};
	size_t kl;
	char *k = hkey(eh, "leader", &kl);
	int rc = k ? 0 : -ENOMEM;

	if (rc == 0 && !eh->lease)
		rc = etcd_lease_grant(eh->e, EHIST_TTL_S, &eh->lease, NULL);
	if (rc == 0) {
		struct etcd_cmp c = {.key = k,
				     .key_len = kl,
				     .target = ETCD_CREATE,
				     .result = ETCD_EQUAL,
				     .n = 0};
		struct etcd_op put = {.type = ETCD_OP_PUT,
				      .key = k,
				      .key_len = kl,
				      .value = eh->me,
				      .value_len = strlen(eh->me),
				      .lease = eh->lease};
		struct etcd_op get = {
			.type = ETCD_OP_RANGE, .key = k, .key_len = kl};
		struct etcd_txn t = {&c, 1, &put, 1, &get, 1};

		rc = etcd_txn(eh->e, &t, &res);
	}
	if (rc == -ENOENT || (rc && eh->lease))
		eh->lease = rc == -ENOENT ? 0 : eh->lease; /* expired */
	if (rc == 0 && !res.succeeded) {
		const struct etcd_range_result *r =
			res.n_ops ? &res.ops[0].range : NULL;

		pthread_mutex_lock(&eh->mu);
		snprintf(eh->writer, sizeof(eh->writer), "%.*s",
			 r && r->n ? (int)r->kvs[0].value_len : 0,
			 r && r->n ? r->kvs[0].value : "");
		pthread_mutex_unlock(&eh->mu);
	}
	if (rc == 0)
		rc = res.succeeded ? 1 : 0;
	/* still ours, on our lease (a term ended while etcd was out of
	   reach, and the lease outlived it): this mount leads again */
	if (rc == 0 && res.n_ops && res.ops[0].range.n &&
	    res.ops[0].range.kvs[0].lease == eh->lease &&
	    res.ops[0].range.kvs[0].value_len == strlen(eh->me) &&
	    !memcmp(res.ops[0].range.kvs[0].value, eh->me, strlen(eh->me)))
		rc = 1;
	etcd_txn_result_free(&res);
	free(k);
	return rc;
}

/* The leader's wait: events of P/e, P/v, P/n wake the writer. */
static void leader_wait(struct ehist *eh)
{
	struct etcd_events evs = {0};
	uint64_t top = 0;
	char pre[3][1024];
	int rc;

	for (int i = 0; i < 3; i++)
		snprintf(pre[i], sizeof(pre[i]), "%s/%c/", eh->prefix,
			 "evn"[i]);
	rc = etcd_watch_next(eh->w, LOOP_MS, &evs);
	for (size_t i = 0; rc == 0 && i < evs.n; i++)
		for (int j = 0; j < 3; j++)
			if (!strncmp(evs.ev[i].kv.key, pre[j], strlen(pre[j])))
				top = (uint64_t)evs.ev[i].kv.mod_revision;
	etcd_events_free(&evs);
	if (top)
		hist_notify(eh->s->hist, top);
	if (rc && rc != -ETIMEDOUT) {
		etcd_watch_close(eh->w);
		eh->w = NULL;
		if (notify_open(eh, hist_done(eh->s->hist) + 1) != 0)
			usleep(LOOP_MS * 1000);
	}
}

static bool stopping(struct ehist *eh, int64_t wait_ms)
{
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)(wait_ms % 1000) * 1000000;
	ts.tv_sec += (time_t)(wait_ms / 1000) + ts.tv_nsec / 1000000000;
	ts.tv_nsec %= 1000000000;
	pthread_mutex_lock(&eh->mu);
	if (!eh->stop && wait_ms)
		pthread_cond_timedwait(&eh->cv, &eh->mu, &ts);
	stop = eh->stop;
	pthread_mutex_unlock(&eh->mu);
	return stop;
}

static void *run(void *arg)
{
	struct ehist *eh = arg;
	int64_t next_ka = 0, renewed = 0;
	int rc;

	while (!stopping(eh, 0)) {
		if (eh->lease && now_ms() >= next_ka) {
			rc = etcd_lease_keepalive(eh->e, eh->lease, NULL);
			if (rc == 0)
				renewed = now_ms();
			if (rc == -ENOENT)
				eh->lease = 0;
			if (rc == -ENOENT && eh->leader)
				term_end(eh, "its lease expired");
			/* cut off from etcd for a whole TTL: another mount
			   may be elected by now */
			else if (eh->leader &&
				 now_ms() - renewed > EHIST_TTL_S * 1000)
				term_end(eh, "its lease cannot be renewed");
			next_ka = now_ms() + 1000;
		}
		if (!eh->leader && elect(eh) == 1) {
			term_begin(eh);
			next_ka = now_ms() + 1000;
			renewed = now_ms();
		}
		if (eh->leader && eh->w) {
			leader_wait(eh);
			mark_done(eh);
		} else if (stopping(eh, LOOP_MS)) {
			break;
		}
	}
	return NULL;
}

/* ---- the API ------------------------------------------------------------- */

static int open_dirs(struct ehist *eh)
{
	int rc;

	if (mkdir(eh->dir, 0700) < 0 && errno != EEXIST)
		return rerr_set(-errno, "%s: cannot create: %s", eh->dir,
				strerror(errno));
	eh->dirfd = open(eh->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (eh->dirfd < 0)
		return rerr_set(-errno, "%s: %s", eh->dir, strerror(errno));
	if (mkdirat(eh->dirfd, STORE_JOURNAL_DIR, 0700) < 0 && errno != EEXIST)
		return rerr_set(-errno, "%s/%s: %s", eh->dir, STORE_JOURNAL_DIR,
				strerror(errno));
	eh->jnlfd = openat(eh->dirfd, STORE_JOURNAL_DIR,
			   O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (eh->jnlfd < 0)
		return rerr_set(-errno, "%s/%s: %s", eh->dir, STORE_JOURNAL_DIR,
				strerror(errno));
	rc = hist_init_repo(eh->dir, eh->dirfd);
	return rc == -EEXIST ? 0 : rc;
}

static int open_client(struct ehist *eh, const char *uri)
{
	struct etcd_uri u = {0};
	int rc = etcd_uri_parse(uri, &u);

	if (rc == 0)
		rc = etcd_open((const char *const *)u.endpoints, u.n_endpoints,
			       NULL, &eh->e);
	if (rc == 0 && !(eh->prefix = strdup(u.prefix)))
		rc = -ENOMEM;
	if (rc == 0)
		eh->plen = strlen(eh->prefix);
	etcd_uri_free(&u);
	return rc;
}

int ehist_open(struct store *s, const char *dir, struct ehist **out)
{
	struct ehist *eh = calloc(1, sizeof(*eh));
	const char *url = s->opts.history_remote;
	int rc;

	*out = NULL;
	if (!eh)
		return -ENOMEM;
	eh->s = s;
	eh->dirfd = eh->jnlfd = -1;
	pthread_mutex_init(&eh->mu, NULL);
	pthread_cond_init(&eh->cv, NULL);
	eh->dir = strdup(dir);
	eh->url = url && url[0] ? strdup(url) : NULL;
	rc = eh->dir && (!url || !url[0] || eh->url) ? 0 : -ENOMEM;
	if (rc == 0)
		rc = open_dirs(eh);
	if (rc == 0)
		rc = open_client(eh, s->path);
	if (rc) {
		rerr_prefix(rc, "history directory %s", dir);
		ehist_free(eh);
		return rc;
	}
	*out = eh;
	return 0;
}

int ehist_start(struct ehist *eh)
{
	int rc;
	char host[64] = "?";

	if (!eh || eh->started)
		return 0;
	gethostname(host, sizeof(host) - 1);
	/* after the daemon forked: its pid */
	snprintf(eh->me, sizeof(eh->me), "%s-%d", host, (int)getpid());
	rc = -pthread_create(&eh->thread, NULL, run, eh);
	eh->started = rc == 0;
	if (rc) /* logged: no history is written by this mount */
		rlog_err("%s: cannot start the history election: %s",
			 eh->s->path, strerror(-rc));
	return rc;
}

/* Renew the lease once (ehist_stop: the thread that does it is gone). */
static void keep_lease(struct ehist *eh)
{
	if (eh->lease)
		(void)etcd_lease_keepalive(eh->e, eh->lease, NULL);
}
void ehist_stop(struct ehist *eh)
{
	struct hist *h;

	if (!eh || !eh->started)
		return;
	pthread_mutex_lock(&eh->mu);
	eh->stop = true;
	pthread_cond_broadcast(&eh->cv);
	pthread_mutex_unlock(&eh->mu);
	pthread_join(eh->thread, NULL);
	eh->started = false;
	h = eh->s->hist;
	if (eh->leader && h) {
		/* the thread that kept the lease alive is gone: renew it
		   around each step, or a drain and push longer than its TTL
		   lose it (and P/hist/done stays behind at every unmount) */
		keep_lease(eh);
		(void)hist_drain(h, store_revision(eh->s), 10000);
		keep_lease(eh);
		if (eh->url)
			(void)hist_remote_push(h, NULL, NULL);
		keep_lease(eh);
		mark_done(eh);
		term_end(eh, "unmounted");
	}
	if (eh->lease)
		(void)etcd_lease_revoke(eh->e, eh->lease);
	eh->lease = 0;
}

void ehist_free(struct ehist *eh)
{
	if (!eh)
		return;
	ehist_stop(eh);
	if (eh->w)
		etcd_watch_close(eh->w);
	for (size_t i = 0; i < eh->nretired; i++)
		hist_close(eh->retired[i]);
	etcd_close(eh->e);
	if (eh->dirfd >= 0)
		close(eh->dirfd);
	if (eh->jnlfd >= 0)
		close(eh->jnlfd);
	pthread_cond_destroy(&eh->cv);
	pthread_mutex_destroy(&eh->mu);
	free(eh->prefix);
	free(eh->dir);
	free(eh->url);
	free(eh);
}

void ehist_writer(struct ehist *eh, char *out, size_t n, bool *me)
{
	pthread_mutex_lock(&eh->mu);
	snprintf(out, n, "%s", eh->writer);
	*me = eh->leader;
	pthread_mutex_unlock(&eh->mu);
}
