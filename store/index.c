/*
 * index.c - the in-memory map from record ID to metadata: a chained hash
 * table (xxh3) that doubles when its load passes 1. Entries are never
 * removed while the store is open: a deleted record stays as a tombstone
 * so that its version number is never reused, and entries are carved from
 * 64 KiB blocks freed with the index. The caller locks.
 */
#include "store_i.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* Blocks of entries: room for the longest ID. */
#define IDX_BLOCK ((size_t)64 << 10)

static uint32_t hash_id(const char *id, size_t len)
{
	return (uint32_t)XXH3_64bits(id, len);
}

int idx_init(struct index *ix)
{
	ix->nslots = 1024;
	ix->count = 0;
	ix->block = NULL;
	ix->block_used = 0;
	ix->slots = calloc(ix->nslots, sizeof(*ix->slots));
	return ix->slots ? 0 : -ENOMEM;
}

void idx_destroy(struct index *ix)
{
	for (size_t i = 0; ix->slots && i < ix->nslots; i++)
		for (struct entry *e = ix->slots[i]; e; e = e->next)
			free(e->xa);
	while (ix->block) {
		char *prev;

		memcpy(&prev, ix->block, sizeof(prev));
		free(ix->block);
		ix->block = prev;
	}
	free(ix->slots);
	ix->slots = NULL;
}

/* `size` zeroed bytes, 8-aligned, from the current block or a new one;
   NULL: no memory. */
static void *carve(struct index *ix, size_t size)
{
	char *p;

	size = (size + 7) & ~(size_t)7;
	if (!ix->block || ix->block_used + size > IDX_BLOCK) {
		char *b = malloc(IDX_BLOCK);

		if (!b)
			return NULL;
		memcpy(b, &ix->block, sizeof(ix->block));
		ix->block = b;
		ix->block_used = 8;
	}
	p = ix->block + ix->block_used;
	ix->block_used += size;
	memset(p, 0, size);
	return p;
}

struct entry *idx_find(struct index *ix, const char *id, size_t len)
{
	uint32_t hv = hash_id(id, len);
	struct entry *e = ix->slots[hv & (ix->nslots - 1)];

	for (; e; e = e->next)
		if (e->hv == hv && e->id_len == len &&
		    memcmp(e->id, id, len) == 0)
			return e;
	return NULL;
}

/*
 * idx_find for n IDs at once: out[i] the entry of ids[i] (lens[i]) or
 * NULL. Each lookup misses the cache twice (the slot, then the entry);
 * here the slots of the IDs ahead are fetched, then their first entries,
 * while the earlier ones are compared, so that the misses overlap
 * (a listing of 1,000,000 records looked each one up in turn).
 */
#define FIND_AHEAD 8
void idx_find_many(struct index *ix, const char *const *ids, const size_t *lens,
		   size_t n, uint32_t *hv, struct entry **out)
{
	size_t mask = ix->nslots - 1;

	for (size_t i = 0; i < n + 2 * FIND_AHEAD; i++) {
		if (i < n) {
			hv[i] = hash_id(ids[i], lens[i]);
			__builtin_prefetch(&ix->slots[hv[i] & mask]);
		}
		if (i >= FIND_AHEAD && i - FIND_AHEAD < n) {
			size_t j = i - FIND_AHEAD;

			out[j] = ix->slots[hv[j] & mask];
			if (out[j])
				__builtin_prefetch(out[j]);
		}
		if (i >= 2 * FIND_AHEAD) {
			size_t k = i - 2 * FIND_AHEAD;
			struct entry *e = out[k];

			while (e && (e->hv != hv[k] || e->id_len != lens[k] ||
				     memcmp(e->id, ids[k], lens[k]) != 0))
				e = e->next;
			out[k] = e;
		}
	}
}

/* Double the table; on allocation failure keep the old one (still valid,
   only slower). */
static void grow(struct index *ix)
{
	size_t n = ix->nslots * 2;
	struct entry **slots = calloc(n, sizeof(*slots));

	if (!slots)
		return;
	for (size_t i = 0; i < ix->nslots; i++) {
		struct entry *e = ix->slots[i];

		while (e) {
			struct entry *next = e->next;

			e->next = slots[e->hv & (n - 1)];
			slots[e->hv & (n - 1)] = e;
			e = next;
		}
	}
	free(ix->slots);
	ix->slots = slots;
	ix->nslots = n;
}

struct entry *idx_add(struct index *ix, const char *id, size_t len)
{
	struct entry *e = idx_find(ix, id, len);
	size_t slot;

	if (e)
		return e;
	e = carve(ix, offsetof(struct entry, id) + len + 1);
	if (!e)
		return NULL;
	memcpy(e->id, id, len);
	e->id_len = len;
	e->hv = hash_id(id, len);
	if (ix->count >= ix->nslots)
		grow(ix);
	slot = e->hv & (ix->nslots - 1);
	e->next = ix->slots[slot];
	ix->slots[slot] = e;
	ix->count++;
	return e;
}

int idx_each(struct index *ix, int (*fn)(void *arg, struct entry *e), void *arg)
{
	for (size_t i = 0; i < ix->nslots; i++)
		for (struct entry *e = ix->slots[i]; e; e = e->next) {
			int rc = fn(arg, e);

			if (rc)
				return rc;
		}
	return 0;
}
