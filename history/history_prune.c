/*
 * history_prune.c - removing versions from the history (SPEC section 7,
 * `recfsctl retain`): their content leaves history.git, their trailers
 * stay.
 *
 * History already written is never changed in place. A prune writes a
 * new epoch: every commit of refs/heads/main and of the side branch
 * (refs/heads/recfs-versions) is written again, in order, with the same
 * author, committer and message, except that
 *   - the trailer block of each pruned version gets one more line,
 *     "Recfs-Pruned: TIME" (its Recfs-Blob, hash, who and when stay:
 *     the audit trail), and
 *   - the tree entries that held a pruned version's blob are left out
 *     (in refs/heads/main's trees: the record's path, when that blob is
 *     no version of the record that is kept; in the side branch's: the
 *     entry PATH@VERSION).
 * A commit in which nothing changes keeps its id, so the epoch starts at
 * the first commit that held a pruned version. Trees are rewritten once
 * per (directory, tree) and only below the directories of pruned
 * records. One more commit on refs/heads/main, with the last tree and
 * the same Recfs-Upto, says that an epoch starts and where the previous
 * one ended. Stock git follows the new refs as any history: `git log`,
 * `git clone` and `git fsck --strict` work, and a clone made before
 * simply has diverged.
 *
 * The new objects are held in memory (a mempack) and written as one pack
 * of everything the new refs reach; history_epoch.c makes it durable,
 * writes the intent, moves the refs and removes the old objects, so a
 * crash leaves the old epoch or the new one. The caller has drained the
 * history first (hist_drain): versions not in git yet are never pruned.
 * The writer is paused meanwhile; readers wait only while the new epoch
 * is put in place (epoch_lock).
 *
 * Memory: one entry per commit of the history, per rewritten tree, and
 * per version of the records being pruned.
 */
#include "hist_i.h"
#include <git2/sys/commit.h>
#include <git2/sys/mempack.h>
#include <git2/sys/odb_backend.h>
#include "io.h"
#include "err.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define KEY_MAX (HIST_PATH_MAX + 512)

/* ---- a set of strings, each with an oid ---------------------------------- */

struct smap_ent {
	char *key; /* NULL: free */
	git_oid oid;
};

struct smap {
	struct smap_ent *v;
	size_t n, cap; /* cap: a power of two, or 0 */
};

static struct smap_ent *smap_slot(const struct smap *m, const char *key)
{
	size_t i = (size_t)XXH3_64bits(key, strlen(key)) & (m->cap - 1);

	while (m->v[i].key && strcmp(m->v[i].key, key) != 0)
		i = (i + 1) & (m->cap - 1);
	return &m->v[i];
}

static const git_oid *smap_get(const struct smap *m, const char *key)
{
	const struct smap_ent *e = m->cap ? smap_slot(m, key) : NULL;

	return e && e->key ? &e->oid : NULL;
}

static int smap_grow(struct smap *m)
{
	struct smap bigger = {.cap = m->cap ? 2 * m->cap : 256};

	bigger.v = calloc(bigger.cap, sizeof(*bigger.v));
	if (!bigger.v)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++)
		if (m->v[i].key)
			*smap_slot(&bigger, m->v[i].key) = m->v[i];
	bigger.n = m->n;
	free(m->v);
	*m = bigger;
	return 0;
}

/* Add or replace `key` (copied). Returns 0 or -ENOMEM. */
static int smap_put(struct smap *m, const char *key, const git_oid *oid)
{
	static const git_oid none;
	struct smap_ent *e;

	if ((m->n + 1) * 4 > m->cap * 3 && smap_grow(m))
		return -ENOMEM;
	e = smap_slot(m, key);
	if (!e->key) {
		if (!(e->key = strdup(key)))
			return -ENOMEM;
		m->n++;
	}
	e->oid = oid ? *oid : none;
	return 0;
}

static void smap_free(struct smap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->v[i].key);
	free(m->v);
	memset(m, 0, sizeof(*m));
}

/* ---- what goes --------------------------------------------------------- */

