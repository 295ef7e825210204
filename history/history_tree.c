/*
 * history_tree.c - the trees of a batch: its tree (the previous one with
 * the batch's last change of each path; a symlink's entry has mode
 * 120000; deletes remove) and the side branch's tree of the versions a
 * later change of the same path in the batch hides (hist_i.h).
 *
 * A batch may hold a million versions, so neither is built from all of
 * them in memory at once: the batch's changes are sorted by path (then
 * batch order) in runs spooled to a file (history_bspool.c), and the
 * merged stream goes to libgit2's tree update hist_tree_chunk paths at a time,
 * each update over the tree the one before made. Sorted, consecutive
 * updates touch few of the same directories: the trees written twice are
 * those at a chunk's edges (and the root), a few per chunk. A batch of
 * up to hist_tree_chunk paths is one update, as before.
 */
#include "hist_i.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t hist_tree_chunk = 65536;

/* The last change of a path in the batch. */
struct op {
	char *path; /* in the tree (escaped), owned */
	uint64_t version;
	git_oid blob;
	bool has_blob; /* false: remove */
	bool link;     /* a symlink: mode 120000 */
};

static int cmp_path(const void *key, const void *elem)
{
	return strcmp(key, ((const struct op *)elem)->path);
}

/* Is a directory of some path among the (sorted, unique) ops also a path
   among them? Then removes and upserts need two passes. */
static bool dir_file_conflict(const struct op *ops, size_t n)
{
	char buf[HIST_PATH_MAX + 1];

	for (size_t i = 0; i < n; i++) {
		const char *p = ops[i].path;

		for (const char *s = strchr(p, '/'); s;
		     s = strchr(s + 1, '/')) {
			memcpy(buf, p, (size_t)(s - p));
			buf[s - p] = '\0';
			if (bsearch(buf, ops, n, sizeof(*ops), cmp_path))
				return true;
		}
	}
	return false;
}

/*
 * The directory of the previous tree that the last in_tree looked in:
 * ops come sorted by path, so the removes of one namespace ask the same
 * directory in a row, and with libgit2's object cache off (history.c)
 * each lookup by path would inflate that directory's tree again.
 */
struct tree_dir {
	git_tree *t; /* NULL: no such directory (or the root: head_tree) */
	size_t len;  /* of its path, a prefix of the last path asked */
	char path[HIST_PATH_MAX + 1];
	bool have;
};

/* Is `path` a blob in `base`? */
static bool in_tree(struct hist *h, git_tree *base, struct tree_dir *d,
		    const char *path)
{
	const char *slash = strrchr(path, '/');
	size_t len = slash ? (size_t)(slash - path) : 0;
	const git_tree_entry *te;
	git_tree *dir;

	if (!base)
		return false;
	if (!d->have || d->len != len || memcmp(d->path, path, len) != 0) {
		git_tree_entry *de = NULL;

		git_tree_free(d->t);
		d->t = NULL;
		d->have = true;
		d->len = len;
		memcpy(d->path, path, len);
		d->path[len] = '\0';
		if (len && git_tree_entry_bypath(&de, base, d->path) == 0) {
			if (git_tree_entry_type(de) == GIT_OBJECT_TREE)
				(void)git_tree_lookup(&d->t, h->repo,
						      git_tree_entry_id(de));
			git_tree_entry_free(de);
		}
	}
	dir = len ? d->t : base;
	te = dir ? git_tree_entry_byname(dir, slash ? slash + 1 : path) : NULL;
	return te && git_tree_entry_type(te) == GIT_OBJECT_BLOB;
}

/* The tree updates of the ops that pass (*nu of them); NULL: no memory. */
static git_tree_update *tree_updates(struct hist *h, git_tree *base,
				     const struct op *ops, size_t n, int which,
				     size_t *nu)
{
	git_tree_update *u = calloc(n ? n : 1, sizeof(*u));
	struct tree_dir d = {0};
	size_t k = 0;

	if (!u)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		bool put = ops[i].has_blob;

		if ((which == 1 && put) || (which == 2 && !put))
			continue;
		if (!put && !in_tree(h, base, &d, ops[i].path))
			continue; /* not in the tree: nothing to remove */
		u[k].action =
			put ? GIT_TREE_UPDATE_UPSERT : GIT_TREE_UPDATE_REMOVE;
		u[k].path = ops[i].path;
		u[k].filemode =
			ops[i].link ? GIT_FILEMODE_LINK : GIT_FILEMODE_BLOB;
		if (put)
			u[k].id = ops[i].blob;
		k++;
	}
	git_tree_free(d.t);
	*nu = k;
	return u;
}

