/*
 * format.c - STORE/format.json, the store's format version.
 *
 * Written once by init, atomically (temp file, fsync, rename, fsync of the
 * directory), so a crash leaves either no format file or a complete one.
 * Read on every open as untrusted input: bounded, parsed with jansson, and
 * every way it can be wrong gives a one-line message naming the file. A
 * newer version is refused before anything else in the store is touched.
 */
#include "format.h"
#include "buf.h"
#include "util.h"
#include "io.h"
#include "err.h"
#include "log.h"
#include "store.h" /* STORE_FORMAT_VERSION only */

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FORMAT_NAME "recfs"

/* The document, one line of compact JSON and a newline, into buf. */
static int format_render(char *buf, size_t len, size_t *outlen)
{
	char created[32];
	json_t *doc = NULL;
	size_t n;
	int ret;

	ret = util_now_iso(created, sizeof(created));
	if (ret < 0)
		goto out;
	doc = json_pack("{s:s, s:i, s:s}", "format", FORMAT_NAME, "version",
			STORE_FORMAT_VERSION, "created", created);
	if (!doc) {
		ret = -ENOMEM;
		goto out;
	}
	n = json_dumpb(doc, buf, len - 1, JSON_COMPACT);
	if (n == 0 || n > len - 1) {
		ret = -ENOMEM;
		goto out;
	}
	buf[n++] = '\n';
	*outlen = n;
out:
	json_decref(doc);
	return ret;
}

/*
 * `dirfd` must be open for reading (not O_PATH): it is fsync'ed. The temp
 * name carries our pid; one left by a crashed run with the same pid is
 * removed and made again.
 */
int format_write(struct io *io, int dirfd)
{
	const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
	const char *step = "render";
	char tmp[64];
	char buf[256];
	bool made = false;
	size_t len = 0;
	ssize_t w;
	int fd = -1;
	int ret;

	snprintf(tmp, sizeof(tmp), FORMAT_FILE ".tmp.%ld", (long)getpid());
	ret = format_render(buf, sizeof(buf), &len);
	if (ret < 0)
		goto out;
	step = "create";
	fd = io_openat(io, "format.write", dirfd, tmp, flags, 0600);
	if (fd == -EEXIST) {
		ret = io_unlinkat(io, "format.unlink", dirfd, tmp, 0);
		if (ret < 0)
			goto out;
		fd = io_openat(io, "format.write", dirfd, tmp, flags, 0600);
	}
	if (fd < 0) {
		ret = fd;
		fd = -1;
		goto out;
	}
	made = true;
	step = "write";
	w = io_pwrite_all(io, "format.write", fd, buf, len, 0);
	if (w < 0) {
		ret = (int)w;
		goto out;
	}
	step = "fsync";
	ret = io_fsync(io, "format.fsync", fd);
	if (ret < 0)
		goto out;
	step = "close";
	ret = close(fd);
	fd = -1;
	if (ret < 0) {
		ret = -errno;
		goto out;
	}
	step = "rename";
	ret = io_renameat(io, "format.rename", dirfd, tmp, dirfd, FORMAT_FILE,
			  0);
	if (ret < 0)
		goto out;
	made = false;
	step = "directory fsync";
	ret = io_fsync(io, "format.dirsync", dirfd);
out:
	if (fd >= 0)
		close(fd);
	if (made)
		io_unlinkat(io, "format.unlink", dirfd, tmp, 0);
	if (ret < 0)
		rerr_set(ret, "%s: %s: %s", FORMAT_FILE, step, strerror(-ret));
	return ret;
}