struct prune {
	struct hist *h;
	git_repository *repo; /* the prune's own: new objects in `mem` */
	git_odb_backend *mem;
	struct smap pruned;  /* "PATH@VERSION" of the versions to prune */
	struct smap dirs;    /* "DIR/" of their records (and "") */
	struct smap recs;    /* "PATH" of their records */
	struct smap drop;    /* "PATH\1BLOB": a pruned version's blob */
	struct smap keep;    /* "PATH\1BLOB": a kept version's blob */
	struct smap trees;   /* "DIR\2TREE": the tree rewritten */
	struct smap commits; /* "COMMIT": the commit rewritten */
	char when[48];	     /* the value of Recfs-Pruned */
	uint64_t marked;     /* trailer blocks marked now */
	uint64_t rewritten;  /* commits written again */
	unsigned epochs;     /* prune commits seen: earlier epochs */
	int err;
};

static void prune_free(struct prune *p)
{
	smap_free(&p->pruned);
	smap_free(&p->dirs);
	smap_free(&p->recs);
	smap_free(&p->drop);
	smap_free(&p->keep);
	smap_free(&p->trees);
	smap_free(&p->commits);
	git_repository_free(p->repo); /* frees its odb and p->mem */
}

/* "PATH@VERSION" of `id` into key. Returns 0 or -EINVAL. */
static int ver_key(char key[KEY_MAX], const char *id, uint64_t version,
		   char path[HIST_PATH_MAX + 1])
{
	int len = hist_path_from_id(path, id, strlen(id));

	if (len < 0)
		return len;
	snprintf(key, KEY_MAX, "%s@%" PRIu64, path, version);
	return 0;
}

static int add_pruned(struct prune *p, const struct hist_prune_ver *v)
{
	char key[KEY_MAX], path[HIST_PATH_MAX + 1];
	int rc = ver_key(key, v->id, v->version, path);

	if (rc == 0)
		rc = smap_put(&p->pruned, key, NULL);
	if (rc == 0)
		rc = smap_put(&p->recs, path, NULL);
	/* every directory above the record: trees to look into */
	for (char *s = path; rc == 0 && (s = strchr(s, '/')) != NULL; s++) {
		char c = s[1];

		s[1] = '\0';
		rc = smap_put(&p->dirs, path, NULL);
		s[1] = c;
	}
	if (rc == 0)
		rc = smap_put(&p->dirs, "", NULL);
	return rc;
}

/* hist_each: the blobs of the pruned versions, and of the versions kept
   of the same records. */
static int collect_blob(void *arg, const char *id, const hist_version *v)
{
	struct prune *p = arg;
	char key[KEY_MAX], path[HIST_PATH_MAX + 1];
	struct smap *into;

	if (v->deleted || v->missing || v->pruned || !v->blob[0] ||
	    ver_key(key, id, v->version, path) != 0 ||
	    !smap_get(&p->recs, path))
		return 0;
	into = smap_get(&p->pruned, key) ? &p->drop : &p->keep;
	snprintf(key, sizeof(key), "%s\1%s", path, v->blob);
	return smap_put(into, key, NULL);
}

/* ---- messages ------------------------------------------------------------ */

struct mark {
	struct prune *p;
	bool hit;
};

static int mark_ver(void *arg, const struct hmsg_ver *v)
{
	struct mark *m = arg;
	char key[KEY_MAX], path[HIST_PATH_MAX + 1], id[ID_MAX_LEN + 1];

	if (v->e.flags & (HENT_DELETED | HENT_PRUNED) || v->id_len > ID_MAX_LEN)
		return 0;
	memcpy(id, v->id, v->id_len);
	id[v->id_len] = '\0';
	if (ver_key(key, id, v->e.version, path) == 0 &&
	    smap_get(&m->p->pruned, key))
		m->hit = true;
	return 0;
}

/*
 * The message with "Recfs-Pruned: TIME" at the end of the trailer block
 * of each pruned version; every other byte as it was. *changed says
 * whether there was one.
 */
static int mark_message(struct prune *p, const char *msg, struct buf *out,
			bool *changed)
{
	const char *s = msg, *end = msg + strlen(msg);
	unsigned bad;
	uint64_t upto;
	int rc = 0;

	*changed = false;
	while (rc == 0 && s < end) {
		const char *brk = strstr(s, "\n\n");
		const char *stop = brk ? brk + 1 : end; /* after its last \n */
		struct mark m = {.p = p};

		rc = hmsg_parse(s, (size_t)(stop - s), mark_ver, &m, &upto,
				&bad);
		buf_put(out, s, (size_t)(stop - s));
		if (m.hit) {
			if (stop[-1] != '\n')
				buf_puts(out, "\n");
			buf_printf(out, "Recfs-Pruned: %s\n", p->when);
			p->marked++;
			*changed = true;
		}
		s = stop;
		if (brk) {
			buf_puts(out, "\n");
			s++;
		}
	}
	return rc ? rc : out->err;
}

