/*
 * history_remote.c - pushing the history to a git remote: the URL in
 * history.git's config, the pusher thread with its backoff, and one push
 * (see history_remote.h).
 */
#include "history_remote.h"
#include "hist_i.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define BACKOFF_MIN_NS (1000000000LL)
#define BACKOFF_MAX_NS (60 * 1000000000LL)
#define PUSH_GAP_NS (1000000000LL) /* between background pushes */
#define REF_MAIN "refs/heads/main"
#define URL_KEY "remote." HIST_REMOTE_NAME ".url"

struct hremote {
	pthread_mutex_t push_mu; /* one push at a time */
	pthread_mutex_t mu;	 /* protects the fields below */
	pthread_cond_t wake;
	char *url; /* NULL: none */
	struct hist_remote_status st;
	char logged[HIST_REMOTE_MSG_MAX]; /* the failure last logged */
	bool kicked, stop, started;
	int64_t backoff, next_try; /* CLOCK_MONOTONIC ns */
	pthread_t thread;
	/* under push_mu: refs/heads/main's commit last looked at by
	   push_epoch, and the history epoch it is in (0: none yet) */
	git_oid seen;
	unsigned epoch;
};

static struct hremote *remote_get(struct hist *h)
{
	struct hremote *r;

	pthread_mutex_lock(&h->mu);
	r = h->remote;
	if (!r && (r = calloc(1, sizeof(*r))) != NULL) {
		pthread_mutex_init(&r->push_mu, NULL);
		pthread_mutex_init(&r->mu, NULL);
		util_cond_init_mono(&r->wake);
		h->remote = r;
	}
	pthread_mutex_unlock(&h->mu);
	return r;
}

/* ---- the URL ------------------------------------------------------------ */

static int config_open(struct hist *h, git_repository **repo, git_config **cfg)
{
	int rc = git_repository_open_bare(repo, h->path);

	if (rc == 0)
		rc = git_repository_config(cfg, *repo);
	return rc;
}

/* Store `url` ("" removes it) in history.git's config. */
static int config_write(struct hist *h, const char *url)
{
	git_repository *repo = NULL;
	git_config *cfg = NULL;
	int rc = config_open(h, &repo, &cfg);

	if (rc == 0 && url[0])
		rc = git_config_set_string(cfg, URL_KEY, url);
	else if (rc == 0) {
		rc = git_config_delete_entry(cfg, URL_KEY);
		if (rc == GIT_ENOTFOUND)
			rc = 0;
	}
	git_config_free(cfg);
	git_repository_free(repo);
	return rc < 0 ? hist_git_error(rc, "setting " URL_KEY, NULL) : 0;
}

/* The URL in history.git's config into *url (NULL: none). */
static int config_read(struct hist *h, char **url)
{
	git_repository *repo = NULL;
	git_config *cfg = NULL;
	git_buf buf = GIT_BUF_INIT;
	int rc = config_open(h, &repo, &cfg);

	*url = NULL;
	if (rc == 0)
		rc = git_config_get_string_buf(&buf, cfg, URL_KEY);
	if (rc == 0 && buf.size && !(*url = strdup(buf.ptr)))
		rc = -ENOMEM;
	if (rc == GIT_ENOTFOUND)
		rc = 0;
	git_buf_dispose(&buf);
	git_config_free(cfg);
	git_repository_free(repo);
	if (rc == -ENOMEM)
		return rc;
	return rc < 0 ? hist_git_error(rc, "reading " URL_KEY, NULL) : 0;
}

int hist_remote_set(struct hist *h, const char *url)
{
	struct hremote *r = remote_get(h);
	char *now = NULL;
	int rc = 0;

	if (!r)
		return -ENOMEM;
	if (url && strlen(url) >= HIST_REMOTE_URL_MAX)
		return rerr_set(-ENAMETOOLONG,
				"history remote %.64s...: too long", url);
	if (url && !h->o.read_only)
		rc = config_write(h, url);
	if (rc == 0 && url && url[0] && !(now = strdup(url)))
		rc = -ENOMEM;
	if (rc == 0 && !url)
		rc = config_read(h, &now);
	if (rc)
		return rc;
	pthread_mutex_lock(&r->mu);
	free(r->url);
	r->url = now;
	r->st.set = now != NULL;
	snprintf(r->st.url, sizeof(r->st.url), "%s", now ? now : "");
	pthread_mutex_unlock(&r->mu);
	if (now && url) /* logged: a note on what the mount does */
		rlog_info("%s: history remote %s", h->path, now);
	return 0;
}

bool hist_remote_is_set(struct hist *h)
{
	struct hremote *r = remote_get(h);
	bool set;

	if (!r)
		return false;
	pthread_mutex_lock(&r->mu);
	set = r->url != NULL;
	pthread_mutex_unlock(&r->mu);
	return set;
}