/* One git_tree_create_updated over `base` with `u` (freed here). */
static int tree_apply(struct hist *h, git_tree *base, git_tree_update *u,
		      size_t k, git_oid *out)
{
	int rc;

	if (!u)
		return -ENOMEM;
	rc = git_tree_create_updated(out, h->repo, base, k, u);
	free(u);
	return rc < 0 ? hist_git_error(rc, "updating the tree", NULL) : 0;
}

/* One git_tree_create_updated over `base` with the ops that pass. */
static int tree_pass(struct hist *h, git_tree *base, const struct op *ops,
		     size_t n, int which, git_oid *out)
{
	size_t k = 0;
	git_tree_update *u = tree_updates(h, base, ops, n, which, &k);

	return tree_apply(h, base, u, k, out);
}

/* ---- the batch's changes, a chunk at a time ------------------------------ */

/* A tree built a chunk of updates at a time. */
struct tb {
	struct hist *h;
	/* the change seen last: the path being gone through */
	struct bop last;
	bool have_last;
	char last_path[HIST_PATH_MAX + 1];
	/* the main tree: the last change of each path, up to hist_tree_chunk */
	struct op *ops;
	size_t n, cap;
	git_tree *base; /* the tree so far (NULL: h->head_tree) */
	git_oid tree;
	bool have_tree;
	/* the side tree: the versions hidden, up to hist_tree_chunk */
	git_tree_update *side;
	size_t nside, side_cap;
	git_tree *side_base; /* the side tree so far, NULL: none */
	git_oid side_tree;
	bool have_side;
	size_t side_total; /* versions in it */
};

/* The tree `oid` as the next chunk's base (in `*base`, the one before
   freed); objects of the batch past the mempack's limit go out as a pack
   first. */
static int next_base(struct tb *t, const git_oid *oid, git_tree **base)
{
	git_tree *nt = NULL;
	int rc = 0;

	if (hist_pack_bytes(t->h) >= hist_pack_mem_max(t->h))
		rc = hist_pack_write(t->h);
	if (rc == 0 && (rc = git_tree_lookup(&nt, t->h->repo, oid)) < 0)
		rc = hist_git_error(rc, "reading the tree", NULL);
	if (rc == 0) {
		git_tree_free(*base);
		*base = nt;
	}
	return rc;
}

/* The main tree's chunk applied over the tree so far. */
static int main_flush(struct tb *t)
{
	git_tree *base = t->base ? t->base : t->h->head_tree, *mid = NULL;
	git_oid out;
	int rc;

	if (!dir_file_conflict(t->ops, t->n)) {
		rc = tree_pass(t->h, base, t->ops, t->n, 0, &out);
	} else {
		/* "a" deleted and "a/b" made (or the other way round) in one
		   batch: libgit2 refuses that in one update */
		rc = tree_pass(t->h, base, t->ops, t->n, 1, &out);
		if (rc == 0 &&
		    (rc = git_tree_lookup(&mid, t->h->repo, &out)) < 0)
			rc = hist_git_error(rc, "reading the tree", NULL);
		if (rc == 0)
			rc = tree_pass(t->h, mid, t->ops, t->n, 2, &out);
		git_tree_free(mid);
	}
	for (size_t i = 0; i < t->n; i++)
		free(t->ops[i].path);
	t->n = 0;
	if (rc == 0) {
		t->tree = out;
		t->have_tree = true;
	}
	return rc;
}

static int main_add(struct tb *t, const struct bop *op)
{
	struct op *o;
	int rc;

	if (t->n >= hist_tree_chunk) {
		rc = main_flush(t);
		if (rc == 0)
			rc = next_base(t, &t->tree, &t->base);
		if (rc)
			return rc;
	}
	o = util_grow(t->ops, &t->cap, t->n, sizeof(*o), 64);
	if (!o)
		return -ENOMEM;
	t->ops = o;
	o = &t->ops[t->n];
	o->path = strdup(op->path);
	if (!o->path)
		return -ENOMEM;
	o->version = op->version;
	o->blob = op->blob;
	o->has_blob = op->has_blob;
	o->link = op->link;
	t->n++;
	return 0;
}

