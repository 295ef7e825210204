/*
 * history_odb.c - the writer's object databases (hist_writer_odb, opened
 * again after packs were removed: hist_reopen_odbs) and their pack
 * backend (hist_pack_packs): libgit2's, listing objects/pack again only
 * when that directory changed.
 */
#include "hist_i.h"
#include <git2/sys/odb_backend.h>
#include <git2/sys/repository.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * libgit2 refreshes every backend when an object is not found, and the
 * writer asks for every object it writes (to skip those that exist), so
 * the pack backend listed objects/pack for each new blob and tree. This
 * wrapper lists it only when the directory changed (its mtime and ctime),
 * which a pack added or removed by anyone does.
 */
struct cpack {
	git_odb_backend parent;
	git_odb_backend *in;
	int dirfd; /* objects/pack */
	struct timespec mtime, ctime;
	bool seen;
	const uint64_t *gen; /* h->pack_gen: packs written by the writer */
	uint64_t gen_seen;
};

#define IN(b) (((struct cpack *)(b))->in)

static int cp_read(void **data, size_t *len, git_object_t *type,
		   git_odb_backend *b, const git_oid *oid)
{
	return IN(b)->read(data, len, type, IN(b), oid);
}

static int cp_read_prefix(git_oid *out, void **data, size_t *len,
			  git_object_t *type, git_odb_backend *b,
			  const git_oid *prefix, size_t n)
{
	return IN(b)->read_prefix(out, data, len, type, IN(b), prefix, n);
}

static int cp_read_header(size_t *len, git_object_t *type, git_odb_backend *b,
			  const git_oid *oid)
{
	return IN(b)->read_header(len, type, IN(b), oid);
}

static int cp_exists(git_odb_backend *b, const git_oid *oid)
{
	return IN(b)->exists(IN(b), oid);
}

static int cp_exists_prefix(git_oid *out, git_odb_backend *b,
			    const git_oid *prefix, size_t n)
{
	return IN(b)->exists_prefix(out, IN(b), prefix, n);
}

static int cp_foreach(git_odb_backend *b, git_odb_foreach_cb cb, void *arg)
{
	return IN(b)->foreach (IN(b), cb, arg);
}

static int cp_freshen(git_odb_backend *b, const git_oid *oid)
{
	return IN(b)->freshen(IN(b), oid);
}

static int cp_refresh(git_odb_backend *b)
{
	struct cpack *cp = (struct cpack *)b;
	struct stat st;

	if (cp->dirfd >= 0 && fstat(cp->dirfd, &st) == 0) {
		if (cp->seen &&
		    !memcmp(&st.st_mtim, &cp->mtime, sizeof(st.st_mtim)) &&
		    !memcmp(&st.st_ctim, &cp->ctime, sizeof(st.st_ctim)))
			return 0;
		cp->mtime = st.st_mtim;
		cp->ctime = st.st_ctim;
		cp->seen = true;
		cp->gen_seen = *cp->gen;
	}
	return cp->in->refresh(cp->in);
}

static void cp_free(git_odb_backend *b)
{
	struct cpack *cp = (struct cpack *)b;

	cp->in->free(cp->in);
	if (cp->dirfd >= 0)
		close(cp->dirfd);
	free(cp);
}

