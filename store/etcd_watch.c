/*
 * etcd_watch.c - watches of the etcd client (etcd.h). A watch is one
 * streaming POST /v3/watch on a connection of its own, driven by a curl
 * multi handle so that etcd_watch_next can wait with a timeout. The
 * gateway answers with one JSON object a line: {"result": {...}} (created,
 * events, progress, canceled) or {"error": {...}}. The watch remembers the
 * revision after the last event it returned and, when the stream breaks,
 * creates it again from there on the same or the next member.
 */
#include "etcd_i.h"

#include "err.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct etcd_watch {
	struct etcd *e;
	struct etcd_call call; /* for messages: "watch", its key */
	json_t *create;	       /* the create_request, start_revision aside */
	CURLM *m;
	CURL *h; /* the current stream; NULL when there is none */
	struct curl_slist *hdrs;
	struct buf in; /* what the stream sent, not yet parsed */
	char errbuf[CURL_ERROR_SIZE];
	char *body;	  /* the request of the current stream */
	size_t ep;	  /* its member */
	int created;	  /* etcd confirmed the current stream's watch */
	int ended;	  /* the current stream ended (why: errbuf/in) */
	int canceled;	  /* etcd cancelled the watch: nothing more */
	int64_t next_rev; /* resume from; 0: from now on */
	int64_t compact_rev;
	char cancel_reason[200];
	struct etcd_events pend; /* parsed, not yet returned */
	size_t pend_cap;	 /* room in pend.ev */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void etcd_events_free(struct etcd_events *evs)
{
	if (!evs)
		return;
	for (size_t i = 0; i < evs->n; i++) {
		etcd_kv_free(&evs->ev[i].kv);
		etcd_kv_free(&evs->ev[i].prev_kv);
	}
	free(evs->ev);
	memset(evs, 0, sizeof(*evs));
}

/* ---- the stream -------------------------------------------------------------
 */

static void stream_stop(struct etcd_watch *w)
{
	if (w->h) {
		curl_multi_remove_handle(w->m, w->h);
		curl_easy_cleanup(w->h);
		w->h = NULL;
	}
	curl_slist_free_all(w->hdrs);
	w->hdrs = NULL;
	free(w->body);
	w->body = NULL;
	buf_clear(&w->in);
	w->in.err = 0;
	w->created = 0;
	w->ended = 0;
}

/* Start the stream on member `ep` from w->next_rev. 0 or -ENOMEM. */
static int stream_start(struct etcd_watch *w, size_t ep)
{
	char url[512];
	json_t *req;

	stream_stop(w);
	w->ep = ep;
	w->errbuf[0] = '\0';
	if (etcd_set_i64(w->create, "start_revision", w->next_rev))
		return -ENOMEM;
	req = json_pack("{sO}", "create_request", w->create);
	w->body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	w->h = curl_easy_init();
	if (!w->body || !w->h ||
	    etcd_easy_setup(w->e, w->h, &w->hdrs, &w->in, w->errbuf))
		return -ENOMEM;
	snprintf(url, sizeof(url), "http://%s/v3/watch", w->e->ep[ep]);
	curl_easy_setopt(w->h, CURLOPT_URL, url);
	curl_easy_setopt(w->h, CURLOPT_POSTFIELDS, w->body);
	if (curl_multi_add_handle(w->m, w->h))
		return -ENOMEM;
	return 0;
}

/* Append the events of `evs` (a JSON array) at or after w->next_rev to
   w->pend. 0, -EPROTO, -ENOMEM. */
static int add_events(struct etcd_watch *w, const json_t *evs)
{
	struct etcd_events *out = &w->pend;
	size_t i, n = json_array_size(evs);
	struct etcd_event *ev;
	/* the events of one revision (a txn's) share it: all are kept */
	int64_t from = w->next_rev;
	int rc;

	for (i = 0; i < n; i++) {
		const json_t *o = json_array_get(evs, i);
		const char *type =
			json_string_value(json_object_get(o, "type"));

		ev = util_reserve(out->ev, &w->pend_cap, out->n + 1,
				  sizeof(*ev), 16);
		if (!ev)
			return -ENOMEM;
		out->ev = ev;
		ev = &out->ev[out->n];
		memset(ev, 0, sizeof(*ev));
		ev->type = type && !strcmp(type, "DELETE") ? ETCD_EVENT_DELETE
							   : ETCD_EVENT_PUT;
		rc = etcd_kv_from_json(json_object_get(o, "kv"), &ev->kv);
		if (!rc && json_object_get(o, "prev_kv"))
			rc = etcd_kv_from_json(json_object_get(o, "prev_kv"),
					       &ev->prev_kv);
		if (rc) {
			etcd_kv_free(&ev->kv);
			return rc;
		}
		if (ev->kv.mod_revision < from) { /* seen already */
			etcd_kv_free(&ev->kv);
			etcd_kv_free(&ev->prev_kv);
			continue;
		}
		out->n++;
		w->next_rev = ev->kv.mod_revision + 1;
	}
	return 0;
}

