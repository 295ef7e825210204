/*
 * err.c - the per-thread last error (err.h).
 */
#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local struct rerr last;

/* Mark a message that did not fit: its last bytes become "...". */
static void mark_cut(char *msg, int n)
{
	if (n >= RERR_MSG_MAX)
		memcpy(msg + RERR_MSG_MAX - 4, "...", 4);
}

static int set_v(int code, const char *fmt, va_list ap)
{
	int n;

	if (code >= 0)
		code = -EIO;
	n = vsnprintf(last.msg, sizeof(last.msg), fmt, ap);
	if (n < 0)
		snprintf(last.msg, sizeof(last.msg), "%s", strerror(-code));
	else
		mark_cut(last.msg, n);
	last.code = code;
	return code;
}

int rerr_set(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	code = set_v(code, fmt, ap);
	va_end(ap);
	return code;
}

int rerr_prefix(int code, const char *fmt, ...)
{
	char pre[RERR_MSG_MAX], old[RERR_MSG_MAX];
	va_list ap;
	int n;

	if (code >= 0)
		code = -EIO;
	va_start(ap, fmt);
	n = vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	if (n < 0)
		pre[0] = '\0';
	if (last.code == code)
		memcpy(old, last.msg, sizeof(old));
	else
		snprintf(old, sizeof(old), "%s", strerror(-code));
	n = snprintf(last.msg, sizeof(last.msg), "%s: %s", pre, old);
	mark_cut(last.msg, n);
	last.code = code;
	return code;
}

const struct rerr *rerr_last(void)
{
	return last.code ? &last : NULL;
}

void rerr_clear(void)
{
	last.code = 0;
	last.msg[0] = '\0';
}

const char *rerr_take(int code)
{
	if (code >= 0 || last.code != code)
		return NULL;
	last.code = 0;
	return last.msg;
}

const char *rerr_what(int code)
{
	if (code < 0 && last.code == code)
		return last.msg;
	return strerror(code < 0 ? -code : code);
}