int hist_pack_packs(git_odb_backend **out, const char *objects, int repo_fd,
		    const uint64_t *gen)
{
	struct cpack *cp = calloc(1, sizeof(*cp));
	int rc;

	*out = NULL;
	if (!cp)
		return -1;
	rc = git_odb_backend_pack(&cp->in, objects);
	if (rc < 0) {
		free(cp);
		return rc;
	}
	/* without the directory: every refresh lists it, as before */
	cp->dirfd = openat(repo_fd, "objects/pack",
			   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	cp->gen = gen;
	cp->parent.version = GIT_ODB_BACKEND_VERSION;
	cp->parent.read = cp->in->read ? cp_read : NULL;
	cp->parent.read_prefix = cp->in->read_prefix ? cp_read_prefix : NULL;
	cp->parent.read_header = cp->in->read_header ? cp_read_header : NULL;
	cp->parent.exists = cp->in->exists ? cp_exists : NULL;
	cp->parent.exists_prefix =
		cp->in->exists_prefix ? cp_exists_prefix : NULL;
	cp->parent.foreach = cp->in->foreach ? cp_foreach : NULL;
	cp->parent.freshen = cp->in->freshen ? cp_freshen : NULL;
	cp->parent.refresh = cp->in->refresh ? cp_refresh : NULL;
	cp->parent.free = cp_free;
	*out = &cp->parent;
	return 0;
}

/* A loose backend with the store's modes (directories 0700, files 0600,
   whatever the umask) and no fsync (see the top). */
static int loose_backend(git_odb *odb, const char *objects, int prio)
{
	git_odb_backend *loose = NULL;
	int rc = git_odb_backend_loose(&loose, objects, -1, 0, 0700, 0600);

	if (rc == 0 && (rc = git_odb_add_backend(odb, loose, prio)) < 0)
		loose->free(loose);
	return rc;
}

/*
 * The writer's object databases: the mempack that holds a batch's
 * objects until they are written as one pack (history_pack.c), loose
 * objects and packs; and one of loose objects alone, for the blobs too
 * large to hold in memory (*big).
 */
int hist_writer_odb(git_repository *repo, const char *path, int repo_fd,
		    const uint64_t *gen, git_odb_backend **mempack,
		    git_odb_backend **packs, git_odb **big)
{
	git_odb_backend *pack = NULL, *mem = NULL, *in_mem = NULL,
			*in_pack = NULL;
	git_odb *odb = NULL, *b = NULL;
	char *objects = hist_join(path, "objects");
	int rc;

	if (!objects)
		return -ENOMEM;
	rc = git_odb_new(&odb);
	if (rc == 0)
		rc = git_odb_new(&b);
	if (rc == 0)
		rc = loose_backend(b, objects, 1);
	if (rc == 0)
		rc = hist_pack_backend(&mem);
	if (rc == 0 && (rc = git_odb_add_backend(odb, mem, 3)) == 0) {
		in_mem = mem; /* the odb's now */
		mem = NULL;
	}
	if (rc == 0)
		rc = loose_backend(odb, objects, 2);
	if (rc == 0)
		rc = hist_pack_packs(&pack, objects, repo_fd, gen);
	if (rc == 0 && (rc = git_odb_add_backend(odb, pack, 1)) == 0) {
		in_pack = pack;
		pack = NULL;
	}
	if (rc == 0)
		rc = git_repository_set_odb(repo, odb);
	/* only now: on failure the old ones stay in use */
	if (rc == 0) {
		*mempack = in_mem;
		*packs = in_pack;
		git_odb_free(*big);
		*big = b;
		b = NULL;
	}
	if (pack)
		pack->free(pack);
	if (mem)
		mem->free(mem);
	git_odb_free(odb);
	git_odb_free(b);
	free(objects);
	return rc;
}

int hist_reopen_odbs(struct hist *h)
{
	char *objects = hist_join(h->path, "objects");
	git_odb *odb = NULL;
	int rc;

	if (!objects)
		return -ENOMEM;
	rc = hist_writer_odb(h->repo, h->path, h->repo_fd, &h->pack_gen,
			     &h->mempack, &h->pack_backend, &h->big_odb);
	if (rc == 0)
		rc = git_odb_open(&odb, objects);
	if (rc == 0) {
		pthread_mutex_lock(&h->rmu);
		rc = git_repository_set_odb(h->rrepo, odb);
		pthread_mutex_unlock(&h->rmu);
	}
	git_odb_free(odb);
	free(objects);
	return rc < 0 ? hist_git_error(rc, "opening the objects again", NULL)
		      : rc;
}
