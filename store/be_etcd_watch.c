/*
 * be_etcd_watch.c - following what the other mounts of a store on etcd
 * commit (backend_ops.follow; issue 16, cross-host coherence). One thread
 * watches the prefix P/ from the revision the index was loaded at, then
 * from the last event it applied, and hands each record's new state to
 * the core (struct be_follow), which tells the kernel (store.h,
 * store_set_change_hook).
 *
 * Events, per key (a txn's events share its revision R):
 *   P/e/DD/ID put     a record's new state (version, metadata), or a
 *                     namespace's;
 *   P/e/DD/ID delete  a namespace gone (a record's delete puts P/n/ID in
 *                     the same txn, which says its last version);
 *   P/n/ID put        the record deleted at version N;
 *   P/v/ID//N put     version N's content: kept in the cache, so that
 *                     reading it needs no request.
 * The map and the index only move forward: an event is applied only if R
 * is above both revisions the map has for the ID (mod_rev, tomb_rev).
 * This mount's own commits come as events too: their txn settled the map
 * at R before the record was let go (be_follow.lock waits for that), so
 * they are skipped, and the kernel is not told twice (bent.told). A
 * record this mount read again after ESTALE (another writer was first) is
 * ahead of the watch, but its kernel caches are not: the event is not
 * applied again, but told.
 *
 * A watch that breaks resumes by itself from the revision after the last
 * event (etcd.h); meanwhile the state is "reconnecting" and reads answer
 * with what the mount last saw (SPEC section 9). A watch etcd cancels (its
 * revision was compacted away) is followed by a resync: every key of P/e
 * and P/n read at one current revision and applied as events are (what
 * changed moves forward and is told; namespaces no longer there go), then
 * the watch starts again after that revision. While it runs the state is
 * "resync" and the core answers reads of records with EIO rather than
 * serve what may be stale as current (store_follow_check).
 */
#include "be_etcd_i.h"
#include "err.h"
#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_MS 250  /* one wait for events: how soon a stop is seen */
#define RETRY_MS 200 /* between tries to reach etcd again */

struct bwatch {
	struct be_etcd *b;
	struct be_follow f;
	pthread_t thread;
	atomic_bool stop;
	pthread_mutex_t mu; /* state, applied */
	enum be_follow_state state;
	int64_t applied; /* every event up to this revision is applied */
	uint32_t round;	 /* resyncs so far (bent.resync) */
};

static void set_state(struct bwatch *w, enum be_follow_state st)
{
	pthread_mutex_lock(&w->mu);
	if (w->state != st && st == BE_FOLLOW_OK && w->state != BE_FOLLOW_NONE)
		rlog_info("etcd prefix %s: watching again from revision %lld",
			  w->b->prefix, (long long)w->applied + 1);
	if (w->state != st && st == BE_FOLLOW_RECONNECT)
		rlog_warn("etcd prefix %s: the watch of other mounts' changes "
			  "broke; resuming from revision %lld (reads show what "
			  "this mount saw last)",
			  w->b->prefix, (long long)w->applied + 1);
	w->state = st;
	pthread_mutex_unlock(&w->mu);
}

static int64_t seen(const struct bent *n)
{
	return n->mod_rev > n->tomb_rev ? n->mod_rev : n->tomb_rev;
}

/* ---- applying one event ------------------------------------------------ */

/* A record's state `r` at revision `rev` (live, or deleted), if newer
   than what the map has: the map, the index (with the record held off
   from this mount's changes), then the kernel. */
static int rec_apply(struct bwatch *w, const struct rec *r, int64_t rev,
		     bool live)
{
	struct be_etcd *b = w->b;
	struct bent *n;
	bool fresh = false, tell = false;
	int rc = w->f.lock(w->f.arg, r->id, r->id_len);

	if (rc)
		return rc;
	pthread_mutex_lock(&b->mu);
	n = bmap_add(b, r->id, r->id_len);
	if (n) {
		fresh = rev > seen(n);
		tell = rev > n->told;
		n->told = tell ? rev : n->told;
		n->resync = w->round;
	}
	if (fresh) {
		n->ns = false;
		n->mod_rev = live ? rev : 0;
		n->tomb_rev = live ? 0 : rev;
		n->version = live ? r->meta.version : 0;
	}
	pthread_mutex_unlock(&b->mu);
	rc = !n ? -ENOMEM : fresh ? w->f.state(w->f.arg, r) : 0;
	w->f.unlock(w->f.arg, r->id, r->id_len);
	if (tell)
		w->f.changed(w->f.arg, r->id, r->id_len, false);
	return rc;
}

