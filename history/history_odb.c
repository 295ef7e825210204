/*
 * history_odb.c - the writer's pack backend (hist_pack_packs): libgit2's,
 * listing objects/pack again only when that directory changed.
 */
#include "hist_i.h"
#include <git2/sys/odb_backend.h>

#include <fcntl.h>
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

int hist_pack_packs(git_odb_backend **out, const char *objects, int repo_fd)
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

void hist_pack_packs_changed(git_odb_backend *b)
{
	if (b)
		((struct cpack *)b)->seen = false;
}
