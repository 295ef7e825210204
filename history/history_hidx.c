/*
 * history_hidx.c - the index of the history in memory (struct hidx,
 * hist_i.h): per record the offset of its last entry in history.idx, and
 * the versions that could not be written there (see history_index.c).
 */
#include "hist_i.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ---- in memory --------------------------------------------------------- */

#define MIN_SLOTS 1024
#define ARENA_CHUNK ((size_t)1 << 20)

int hidx_init(struct hidx *x)
{
	memset(x, 0, sizeof(*x));
	x->nslots = MIN_SLOTS;
	x->slots = calloc(x->nslots, sizeof(*x->slots));
	return x->slots ? 0 : -ENOMEM;
}

void hidx_destroy(struct hidx *x)
{
	for (size_t i = 0; x->slots && i < x->nslots; i++)
		if (x->slots[i].r)
			free(x->slots[i].r->pos);
	for (size_t i = 0; i < x->narena; i++)
		free(x->arena[i]);
	free(x->arena);
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
	git_oid *v;

	if (x->ncommits >= UINT32_MAX)
		return -EOVERFLOW; /* commits are numbered in 32 bits */
	v = util_grow(x->commits, &x->commits_cap, x->ncommits, sizeof(*v),
		      256);
	if (!v)
		return -ENOMEM;
	x->commits = v;
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
	size_t mask = x->nslots - 1;

	for (size_t i = hv & mask; x->slots[i].r; i = (i + 1) & mask) {
		const struct hslot *sl = &x->slots[i];

		if (sl->hv == hv && sl->r->id_len == id_len &&
		    memcmp(sl->r->id, id, id_len) == 0)
			return sl->r;
	}
	return NULL;
}

/* Put r (hash hv) in a free slot of `slots` (n of them). */
static void place(struct hslot *slots, size_t n, uint32_t hv, struct hrec *r)
{
	size_t i = hv & (n - 1);

	while (slots[i].r)
		i = (i + 1) & (n - 1);
	slots[i].hv = hv;
	slots[i].r = r;
}

/* A table of n slots (a power of two) with the records of x; on failure
   keep the old one (fuller, only slower: it is never full, see
   hidx_rec_add). */
static int resize(struct hidx *x, size_t n)
{
	struct hslot *s = calloc(n, sizeof(*s));

	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < x->nslots; i++)
		if (x->slots[i].r)
			place(s, n, x->slots[i].hv, x->slots[i].r);
	free(x->slots);
	x->slots = s;
	x->nslots = n;
	return 0;
}

void hidx_reserve(struct hidx *x, size_t nrecs)
{
	size_t n = x->nslots;

	while (n < ((size_t)1 << 40) && nrecs > n / 4 * 3)
		n *= 2;
	if (n > x->nslots)
		(void)resize(x, n);
}

/* Zeroed room for a record of `size` bytes, from the arena. */
static struct hrec *arena_alloc(struct hidx *x, size_t size)
{
	char **a, *p;

	size = (size + 7) & ~(size_t)7;
	if (!x->narena || x->arena_used + size > ARENA_CHUNK) {
		a = realloc(x->arena, (x->narena + 1) * sizeof(*a));
		if (!a)
			return NULL;
		x->arena = a;
		if (!(a[x->narena] = calloc(1, ARENA_CHUNK)))
			return NULL;
		x->narena++;
		x->arena_used = 0;
	}
	p = x->arena[x->narena - 1] + x->arena_used;
	x->arena_used += size;
	return (struct hrec *)(void *)p;
}

struct hrec *hidx_rec_add(struct hidx *x, const char *id, size_t id_len)
{
	struct hrec *r = hidx_rec(x, id, id_len);

	if (r)
		return r;
	if (id_len > ID_MAX_LEN)
		return NULL;
	/* at most 3/4 full, and never full: a probe always ends */
	if ((x->nrecs + 1) > x->nslots / 4 * 3 &&
	    resize(x, x->nslots * 2) != 0 && x->nrecs + 1 >= x->nslots)
		return NULL;
	r = arena_alloc(x, sizeof(*r) + id_len + 1);
	if (!r)
		return NULL;
	r->hv = hash_id(id, id_len);
	r->id_len = (uint16_t)id_len;
	memcpy(r->id, id, id_len);
	place(x->slots, x->nslots, r->hv, r);
	x->nrecs++;
	return r;
}

/* Hold a version of `id` in memory (e->rec is set here). */
int hidx_add(struct hidx *x, const char *id, size_t id_len,
	     const struct hent *e)
{
	struct hrec *r;
	struct hent *slot;

	if (x->n >= UINT32_MAX)
		return -EOVERFLOW;
	r = hidx_rec_add(x, id, id_len);
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
	out->pruned = e->flags & HENT_PRUNED;
	out->uid = e->uid;
	out->pid = e->pid;
	memcpy(out->comm, e->comm, sizeof(e->comm));
	out->time.tv_sec = (time_t)(e->time_ns / 1000000000);
	out->time.tv_nsec = (long)(e->time_ns % 1000000000);
	out->size = e->size;
	out->hash_valid = e->flags & HENT_HASH;
	memcpy(out->hash, e->hash, 16);
	out->symlink = e->flags & HENT_SYMLINK;
	out->meta_known = e->flags & HENT_META;
	if (out->meta_known) {
		out->mode = e->mode;
		out->owner_uid = e->ouid;
		out->owner_gid = e->ogid;
	}
}
