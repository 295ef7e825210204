/*
 * fuzz_format.c - libFuzzer target for store/format.c (format_check).
 *
 * Each input is written as STORE/format.json in a per-process temp dir
 * (made once, reused) and checked. format_check must return one of 0,
 * -ENOENT, -EPROTONOSUPPORT or -EBADMSG, never crash, allocate only a
 * bounded amount (libFuzzer's -malloc_limit_mb / -rss_limit_mb trap the
 * rest), fill its message with printable text only (it is read from the
 * file and goes to a terminal or the log), and never write to the store
 * (the file is unchanged afterwards). An accepted file is checked against
 * an independent reading with jansson: an object with "format": "recfs",
 * an integer "version" in 1..STORE_FORMAT_VERSION and a string "created".
 */
#include "format.h"
#include "log.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			abort();                                               \
		}                                                              \
	} while (0)

static char dir_path[] = "/tmp/recfs-fuzz-format.XXXXXX";
static int dir_fd = -1;
static uint8_t *back; /* what the file holds after the check */

static void dir_remove(void)
{
	unlinkat(dir_fd, FORMAT_FILE, 0);
	close(dir_fd);
	rmdir(dir_path);
	free(back);
}

static void dir_init(void)
{
	if (dir_fd >= 0)
		return;
	check(mkdtemp(dir_path) != NULL);
	dir_fd = open(dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	check(dir_fd >= 0);
	back = malloc(FORMAT_MAX_BYTES + 2);
	check(back != NULL);
	atexit(dir_remove);
	rlog_set_level(RLOG_ERR);
}

static void write_file(const uint8_t *data, size_t size)
{
	int fd = openat(dir_fd, FORMAT_FILE,
			O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	check(fd >= 0);
	check(write(fd, data, size) == (ssize_t)size);
	close(fd);
}

/* The file is byte for byte what we wrote: format_check wrote nothing. */
static void check_unchanged(const uint8_t *data, size_t size)
{
	int fd = openat(dir_fd, FORMAT_FILE, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	check(fd >= 0);
	n = read(fd, back, FORMAT_MAX_BYTES + 2);
	close(fd);
	check(n == (ssize_t)(size < FORMAT_MAX_BYTES + 2
				     ? size
				     : FORMAT_MAX_BYTES + 2));
	check(n == 0 || memcmp(back, data, (size_t)n) == 0);
}

/* What an accepted file must be, read independently. */
static void check_accepted(const uint8_t *data, size_t size)
{
	json_t *doc, *v, *f;

	check(size > 0 && size <= FORMAT_MAX_BYTES);
	doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES,
			 NULL);
	check(json_is_object(doc));
	f = json_object_get(doc, "format");
	check(json_is_string(f) && strcmp(json_string_value(f), "recfs") == 0);
	v = json_object_get(doc, "version");
	check(json_is_integer(v) && json_integer_value(v) >= 1 &&
	      json_integer_value(v) <= STORE_FORMAT_VERSION);
	check(json_is_string(json_object_get(doc, "created")));
	json_decref(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[512];
	size_t n;
	int rc;

	dir_init();
	write_file(data, size);
	memset(why, 'X', sizeof(why));
	rc = format_check(dir_fd, dir_path, why, sizeof(why));
	check(rc == 0 || rc == -ENOENT || rc == -EPROTONOSUPPORT ||
	      rc == -EBADMSG);
	check(rc != -ENOENT); /* the file is there */
	n = strnlen(why, sizeof(why));
	check(n < sizeof(why));
	for (size_t i = 0; i < n; i++)
		check(why[i] >= 0x20 && why[i] < 0x7f);
	if (rc == 0) {
		check_accepted(data, size);
	} else {
		check(n > 0); /* a refusal says why */
		check(strstr(why, FORMAT_FILE) != NULL); /* naming the file */
	}
	/* NULL message buffer: same answer */
	check(format_check(dir_fd, NULL, NULL, 0) == rc);
	check_unchanged(data, size);
	return 0;
}
