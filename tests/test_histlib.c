/*
 * test_histlib.c - the history library (history/) driven through its
 * narrow interface only: hand-built store changes (struct store_change)
 * delivered by a change source of the test's own (struct hist_source),
 * no store and no journal. Single puts, renames, a revision of many
 * parts delivered over several frames (one git commit, one Recfs-Upto
 * range), a revision whose last frame is not there yet, and the
 * history.idx frames of a commit too large for one.
 *
 * RECFS_HISTLIB_PARTS=N sets the parts of the large revision (default
 * 40000); the test prints the peak RSS of the process after writing it.
 */
#include "history.h"
#include "sandbox.h"

#include <criterion/criterion.h>
#include <git2.h>
#include <xxhash.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a change source of hand-built changes ------------------------------ */

struct fchange {
	struct store_change ch; /* id, other, data set when handed out */
	char id[64], other[64];
	char data[48];
};

struct fframe {
	uint64_t rev;
	bool ends;
	size_t first, n; /* changes[first .. first + n) */
};

struct fsrc {
	struct fchange *c;
	size_t nc, capc;
	struct fframe *f;
	size_t nf, capf;
	size_t framed; /* changes before this one are in a frame */
};

struct fcur {
	struct fsrc *s;
	size_t i;  /* the next frame */
	size_t at; /* the frame next went to, or SIZE_MAX */
};

static void *grow(void *p, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return p;
	*cap = *cap ? 2 * *cap : 64;
	p = realloc(p, *cap * size);
	cr_assert_not_null(p);
	return p;
}

static struct fchange *src_add(struct fsrc *s, uint64_t rev, const char *id,
			       uint64_t version)
{
	struct fchange *c;

	s->c = grow(s->c, &s->capc, s->nc, sizeof(*s->c));
	c = &s->c[s->nc++];
	memset(c, 0, sizeof(*c));
	snprintf(c->id, sizeof(c->id), "%s", id);
	c->ch.revision = rev;
	c->ch.version = version;
	c->ch.time.tv_sec = 1700000000 + (time_t)rev;
	c->ch.uid = 1000;
	c->ch.pid = 42;
	snprintf(c->ch.comm, sizeof(c->ch.comm), "histlib");
	return c;
}

/* A put of `content` (inline), hashed as the store does. */
static void src_put(struct fsrc *s, uint64_t rev, const char *id,
		    uint64_t version, const char *content)
{
	struct fchange *c = src_add(s, rev, id, version);
	XXH128_canonical_t h;
	size_t len = strlen(content);

	cr_assert_lt(len, sizeof(c->data));
	memcpy(c->data, content, len);
	c->ch.op = STORE_CHANGE_PUT;
	c->ch.size = len;
	XXH128_canonicalFromHash(&h, XXH3_128bits(content, len));
	memcpy(c->ch.hash, h.digest, 16);
	c->ch.hash_valid = true;
	c->ch.meta_known = true;
	c->ch.mode = 0644;
	c->ch.has_data = true;
	c->ch.data_len = len;
}

static void src_del(struct fsrc *s, uint64_t rev, const char *id,
		    uint64_t version)
{
	src_add(s, rev, id, version)->ch.op = STORE_CHANGE_DELETE;
}

/* The changes added since the last frame make one frame. */
static void src_frame(struct fsrc *s, uint64_t rev, bool ends)
{
	struct fframe *f;

	s->f = grow(s->f, &s->capf, s->nf, sizeof(*s->f));
	f = &s->f[s->nf++];
	f->rev = rev;
	f->ends = ends;
	f->first = s->framed;
	f->n = s->nc - s->framed;
	s->framed = s->nc;
}

static int fs_open(void *arg, uint64_t after, void **out)
{
	struct fcur *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->s = arg;
	c->at = SIZE_MAX;
	while (c->i < c->s->nf && c->s->f[c->i].rev <= after)
		c->i++;
	*out = c;
	return 0;
}