/* ---- trees --------------------------------------------------------------- */

static int rewrite_tree(struct prune *p, const git_tree *in, char *dir,
			size_t dlen, git_oid *out);

/* Is the blob entry `name` of directory dir[0..dlen) one that goes? */
static bool entry_goes(struct prune *p, char *dir, size_t dlen,
		       const git_tree_entry *te)
{
	char key[KEY_MAX], hex[GIT_OID_HEXSZ + 1];

	git_oid_tostr(hex, sizeof(hex), git_tree_entry_id(te));
	snprintf(key, sizeof(key), "%.*s%s", (int)dlen, dir,
		 git_tree_entry_name(te));
	if (smap_get(&p->pruned, key)) /* the side branch's PATH@VERSION */
		return true;
	snprintf(key, sizeof(key), "%.*s%s\1%s", (int)dlen, dir,
		 git_tree_entry_name(te), hex);
	return smap_get(&p->drop, key) && !smap_get(&p->keep, key);
}

/* The subtree entry `te` rewritten into tb (left out if it is empty
   now). */
static int rewrite_subtree(struct prune *p, git_treebuilder *tb, char *dir,
			   size_t dlen, const git_tree_entry *te, bool *changed)
{
	const char *name = git_tree_entry_name(te);
	size_t nlen = strlen(name);
	git_tree *sub = NULL;
	git_oid nid;
	int rc;

	if (dlen + nlen + 2 > KEY_MAX)
		return -ENAMETOOLONG;
	memcpy(dir + dlen, name, nlen);
	memcpy(dir + dlen + nlen, "/", 2);
	if (!smap_get(&p->dirs, dir))
		return 0; /* nothing pruned below */
	rc = git_tree_lookup(&sub, p->repo, git_tree_entry_id(te));
	if (rc < 0)
		return hist_git_error(rc, "reading a tree", NULL);
	rc = rewrite_tree(p, sub, dir, dlen + nlen + 1, &nid);
	if (rc == 0 && !git_oid_equal(&nid, git_tree_entry_id(te))) {
		git_tree *t = NULL;

		*changed = true;
		rc = git_tree_lookup(&t, p->repo, &nid);
		if (rc == 0 && git_tree_entrycount(t) == 0)
			rc = git_treebuilder_remove(tb, name);
		else if (rc == 0)
			rc = git_treebuilder_insert(NULL, tb, name, &nid,
						    GIT_FILEMODE_TREE);
		git_tree_free(t);
		if (rc < 0)
			rc = hist_git_error(rc, "writing a tree", NULL);
	}
	git_tree_free(sub);
	return rc;
}

/* `in` (at directory dir[0..dlen), "" or ending in '/') without what
   goes, into *out (in's own id if nothing does). dir has KEY_MAX bytes. */
static int rewrite_tree(struct prune *p, const git_tree *in, char *dir,
			size_t dlen, git_oid *out)
{
	char key[KEY_MAX], hex[GIT_OID_HEXSZ + 1];
	git_treebuilder *tb = NULL;
	const git_oid *memo;
	bool changed = false;
	int rc;

	git_oid_tostr(hex, sizeof(hex), git_tree_id(in));
	snprintf(key, sizeof(key), "%.*s\2%s", (int)dlen, dir, hex);
	if ((memo = smap_get(&p->trees, key)) != NULL) {
		*out = *memo;
		return 0;
	}
	rc = git_treebuilder_new(&tb, p->repo, in);
	if (rc < 0)
		return hist_git_error(rc, "reading a tree", NULL);
	for (size_t i = 0; rc == 0 && i < git_tree_entrycount(in); i++) {
		const git_tree_entry *te = git_tree_entry_byindex(in, i);

		if (git_tree_entry_type(te) == GIT_OBJECT_TREE) {
			rc = rewrite_subtree(p, tb, dir, dlen, te, &changed);
			dir[dlen] = '\0';
		} else if (git_tree_entry_type(te) == GIT_OBJECT_BLOB &&
			   entry_goes(p, dir, dlen, te)) {
			changed = true;
			rc = git_treebuilder_remove(tb,
						    git_tree_entry_name(te));
			if (rc < 0)
				rc = hist_git_error(rc, "writing a tree", NULL);
		}
	}
	*out = *git_tree_id(in);
	if (rc == 0 && changed && (rc = git_treebuilder_write(out, tb)) < 0)
		rc = hist_git_error(rc, "writing a tree", NULL);
	if (rc == 0)
		rc = smap_put(&p->trees, key, out);
	git_treebuilder_free(tb);
	return rc;
}

