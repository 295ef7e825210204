/*
 * fs.c - the mount's context (fs.h) and .recfs/status.
 */
#include "admin.h"
#include "fs_i.h"
#include "err.h"
#include "log.h"
#include "scratch.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* `s` as a JSON string into b (at most cap bytes, NUL included); the
   store path is the only free text in the status. */
static void json_string(char *b, size_t cap, const char *s)
{
	size_t n = 0;

	b[n++] = '"';
	for (; s && *s && n + 8 < cap; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\') {
			b[n++] = '\\';
			b[n++] = (char)ch;
		} else if (ch < 0x20) {
			n += (size_t)snprintf(b + n, cap - n, "\\u%04x", ch);
		} else {
			b[n++] = (char)ch;
		}
	}
	b[n++] = '"';
	b[n] = '\0';
}

/* The "space" object: the reserve (store/reserve.c) and the last space
   error; `what` is one of the store's fixed texts. */
static void space_json(char *b, size_t cap, const struct store_status *st)
{
	char err[160] =
		"null,\"last_error_at\":null,\"last_error_during\":null";

	if (st->space_error)
		snprintf(err, sizeof(err),
			 "\"%s\",\"last_error_at\":%" PRId64
			 ",\"last_error_during\":\"%s\"",
			 strerrorname_np(-st->space_error)
				 ? strerrorname_np(-st->space_error)
				 : "?",
			 st->space_error_time, st->space_error_what);
	snprintf(b, cap,
		 "{\"reserve\":%" PRIu64 ",\"reserve_state\":\"%s\","
		 "\"released\":%u,\"last_error\":%s}",
		 st->reserve_bytes,
		 !st->reserve_bytes ? "none"
		 : st->reserve_held ? "held"
				    : "released",
		 st->reserve_released, err);
}

/* The "history_remote" object: null, or the remote and its last push
   (store_remote.c). */
static void remote_json(char *b, size_t cap, struct store *s)
{
	struct store_remote_state r;
	char url[6 * 1024 + 8], msg[6 * 256 + 8];

	if (store_remote_state(s, &r) != 0) {
		snprintf(b, cap, "null");
		return;
	}
	json_string(url, sizeof(url), r.url);
	json_string(msg, sizeof(msg), r.message);
	snprintf(b, cap,
		 "{\"url\":%s,\"state\":\"%s\",\"pushed\":\"%s\","
		 "\"pushed_upto\":%" PRIu64 ",\"pushed_time\":%" PRId64
		 ",\"error\":%s,\"error_time\":%" PRId64 ",\"pushes\":%" PRIu64
		 ",\"failures\":%" PRIu64 "}",
		 url,
		 r.error == -ESTALE ? "refused"
		 : r.error	    ? "error"
		 : r.pushed[0]	    ? "ok"
				    : "not pushed yet",
		 r.pushed, r.pushed_upto, r.pushed_time, r.error ? msg : "null",
		 r.error_time, r.pushes, r.failures);
}

