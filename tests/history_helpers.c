/*
 * history_helpers.c - see history_helpers.h.
 */
#include "history_helpers.h"

#include "admin.h"
#include "helpers.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "store_history.h"

#include <criterion/criterion.h>
#include <git2.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

void history_setup(void)
{
	sandbox_store("hist", false);
	git_libgit2_init();
}

void history_teardown(void)
{
	umount2(base, MNT_DETACH); /* small_fs(), if it was used */
	sandbox_rm(base);
	git_libgit2_shutdown();
}

struct store *open_opts(struct store_opts *o)
{
	o->path = spath;
	o->create = true;
	return open_ok(o);
}

struct store *open_store(void)
{
	struct store_opts o = {0};

	return open_opts(&o);
}

/* A store whose history commits at most every `delay_ms`. */
struct store *open_slow(unsigned delay_ms, struct io *io)
{
	struct store_opts o = {.history_delay_ms = delay_ms, .io = io};

	return open_opts(&o);
}

void close_store(struct store *s)
{
	int rc = store_close(s);

	cr_assert_eq(rc, 0, "store_close: %s", strerror(-rc));
}

struct store_result put_buf(struct store *s, const char *id, const void *buf,
			    size_t len)
{
	struct store_result r;
	int rc = store_put(s, id, buf, len, NULL, &r);

	cr_assert_eq(rc, 0, "put %s: %s", id, strerror(-rc));
	return r;
}

struct store_result put(struct store *s, const char *id, const char *text)
{
	return put_buf(s, id, text, strlen(text));
}

void drain(struct store *s)
{
	int rc = store_history_drain(s, 60000);

	cr_assert_eq(rc, 0, "drain: %s", strerror(-rc));
}

struct done_arg {
	struct store *s;
	uint64_t revision;
};

static bool history_has(void *arg)
{
	const struct done_arg *d = arg;
	struct store_status st;

	store_status_get(d->s, &st);
	return st.history_done >= d->revision;
}

void wait_history(struct store *s, uint64_t revision)
{
	struct done_arg d = {s, revision};

	cr_assert(wait_for(history_has, &d, 10000),
		  "the history did not reach revision %" PRIu64 " in 10 s",
		  revision);
}

void blob_hex(const void *buf, size_t len, char out[41])
{
	git_oid oid;

	cr_assert_eq(git_odb_hash(&oid, buf, len, GIT_OBJECT_BLOB), 0);
	git_oid_tostr(out, 41, &oid);
}

void log_free(struct log *l)
{
	free(l->b);
	memset(l, 0, sizeof(*l));
}

static bool field(const char *line, const char *key, const char **val)
{
	size_t k = strlen(key);

	if (strncmp(line, key, k) || line[k] != ':' || line[k + 1] != ' ')
		return false;
	*val = line + k + 2;
	return true;
}

/* Every trailer block of refs/heads/main, parsed from `git log`. */
void read_log(struct log *l)
{
	char *out = run("git -C '%s' log --format='@@%%H%%n%%B' "
			"refs/heads/main",
			gitdir);
	struct block cur = {0};
	char commit[41] = "";
	bool in = false;
	char *save = NULL;

	memset(l, 0, sizeof(*l));
	l->b = calloc(100000, sizeof(*l->b));
	cr_assert_not_null(l->b);
	for (char *line = strtok_r(out, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		const char *v;

		/* strtok_r skips blank lines: a block starts at Recfs-Id */
		if (line[0] == '@' && line[1] == '@') {
			if (in)
				l->b[l->n++] = cur;
			in = false;
			snprintf(commit, sizeof(commit), "%s", line + 2);
			l->commits++;
			continue;
		}
		if (field(line, "Recfs-Id", &v)) {
			if (in)
				l->b[l->n++] = cur;
			memset(&cur, 0, sizeof(cur));
			in = true;
			memcpy(cur.commit, commit, 41);
			snprintf(cur.id, sizeof(cur.id), "%s", v);
		} else if (field(line, "Recfs-Upto", &v)) {
			if (in)
				l->b[l->n++] = cur;
			in = false;
			if (!l->last_upto)
				l->last_upto = strtoull(v, NULL, 10);
		} else if (!in) {
			continue;
		} else if (field(line, "Recfs-Version", &v)) {
			cur.version = strtoull(v, NULL, 10);
		} else if (field(line, "Recfs-Revision", &v)) {
			cur.revision = strtoull(v, NULL, 10);
		} else if (field(line, "Recfs-Size", &v)) {
			cur.size = strtoull(v, NULL, 10);
		} else if (field(line, "Recfs-Blob", &v)) {
			snprintf(cur.blob, sizeof(cur.blob), "%s", v);
		} else if (field(line, "Recfs-Hash", &v)) {
			snprintf(cur.hash, sizeof(cur.hash), "%s", v);
		} else if (field(line, "Recfs-From", &v)) {
			snprintf(cur.from, sizeof(cur.from), "%s", v);
		} else if (field(line, "Recfs-To", &v)) {
			snprintf(cur.to, sizeof(cur.to), "%s", v);
		} else if (field(line, "Recfs-Deleted", &v)) {
			cur.deleted = strcmp(v, "true") == 0;
		} else if (field(line, "Recfs-Missing", &v)) {
			cur.missing = strcmp(v, "true") == 0;
		} else if (field(line, "Recfs-Time", &v)) {
			cur.has_time = strlen(v) == 30 && v[29] == 'Z';
		} else if (field(line, "Recfs-Uid", &v)) {
			cur.has_uid = true;
		}
		cr_assert_lt(l->n, 100000);
	}
	if (in)
		l->b[l->n++] = cur;
	free(out);
}

/* The blocks of (id, version): how many there are, the last in *out. */
unsigned find_blocks(const struct log *l, const char *id, uint64_t version,
		     bool deleted, const struct block **out)
{
	unsigned n = 0;

	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->b[i].id, id) && l->b[i].version == version &&
		    l->b[i].deleted == deleted) {
			n++;
			*out = &l->b[i];
		}
	return n;
}

