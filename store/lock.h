/*
 * lock.h - the store lock (SPEC section 6): one daemon or tool at a time.
 *
 * STORE/lock is a small JSON file {"pid":N,"host":"...","start":"ISO-8601"}
 * held with flock(LOCK_EX): the kernel drops the flock when the holder dies,
 * so a lock left by a dead process on this host is recovered automatically
 * (and logged). A lock whose file names another host is refused (it cannot
 * be checked from here): `recfsctl unlock --force` is the recovery.
 */
#ifndef RECFS_LOCK_H
#define RECFS_LOCK_H

#include <stddef.h>

struct store_lock;

#define LOCK_FILE "lock"

/*
 * Take the lock of the store whose directory is `dirfd` (borrowed; the
 * lock keeps its own fd). On -EBUSY, `msg` (may be NULL) gets a sentence
 * naming the holder: "locked by pid 123 on host h since 2026-...". The
 * lock file is created 0600. Returns 0 or -errno; *out is the caller's.
 */
int lock_acquire(struct store_lock **out, int dirfd, char *msg, size_t msglen);

/*
 * Take the lock shared, for an open that writes nothing (recfsctl verify
 * without --repair): no lock file is created and no record written. A
 * stale record of this host is left as it is; a live holder or another
 * host's record is -EBUSY, as for lock_acquire. Shared holders exclude a
 * lock_acquire, not each other. With no lock file, *out is a lock that
 * holds nothing. Returns 0 or -errno; *out is the caller's.
 */
int lock_acquire_shared(struct store_lock **out, int dirfd, char *msg,
			size_t msglen);

/* Rewrite the holder record with the current pid (after a fork). */
int lock_refresh(struct store_lock *l);

/* Release and free: empties the lock file, then drops the flock. NULL ok. */
void lock_release(struct store_lock *l);

/*
 * Describe the holder of the lock of the store at `dirfd` into msg.
 * Returns 0 if a live process holds it, -ENOENT if nobody does.
 */
int lock_holder(int dirfd, char *msg, size_t msglen);

/*
 * Remove the lock file (unlock --force), unless a live process on this
 * host holds it: then -EBUSY and `msg` names its pid, host and start time.
 * A lock whose record names another host is removed (it cannot be
 * checked from here), and `msg` says whose it was, for a warning. Returns
 * 0 (also when there was no lock file), -EBUSY or -errno; `msg` (may be
 * NULL) always gets a sentence.
 */
int lock_force(int dirfd, char *msg, size_t msglen);

#endif