int fs_status_json(struct fs_ctx *c, char **out, size_t *len)
{
	enum { RCAP = 8 * 1024 + 256, CAP = 2048 + 6 * 4096 + 8 + RCAP };
	char *remote = malloc(RCAP);
	struct store_status st;
	uint64_t commits, errors, ctl;
	struct store_retain_report plan;
	char hist[1536], space[320], sync[96];
	char *path = malloc(6 * 4096 + 8);
	char *buf = malloc(CAP);
	int n;

	if (!buf || !path || !remote) {
		free(buf);
		free(path);
		free(remote);
		return -ENOMEM;
	}
	remote_json(remote, RCAP, c->store);
	store_status_get(c->store, &st);
	fs_ctx_counts(c, &commits, &errors);
	pthread_mutex_lock(&c->mu);
	ctl = c->ctl_calls;
	pthread_mutex_unlock(&c->mu);
	json_string(path, 6 * 4096 + 8, store_path(c->store));
	if (st.sync_batch_ms)
		snprintf(sync, sizeof(sync),
			 "{\"mode\":\"batch\",\"ms\":%u,\"durable\":%" PRIu64
			 "}",
			 st.sync_batch_ms, st.durable);
	else
		snprintf(sync, sizeof(sync), "{\"mode\":\"close\"}");
	if (!st.history)
		snprintf(hist, sizeof(hist),
			 "{\"lag\":null,\"done\":null,\"state\":\"none\"}");
	else if (store_retain_summary(c->store, &plan) != 0)
		memset(&plan, 0, sizeof(plan)); /* logged */
	if (st.history)
		/* strerror() texts have no quote or backslash; bytes: of
		   history.git; policies: of retention (what a prune would
		   remove is `recfsctl stats`: it reads the whole index) */
		snprintf(hist, sizeof(hist),
			 "{\"lag\":%" PRIu64 ",\"done\":%" PRIu64
			 ",\"state\":\"%s%s\",\"bytes\":%" PRIu64
			 ",\"policies\":%" PRIu64 "}",
			 st.history_lag, st.history_done,
			 st.history_error ? "error: "
			 : st.history_lag ? "catching up"
					  : "ok",
			 st.history_error ? strerror(-st.history_error) : "",
			 plan.history_before, plan.policies);
	if (st.history_elected) {
		char w[6 * 128 + 8];
		size_t l = strlen(hist);

		json_string(w, sizeof(w), st.history_writer);
		if (l && hist[l - 1] == '}')
			snprintf(hist + l - 1, sizeof(hist) - l + 1,
				 ",\"writer\":%s,\"writer_is_me\":%s}", w,
				 st.history_writer_me ? "true" : "false");
	}
	space_json(space, sizeof(space), &st);
	n = snprintf(
		buf, CAP,
		"{\"revision\":%" PRIu64 ",\"records\":%" PRIu64
		",\"deleted\":%" PRIu64 ",\"journal\":{\"bytes\":%" PRIu64
		",\"state\":\"%s\"},\"sync\":%s,\"history\":%s,\"space\":%s,"
		"\"read_only\":%s,"
		"\"commits\":%" PRIu64 ",\"commit_errors\":%" PRIu64
		",\"ctl\":%" PRIu64 ",\"history_remote\":%s,\"store\":%s}\n",
		st.revision, st.records, st.tombstones, st.journal_bytes,
		st.broken ? "needs recovery (remount)" : "ok", sync, hist,
		space, st.read_only ? "true" : "false", commits, errors, ctl,
		remote, path);
	free(path);
	free(remote);
	*out = buf;
	*len = (size_t)n;
	return 0;
}

static int no_entry(void *arg, const char *name, bool is_ns)
{
	return 1;
}

/* A store without scratch files (etcd: store_scratch_* say ENOTSUP)
   has no scratch names: a temp name of sed -i or rsync is a record, and
   its rename onto the target a record's rename. */
static bool has_scratch(struct store *s)
{
	return store_scratch_list(s, "", no_entry, NULL) != -ENOTSUP;
}

int fs_ctx_new(struct fs_ctx **out, struct store *s,
	       const struct fs_config *cfg)
{
	struct fs_ctx *c = calloc(1, sizeof(*c));
	int rc;

	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->store = s;
	c->cfg = *cfg;
	c->mnt_id = -1;
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->qmu, NULL);
	pthread_cond_init(&c->qcv, NULL);
	rc = fs_inval_init(c);
	if (rc == 0)
		rc = fs_table_init(c);
	if (rc) {
		fs_ctx_free(c);
		return rc;
	}
	if (has_scratch(s))
		rc = fs_scratch_patterns(cfg->scratch ? cfg->scratch
						      : FS_DEFAULT_SCRATCH,
					 &c->scratch_pat);
	if (rc) {
		fs_ctx_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void fs_ctx_free(struct fs_ctx *c)
{
	if (!c)
		return;
	fs_inval_stop(c);
	fs_handles_free(c);
	fs_dirs_free(c);
	fs_table_free(c);
	fs_scratch_patterns_free(c->scratch_pat);
	pthread_cond_destroy(&c->qcv);
	pthread_cond_destroy(&c->qdone);
	pthread_mutex_destroy(&c->qmu);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

void fs_ctx_counts(struct fs_ctx *c, uint64_t *commits, uint64_t *errors)
{
	pthread_mutex_lock(&c->mu);
	*commits = c->commits;
	*errors = c->commit_errors;
	pthread_mutex_unlock(&c->mu);
}

int fs_ctx_start(struct fs_ctx *c)
{
	return fs_inval_start(c);
}

void fs_ctx_stop(struct fs_ctx *c)
{
	fs_inval_stop(c);
}

void fs_log_reported(const char *id, int rc)
{
	const char *why = rerr_take(rc);
	size_t n = strlen(id);

	if (!why)
		return;
	if (!strncmp(why, "record ", 7) && !strncmp(why + 7, id, n) &&
	    why[7 + n] == ':')
		rlog_err("%s", why);
	else
		rlog_err("record %s: %s", id, why);
}
