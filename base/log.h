/*
 * log.h - diagnostics. Messages go to stderr, or to syslog once the daemon
 * has detached (rlog_use_syslog). Errors name the record ID or file and
 * the cause, e.g. rlog_err("commit %s: journal fsync: %s", id, strerror(e)).
 */
#ifndef RECFS_LOG_H
#define RECFS_LOG_H

#include <stdbool.h>

enum rlog_level { RLOG_ERR, RLOG_WARN, RLOG_INFO, RLOG_DEBUG };

/* Send messages to syslog (true) or stderr (false, the default). */
void rlog_use_syslog(bool on);

/* Messages above this level are dropped (default RLOG_INFO). */
void rlog_set_level(enum rlog_level level);

void rlog(enum rlog_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define rlog_err(...) rlog(RLOG_ERR, __VA_ARGS__)
#define rlog_warn(...) rlog(RLOG_WARN, __VA_ARGS__)
#define rlog_info(...) rlog(RLOG_INFO, __VA_ARGS__)
#define rlog_debug(...) rlog(RLOG_DEBUG, __VA_ARGS__)

#endif
