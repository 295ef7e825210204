/*
 * recfsctl - the recfs tool: one binary, subcommands (SPEC section 7).
 * Exit status: 0 ok, 1 failure, 2 usage. Errors go to stderr naming the
 * record and the cause.
 */
#include "admin.h"
#include "ctl.h"
#include "err.h"
#include "log.h"
#include "store.h"
#include "store_history.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <jansson.h>
#include <limits.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct cmd {
	const char *name;
	const char *usage;
	const char *help;
	int (*run)(int argc, char **argv);
};

static const struct cmd *current;

const char *ctl_name(void)
{
	return current ? current->name : "";
}

int ctl_usage_error(const char *what)
{
	fprintf(stderr, "recfsctl %s: %s", current->name, what);
	fprintf(stderr, "\nusage: recfsctl %s %s\n", current->name,
		current->usage);
	return EXIT_USAGE;
}

static bool want_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return true;
	return false;
}

bool ctl_take_flag(int *argc, char **argv, const char *flag)
{
	for (int i = 1; i < *argc; i++)
		if (!strcmp(argv[i], flag)) {
			memmove(&argv[i], &argv[i + 1],
				(size_t)(*argc - i) * sizeof(*argv));
			(*argc)--;
			return true;
		}
	return false;
}

const char *ctl_take_option(int *argc, char **argv, const char *name)
{
	size_t n = strlen(name);

	for (int i = 1; i < *argc; i++) {
		const char *v = NULL;
		int used = 0;

		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], name) && i + 1 < *argc) {
			v = argv[i + 1];
			used = 2;
		} else if (!strncmp(argv[i], name, n) && argv[i][n] == '=') {
			v = argv[i] + n + 1;
			used = 1;
		}
		if (v) {
			memmove(&argv[i], &argv[i + used],
				(size_t)(*argc - i - used + 1) * sizeof(*argv));
			*argc -= used;
			return v;
		}
	}
	return NULL;
}

void ctl_error(int rc, const char *fmt, ...)
{
	char ctx[1024];
	const char *why = rerr_take(rc);
	size_t n;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	n = strlen(ctx);
	if (why && !strncmp(why, ctx, n) && (why[n] == ':' || why[n] == '/'))
		fprintf(stderr, "recfsctl %s: %s\n", ctl_name(), why);
	else
		fprintf(stderr, "recfsctl %s: %s: %s\n", ctl_name(), ctx,
			why ? why : strerror(-rc));
}

const char *ctl_why(int rc)
{
	return rerr_what(rc);
}

int ctl_open_store(const char *path, bool ro, struct store **s)
{
	struct store_opts o = {.path = path, .read_only = ro};
	int rc = store_open(s, &o);

	if (rc && (!rerr_last() || rerr_last()->code != rc))
		rerr_set(rc, "%s: cannot open store: %s", path, strerror(-rc));
	if (rc)
		ctl_error(rc, "%s", path);
	return rc;
}

int ctl_open_target(const char *path, struct store **s)
{
	int rc = ctl_open_store(path, false, s);

	if (rc)
		fprintf(stderr,
			"recfsctl %s: if %s is mounted, give its mount point "
			"instead\n",
			ctl_name(), path);
	return rc;
}

/* A command that needs the store directory was given a mount point:
   say so (true) rather than try to open it as a store. */
static bool refuse_mount_point(const char *path, const char *what)
{
	char store[PATH_MAX];

	if (ctl_is_store_dir(path) || !ctl_is_mount(path))
		return false;
	if (ctl_mount_store(path, store, sizeof(store)) == 0)
		fprintf(stderr,
			"recfsctl %s: %s is a recfs mount point (of %s): %s\n",
			current->name, path, store, what);
	else
		fprintf(stderr, "recfsctl %s: %s is a recfs mount point: %s\n",
			current->name, path, what);
	return true;
}

static int cmd_init(int argc, char **argv)
{
	bool adopt = ctl_take_flag(&argc, argv, "--adopt");
	int rc;

	if (argc != 2)
		return ctl_usage_error("expects one STORE directory");
	rc = store_init(argv[1], adopt);
	if (rc) {
		ctl_error(rc, "%s", argv[1]);
		return EXIT_FAIL;
	}
	printf("initialised recfs store %s%s\n", argv[1],
	       adopt ? " (existing files adopted as version 1)" : "");
	return EXIT_OK;
}

