/*
 * ctl_bulk.c - recfsctl subcommands that change many records as one store
 * change (SPEC sections 5 and 7): `rollback STORE --to REVISION|DATE` and
 * `import STORE DIR`. Both work on a store directory that is not mounted;
 * through a mount point they are refused for now (the daemon will do them
 * through its control channel).
 */
#include "ctl.h"
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void fill_who(struct store_who *who)
{
	memset(who, 0, sizeof(*who));
	who->uid = (uint32_t)getuid();
	who->pid = (uint32_t)getpid();
	snprintf(who->comm, sizeof(who->comm), "recfsctl");
}

static int refuse_mount(const char *target)
{
	fprintf(stderr,
		"recfsctl %s: %s is a mount point: this command does not "
		"work through the mount yet; unmount it and give the store "
		"directory\n",
		ctl_name(), target);
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

int ctl_rollback_store(int argc, char **argv, const char *to, bool dry)
{
	struct store_bulk_args a = {.dry_run = dry};
	struct store_bulk_result res;
	struct store_who who;
	struct store *s = NULL;
	struct timespec when;
	uint64_t rev = 0;
	bool by_time = false;
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
	if (!ctl_is_store_dir(argv[1]) && ctl_is_mount(argv[1]))
		return refuse_mount(argv[1]);
	if (!ctl_is_store_dir(argv[1])) {
		fprintf(stderr,
			"recfsctl rollback: %s: not a store directory\n",
			argv[1]);
		return EXIT_FAIL;
	}
	if (ctl_open_store(argv[1], false, &s))
		return EXIT_FAIL;
	if (by_time) {
		rc = store_revision_at(s, &when, &rev);
		if (rc) {
			fprintf(stderr,
				"recfsctl rollback: %s: cannot read "
				"the history: %s\n",
				argv[1], strerror(-rc));
			goto out;
		}
		printf("%s is revision %" PRIu64 "\n", to, rev);
	}
	fill_who(&who);
	a.who = &who;
	if (isatty(2)) {
		a.progress = show_progress;
		a.progress_arg =
			(void *)(uintptr_t) "rollback: records planned";
	}
	rc = store_rollback_to(s, rev, &a, &res);
	progress_end(&a);
	if (rc) {
		fprintf(stderr,
			"recfsctl rollback: %s: rollback to revision "
			"%" PRIu64 " failed: %s (nothing was changed)\n",
			argv[1], rev, strerror(-rc));
		goto out;
	}
	if (dry)
		printf("rollback to revision %" PRIu64 " would give %zu "
		       "records a new version and delete %zu (%zu as they "
		       "were); nothing changed\n",
		       rev, res.puts, res.deletes, res.noops);
	else if (res.revision == 0)
		printf("the store already is as it was at revision %" PRIu64
		       ": nothing changed\n",
		       rev);
	else
		printf("rolled back to revision %" PRIu64 " as revision "
		       "%" PRIu64 ": %zu records given a new version, %zu "
		       "deleted, %zu as they were\n",
		       rev, res.revision, res.puts, res.deletes, res.noops);
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
	int rc;

	if (argc != 3)
		return ctl_usage_error("expects STORE DIR");
	if (!ctl_is_store_dir(argv[1]) && ctl_is_mount(argv[1]))
		return refuse_mount(argv[1]);
	if (!ctl_is_store_dir(argv[1])) {
		fprintf(stderr, "recfsctl import: %s: not a store directory\n",
			argv[1]);
		return EXIT_FAIL;
	}
	if (ctl_open_store(argv[1], false, &s))
		return EXIT_FAIL;
	fill_who(&who);
	a.who = &who;
	if (isatty(2)) {
		a.progress = show_progress;
		a.progress_arg = (void *)(uintptr_t) "import: files staged";
	}
	rc = store_import(s, argv[2], &a, &res);
	progress_end(&a);
	if (rc)
		fprintf(stderr,
			"recfsctl import: %s: import of %s failed: %s "
			"(nothing was changed)\n",
			argv[1], argv[2], strerror(-rc));
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