/* A namespace put (its metadata in `tmp`) or deleted at `rev`. */
static int ns_apply(struct bwatch *w, const char *id, size_t len, int64_t rev,
		    const struct bent *tmp)
{
	struct be_etcd *b = w->b;
	struct bent *n;
	bool fresh = false, tell = false;

	pthread_mutex_lock(&b->mu);
	n = tmp ? bmap_add(b, id, len) : bmap_find(b, id, len);
	if (n) {
		fresh = rev > seen(n) && (tmp || n->ns);
		tell = rev > n->told && (tmp || n->ns || fresh);
		n->told = tell ? rev : n->told;
		n->resync = w->round;
	}
	if (fresh) {
		n->ns = tmp != NULL;
		n->mod_rev = tmp ? rev : 0;
		n->tomb_rev = 0;
		n->version = 0;
		if (tmp) {
			n->mode = tmp->mode;
			n->uid = tmp->uid;
			n->gid = tmp->gid;
			n->mtime = tmp->mtime;
		}
	}
	pthread_mutex_unlock(&b->mu);
	if (tell)
		w->f.changed(w->f.arg, id, len, true);
	return tmp && !n ? -ENOMEM : 0;
}

static int entry_put(struct bwatch *w, const char *id, size_t len,
		     const struct etcd_kv *kv)
{
	struct rec r = {.type = REC_STATE, .id = id, .id_len = len};
	struct bent tmp = {0};
	uint8_t *xa = NULL;
	bool ns = false;
	int rc = bjson_parse(kv->value, kv->value_len, kv->mod_revision, &ns,
			     &r.meta, &xa, &r.xa_len, &tmp);

	if (rc) {
		rlog_warn("etcd key %s: not a recfs entry; ignored", kv->key);
		return 0;
	}
	if (ns)
		return ns_apply(w, id, len, kv->mod_revision, &tmp);
	r.xa = xa;
	rc = rec_apply(w, &r, kv->mod_revision, true);
	free(xa);
	return rc;
}

static int tomb_put(struct bwatch *w, const char *id, size_t len,
		    const struct etcd_kv *kv)
{
	struct rec r = {.type = REC_STATE, .id = id, .id_len = len};
	json_t *o = json_loadb(kv->value, kv->value_len, 0, NULL);
	json_int_t v = 0;

	if (json_unpack(o, "{s:I}", "v", &v) || v <= 0) {
		json_decref(o);
		rlog_warn("etcd key %s: not a recfs tombstone; ignored",
			  kv->key);
		return 0;
	}
	json_decref(o);
	r.meta.version = (uint64_t)v;
	r.meta.revision = (uint64_t)kv->mod_revision;
	r.meta.deleted = true;
	return rec_apply(w, &r, kv->mod_revision, false);
}

/* A tombstone deleted without its entry put (which clears it first). */
static void tomb_delete(struct bwatch *w, const char *id, size_t len,
			int64_t rev)
{
	struct bent *n;

	pthread_mutex_lock(&w->b->mu);
	n = bmap_find(w->b, id, len);
	if (n && rev > seen(n))
		n->tomb_rev = 0;
	pthread_mutex_unlock(&w->b->mu);
}

/* The 20 digits of P/v/ID//N at the end of k[n]: N, or 0. */
static uint64_t version_of(const char *k, size_t n)
{
	uint64_t v = 0;

	if (n < 23 || k[n - 21] != '/' || k[n - 22] != '/')
		return 0;
	for (size_t i = n - 20; i < n; i++) {
		if (k[i] < '0' || k[i] > '9')
			return 0;
		v = v * 10 + (uint64_t)(k[i] - '0');
	}
	return v;
}

