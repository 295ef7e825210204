/*
 * history_index.c - the index of the history: (ID, version) -> commit,
 * blob and metadata, in memory, and its copy in STORE/history.idx.
 *
 * In memory: every version in one array in revision order (in chunks, so
 * that it never moves), a commit table, and a hash table of records each
 * listing the positions of its versions. Nothing is ever removed.
 *
 * On disk, history.idx: a 16-byte header ("RECFSH01", u64 0), then one
 * frame per git commit, framed and checksummed like journal records
 * (jnl_frame_encode, seq = the commit's Recfs-Upto). Payload (LE):
 *	u8 1, commit oid[20], u32 count, then per version:
 *	u16 id_len, id, u64 version, u64 revision, u64 size, u64 time_ns,
 *	u32 uid, u32 pid, u8 flags, blob[20], hash[16], u8 comm_len, comm
 * It is appended after each commit is durable and never fsynced: at open
 * it is read up to its last good frame, and the commits after that one are
 * read back from git (their messages hold everything). A frame that does
 * not verify, or a last commit that is not in the history of
 * refs/heads/main, makes us rebuild it from all commits; a damaged file is
 * reported by name, never trusted. Reading allocates one frame at a time
 * (at most JNL_MAX_RECORD).
 */
#include "hist_i.h"
#include "id.h"
#include "io.h"
#include "jnl.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define IDX_MAGIC "RECFSH01"
#define IDX_HDR 16
#define IDX_KIND_COMMIT 1

/* ---- in memory --------------------------------------------------------- */

int hidx_init(struct hidx *x)
{
	memset(x, 0, sizeof(*x));
	x->nslots = 1024;
	x->slots = calloc(x->nslots, sizeof(*x->slots));
	return x->slots ? 0 : -ENOMEM;
}

void hidx_destroy(struct hidx *x)
{
	for (size_t i = 0; x->slots && i < x->nslots; i++) {
		struct hrec *r = x->slots[i];

		while (r) {
			struct hrec *next = r->next;

			free(r->pos);
			free(r);
			r = next;
		}
	}
	for (size_t i = 0; i < x->nchunks; i++)
		free(x->chunks[i]);
	free(x->chunks);
	free(x->slots);
	free(x->commits);
	memset(x, 0, sizeof(*x));
}

struct hent *hidx_at(const struct hidx *x, size_t i)
{
	return &x->chunks[i / HIDX_CHUNK][i % HIDX_CHUNK];
}

