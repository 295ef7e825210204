/*
 * store_follow.c - the core's side of following other writers of a shared
 * store (a store on etcd mounted on several hosts; backend.h, struct
 * be_follow): their changes go into the index the way this mount's own
 * do (change_apply of a REC_STATE, with the record held busy so that no
 * change of this mount is in flight for it), the store revision follows,
 * and the frontend's hook (store_set_change_hook) is told, with no lock
 * held, so that it can invalidate the kernel's caches.
 */
#include "store_i.h"
#include "admin.h"
#include "err.h"
#include "id.h"

#include <errno.h>
#include <string.h>

static int f_lock(void *arg, const char *id, size_t len)
{
	struct store *s = arg;
	struct entry *e;

	pthread_mutex_lock(&s->mu);
	e = idx_add(&s->ix, id, len);
	while (e && e->busy)
		store_wait_idle(s, e);
	if (e)
		e->busy = true;
	pthread_mutex_unlock(&s->mu);
	return e ? 0 : -ENOMEM;
}

static int f_state(void *arg, const struct rec *r)
{
	struct apply a = {.steps = APPLY_INDEX};

	return change_apply(arg, r, r->meta.revision, &a);
}

static void f_unlock(void *arg, const char *id, size_t len)
{
	struct store *s = arg;
	struct entry *e;

	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, id, len);
	if (e)
		commit_unbusy(s, e);
	pthread_mutex_unlock(&s->mu);
}

static void f_changed(void *arg, const char *id, size_t len, bool is_ns)
{
	struct store *s = arg;
	char buf[ID_MAX_LEN + 1];

	if (len > ID_MAX_LEN)
		return;
	memcpy(buf, id, len);
	buf[len] = '\0';
	pthread_mutex_lock(&s->hook_mu);
	if (s->change_hook)
		s->change_hook(s->change_arg, buf, is_ns);
	pthread_mutex_unlock(&s->hook_mu);
}

static void f_advance(void *arg, uint64_t rev)
{
	struct store *s = arg;

	pthread_mutex_lock(&s->mu);
	if (rev > s->revision)
		s->revision = rev;
	pthread_mutex_unlock(&s->mu);
}

void store_set_change_hook(struct store *s, store_change_hook fn, void *arg)
{
	pthread_mutex_lock(&s->hook_mu);
	s->change_hook = fn;
	s->change_arg = arg;
	pthread_mutex_unlock(&s->hook_mu);
}

int store_follow_start(struct store *s)
{
	struct be_follow f = {.arg = s,
			      .lock = f_lock,
			      .state = f_state,
			      .unlock = f_unlock,
			      .changed = f_changed,
			      .advance = f_advance};

	if (!s->be || !s->be->ops->follow)
		return 0;
	return s->be->ops->follow(s->be, &f);
}

int store_follow_check(struct store *s)
{
	uint64_t rev;

	if (!s->be || !s->be->ops->follow_state ||
	    s->be->ops->follow_state(s->be, &rev) != BE_FOLLOW_RESYNC)
		return 0;
	return rerr_set(-EIO,
			"the store's watch was cancelled (its revision was "
			"compacted away): reading the store again from etcd; "
			"try again");
}

const char *store_follow_status(struct store *s, uint64_t *rev)
{
	*rev = 0;
	if (!s->be || !s->be->ops->follow_state)
		return "none";
	switch (s->be->ops->follow_state(s->be, rev)) {
	case BE_FOLLOW_OK:
		return "ok";
	case BE_FOLLOW_RECONNECT:
		return "reconnecting";
	case BE_FOLLOW_RESYNC:
		return "resync";
	default:
		return "none";
	}
}