static void print_meta(const char *id, const struct store_meta *m, bool json)
{
	char hash[64] = "unknown";

	if (m->hash_valid)
		store_hash_format(m->hash, hash);
	if (json) {
		printf("{\"id\":");
		ctl_json_str(stdout, id);
		printf(",\"version\":%llu,\"revision\":%llu,"
		       "\"size\":%llu,\"mode\":\"%04o\",\"mtime\":%lld,"
		       "\"hash\":\"%s\"}\n",
		       (unsigned long long)m->version,
		       (unsigned long long)m->revision,
		       (unsigned long long)m->size, m->mode,
		       (long long)m->mtime.tv_sec, hash);
	} else {
		printf("id:       %s\nversion:  %llu\nrevision: %llu\n"
		       "size:     %llu\nmode:     %04o\nmtime:    %lld\n"
		       "hash:     %s\n",
		       id, (unsigned long long)m->version,
		       (unsigned long long)m->revision,
		       (unsigned long long)m->size, m->mode,
		       (long long)m->mtime.tv_sec, hash);
	}
}

/* "ID@N" -> "ID" and N (> 0); false if there is no such suffix. */
static bool split_version(char *id, uint64_t *n)
{
	char *at = strrchr(id, '@'), *end;

	if (!at || at == id || !at[1] || strchr(at, '/'))
		return false;
	errno = 0;
	*n = strtoull(at + 1, &end, 10);
	if (errno || *end || *n == 0 || at[1] < '0' || at[1] > '9')
		return false;
	*at = '\0';
	return true;
}

/* show TARGET ID[@N] [--meta]: the content (or metadata) of a record. */
static int cmd_show(int argc, char **argv)
{
	bool meta_only = ctl_take_flag(&argc, argv, "--meta");
	bool json = ctl_take_flag(&argc, argv, "--json");
	struct store_meta m;
	struct store *s = NULL;
	void *buf = NULL;
	size_t len = 0;
	uint64_t n;
	int rc, ret = EXIT_FAIL;

	if (argc != 3)
		return ctl_usage_error("expects TARGET and ID[@N]");
	if (split_version(argv[2], &n))
		return ctl_show_version(argv[1], argv[2], n);
	if (!ctl_is_store_dir(argv[1]) && !meta_only && !json)
		return ctl_show_version(argv[1], argv[2], 0);
	if (ctl_open_store(argv[1], true, &s))
		return EXIT_FAIL;
	if (meta_only || json)
		rc = store_stat(s, argv[2], &m, true);
	else
		rc = store_get(s, argv[2], &buf, &len, &m);
	if (rc) {
		ctl_error(rc, "record %s", argv[2]);
		goto out;
	}
	if (meta_only || json)
		print_meta(argv[2], &m, json);
	else if (fwrite(buf, 1, len, stdout) != len)
		goto out;
	ret = EXIT_OK;
out:
	free(buf);
	store_close(s);
	return ret;
}

/* What `stats` says of a store directory or a mount. */
struct stats {
	uint64_t rev, live, tomb, hist_bytes, policies, versions, bytes;
};

/* Print `st` of `where`, a `kind` ("store" or "mount"). */
static void print_stats(const char *kind, const char *where,
			const struct stats *st, bool json)
{
	if (json) {
		printf("{\"%s\":", kind);
		ctl_json_str(stdout, where);
		printf(",\"revision\":%" PRIu64 ",\"records\":%" PRIu64
		       ",\"deleted\":%" PRIu64 ",\"history_bytes\":%" PRIu64
		       ",\"retain_policies\":%" PRIu64
		       ",\"prunable_versions\":%" PRIu64
		       ",\"prunable_bytes\":%" PRIu64 "}\n",
		       st->rev, st->live, st->tomb, st->hist_bytes,
		       st->policies, st->versions, st->bytes);
	} else
		printf("%s:    %s\nrevision: %" PRIu64 "\nrecords:  %" PRIu64
		       "\ndeleted:  %" PRIu64 "\nhistory:  %" PRIu64
		       " bytes\nprunable: %" PRIu64 " versions, %" PRIu64
		       " bytes (%" PRIu64 " retention policies)\n",
		       kind, where, st->rev, st->live, st->tomb, st->hist_bytes,
		       st->versions, st->bytes, st->policies);
}