/* Check the parsed document; `name` is for messages. */
static int check_doc(json_t *doc, const char *name, char *why, size_t whylen)
{
	json_t *format = NULL;
	json_t *version = NULL;
	json_int_t v;

	if (!json_is_object(doc)) {
		util_say(why, whylen, "%s: not a JSON object", name);
		return -EBADMSG;
	}
	format = json_object_get(doc, "format");
	if (!json_is_string(format) ||
	    strcmp(json_string_value(format), FORMAT_NAME) != 0) {
		util_say(why, whylen,
			 "%s: not a recfs store (\"format\" is not "
			 "\"" FORMAT_NAME "\")",
			 name);
		return -EBADMSG;
	}
	version = json_object_get(doc, "version");
	if (!json_is_integer(version)) {
		util_say(why, whylen,
			 "%s: \"version\" is missing or not an integer", name);
		return -EBADMSG;
	}
	v = json_integer_value(version);
	if (v < 1) {
		util_say(why, whylen,
			 "%s: format version %" JSON_INTEGER_FORMAT
			 " is not valid",
			 name, v);
		return -EBADMSG;
	}
	/* checked before the rest: a newer format may change the rest */
	if (v > STORE_FORMAT_VERSION) {
		util_say(why, whylen,
			 "%s: format version %" JSON_INTEGER_FORMAT
			 " is newer than this recfs supports (%d); upgrade "
			 "recfs",
			 name, v, STORE_FORMAT_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (!json_is_string(json_object_get(doc, "created"))) {
		util_say(why, whylen,
			 "%s: \"created\" is missing or not a string", name);
		return -EBADMSG;
	}
	return 0;
}

/* Open the format file `name` (FORMAT_FILE in `dirfd`) for reading: the
   fd, or -errno with `why` saying what is wrong with it. */
static int open_format(int dirfd, const char *name, char *why, size_t whylen)
{
	struct stat st;
	int fd, ret;

	/* O_NONBLOCK: a FIFO planted under the name must not hang us */
	fd = openat(dirfd, FORMAT_FILE,
		    O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		if (ret == -ENOENT) {
			util_say(why, whylen, "%s: missing (not a recfs store)",
				 name);
		} else if (ret == -ELOOP) {
			ret = -EBADMSG;
			util_say(why, whylen, "%s: is a symbolic link", name);
		} else {
			util_say(why, whylen, "%s: cannot open: %s", name,
				 strerror(-ret));
		}
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		util_say(why, whylen, "%s: cannot stat: %s", name,
			 strerror(-ret));
	} else if (!S_ISREG(st.st_mode)) {
		ret = -EBADMSG;
		util_say(why, whylen, "%s: not a regular file", name);
	} else {
		return fd;
	}
	close(fd);
	return ret;
}

/* Never writes to the store: a refused store is left as it was. */
int format_check(int dirfd, const char *path, char *why, size_t whylen)
{
	char name[4200];
	char text[JSON_ERROR_TEXT_LENGTH];
	json_error_t jerr;
	json_t *doc = NULL;
	struct buf text_buf = BUF_INIT;
	const char *buf;
	size_t len;
	int fd = -1;
	int ret;

	if (path && *path)
		snprintf(name, sizeof(name), "%s%s" FORMAT_FILE, path,
			 path[strlen(path) - 1] == '/' ? "" : "/");
	else
		snprintf(name, sizeof(name), FORMAT_FILE);
	util_say(why, whylen, "%s", "");

	fd = open_format(dirfd, name, why, whylen);
	if (fd < 0) {
		ret = fd;
		goto out;
	}
	ret = buf_read_fd(&text_buf, fd, FORMAT_MAX_BYTES);
	buf = text_buf.ptr;
	len = text_buf.len;
	if (ret == -EFBIG) {
		ret = -EBADMSG;
		util_say(why, whylen, "%s: larger than %d bytes", name,
			 FORMAT_MAX_BYTES);
		goto out;
	}
	if (ret < 0) {
		util_say(why, whylen, "%s: cannot read: %s", name,
			 strerror(-ret));
		goto out;
	}
	if (len == 0) {
		ret = -EBADMSG;
		util_say(why, whylen, "%s: empty", name);
		goto out;
	}
	doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		ret = -EBADMSG;
		util_clean_copy(text, sizeof(text), jerr.text);
		util_say(why, whylen,
			 "%s: not valid JSON at line %d column %d: %s", name,
			 jerr.line, jerr.column, text);
		goto out;
	}
	ret = check_doc(doc, name, why, whylen);
out:
	json_decref(doc);
	buf_free(&text_buf);
	if (fd >= 0)
		close(fd);
	return ret;
}

/* Report format_check's refusal `rc` of the store at `path`. */
static int format_refused(int rc, const char *path, const char *why)
{
	if (rc == -ENOENT)
		return rerr_set(rc,
				"%s: not a recfs store (no %s); create one "
				"with `recfsctl init %s`, or make the files "
				"in it records with `recfsctl init --adopt %s`",
				path, FORMAT_FILE, path, path);
	if (why[0])
		return rerr_set(rc, "%s", why);
	return rerr_set(rc, "%s: cannot read the format file: %s", path,
			strerror(-rc));
}

int format_open_dir(const char *path, int *dirfd)
{
	char why[512] = "";
	int rc;

	*dirfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (*dirfd < 0)
		return rerr_set(-errno, "%s: cannot open store: %s", path,
				strerror(errno));
	rc = format_check(*dirfd, path, why, sizeof(why));
	if (rc) {
		close(*dirfd);
		*dirfd = -1;
		return format_refused(rc, path, why);
	}
	return 0;
}