/* One event of the watch (or one key of a resync: a put). */
static int apply_event(struct bwatch *w, const struct etcd_kv *kv, bool put)
{
	struct be_etcd *b = w->b;
	const char *k = kv->key + b->plen + 3;
	size_t n = kv->key_len - b->plen - 3;
	uint64_t v;

	if (kv->key_len <= b->plen + 3 || kv->key[b->plen] != '/' ||
	    kv->key[b->plen + 2] != '/')
		return 0; /* P/format, or not ours */
	switch (kv->key[b->plen + 1]) {
	case 'e': /* DD/ID */
		if (n <= 3 || k[2] != '/')
			return 0;
		if (put)
			return entry_put(w, k + 3, n - 3, kv);
		return ns_apply(w, k + 3, n - 3, kv->mod_revision, NULL);
	case 'n':
		if (put)
			return tomb_put(w, k, n, kv);
		tomb_delete(w, k, n, kv->mod_revision);
		return 0;
	case 'v':
		v = put ? version_of(k, n) : 0;
		if (v)
			bcache_put(b, k, n - 22, v, (uint64_t)kv->mod_revision,
				   kv->value, kv->value_len);
		return 0;
	default:
		return 0;
	}
}

static void apply_events(struct bwatch *w, const struct etcd_events *evs)
{
	int64_t last = 0;

	for (size_t i = 0; i < evs->n; i++) {
		const struct etcd_event *ev = &evs->ev[i];
		int rc = apply_event(w, &ev->kv, ev->type == ETCD_EVENT_PUT);

		if (rc)
			rlog_warn("etcd key %s at revision %lld: not applied: "
				  "%s",
				  ev->kv.key, (long long)ev->kv.mod_revision,
				  strerror(-rc));
		if (ev->kv.mod_revision > last)
			last = ev->kv.mod_revision;
	}
	if (!last)
		return;
	pthread_mutex_lock(&w->mu);
	if (last > w->applied)
		w->applied = last;
	pthread_mutex_unlock(&w->mu);
	w->f.advance(w->f.arg, (uint64_t)last);
}

/* ---- resync ---------------------------------------------------------------
 */

static int sync_key(void *arg, const struct etcd_kv *kv)
{
	return apply_event(arg, kv, true);
}

/* The namespaces the resync did not find are gone; a live record it did
   not find is taken as deleted (its prefix was wiped: versions stay). */
static int drop_unseen(struct bwatch *w, int64_t at)
{
	struct be_etcd *b = w->b;
	char **ids = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	pthread_mutex_lock(&b->mu);
	for (size_t i = 0; i < b->nslots && rc == 0; i++)
		for (struct bent *e = b->slots[i]; e && rc == 0; e = e->next) {
			if (!e->mod_rev || e->resync == w->round)
				continue;
			if (n == cap) {
				char **p = realloc(ids, (cap = cap * 2 + 16) *
								sizeof(*p));

				if (!p) {
					rc = -ENOMEM;
					break;
				}
				ids = p;
			}
			if (!(ids[n] = strdup(e->id)))
				rc = -ENOMEM;
			else
				n++;
		}
	pthread_mutex_unlock(&b->mu);
	for (size_t i = 0; i < n; i++) {
		struct rec r = {.type = REC_STATE, .id = ids[i]};
		struct bent *e;
		bool ns;

		r.id_len = strlen(ids[i]);
		pthread_mutex_lock(&b->mu);
		e = bmap_find(b, ids[i], r.id_len);
		ns = e && e->ns;
		r.meta.version = e ? e->version : 0;
		pthread_mutex_unlock(&b->mu);
		r.meta.revision = (uint64_t)at;
		r.meta.deleted = true;
		if (ns)
			(void)ns_apply(w, ids[i], r.id_len, at, NULL);
		else if (r.meta.version && rc == 0)
			rc = rec_apply(w, &r, at, false);
		free(ids[i]);
	}
	free(ids);
	return rc;
}

static int resync(struct bwatch *w)
{
	int64_t at = 0;
	int rc;

	set_state(w, BE_FOLLOW_RESYNC);
	w->round++;
	rc = bload_each(w->b, "/e/", &at, sync_key, w);
	if (rc == 0)
		rc = bload_each(w->b, "/n/", &at, sync_key, w);
	if (rc == 0)
		rc = drop_unseen(w, at);
	if (rc)
		return rc;
	pthread_mutex_lock(&w->mu);
	w->applied = at;
	pthread_mutex_unlock(&w->mu);
	w->f.advance(w->f.arg, (uint64_t)at);
	rlog_info("etcd prefix %s: read again at revision %lld", w->b->prefix,
		  (long long)at);
	return 0;
}