/* (id, version) has exactly one block, with the right fields, and both
   git and store_history_get give back its content. */
void check_version(struct store *s, const struct log *l, const struct wrote *w)
{
	const struct block *b = NULL;
	struct store_version v;
	char want[41], *out;
	void *buf = NULL;
	size_t len = 0;
	int rc;

	cr_assert_eq(find_blocks(l, w->id, w->version, false, &b), 1,
		     "%s version %" PRIu64 ": not exactly one trailer block",
		     w->id, w->version);
	blob_hex(w->buf, w->len, want);
	cr_assert_str_eq(b->blob, want, "%s v%" PRIu64 ": Recfs-Blob", w->id,
			 w->version);
	cr_assert_eq(b->revision, w->revision, "%s v%" PRIu64 ": revision",
		     w->id, w->version);
	cr_assert_eq(b->size, w->len, "%s: Recfs-Size", w->id);
	cr_assert(b->has_time && b->has_uid, "%s: time and uid", w->id);
	cr_assert_eq(strncmp(b->hash, "xxh3-128:", 9), 0);
	cr_assert_eq(strlen(b->hash), 9 + 32);
	/* stock git has the blob, with this content */
	out = run("git -C '%s' cat-file -s %s", gitdir, want);
	cr_assert_eq(strtoull(out, NULL, 10), w->len);
	free(out);
	rc = store_history_get(s, w->id, w->version, &buf, &len, &v);
	cr_assert_eq(rc, 0, "history_get %s@%" PRIu64 ": %s", w->id, w->version,
		     strerror(-rc));
	cr_assert_eq(len, w->len);
	cr_assert(memcmp(buf, w->buf, len) == 0, "%s@%" PRIu64 ": content",
		  w->id, w->version);
	cr_assert_str_eq(v.blob, want);
	cr_assert_str_eq(v.commit, b->commit);
	cr_assert_eq(v.revision, w->revision);
	free(buf);
}

struct tree_cmp {
	struct store *s;
	const char *ns;
	size_t live;
};

/* The tree of refs/heads/main holds exactly the live records, each with
   its current content. */
static int count_live(void *arg, const char *name, bool is_ns)
{
	struct tree_cmp *t = arg;
	char id[4200];

	snprintf(id, sizeof(id), "%s%s%s", t->ns, t->ns[0] ? "/" : "", name);
	if (is_ns) {
		struct tree_cmp sub = {t->s, id, 0};

		cr_assert_eq(store_list(t->s, id, count_live, &sub), 0);
		t->live += sub.live;
	} else {
		void *buf = NULL;
		size_t len = 0;
		char want[41], *out;

		cr_assert_eq(store_get(t->s, id, &buf, &len, NULL), 0);
		blob_hex(buf, len, want);
		out = run("git -C '%s' rev-parse 'refs/heads/main:%s'", gitdir,
			  id);
		cr_assert_eq(strncmp(out, want, 40), 0,
			     "%s: tree has %.40s, record is %s", id, out, want);
		free(out);
		free(buf);
		t->live++;
	}
	return 0;
}

void check_tree(struct store *s)
{
	struct tree_cmp t = {s, "", 0};
	char *out;
	size_t n = 0;

	cr_assert_eq(store_list(s, "", count_live, &t), 0);
	out = run("git -C '%s' ls-tree -r --name-only refs/heads/main | wc -l",
		  gitdir);
	n = strtoull(out, NULL, 10);
	free(out);
	cr_assert_eq(n, t.live, "tree has %zu entries, store %zu live records",
		     n, t.live);
}

/* Read version v of "hot" and check it says "hot v". */
void check_hot_version(struct store *s, uint64_t v)
{
	char want[32];
	void *buf = NULL;
	size_t len = 0;
	int rc = store_history_get(s, "hot", v, &buf, &len, NULL);

	cr_assert_eq(rc, 0, "hot@%" PRIu64 ": %s", v, strerror(-rc));
	snprintf(want, sizeof(want), "hot %" PRIu64, v);
	cr_assert(len == strlen(want) && memcmp(buf, want, len) == 0,
		  "hot@%" PRIu64 " reads \"%.*s\"", v, (int)len, (char *)buf);
	free(buf);
}
