/*
 * store_ns.c - namespaces, the directories of records: listing, stat,
 * mkdir, rmdir, rename (only while empty of records: mv falls back to
 * copy and delete), mode, mtime and owner. Changes hold the gate
 * exclusively, so that no commit is between its namespace check and its
 * rename into place meanwhile.
 */
#include "store_i.h"
#include "scratch.h"
#include "id.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

/* "" (the root) or a valid ID. */
static int check_ns(const char *ns)
{
	return ns[0] == '\0' ? 0 : id_check(ns);
}

int store_list(struct store *s, const char *ns, store_list_cb cb, void *arg)
{
	int rc = check_ns(ns);

	sbatch_drain(s); /* new records of sync=batch are listed */
	return rc ? rc : s->be->ops->list(s->be, ns, cb, arg);
}

int store_ns_stat(struct store *s, const char *ns, struct stat *st)
{
	int rc = check_ns(ns);

	if (rc == 0)
		rc = s->be->ops->stat(s->be, ns, st);
	if (rc == 0 && !S_ISDIR(st->st_mode))
		rc = -ENOTDIR;
	return rc;
}

/*
 * Begin a change of namespaces `a` and `b` (NULL: only one): both valid
 * IDs, the store writable. Namespace changes hold the gate exclusively:
 * no commit is between its namespace check and its rename into place
 * meanwhile, and with sync=batch nothing is in flight either. On success
 * the caller ends with ns_change_end.
 */
static int ns_change_begin(struct store *s, const char *a, const char *b)
{
	int rc = id_check(a);

	if (rc == 0 && b)
		rc = id_check(b);
	if (rc)
		return rc;
	if (s->opts.read_only)
		return -EROFS;
	pthread_rwlock_wrlock(&s->gate);
	sbatch_drain(s);
	return 0;
}

static int ns_change_end(struct store *s, int rc)
{
	pthread_rwlock_unlock(&s->gate);
	return rc;
}

int store_mkdir(struct store *s, const char *ns, mode_t mode)
{
	struct entry *e;
	struct stat st;
	int rc = ns_change_begin(s, ns, NULL);

	if (rc)
		return rc;
	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, ns, strlen(ns));
	rc = (e && !e->meta.deleted && e->meta.version) ? -EEXIST : 0;
	pthread_mutex_unlock(&s->mu);
	if (rc == 0 && store_scratch_stat(s, ns, &st) == 0)
		rc = -EEXIST; /* a scratch file has that name */
	if (rc == 0)
		rc = s->be->ops->mkdir(s->be, ns, mode);
	return ns_change_end(s, rc);
}

int store_rmdir(struct store *s, const char *ns)
{
	int rc = ns_change_begin(s, ns, NULL);

	if (rc)
		return rc;
	/* its scratch directory first: it goes only if empty, and an empty
	   one left by a failed rmdir below is no harm (made on demand) */
	rc = scratch_ns_drop(s, ns);
	if (rc == 0)
		rc = s->be->ops->rmdir(s->be, ns);
	return ns_change_end(s, rc);
}

static int any_entry(void *arg, const char *name, bool is_ns)
{
	return 1;
}

int store_rename_ns(struct store *s, const char *from, const char *to)
{
	struct stat st;
	int rc = ns_change_begin(s, from, to);

	if (rc)
		return rc;
	rc = s->be->ops->list(s->be, from, any_entry, NULL);
	if (rc == 1)
		rc = -EXDEV; /* holds records: mv falls back to copy+delete */
	else if (rc == 0 && s->be->ops->stat(s->be, to, &st) == 0 &&
		 !S_ISDIR(st.st_mode))
		rc = -ENOTDIR;
	/* scratch files are not moved either: their directories must be
	   empty (and go), `to`'s as rename(2) wants it */
	if (rc == 0 && (rc = scratch_ns_drop(s, from)) == -ENOTEMPTY)
		rc = -EXDEV;
	if (rc == 0)
		rc = scratch_ns_drop(s, to);
	if (rc == 0)
		rc = s->be->ops->ns_rename(s->be, from, to);
	return ns_change_end(s, rc);
}

/* May the metadata of namespace `ns` change? 0, or why not. */
static int ns_settable(struct store *s, const char *ns)
{
	int rc = check_ns(ns);

	return rc ? rc : s->opts.read_only ? -EROFS : 0;
}

int store_ns_set_meta(struct store *s, const char *ns,
		      const struct timespec *mtime, int mode)
{
	int rc = ns_settable(s, ns);

	return rc ? rc : s->be->ops->ns_set_meta(s->be, ns, mtime, mode);
}

int store_ns_set_owner(struct store *s, const char *ns, uint32_t uid,
		       uint32_t gid)
{
	int rc = ns_settable(s, ns);

	return rc ? rc : s->be->ops->ns_set_owner(s->be, ns, uid, gid);
}
