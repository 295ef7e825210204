/*
 * be_memory.c - the memory backend, for unit tests of versioning and CAS
 * without a disk: content lives in memfds, namespaces in a list. Not
 * durable (the store uses no journal with it): the named-stage and
 * scratch-tree ops of backend.h return -ENOTSUP. Lookups are linear: it is
 * meant for a few thousand records at most.
 */
#include "store_i.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct mem_item {
	char *id;
	int fd; /* -1 for a namespace */
	struct timespec mtime;
	mode_t mode;
	uid_t uid; /* namespaces: owner and group, as chown set them */
	gid_t gid;
};

struct be_mem {
	struct backend be;
	pthread_mutex_t mu; /* protects items */
	struct mem_item *items;
	size_t n, cap;
};

static struct be_mem *bm(struct backend *be)
{
	return (struct be_mem *)be;
}

/* Index of `id` or -1; mu held. */
static long find(struct be_mem *m, const char *id)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->items[i].id, id) == 0)
			return (long)i;
	return -1;
}

/* Does the namespace holding `id` exist? mu held. */
static bool parent_exists(struct be_mem *m, const char *id)
{
	const char *slash = strrchr(id, '/');
	char *dir;
	long i;

	if (!slash)
		return true;
	dir = strndup(id, (size_t)(slash - id));
	if (!dir)
		return false;
	i = find(m, dir);
	free(dir);
	return i >= 0 && m->items[i].fd < 0;
}

static int add(struct be_mem *m, const char *id, int fd, mode_t mode)
{
	struct mem_item *it;

	it = util_grow(m->items, &m->cap, m->n, sizeof(*it), 64);
	if (!it)
		return -ENOMEM;
	m->items = it;
	it = &m->items[m->n];
	it->id = strdup(id);
	if (!it->id)
		return -ENOMEM;
	it->fd = fd;
	it->mode = mode;
	it->uid = geteuid();
	it->gid = getegid();
	clock_gettime(CLOCK_REALTIME, &it->mtime);
	m->n++;
	return 0;
}

static void drop(struct be_mem *m, size_t i)
{
	if (m->items[i].fd >= 0)
		close(m->items[i].fd);
	free(m->items[i].id);
	m->items[i] = m->items[--m->n];
}

static int m_stage_new(struct backend *be, struct store_stage *st)
{
	st->fd = memfd_create("recfs-stage", MFD_CLOEXEC);
	st->name[0] = '\0';
	return st->fd < 0 ? -errno : 0;
}

static void m_stage_drop(struct backend *be, struct store_stage *st)
{
	if (st->fd >= 0)
		close(st->fd);
	st->fd = -1;
}

static int m_stage_sync(struct backend *be, struct store_stage *st)
{
	return 0;
}

static int m_publish(struct backend *be, struct store_stage *st, const char *id)
{
	struct be_mem *m = bm(be);
	int rc = 0, fd;
	long i;

	pthread_mutex_lock(&m->mu);
	i = find(m, id);
	if (!parent_exists(m, id)) {
		rc = -ENOENT;
	} else if (i >= 0 && m->items[i].fd < 0) {
		rc = -EISDIR;
	} else if ((fd = dup(st->fd)) < 0) {
		rc = -errno;
	} else if (i >= 0) {
		close(m->items[i].fd);
		m->items[i].fd = fd;
	} else if ((rc = add(m, id, fd, 0644)) != 0) {
		close(fd);
	}
	if (rc == 0)
		st->published = true;
	pthread_mutex_unlock(&m->mu);
	return rc;
}

/* The index of `id` in *i if it is a namespace (`dir`) or a record (not
   `dir`): 0, -ENOENT, -ENOTDIR or -EISDIR. mu held. */
static int find_kind(struct be_mem *m, const char *id, bool dir, long *i)
{
	*i = find(m, id);
	if (*i < 0)
		return -ENOENT;
	if ((m->items[*i].fd < 0) != dir)
		return dir ? -ENOTDIR : -EISDIR;
	return 0;
}

static int m_open(struct backend *be, const char *id, int *fd)
{
	struct be_mem *m = bm(be);
	long i;
	int rc;

	pthread_mutex_lock(&m->mu);
	rc = find_kind(m, id, false, &i);
	if (rc == 0 && (*fd = dup(m->items[i].fd)) < 0)
		rc = -errno;
	pthread_mutex_unlock(&m->mu);
	return rc;
}

