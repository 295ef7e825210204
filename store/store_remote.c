/*
 * store_remote.c - the history's git remote seen from the store (SPEC
 * section 9): setting it at open (store_opts.history_remote), pushing now
 * (recfsctl push), its state for .recfs/status, and the check retention
 * makes before a prune (history_remote.h does the pushing).
 */
#include "store_i.h"
#include "admin.h"
#include "history.h"
#include "history_remote.h"
#include "err.h"
#include "log.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define PUSH_DRAIN_MS 10000

int store_remote_open(struct store *s)
{
	int rc;

	if (!s->hist)
		return 0;
	rc = hist_remote_set(s->hist, s->opts.history_remote);
	if (rc && !s->opts.history_remote) /* logged: no remote then */
		rlog_warn("%s: the history remote in its config is not used: "
			  "%s",
			  s->path, rerr_what(rc));
	return s->opts.history_remote ? rc : 0;
}

int store_history_push(struct store *s, const char *url)
{
	int rc;

	if (!s->hist)
		return rerr_set(-ENOTSUP, "%s: the store has no history",
				s->path);
	if (!url && !hist_remote_is_set(s->hist))
		return rerr_set(-ENOENT,
				"%s: no history remote is set (mount with -o "
				"history_remote=URL, or give --remote URL)",
				s->path);
	/* what is committed now is in git first */
	if (!s->opts.read_only) {
		rc = store_history_drain(s, s->opts.history_drain_ms
						    ? s->opts.history_drain_ms
						    : PUSH_DRAIN_MS);
		if (rc)
			return rerr_prefix(
				rc, "%s: the history cannot catch up", s->path);
	}
	return hist_remote_push(s->hist, url, NULL);
}

int store_remote_state(struct store *s, struct store_remote_state *st)
{
	struct hist_remote_status hs;

	memset(st, 0, sizeof(*st));
	if (!s->hist)
		return -ENOENT;
	hist_remote_status(s->hist, &hs);
	if (!hs.set)
		return -ENOENT;
	snprintf(st->url, sizeof(st->url), "%s", hs.url);
	snprintf(st->pushed, sizeof(st->pushed), "%s", hs.pushed);
	snprintf(st->message, sizeof(st->message), "%s", hs.message);
	st->pushed_time = hs.pushed_time;
	st->pushed_upto = hs.pushed_upto;
	st->error = hs.error;
	st->error_time = hs.error_time;
	st->pushes = hs.pushes;
	st->failures = hs.failures;
	st->pending = hs.pending;
	return 0;
}

int store_remote_has_history(struct store *s, uint64_t *upto)
{
	int rc;

	*upto = UINT64_MAX;
	if (!s->hist || !hist_remote_is_set(s->hist))
		return 0;
	/* the caller drained the history: pushed now, the remote has the
	   versions up to *upto; the writer may write more meanwhile, which
	   the prune leaves alone */
	rc = hist_remote_push(s->hist, NULL, upto);
	if (rc)
		rerr_prefix(rc,
			    "%s: nothing pruned: the history remote does not "
			    "have the history yet",
			    s->path);
	return rc;
}