/* ---- one push ------------------------------------------------------------ */

struct push_ctx {
	char refused[HIST_REMOTE_MSG_MAX]; /* a ref the remote refused */
	bool agent_tried;		   /* ssh: the agent's keys, once */
};

/* ssh: the keys of the user's ssh-agent (there is no one to ask for a
   password); anything else has no credentials. Asked once, so that a
   refused key ends the push. */
static int on_cred(git_credential **out, const char *url, const char *user,
		   unsigned int allowed, void *arg)
{
	struct push_ctx *p = arg;

	(void)url;
	if (!(allowed & GIT_CREDENTIAL_SSH_KEY) || p->agent_tried)
		return GIT_PASSTHROUGH;
	p->agent_tried = true;
	return git_credential_ssh_key_from_agent(out, user ? user : "git");
}

static int on_ref(const char *ref, const char *status, void *arg)
{
	struct push_ctx *p = arg;

	if (status && !p->refused[0])
		snprintf(p->refused, sizeof(p->refused), "%s refused: %s", ref,
			 status);
	return 0;
}

/* Is `url` a local path (no "scheme:", or file://) that does not
   exist? libgit2 would say "unsupported URL protocol". */
static bool local_missing(const char *url)
{
	struct stat st;

	if (strncmp(url, "file://", 7) == 0)
		url += 7;
	else if (strchr(url, ':'))
		return false;
	return stat(url, &st) < 0 && errno == ENOENT;
}

/*
 * An anonymous remote for `url`, without url.*.insteadOf rewriting:
 * libgit2 1.5 looks those up with a regular expression whose match data
 * it does not free when a config entry does not match (libgit2's
 * regexp.c with PCRE2), some 20 KiB per entry and push, found by
 * LeakSanitizer in the daemon. The URL is used as given.
 */
static int remote_new(git_remote **out, git_repository *repo, const char *url)
{
	git_remote_create_options o;

	git_remote_create_options_init(&o, GIT_REMOTE_CREATE_OPTIONS_VERSION);
	o.repository = repo;
	o.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF |
		  GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
	return git_remote_create_with_opts(out, url, &o);
}

/*
 * The history epoch that commit `head` of refs/heads/main is in: 1 before
 * any prune, N after the commit "recfs: retention prune, history epoch N"
 * (history_prune.c). Walks the first parents back from `head` until such
 * a commit, or the commit that the last call looked at (r->seen), so that
 * a push walks only what is new. 0 and the cause in msg if the history
 * cannot be read.
 */
static unsigned push_epoch(git_repository *repo, struct hremote *r,
			   const git_oid *head, char *msg, size_t len)
{
	const size_t n = strlen(HIST_EPOCH_SUMMARY);
	git_revwalk *w = NULL;
	unsigned epoch = 1;
	git_oid oid;
	int rc = git_revwalk_new(&w, repo);

	if (rc == 0)
		rc = git_revwalk_push(w, head);
	if (rc == 0)
		git_revwalk_simplify_first_parent(w);
	while (rc == 0 && (rc = git_revwalk_next(&oid, w)) == 0) {
		git_commit *c = NULL;
		const char *m;

		if (r->epoch && git_oid_equal(&oid, &r->seen)) {
			epoch = r->epoch;
			break;
		}
		rc = git_commit_lookup(&c, repo, &oid);
		m = rc == 0 ? git_commit_message_raw(c) : "";
		if (rc == 0 && strncmp(m, HIST_EPOCH_SUMMARY, n) == 0)
			epoch = (unsigned)strtoul(m + n, NULL, 10);
		git_commit_free(c);
		if (epoch != 1)
			break;
	}
	git_revwalk_free(w);
	if ((rc && rc != GIT_ITEROVER) || epoch < 1) {
		const git_error *e = git_error_last();

		snprintf(msg, len, "reading the history: %s",
			 e && e->message ? e->message : "a bad epoch commit");
		return 0;
	}
	r->seen = *head;
	r->epoch = epoch;
	return epoch;
}

/*
 * The remote's branches for epoch `epoch` into main[] and side[]: main and
 * recfs-versions for the first, main-epoch-N and recfs-versions-epoch-N
 * for epoch N after that. A prune's new epoch is no fast-forward of the
 * old one, and the remote keeps the old one whole (nothing is pruned
 * before the remote has it): each epoch goes to branches of its own, each
 * pushed fast-forward only.
 */
static void push_branches(unsigned epoch, char *main, char *side, size_t len)
{
	if (epoch <= 1) {
		snprintf(main, len, "%s:%s", REF_MAIN, REF_MAIN);
		snprintf(side, len, "%s:%s", HIST_REF_SIDE, HIST_REF_SIDE);
		return;
	}
	snprintf(main, len, "%s:%s-epoch-%u", REF_MAIN, REF_MAIN, epoch);
	snprintf(side, len, "%s:%s-epoch-%u", HIST_REF_SIDE, HIST_REF_SIDE,
		 epoch);
}