/* stats of a mounted store: what its daemon says in .recfs/status. */
static int stats_of_mount(const char *mnt, bool json)
{
	char path[PATH_MAX];
	json_error_t jerr;
	json_t *st;
	json_int_t rev, live, tomb, hbytes = 0, pol = 0;
	struct store_retain_report plan = {0};
	char store[PATH_MAX];
	struct store *s = NULL;

	snprintf(path, sizeof(path), "%s/.recfs/status", mnt);
	st = json_load_file(path, 0, &jerr);
	if (!st || json_unpack(st, "{s:I, s:I, s:I}", "revision", &rev,
			       "records", &live, "deleted", &tomb) != 0) {
		fprintf(stderr,
			"recfsctl stats: %s: cannot read its status: %s\n",
			path, st ? "unexpected content" : jerr.text);
		json_decref(st);
		return EXIT_FAIL;
	}
	/* absent from a daemon without retention, or without a history */
	(void)json_unpack(st, "{s:{s:I, s:I}}", "history", "bytes", &hbytes,
			  "policies", &pol);
	json_decref(st);
	/* what a prune would free: from the store's history, read without
	   the lock (as `log` does) */
	if (pol && (ctl_mount_store(mnt, store, sizeof(store)) != 0 ||
		    store_open_history(&s, store) != 0 ||
		    store_retain_plan(s, &plan) != 0))
		fprintf(stderr,
			"recfsctl stats: %s: what a prune would free "
			"is not known\n",
			mnt);
	store_close(s);
	print_stats("mount", mnt,
		    &(struct stats){(uint64_t)rev, (uint64_t)live,
				    (uint64_t)tomb, (uint64_t)hbytes,
				    (uint64_t)pol, plan.versions, plan.bytes},
		    json);
	return EXIT_OK;
}

static int cmd_stats(int argc, char **argv)
{
	bool json = ctl_take_flag(&argc, argv, "--json");
	struct store_retain_report plan = {0};
	uint64_t live, tomb, rev;
	struct store *s = NULL;

	if (argc != 2)
		return ctl_usage_error("expects one STORE");
	if (!ctl_is_store_dir(argv[1]) && ctl_is_mount(argv[1]))
		return stats_of_mount(argv[1], json);
	if (ctl_open_store(argv[1], true, &s))
		return EXIT_FAIL;
	store_counts(s, &live, &tomb);
	rev = store_revision(s);
	if (store_retain_plan(s, &plan) != 0 && plan.history_before == 0)
		fprintf(stderr,
			"recfsctl stats: %s: what a prune would free "
			"is not known (logged above)\n",
			argv[1]);
	print_stats("store", argv[1],
		    &(struct stats){rev, live, tomb, plan.history_before,
				    plan.policies, plan.versions, plan.bytes},
		    json);
	store_close(s);
	return EXIT_OK;
}

/*
 * Without --repair nothing in the store is written (SPEC 7): not the lock
 * record, not recovery, not the journal's tail, not the history. With it,
 * opening runs recovery, so the store is consistent with its journal.
 */
static int open_for_verify(const char *path, bool repair, struct store **s)
{
	struct store_opts o = {.path = path, .no_write = !repair};
	int rc = store_open(s, &o);

	if (rc == -EROFS)
		fprintf(stderr,
			"recfsctl verify: not verified: %s; `recfsctl verify "
			"--repair %s` (or mounting it) puts them in place\n",
			ctl_why(rc), path);
	else if (rc)
		ctl_error(rc, "%s", path);
	return rc;
}

/* What verify (`repair`: verify --repair) found: `ok` or not. */
static void print_verify(const struct store_verify_report *r, bool ok,
			 bool repair, bool json)
{
	if (json)
		printf("{\"records\":%" PRIu64 ",\"bad\":%" PRIu64
		       ",\"unindexed\":%" PRIu64
		       ",\"history_versions\":%" PRIu64
		       ",\"history_bad\":%" PRIu64 ",\"repaired\":%" PRIu64
		       ",\"unrepairable\":%" PRIu64 ",\"ok\":%s}\n",
		       r->records, r->bad, r->unindexed, r->hist_versions,
		       r->hist_bad, r->repaired, r->unrepairable,
		       ok ? "true" : "false");
	else if (repair)
		printf("%" PRIu64 " records checked, %" PRIu64 " bad, %" PRIu64
		       " history problems; %" PRIu64 " repaired, %" PRIu64
		       " not repairable: %s\n",
		       r->records, r->bad, r->hist_bad, r->repaired,
		       r->unrepairable,
		       ok ? "ok" : "PROBLEMS LEFT (see above)");
	else
		printf("%" PRIu64 " records checked, %" PRIu64 " bad, %" PRIu64
		       " adopted files not yet indexed, %" PRIu64
		       " history versions, %" PRIu64 " history problems: %s\n",
		       r->records, r->bad, r->unindexed, r->hist_versions,
		       r->hist_bad, ok ? "ok" : "PROBLEMS (see above)");
}