static int fs_next(void *cur, uint64_t target, struct hist_frame *f)
{
	struct fcur *c = cur;
	const struct fframe *ff;

	if (c->i >= c->s->nf || c->s->f[c->i].rev > target)
		return 0;
	ff = &c->s->f[c->i];
	c->at = c->i++;
	f->revision = ff->rev;
	f->len = 16 + 100 * ff->n;
	f->ends = ff->ends;
	return 1;
}

static int fs_changes(void *cur, int (*fn)(void *, const struct store_change *),
		      void *arg)
{
	struct fcur *c = cur;
	const struct fframe *ff = &c->s->f[c->at];
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < ff->n; i++) {
		struct fchange *fc = &c->s->c[ff->first + i];
		struct store_change ch = fc->ch;

		ch.id = fc->id;
		ch.id_len = strlen(fc->id);
		if (fc->other[0]) {
			ch.other = fc->other;
			ch.other_len = strlen(fc->other);
		}
		ch.data = (const uint8_t *)fc->data;
		rc = fn(arg, &ch);
	}
	return rc;
}

static uint64_t fs_pos(void *cur)
{
	struct fcur *c = cur;

	return c->i < c->s->nf ? c->s->f[c->i].rev : UINT64_MAX;
}

static int fs_seek(void *cur, uint64_t rev)
{
	struct fcur *c = cur;

	c->i = 0;
	while (c->i < c->s->nf && c->s->f[c->i].rev < rev)
		c->i++;
	return 0;
}

static void fs_close(void *cur)
{
	free(cur);
}

/* ---- the sandbox ----------------------------------------------------------
 */

static char base[PATH_MAX];
static char spath[PATH_MAX + 32];
static int sfd = -1, jfd = -1;
static struct fsrc src;
static struct hist *h;