int hidx_add_commit(struct hidx *x, const git_oid *oid, uint32_t *no)
{
	if (x->ncommits == x->commits_cap) {
		size_t cap = x->commits_cap ? 2 * x->commits_cap : 256;
		git_oid *p;

		if (cap > UINT32_MAX)
			return -EOVERFLOW;
		p = realloc(x->commits, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		x->commits = p;
		x->commits_cap = cap;
	}
	x->commits[x->ncommits] = *oid;
	*no = (uint32_t)x->ncommits++;
	return 0;
}

static uint32_t hash_id(const char *id, size_t len)
{
	return (uint32_t)XXH3_64bits(id, len);
}

struct hrec *hidx_rec(const struct hidx *x, const char *id, size_t id_len)
{
	uint32_t hv = hash_id(id, id_len);
	struct hrec *r = x->slots[hv & (x->nslots - 1)];

	for (; r; r = r->next)
		if (r->hv == hv && r->id_len == id_len &&
		    memcmp(r->id, id, id_len) == 0)
			return r;
	return NULL;
}

/* Double the table; on failure keep the old one (only slower). */
static void grow(struct hidx *x)
{
	size_t n = x->nslots * 2;
	struct hrec **s = calloc(n, sizeof(*s));

	if (!s)
		return;
	for (size_t i = 0; i < x->nslots; i++) {
		struct hrec *r = x->slots[i];

		while (r) {
			struct hrec *next = r->next;

			r->next = s[r->hv & (n - 1)];
			s[r->hv & (n - 1)] = r;
			r = next;
		}
	}
	free(x->slots);
	x->slots = s;
	x->nslots = n;
}

static struct hrec *rec_add(struct hidx *x, const char *id, size_t id_len)
{
	struct hrec *r = hidx_rec(x, id, id_len);

	if (r)
		return r;
	if (id_len > ID_MAX_LEN)
		return NULL;
	r = calloc(1, sizeof(*r) + id_len + 1);
	if (!r)
		return NULL;
	r->hv = hash_id(id, id_len);
	r->id_len = (uint16_t)id_len;
	memcpy(r->id, id, id_len);
	if (x->nrecs >= x->nslots)
		grow(x);
	r->next = x->slots[r->hv & (x->nslots - 1)];
	x->slots[r->hv & (x->nslots - 1)] = r;
	x->nrecs++;
	return r;
}

int hidx_add(struct hidx *x, const char *id, size_t id_len,
	     const struct hent *e)
{
	struct hrec *r;
	struct hent *slot;

	if (x->n >= UINT32_MAX)
		return -EOVERFLOW;
	r = rec_add(x, id, id_len);
	if (!r)
		return -ENOMEM;
	if (r->n == r->cap) {
		uint32_t cap = r->cap ? 2 * r->cap : 4;
		uint32_t *p = realloc(r->pos, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		r->pos = p;
		r->cap = cap;
	}
	if (x->n % HIDX_CHUNK == 0) {
		size_t k = x->n / HIDX_CHUNK;
		struct hent **c = realloc(x->chunks, (k + 1) * sizeof(*c));

		if (!c)
			return -ENOMEM;
		x->chunks = c;
		c[k] = malloc(HIDX_CHUNK * sizeof(**c));
		if (!c[k])
			return -ENOMEM;
		x->nchunks = k + 1;
	}
	slot = hidx_at(x, x->n);
	*slot = *e;
	slot->rec = r;
	r->pos[r->n++] = (uint32_t)x->n++;
	return 0;
}

const struct hent *hidx_find(const struct hidx *x, const char *id,
			     size_t id_len, uint64_t version)
{
	const struct hrec *r = hidx_rec(x, id, id_len);
	uint32_t lo = 0, hi;

	if (!r)
		return NULL;
	/* versions of a record are in revision order, so by version too
	   (a delete repeats the version it deleted) */
	hi = r->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (hidx_at(x, r->pos[mid])->version < version)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < r->n; lo++) {
		const struct hent *e = hidx_at(x, r->pos[lo]);

		if (e->version != version)
			break;
		if (!(e->flags & HENT_DELETED))
			return e;
	}
	return NULL;
}

void hidx_export(const struct hidx *x, const struct hent *e, hist_version *out)
{
	memset(out, 0, sizeof(*out));
	out->version = e->version;
	out->revision = e->revision;
	git_oid_tostr(out->commit, sizeof(out->commit), &x->commits[e->commit]);
	if (!(e->flags & (HENT_DELETED | HENT_MISSING)))
		git_oid_tostr(out->blob, sizeof(out->blob), &e->blob);
	out->deleted = e->flags & HENT_DELETED;
	out->missing = e->flags & HENT_MISSING;
	out->uid = e->uid;
	out->pid = e->pid;
	memcpy(out->comm, e->comm, sizeof(e->comm));
	out->time.tv_sec = (time_t)(e->time_ns / 1000000000);
	out->time.tv_nsec = (long)(e->time_ns % 1000000000);
	out->size = e->size;
	out->hash_valid = e->flags & HENT_HASH;
	memcpy(out->hash, e->hash, 16);
}

int hist_index_add(struct hist *h, const git_oid *commit, uint64_t upto,
		   const struct hmsg_ver *v, size_t n)
{
	uint32_t no;
	int rc;

	pthread_rwlock_wrlock(&h->ix_lock);
	rc = hidx_add_commit(&h->ix, commit, &no);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct hent e = v[i].e;

		e.commit = no;
		rc = hidx_add(&h->ix, v[i].id, v[i].id_len, &e);
	}
	if (rc == 0)
		h->ix.upto = upto;
	pthread_rwlock_unlock(&h->ix_lock);
	return rc;
}

