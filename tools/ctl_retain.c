/*
 * ctl_retain.c - `recfsctl retain` (SPEC section 7): set a retention
 * policy for the records under a prefix, prune what the policies say,
 * or list them.
 *
 *   recfsctl retain TARGET PREFIX --keep N | --days D | --off
 *   recfsctl retain TARGET --prune
 *   recfsctl retain TARGET            (the policies, one a line)
 *
 * TARGET is a mount point: the daemon does it (it holds the store lock),
 * asked through the control channel (user.recfs.ctl.retain on the mount
 * root, fusefs/ctl.c) with "keep N PREFIX", "days D PREFIX", "off
 * PREFIX" or "prune"; the setxattr returns when the prune is done. Or an
 * unmounted store directory, which the tool opens (taking its lock) and
 * does it itself. Both are store_retain_set / store_retain_prune.
 */
#include "admin.h"
#include "ctl.h"
#include "store.h"
#include "store_history.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A count of at least 1 ("3"; not "0", "-3", "3x", "+3"). */
static int parse_count(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!s || s[0] < '0' || s[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v == 0 || v > 1000000000ull)
		return -EINVAL;
	*out = v;
	return 0;
}

static const char *mount_error(int rc)
{
	if (rc == -EROFS)
		return "the mount is read-only";
	if (rc == -ENOENT)
		return "there is no policy for that prefix";
	return ctl_send_why(rc, "only the user running the daemon, or root, "
				"may set a retention policy");
}

static void print_report(const char *target,
			 const struct store_retain_report *r)
{
	printf("pruned %" PRIu64 " versions of %" PRIu64 " records (%" PRIu64
	       " bytes of content)",
	       r->versions, r->records, r->bytes);
	if (r->versions)
		printf("; history.git %" PRIu64 " -> %" PRIu64 " bytes",
		       r->history_before, r->history_after);
	printf(" in %s\n", target);
}

/* The history size a mount's daemon reports in .recfs/status. */
static void print_mount_history(const char *mnt)
{
	char path[PATH_MAX];
	json_error_t jerr;
	json_t *st;
	json_int_t bytes = -1;

	snprintf(path, sizeof(path), "%s/.recfs/status", mnt);
	st = json_load_file(path, 0, &jerr);
	if (st && json_unpack(st, "{s:{s:I}}", "history", "bytes", &bytes) == 0)
		printf("history.git of %s: %lld bytes\n", mnt,
		       (long long)bytes);
	json_decref(st);
}

static int by_mount(const char *mnt, const char *verb_arg)
{
	int rc = ctl_send(mnt, "retain", verb_arg);

	if (rc) {
		fprintf(stderr, "recfsctl retain: %s: %s\n", mnt,
			mount_error(rc));
		return EXIT_FAIL;
	}
	printf("done by the daemon of %s (%s)\n", mnt, verb_arg);
	print_mount_history(mnt);
	return EXIT_OK;
}

static int print_policy(void *arg, const struct store_retain_policy *p)
{
	printf("%s\t--%s %" PRIu64 "\n", p->prefix,
	       p->kind == STORE_RETAIN_KEEP ? "keep" : "days", p->n);
	return 0;
}

/* The policies of a store directory, or of the store of a mount (read
   without the lock: a file replaced atomically). */
static int list(const char *target)
{
	char store[PATH_MAX];
	struct store *s = NULL;
	const char *path = target;
	int rc;

	if (!ctl_is_store_dir(target) && ctl_is_mount(target)) {
		if (ctl_mount_store(target, store, sizeof(store)) != 0) {
			fprintf(stderr,
				"recfsctl retain: %s: its daemon does not say "
				"where its store is\n",
				target);
			return EXIT_FAIL;
		}
		path = store;
	}
	rc = store_open_history(&s, path);
	if (rc == 0)
		rc = store_retain_each(s, print_policy, NULL);
	if (rc)
		ctl_error(rc, "%s", path);
	store_close(s);
	return rc ? EXIT_FAIL : EXIT_OK;
}

static int offline(const char *target, const struct store_retain_policy *p)
{
	struct store_retain_report rep;
	struct store *s = NULL;
	int rc;

	if (ctl_open_store(target, false, &s))
		return EXIT_FAIL;
	rc = p ? store_retain_set(s, p, &rep) : store_retain_prune(s, &rep);
	if (rc == -ENOENT && p)
		fprintf(stderr, "recfsctl retain: %s: no policy for %s\n",
			target, p->prefix);
	else if (rc)
		fprintf(stderr,
			"recfsctl retain: %s: %s (what went wrong is logged "
			"above)\n",
			target, ctl_why(rc));
	else
		print_report(target, &rep);
	if (store_close(s) && rc == 0)
		rc = -EIO;
	return rc ? EXIT_FAIL : EXIT_OK;
}

int ctl_retain(int argc, char **argv)
{
	const char *keep = ctl_take_option(&argc, argv, "--keep");
	const char *days = ctl_take_option(&argc, argv, "--days");
	bool off = ctl_take_flag(&argc, argv, "--off");
	bool prune = ctl_take_flag(&argc, argv, "--prune");
	struct store_retain_policy p = {0};
	char arg[PATH_MAX + 64], msg[160];
	int modes = (keep != NULL) + (days != NULL) + off + prune;

	if (argc == 2 && modes == 0)
		return list(argv[1]);
	if (modes != 1)
		return ctl_usage_error("expects one of --keep N, --days D, "
				       "--off and --prune");
	if (prune ? argc != 2 : argc != 3)
		return ctl_usage_error(prune ? "--prune expects TARGET only"
					     : "expects TARGET and PREFIX");
	if (!prune) {
		p.prefix = argv[2];
		p.kind = keep	? STORE_RETAIN_KEEP
			 : days ? STORE_RETAIN_DAYS
				: STORE_RETAIN_OFF;
		if (store_retain_prefix_check(p.prefix, msg, sizeof(msg)))
			return ctl_usage_error(msg);
		if (!off && parse_count(keep ? keep : days, &p.n))
			return ctl_usage_error(
				keep ? "--keep N: N must be a whole number "
				       "of at least 1"
				     : "--days D: D must be a whole number "
				       "of at least 1");
	}
	switch (ctl_target(argv[1])) {
	case CTL_STORE:
		return offline(argv[1], prune ? NULL : &p);
	case CTL_MOUNT:
		if (prune)
			snprintf(arg, sizeof(arg), "prune");
		else if (off)
			snprintf(arg, sizeof(arg), "off %s", p.prefix);
		else
			snprintf(arg, sizeof(arg), "%s %" PRIu64 " %s",
				 keep ? "keep" : "days", p.n, p.prefix);
		return by_mount(argv[1], arg);
	default:
		return EXIT_FAIL;
	}
}
