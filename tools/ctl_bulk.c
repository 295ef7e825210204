/*
 * ctl_bulk.c - recfsctl subcommands that change many records as one store
 * change (SPEC sections 5 and 7): `rollback STORE --to REVISION|DATE` and
 * `import STORE DIR`. On a store directory that is not mounted they open
 * it; on a mount point the daemon does them (its control channel,
 * fusefs/ctl.c: verbs "rollback REVISION|@EPOCH" and "import DIR").
 */
#include "ctl.h"
#include "err.h"
#include "store.h"
#include "txn.h"

#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

/* The store revision a mount point reports (0 if it says nothing). */
static uint64_t mount_revision(const char *mnt)
{
	char v[32];
	ssize_t n = getxattr(mnt, "user.recfs.revision", v, sizeof(v) - 1);

	if (n <= 0)
		return 0;
	v[n] = '\0';
	return strtoull(v, NULL, 10);
}

/*
 * Run `verb arg` in the daemon of mount point `mnt` (its control channel)
 * and say what became of the store revision. `what` names the change for
 * messages.
 */
static int through_mount(const char *mnt, const char *verb, const char *arg,
			 const char *what)
{
	uint64_t before = mount_revision(mnt), after;
	int rc;

	rerr_clear();
	rc = ctl_send(mnt, verb, arg);
	if (rc) {
		/* an older daemon says only an errno */
		bool told = rerr_last() && rerr_last()->code == rc;

		fprintf(stderr,
			"recfsctl %s: %s: %s failed: %s (nothing was "
			"changed%s%s)\n",
			ctl_name(), mnt, what, ctl_why(rc),
			rc == -ESTALE ? ", a record changed meanwhile: try "
					"again"
				      : "",
			told ? "" : "; the daemon's log says more");
		return EXIT_FAIL;
	}
	after = mount_revision(mnt);
	if (after == before)
		printf("%s: nothing changed (revision %" PRIu64 ")\n", what,
		       after);
	else
		printf("%s: done as revision %" PRIu64 "\n", what, after);
	return EXIT_OK;
}

static int dry_run_on_mount(const char *mnt)
{
	fprintf(stderr,
		"recfsctl %s: %s: --dry-run needs the store directory (the "
		"store unmounted)\n",
		ctl_name(), mnt);
	return EXIT_FAIL;
}