static void setup(void)
{
	sandbox_new(base, sizeof(base), "histlib", true);
	snprintf(spath, sizeof(spath), "%s/store", base);
	cr_assert_eq(mkdir(spath, 0700), 0);
	sfd = open(spath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(sfd, 0);
	cr_assert_eq(mkdirat(sfd, "journal", 0700), 0);
	jfd = openat(sfd, "journal", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(jfd, 0);
	cr_assert_eq(hist_init_repo(spath, sfd), 0);
	memset(&src, 0, sizeof(src));
}

static void teardown(void)
{
	hist_close(h);
	h = NULL;
	free(src.c);
	free(src.f);
	close(jfd);
	close(sfd);
	sandbox_rm(base);
}

TestSuite(histlib, .init = setup, .fini = teardown, .timeout = 1800);

static void open_hist_packs(unsigned batch_max, uint64_t pack_mem_max)
{
	struct hist_opts o = {
		.store_path = spath,
		.store_dirfd = sfd,
		.jnl_dirfd = jfd,
		.src = {fs_open, fs_next, fs_changes, fs_pos, fs_seek, fs_close,
			&src},
		.batch_max = batch_max,
		.delay_ms = 1,
		.pack_mem_max = pack_mem_max,
	};

	cr_assert_eq(hist_open(&h, &o), 0);
	cr_assert_eq(hist_start(h), 0);
}

static void open_hist(unsigned batch_max)
{
	open_hist_packs(batch_max, 0);
}

static void drain(uint64_t rev)
{
	hist_notify(h, rev);
	cr_assert_eq(hist_drain(h, rev, 0), 0, "drain to %" PRIu64, rev);
	cr_assert_eq(hist_done(h), rev);
}

static void expect_content(const char *id, uint64_t version, const char *want,
			   hist_version *out)
{
	hist_version v;
	size_t len;
	void *buf;

	cr_assert_eq(hist_lookup(h, id, version, &v), 0, "%s@%" PRIu64, id,
		     version);
	cr_assert_eq(hist_read(h, &v, &buf, &len), 0);
	cr_assert_eq(len, strlen(want));
	cr_assert_eq(memcmp(buf, want, len), 0);
	free(buf);
	if (out)
		*out = v;
}

/* The Recfs-Upto of commit `hex` and of its parent (0: none). */
static void commit_uptos(const char *hex, uint64_t *upto, uint64_t *parent)
{
	char git[PATH_MAX + 64];
	git_repository *repo;
	git_commit *c, *p;
	git_oid oid;

	snprintf(git, sizeof(git), "%s/%s", spath, HIST_DIR);
	cr_assert_eq(git_repository_open(&repo, git), 0);
	cr_assert_eq(git_oid_fromstr(&oid, hex), 0);
	cr_assert_eq(git_commit_lookup(&c, repo, &oid), 0);
	*upto = hist_msg_upto(git_commit_message_raw(c));
	*parent = 0;
	if (git_commit_parentcount(c) == 1) {
		cr_assert_eq(git_commit_parent(&p, c, 0), 0);
		*parent = hist_msg_upto(git_commit_message_raw(p));
		git_commit_free(p);
	}
	git_commit_free(c);
	git_repository_free(repo);
}

/* ---- tests -----------------------------------------------------------------
 */

Test(histlib, puts_deletes_and_renames)
{
	struct fchange *c;
	hist_version a, b;

	src_put(&src, 1, "ns/a", 1, "hello");
	src_frame(&src, 1, true);
	src_put(&src, 2, "ns/a", 2, "hello again");
	src_frame(&src, 2, true);
	/* a rename as the store decodes one: the put of the target, then
	   the delete of the source */
	c = src_add(&src, 3, "ns/b", 1);
	c->ch = src.c[src.nc - 2].ch; /* like version 2 of ns/a ... */
	c->ch.revision = 3;
	c->ch.version = 1;
	c->ch.has_data = false; /* ... whose content it takes */
	c->ch.other_version = 2;
	memcpy(c->data, "", 1);
	snprintf(c->other, sizeof(c->other), "ns/a");
	src_del(&src, 3, "ns/a", 2);
	snprintf(src.c[src.nc - 1].other, sizeof(src.c[0].other), "ns/b");
	src_frame(&src, 3, true);
	open_hist(0);
	drain(3);
	expect_content("ns/a", 1, "hello", NULL);
	expect_content("ns/a", 2, "hello again", &a);
	expect_content("ns/b", 1, "hello again", &b);
	cr_assert_str_eq(a.blob, b.blob);
	cr_assert(b.meta_known);
	cr_assert_eq(b.mode, 0644);
	cr_assert_eq(b.uid, 1000);
	cr_assert_str_eq(b.comm, "histlib");
}

/* The versions of revision `rev` (hist_each). */
struct count {
	uint64_t rev;
	size_t n;
	char commit[41];
	bool one_commit;
};

static int count_rev(void *arg, const char *id, const hist_version *v)
{
	struct count *c = arg;

	(void)id;
	if (v->revision != c->rev)
		return 0;
	if (c->n++ == 0)
		memcpy(c->commit, v->commit, sizeof(c->commit));
	else if (strcmp(c->commit, v->commit) != 0)
		c->one_commit = false;
	return 0;
}

static size_t parts_wanted(void)
{
	const char *e = getenv("RECFS_HISTLIB_PARTS");

	return e && *e ? (size_t)strtoull(e, NULL, 10) : 40000;
}

/* Revision 2: n parts over `frames` frames. */
static void big_revision(size_t n, size_t frames)
{
	char id[64], content[32];

	src_put(&src, 1, "before", 1, "one");
	src_frame(&src, 1, true);
	for (size_t i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "many/r%07zu", i);
		snprintf(content, sizeof(content), "part %zu", i);
		src_put(&src, 2, id, 1, content);
		if ((i + 1) % ((n + frames - 1) / frames) == 0 && i + 1 < n)
			src_frame(&src, 2, false);
	}
	src_frame(&src, 2, true);
	src_put(&src, 3, "after", 1, "three");
	src_frame(&src, 3, true);
}

/* Every part of revision 2 is there, in one commit whose Recfs-Upto
   range holds revision 2 and nothing of revision 3. */
static void check_big(size_t n)
{
	struct count c = {.rev = 2, .one_commit = true};
	uint64_t upto, parent;
	hist_version v;

	cr_assert_eq(hist_each(h, NULL, count_rev, &c), 0);
	cr_assert_eq(c.n, n, "%zu versions of revision 2, want %zu", c.n, n);
	cr_assert(c.one_commit, "revision 2 is split over commits");
	commit_uptos(c.commit, &upto, &parent);
	cr_assert_eq(upto, 2);
	cr_assert_lt(parent, 2);
	expect_content("many/r0000000", 1, "part 0", NULL);
	expect_content("after", 1, "three", &v);
	cr_assert_str_neq(v.commit, c.commit);
}

Test(histlib, revision_of_many_parts_over_frames)
{
	size_t n = parts_wanted();
	struct rusage ru;

	big_revision(n, 9);
	open_hist(50); /* far fewer versions a batch than the revision has */
	drain(3);
	getrusage(RUSAGE_SELF, &ru);
	fprintf(stderr, "histlib: a revision of %zu parts: peak RSS %ld MiB\n",
		n, ru.ru_maxrss / 1024);
	check_big(n);
	/* history.idx held the commit in several frames: read back */
	hist_close(h);
	h = NULL;
	open_hist(50);
	cr_assert_eq(hist_index_resident(h), 0);
	check_big(n);
}

/* The packs in objects/pack. */
static size_t count_packs(void)
{
	char dir[PATH_MAX + 64];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/history.git/objects/pack", spath);
	d = opendir(dir);
	cr_assert_not_null(d, "%s", dir);
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);

		n += len > 5 && !strcmp(de->d_name + len - 5, ".pack");
	}
	closedir(d);
	return n;
}

