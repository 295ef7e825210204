/*
 * be_etcd_cache.c - the etcd backend's cache of version contents: P/v/ID//N
 * is written once and never changed, so a copy is right forever. What this
 * mount wrote or read last is kept, up to BE_ETCD_CACHE_BYTES, the oldest
 * dropped first: reads of it need no request, and keep working while etcd
 * cannot be reached (SPEC section 9: reads may answer with the versions
 * the mount last saw).
 */
#include "be_etcd_i.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct centry {
	struct centry *next;  /* hash chain */
	struct centry *newer; /* the FIFO, oldest first */
	uint64_t version;
	uint64_t rev;
	uint8_t *data;
	size_t len;
	size_t id_len;
	char id[];
};

struct bcache {
	pthread_mutex_t mu;
	struct centry *slots[1024];
	struct centry *oldest, *newest;
	size_t bytes;
};

static size_t slot(const char *id, size_t len, uint64_t version)
{
	return (size_t)(XXH3_64bits_withSeed(id, len, version) % 1024);
}

int bcache_init(struct be_etcd *b)
{
	b->cache = calloc(1, sizeof(*b->cache));
	if (!b->cache)
		return -ENOMEM;
	pthread_mutex_init(&b->cache->mu, NULL);
	return 0;
}

void bcache_free(struct be_etcd *b)
{
	struct bcache *c = b->cache;

	if (!c)
		return;
	while (c->oldest) {
		struct centry *e = c->oldest;

		c->oldest = e->newer;
		free(e->data);
		free(e);
	}
	pthread_mutex_destroy(&c->mu);
	free(c);
	b->cache = NULL;
}

/* Unlink the oldest entry from its chain and the FIFO, and free it; mu
   held. */
static void drop_oldest(struct bcache *c)
{
	struct centry *e = c->oldest, **p;

	p = &c->slots[slot(e->id, e->id_len, e->version)];
	while (*p != e)
		p = &(*p)->next;
	*p = e->next;
	c->oldest = e->newer;
	if (!c->oldest)
		c->newest = NULL;
	c->bytes -= e->len;
	free(e->data);
	free(e);
}

static struct centry *find(struct bcache *c, const char *id, size_t len,
			   uint64_t version)
{
	struct centry *e = c->slots[slot(id, len, version)];

	for (; e; e = e->next)
		if (e->version == version && e->id_len == len &&
		    memcmp(e->id, id, len) == 0)
			return e;
	return NULL;
}

void bcache_put(struct be_etcd *b, const char *id, size_t len, uint64_t version,
		uint64_t rev, const void *data, size_t dlen)
{
	struct bcache *c = b->cache;
	struct centry *e;
	size_t k;

	if (!c || dlen > BE_ETCD_CACHE_BYTES / 4)
		return;
	e = calloc(1, sizeof(*e) + len + 1);
	if (!e || !(e->data = malloc(dlen ? dlen : 1))) {
		free(e);
		return; /* only a cache */
	}
	memcpy(e->id, id, len);
	e->id_len = len;
	e->version = version;
	e->rev = rev;
	e->len = dlen;
	if (dlen)
		memcpy(e->data, data, dlen);
	pthread_mutex_lock(&c->mu);
	if (find(c, id, len, version)) {
		pthread_mutex_unlock(&c->mu);
		free(e->data);
		free(e);
		return;
	}
	k = slot(id, len, version);
	e->next = c->slots[k];
	c->slots[k] = e;
	if (c->newest)
		c->newest->newer = e;
	else
		c->oldest = e;
	c->newest = e;
	c->bytes += dlen;
	while (c->bytes > BE_ETCD_CACHE_BYTES && c->oldest != e)
		drop_oldest(c);
	pthread_mutex_unlock(&c->mu);
}

int bcache_get(struct be_etcd *b, const char *id, size_t len, uint64_t version,
	       int (*fn)(const void *data, size_t dlen, void *arg), void *arg,
	       uint64_t *rev)
{
	struct bcache *c = b->cache;
	struct centry *e;
	int rc = -ENOENT;

	if (!c)
		return rc;
	pthread_mutex_lock(&c->mu);
	e = find(c, id, len, version);
	if (e) {
		rc = fn(e->data, e->len, arg);
		if (rc == 0 && rev)
			*rev = e->rev;
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}
