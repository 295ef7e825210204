/*
 * etcd_uri.c - etcd://HOST:PORT[,HOST:PORT...]/PREFIX (etcd.h).
 */
#include "etcd.h"

#include "err.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHEME "etcd://"
#define FORM "etcd://HOST:PORT[,HOST:PORT...]/PREFIX"

void etcd_uri_free(struct etcd_uri *u)
{
	if (!u)
		return;
	for (size_t i = 0; i < u->n_endpoints; i++)
		free(u->endpoints[i]);
	free(u->endpoints);
	free(u->prefix);
	memset(u, 0, sizeof(*u));
}

static int bad(const char *uri, const char *what)
{
	return rerr_set(-EINVAL, "storage URI '%.200s': %s (the form is %s)",
			uri, what, FORM);
}

/* Is h[n] a host name or IPv4 address (letters, digits, '-', '.')? */
static int host_ok(const char *h, size_t n)
{
	if (n == 0 || n > 253)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)h[i]) && h[i] != '-' && h[i] != '.')
			return 0;
	return 1;
}

/* Is h[n] "[v6 address]"? */
static int host6_ok(const char *h, size_t n)
{
	if (n < 3 || h[0] != '[' || h[n - 1] != ']')
		return 0;
	for (size_t i = 1; i + 1 < n; i++)
		if (!isxdigit((unsigned char)h[i]) && h[i] != ':' &&
		    h[i] != '.')
			return 0;
	return 1;
}

/* Check one "HOST:PORT" of `uri`, ep[n]: 0 or -EINVAL, reported. */
static int endpoint_ok(const char *uri, const char *ep, size_t n)
{
	const char *colon = NULL;
	char msg[400];
	long port = 0;
	size_t i;

	for (i = n; i > 0; i--)
		if (ep[i - 1] == ':' || ep[i - 1] == ']') {
			colon = ep[i - 1] == ':' ? ep + i - 1 : NULL;
			break;
		}
	snprintf(msg, sizeof(msg), "member '%.*s'", (int)(n > 200 ? 200 : n),
		 ep);
	if (n == 0)
		return bad(uri, "a member is empty (two commas, or one at "
				"an end)");
	if (!colon || colon + 1 == ep + n)
		return bad(uri, strcat(msg, " has no port (HOST:PORT)"));
	for (const char *p = colon + 1; p < ep + n; p++) {
		if (!isdigit((unsigned char)*p) || port > 65535)
			return bad(uri, strcat(msg, ": the port is not a "
						    "number of 1..65535"));
		port = port * 10 + (*p - '0');
	}
	if (port < 1 || port > 65535)
		return bad(uri, strcat(msg, ": the port is not a number of "
					    "1..65535"));
	if (!host_ok(ep, (size_t)(colon - ep)) &&
	    !host6_ok(ep, (size_t)(colon - ep)))
		return bad(uri, strcat(msg, ": the host is not a name, an "
					    "IPv4 or a [IPv6] address"));
	return 0;
}

/* Split the members of `uri`, list[n], into u->endpoints. */
static int split_members(const char *uri, const char *list, size_t n,
			 struct etcd_uri *u)
{
	size_t count = 1, i, start = 0;
	int rc;

	for (i = 0; i < n; i++)
		count += list[i] == ',';
	u->endpoints = calloc(count, sizeof(*u->endpoints));
	if (!u->endpoints)
		return rerr_set(-ENOMEM, "storage URI: out of memory");
	for (i = 0; i <= n; i++) {
		if (i < n && list[i] != ',')
			continue;
		rc = endpoint_ok(uri, list + start, i - start);
		if (rc)
			return rc;
		u->endpoints[u->n_endpoints] = strndup(list + start, i - start);
		if (!u->endpoints[u->n_endpoints])
			return rerr_set(-ENOMEM, "storage URI: out of memory");
		u->n_endpoints++;
		start = i + 1;
	}
	return 0;
}

int etcd_uri_parse(const char *uri, struct etcd_uri *out)
{
	const char *members, *slash;
	int rc;

	memset(out, 0, sizeof(*out));
	if (strncmp(uri, SCHEME, strlen(SCHEME)) != 0)
		return bad(uri, "it does not start with etcd://");
	members = uri + strlen(SCHEME);
	slash = strchr(members, '/');
	if (!slash)
		return bad(uri, "there is no /PREFIX after the members");
	if (slash == members)
		return bad(uri, "no member is named before /PREFIX");
	if (slash[1] == '\0')
		return bad(uri, "the PREFIX after the members is empty");
	for (const char *p = slash + 1; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return bad(uri, "the PREFIX has a control character");
	rc = split_members(uri, members, (size_t)(slash - members), out);
	if (!rc && !(out->prefix = strdup(slash + 1)))
		rc = rerr_set(-ENOMEM, "storage URI: out of memory");
	if (rc)
		etcd_uri_free(out);
	return rc;
}