static void side_free(struct tb *t)
{
	for (size_t i = 0; i < t->nside; i++)
		free((char *)t->side[i].path);
	t->nside = 0;
}

/* The side tree's chunk applied over the side tree so far. */
static int side_flush(struct tb *t)
{
	int rc = git_tree_create_updated(&t->side_tree, t->h->repo,
					 t->side_base, t->nside, t->side);

	side_free(t);
	if (rc < 0)
		return hist_git_error(rc, "writing the superseded versions",
				      NULL);
	t->have_side = true;
	return 0;
}

/* A version a later one of its path hides: "ID@VERSION" -> its blob (a
   name no record can have: SPEC 2 reserves the suffix). */
static int side_add(struct tb *t, const struct bop *op)
{
	git_tree_update *u;
	char *path;
	int rc;

	if (t->nside >= hist_tree_chunk) {
		rc = side_flush(t);
		if (rc == 0)
			rc = next_base(t, &t->side_tree, &t->side_base);
		if (rc)
			return rc;
	}
	u = util_grow(t->side, &t->side_cap, t->nside, sizeof(*u), 64);
	if (!u)
		return -ENOMEM;
	t->side = u;
	if (asprintf(&path, "%s@%" PRIu64, op->path, op->version) < 0)
		return -ENOMEM;
	u = &t->side[t->nside++];
	t->side_total++;
	memset(u, 0, sizeof(*u));
	u->action = GIT_TREE_UPDATE_UPSERT;
	u->path = path;
	u->filemode = op->link ? GIT_FILEMODE_LINK : GIT_FILEMODE_BLOB;
	u->id = op->blob;
	return 0;
}

/* The next change in (path, order) order (bsort_each). */
static int tb_feed(void *arg, const struct bop *op)
{
	struct tb *t = arg;
	int rc = 0;

	if (t->have_last && strcmp(t->last_path, op->path) == 0) {
		if (t->last.has_blob)
			rc = side_add(t, &t->last); /* hidden by op */
	} else if (t->have_last) {
		rc = main_add(t, &t->last); /* the last change of its path */
	}
	if (rc)
		return rc;
	t->last = *op;
	snprintf(t->last_path, sizeof(t->last_path), "%s", op->path);
	t->last.path = t->last_path;
	t->have_last = true;
	return 0;
}

static int tb_finish(struct tb *t)
{
	int rc = t->have_last ? main_add(t, &t->last) : 0;

	if (rc == 0)
		rc = main_flush(t);
	if (rc == 0 && t->nside)
		rc = side_flush(t);
	return rc;
}

static void tb_free(struct tb *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->ops[i].path);
	side_free(t);
	free(t->ops);
	free(t->side);
	git_tree_free(t->base);
	git_tree_free(t->side_base);
}

/* The batch's versions as tree changes, into the sort. */
static int batch_sort(struct hist *h, struct batch *b, struct bsort *so)
{
	struct bver *v = malloc(sizeof(*v));
	struct bsp_reader r;
	const uint8_t *rec;
	uint64_t order = 0;
	size_t len;
	int rc;

	if (!v)
		return -ENOMEM;
	bsp_reader_init(&r, &b->vers, 0, bsp_end(&b->vers));
	while ((rc = bsp_next(&r, &rec, &len)) > 0) {
		struct bop op = {.path = v->path, .order = order++};

		rc = bver_get(rec, len, v);
		if (rc)
			break;
		op.version = v->m.e.version;
		op.link = v->m.e.flags & HENT_SYMLINK;
		op.has_blob = !(v->m.e.flags & (HENT_DELETED | HENT_MISSING));
		if (op.has_blob)
			op.blob = v->m.e.blob;
		rc = bsort_add(so, &op);
		if (rc)
			break;
	}
	bsp_reader_free(&r);
	free(v);
	(void)h;
	return rc;
}

int hist_batch_trees(struct hist *h, struct batch *b, git_oid *tree,
		     git_oid *side, size_t *nside)
{
	struct tb t = {.h = h};
	struct bsort so;
	int rc;

	*nside = 0;
	bsort_init(&so, h);
	rc = batch_sort(h, b, &so);
	if (rc == 0)
		rc = bsort_each(&so, tb_feed, &t);
	bsort_free(&so);
	if (rc == 0)
		rc = tb_finish(&t);
	if (rc == 0) {
		*tree = t.tree;
		*side = t.side_tree;
		*nside = t.have_side ? t.side_total : 0;
	}
	tb_free(&t);
	return rc;
}