/* One {"result": ...} of the stream. */
static int on_result(struct etcd_watch *w, const json_t *r)
{
	int64_t rev = etcd_i64(json_object_get(r, "header"), "revision");
	const json_t *evs = json_object_get(r, "events");
	int rc = 0;

	if (json_is_true(json_object_get(r, "created")))
		w->created = 1;
	if (json_is_true(json_object_get(r, "canceled"))) {
		const char *why =
			json_string_value(json_object_get(r, "cancel_reason"));

		w->canceled = 1;
		w->compact_rev = etcd_i64(r, "compact_revision");
		snprintf(w->cancel_reason, sizeof(w->cancel_reason), "%s",
			 why ? why : "");
		return 0;
	}
	if (json_array_size(evs))
		rc = add_events(w, evs);
	else if (json_object_get(r, "created")) {
		/* "from now on" is from after the revision it was created
		   at: a stream that breaks resumes from there */
		if (w->next_rev == 0)
			w->next_rev = rev + 1;
	} else if (w->created && rev >= w->next_rev)
		w->next_rev = rev + 1; /* progress: all up to rev was sent */
	if (rev > w->pend.revision)
		w->pend.revision = rev;
	return rc;
}

/* Parse the complete lines of w->in into w->pend. 0, -EPROTO, -ENOMEM. */
static int parse_lines(struct etcd_watch *w)
{
	size_t done = 0;
	char *nl;
	int rc = 0;

	if (!w->in.ptr)
		return 0;
	while (!rc && !w->canceled && done < w->in.len &&
	       (nl = memchr(w->in.ptr + done, '\n', w->in.len - done))) {
		size_t len = (size_t)(nl - (w->in.ptr + done));
		json_t *j = json_loadb(w->in.ptr + done, len, 0, NULL);
		json_t *r = json_object_get(j, "result");

		if (r)
			rc = on_result(w, r);
		else if (len > 0) /* an error: the stream is over */
			rc = -EPROTO;
		json_decref(j);
		done = (size_t)(nl - w->in.ptr) + 1;
	}
	if (rc == -EPROTO)
		return rc; /* keep the line: stream_cause shows it */
	memmove(w->in.ptr, w->in.ptr + done, w->in.len - done);
	w->in.len -= done;
	w->in.ptr[w->in.len] = '\0';
	return rc;
}

/* Why the current stream ended, reported as `code`. */
static int stream_cause(struct etcd_watch *w, int code)
{
	const char *ep = w->e->ep[w->ep];

	if (w->errbuf[0])
		return etcd_fail(code, &w->call, ep, "%s", w->errbuf);
	if (w->in.len)
		return etcd_fail(code, &w->call, ep, "stream ended: %.200s",
				 w->in.ptr);
	return etcd_fail(code, &w->call, ep, "the member closed the stream");
}

/*
 * Run the stream until `deadline` (ms), until it has events in w->pend,
 * is cancelled or ends, or (if `until_created`) its watch is created.
 * 0 or -ENOMEM.
 */
static int pump(struct etcd_watch *w, uint64_t deadline, int until_created)
{
	int running, rc, left;
	CURLMsg *msg;

	for (;;) {
		curl_multi_perform(w->m, &running);
		rc = parse_lines(w);
		if (rc == -EPROTO)
			w->ended = 1;
		else if (rc)
			return rc;
		while ((msg = curl_multi_info_read(w->m, &left)))
			if (msg->msg == CURLMSG_DONE)
				w->ended = 1;
		if (w->pend.n || w->canceled || w->ended ||
		    (until_created && w->created))
			return 0;
		if (now_ms() >= deadline)
			return 0;
		curl_multi_poll(w->m, NULL, 0,
				(int)(deadline - now_ms() > 1000
					      ? 1000
					      : deadline - now_ms()),
				NULL);
	}
}

/* ---- the watch --------------------------------------------------------------
 */

/*
 * (Re)create the stream, trying every member once from the current one,
 * each until `deadline`. 0: created (or cancelled), else the last
 * member's error, reported (-ENOTCONN if none could be reached).
 */