/* A revision whose objects do not fit the memory for them: written out
   as packs while it is read, still one commit, every part readable. */
Test(histlib, revision_larger_than_the_pack_memory)
{
	big_revision(20000, 4);
	open_hist_packs(0, 64 << 10);
	drain(3);
	/* 2 when all of revision 2 waits for its commit (measured) */
	cr_assert_geq(
		count_packs(), 3,
		"%zu packs: the objects of revision 2 went out in several",
		count_packs());
	check_big(20000);
	expect_content("many/r0019999", 1, "part 19999", NULL);
	expect_content("many/r0012345", 1, "part 12345", NULL);
}

Test(histlib, index_cut_within_a_commit_is_rebuilt)
{
	char idx[PATH_MAX + 64];
	struct stat st;

	big_revision(40000, 4);
	open_hist(0);
	drain(3);
	hist_close(h);
	h = NULL;
	/* cut history.idx within the frames of the large commit: the
	   versions of its first frames must not be read twice */
	snprintf(idx, sizeof(idx), "%s/%s", spath, HIST_INDEX_FILE);
	cr_assert_eq(stat(idx, &st), 0);
	cr_assert_gt(st.st_size, 4 << 20, "one frame holds the commit");
	cr_assert_eq(truncate(idx, (off_t)(4 << 20) + 1000), 0);
	open_hist(0);
	check_big(40000);
}

Test(histlib, revision_without_its_last_frame_is_not_written)
{
	uint64_t done;

	src_put(&src, 1, "a", 1, "one");
	src_frame(&src, 1, true);
	src_put(&src, 2, "b", 1, "two");
	src_frame(&src, 2, false);
	src_put(&src, 2, "c", 1, "two too");
	src_frame(&src, 2, false);
	open_hist(0);
	drain(1);
	/* revision 2 is said to be durable, but its frames end early */
	hist_notify(h, 2);
	cr_assert_neq(hist_drain(h, 2, 3000), 0);
	done = hist_done(h);
	cr_assert_eq(done, 1);
	hist_version v;
	cr_assert_eq(hist_lookup(h, "b", 1, &v), -ENOENT);
	/* the frame that ends it comes: all of it is written */
	hist_stop(h);
	src_put(&src, 2, "d", 1, "two three");
	src_frame(&src, 2, true);
	hist_close(h);
	h = NULL;
	open_hist(0);
	drain(2);
	expect_content("b", 1, "two", NULL);
	expect_content("c", 1, "two too", NULL);
	expect_content("d", 1, "two three", NULL);
}