/* Digits only, into *out. */
static bool all_digits(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static int parse_u64(const char *s, uint64_t *v)
{
	char *end;

	if (!all_digits(s, strlen(s)))
		return -EINVAL;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno || *end ? -EINVAL : 0;
}

/*
 * A point in time: "@EPOCH" (seconds since 1970, UTC) or ISO 8601
 * "YYYY-MM-DD[THH:MM[:SS]][Z]" (a space may stand for the T); with "Z" it
 * is UTC, without it local time, like date(1). A date alone is the
 * midnight that starts it. Returns 0 or -EINVAL.
 */
int ctl_parse_time(const char *s, struct timespec *out)
{
	struct tm tm = {0};
	const char *p = s;
	bool utc = false;
	time_t t;
	size_t n = strlen(s);

	memset(out, 0, sizeof(*out));
	if (s[0] == '@') {
		uint64_t v;

		if (parse_u64(s + 1, &v) || v > (uint64_t)INT64_MAX / 2)
			return -EINVAL;
		out->tv_sec = (time_t)v;
		return 0;
	}
	if (n && s[n - 1] == 'Z') {
		utc = true;
		n--;
	}
	/* YYYY-MM-DD */
	if (n < 10 || !all_digits(p, 4) || p[4] != '-' ||
	    !all_digits(p + 5, 2) || p[7] != '-' || !all_digits(p + 8, 2))
		return -EINVAL;
	tm.tm_year = atoi(p) - 1900;
	tm.tm_mon = atoi(p + 5) - 1;
	tm.tm_mday = atoi(p + 8);
	p += 10;
	n -= 10;
	if (n) {
		/* [T ]HH:MM[:SS] */
		if ((n != 6 && n != 9) || (p[0] != 'T' && p[0] != ' ') ||
		    !all_digits(p + 1, 2) || p[3] != ':' ||
		    !all_digits(p + 4, 2))
			return -EINVAL;
		tm.tm_hour = atoi(p + 1);
		tm.tm_min = atoi(p + 4);
		if (n == 9) {
			if (p[6] != ':' || !all_digits(p + 7, 2))
				return -EINVAL;
			tm.tm_sec = atoi(p + 7);
		}
	} else if (utc) {
		return -EINVAL; /* "2026-01-01Z": not ISO 8601 */
	}
	if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return -EINVAL;
	tm.tm_isdst = -1;
	t = utc ? timegm(&tm) : mktime(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	out->tv_sec = t;
	return 0;
}

/* The progress of a long run, on stderr if it is a terminal. */
static void show_progress(void *arg, size_t done, size_t total)
{
	const char *what = arg;

	if (total)
		fprintf(stderr, "\r%s: %zu/%zu", what, done, total);
	else
		fprintf(stderr, "\r%s: %zu", what, done);
	fflush(stderr);
}

static void progress_end(const struct store_bulk_args *a)
{
	if (a->progress)
		fprintf(stderr, "\n");
}

/* `a` made by recfsctl (`who`: filled here), showing progress as `what`
   on a terminal. */
static void bulk_start(struct store_bulk_args *a, struct store_who *who,
		       const char *what)
{
	memset(who, 0, sizeof(*who));
	who->uid = (uint32_t)getuid();
	who->pid = (uint32_t)getpid();
	snprintf(who->comm, sizeof(who->comm), "recfsctl");
	a->who = who;
	if (isatty(2)) {
		a->progress = show_progress;
		a->progress_arg = (void *)(uintptr_t)what;
	}
}

/* What a rollback to `rev` did (or, dry, would do). */
static void print_rollback(uint64_t rev, const struct store_bulk_result *res,
			   bool dry)
{
	if (dry)
		printf("rollback to revision %" PRIu64 " would give %zu "
		       "records a new version and delete %zu (%zu as they "
		       "were); nothing changed\n",
		       rev, res->puts, res->deletes, res->noops);
	else if (res->revision == 0)
		printf("the store already is as it was at revision %" PRIu64
		       ": nothing changed\n",
		       rev);
	else
		printf("rolled back to revision %" PRIu64 " as revision "
		       "%" PRIu64 ": %zu records given a new version, %zu "
		       "deleted, %zu as they were\n",
		       rev, res->revision, res->puts, res->deletes, res->noops);
}

int ctl_rollback_store(int argc, char **argv, const char *to, bool dry)
{
	struct store_bulk_args a = {.dry_run = dry};
	struct store_bulk_result res;
	struct store_who who;
	struct store *s = NULL;
	struct timespec when;
	uint64_t rev = 0;
	bool by_time = false;
	enum ctl_target kind;
	int rc;

	if (argc != 2)
		return ctl_usage_error("expects STORE --to REVISION|DATE");
	if (parse_u64(to, &rev) != 0) {
		if (ctl_parse_time(to, &when))
			return ctl_usage_error(
				"--to takes a revision (a number), @EPOCH or "
				"YYYY-MM-DD[THH:MM[:SS]][Z]");
		by_time = true;
	}
	kind = ctl_target(argv[1]);
	if (kind == CTL_MOUNT) {
		char arg[32], what[128];

		if (dry)
			return dry_run_on_mount(argv[1]);
		if (by_time)
			snprintf(arg, sizeof(arg), "@%lld",
				 (long long)when.tv_sec);
		else
			snprintf(arg, sizeof(arg), "%" PRIu64, rev);
		snprintf(what, sizeof(what), "rollback to %s", to);
		return through_mount(argv[1], "rollback", arg, what);
	}
	if (kind == CTL_NEITHER || ctl_open_store(argv[1], false, &s))
		return EXIT_FAIL;
	if (by_time) {
		rc = store_revision_at(s, &when, &rev);
		if (rc) {
			fprintf(stderr,
				"recfsctl rollback: %s: cannot read "
				"the history: %s\n",
				argv[1], ctl_why(rc));
			goto out;
		}
		printf("%s is revision %" PRIu64 "\n", to, rev);
	}
	bulk_start(&a, &who, "rollback: records planned");
	rc = store_rollback_to(s, rev, &a, &res);
	progress_end(&a);
	if (rc) {
		fprintf(stderr,
			"recfsctl rollback: %s: rollback to revision "
			"%" PRIu64 " failed: %s (nothing was changed)\n",
			argv[1], rev, ctl_why(rc));
		goto out;
	}
	print_rollback(rev, &res, dry);
out:
	if (store_close(s) && rc == 0)
		rc = -EIO;
	return rc ? EXIT_FAIL : EXIT_OK;
}

int ctl_import(int argc, char **argv)
{
	bool dry = ctl_take_flag(&argc, argv, "--dry-run");
	struct store_bulk_args a = {.dry_run = dry};
	struct store_bulk_result res;
	struct store_who who;
	struct store *s = NULL;
	enum ctl_target kind;
	int rc;

	if (argc != 3)
		return ctl_usage_error("expects STORE DIR");
	kind = ctl_target(argv[1]);
	if (kind == CTL_MOUNT) {
		char *dir = realpath(argv[2], NULL), what[4200];

		if (dry)
			return dry_run_on_mount(argv[1]);
		if (!dir) {
			fprintf(stderr, "recfsctl import: %s: %s\n", argv[2],
				strerror(errno));
			return EXIT_FAIL;
		}
		snprintf(what, sizeof(what), "import of %s", dir);
		rc = through_mount(argv[1], "import", dir, what);
		free(dir);
		return rc;
	}
	if (kind == CTL_NEITHER || ctl_open_store(argv[1], false, &s))
		return EXIT_FAIL;
	bulk_start(&a, &who, "import: files staged");
	rc = store_import(s, argv[2], &a, &res);
	progress_end(&a);
	if (rc)
		fprintf(stderr,
			"recfsctl import: %s: import of %s failed: %s "
			"(nothing was changed)\n",
			argv[1], argv[2], ctl_why(rc));
	else if (dry)
		printf("import of %s would stage %zu files (%zu skipped); "
		       "nothing changed\n",
		       argv[2], res.puts, res.skipped);
	else if (res.revision == 0)
		printf("imported %s: every file already was the current "
		       "version (%zu unchanged, %zu skipped): nothing "
		       "changed\n",
		       argv[2], res.noops, res.skipped);
	else
		printf("imported %s as revision %" PRIu64 ": %zu records given "
		       "a new version, %zu unchanged, %zu skipped\n",
		       argv[2], res.revision, res.puts, res.noops, res.skipped);
	if (store_close(s) && rc == 0)
		rc = -EIO;
	return rc ? EXIT_FAIL : EXIT_OK;
}
