/*
 * be_etcd.c - the etcd backend (backend.h): a store kept in etcd v3
 * under a key prefix, mounted by one host (phase 2 of issue 16). etcd is
 * the durable store: no local journal, no recovery; each change is one
 * etcd txn (be_etcd_commit.c), read back by version. Key layout and the
 * map of what etcd holds: be_etcd_i.h.
 *
 *  open      the URI's members, P/format (made by `create` on an empty
 *            prefix, create-only), the map: a paginated range over P/e/
 *            and P/n/ at one revision (load hands each record's state to
 *            the core's index). A million records would want lazy
 *            loading; not done in this phase.
 *  read      open_version: P/v/ID//N into a memfd (content is at most
 *            BE_ETCD_MAX_RECORD bytes), from the cache of what this mount
 *            wrote or read (be_etcd_cache.c) if it is there; `open` reads
 *            the version the map knows as current (an append's rebase).
 *  stat      namespaces only (from the map); records are the index's.
 *  list      one range per page over "P/e/<d+1>/NS/", keys only.
 *  ns ops    one small txn each, comparing the namespace's mod_revision
 *            (the core holds its gate exclusively around them).
 * Stages are memfds; there are no named stages and no scratch tree.
 */
#include "be_etcd_i.h"
#include "err.h"
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- stages: memfds ------------------------------------------------------ */

static int b_stage_new(struct backend *be, struct store_stage *st)
{
	st->fd = memfd_create("recfs-stage", MFD_CLOEXEC);
	st->name[0] = '\0';
	return st->fd < 0 ? -errno : 0;
}

static void b_stage_drop(struct backend *be, struct store_stage *st)
{
	if (st->fd >= 0)
		close(st->fd);
	st->fd = -1;
}

static int b_zero(struct backend *be)
{
	return 0;
}

static int b_stage_sync(struct backend *be, struct store_stage *st)
{
	return 0;
}

/* Not called: the apply step of an own_commit backend puts nothing in
   place, and it has no named stages nor scratch tree (backend.h). */
static int b_publish(struct backend *be, struct store_stage *st, const char *id)
{
	return -ENOTSUP;
}

static int b_remove(struct backend *be, const char *id)
{
	return -ENOTSUP;
}

static int b_move(struct backend *be, const char *from, const char *to,
		  bool durable)
{
	return -ENOTSUP;
}

static int b_stage_open(struct backend *be, const char *point, const char *name,
			int flags, int *fd)
{
	*fd = -1;
	return -ENOTSUP;
}

static int b_stage_link(struct backend *be, const char *name, int dirfd,
			const char *as)
{
	return -ENOTSUP;
}

static int b_notsup(struct backend *be)
{
	return -ENOTSUP;
}

static int b_mkparents(struct backend *be, const char *id)
{
	return -ENOTSUP;
}

static int b_spool_new(struct backend *be, int *fd)
{
	*fd = -1;
	return -ENOTSUP; /* the core takes a memfd */
}

static int b_tree_open(struct backend *be, int root, const char *point,
		       const char *path, int flags, mode_t mode)
{
	return -ENOTSUP;
}

static int b_tree_parent(struct backend *be, int root, const char *path,
			 int *pfd, const char **leaf)
{
	*pfd = -1;
	return -ENOTSUP;
}

static void b_tree_parent_put(struct backend *be, int root, int pfd)
{
}

static int b_stage_place(struct backend *be, const char *point,
			 struct store_stage *st, int pfd, const char *leaf,
			 unsigned flags)
{
	return -ENOTSUP;
}

/* ---- reading ---------------------------------------------------------------
 */

/* A memfd holding p[n], at offset 0. */
static int memfd_of(const void *p, size_t n, int *fd)
{
	int f = memfd_create("recfs-etcd", MFD_CLOEXEC);
	ssize_t w;

	if (f < 0)
		return -errno;
	w = n ? pwrite(f, p, n, 0) : 0;
	if (w < 0 || (size_t)w != n) {
		int rc = w < 0 ? -errno : -EIO;

		close(f);
		return rc;
	}
	*fd = f;
	return 0;
}