/* ---- frames of history.idx --------------------------------------------- */

static void put_u(struct sbuf *b, uint64_t v, unsigned bytes)
{
	uint8_t p[8];

	for (unsigned i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
	sb_add(b, p, bytes);
}

/* A frame being built: payload after a JNL_FRAME_HDR gap. */
struct frame {
	struct sbuf b;
	size_t count_at;
	uint32_t count;
};

static void frame_start(struct frame *f, const git_oid *commit)
{
	static const uint8_t gap[JNL_FRAME_HDR];

	memset(f, 0, sizeof(*f));
	sb_add(&f->b, gap, sizeof(gap));
	put_u(&f->b, IDX_KIND_COMMIT, 1);
	sb_add(&f->b, commit->id, GIT_OID_RAWSZ);
	f->count_at = f->b.len;
	put_u(&f->b, 0, 4);
}

static void frame_add(struct frame *f, const struct hmsg_ver *v)
{
	const struct hent *e = &v->e;
	size_t comm = strnlen(e->comm, sizeof(e->comm));

	put_u(&f->b, v->id_len, 2);
	sb_add(&f->b, v->id, v->id_len);
	put_u(&f->b, e->version, 8);
	put_u(&f->b, e->revision, 8);
	put_u(&f->b, e->size, 8);
	put_u(&f->b, (uint64_t)e->time_ns, 8);
	put_u(&f->b, e->uid, 4);
	put_u(&f->b, e->pid, 4);
	put_u(&f->b, e->flags, 1);
	sb_add(&f->b, e->blob.id, GIT_OID_RAWSZ);
	sb_add(&f->b, e->hash, 16);
	put_u(&f->b, comm, 1);
	sb_add(&f->b, e->comm, comm);
	f->count++;
}

/* Append the frame to history.idx. Best effort (see the top). */
static void frame_write(struct hist *h, struct frame *f, uint64_t upto)
{
	struct iovec iov;
	size_t plen = f->b.len - JNL_FRAME_HDR;
	ssize_t n;
	int rc;

	if (h->idx_fd < 0)
		return;
	rc = f->b.err;
	if (rc == 0 && plen > JNL_MAX_RECORD)
		rc = -EFBIG;
	if (rc == 0) {
		uint8_t *p = (uint8_t *)f->b.p;

		for (int i = 0; i < 4; i++)
			p[f->count_at + (size_t)i] =
				(uint8_t)(f->count >> (8 * i));
		iov.iov_base = p + JNL_FRAME_HDR;
		iov.iov_len = plen;
		jnl_frame_encode(p, upto, &iov, 1);
		n = io_pwrite_all(h->o.io, "hist.idx.write", h->idx_fd, p,
				  f->b.len, (off_t)h->idx_end);
		rc = n < 0 ? (int)n : 0;
	}
	if (rc == 0) {
		h->idx_end += f->b.len;
		return;
	}
	rlog_warn("%s: cannot append (%s); it is caught up from the git "
		  "history at the next open",
		  h->idx_path, strerror(-rc));
	rc = io_ftruncate(h->o.io, "hist.idx.write", h->idx_fd,
			  (off_t)h->idx_end);
	if (rc)
		rlog_warn("%s: truncate: %s", h->idx_path, strerror(-rc));
	close(h->idx_fd);
	h->idx_fd = -1;
}

void hist_index_append(struct hist *h, const git_oid *commit, uint64_t upto,
		       const struct hmsg_ver *v, size_t n)
{
	struct frame f;

	if (h->idx_fd < 0)
		return;
	frame_start(&f, commit);
	for (size_t i = 0; i < n; i++)
		frame_add(&f, &v[i]);
	frame_write(h, &f, upto);
	sb_free(&f.b);
}

/* ---- reading history.idx ------------------------------------------------ */

struct rd {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static const uint8_t *rd_take(struct rd *r, size_t n)
{
	const uint8_t *p = r->p;

	if (r->bad || n > r->left) {
		r->bad = true;
		return NULL;
	}
	r->p += n;
	r->left -= n;
	return p;
}

static uint64_t rd_u(struct rd *r, unsigned bytes)
{
	const uint8_t *p = rd_take(r, bytes);
	uint64_t v = 0;

	for (unsigned i = 0; p && i < bytes; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* Decode one frame's payload into the index. Returns 0 or -EBADMSG. */
static int frame_load(struct hist *h, const uint8_t *payload, size_t len,
		      uint64_t upto, git_oid *commit)
{
	struct rd r = {payload, len, false};
	const uint8_t *p;
	uint32_t count, no;
	int rc;

	if (rd_u(&r, 1) != IDX_KIND_COMMIT || !(p = rd_take(&r, 20)))
		return -EBADMSG;
	memcpy(commit->id, p, GIT_OID_RAWSZ);
	count = (uint32_t)rd_u(&r, 4);
	if (r.bad)
		return -EBADMSG;
	rc = hidx_add_commit(&h->ix, commit, &no);
	for (uint32_t i = 0; rc == 0 && i < count; i++) {
		struct hent e = {.commit = no};
		size_t id_len = rd_u(&r, 2), comm;
		const char *id = (const char *)rd_take(&r, id_len);

		e.version = rd_u(&r, 8);
		e.revision = rd_u(&r, 8);
		e.size = rd_u(&r, 8);
		e.time_ns = (int64_t)rd_u(&r, 8);
		e.uid = (uint32_t)rd_u(&r, 4);
		e.pid = (uint32_t)rd_u(&r, 4);
		e.flags = (uint8_t)rd_u(&r, 1);
		if ((p = rd_take(&r, 20)))
			memcpy(e.blob.id, p, 20);
		if ((p = rd_take(&r, 16)))
			memcpy(e.hash, p, 16);
		comm = rd_u(&r, 1);
		if (comm > sizeof(e.comm) || !(p = rd_take(&r, comm)) ||
		    r.bad || !id || id_parse(id, id_len, NULL) != 0 ||
		    e.version == 0 || e.revision == 0 || e.revision > upto ||
		    e.flags > (HENT_DELETED | HENT_MISSING | HENT_HASH))
			return -EBADMSG;
		memcpy(e.comm, p, comm);
		rc = hidx_add(&h->ix, id, id_len, &e);
	}
	if (rc == 0 && r.left != 0)
		rc = -EBADMSG;
	if (rc == 0)
		h->ix.upto = upto;
	return rc;
}

/*
 * Read history.idx (open as h->idx_fd) into the index. *last is the
 * commit of its last good frame (*has_last false if none), h->idx_end the
 * offset after it. Returns 0 (also for a damaged tail: then *damaged),
 * -EBADMSG for a bad header, or -errno.
 */
static int idx_read(struct hist *h, git_oid *last, bool *has_last,
		    bool *damaged)
{
	uint8_t hdr[IDX_HDR], *buf = NULL;
	uint64_t off = IDX_HDR, prev = 0;
	struct stat st;
	ssize_t n;
	int rc = 0;

	*has_last = *damaged = false;
	if (fstat(h->idx_fd, &st) < 0)
		return -errno;
	n = io_pread_all(h->o.io, "hist.idx.read", h->idx_fd, hdr, IDX_HDR, 0);
	if (n < 0)
		return (int)n;
	if (n != IDX_HDR || memcmp(hdr, IDX_MAGIC, 8) != 0) {
		rlog_err("%s: not a history index (bad header)", h->idx_path);
		return -EBADMSG;
	}
	buf = malloc(JNL_FRAME_HDR + JNL_MAX_RECORD);
	if (!buf)
		return -ENOMEM;
	while (off < (uint64_t)st.st_size) {
		const uint8_t *payload;
		size_t len, need = 0, want;
		uint64_t upto;
		git_oid commit;
		long fl;

		want = JNL_FRAME_HDR;
		n = io_pread_all(h->o.io, "hist.idx.read", h->idx_fd, buf, want,
				 (off_t)off);
		fl = n == (ssize_t)want
			     ? jnl_frame_decode(buf, want, &upto, &payload,
						&len, &need)
			     : -EBADMSG;
		if (fl == 0) {
			n = io_pread_all(h->o.io, "hist.idx.read", h->idx_fd,
					 buf, need, (off_t)off);
			fl = n == (ssize_t)need
				     ? jnl_frame_decode(buf, need, &upto,
							&payload, &len, NULL)
				     : -EBADMSG;
		}
		if (n < 0) {
			rc = (int)n;
			break;
		}
		if (fl <= 0) {
			rlog_err("%s: damaged at byte %" PRIu64 " of %lld; the "
				 "rest is read back from the git history",
				 h->idx_path, off, (long long)st.st_size);
			*damaged = true;
			break;
		}
		if (upto < prev ||
		    (rc = frame_load(h, payload, len, upto, &commit)) != 0) {
			if (rc == -ENOMEM)
				break;
			rlog_err("%s: frame at byte %" PRIu64 " is not a valid "
				 "index frame",
				 h->idx_path, off);
			rc = -EBADMSG;
			break;
		}
		prev = upto;
		*last = commit;
		*has_last = true;
		off += (uint64_t)fl;
	}
	free(buf);
	h->idx_end = off;
	return rc;
}

/* ---- catching up from git ---------------------------------------------- */

struct catchup {
	struct hist *h;
	struct frame f;
	uint32_t no;
	int err;
};

static int catchup_ver(void *arg, const struct hmsg_ver *v)
{
	struct catchup *c = arg;
	struct hent e = v->e;

	e.commit = c->no;
	c->err = hidx_add(&c->h->ix, v->id, v->id_len, &e);
	if (c->err == 0)
		frame_add(&c->f, v);
	return c->err;
}

/* Add the versions of commit `oid` to the index and to history.idx. */
static int catchup_commit(struct hist *h, const git_oid *oid)
{
	struct catchup c = {.h = h};
	git_commit *commit = NULL;
	char hexid[GIT_OID_HEXSZ + 1];
	const char *msg;
	unsigned bad = 0;
	uint64_t upto = 0;
	int rc;

	git_oid_tostr(hexid, sizeof(hexid), oid);
	rc = git_commit_lookup(&commit, h->repo, oid);
	if (rc < 0)
		return hist_git_error(rc, "reading a commit", NULL);
	msg = git_commit_message_raw(commit);
	rc = hidx_add_commit(&h->ix, oid, &c.no);
	frame_start(&c.f, oid);
	if (rc == 0)
		rc = hmsg_parse(msg, strlen(msg), catchup_ver, &c, &upto, &bad);
	if (rc == 0 && upto == 0) {
		rlog_err("%s: commit %s has no Recfs-Upto line", h->path,
			 hexid);
		rc = -EBADMSG;
	}
	if (bad)
		rlog_err("%s: commit %s: %u trailer blocks cannot be read; "
			 "those versions are not in the index",
			 h->path, hexid, bad);
	if (rc == 0) {
		h->ix.upto = upto;
		frame_write(h, &c.f, upto);
	}
	sb_free(&c.f.b);
	git_commit_free(commit);
	return rc;
}

/* Read the commits after `from` (all if NULL) up to the head, oldest
   first, along first parents. */
static int catchup(struct hist *h, const git_oid *from)
{
	git_revwalk *walk = NULL;
	git_oid oid;
	uint64_t count = 0;
	int rc;

	rc = git_revwalk_new(&walk, h->repo);
	if (rc == 0)
		rc = git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL |
						       GIT_SORT_REVERSE);
	if (rc == 0)
		rc = git_revwalk_push(walk, &h->head);
	if (rc == 0 && from)
		rc = git_revwalk_hide(walk, from);
	if (rc == 0)
		rc = git_revwalk_simplify_first_parent(walk);
	if (rc < 0) {
		rc = hist_git_error(rc, "walking the history", NULL);
		goto out;
	}
	while ((rc = git_revwalk_next(&oid, walk)) == 0) {
		rc = catchup_commit(h, &oid);
		if (rc < 0)
			goto out;
		count++;
	}
	if (rc != GIT_ITEROVER) {
		rc = hist_git_error(rc, "walking the history", NULL);
		goto out;
	}
	rc = 0;
	if (count)
		rlog_info("%s: %" PRIu64 " commits read back from %s",
			  h->idx_path, count, h->path);
out:
	git_revwalk_free(walk);
	return rc;
}

/* Start history.idx afresh (header only) and the index empty. */
static int idx_reset(struct hist *h)
{
	uint8_t hdr[IDX_HDR] = IDX_MAGIC;
	ssize_t n;
	int rc;

	hidx_destroy(&h->ix);
	rc = hidx_init(&h->ix);
	if (rc || h->idx_fd < 0)
		return rc;
	rc = io_ftruncate(h->o.io, "hist.idx.write", h->idx_fd, 0);
	if (rc == 0) {
		n = io_pwrite_all(h->o.io, "hist.idx.write", h->idx_fd, hdr,
				  sizeof(hdr), 0);
		rc = n < 0 ? (int)n : 0;
	}
	if (rc) {
		rlog_warn("%s: cannot rewrite: %s", h->idx_path, strerror(-rc));
		close(h->idx_fd);
		h->idx_fd = -1;
	}
	h->idx_end = IDX_HDR;
	return 0;
}

static int idx_open(struct hist *h, bool *fresh)
{
	int flags = O_CLOEXEC | O_NOFOLLOW;
	struct stat st;

	*fresh = false;
	flags |= h->o.read_only ? O_RDONLY : O_RDWR | O_CREAT;
	h->idx_fd = io_openat(h->o.io, "hist.idx.open", h->o.store_dirfd,
			      HIST_INDEX_FILE, flags, 0600);
	if (h->idx_fd == -ENOENT) {
		*fresh = true;
		return 0;
	}
	if (h->idx_fd < 0) {
		int rc = h->idx_fd;

		rlog_err("%s: cannot open: %s", h->idx_path, strerror(-rc));
		return rc;
	}
	if (fstat(h->idx_fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rlog_err("%s: not a regular file", h->idx_path);
		return -EBADMSG;
	}
	*fresh = st.st_size == 0;
	return 0;
}

int hist_index_load(struct hist *h)
{
	bool fresh = false, has_last = false, damaged = false;
	git_oid last;
	int rc;

	rc = idx_open(h, &fresh);
	if (rc == 0 && !fresh)
		rc = idx_read(h, &last, &has_last, &damaged);
	if (h->o.read_only && h->idx_fd >= 0) {
		/* caught up in memory only */
		close(h->idx_fd);
		h->idx_fd = -1;
	}
	if (rc == -EBADMSG || fresh) {
		if (rc)
			rlog_err("%s: rebuilding it from %s", h->idx_path,
				 h->path);
		has_last = false;
		rc = idx_reset(h);
	}
	if (rc)
		return rc;
	if (damaged && h->idx_fd >= 0 &&
	    io_ftruncate(h->o.io, "hist.idx.write", h->idx_fd,
			 (off_t)h->idx_end) < 0) {
		close(h->idx_fd);
		h->idx_fd = -1;
	}
	if (has_last && h->has_head && !git_oid_equal(&last, &h->head) &&
	    git_graph_descendant_of(h->repo, &h->head, &last) != 1) {
		rlog_err("%s: ends with a commit that is not in the history "
			 "of %s; rebuilding it",
			 h->idx_path, h->path);
		has_last = false;
		rc = idx_reset(h);
	} else if (has_last && !h->has_head) {
		rlog_err("%s: %s has no commit yet; starting it afresh",
			 h->idx_path, h->path);
		has_last = false;
		rc = idx_reset(h);
	}
	if (rc == 0 && h->has_head &&
	    !(has_last && git_oid_equal(&last, &h->head)))
		rc = catchup(h, has_last ? &last : NULL);
	return rc;
}
