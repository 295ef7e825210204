/*
 * main.c - `recfs STORE MOUNTPOINT [options]`: open the store (reporting
 * a locked, missing or too-new store on the terminal), mount, daemonise,
 * serve, and on unmount, SIGTERM or SIGINT shut down cleanly: requests in
 * flight finish, the store is checkpointed and its lock released, and one
 * report line is logged.
 */
#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include "admin.h"
#include "err.h"
#include "fs.h"
#include "log.h"
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct opts {
	char *store;
	int create;
	int ro;
	int help;
	int version;
	int shared; /* allow_other or allow_root: other users see the mount */
	char *max_size;
	char *scratch;
	char *snapdir;
	char *retain_period;
	unsigned retain_period_s; /* parsed; 0: the store's default */
	char *sync;
	unsigned sync_batch_ms; /* parsed; 0: sync=close */
	char *history_remote;	/* a git URL; "": none */
	char *history_dir;	/* an etcd store: where history.git is */
};

enum { KEY_RO, KEY_HELP, KEY_VERSION, KEY_SHARED };

#define OPT(t, f)                                                              \
	{                                                                      \
		t, offsetof(struct opts, f), 1                                 \
	}

static const struct fuse_opt opt_spec[] = {
	OPT("create", create),
	{"max_record_size=%s", offsetof(struct opts, max_size), 0},
	{"scratch=%s", offsetof(struct opts, scratch), 0},
	{"snapdir=%s", offsetof(struct opts, snapdir), 0},
	{"retain_period=%s", offsetof(struct opts, retain_period), 0},
	{"sync=%s", offsetof(struct opts, sync), 0},
	{"history_remote=%s", offsetof(struct opts, history_remote), 0},
	{"history_dir=%s", offsetof(struct opts, history_dir), 0},
	FUSE_OPT_KEY("ro", KEY_RO),
	FUSE_OPT_KEY("allow_other", KEY_SHARED),
	FUSE_OPT_KEY("allow_root", KEY_SHARED),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	/* what mount(8), fstab and mount.fuse3 may pass: recfs keeps no
	   access times (SPEC 3), the others are mount(8)'s own */
	FUSE_OPT_KEY("relatime", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("norelatime", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("strictatime", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nostrictatime", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("diratime", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nodiratime", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("lazytime", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nolazytime", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("iversion", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("noiversion", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("mand", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nomand", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("silent", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("loud", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("defaults", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("comment=", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_END,
};

static int opt_proc(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct opts *o = data;

	switch (key) {
	case KEY_RO:
		o->ro = 1;
		return 1; /* the kernel mounts read-only too */
	case KEY_SHARED:
		o->shared = 1;
		return 1; /* for the kernel */
	case KEY_HELP:
		o->help = 1;
		return 0;
	case KEY_VERSION:
		o->version = 1;
		return 0;
	case FUSE_OPT_KEY_NONOPT:
		if (!o->store) {
			o->store = strdup(arg);
			return 0;
		}
		return 1; /* the mount point, for fuse_parse_cmdline */
	default:
		return 1;
	}
}

static void usage(const char *prog)
{
	printf("usage: %s STORE MOUNTPOINT [options]\n\n"
	       "Mount the recfs store STORE on MOUNTPOINT: a directory,\n"
	       "file://DIR, or etcd://HOST:PORT[,HOST:PORT...]/PREFIX.\n\n"
	       "recfs options:\n"
	       "    -o create              create STORE if it does not exist\n"
	       "    -o ro                  mount read-only\n"
	       "    -o max_record_size=N   largest record (K, M, G suffixes; "
	       "default 1G)\n"
	       "    -o scratch=P1:P2:...   unversioned scratch name patterns\n"
	       "                           (default %s)\n"
	       "    -o snapdir=visible     list .recfs in the root directory\n"
	       "    -o retain_period=S     prune what the retention policies "
	       "say every S\n"
	       "                           seconds (default 86400)\n"
	       "    -o sync=close          a close returns once its version "
	       "is durable (default)\n"
	       "    -o sync=batch[:MS]     a close returns once its version "
	       "is journaled; it\n"
	       "                           is durable within MS ms (default "
	       "%u, 1..%u);\n"
	       "                           fsync still waits for it\n"
	       "    -o history_remote=URL  push the history to this git "
	       "remote after its\n"
	       "                           batches (fast-forward only; kept "
	       "in the store;\n"
	       "                           empty: none)\n"
	       "    -o history_dir=DIR     a store on etcd: write its history "
	       "(history.git)\n"
	       "                           in DIR when this mount is elected "
	       "to (default:\n"
	       "                           none, no history)\n"
	       "    -f                     stay in the foreground\n"
	       "    -d                     debug (implies -f)\n"
	       "    -s                     single-threaded\n\n",
	       prog, FS_DEFAULT_SCRATCH, STORE_SYNC_BATCH_DEFAULT_MS,
	       STORE_SYNC_BATCH_MAX_MS);
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

/*
 * -o sync=close | batch | batch:MS -> *ms (0 for close). A window out of
 * 1..STORE_SYNC_BATCH_MAX_MS is refused (SPEC section 8): a zero would
 * be sync=close in disguise and a huge one a promise not kept. Returns 0
 * or -EINVAL, having said why.
 */
static int parse_sync(const char *arg, unsigned *ms)
{
	unsigned long v = STORE_SYNC_BATCH_DEFAULT_MS;
	const char *p;
	char *end;

	if (strcmp(arg, "close") == 0) {
		*ms = 0;
		return 0;
	}
	if (strncmp(arg, "batch", 5) != 0 || (arg[5] && arg[5] != ':'))
		goto bad;
	if (arg[5] == ':') {
		p = arg + 6;
		errno = 0;
		v = strtoul(p, &end, 10);
		if (errno || *end || *p < '0' || *p > '9' ||
		    v < STORE_SYNC_BATCH_MIN_MS || v > STORE_SYNC_BATCH_MAX_MS)
			goto bad;
	}
	*ms = (unsigned)v;
	return 0;
bad:
	fprintf(stderr,
		"recfs: -o sync=%s: expected close, batch or batch:MS with MS "
		"from %u to %u milliseconds\n",
		arg, STORE_SYNC_BATCH_MIN_MS, STORE_SYNC_BATCH_MAX_MS);
	return -EINVAL;
}

/* "64M" -> bytes; 0 on a bad or non-positive size. */
static uint64_t parse_size(const char *s)
{
	char *end;
	static const char units[] = "kKmMgGtT";
	const char *unit;
	unsigned long long v;
	uint64_t mul = 1;

	if (!s || *s == '-')
		return 0;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return 0;
	/* K, M, G, T (either case): 2^10, 2^20, 2^30, 2^40 */
	unit = *end ? strchr(units, *end) : NULL;
	if (unit) {
		mul = 1ull << (10 * ((unit - units) / 2 + 1));
		end++;
	}
	if (*end != '\0' || v == 0 || v > UINT64_MAX / mul)
		return 0;
	return v * mul;
}

static int check_mountpoint(const char *mnt)
{
	struct stat st;

	if (!mnt) {
		fprintf(stderr, "recfs: no mount point given (usage: recfs "
				"STORE MOUNTPOINT)\n");
		return -1;
	}
	if (stat(mnt, &st) < 0) {
		fprintf(stderr, "recfs: mount point %s: %s\n", mnt,
			strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "recfs: mount point %s: not a directory\n",
			mnt);
		return -1;
	}
	return 0;
}

/* `p` made absolute (it may not exist yet: -o create). A store URI:
   etcd://... as it is, file://STORE as STORE. */
static char *absolute(const char *p)
{
	char cwd[PATH_MAX], *out;
	size_t n;

	if (strncmp(p, "etcd://", 7) == 0)
		return strdup(p);
	if (strncmp(p, "file://", 7) == 0)
		p += 7;
	if (p[0] == '/')
		return strdup(p);
	if (!getcwd(cwd, sizeof(cwd)))
		return NULL;
	n = strlen(cwd) + strlen(p) + 2;
	out = malloc(n);
	if (out)
		snprintf(out, n, "%s/%s", cwd, p);
	return out;
}

/*
 * Once a second, give the system the free pages inside the heap
 * (malloc_trim): the allocator gives back only its top by itself, and
 * the nodes libfuse frees when the kernel forgets names (ID@N, by the
 * thousand) leave whole free pages between live blocks. A thread of its
 * own: it takes no lock but the allocator's and never touches the mount.
 */
struct trimmer {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop; /* protected by mu */
	pthread_t thread;
};

static void *trim_main(void *arg)
{
	struct trimmer *t = arg;
	struct timespec ts;

	pthread_mutex_lock(&t->mu);
	while (!t->stop) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&t->cv, &t->mu, &ts);
		if (t->stop)
			break;
		pthread_mutex_unlock(&t->mu);
		malloc_trim(0);
		pthread_mutex_lock(&t->mu);
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

static int trim_start(struct trimmer *t)
{
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
	t->stop = false;
	return -pthread_create(&t->thread, NULL, trim_main, t);
}

static void trim_stop(struct trimmer *t)
{
	pthread_mutex_lock(&t->mu);
	t->stop = true;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
	pthread_join(t->thread, NULL);
}

/* Serve until unmounted or signalled. */
static int serve(struct fuse_session *se, const struct fuse_cmdline_opts *cmd)
{
	struct fuse_loop_config *lc;
	int rc;

	if (cmd->singlethread)
		return fuse_session_loop(se);
	lc = fuse_loop_cfg_create();
	if (!lc)
		return -ENOMEM;
	fuse_loop_cfg_set_clone_fd(lc, (unsigned)cmd->clone_fd);
	/* UINT_MAX means "not given": passing it on only logs a warning */
	if (cmd->max_idle_threads != UINT_MAX)
		fuse_loop_cfg_set_idle_threads(lc, cmd->max_idle_threads);
	if (cmd->max_threads && cmd->max_threads <= 100000)
		fuse_loop_cfg_set_max_threads(lc, cmd->max_threads);
	rc = fuse_session_loop_mt(se, lc);
	fuse_loop_cfg_destroy(lc);
	return rc;
}

/* Open the store of `o`, its paths made absolute: fuse_daemonize()
   changes to "/", and the history (libgit2) opens its repository and a
   local remote (no "scheme:") by path. *path and *remote are the
   caller's to free, also on failure. */
static int open_store(const struct opts *o, const struct fs_config *cfg,
		      char **path, char **remote, struct store **out)
{
	struct store_opts so = {.create = o->create,
				.read_only = o->ro,
				.max_record_size = cfg->max_record_size,
				.retain_period_s = o->retain_period_s,
				.sync_batch_ms = o->sync_batch_ms};
	const char *url = o->history_remote;
	char *hdir = NULL;
	int rc;

	*path = absolute(o->store);
	if (!*path) {
		fprintf(stderr, "recfs: %s: %s\n", o->store, strerror(errno));
		return -1;
	}
	so.path = *path;
	if (url && url[0] && !strchr(url, ':') && !(*remote = absolute(url))) {
		fprintf(stderr, "recfs: %s: %s\n", url, strerror(errno));
		return -1;
	}
	so.history_remote = *remote ? *remote : url;
	if (o->history_dir && !(hdir = absolute(o->history_dir))) {
		fprintf(stderr, "recfs: %s: %s\n", o->history_dir,
			strerror(errno));
		return -1;
	}
	so.history_dir = hdir;
	rc = store_open(out, &so);
	if (rc) /* the library reports, the daemon says it: once */
		fprintf(stderr, "recfs: %s\n", rerr_what(rc));
	free(hdir); /* the store keeps a copy */
	return rc;
}

static int run(struct opts *o, struct fuse_args *args,
	       struct fuse_cmdline_opts *cmd, const struct fs_config *cfg)
{
	struct store *store = NULL;
	struct fs_ctx *ctx = NULL;
	struct fuse_session *se = NULL;
	char *path = NULL, *remote = NULL;
	uint64_t commits = 0, errs = 0, rev;
	struct trimmer trim;
	int rc, ret = 1, mounted = 0, closed, trimming = 0;

	if (open_store(o, cfg, &path, &remote, &store) != 0) {
		free(path);
		free(remote);
		return 1;
	}
	if (fs_ctx_new(&ctx, store, cfg))
		goto out;
	se = fs_session_new(args, ctx);
	if (!se)
		goto out;
	if (fuse_session_mount(se, cmd->mountpoint) != 0)
		goto out;
	mounted = 1;
	if (fuse_daemonize(cmd->foreground) != 0)
		goto out;
	if (!cmd->foreground)
		rlog_use_syslog(true);
	/* the lock names this (possibly forked) process, and the store's
	   threads start here, after the fork: the history writer (catching
	   up on the journal) and the one that creates stages ahead */
	store_serve_start(store);
	if (fuse_set_signal_handlers(se) != 0 || fs_ctx_start(ctx) != 0)
		goto out;
	rlog_info("mounted %s on %s", path ? path : o->store, cmd->mountpoint);
	trimming = trim_start(&trim) == 0; /* (without it: only memory) */
	rc = serve(se, cmd);
	fuse_remove_signal_handlers(se);
	ret = rc < 0 ? 1 : 0;
out:
	if (trimming)
		trim_stop(&trim);
	if (ctx)
		fs_ctx_stop(ctx);
	if (mounted)
		fuse_session_unmount(se);
	if (se)
		fuse_session_destroy(se);
	if (ctx)
		fs_ctx_counts(ctx, &commits, &errs);
	fs_ctx_free(ctx);
	rev = store_revision(store);
	closed = store_close(store);
	rlog_info("shutdown of %s: %" PRIu64 " commits (%" PRIu64
		  " failed), revision %" PRIu64 ", journal %s, lock released",
		  path ? path : o->store, commits, errs, rev,
		  closed ? "NOT checkpointed (recovered at next mount)"
			 : "checkpointed");
	free(path);
	free(remote);
	return ret;
}

/*
 * glibc's allocator, for a daemon that runs for days with a dozen
 * threads. Measured under tools/torture --contention (valgrind
 * --tool=massif showed the heap in use flat while VmRSS still climbed,
 * /proc/PID/smaps the growth in the arenas):
 * - a fixed mmap threshold: by default the first free of a large buffer
 *   (the 256 KiB hash and copy buffers) raises the threshold, and from
 *   then on such buffers come from the arenas, whose tops are not given
 *   back below the (raised) trim threshold: each arena kept ~0.5 MiB it
 *   did not use;
 * - one arena instead of up to 8 per CPU: each arena keeps its own free
 *   memory and fragments on its own (12 arenas held ~0.5 MiB free each,
 *   2 arenas still let the RSS grow 5-14% after the warm-up); the
 *   threads mostly wait for I/O, and small blocks come from per-thread
 *   caches without the arena's lock.
 */
static void malloc_policy(void)
{
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	mallopt(M_ARENA_MAX, 1);
}

/* The -o options of recfs checked and turned into `cfg`. Returns 0, or 2
   (a usage error, printed). */
static int check_opts(struct opts *o, char *mountpoint, struct fs_config *cfg)
{
	cfg->read_only = o->ro;
	cfg->mountpoint = mountpoint; /* made absolute by libfuse */
	cfg->scratch = o->scratch;
	cfg->max_record_size = STORE_DEFAULT_MAX_RECORD;
	if (o->max_size && !(cfg->max_record_size = parse_size(o->max_size))) {
		fprintf(stderr,
			"recfs: -o max_record_size=%s: not a positive "
			"size (e.g. 64M)\n",
			o->max_size);
		return 2;
	}
	if (o->snapdir && strcmp(o->snapdir, "visible") != 0 &&
	    strcmp(o->snapdir, "hidden") != 0) {
		fprintf(stderr,
			"recfs: -o snapdir=%s: expected visible or "
			"hidden\n",
			o->snapdir);
		return 2;
	}
	cfg->snapdir_visible = o->snapdir && strcmp(o->snapdir, "visible") == 0;
	if (o->retain_period) {
		char *end;
		unsigned long v;

		errno = 0;
		v = strtoul(o->retain_period, &end, 10);
		if (errno || *end || o->retain_period[0] < '0' ||
		    o->retain_period[0] > '9' || v == 0 || v > 365 * 86400ul) {
			fprintf(stderr,
				"recfs: -o retain_period=%s: expected a number "
				"of seconds from 1 to 31536000\n",
				o->retain_period);
			return 2;
		}
		o->retain_period_s = (unsigned)v;
	}
	if (o->sync && parse_sync(o->sync, &o->sync_batch_ms) < 0) {
		return 2;
	}
	if (o->scratch && !o->scratch[0]) {
		fprintf(stderr, "recfs: -o scratch= needs at least one "
				"pattern\n");
		return 2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts cmd = {0};
	struct fs_config cfg = {0};
	struct opts o = {0};
	int ret = 1;

	malloc_policy();
	if (fuse_opt_parse(&args, &o, opt_spec, opt_proc) != 0)
		return 2;
	/*
	 * recfs does no permission checks of its own: without
	 * default_permissions the kernel checks none either, and with
	 * allow_other every user could read and write every record whatever
	 * its mode. A mount others can use always has the kernel check the
	 * modes (as a disk file system does).
	 */
	if (o.shared && fuse_opt_add_arg(&args, "-odefault_permissions") != 0) {
		fprintf(stderr, "recfs: out of memory\n");
		goto out;
	}
	if (o.help) {
		usage(argv[0]);
		ret = 0;
		goto out;
	}
	if (o.version) {
		printf("recfs 0.1.0 (libfuse %s)\n", fuse_pkgversion());
		ret = 0;
		goto out;
	}
	if (fuse_parse_cmdline(&args, &cmd) != 0) {
		ret = 2;
		goto out;
	}
	if (!o.store) {
		fprintf(stderr, "recfs: no store given (usage: recfs STORE "
				"MOUNTPOINT [options]; --help for more)\n");
		ret = 2;
		goto out;
	}
	if (check_mountpoint(cmd.mountpoint) != 0)
		goto out;
	ret = check_opts(&o, cmd.mountpoint, &cfg);
	if (ret)
		goto out;
	cfg.single_thread = cmd.singlethread;
	ret = run(&o, &args, &cmd, &cfg);
out:
	free(cmd.mountpoint);
	free(o.store);
	free(o.max_size);
	free(o.scratch);
	free(o.snapdir);
	free(o.retain_period);
	free(o.sync);
	free(o.history_remote);
	free(o.history_dir);
	fuse_opt_free_args(&args);
	return ret;
}