static int to_memfd(const void *p, size_t n, void *fd)
{
	return memfd_of(p, n, fd);
}

/* From the cache (be_etcd_cache.c) if it is there, else from etcd (and
   then kept). */
static int b_open_version(struct backend *be, const char *id, uint64_t version,
			  int *fd, uint64_t *rev)
{
	struct be_etcd *b = be_etcd_of(be);
	struct etcd_kv kv = {0};
	size_t kl, len = strlen(id);
	char *k;
	int rc = bcache_get(b, id, len, version, to_memfd, fd, rev);

	if (rc != -ENOENT)
		return rc;
	k = bkey_version(b, id, len, version, &kl);
	if (!k)
		return -ENOMEM;
	rc = etcd_get(b->e, k, kl, &kv, NULL);
	free(k);
	if (rc == -ENOENT)
		return rerr_set(-ENOENT, "record %s: no version %llu in etcd",
				id, (unsigned long long)version);
	if (rc)
		return rerr_prefix(rc == -ENOMEM ? rc : -EIO,
				   "record %s: reading version %llu", id,
				   (unsigned long long)version);
	rc = memfd_of(kv.value, kv.value_len, fd);
	if (rc == 0 && rev)
		*rev = (uint64_t)kv.mod_revision;
	if (rc == 0)
		bcache_put(b, id, len, version, (uint64_t)kv.mod_revision,
			   kv.value, kv.value_len);
	etcd_kv_free(&kv);
	return rc;
}

static int b_open(struct backend *be, const char *id, int *fd)
{
	struct be_etcd *b = be_etcd_of(be);
	uint64_t v = 0;
	struct bent *n;
	bool ns = false;

	pthread_mutex_lock(&b->mu);
	n = bmap_find(b, id, strlen(id));
	if (n && n->mod_rev) {
		ns = n->ns;
		v = n->version;
	}
	pthread_mutex_unlock(&b->mu);
	if (ns)
		return -EISDIR;
	return v ? b_open_version(be, id, v, fd, NULL) : -ENOENT;
}

static int b_stat(struct backend *be, const char *id, struct stat *st)
{
	struct be_etcd *b = be_etcd_of(be);
	struct bent *n;
	int rc = -ENOENT;

	memset(st, 0, sizeof(*st));
	st->st_nlink = 2;
	if (id[0] == '\0') {
		st->st_mode = S_IFDIR | 0755;
		st->st_uid = geteuid();
		st->st_gid = getegid();
		return 0;
	}
	pthread_mutex_lock(&b->mu);
	n = bmap_find(b, id, strlen(id));
	if (n && n->ns && n->mod_rev) {
		st->st_mode = S_IFDIR | n->mode;
		st->st_uid = n->uid;
		st->st_gid = n->gid;
		st->st_mtim = n->mtime;
		st->st_ctim = n->mtime;
		rc = 0;
	}
	pthread_mutex_unlock(&b->mu);
	return rc;
}

/* ---- listing
 * ----------------------------------------------------------------- */

/* Call cb for each key of one page of the range [key, end): the name
   after `plen` bytes of prefix, a namespace if the map says so. *next:
   the key to go on from (malloc'ed), NULL at the end. */