/* ---- commits ---------------------------------------------------------------
 */

/* Commit `oid` written again (or kept), into p->commits. */
static int rewrite_commit(struct prune *p, const git_oid *oid)
{
	const git_oid *parents[2] = {NULL, NULL}, *np;
	char key[GIT_OID_HEXSZ + 1], dir[KEY_MAX] = "";
	git_commit *c = NULL;
	git_tree *tree = NULL;
	struct buf msg = BUF_INIT;
	bool changed = false, mchanged = false;
	git_oid tid, nid;
	int rc;

	rc = git_commit_lookup(&c, p->repo, oid);
	if (rc == 0)
		rc = git_commit_tree(&tree, c);
	if (rc < 0) {
		rc = hist_git_error(rc, "reading a commit", NULL);
		goto out;
	}
	if (git_commit_parentcount(c) > 2) {
		rc = -EBADMSG; /* recfs writes at most one */
		goto out;
	}
	for (unsigned i = 0; i < git_commit_parentcount(c); i++) {
		git_oid_tostr(key, sizeof(key), git_commit_parent_id(c, i));
		np = smap_get(&p->commits, key);
		parents[i] = np ? np : git_commit_parent_id(c, i);
		changed |=
			!git_oid_equal(parents[i], git_commit_parent_id(c, i));
	}
	if (strncmp(git_commit_message_raw(c), HIST_EPOCH_SUMMARY,
		    strlen(HIST_EPOCH_SUMMARY)) == 0)
		p->epochs++;
	rc = rewrite_tree(p, tree, dir, 0, &tid);
	if (rc == 0)
		rc = mark_message(p, git_commit_message_raw(c), &msg,
				  &mchanged);
	nid = *oid;
	changed |= mchanged || !git_oid_equal(&tid, git_tree_id(tree));
	if (rc == 0 && changed) {
		rc = git_commit_create_from_ids(
			&nid, p->repo, NULL, git_commit_author(c),
			git_commit_committer(c), git_commit_message_encoding(c),
			msg.ptr, &tid, git_commit_parentcount(c), parents);
		if (rc < 0)
			rc = hist_git_error(rc, "writing a commit", NULL);
		p->rewritten++;
	}
	git_oid_tostr(key, sizeof(key), oid);
	if (rc == 0)
		rc = smap_put(&p->commits, key, &nid);
out:
	buf_free(&msg);
	git_tree_free(tree);
	git_commit_free(c);
	return rc;
}

/* Every commit of main and the side branch, parents first; the new heads
   into ep. */
static int rewrite_all(struct prune *p, struct hist_epoch *ep)
{
	struct hist *h = p->h;
	char key[GIT_OID_HEXSZ + 1];
	git_revwalk *walk = NULL;
	git_oid oid;
	git_oid disk;
	int rc;

	/* the refs as the writer left them, not moved by something else */
	rc = git_reference_name_to_id(&disk, p->repo, "refs/heads/main");
	if (rc == 0 && !git_oid_equal(&disk, &h->head)) {
		return rerr_set(-ESTALE,
				"%s: refs/heads/main was moved by something "
				"else than recfs: nothing pruned",
				h->path);
	}
	if (rc == 0)
		rc = git_revwalk_new(&walk, p->repo);
	if (rc == 0)
		rc = git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL |
						       GIT_SORT_REVERSE);
	if (rc == 0)
		rc = git_revwalk_push(walk, &h->head);
	if (rc == 0 && h->has_side)
		rc = git_revwalk_push(walk, &h->side);
	if (rc < 0) {
		rc = hist_git_error(rc, "walking the history", NULL);
		goto out;
	}
	while ((rc = git_revwalk_next(&oid, walk)) == 0)
		if ((rc = rewrite_commit(p, &oid)) != 0)
			goto out;
	if (rc != GIT_ITEROVER) {
		rc = hist_git_error(rc, "walking the history", NULL);
		goto out;
	}
	git_oid_tostr(key, sizeof(key), &h->head);
	ep->main = *smap_get(&p->commits, key);
	ep->has_side = h->has_side;
	if (h->has_side) {
		git_oid_tostr(key, sizeof(key), &h->side);
		ep->side = *smap_get(&p->commits, key);
	}
	rc = 0;
