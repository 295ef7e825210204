/*
 * history_pack.c - the history's objects as packs: each batch's objects
 * (blobs, trees, the commit, the side branch's) are written as one pack
 * instead of one loose object file each, and the number of packs is kept
 * small by merging the smaller ones.
 *
 * Why: a loose object is a file of its own (a temp file, a link into the
 * fan-out directory, an unlink), and the inode work of that was most of
 * the writer's CPU (measured: 0.3 ms per version, mostly in ext4's inode
 * allocation). A batch's objects go to a mempack first (h->mempack, the
 * first backend of the writer's object database), and this file writes
 * them out with git's indexer as objects/pack/pack-HASH.{pack,idx},
 * mode 0600. Blobs larger than HIST_PACK_BLOB_MAX are not held in memory:
 * the batch streams them as loose objects (history_batch.c).
 *
 * Durability: like the loose objects before, the pack is written without
 * fsync and made durable by the batch's syncfs, before the ref names any
 * of its objects. A batch that fails after the pack is in place leaves
 * unreferenced objects in it, as loose objects were left before; the next
 * attempt finds them there (git_odb_write skips objects that exist).
 *
 * Merging: with more than PACK_MAX packs, the smaller ones that break a
 * geometric progression (factor 2 in object counts, the rule of `git
 * repack --geometric=2`), at most MERGE_MAX_OBJECTS objects of them (the
 * memory of git's indexer), are written as one new pack, which is made
 * durable (syncfs) before the old ones are removed (.idx first, then
 * .pack, so no index names a missing pack). A crash in between leaves
 * objects twice, never missing. The object databases are opened again
 * afterwards, so that no process keeps the removed packs open.
 */
#include "hist_i.h"
#include "bytes.h"
#include <git2/sys/mempack.h>
#include <git2/sys/odb_backend.h>
#include "io.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <zlib.h>

#define PACK_MAX 16
#define PACK_FACTOR 2
/* A merge writes at most this many objects: git's indexer holds some
   100 bytes an object, and a batch of a million small files makes about
   twenty packs of equal size, all of which the geometric rule merges. */
#define MERGE_MAX_OBJECTS ((uint64_t)1 << 17)
#define PACK_NAME_MAX 64 /* "pack-" + 40 hex + ".pack" */
#define READ_BUF ((size_t)1 << 20)

/* ---- one pack per batch ------------------------------------------------- */

static char *pack_dir(const struct hist *h)
{
	char *p = NULL;

	return asprintf(&p, "%s/objects/pack", h->path) < 0 ? NULL : p;
}

/*
 * A pack written as a stream into git's indexer (which writes the .pack
 * and its .idx in objects/pack, mode 0600, and checks every object): the
 * header, the entries, and the SHA-1 trailer computed here. The packs
 * are made here rather than with git_packbuilder because its delta
 * search (a window of 10 objects, not configurable) cost more CPU than
 * the loose objects did; `git gc` finds the deltas later.
 */
struct pstream {
	git_indexer *ix;
	EVP_MD_CTX *md;
	git_indexer_progress st;
};

static int ps_add(struct pstream *ps, const void *p, size_t n)
{
	int rc;

	if (!EVP_DigestUpdate(ps->md, p, n))
		return -ENOMEM;
	rc = git_indexer_append(ps->ix, p, n, &ps->st);
	return rc < 0 ? hist_git_error(rc, "writing a pack", NULL) : 0;
}

static int ps_open(struct hist *h, struct pstream *ps, uint32_t count)
{
	git_indexer_options o;
	uint8_t hdr[12] = {'P', 'A', 'C', 'K'};
	char *dir = pack_dir(h);
	int rc;

	memset(ps, 0, sizeof(*ps));
	if (!dir)
		return -ENOMEM;
	rc = git_indexer_options_init(&o, GIT_INDEXER_OPTIONS_VERSION);
	if (rc == 0)
		rc = git_indexer_new(&ps->ix, dir, 0600, NULL, &o);
	free(dir);
	if (rc < 0)
		return hist_git_error(rc, "writing a pack", NULL);
	ps->md = EVP_MD_CTX_new();
	if (!ps->md || !EVP_DigestInit_ex(ps->md, EVP_sha1(), NULL))
		return -ENOMEM;
	wr_be32(hdr + 4, 2);
	wr_be32(hdr + 8, count);
	return ps_add(ps, hdr, sizeof(hdr));
}

