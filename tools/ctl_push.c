/*
 * ctl_push.c - `recfsctl push TARGET [--remote URL]` (SPEC section 9):
 * push the history to its git remote now, fast-forward only.
 *
 * TARGET is a mount point: its daemon pushes (user.recfs.ctl.push on the
 * mount root, fusefs/ctl.c, with URL or ""), and the cause of a failure
 * is read back from the "history_remote" of its .recfs/status. Or an
 * unmounted store directory, which the tool opens (taking its lock,
 * writing what the journal holds into the history first) and pushes
 * itself. Without --remote, the remote is the one kept in history.git's
 * config (remote.origin.url, set by `-o history_remote=URL`).
 */
#include "admin.h"
#include "ctl.h"
#include "store.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The remote's URL, pushed commit and error from the daemon's status. */
static void mount_remote(const char *mnt, char *url, size_t ulen, char *pushed,
			 size_t plen, char *msg, size_t mlen)
{
	char path[PATH_MAX];
	json_error_t jerr;
	json_t *st, *r;
	const char *s;

	url[0] = pushed[0] = msg[0] = '\0';
	snprintf(path, sizeof(path), "%s/.recfs/status", mnt);
	st = json_load_file(path, 0, &jerr);
	r = st ? json_object_get(st, "history_remote") : NULL;
	if (r && (s = json_string_value(json_object_get(r, "url"))))
		snprintf(url, ulen, "%s", s);
	if (r && (s = json_string_value(json_object_get(r, "pushed"))))
		snprintf(pushed, plen, "%s", s);
	if (r && (s = json_string_value(json_object_get(r, "error"))))
		snprintf(msg, mlen, "%s", s);
	json_decref(st);
}

static int by_mount(const char *mnt, const char *url)
{
	char rurl[1024], pushed[64], msg[512];
	int rc = ctl_send(mnt, "push", url ? url : "");

	mount_remote(mnt, rurl, sizeof(rurl), pushed, sizeof(pushed), msg,
		     sizeof(msg));
	if (url)
		snprintf(rurl, sizeof(rurl), "%s", url);
	if (rc == 0) {
		printf("pushed the history of %s to %s", mnt, rurl);
		if (!url && pushed[0])
			printf(" (main at %s)", pushed);
		printf("\n");
		return EXIT_OK;
	}
	if (rc == -ENOENT && !rurl[0])
		fprintf(stderr,
			"recfsctl push: %s: no history remote is set (mount "
			"with -o history_remote=URL, or give --remote URL)\n",
			mnt);
	else
		fprintf(stderr, "recfsctl push: %s: push to %s failed%s: %s\n",
			mnt, rurl[0] ? rurl : "the remote",
			rc == -ESTALE ? " (refused, not forced)" : "",
			msg[0] ? msg
			       : ctl_send_why(rc, "only the user running the "
						  "daemon, or root, may push"));
	return EXIT_FAIL;
}

static int offline(const char *target, const char *url)
{
	struct store_remote_state st;
	struct store *s = NULL;
	int rc;

	if (ctl_open_target(target, &s))
		return EXIT_FAIL;
	rc = store_history_push(s, url);
	if (rc) {
		ctl_error(rc, "%s", target);
	} else {
		store_remote_state(s, &st);
		printf("pushed the history of %s to %s\n", target,
		       url ? url : st.url);
	}
	if (store_close(s) && rc == 0)
		rc = -EIO;
	return rc ? EXIT_FAIL : EXIT_OK;
}

int ctl_push(int argc, char **argv)
{
	const char *url = ctl_take_option(&argc, argv, "--remote");

	if (argc != 2)
		return ctl_usage_error("expects TARGET");
	if (url && (!url[0] || strlen(url) >= 1024))
		return ctl_usage_error(
			"--remote URL: an empty or too long URL");
	switch (ctl_target(argv[1])) {
	case CTL_STORE:
		return offline(argv[1], url);
	case CTL_MOUNT:
		return by_mount(argv[1], url);
	default:
		return EXIT_FAIL;
	}
}