out:
	git_revwalk_free(walk);
	return rc;
}

/* The commit that starts the epoch, on top of the rewritten head. */
static int epoch_commit(struct prune *p, struct hist_epoch *ep)
{
	const git_oid *parents[1] = {&ep->main};
	char old[GIT_OID_HEXSZ + 1];
	git_signature *sig = NULL;
	git_commit *head = NULL;
	struct buf m = BUF_INIT;
	int rc;

	git_oid_tostr(old, sizeof(old), &p->h->head);
	buf_printf(
		&m,
		HIST_EPOCH_SUMMARY
		"%u\n\n%" PRIu64 " versions pruned at %s by "
		"the retention policy (recfsctl retain): their trailer blocks "
		"stay, marked Recfs-Pruned, their content is gone. The "
		"commits before this one are those of the previous epoch, "
		"which ended at %s, written again without that content; "
		"nothing else changed.\n\nRecfs-Upto: %" PRIu64 "\n",
		p->epochs + 2, p->marked, p->when, old, p->h->done);
	rc = m.err;
	if (rc == 0)
		rc = git_commit_lookup(&head, p->repo, &ep->main);
	if (rc == 0)
		rc = git_signature_new(&sig, "recfs", "recfs@localhost",
				       time(NULL), 0);
	if (rc == 0)
		rc = git_commit_create_from_ids(
			&ep->main, p->repo, NULL, sig, sig, NULL, m.ptr,
			git_commit_tree_id(head), 1, parents);
	if (rc < 0)
		rc = hist_git_error(rc, "writing the epoch's commit", NULL);
	git_signature_free(sig);
	git_commit_free(head);
	buf_free(&m);
	return rc;
}

/* ---- the pack ---------------------------------------------------------- */

static int pack_insert(git_packbuilder *pb, git_repository *repo,
		       const struct hist_epoch *ep)
{
	git_revwalk *walk = NULL;
	git_oid oid;
	int rc = git_revwalk_new(&walk, repo);

	if (rc == 0)
		rc = git_revwalk_push(walk, &ep->main);
	if (rc == 0 && ep->has_side)
		rc = git_revwalk_push(walk, &ep->side);
	while (rc == 0 && (rc = git_revwalk_next(&oid, walk)) == 0)
		rc = git_packbuilder_insert_commit(pb, &oid);
	git_revwalk_free(walk);
	return rc == GIT_ITEROVER ? 0 : rc;
}

/* Everything the new refs reach, as one pack in HIST_PRUNE_DIR, durable. */
static int write_pack(struct prune *p, struct hist_epoch *ep)
{
	struct hist *h = p->h;
	git_packbuilder *pb = NULL;
	char *dir = NULL;
	int rc;

	rc = io_point(h->o.io, "hist.prune.pack");
	if (rc == 0)
		rc = io_mkdirat(h->o.io, "hist.prune.pack", h->repo_fd,
				HIST_PRUNE_DIR, 0700);
	if (rc)
		return rc;
	if (asprintf(&dir, "%s/%s", h->path, HIST_PRUNE_DIR) < 0)
		return -ENOMEM;
	rc = git_packbuilder_new(&pb, p->repo);
	if (rc == 0)
		rc = pack_insert(pb, p->repo, ep);
	if (rc == 0)
		rc = git_packbuilder_write(pb, dir, 0600, NULL, NULL);
	if (rc < 0)
		rc = hist_git_error(rc, "writing the new epoch's pack", NULL);
	if (rc == 0 &&
	    (size_t)snprintf(ep->pack, sizeof(ep->pack), "pack-%s",
			     git_packbuilder_name(pb)) >= sizeof(ep->pack))
		rc = -ENAMETOOLONG;
	/* the pack, before an intent names it */
	if (rc == 0)
		rc = io_syncfs(h->o.io, "hist.prune.sync", h->repo_fd);
	git_packbuilder_free(pb);
	free(dir);
	return rc;
}

/* ---- the whole --------------------------------------------------------------
 */

