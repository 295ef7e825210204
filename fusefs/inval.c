/*
 * inval.c - have the kernel forget names that the daemon removed behind
 * its back: a delete through a conditional name (`rm ID@N` removes ID,
 * the kernel only saw ID@N go) and a whole-store rollback (control
 * channel). The kernel keeps names for entry_timeout (fs.c, fs_init) and
 * sends an open(O_CREAT) without O_TRUNC of a name it still believes in
 * as a plain OPEN, which then fails with ENOENT.
 *
 * The kernel holds the directory's lock while a request on it waits for
 * its reply, so the notification must not be sent from that request: a
 * short-lived thread sends it once the request has returned. Names are
 * those at the root (parent FUSE_ROOT_ID, the only node id the path API
 * knows): the top component of each ID, whose invalidation drops every
 * name cached beneath it too.
 */
#include "fs_i.h"
#include "log.h"

#include <errno.h>
#include <fuse_lowlevel.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct inval_job {
	struct fs_ctx *c;
	char **names;
	size_t n;
};

static void job_free(struct inval_job *j)
{
	for (size_t i = 0; i < j->n; i++)
		free(j->names[i]);
	free(j->names);
	free(j);
}

static void *inval_main(void *arg)
{
	struct inval_job *j = arg;
	struct fs_ctx *c = j->c;

	for (size_t i = 0; i < j->n; i++) {
		struct fuse_session *se;
		int rc;

		/* not held across the call: a request that holds the
		   kernel's lock may be waiting for c->mu */
		pthread_mutex_lock(&c->mu);
		se = c->se;
		pthread_mutex_unlock(&c->mu);
		if (!se)
			break;
		rc = fuse_lowlevel_notify_inval_entry(
			se, FUSE_ROOT_ID, j->names[i], strlen(j->names[i]));

		/* ENOENT: the kernel does not hold that name */
		if (rc && rc != -ENOENT)
			rlog_debug("cannot have the kernel forget %s: %s",
				   j->names[i], strerror(-rc));
	}
	job_free(j);
	pthread_mutex_lock(&c->mu);
	c->inval_threads--;
	pthread_cond_broadcast(&c->inval_done);
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

int fs_inval_later(struct fs_ctx *c, char **names, size_t n)
{
	struct inval_job *j = NULL;
	pthread_attr_t attr;
	pthread_t t;
	int rc = -ENOMEM;

	if (n == 0)
		goto fail;
	j = calloc(1, sizeof(*j));
	if (!j)
		goto fail;
	j->c = c;
	j->names = names;
	j->n = n;
	pthread_mutex_lock(&c->mu);
	c->inval_threads++;
	pthread_mutex_unlock(&c->mu);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = -pthread_create(&t, &attr, inval_main, j);
	pthread_attr_destroy(&attr);
	if (rc == 0)
		return 0;
	pthread_mutex_lock(&c->mu);
	c->inval_threads--;
	pthread_mutex_unlock(&c->mu);
	rlog_warn("cannot start a thread to have the kernel forget names: %s",
		  strerror(-rc));
	job_free(j);
	return rc;
fail:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

int fs_inval_id_later(struct fs_ctx *c, const char *id)
{
	const char *slash = strchr(id, '/');
	char **names = malloc(sizeof(*names));

	if (!names)
		return -ENOMEM;
	names[0] = slash ? strndup(id, (size_t)(slash - id)) : strdup(id);
	if (!names[0]) {
		free(names);
		return -ENOMEM;
	}
	return fs_inval_later(c, names, 1);
}

void fs_inval_wait(struct fs_ctx *c, unsigned timeout_ms)
{
	struct timespec end;

	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += timeout_ms / 1000;
	end.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (end.tv_nsec >= 1000000000) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&c->mu);
	while (c->inval_threads &&
	       pthread_cond_timedwait(&c->inval_done, &c->mu, &end) == 0)
		;
	if (c->inval_threads)
		rlog_warn("%u kernel name invalidations still running at "
			  "shutdown",
			  c->inval_threads);
	c->se = NULL; /* late ones stop before they touch the session */
	pthread_mutex_unlock(&c->mu);
}

void fs_ctx_quiesce(struct fs_ctx *c)
{
	fs_inval_wait(c, 2000);
}
