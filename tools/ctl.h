/*
 * ctl.h - what the recfsctl subcommands share: exit codes, argument
 * helpers and opening a store. Each subcommand is a `ctl_NAME(argc, argv)`
 * with argv[0] the subcommand's name.
 */
#ifndef RECFS_CTL_H
#define RECFS_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

struct store;

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* Print "recfsctl CMD: what" and the command's usage; returns EXIT_USAGE. */
int ctl_usage_error(const char *what);

/* Remove `flag` from argv; returns whether it was there. */
bool ctl_take_flag(int *argc, char **argv, const char *flag);

/* Remove "--name VALUE" (or "--name=VALUE") from argv; NULL if absent. */
const char *ctl_take_option(int *argc, char **argv, const char *name);

/*
 * Say on stderr that `rc` failed: "recfsctl CMD: CONTEXT: CAUSE", with
 * CAUSE what the library reported for rc (err.h), or strerror(-rc) if it
 * reported nothing; a report that already begins with CONTEXT is printed
 * alone, so that nothing is said twice.
 */
void ctl_error(int rc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The cause of failure `rc` for a message of one's own: what the library
   reported, or strerror(-rc). */
const char *ctl_why(int rc);

/* Open the store at `path`, saying why on stderr if it cannot. */
int ctl_open_store(const char *path, bool ro, struct store **s);

/* ctl_open_store for writing, of a TARGET that is a store directory: if
   it cannot, also say to give the mount point if it is mounted. */
int ctl_open_target(const char *path, struct store **s);

/* Print `s` as a JSON string (quoted, escaped). */
void ctl_json_str(FILE *f, const char *s);

/* The name of the running subcommand, for messages. */
const char *ctl_name(void);

/* Is `dir` a store directory (has a format file)? A recfs mount point? */
bool ctl_is_store_dir(const char *dir);
bool ctl_is_mount(const char *dir);

/* What a TARGET argument names. */
enum ctl_target { CTL_NEITHER, CTL_STORE, CTL_MOUNT };

/* A store directory, else a recfs mount point, else neither: that is said
   on stderr ("recfsctl CMD: TARGET: neither a recfs mount point nor a
   store directory"). */
enum ctl_target ctl_target(const char *target);

/* Print version n of id (0: current) from a store or a mount. */
int ctl_show_version(const char *target, const char *id, uint64_t n);

/*
 * The control channel of a mount (fusefs/ctl.c): ask the daemon of mount
 * point `mnt` to run `verb` with `arg`; returns when it is done, 0 or
 * -errno (-EPERM: not the daemon's user nor root).
 */
int ctl_send(const char *mnt, const char *verb, const char *arg);

/* Why ctl_send failed, for a message: `eperm` for -EPERM, that the daemon
   does not know the request (an older recfs) for -EOPNOTSUPP, else
   ctl_why(rc). */
const char *ctl_send_why(int rc, const char *eperm);

/* The store directory of mount point `mnt` (from .recfs/status) into
   out[len]. Returns 0, -ENOENT if the daemon does not say, -EIO. */
int ctl_mount_store(const char *mnt, char *out, size_t len);

int ctl_backup(int argc, char **argv);
int ctl_update(int argc, char **argv);
int ctl_log(int argc, char **argv);
int ctl_diff(int argc, char **argv);
int ctl_rollback(int argc, char **argv);
int ctl_watch(int argc, char **argv);
int ctl_retain(int argc, char **argv);
int ctl_push(int argc, char **argv);

/* ctl_bulk.c: rollback STORE --to REVISION|DATE (argv: rollback STORE),
   and import STORE DIR. */
int ctl_rollback_store(int argc, char **argv, const char *to, bool dry);
int ctl_import(int argc, char **argv);

/* "@EPOCH" or "YYYY-MM-DD[THH:MM[:SS]][Z]" (local time without Z) into
 * *out. Returns 0 or -EINVAL. */
int ctl_parse_time(const char *s, struct timespec *out);

#endif