/* The trailer, and the pack and its index into place. */
static int ps_commit(struct pstream *ps)
{
	unsigned char sum[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	int rc;

	if (!EVP_DigestFinal_ex(ps->md, sum, &len) || len != GIT_OID_RAWSZ)
		return -EIO;
	rc = git_indexer_append(ps->ix, sum, len, &ps->st);
	if (rc == 0)
		rc = git_indexer_commit(ps->ix, &ps->st);
	return rc < 0 ? hist_git_error(rc, "writing a pack", NULL) : 0;
}

static void ps_free(struct pstream *ps)
{
	git_indexer_free(ps->ix);
	EVP_MD_CTX_free(ps->md);
}

struct oids {
	git_oid *v;
	size_t n, cap;
};

static int collect_oid(const git_oid *id, void *arg)
{
	struct oids *o = arg;

	git_oid *v = util_grow(o->v, &o->cap, o->n, sizeof(*v), 256);

	if (!v)
		return -ENOMEM;
	o->v = v;
	o->v[o->n++] = *id;
	return 0;
}

/* One object as a pack entry: type and size, then its zlib stream. */
static int put_object(struct pstream *ps, git_object_t type, const void *data,
		      size_t len)
{
	uint8_t hdr[16];
	size_t n = 0, zlen = compressBound((uLong)len);
	uint64_t left = len >> 4;
	Bytef *z = malloc(zlen);
	int rc;

	if (!z)
		return -ENOMEM;
	hdr[n++] =
		(uint8_t)((left ? 0x80 : 0) | (unsigned)type << 4 | (len & 15));
	while (left) {
		hdr[n++] = (uint8_t)((left > 0x7f ? 0x80 : 0) | (left & 0x7f));
		left >>= 7;
	}
	/* the speed of libgit2's loose objects (Z_BEST_SPEED) */
	rc = compress2(z, &zlen, data, (uLong)len, Z_BEST_SPEED) == Z_OK
		     ? 0
		     : -ENOMEM;
	if (rc == 0)
		rc = ps_add(ps, hdr, n);
	if (rc == 0)
		rc = ps_add(ps, z, zlen);
	free(z);
	return rc;
}

/*
 * The batch's backend: a mempack (libgit2 1.5's has no foreach) and the
 * list of what was written to it.
 */
struct bpack {
	git_odb_backend parent;
	git_odb_backend *mp;
	struct oids o;
	uint64_t bytes; /* of the objects in mp */
};

static int bp_read(void **data, size_t *len, git_object_t *type,
		   git_odb_backend *b, const git_oid *oid)
{
	git_odb_backend *mp = ((struct bpack *)b)->mp;

	return mp->read(data, len, type, mp, oid);
}

static int bp_read_header(size_t *len, git_object_t *type, git_odb_backend *b,
			  const git_oid *oid)
{
	git_odb_backend *mp = ((struct bpack *)b)->mp;

	return mp->read_header(len, type, mp, oid);
}

static int bp_exists(git_odb_backend *b, const git_oid *oid)
{
	git_odb_backend *mp = ((struct bpack *)b)->mp;

	return mp->exists(mp, oid);
}

static int bp_write(git_odb_backend *b, const git_oid *oid, const void *data,
		    size_t len, git_object_t type)
{
	struct bpack *bp = (struct bpack *)b;
	int rc;

	if (bp->mp->exists(bp->mp, oid))
		return 0;
	rc = bp->mp->write(bp->mp, oid, data, len, type);
	if (rc == 0 && collect_oid(oid, &bp->o)) {
		git_error_set_oom();
		rc = -1;
	}
	if (rc == 0)
		bp->bytes += len;
	return rc;
}

static void bp_free(git_odb_backend *b)
{
	struct bpack *bp = (struct bpack *)b;

	bp->mp->free(bp->mp);
	free(bp->o.v);
	free(bp);
}

int hist_pack_backend(git_odb_backend **out)
{
	struct bpack *bp = calloc(1, sizeof(*bp));
	int rc;

	*out = NULL;
	if (!bp)
		return -1;
	rc = git_mempack_new(&bp->mp);
	if (rc < 0) {
		free(bp);
		return rc;
	}
	bp->parent.version = GIT_ODB_BACKEND_VERSION;
	bp->parent.read = bp_read;
	bp->parent.read_header = bp_read_header;
	bp->parent.exists = bp_exists;
	bp->parent.write = bp_write;
	bp->parent.free = bp_free;
	*out = &bp->parent;
	return 0;
}

/* The objects of the batch's backend, as one pack. */
static int write_mempack(struct hist *h)
{
	struct bpack *bp = (struct bpack *)h->mempack;
	git_odb_backend *mp = bp->mp;
	struct pstream ps = {0};
	struct oids o = bp->o;
	int rc = 0;

	if (rc == 0 && o.n == 0)
		goto out; /* every object existed already */
	if (rc == 0)
		rc = ps_open(h, &ps, (uint32_t)o.n);
	for (size_t i = 0; rc == 0 && i < o.n; i++) {
		git_object_t type;
		void *data = NULL;
		size_t len;

		rc = mp->read(&data, &len, &type, mp, &o.v[i]);
		if (rc < 0) {
			rc = hist_git_error(rc, "reading a new object", NULL);
			break;
		}
		rc = put_object(&ps, type, data, len);
		git_odb_backend_data_free(mp, data);
	}
	if (rc == 0)
		rc = ps_commit(&ps);
	/* seen at the next lookup, whatever the directory's times say (they
	   may not have moved: coarse clock) */
	h->pack_gen++; /* seen at the next lookup (history_odb.c) */
	if (rc == 0 && h->packs)
		h->packs++;
out:
	ps_free(&ps);
	return rc;
}

int hist_pack_write(struct hist *h)
{
	int rc;

	if (!h->mempack)
		return 0;
	rc = io_point(h->o.io, "hist.pack");
	if (rc == 0)
		rc = write_mempack(h);
	hist_pack_reset(h);
	return rc;
}

void hist_pack_reset(struct hist *h)
{
	struct bpack *bp = (struct bpack *)h->mempack;

	if (!bp)
		return;
	git_mempack_reset(bp->mp);
	bp->o.n = 0;
	bp->bytes = 0;
}

uint64_t hist_pack_bytes(const struct hist *h)
{
	return h->mempack ? ((const struct bpack *)h->mempack)->bytes : 0;
}

uint64_t hist_pack_mem_max(const struct hist *h)
{
	return h->o.pack_mem_max ? h->o.pack_mem_max : HIST_PACK_MEM_MAX;
}

int hist_pack_clean(struct hist *h)
{
	struct dirent *de;
	DIR *dir = NULL;
	int dirfd, rc;

	dirfd = openat(h->repo_fd, "objects/pack",
		       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dirfd < 0)
		return errno == ENOENT ? 0 : -errno;
	rc = util_opendir_fd(dirfd, &dir);
	while (rc == 0 && (de = readdir(dir)) != NULL) {
		size_t len = strlen(de->d_name);

		/* the indexer's temp pack and its index's lock file */
		if (strncmp(de->d_name, "pack_git2_", 10) &&
		    (len < 9 || strcmp(de->d_name + len - 9, ".idx.lock")))
			continue;
		if (unlinkat(dirfd, de->d_name, 0) == 0)
			rlog_info(
				"%s: removed objects/pack/%s, left by a crash",
				h->path, de->d_name);
	}
	if (dir)
		closedir(dir);
	close(dirfd);
	return rc;
}

/* ---- keeping the number of packs small ------------------------------------
 */

struct pk {
	char name[PACK_NAME_MAX]; /* without the suffix */
	uint32_t count;		  /* objects */
};

struct pks {
	struct pk *v;
	size_t n, cap;
};

static int get_be32(int fd, off_t off, uint32_t *out)
{
	uint8_t b[4];

	if (pread(fd, b, 4, off) != 4)
		return -EIO;
	*out = rd_be32(b);
	return 0;
}

/* The object count of a version 2 index (the last fan-out entry). */
static int idx_count(int dirfd, const char *idx, uint32_t *count)
{
	uint32_t magic = 0, version = 0;
	int fd = openat(dirfd, idx, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -errno;
	rc = get_be32(fd, 0, &magic);
	if (rc == 0)
		rc = get_be32(fd, 4, &version);
	if (rc == 0 && (magic != 0xff744f63 || version != 2))
		rc = -EPROTO;
	if (rc == 0)
		rc = get_be32(fd, 8 + 255 * 4, count);
	close(fd);
	return rc;
}

/* Is NAME.pack a pack we may merge: with a version 2 index and no .keep? */
static bool mergeable(int dirfd, const char *name, uint32_t *count)
{
	char p[PACK_NAME_MAX + 8];
	struct stat st;

	snprintf(p, sizeof(p), "%s.keep", name);
	if (fstatat(dirfd, p, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return false;
	snprintf(p, sizeof(p), "%s.idx", name);
	return idx_count(dirfd, p, count) == 0;
}

static int pks_add(struct pks *ps, const char *name, size_t len, uint32_t count)
{
	struct pk *v = util_grow(ps->v, &ps->cap, ps->n, sizeof(*v), 32);

	if (!v)
		return -ENOMEM;
	ps->v = v;
	memcpy(ps->v[ps->n].name, name, len);
	ps->v[ps->n].name[len] = '\0';
	ps->v[ps->n++].count = count;
	return 0;
}

/* The packs of objects/pack that can be merged. */
static int list_packs(int dirfd, struct pks *ps)
{
	struct dirent *de;
	DIR *dir = NULL;
	int rc = util_opendir_fd(dirfd, &dir);

	while (rc == 0 && (de = readdir(dir)) != NULL) {
		size_t len = strlen(de->d_name);
		uint32_t count = 0;

		if (len < 6 || len >= PACK_NAME_MAX ||
		    strncmp(de->d_name, "pack-", 5) ||
		    strcmp(de->d_name + len - 5, ".pack"))
			continue;
		de->d_name[len - 5] = '\0';
		if (mergeable(dirfd, de->d_name, &count))
			rc = pks_add(ps, de->d_name, len - 5, count);
	}
	if (dir)
		closedir(dir);
	return rc;
}

static int cmp_count(const void *a, const void *b)
{
	uint32_t x = ((const struct pk *)a)->count;
	uint32_t y = ((const struct pk *)b)->count;

	return x < y ? -1 : x > y;
}

/*
 * How many of the packs (sorted by object count) to merge: those below
 * the point where the counts stop growing geometrically, and then those
 * above that the merged pack would outgrow (git repack --geometric).
 */
static size_t geometric_split(const struct pk *v, size_t n)
{
	uint64_t total = 0;
	size_t i, split;

	for (i = n - 1; i > 0; i--)
		if ((uint64_t)v[i].count <
		    PACK_FACTOR * (uint64_t)v[i - 1].count)
			break;
	split = i ? i + 1 : 0;
	for (i = 0; i < split; i++)
		total += v[i].count;
	for (i = split; i < n; i++) {
		if (total * PACK_FACTOR <= v[i].count)
			break;
		total += v[i].count;
		split = i + 1;
	}
	/* the smallest of them, as many as a merge may write */
	for (i = 0, total = 0; i < split; i++) {
		if (total + v[i].count > MERGE_MAX_OBJECTS)
			return i;
		total += v[i].count;
	}
	return split;
}

/* Remove NAME.idx, then NAME.pack. */
static int remove_pack(struct hist *h, int dirfd, const char *name)
{
	char p[PACK_NAME_MAX + 8];
	int rc;

	snprintf(p, sizeof(p), "%s.idx", name);
	rc = io_unlinkat(h->o.io, "hist.pack.unlink", dirfd, p, 0);
	if (rc == 0 || rc == -ENOENT) {
		snprintf(p, sizeof(p), "%s.pack", name);
		rc = io_unlinkat(h->o.io, "hist.pack.unlink", dirfd, p, 0);
	}
	return rc == -ENOENT ? 0 : rc;
}

/* Open NAME.pack; its object count and size. */
static int open_pack(int dirfd, const char *name, int *fd, uint32_t *count,
		     uint64_t *size)
{
	char p[PACK_NAME_MAX + 8];
	struct stat st;
	uint32_t magic = 0, version = 0;
	int rc;

	snprintf(p, sizeof(p), "%s.pack", name);
	*fd = openat(dirfd, p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (*fd < 0)
		return -errno;
	rc = fstat(*fd, &st) < 0 ? -errno : 0;
	if (rc == 0)
		rc = get_be32(*fd, 0, &magic);
	if (rc == 0)
		rc = get_be32(*fd, 4, &version);
	if (rc == 0)
		rc = get_be32(*fd, 8, count);
	if (rc == 0 && (magic != 0x5041434b || version != 2 ||
			st.st_size < 12 + GIT_OID_RAWSZ))
		rc = -EPROTO;
	*size = (uint64_t)st.st_size;
	return rc;
}

/* The entries of a pack (between header and trailer), as they are: the
   offsets of its deltas are relative, so they stay right. */
static int copy_entries(struct hist *h, struct pstream *ps, int fd,
			uint64_t size, uint8_t *buf)
{
	uint64_t off = 12, end = size - GIT_OID_RAWSZ;
	int rc = 0;

	while (rc == 0 && off < end) {
		size_t want =
			end - off < READ_BUF ? (size_t)(end - off) : READ_BUF;
		ssize_t n = io_pread_all(h->o.io, "hist.pack.read", fd, buf,
					 want, (off_t)off);

		rc = n < 0 ? (int)n : (size_t)n != want ? -EIO : 0;
		if (rc == 0)
			rc = ps_add(ps, buf, want);
		off += want;
	}
	return rc;
}

/* The object IDs of NAME.idx (version 2), sorted; the caller frees. */
static int idx_oids(struct hist *h, int dirfd, const char *name, uint8_t **out,
		    uint32_t *count)
{
	char p[PACK_NAME_MAX + 8];
	uint8_t *oids = NULL;
	size_t len;
	int fd, rc;

	*out = NULL;
	snprintf(p, sizeof(p), "%s.idx", name);
	fd = openat(dirfd, p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = get_be32(fd, 8 + 255 * 4, count);
	len = (size_t)*count * GIT_OID_RAWSZ;
	if (rc == 0 && !(oids = malloc(len ? len : 1)))
		rc = -ENOMEM;
	if (rc == 0) {
		ssize_t n = io_pread_all(h->o.io, "hist.pack.read", fd, oids,
					 len, 8 + 256 * 4);

		rc = n < 0 ? (int)n : (size_t)n != len ? -EIO : 0;
	}
	close(fd);
	if (rc)
		free(oids);
	else
		*out = oids;
	return rc;
}

static int cmp_oid(const void *a, const void *b)
{
	return memcmp(a, b, GIT_OID_RAWSZ);
}

enum { M_SKIP, M_COPY, M_DROP };

/*
 * What to do with each of the n packs (sorted by object count) so that
 * the merged pack holds each object once (git's indexer refuses a pack
 * with an object twice; a merge whose old packs could not be removed
 * leaves them): from the largest down, a pack that shares no object with
 * the packs copied so far is copied (M_COPY); one whose objects all are
 * in those is removed with them (M_DROP); one that shares some is left
 * as it is (M_SKIP).
 */
static int plan(struct hist *h, int dirfd, const struct pks *ps, size_t n,
		uint8_t *what)
{
	uint8_t **oids = calloc(n, sizeof(*oids));
	uint32_t *count = calloc(n, sizeof(*count));
	int rc = oids && count ? 0 : -ENOMEM;

	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = idx_oids(h, dirfd, ps->v[i].name, &oids[i], &count[i]);
	for (size_t i = n; rc == 0 && i-- > 0;) {
		uint32_t dups = 0;

		for (uint32_t k = 0; k < count[i]; k++) {
			const uint8_t *o = oids[i] + (size_t)k * GIT_OID_RAWSZ;

			for (size_t j = i + 1; j < n; j++)
				if (what[j] == M_COPY &&
				    bsearch(o, oids[j], count[j], GIT_OID_RAWSZ,
					    cmp_oid)) {
					dups++;
					break;
				}
		}
		what[i] = dups == 0	     ? M_COPY
			  : dups == count[i] ? M_DROP
					     : M_SKIP;
	}
	for (size_t i = 0; oids && i < n; i++)
		free(oids[i]);
	free(oids);
	free(count);
	return rc;
}

/* Copy the packs marked M_COPY into one new pack, `out`. */
static int concat(struct hist *h, int dirfd, const struct pks *ps, size_t n,
		  const uint8_t *what, struct pstream *out)
{
	uint8_t *buf = malloc(READ_BUF);
	uint64_t *size = calloc(n, sizeof(*size));
	int *fd = malloc(n * sizeof(*fd));
	uint64_t total = 0;
	int rc = buf && size && fd ? 0 : -ENOMEM;

	for (size_t i = 0; fd && i < n; i++)
		fd[i] = -1;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		uint32_t count = 0;

		if (what[i] != M_COPY)
			continue;
		rc = open_pack(dirfd, ps->v[i].name, &fd[i], &count, &size[i]);
		total += count;
	}
	if (rc == 0 && total > UINT32_MAX)
		rc = -EFBIG;
	if (rc == 0)
		rc = ps_open(h, out, (uint32_t)total);
	for (size_t i = 0; rc == 0 && i < n; i++)
		if (what[i] == M_COPY)
			rc = copy_entries(h, out, fd[i], size[i], buf);
	if (rc == 0)
		rc = ps_commit(out);
	for (size_t i = 0; fd && i < n; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	free(fd);
	free(size);
	free(buf);
	return rc;
}

/* Merge the first n packs of ps into one, then remove them. */
static int merge(struct hist *h, int dirfd, const struct pks *ps, size_t n)
{
	struct pstream out = {0};
	uint8_t *what = calloc(n, 1);
	const char *made = NULL;
	int rc = what ? plan(h, dirfd, ps, n, what) : -ENOMEM;

	if (rc == 0)
		rc = concat(h, dirfd, ps, n, what, &out);
	/* the new pack durable before the old ones go */
	if (rc == 0)
		rc = io_syncfs(h->o.io, "hist.pack.sync", h->repo_fd);
	if (rc == 0)
		made = git_indexer_name(out.ix);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (what[i] == M_SKIP ||
		    (made && !strcmp(ps->v[i].name + 5, made)))
			continue; /* kept, or the same objects as before */
		rc = remove_pack(h, dirfd, ps->v[i].name);
	}
	if (rc == 0)
		rc = io_fsync(h->o.io, "hist.pack.dirsync", dirfd);
	ps_free(&out);
	free(what);
	return rc;
}

int hist_pack_tidy(struct hist *h, bool *reopen)
{
	struct pks ps = {0};
	size_t n = 0;
	int dirfd, rc;

	/* not a directory listing per batch: only when there may be too
	   many (what others add is seen at the next listing) */
	if (h->packs && h->packs <= PACK_MAX)
		return 0;
	dirfd = openat(h->repo_fd, "objects/pack",
		       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	rc = list_packs(dirfd, &ps);
	/* as many as listed (at least 1: known), less those merged into
	   one; 0 (unknown) if the merge fails: the next batch lists again */
	h->packs = rc == 0 ? (unsigned)(ps.n ? ps.n : 1) : 0;
	if (rc == 0 && ps.n > PACK_MAX) {
		qsort(ps.v, ps.n, sizeof(*ps.v), cmp_count);
		n = geometric_split(ps.v, ps.n);
	}
	if (rc == 0 && n >= 2) {
		rc = merge(h, dirfd, &ps, n);
		h->packs = rc == 0 ? (unsigned)(ps.n - n + 1) : 0;
	}
	/* whatever was removed: no stale pack stays open (the caller opens
	   the object databases again) */
	*reopen = n >= 2;
	if (rc)
		rlog_warn("%s: cannot merge %zu of its %zu packs: %s (tried "
			  "again after the next batch)",
			  h->path, n, ps.n, strerror(-rc));
	free(ps.v);
	close(dirfd);
	return rc;
}
