/*
 * err.h - errors reported, not logged, in the manner of libgit2's
 * git_error_last: a function that fails returns -errno as always and, where
 * it knows more than the errno says, leaves a message naming the record ID
 * (or file) and the cause in a per-thread "last error". The caller -- the
 * daemon, recfsctl, a test -- decides whether and where to log or print it,
 * once:
 *
 *	if (fd < 0)
 *		return rerr_set(-errno, "record %s: open stage: %s", id,
 *				strerror(errno));
 *	...
 *	rc = store_open(dir, &opts, &s);
 *	if (rc)
 *		fprintf(stderr, "recfsctl: %s\n", rerr_what(rc));
 *
 * Thread-safety: the last error is thread-local (C11 _Thread_local): each
 * thread sees only the errors set by its own calls, so no lock is needed
 * and no thread can overwrite another's message. A message is valid until
 * the same thread sets or clears the next one; successful calls do not
 * clear it, so read it right after the call that failed (rerr_what does
 * that safely by checking the code).
 *
 * The library logs only where nothing can report: a background thread
 * with no caller (say so where it happens).
 */
#ifndef RECFS_ERR_H
#define RECFS_ERR_H

/* Room for a message, NUL included; longer ones are cut, ending "...". */
#define RERR_MSG_MAX 512

struct rerr {
	int code;		/* -errno; 0: no error set */
	char msg[RERR_MSG_MAX]; /* what failed and why, without a newline */
};

/*
 * Set this thread's last error to `code` (a negative errno) with a
 * printf-style message; returns `code`, so that
 *	return rerr_set(-ENOENT, "record %s: no such record", id);
 * reports and returns in one. A `code` of 0 or above is taken as -EIO.
 */
int rerr_set(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Put "<prefix>: " in front of the last error's message if its code is
 * `code` (the error a callee reported), else set `code` with the prefix
 * and strerror(-code) as the message. Returns `code`. For adding the
 * context a callee did not know (the record ID, the store's path).
 */
int rerr_prefix(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* This thread's last error, or NULL if none is set. */
const struct rerr *rerr_last(void);

/* Forget this thread's last error. */
void rerr_clear(void);

/*
 * Take the message reported with `code` for logging it once: returns it
 * and marks the last error as taken (rerr_last() is NULL afterwards), or
 * returns NULL if the failure `code` was not reported (then there is
 * nothing more to say than strerror). The text stays valid until this
 * thread's next rerr_set or rerr_prefix.
 */
const char *rerr_take(int code);

/*
 * What to print for the failure `code` (a negative errno) just returned:
 * the last error's message if it was reported with that code, else
 * strerror(-code). Thread-local storage: valid until the next rerr call
 * of this thread.
 */
const char *rerr_what(int code);

#endif
