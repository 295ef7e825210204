/*
 * verify.c - store_verify: every record's content against its hash, every
 * indexed record present, and (store_hist.c) the history.
 */
#include "store_i.h"
#include "id.h"
#include "log.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct verify_walk {
	struct store *s;
	struct store_verify_report *rep;
	char path[ID_MAX_LEN + 2];
	int err;
};

static int verify_record(struct store *s, const char *id,
			 struct store_verify_report *rep)
{
	struct store_meta meta;
	struct entry *e;
	uint8_t hash[16];
	uint64_t size;
	bool known;
	int fd = -1, rc;

	pthread_mutex_lock(&s->mu);
	e = idx_find(&s->ix, id, strlen(id));
	known = e && !e->meta.deleted && e->meta.hash_valid;
	if (e)
		meta = e->meta;
	pthread_mutex_unlock(&s->mu);
	rep->records++;
	if (!e) {
		rep->unindexed++;
		return 0;
	}
	rc = s->be->ops->open(s->be, id, &fd);
	if (rc == 0)
		rc = store_hash_fd(s, fd, hash, &size);
	if (fd >= 0)
		close(fd);
	if (rc)
		return rc;
	if (e && meta.deleted) {
		rlog_err("record %s: deleted at version %llu but its file is "
			 "still there",
			 id, (unsigned long long)meta.version);
		rep->bad++;
	} else if (known &&
		   (memcmp(hash, meta.hash, 16) || size != meta.size)) {
		char want[64], got[64];

		store_hash_format(meta.hash, want);
		store_hash_format(hash, got);
		rlog_err("record %s: content does not match version %llu "
			 "(expected %s, %llu bytes; found %s, %llu bytes)",
			 id, (unsigned long long)meta.version, want,
			 (unsigned long long)meta.size, got,
			 (unsigned long long)size);
		rep->bad++;
	}
	return 0;
}

static int verify_cb(void *arg, const char *name, bool is_ns)
{
	struct verify_walk *w = arg;
	size_t len = strlen(w->path), n = strlen(name);
	int rc;

	if (len + n + 2 > sizeof(w->path))
		return 0;
	if (len)
		w->path[len++] = '/';
	memcpy(w->path + len, name, n + 1);
	if (is_ns)
		rc = store_list(w->s, w->path, verify_cb, w);
	else
		rc = verify_record(w->s, w->path, w->rep);
	w->path[len ? len - 1 : 0] = '\0';
	return rc;
}

struct missing_walk {
	struct store *s;
	struct store_verify_report *rep;
};

static int check_present(void *arg, struct entry *e)
{
	struct missing_walk *m = arg;
	struct stat st;

	if (e->meta.deleted || !e->meta.version)
		return 0;
	if (m->s->be->ops->stat(m->s->be, e->id, &st) == 0 &&
	    S_ISREG(st.st_mode))
		return 0;
	rlog_err("record %s: version %llu is in the index but its file is "
		 "missing",
		 e->id, (unsigned long long)e->meta.version);
	m->rep->bad++;
	return 0;
}

int store_verify(struct store *s, struct store_verify_report *rep)
{
	struct verify_walk w = {.s = s, .rep = rep};
	struct missing_walk m = {s, rep};
	int rc;

	memset(rep, 0, sizeof(*rep));
	rc = store_list(s, "", verify_cb, &w);
	if (rc)
		return rc;
	pthread_mutex_lock(&s->mu);
	idx_each(&s->ix, check_present, &m);
	pthread_mutex_unlock(&s->mu);
	rc = store_verify_history(s, rep);
	if (rc)
		return rc;
	return rep->bad || rep->hist_bad ? -EBADMSG : 0;
}