static int list_page(struct be_etcd *b, const char *key, size_t klen,
		     const char *end, size_t elen, size_t plen,
		     store_list_cb cb, void *arg, char **next, size_t *nlen)
{
	struct etcd_range q = {.key = key,
			       .key_len = klen,
			       .range_end = end,
			       .range_end_len = elen,
			       .limit = BE_ETCD_PAGE,
			       .keys_only = 1};
	struct etcd_range_result r;
	int rc = etcd_range(b->e, &q, &r);

	*next = NULL;
	if (rc)
		return rerr_prefix(-EIO, "etcd: listing");
	for (size_t i = 0; rc == 0 && i < r.n; i++) {
		struct etcd_kv *kv = &r.kvs[i];
		const char *id = kv->key + (b->plen + 6); /* "/e/DD/" */
		struct bent *n;
		bool ns;

		if (kv->key_len <= plen)
			continue;
		pthread_mutex_lock(&b->mu);
		n = bmap_find(b, id, kv->key_len - (b->plen + 6));
		ns = n && n->ns;
		pthread_mutex_unlock(&b->mu);
		rc = cb(arg, kv->key + plen, ns);
	}
	if (rc == 0 && r.more && r.n) {
		struct etcd_kv *last = &r.kvs[r.n - 1];

		*next = malloc(last->key_len + 2);
		if (!*next) {
			rc = -ENOMEM;
		} else {
			memcpy(*next, last->key, last->key_len);
			(*next)[last->key_len] = '\0'; /* the next key */
			*nlen = last->key_len + 1;
		}
	}
	etcd_range_result_free(&r);
	return rc;
}

static int b_list(struct backend *be, const char *ns, store_list_cb cb,
		  void *arg)
{
	struct be_etcd *b = be_etcd_of(be);
	size_t klen, elen, plen;
	char *key, *from, *next = NULL, *end;
	struct bent *n;
	int rc = 0;

	if (ns[0]) { /* a namespace this mount knows */
		pthread_mutex_lock(&b->mu);
		n = bmap_find(b, ns, strlen(ns));
		rc = !n || !n->mod_rev ? -ENOENT : n->ns ? 0 : -ENOTDIR;
		pthread_mutex_unlock(&b->mu);
		if (rc)
			return rc;
	}
	key = bkey_children(b, ns, &klen);
	from = key;
	end = key ? malloc(klen + 1) : NULL;
	rc = end ? 0 : -ENOMEM;

	if (rc == 0) {
		elen = etcd_prefix_end(end, key, klen);
		plen = klen;
	}
	while (rc == 0 && from) {
		rc = list_page(b, from, klen, end, elen, plen, cb, arg, &next,
			       &klen);
		if (from != key)
			free(from);
		from = next;
	}
	if (from != key)
		free(from);
	free(key);
	free(end);
	return rc;
}

/* How many entries namespace `ns` holds (at most 1 counted). */
static int count_children(struct be_etcd *b, const char *ns, int64_t *count)
{
	size_t klen;
	char *key = bkey_children(b, ns, &klen);
	char *end = key ? malloc(klen + 1) : NULL;
	struct etcd_range q = {0};
	struct etcd_range_result r;
	int rc;

	if (!end) {
		free(key);
		return -ENOMEM;
	}
	q = (struct etcd_range){.key = key,
				.key_len = klen,
				.range_end = end,
				.limit = 1,
				.count_only = 1};
	q.range_end_len = etcd_prefix_end(end, key, klen);
	rc = etcd_range(b->e, &q, &r);
	if (rc == 0) {
		*count = r.count;
		etcd_range_result_free(&r);
	}
	free(key);
	free(end);
	return rc ? rerr_prefix(-EIO, "namespace %s: etcd", ns) : 0;
}

/* ---- namespaces ------------------------------------------------------------
 */

/*
 * Put (`put`) or delete namespace entry `n` of `id` in one txn that
 * compares its mod_revision with `was`; on success n->mod_rev is the
 * txn's revision (0 after a delete). mu not held: the core's gate keeps
 * namespace changes apart from everything else.
 */