static int m_stat(struct backend *be, const char *id, struct stat *st)
{
	struct be_mem *m = bm(be);
	int rc = 0;
	long i;

	if (id[0] == '\0') {
		memset(st, 0, sizeof(*st));
		st->st_mode = S_IFDIR | 0700;
		st->st_nlink = 2;
		return 0;
	}
	pthread_mutex_lock(&m->mu);
	i = find(m, id);
	if (i < 0) {
		rc = -ENOENT;
	} else if (m->items[i].fd >= 0) {
		if (fstat(m->items[i].fd, st) < 0)
			rc = -errno;
	} else {
		memset(st, 0, sizeof(*st));
		st->st_mode = S_IFDIR | m->items[i].mode;
		st->st_nlink = 2;
		st->st_mtim = m->items[i].mtime;
		st->st_uid = m->items[i].uid;
		st->st_gid = m->items[i].gid;
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

static int m_move(struct backend *be, const char *from, const char *to,
		  bool durable)
{
	struct be_mem *m = bm(be);
	int rc = 0;
	long i, j;
	char *dup_to;

	pthread_mutex_lock(&m->mu);
	i = find(m, from);
	j = find(m, to);
	if (i < 0) {
		rc = -ENOENT;
	} else if (!parent_exists(m, to)) {
		rc = -ENOENT;
	} else if (j >= 0 && (m->items[j].fd < 0) != (m->items[i].fd < 0)) {
		rc = m->items[j].fd < 0 ? -EISDIR : -ENOTDIR;
	} else if (!(dup_to = strdup(to))) {
		rc = -ENOMEM;
	} else {
		free(m->items[i].id);
		m->items[i].id = dup_to;
		if (j >= 0)
			drop(m, (size_t)j);
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

static int m_mkdir(struct backend *be, const char *ns, mode_t mode)
{
	struct be_mem *m = bm(be);
	int rc;

	pthread_mutex_lock(&m->mu);
	if (find(m, ns) >= 0)
		rc = -EEXIST;
	else if (!parent_exists(m, ns))
		rc = -ENOENT;
	else
		rc = add(m, ns, -1, mode & 07777);
	pthread_mutex_unlock(&m->mu);
	return rc;
}

/* Does anything live under namespace `ns`? mu held. */
static bool has_children(struct be_mem *m, const char *ns)
{
	size_t n = strlen(ns);

	for (size_t i = 0; i < m->n; i++)
		if (strncmp(m->items[i].id, ns, n) == 0 &&
		    m->items[i].id[n] == '/')
			return true;
	return false;
}

/* Drop record `id` (`dir` false) or empty namespace `id` (`dir` true). */
static int drop_item(struct backend *be, const char *id, bool dir)
{
	struct be_mem *m = bm(be);
	long i;
	int rc;

	pthread_mutex_lock(&m->mu);
	rc = find_kind(m, id, dir, &i);
	if (rc == 0 && dir && has_children(m, id))
		rc = -ENOTEMPTY;
	if (rc == 0)
		drop(m, (size_t)i);
	pthread_mutex_unlock(&m->mu);
	return rc;
}

static int m_remove(struct backend *be, const char *id)
{
	return drop_item(be, id, false);
}

static int m_rmdir(struct backend *be, const char *ns)
{
	return drop_item(be, ns, true);
}

static int m_ns_rename(struct backend *be, const char *from, const char *to)
{
	struct be_mem *m = bm(be);
	bool busy;

	pthread_mutex_lock(&m->mu);
	busy = has_children(m, from);
	pthread_mutex_unlock(&m->mu);
	return busy ? -EXDEV : m_move(be, from, to, false);
}

static int m_ns_set_meta(struct backend *be, const char *ns,
			 const struct timespec *mtime, int mode)
{
	struct be_mem *m = bm(be);
	int rc = 0;
	long i;

	pthread_mutex_lock(&m->mu);
	i = find(m, ns);
	if (i < 0 || m->items[i].fd >= 0) {
		rc = -ENOENT;
	} else {
		if (mtime)
			m->items[i].mtime = *mtime;
		if (mode >= 0)
			m->items[i].mode = (mode_t)mode & 07777;
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

/* Any owner is allowed: there is no file system to ask (tests). The
   root is not an item: it keeps its owner (-EPERM). */
static int m_ns_set_owner(struct backend *be, const char *ns, uint32_t uid,
			  uint32_t gid)
{
	struct be_mem *m = bm(be);
	int rc = 0;
	long i;

	if (ns[0] == '\0')
		return -EPERM;
	pthread_mutex_lock(&m->mu);
	i = find(m, ns);
	if (i < 0 || m->items[i].fd >= 0) {
		rc = -ENOENT;
	} else {
		if (uid != (uint32_t)-1)
			m->items[i].uid = uid;
		if (gid != (uint32_t)-1)
			m->items[i].gid = gid;
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

static int m_list(struct backend *be, const char *ns, store_list_cb cb,
		  void *arg)
{
	struct be_mem *m = bm(be);
	size_t n = strlen(ns);
	char **names = NULL;
	bool *dirs = NULL;
	size_t k = 0;
	int rc = 0;

	pthread_mutex_lock(&m->mu);
	names = calloc(m->n + 1, sizeof(*names));
	dirs = calloc(m->n + 1, sizeof(*dirs));
	if (!names || !dirs) {
		rc = -ENOMEM;
	} else {
		for (size_t i = 0; i < m->n; i++) {
			const char *id = m->items[i].id, *rest = id;

			if (n) {
				if (strncmp(id, ns, n) != 0 || id[n] != '/')
					continue;
				rest = id + n + 1;
			}
			if (strchr(rest, '/'))
				continue;
			names[k] = strdup(rest);
			dirs[k++] = m->items[i].fd < 0;
		}
	}
	pthread_mutex_unlock(&m->mu);
	for (size_t i = 0; i < k && rc == 0; i++)
		rc = names[i] ? cb(arg, names[i], dirs[i]) : -ENOMEM;
	for (size_t i = 0; i < k; i++)
		free(names[i]);
	free(names);
	free(dirs);
	return rc;
}

static int m_sync(struct backend *be)
{
	return 0;
}

/* No journal (be->journal false): no named stages, no mkparents for
   recovery; no scratch tree (be->tree false). See backend.h. */
static int m_stage_open(struct backend *be, const char *point, const char *name,
			int flags, int *fd)
{
	*fd = -1;
	return -ENOTSUP;
}

static int m_stage_link(struct backend *be, const char *name, int dirfd,
			const char *as)
{
	return -ENOTSUP;
}

static int m_sync_stages(struct backend *be)
{
	return -ENOTSUP;
}

static int m_clean_stages(struct backend *be)
{
	return 0; /* none: stages die with their memfd */
}

static int m_mkparents(struct backend *be, const char *id)
{
	return -ENOTSUP;
}

/* The core takes a memfd itself. */
static int m_spool_new(struct backend *be, int *fd)
{
	*fd = -1;
	return -ENOTSUP;
}

static int m_tree_open(struct backend *be, int root, const char *point,
		       const char *path, int flags, mode_t mode)
{
	return -ENOTSUP;
}

static int m_tree_parent(struct backend *be, int root, const char *path,
			 int *pfd, const char **leaf)
{
	*pfd = -1;
	return -ENOTSUP;
}

static void m_tree_parent_put(struct backend *be, int root, int pfd)
{
}

static int m_stage_place(struct backend *be, const char *point,
			 struct store_stage *st, int pfd, const char *leaf,
			 unsigned flags)
{
	return -ENOTSUP;
}

static void m_free(struct backend *be)
{
	struct be_mem *m = bm(be);

	if (!m)
		return;
	while (m->n)
		drop(m, m->n - 1);
	free(m->items);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

static const struct backend_ops mem_ops = {
	.name = "memory",
	.stage_new = m_stage_new,
	.stage_drop = m_stage_drop,
	.stage_sync = m_stage_sync,
	.publish = m_publish,
	.open = m_open,
	.stat = m_stat,
	.remove = m_remove,
	.move = m_move,
	.mkdir = m_mkdir,
	.rmdir = m_rmdir,
	.ns_rename = m_ns_rename,
	.ns_set_meta = m_ns_set_meta,
	.ns_set_owner = m_ns_set_owner,
	.list = m_list,
	.sync = m_sync,
	.spool_new = m_spool_new,
	.free = m_free,
	.stage_open = m_stage_open,
	.stage_link = m_stage_link,
	.sync_stages = m_sync_stages,
	.clean_stages = m_clean_stages,
	.mkparents = m_mkparents,
	.tree_open = m_tree_open,
	.tree_parent = m_tree_parent,
	.tree_parent_put = m_tree_parent_put,
	.stage_place = m_stage_place,
};

int be_memory_open(struct backend **out, bool cas)
{
	struct be_mem *m = calloc(1, sizeof(*m));

	*out = NULL;
	if (!m)
		return -ENOMEM;
	m->be.ops = &mem_ops;
	m->be.cas = cas;
	m->be.durable = false;
	m->be.journal = false;
	m->be.tree = false;
	pthread_mutex_init(&m->mu, NULL);
	*out = &m->be;
	return 0;
}