/* Push main (and the side branch) of `repo` to `url`, to the branches of
   the epoch main is in. *head: main's commit as it was before. Returns
   0, 1 if there is nothing to push yet, or -errno, the cause in msg. */
static int push_refs(git_repository *repo, struct hremote *r, const char *url,
		     git_oid *head, char *msg, size_t len)
{
	char main_spec[128], side_spec[128];
	char *specs[] = {main_spec, side_spec};
	git_strarray refs = {specs, 1};
	git_push_options po;
	struct push_ctx p = {0};
	git_remote *remote = NULL;
	git_oid side;
	int rc;

	rc = git_reference_name_to_id(head, repo, REF_MAIN);
	if (rc == GIT_ENOTFOUND)
		return 1; /* no history yet: nothing to push */
	if (rc == 0) {
		unsigned epoch = push_epoch(repo, r, head, msg, len);

		if (!epoch)
			return -EIO;
		push_branches(epoch, main_spec, side_spec, sizeof(main_spec));
	}
	if (rc == 0 && local_missing(url)) {
		snprintf(msg, len, "no such directory (a local path)");
		return -ENOENT;
	}
	if (rc == 0 &&
	    git_reference_name_to_id(&side, repo, HIST_REF_SIDE) == 0)
		refs.count = 2;
	if (rc == 0)
		rc = remote_new(&remote, repo, url);
	git_push_options_init(&po, GIT_PUSH_OPTIONS_VERSION);
	po.callbacks.push_update_reference = on_ref;
	po.callbacks.credentials = on_cred;
	po.callbacks.payload = &p;
	if (rc == 0)
		rc = git_remote_push(remote, &refs, &po);
	git_remote_free(remote);
	if (rc == GIT_ENONFASTFORWARD) {
		snprintf(msg, len,
			 "not a fast-forward: the remote has commits this "
			 "history lacks (pushed there by something else)");
		return -ESTALE;
	}
	if (rc < 0) {
		const git_error *e = git_error_last();

		snprintf(msg, len, "%s",
			 e && e->message ? e->message : "failed");
		return -EIO;
	}
	if (p.refused[0]) {
		snprintf(msg, len, "%s", p.refused);
		return -ESTALE;
	}
	return 0;
}

/* Record the outcome of a push; log a failure once (until it changes)
   and the recovery from one. */
static void push_note(struct hist *h, struct hremote *r, const char *url,
		      int rc, const git_oid *head, uint64_t upto,
		      const char *msg)
{
	bool log_err = false, log_ok = false;
	char hex[GIT_OID_HEXSZ + 1] = "";

	pthread_mutex_lock(&r->mu);
	r->st.pushes++;
	if (rc == 0) {
		git_oid_tostr(hex, sizeof(hex), head);
		memcpy(r->st.pushed, hex, sizeof(hex));
		r->st.pushed_upto = upto;
		r->st.pushed_time = (int64_t)time(NULL);
		log_ok = r->st.error != 0;
		r->st.error = 0;
		r->st.pending = false;
		r->st.message[0] = r->logged[0] = '\0';
	} else {
		r->st.failures++;
		r->st.error = rc;
		r->st.error_time = (int64_t)time(NULL);
		snprintf(r->st.message, sizeof(r->st.message), "%s", msg);
		log_err = strcmp(r->logged, msg) != 0;
		if (log_err)
			snprintf(r->logged, sizeof(r->logged), "%s", msg);
	}
	pthread_mutex_unlock(&r->mu);
	if (log_err) /* logged: the push is retried, the status says so */
		rlog_err("%s: push to %s failed%s: %s", h->path, url,
			 rc == -ESTALE ? " (refused, not forced)" : "", msg);
	if (log_ok)
		rlog_info("%s: push to %s works again (%s)", h->path, url, hex);
}

/* The Recfs-Upto of commit `oid` (0 if it cannot be read). */
static uint64_t upto_of(git_repository *repo, const git_oid *oid)
{
	git_commit *c = NULL;
	uint64_t upto = 0;

	if (git_commit_lookup(&c, repo, oid) == 0)
		upto = hist_msg_upto(git_commit_message_raw(c));
	git_commit_free(c);
	return upto;
}

/* One push of `h` to `url` (r->push_mu held); *upto: the revision the
   remote has the history up to (0: nothing yet). */