static int cmd_verify(int argc, char **argv)
{
	bool json = ctl_take_flag(&argc, argv, "--json");
	bool repair = ctl_take_flag(&argc, argv, "--repair");
	struct store_verify_report rep;
	struct store *s = NULL;
	int rc;

	if (argc != 2)
		return ctl_usage_error("expects one STORE");
	if (refuse_mount_point(argv[1], "verify the store directory once "
					"it is unmounted"))
		return EXIT_FAIL;
	if (open_for_verify(argv[1], repair, &s))
		return EXIT_FAIL;
	rc = repair ? store_verify_repair(s, &rep) : store_verify(s, &rep);
	print_verify(&rep, rc == 0, repair, json);
	if (store_close(s) && rc == 0)
		rc = -EIO;
	return rc ? EXIT_FAIL : EXIT_OK;
}

static int cmd_unlock(int argc, char **argv)
{
	bool force = ctl_take_flag(&argc, argv, "--force");
	char msg[512];
	int rc;

	if (argc != 2 || !force)
		return ctl_usage_error("needs --force and one STORE");
	if (refuse_mount_point(argv[1], "unlock takes the store directory, "
					"and only when no daemon holds it"))
		return EXIT_FAIL;
	if (!ctl_is_store_dir(argv[1])) {
		fprintf(stderr,
			"recfsctl unlock: %s: not a recfs store (no "
			"format.json)\n",
			argv[1]);
		return EXIT_FAIL;
	}
	/* refused while a live process on this host holds it (SPEC 6) */
	rc = store_unlock_force(argv[1], msg, sizeof(msg));
	if (rc) {
		fprintf(stderr, "recfsctl unlock: %s: %s\n", argv[1],
			msg[0] ? msg : strerror(-rc));
		return EXIT_FAIL;
	}
	fprintf(stderr, "recfsctl unlock: %s\n", msg);
	printf("unlocked %s\n", argv[1]);
	return EXIT_OK;
}