static int ns_txn(struct be_etcd *b, const char *id, struct bent *n,
		  int64_t was, bool put)
{
	struct etcd_txn_result res = {0};
	size_t kl, vl = 0;
	char *k = bkey_entry(b, id, strlen(id), &kl);
	char *v = put ? bjson_ns(n, &vl) : NULL;
	struct etcd_cmp c = {.key = k,
			     .key_len = kl,
			     .target = ETCD_MOD,
			     .result = ETCD_EQUAL,
			     .n = was};
	struct etcd_op op = {.type = put ? ETCD_OP_PUT : ETCD_OP_DELETE,
			     .key = k,
			     .key_len = kl,
			     .value = v,
			     .value_len = vl};
	struct etcd_txn t = {
		.cmp = &c, .n_cmp = 1, .success = &op, .n_success = 1};
	int rc = k && (v || !put) ? etcd_txn(b->e, &t, &res) : -ENOMEM;

	if (rc == 0 && !res.succeeded)
		rc = rerr_set(-ESTALE,
			      "namespace %s: changed in etcd by another "
			      "writer",
			      id);
	else if (rc && rc != -ENOMEM)
		rc = rerr_prefix(-EIO, "namespace %s: etcd", id);
	if (rc == 0) {
		pthread_mutex_lock(&b->mu);
		n->mod_rev = put ? res.revision : 0;
		n->ns = put;
		pthread_mutex_unlock(&b->mu);
	}
	etcd_txn_result_free(&res);
	free(k);
	free(v);
	return rc;
}

/* Is the namespace above `id` there? 0, -ENOENT, -ENOTDIR; mu held. */
static int parent_ok(struct be_etcd *b, const char *id)
{
	const char *slash = strrchr(id, '/');
	struct bent *p;

	if (!slash)
		return 0;
	p = bmap_find(b, id, (size_t)(slash - id));
	if (!p || !p->mod_rev)
		return -ENOENT;
	return p->ns ? 0 : -ENOTDIR;
}

static int b_mkdir(struct backend *be, const char *ns, mode_t mode)
{
	struct be_etcd *b = be_etcd_of(be);
	struct bent *n;
	int rc;

	pthread_mutex_lock(&b->mu);
	n = bmap_add(b, ns, strlen(ns));
	rc = !n ? -ENOMEM : n->mod_rev ? -EEXIST : parent_ok(b, ns);
	if (rc == 0) {
		n->mode = mode & 07777;
		n->uid = geteuid();
		n->gid = getegid();
		clock_gettime(CLOCK_REALTIME, &n->mtime);
	}
	pthread_mutex_unlock(&b->mu);
	return rc ? rc : ns_txn(b, ns, n, 0, true);
}

/* The namespace `ns` in *n, with its mod_revision in *was; mu taken. */
static int find_ns(struct be_etcd *b, const char *ns, struct bent **n,
		   int64_t *was)
{
	int rc = 0;

	pthread_mutex_lock(&b->mu);
	*n = bmap_find(b, ns, strlen(ns));
	if (!*n || !(*n)->mod_rev)
		rc = -ENOENT;
	else if (!(*n)->ns)
		rc = -ENOTDIR;
	else
		*was = (*n)->mod_rev;
	pthread_mutex_unlock(&b->mu);
	return rc;
}

static int b_rmdir(struct backend *be, const char *ns)
{
	struct be_etcd *b = be_etcd_of(be);
	int64_t was = 0, count = 0;
	struct bent *n;
	int rc = find_ns(b, ns, &n, &was);

	if (rc == 0)
		rc = count_children(b, ns, &count);
	if (rc == 0 && count)
		rc = -ENOTEMPTY;
	return rc ? rc : ns_txn(b, ns, n, was, false);
}

/* The namespace `to` can be replaced by a rename: absent or empty. */
static int rename_target(struct be_etcd *b, const char *to, struct bent **t,
			 int64_t *was)
{
	int64_t count = 0;
	int rc;

	pthread_mutex_lock(&b->mu);
	*t = bmap_add(b, to, strlen(to));
	rc = !*t ? -ENOMEM : parent_ok(b, to);
	if (rc == 0 && (*t)->mod_rev && !(*t)->ns)
		rc = -ENOTDIR;
	*was = rc == 0 ? (*t)->mod_rev : 0;
	pthread_mutex_unlock(&b->mu);
	if (rc == 0 && *was)
		rc = count_children(b, to, &count);
	return rc ? rc : count ? -ENOTEMPTY : 0;
}