static int stream_open(struct etcd_watch *w, uint64_t deadline)
{
	size_t start = atomic_load(&w->e->cur), i;
	int rc = -ENOTCONN;

	for (i = 0; i < w->e->n; i++) {
		size_t ep = (start + i) % w->e->n;

		rc = stream_start(w, ep);
		if (!rc)
			rc = pump(w, deadline, 1);
		if (rc)
			return etcd_fail(rc, &w->call, NULL, "out of memory");
		if (w->created || w->canceled) {
			atomic_store(&w->e->cur, ep);
			return 0;
		}
		rc = stream_cause(w, w->ended ? -ENOTCONN : -ETIMEDOUT);
		stream_stop(w);
		if (now_ms() >= deadline)
			break;
	}
	return rc;
}

int etcd_watch_open(struct etcd *e, const struct etcd_watch_req *req,
		    struct etcd_watch **out)
{
	struct etcd_watch *w;
	int rc = -ENOMEM;

	*out = NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return rerr_set(-ENOMEM, "etcd watch: out of memory");
	w->e = e;
	w->call = (struct etcd_call){"watch", NULL, 0, "/v3/watch", 1};
	w->next_rev = req->start_revision;
	w->create = json_object();
	w->m = curl_multi_init();
	w->call.key = w->create ? malloc(req->key_len + 1) : NULL;
	if (!w->m || !w->call.key ||
	    etcd_set_b64(w->create, "key", req->key, req->key_len) ||
	    (req->range_end &&
	     etcd_set_b64(w->create, "range_end", req->range_end,
			  req->range_end_len)) ||
	    (req->prev_kv &&
	     json_object_set_new(w->create, "prev_kv", json_true())))
		goto fail;
	memcpy((char *)w->call.key, req->key, req->key_len);
	w->call.key_len = req->key_len;
	rc = stream_open(w, now_ms() + e->request_ms);
	if (rc)
		goto fail;
	*out = w;
	return 0;
fail:
	if (rc == -ENOMEM)
		rerr_set(rc, "etcd watch: out of memory");
	etcd_watch_close(w);
	return rc;
}

/* Report the cancellation of `w`. */
static int canceled(struct etcd_watch *w)
{
	if (w->compact_rev)
		return etcd_fail(-ECANCELED, &w->call, w->e->ep[w->ep],
				 "cancelled: revision %lld is compacted, the "
				 "oldest kept is %lld",
				 (long long)w->next_rev,
				 (long long)w->compact_rev);
	return etcd_fail(-ECANCELED, &w->call, w->e->ep[w->ep],
			 "cancelled by etcd: %s",
			 w->cancel_reason[0] ? w->cancel_reason : "no reason");
}

/* Wait a little before trying the members again (they all failed). */
static void backoff(uint64_t deadline)
{
	uint64_t now = now_ms(), ms = deadline > now ? deadline - now : 0;
	struct timespec ts;

	if (ms > 100)
		ms = 100;
	ts.tv_sec = 0;
	ts.tv_nsec = (long)ms * 1000000;
	nanosleep(&ts, NULL);
}

/* Hand the pending events over to `out`. */
static int take_pending(struct etcd_watch *w, struct etcd_events *out)
{
	*out = w->pend;
	memset(&w->pend, 0, sizeof(w->pend));
	w->pend_cap = 0;
	return 0;
}

int etcd_watch_next(struct etcd_watch *w, unsigned timeout_ms,
		    struct etcd_events *out)
{
	uint64_t deadline = now_ms() + timeout_ms;
	int rc;

	memset(out, 0, sizeof(*out));
	for (;;) {
		if (w->pend.n)
			return take_pending(w, out);
		if (w->canceled) {
			stream_stop(w); /* etcd sends nothing more */
			return canceled(w);
		}
		if (!w->h) {
			rc = stream_open(w, deadline);
			if (rc && now_ms() >= deadline)
				return rc == -ETIMEDOUT ? -ENOTCONN : rc;
			if (rc) {
				backoff(deadline);
				continue;
			}
		}
		rc = pump(w, deadline, 0);
		if (rc)
			return etcd_fail(rc, &w->call, NULL, "out of memory");
		if (w->pend.n || w->canceled)
			continue;
		if (w->ended)
			stream_stop(w); /* resume from next_rev */
		else if (now_ms() >= deadline)
			return etcd_fail(-ETIMEDOUT, &w->call, NULL,
					 "no event within %u ms", timeout_ms);
	}
}

int64_t etcd_watch_revision(const struct etcd_watch *w)
{
	return w->next_rev;
}

int64_t etcd_watch_compact_revision(const struct etcd_watch *w)
{
	return w->compact_rev;
}

void etcd_watch_close(struct etcd_watch *w)
{
	if (!w)
		return;
	stream_stop(w);
	if (w->m)
		curl_multi_cleanup(w->m);
	buf_free(&w->in);
	etcd_events_free(&w->pend);
	json_decref(w->create);
	free((char *)w->call.key);
	free(w);
}