static const struct cmd cmds[] = {
	{"init", "[--adopt] STORE",
	 "Create a store (mode 0700). --adopt: STORE is an existing "
	 "directory of plain files; each becomes version 1 of a record, "
	 "without being copied or rewritten.",
	 cmd_init},
	{"show", "[--meta] [--json] TARGET ID[@N]",
	 "Print the content of record ID, or of its version N (from the "
	 "history), or its metadata (--meta, --json: store directory only). "
	 "TARGET is a store directory or a mount point.",
	 cmd_show},
	{"log", "[--json] TARGET [ID]",
	 "List the versions in the history, of ID or of every record: "
	 "version, revision, time, uid, command, size, commit. TARGET is a "
	 "store directory or a mount point (whose daemon is asked to write "
	 "its history up to now first).",
	 ctl_log},
	{"diff", "TARGET ID N M",
	 "Unified diff of versions N and M of ID (exit 0 same, 1 different).",
	 ctl_diff},
	{"rollback", "TARGET ID --to N | [--dry-run] TARGET --to REVISION|DATE",
	 "With an ID: make a new version of ID with the content of version "
	 "N (history is never rewritten); conditional on the version it "
	 "saw. Without one: make every record what it was at store revision "
	 "REVISION, or at DATE (the last revision made at or before it: "
	 "@EPOCH, or YYYY-MM-DD[THH:MM[:SS]][Z], local time without Z), as "
	 "ONE store change: records changed since get a new version with "
	 "that content, records created since are deleted, records deleted "
	 "since are re-created; mode and xattrs are not rolled back. TARGET "
	 "is a store directory, or a mount point (the daemon does it). "
	 "--dry-run (store directory only): say what would change.",
	 ctl_rollback},
	{"import", "[--dry-run] TARGET DIR",
	 "Make every regular file under DIR a new version of the record with "
	 "the same relative path (its permission bits kept), all as ONE "
	 "store change; files equal to their record change nothing. "
	 "Symlinks are not followed; they, other non-regular files and "
	 "names that are not valid record IDs are reported and skipped. "
	 "Progress on stderr when it is a terminal. TARGET is a store "
	 "directory, or a mount point (the daemon does it).",
	 ctl_import},
	{"stats", "[--json] TARGET",
	 "Print the store revision and record counts, of a store directory "
	 "or (from its daemon) of a mount point.",
	 cmd_stats},
	{"verify", "[--repair] [--json] STORE",
	 "Check every record against its hash and the history, writing "
	 "nothing in the store (changes a crash left unrecovered in the "
	 "journal: named, exit 1). Exit 1 if anything is wrong. --repair: "
	 "recover the store first, then a "
	 "record file that does not match its version (or is missing) gets "
	 "that version's content back from the history, a deleted record's "
	 "left-over file that the history keeps is removed, and a history "
	 "blob that a record still holds is written back; each repair is "
	 "named, nothing committed is lost and history is never rewritten. "
	 "Exit 1 if something could not be repaired. STORE must not be "
	 "mounted.",
	 cmd_verify},
	{"backup", "TARGET DEST",
	 "Copy the store consistently (at one revision, with its history) "
	 "to DEST, which must not exist or be an empty directory: a "
	 "complete store that mounts as it is. TARGET is a mount point (the "
	 "daemon makes the copy; commits wait only for its last part) or an "
	 "unmounted store directory. The copy is durable when the command "
	 "returns.",
	 ctl_backup},
	{"update",
	 "[--retries N] [--timeout SECONDS] [--backoff-ms MS] TARGET ID -- "
	 "CMD [ARGS...]",
	 "Read-modify-write ID with compare-and-swap: pipe its current "
	 "content through CMD and commit CMD's output only if ID is still at "
	 "the version that was read; on a conflict re-read and retry with "
	 "jittered exponential backoff (default 100 retries, 30 s in all). "
	 "TARGET is a mount point, or a store directory that is not mounted. "
	 "A missing ID reads as empty and is created only if still absent. "
	 "Exit 1 if CMD fails or the budget is spent.",
	 ctl_update},
	{"watch", "TARGET [PREFIX] [--from REVISION]",
	 "Print one JSON line per committed change, in revision order, as "
	 "changes happen: revision, op (put or delete), id, version, hash, "
	 "size, time, uid, pid, comm (and from/to for the two halves of a "
	 "rename; the parts of one change share its revision). From "
	 "revision REVISION on (earlier ones from the history), or only "
	 "changes made from now on. PREFIX keeps the IDs under a namespace "
	 "(a: a and a/..., not ab). TARGET is a mount point (the watch ends, "
	 "exit 0, when it is unmounted; `--from LAST+1` continues) or a "
	 "store directory (followed across mounts). Exit 0 on SIGINT or "
	 "SIGTERM.",
	 ctl_watch},
	{"retain", "TARGET PREFIX --keep N | --days D | --off | TARGET --prune",
	 "Set the retention policy of the records under PREFIX (a "
	 "namespace or record ID: a/b covers a/b and a/b/..., not a/bc; / "
	 "covers every record; the longest prefix that covers a record "
	 "applies): keep its N newest versions, or the versions that were "
	 "current within the last D days; --off removes the policy (the "
	 "default is to keep everything forever). Setting a policy prunes "
	 "at once, --prune prunes now, and a mounted store's daemon prunes "
	 "once a day. A pruned version no longer reads (ID@N, "
	 ".recfs/history: ENOENT) and its content leaves the store, "
	 "history.git included (a new history epoch: see recfs(5)); its "
	 "trailer stays in `recfsctl log` and `git log`, marked pruned. The "
	 "current version of every record is always kept. Without an "
	 "option: list the policies. TARGET is a mount point (the daemon "
	 "does it) or an unmounted store directory.",
	 ctl_retain},
	{"push", "TARGET [--remote URL]",
	 "Push the history (refs/heads/main and refs/heads/recfs-versions) "
	 "to its git remote now, as a fast-forward: never forced, never "
	 "merged. The remote is the one `recfs -o history_remote=URL` set "
	 "(kept in history.git's config as remote.origin.url), or URL. "
	 "TARGET is a mount point (its daemon pushes) or an unmounted store "
	 "directory (the journal is written into the history first). Exit 1, "
	 "naming the remote and the cause, if the remote cannot be reached "
	 "or refuses (a remote that has diverged).",
	 ctl_push},
	{"unlock", "--force STORE",
	 "Remove the store lock (after a crash on another host; a lock "
	 "left by a dead process on this host is recovered by itself). "
	 "Refused (exit 1, naming the holder's pid, host and start time) "
	 "while a live process on this host holds it; the lock of another "
	 "host is removed with a warning naming it.",
	 cmd_unlock},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: recfsctl COMMAND [ARGS...]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].usage);

	fprintf(f, "\n`recfsctl COMMAND --help` describes one command.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(argv[1], cmds[i].name) != 0)
			continue;
		current = &cmds[i];
		if (want_help(argc - 1, argv + 1)) {
			printf("usage: recfsctl %s %s\n\n%s\n", cmds[i].name,
			       cmds[i].usage, cmds[i].help);
			return EXIT_OK;
		}
		return cmds[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "recfsctl: unknown command \"%s\"\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