static int b_ns_rename(struct backend *be, const char *from, const char *to)
{
	struct be_etcd *b = be_etcd_of(be);
	int64_t was = 0, twas = 0, count = 0;
	struct bent *n, *t;
	int rc = find_ns(b, from, &n, &was);

	if (rc == 0)
		rc = count_children(b, from, &count);
	if (rc == 0 && count)
		rc = -EXDEV;
	if (rc == 0)
		rc = rename_target(b, to, &t, &twas);
	if (rc)
		return rc;
	pthread_mutex_lock(&b->mu);
	t->mode = n->mode;
	t->uid = n->uid;
	t->gid = n->gid;
	t->mtime = n->mtime;
	pthread_mutex_unlock(&b->mu);
	/* two steps, each compared: a crash between them leaves both
	   names (an empty namespace), never none */
	rc = ns_txn(b, to, t, twas, true);
	return rc ? rc : ns_txn(b, from, n, was, false);
}

static int b_ns_set_meta(struct backend *be, const char *ns,
			 const struct timespec *mtime, int mode)
{
	struct be_etcd *b = be_etcd_of(be);
	int64_t was = 0;
	struct bent *n;
	int rc;

	if (ns[0] == '\0')
		return 0; /* the root has no entry: its times are the mount's */
	rc = find_ns(b, ns, &n, &was);
	if (rc)
		return rc == -ENOTDIR ? -ENOENT : rc;
	pthread_mutex_lock(&b->mu);
	if (mtime)
		n->mtime = *mtime;
	if (mode >= 0)
		n->mode = (uint32_t)mode & 07777;
	pthread_mutex_unlock(&b->mu);
	return ns_txn(b, ns, n, was, true);
}

static int b_ns_set_owner(struct backend *be, const char *ns, uint32_t uid,
			  uint32_t gid)
{
	struct be_etcd *b = be_etcd_of(be);
	int64_t was = 0;
	struct bent *n;
	int rc;

	if (ns[0] == '\0')
		return -EPERM;
	rc = find_ns(b, ns, &n, &was);
	if (rc)
		return rc == -ENOTDIR ? -ENOENT : rc;
	pthread_mutex_lock(&b->mu);
	if (uid != (uint32_t)-1)
		n->uid = uid;
	if (gid != (uint32_t)-1)
		n->gid = gid;
	pthread_mutex_unlock(&b->mu);
	return ns_txn(b, ns, n, was, true);
}

static void b_free(struct backend *be)
{
	struct be_etcd *b = be_etcd_of(be);

	if (!b)
		return;
	etcd_close(b->e);
	bmap_free(b);
	bcache_free(b);
	free(b->prefix);
	pthread_mutex_destroy(&b->mu);
	free(b);
}

const struct backend_ops be_etcd_ops = {
	.name = "etcd",
	.stage_new = b_stage_new,
	.stage_drop = b_stage_drop,
	.stage_sync = b_stage_sync,
	.publish = b_publish,
	.open = b_open,
	.stat = b_stat,
	.remove = b_remove,
	.move = b_move,
	.mkdir = b_mkdir,
	.rmdir = b_rmdir,
	.ns_rename = b_ns_rename,
	.ns_set_meta = b_ns_set_meta,
	.ns_set_owner = b_ns_set_owner,
	.list = b_list,
	.sync = b_zero,
	.spool_new = b_spool_new,
	.free = b_free,
	.stage_open = b_stage_open,
	.stage_link = b_stage_link,
	.sync_stages = b_notsup,
	.clean_stages = b_zero,
	.mkparents = b_mkparents,
	.tree_open = b_tree_open,
	.tree_parent = b_tree_parent,
	.tree_parent_put = b_tree_parent_put,
	.stage_place = b_stage_place,
	.commit = be_etcd_commit,
	.load = be_etcd_load,
	.reload = be_etcd_reload,
	.open_version = b_open_version,
};