static int push_once(struct hist *h, struct hremote *r, const char *url,
		     uint64_t *upto)
{
	git_repository *repo = NULL;
	char msg[HIST_REMOTE_MSG_MAX] = "";
	git_oid head;
	int rc;

	*upto = 0;
	/* a repository of its own, opened afresh: packs come and go */
	rc = git_repository_open_bare(&repo, h->path);
	if (rc < 0) {
		const git_error *e = git_error_last();

		snprintf(msg, sizeof(msg), "cannot open %s: %s", h->path,
			 e && e->message ? e->message : "failed");
		rc = -EIO;
	} else {
		rc = push_refs(repo, r, url, &head, msg, sizeof(msg));
		if (rc == 0)
			*upto = upto_of(repo, &head);
	}
	git_repository_free(repo);
	if (rc == 1)
		return 0; /* nothing to push: done */
	push_note(h, r, url, rc, &head, *upto, msg);
	if (rc)
		rerr_set(rc, "push of %s to %s: %s", h->path, url, msg);
	return rc;
}

int hist_remote_push(struct hist *h, const char *url, uint64_t *upto)
{
	uint64_t scratch;

	struct hremote *r = remote_get(h);
	char *u = NULL;
	int rc;

	if (!r)
		return -ENOMEM;
	pthread_mutex_lock(&r->mu);
	u = url ? strdup(url) : r->url ? strdup(r->url) : NULL;
	pthread_mutex_unlock(&r->mu);
	if (!u)
		return url ? -ENOMEM
			   : rerr_set(-ENOENT, "%s: no history remote is set",
				      h->path);
	pthread_mutex_lock(&r->push_mu);
	rc = push_once(h, r, u, upto ? upto : &scratch);
	pthread_mutex_unlock(&r->push_mu);
	free(u);
	return rc;
}

/* ---- the pusher thread --------------------------------------------------- */

static int wait_until(struct hremote *r, int64_t end)
{
	struct timespec ts = {.tv_sec = (time_t)(end / 1000000000),
			      .tv_nsec = (long)(end % 1000000000)};

	return pthread_cond_timedwait(&r->wake, &r->mu, &ts);
}

static void *pusher_main(void *arg)
{
	struct hist *h = arg;
	struct hremote *r = h->remote;
	uint64_t upto;

	pthread_mutex_lock(&r->mu);
	/* at stop, one last push of what the last batches wrote, unless the
	   remote is failing anyway */
	while (!r->stop || (r->kicked && !r->st.pending && r->url)) {
		bool due = r->kicked || r->st.pending;
		char *url;
		int rc;

		if (!r->stop && (!due || !r->url)) {
			pthread_cond_wait(&r->wake, &r->mu);
			continue;
		}
		if (!r->stop && hist_mono_ns() < r->next_try) {
			wait_until(r, r->next_try);
			continue;
		}
		r->kicked = false;
		url = strdup(r->url);
		pthread_mutex_unlock(&r->mu);
		pthread_mutex_lock(&r->push_mu);
		rc = url ? push_once(h, r, url, &upto) : -ENOMEM;
		pthread_mutex_unlock(&r->push_mu);
		free(url);
		pthread_mutex_lock(&r->mu);
		r->st.pending = rc != 0;
		if (rc == 0) {
			/* batches come every delay_ms under load: their
			   pushes are gathered, one a second at most */
			r->backoff = 0;
			r->next_try = hist_mono_ns() + PUSH_GAP_NS;
			continue;
		}
		r->backoff = r->backoff ? 2 * r->backoff : BACKOFF_MIN_NS;
		if (r->backoff > BACKOFF_MAX_NS)
			r->backoff = BACKOFF_MAX_NS;
		r->next_try = hist_mono_ns() + r->backoff;
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

void hist_remote_kick(struct hist *h)
{
	struct hremote *r = h->remote; /* h->mu held: the writer's */

	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	if (r->url && !r->stop) {
		r->kicked = true;
		if (!r->started)
			r->started = pthread_create(&r->thread, NULL,
						    pusher_main, h) == 0;
		if (!r->started) /* logged: no background push */
			rlog_err("%s: cannot start the history pusher",
				 h->path);
		pthread_cond_signal(&r->wake);
	}
	pthread_mutex_unlock(&r->mu);
}

void hist_remote_status(struct hist *h, struct hist_remote_status *st)
{
	struct hremote *r = remote_get(h);

	memset(st, 0, sizeof(*st));
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	*st = r->st;
	pthread_mutex_unlock(&r->mu);
}

void hist_remote_free(struct hist *h)
{
	struct hremote *r = h->remote;
	bool join_it;

	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	join_it = r->started;
	pthread_cond_broadcast(&r->wake);
	pthread_mutex_unlock(&r->mu);
	if (join_it)
		pthread_join(r->thread, NULL);
	free(r->url);
	pthread_cond_destroy(&r->wake);
	pthread_mutex_destroy(&r->mu);
	pthread_mutex_destroy(&r->push_mu);
	free(r);
	h->remote = NULL;
}
