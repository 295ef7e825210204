/*
 * log.c - diagnostics to stderr or syslog.
 *
 * The destination and level are process-wide by nature (like syslog's own
 * openlog state), so they are the one piece of global state here; they are
 * set once in main before any thread starts and only read afterwards.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>

static bool use_syslog;
static enum rlog_level max_level = RLOG_INFO;

void rlog_use_syslog(bool on)
{
	use_syslog = on;
}

void rlog_set_level(enum rlog_level level)
{
	max_level = level;
}

void rlog(enum rlog_level level, const char *fmt, ...)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	static const char *const tag[] = {"error", "warning", "info", "debug"};
	char msg[1024];
	va_list ap;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (use_syslog)
		syslog(prio[level], "%s", msg);
	else
		fprintf(stderr, "recfs: %s: %s\n", tag[level], msg);
}
