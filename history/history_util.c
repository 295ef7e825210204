/*
 * history_util.c - what every file of the history uses: libgit2 errors as
 * -errno, the monotonic clock, paths.
 */
#include "hist_i.h"
#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t hist_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int hist_git_error(int gerr, const char *what, const char *id)
{
	int saved = errno;
	const git_error *e = git_error_last();
	const char *msg = e && e->message ? e->message : "unknown error";
	int rc;

	switch (gerr) {
	case GIT_ENOTFOUND:
		rc = -ENOENT;
		break;
	case GIT_EEXISTS:
		rc = -EEXIST;
		break;
	case GIT_ELOCKED:
		rc = -EBUSY;
		break;
	case GIT_EMODIFIED:
		rc = -ESTALE;
		break;
	case GIT_EINVALID:
	case GIT_EINVALIDSPEC:
		rc = -EINVAL;
		break;
	default:
		if (e && e->klass == GIT_ERROR_NOMEMORY)
			rc = -ENOMEM;
		else if (e && e->klass == GIT_ERROR_OS && saved > 0)
			rc = -saved;
		else
			rc = -EIO;
		/* errno may be gone by now, the message keeps strerror's */
		if (rc == -EIO && strstr(msg, strerror(ENOSPC)))
			rc = -ENOSPC;
	}
	if (!e || !e->message)
		msg = strerror(-rc);
	/* reported: the caller says it (the writer thread logs it once,
	   on a full disk once until it is written: history_batch.c) */
	if (id)
		return rerr_set(rc, "record %s: history: %s: %s", id, what,
				msg);
	return rerr_set(rc, "history: %s: %s", what, msg);
}

char *hist_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = malloc(la + lb + 2);

	if (p) {
		memcpy(p, a, la);
		p[la] = '/';
		memcpy(p + la + 1, b, lb + 1);
	}
	return p;
}