static int prune_open(struct prune *p, const struct hist_prune_ver *v, size_t n)
{
	git_odb *odb = NULL;
	int64_t now = (int64_t)time(NULL) * 1000000000;
	int rc = 0;

	hmsg_time(now, p->when, sizeof(p->when));
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = add_pruned(p, &v[i]);
	if (rc == 0)
		rc = hist_each(p->h, NULL, collect_blob, p);
	if (rc)
		return rc;
	rc = git_repository_open_ext(
		&p->repo, p->h->path,
		GIT_REPOSITORY_OPEN_NO_SEARCH | GIT_REPOSITORY_OPEN_BARE, NULL);
	if (rc == 0)
		rc = git_repository_odb(&odb, p->repo);
	if (rc == 0)
		rc = git_mempack_new(&p->mem);
	if (rc == 0 && (rc = git_odb_add_backend(odb, p->mem, 1000)) < 0) {
		p->mem->free(p->mem);
		p->mem = NULL;
	}
	git_odb_free(odb);
	return rc < 0 ? hist_git_error(rc, "opening the repository", NULL) : 0;
}

/* After the intent: put the epoch in place (ep; NULL: finish or undo
   the one in HIST_PRUNE_DIR, hist_epoch_recover) and make the history's
   state (objects, heads, index) that of the disk, whatever happened. */
static int switch_epoch(struct hist *h, int dirfd, const struct hist_epoch *ep)
{
	int rc, src;

	pthread_rwlock_wrlock(&h->epoch_lock);
	rc = ep ? hist_epoch_install(h, dirfd, ep) : hist_epoch_recover(h);
	h->packs = 0; /* counted again at the next tidy */
	src = hist_reopen_odbs(h);
	if (src == 0)
		src = hist_head_reload(h);
	if (src == 0)
		src = hist_index_rebuild(h);
	pthread_rwlock_unlock(&h->epoch_lock);
	if (src && !rc)
		return rerr_prefix(
			src, "%s: after the prune (reopen the store)", h->path);
	return rc;
}

int hist_prune(struct hist *h, const struct hist_prune_ver *v, size_t n,
	       struct hist_prune_report *rep)
{
	struct prune p = {.h = h};
	struct hist_epoch ep = {0};
	bool committed = false;
	int dirfd = -1, rc;

	memset(rep, 0, sizeof(*rep));
	if (h->o.read_only)
		return -EROFS;
	hist_size(h, &rep->bytes_before);
	hist_pause(h);
	/* one that could not be finished in this process: first */
	rc = faccessat(h->repo_fd, HIST_PRUNE_DIR, F_OK, AT_SYMLINK_NOFOLLOW)
		     ? 0
		     : switch_epoch(h, -1, NULL);
	if (rc == 0 && h->epoch_pending) {
		h->epoch_pending = false;
		hist_resume(h); /* the pause it kept */
	}
	if (rc == 0 && h->has_head && n)
		rc = prune_open(&p, v, n);
	if (rc == 0 && h->has_head && n)
		rc = rewrite_all(&p, &ep);
	if (rc || p.marked == 0)
		goto out; /* nothing (left) to prune */
	rc = epoch_commit(&p, &ep);
	if (rc == 0)
		rc = write_pack(&p, &ep);
	if (rc == 0) {
		dirfd = openat(h->repo_fd, HIST_PRUNE_DIR,
			       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		rc = dirfd < 0 ? -errno : 0;
	}
	if (rc == 0)
		rc = hist_epoch_intent_write(h, dirfd, &ep);
	committed = rc == 0;
	if (committed)
		rc = switch_epoch(h, dirfd, &ep);
out:
	if (dirfd >= 0)
		close(dirfd);
	if (rc && !committed)
		hist_epoch_recover(h); /* removes what it wrote */
	if (rc && committed && !h->epoch_pending) {
		/* Not in place: the step that removes the old epoch's objects
		   removes every object but the new pack's, so the writer must
		   write none until it is done (the next prune, or the next
		   open). The journal keeps the versions meanwhile. */
		rerr_prefix(rc,
			    "%s: the history writer waits until the prune is "
			    "finished (the next prune, or the next open)",
			    h->path);
		h->epoch_pending = true;
		hist_pause(h);
	}
	rep->versions = p.marked;
	rep->commits = p.rewritten;
	git_oid_tostr(rep->head, sizeof(rep->head), &h->head);
	prune_free(&p);
	hist_resume(h);
	hist_size(h, &rep->bytes_after);
	if (rc)
		rerr_prefix(rc, "%s: prune", h->path);
	return rc;
}