/* ---- the thread -----------------------------------------------------------
 */

static int open_watch(struct bwatch *w, struct etcd_watch **out)
{
	struct be_etcd *b = w->b;
	char *key = malloc(b->plen + 2), *end = malloc(b->plen + 2);
	struct etcd_watch_req q = {0};
	int rc = -ENOMEM;

	if (key && end) {
		memcpy(key, b->prefix, b->plen);
		key[b->plen] = '/';
		q.key = key;
		q.key_len = b->plen + 1;
		q.range_end = end;
		q.range_end_len = etcd_prefix_end(end, key, b->plen + 1);
		pthread_mutex_lock(&w->mu);
		q.start_revision = w->applied + 1;
		pthread_mutex_unlock(&w->mu);
		rc = etcd_watch_open(b->e, &q, out);
	}
	free(key);
	free(end);
	return rc;
}

static void pause_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

/* One step of the thread: wait for events and apply them, or deal with
   what broke. */
static void step(struct bwatch *w, struct etcd_watch **ew)
{
	struct etcd_events evs;
	int rc;

	if (!*ew) {
		rc = open_watch(w, ew);
		set_state(w, rc ? BE_FOLLOW_RECONNECT : BE_FOLLOW_OK);
		if (rc) {
			pause_ms(RETRY_MS);
			return;
		}
	}
	rc = etcd_watch_next(*ew, WAIT_MS, &evs);
	if (rc == 0 || rc == -ETIMEDOUT) {
		if (rc == 0)
			apply_events(w, &evs);
		etcd_events_free(&evs);
		set_state(w, BE_FOLLOW_OK);
		return;
	}
	if (rc == -ENOTCONN) {
		set_state(w, BE_FOLLOW_RECONNECT);
		return; /* it resumes by itself */
	}
	rlog_warn("etcd prefix %s: watch: %s%s", w->b->prefix, rerr_what(rc),
		  rc == -ECANCELED ? "; reading the store again" : "");
	etcd_watch_close(*ew);
	*ew = NULL;
	if (rc != -ECANCELED)
		return; /* open again from the last revision applied */
	while (!atomic_load(&w->stop) && (rc = resync(w)) != 0) {
		rlog_warn("etcd prefix %s: reading the store again: %s",
			  w->b->prefix, rerr_what(rc));
		pause_ms(RETRY_MS);
	}
}

static void *watch_main(void *arg)
{
	struct bwatch *w = arg;
	struct etcd_watch *ew = NULL;

	while (!atomic_load(&w->stop))
		step(w, &ew);
	etcd_watch_close(ew);
	return NULL;
}

int be_etcd_follow(struct backend *be, const struct be_follow *f)
{
	struct be_etcd *b = be_etcd_of(be);
	struct bwatch *w;
	int rc;

	if (b->watch)
		return -EALREADY;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->b = b;
	w->f = *f;
	w->applied = b->loaded_rev;
	pthread_mutex_init(&w->mu, NULL);
	rc = pthread_create(&w->thread, NULL, watch_main, w);
	if (rc) {
		pthread_mutex_destroy(&w->mu);
		free(w);
		return rerr_set(-rc, "etcd prefix %s: no watch thread",
				b->prefix);
	}
	b->watch = w;
	return 0;
}

enum be_follow_state be_etcd_follow_state(struct backend *be, uint64_t *rev)
{
	struct bwatch *w = be_etcd_of(be)->watch;
	enum be_follow_state st;

	*rev = 0;
	if (!w)
		return BE_FOLLOW_NONE;
	pthread_mutex_lock(&w->mu);
	st = w->state;
	*rev = (uint64_t)w->applied;
	pthread_mutex_unlock(&w->mu);
	return st;
}

void bwatch_stop(struct be_etcd *b)
{
	struct bwatch *w = b->watch;

	if (!w)
		return;
	atomic_store(&w->stop, true);
	pthread_join(w->thread, NULL);
	pthread_mutex_destroy(&w->mu);
	free(w);
	b->watch = NULL;
}
