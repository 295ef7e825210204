/*
 * history_msg.c - the commit messages of the history (format in
 * history.h): writing trailer blocks, and reading them back when the
 * index is rebuilt from the commits. Messages are untrusted input when
 * read: every value is checked and bounded, a block that does not parse
 * is skipped (and counted), never trusted.
 */
#include "hist_i.h"
#include "id.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- values ------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s[0..n), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

static bool needs_quotes(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, k;

	if (n == 0 || u[0] == '"' || u[0] == ' ' || u[n - 1] == ' ')
		return true;
	while (i < n) {
		if (u[i] < 0x20 || u[i] == 0x7f || u[i] == '\\')
			return true;
		k = utf8_len(u + i, n - i);
		if (k == 0)
			return true;
		i += k;
	}
	return false;
}

void hmsg_value(struct buf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, k;

	if (!needs_quotes(s, n)) {
		buf_put(b, s, n);
		return;
	}
	buf_put(b, "\"", 1);
	while (i < n) {
		unsigned char c = u[i];

		k = c >= 0x80 ? utf8_len(u + i, n - i) : 1;
		if (c == '"' || c == '\\')
			buf_printf(b, "\\%c", c);
		else if (c == '\n')
			buf_puts(b, "\\n");
		else if (c == '\t')
			buf_puts(b, "\\t");
		else if (c == '\r')
			buf_puts(b, "\\r");
		else if (c < 0x20 || c == 0x7f || k == 0)
			buf_printf(b, "\\%03o", c);
		else {
			buf_put(b, u + i, k);
			i += k;
			continue;
		}
		i++;
	}
	buf_put(b, "\"", 1);
}

/* Undo hmsg_value into out[cap] (NUL-terminated). Returns the length or
   -1 if `s` is not a valid value or does not fit. */
static long unquote(const char *s, size_t n, char *out, size_t cap)
{
	size_t i = 1, o = 0;

	if (n == 0 || s[0] != '"') {
		if (n >= cap)
			return -1;
		memcpy(out, s, n);
		out[n] = '\0';
		return (long)n;
	}
	if (n < 2 || s[n - 1] != '"')
		return -1;
	n--; /* the closing quote */
	while (i < n) {
		char c = s[i++];

		if (o + 1 >= cap)
			return -1;
		if (c != '\\') {
			out[o++] = c;
			continue;
		}
		if (i >= n)
			return -1;
		c = s[i++];
		if (c == 'n' || c == 't' || c == 'r')
			out[o++] = c == 'n' ? '\n' : c == 't' ? '\t' : '\r';
		else if (c == '"' || c == '\\')
			out[o++] = c;
		else if (c >= '0' && c <= '3' && i + 2 <= n && s[i] >= '0' &&
			 s[i] <= '7' && s[i + 1] >= '0' && s[i + 1] <= '7') {
			out[o++] = (char)((c - '0') * 64 + (s[i] - '0') * 8 +
					  (s[i + 1] - '0'));
			i += 2;
		} else {
			return -1;
		}
	}
	out[o] = '\0';
	return (long)o;
}

void hmsg_time(int64_t ns, char *buf, size_t len)
{
	time_t sec = (time_t)(ns / 1000000000);
	long frac = (long)(ns % 1000000000);
	struct tm tm;

	if (frac < 0) {
		frac += 1000000000;
		sec--;
	}
	gmtime_r(&sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, frac);
}

static int parse_time(const char *s, int64_t *ns)
{
	struct tm tm = {0};
	char frac[10] = "";
	char z = 0;
	long f = 0;
	int n = 0;

	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%9[0-9]%c%n", &tm.tm_year,
		   &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec,
		   frac, &z, &n) != 8 ||
	    z != 'Z' || s[n] != '\0' || strlen(frac) != 9)
		return -1;
	f = strtol(frac, NULL, 10);
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*ns = (int64_t)timegm(&tm) * 1000000000 + f;
	return 0;
}

static void hex(struct buf *b, const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		char two[2] = {digits[p[i] >> 4], digits[p[i] & 15]};

		buf_put(b, two, 2);
	}
}

void hmsg_block(struct buf *b, const struct hmsg_ver *v)
{
	const struct hent *e = &v->e;
	char t[48], oid[GIT_OID_HEXSZ + 1];

	buf_puts(b, "\nRecfs-Id: ");
	hmsg_value(b, v->id, v->id_len);
	buf_printf(b, "\nRecfs-Version: %" PRIu64 "\nRecfs-Revision: %" PRIu64,
		   e->version, e->revision);
	if (!(e->flags & (HENT_DELETED | HENT_MISSING))) {
		git_oid_tostr(oid, sizeof(oid), &e->blob);
		buf_printf(b, "\nRecfs-Blob: %s", oid);
	}
	if (!(e->flags & HENT_DELETED)) {
		if (e->flags & HENT_HASH) {
			buf_puts(b, "\nRecfs-Hash: xxh3-128:");
			hex(b, e->hash, 16);
		}
		buf_printf(b, "\nRecfs-Size: %" PRIu64, e->size);
		if (e->flags & HENT_SYMLINK)
			buf_puts(b, "\nRecfs-Symlink: true");
		if (e->flags & HENT_META)
			buf_printf(b,
				   "\nRecfs-Owner: %" PRIu32 ":%" PRIu32
				   "\nRecfs-Mode: 0%03" PRIo32,
				   e->ouid, e->ogid, e->mode);
	}
	if (v->from) {
		buf_puts(b, "\nRecfs-From: ");
		hmsg_value(b, v->from, v->from_len);
	}
	if (v->to) {
		buf_puts(b, "\nRecfs-To: ");
		hmsg_value(b, v->to, v->to_len);
	}
	if (e->flags & HENT_DELETED)
		buf_puts(b, "\nRecfs-Deleted: true");
	if (e->flags & HENT_MISSING)
		buf_puts(b, "\nRecfs-Missing: true");
	buf_printf(b, "\nRecfs-Uid: %" PRIu32 "\nRecfs-Pid: %" PRIu32, e->uid,
		   e->pid);
	buf_puts(b, "\nRecfs-Comm: ");
	hmsg_value(b, e->comm, strnlen(e->comm, sizeof(e->comm)));
	hmsg_time(e->time_ns, t, sizeof(t));
	buf_printf(b, "\nRecfs-Time: %s\n", t);
}

/* ---- parsing ----------------------------------------------------------- */

static int parse_u64(const char *s, uint64_t *v)
{
	uint64_t x = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (*s < '0' || *s > '9' || x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	*v = x;
	return 0;
}

static int parse_hex(const char *s, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int v = 0;

		for (int k = 0; k < 2; k++) {
			char c = s[2 * i + (size_t)k];

			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= c - '0';
			else if (c >= 'a' && c <= 'f')
				v |= c - 'a' + 10;
			else
				return -1;
		}
		out[i] = (uint8_t)v;
	}
	return s[2 * n] == '\0' ? 0 : -1;
}

/* A block being parsed: values unquoted into fixed buffers. */
struct pblock {
	struct hmsg_ver v;
	char id[ID_MAX_LEN + 1], from[ID_MAX_LEN + 1], to[ID_MAX_LEN + 1];
	bool has_id, has_version, has_revision, has_blob, bad;
	bool has_owner, has_mode; /* both: HENT_META */
};

static bool is_key(const char *line, size_t n, const char *key,
		   const char **val, size_t *vlen)
{
	size_t k = strlen(key);

	if (n < k + 2 || memcmp(line, key, k) != 0 || line[k] != ':' ||
	    line[k + 1] != ' ')
		return false;
	*val = line + k + 2;
	*vlen = n - k - 2;
	return true;
}

static bool id_value(const char *val, size_t n, char *out, size_t *len)
{
	long l = unquote(val, n, out, ID_MAX_LEN + 1);

	if (l < 0 || id_parse(out, (size_t)l, NULL) != 0)
		return false;
	*len = (size_t)l;
	return true;
}

/* "UID:GID", each a u32. */
static bool parse_owner(const char *s, uint32_t *uid, uint32_t *gid)
{
	char a[16], b[16];
	const char *colon = strchr(s, ':');
	uint64_t u, g;

	if (!colon || (size_t)(colon - s) >= sizeof(a) ||
	    strlen(colon + 1) >= sizeof(b))
		return false;
	memcpy(a, s, (size_t)(colon - s));
	a[colon - s] = '\0';
	strcpy(b, colon + 1);
	if (parse_u64(a, &u) || parse_u64(b, &g) || u > UINT32_MAX ||
	    g > UINT32_MAX)
		return false;
	*uid = (uint32_t)u;
	*gid = (uint32_t)g;
	return true;
}

/* "0" and octal digits, at most 07777. */
static bool parse_mode(const char *s, uint32_t *mode)
{
	uint32_t m = 0;

	if (s[0] != '0' || strlen(s) > 5)
		return false;
	for (s++; *s; s++) {
		if (*s < '0' || *s > '7')
			return false;
		m = m * 8 + (uint32_t)(*s - '0');
	}
	if (m > 07777)
		return false;
	*mode = m;
	return true;
}

/* The trailers that came with owners and symlinks: each optional, as
   older commits have none. Returns true if the line was one of them. */
static bool block_meta_line(struct pblock *pb, const char *line, size_t n)
{
	struct hent *e = &pb->v.e;
	const char *val;
	char tmp[40];
	size_t vlen;
	int key;

	if (is_key(line, n, "Recfs-Pruned", &val, &vlen))
		key = 'P';
	else if (is_key(line, n, "Recfs-Owner", &val, &vlen))
		key = 'O';
	else if (is_key(line, n, "Recfs-Mode", &val, &vlen))
		key = 'M';
	else if (is_key(line, n, "Recfs-Symlink", &val, &vlen))
		key = 'S';
	else
		return false;
	if (vlen >= sizeof(tmp)) {
		pb->bad = true;
		return true;
	}
	memcpy(tmp, val, vlen);
	tmp[vlen] = '\0';
	if (key == 'O') {
		pb->has_owner = parse_owner(tmp, &e->ouid, &e->ogid);
		pb->bad |= !pb->has_owner;
	} else if (key == 'M') {
		pb->has_mode = parse_mode(tmp, &e->mode);
		pb->bad |= !pb->has_mode;
	} else if (key == 'P') {
		/* the time of the prune (history_prune.c) */
		int64_t ns;

		if (parse_time(tmp, &ns) == 0)
			e->flags |= HENT_PRUNED;
		else
			pb->bad = true;
	} else if (strcmp(tmp, "true") == 0) {
		e->flags |= HENT_SYMLINK;
	} else {
		pb->bad = true;
	}
	return true;
}

/* The value of a numeric (or hex, time, flag) trailer, tmp[0..vlen), into
   the block; key is the letter after "Recfs-". */
static void block_value(struct pblock *pb, char key, const char *tmp,
			size_t vlen)
{
	struct hent *e = &pb->v.e;
	uint64_t u = 0;
	bool num = parse_u64(tmp, &u) == 0;

	switch (key) {
	case 'V':
		pb->has_version = num && u > 0;
		e->version = u;
		break;
	case 'R':
		pb->has_revision = num && u > 0;
		e->revision = u;
		break;
	case 'B':
		pb->has_blob = git_oid_fromstr(&e->blob, tmp) == 0 &&
			       vlen == GIT_OID_HEXSZ;
		pb->bad |= !pb->has_blob;
		break;
	case 'H':
		if (strncmp(tmp, "xxh3-128:", 9) == 0 &&
		    parse_hex(tmp + 9, e->hash, 16) == 0)
			e->flags |= HENT_HASH;
		else
			pb->bad = true;
		break;
	case 'S':
		pb->bad |= !num;
		e->size = u;
		break;
	case 'U':
	case 'P':
		pb->bad |= !num || u > UINT32_MAX;
		if (key == 'U')
			e->uid = (uint32_t)u;
		else
			e->pid = (uint32_t)u;
		break;
	case 'T':
		pb->bad |= parse_time(tmp, &e->time_ns) != 0;
		break;
	case 'D':
	case 'M':
		if (strcmp(tmp, "true") != 0)
			pb->bad = true;
		else
			e->flags |= key == 'D' ? HENT_DELETED : HENT_MISSING;
		break;
	}
}

/* The trailers of IDs and the command name. Returns true if the line
   was one of them. */
static bool block_name_line(struct pblock *pb, const char *line, size_t n)
{
	struct hent *e = &pb->v.e;
	char tmp[sizeof(e->comm) + 1];
	const char *val;
	size_t vlen;
	long l;

	if (is_key(line, n, "Recfs-Id", &val, &vlen)) {
		pb->has_id = id_value(val, vlen, pb->id, &pb->v.id_len);
		pb->bad |= !pb->has_id;
		pb->v.id = pb->id;
	} else if (is_key(line, n, "Recfs-From", &val, &vlen)) {
		pb->bad |= !id_value(val, vlen, pb->from, &pb->v.from_len);
		pb->v.from = pb->from;
	} else if (is_key(line, n, "Recfs-To", &val, &vlen)) {
		pb->bad |= !id_value(val, vlen, pb->to, &pb->v.to_len);
		pb->v.to = pb->to;
	} else if (is_key(line, n, "Recfs-Comm", &val, &vlen)) {
		l = unquote(val, vlen, tmp, sizeof(tmp));
		if (l < 0)
			pb->bad = true;
		else
			memcpy(e->comm, tmp, (size_t)l);
	} else {
		return false;
	}
	return true;
}

/* Parse one "Key: value" line into the block. */
static void block_line(struct pblock *pb, const char *line, size_t n)
{
	char tmp[128];
	const char *val;
	size_t vlen;

	if (block_name_line(pb, line, n) || block_meta_line(pb, line, n))
		return;
	if (!is_key(line, n, "Recfs-Version", &val, &vlen) &&
	    !is_key(line, n, "Recfs-Revision", &val, &vlen) &&
	    !is_key(line, n, "Recfs-Blob", &val, &vlen) &&
	    !is_key(line, n, "Recfs-Hash", &val, &vlen) &&
	    !is_key(line, n, "Recfs-Size", &val, &vlen) &&
	    !is_key(line, n, "Recfs-Uid", &val, &vlen) &&
	    !is_key(line, n, "Recfs-Pid", &val, &vlen) &&
	    !is_key(line, n, "Recfs-Time", &val, &vlen) &&
	    !is_key(line, n, "Recfs-Deleted", &val, &vlen) &&
	    !is_key(line, n, "Recfs-Missing", &val, &vlen))
		return; /* not ours: ignored */
	if (vlen >= sizeof(tmp)) {
		pb->bad = true;
		return;
	}
	memcpy(tmp, val, vlen);
	tmp[vlen] = '\0';
	block_value(pb, line[6], tmp, vlen); /* after "Recfs-" */
}

static bool block_ok(const struct pblock *pb)
{
	const struct hent *e = &pb->v.e;

	if (pb->bad || !pb->has_id || !pb->has_version || !pb->has_revision)
		return false;
	/* a delete has no content, hence neither kind nor mode */
	if ((e->flags & HENT_DELETED) &&
	    ((e->flags & HENT_SYMLINK) || pb->has_owner || pb->has_mode))
		return false;
	if (e->flags & (HENT_DELETED | HENT_MISSING))
		return !pb->has_blob;
	return pb->has_blob;
}

int hmsg_parse(const char *msg, size_t len,
	       int (*fn)(void *arg, const struct hmsg_ver *v), void *arg,
	       uint64_t *upto, unsigned *bad)
{
	struct pblock *pb = calloc(1, sizeof(*pb));
	const char *p = msg, *end = msg + len;
	bool in_block = false;
	int rc = 0;

	*upto = 0;
	*bad = 0;
	if (!pb)
		return -ENOMEM;
	while (rc == 0 && p <= end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl ? nl : end) - p);
		const char *val;
		size_t vlen;
		char tmp[32];

		if (n && is_key(p, n, "Recfs-Upto", &val, &vlen)) {
			if (vlen < sizeof(tmp)) {
				memcpy(tmp, val, vlen);
				tmp[vlen] = '\0';
				if (parse_u64(tmp, upto) != 0)
					*upto = 0;
			}
		} else if (n > 6 && memcmp(p, "Recfs-", 6) == 0) {
			in_block = true;
			block_line(pb, p, n);
		}
		if (n == 0 || !nl) {
			/* a blank line (or the end) closes a block */
			if (pb->has_owner && pb->has_mode)
				pb->v.e.flags |= HENT_META;
			if (in_block && block_ok(pb))
				rc = fn(arg, &pb->v);
			else if (in_block)
				(*bad)++;
			in_block = false;
			memset(&pb->v, 0, sizeof(pb->v));
			pb->has_id = pb->has_version = false;
			pb->has_revision = pb->has_blob = pb->bad = false;
			pb->has_owner = pb->has_mode = false;
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	free(pb);
	return rc;
}

/* ---- trailer blocks as store changes (hist_msg_changes) ----------------- */

struct msg_changes {
	int (*fn)(void *arg, const struct store_change *ch);
	void *arg;
};

static int block_change(void *arg, const struct hmsg_ver *v)
{
	const struct msg_changes *a = arg;
	const struct hent *e = &v->e;
	struct store_change ch;

	memset(&ch, 0, sizeof(ch));
	ch.revision = e->revision;
	ch.op = e->flags & HENT_DELETED ? STORE_CHANGE_DELETE
					: STORE_CHANGE_PUT;
	ch.id = v->id;
	ch.id_len = v->id_len;
	ch.other = v->from ? v->from : v->to;
	ch.other_len = v->from ? v->from_len : v->to_len;
	ch.version = e->version;
	ch.size = e->size;
	ch.hash_valid = e->flags & HENT_HASH;
	memcpy(ch.hash, e->hash, 16);
	ch.symlink = e->flags & HENT_SYMLINK;
	ch.time.tv_sec = (time_t)(e->time_ns / 1000000000);
	ch.time.tv_nsec = (long)(e->time_ns % 1000000000);
	ch.uid = e->uid;
	ch.pid = e->pid;
	memcpy(ch.comm, e->comm, sizeof(e->comm));
	ch.meta_known = e->flags & HENT_META;
	ch.mode = e->mode;
	ch.owner_uid = e->ouid;
	ch.owner_gid = e->ogid;
	return a->fn(a->arg, &ch);
}

int hist_msg_changes(const char *msg, size_t len,
		     int (*fn)(void *arg, const struct store_change *ch),
		     void *arg, uint64_t *upto, unsigned *bad)
{
	struct msg_changes a = {fn, arg};

	return hmsg_parse(msg, len, block_change, &a, upto, bad);
}

/* The Recfs-Upto of a commit message (its last paragraph), 0 if none. */
uint64_t hist_msg_upto(const char *msg)
{
	static const char key[] = "Recfs-Upto:";
	const char *p = msg, *hit = NULL;
	uint64_t v = 0;

	while ((p = strstr(p, key)) != NULL) {
		if (p == msg || p[-1] == '\n')
			hit = p;
		p += sizeof(key) - 1;
	}
	if (!hit)
		return 0;
	for (p = hit + sizeof(key) - 1; *p == ' '; p++)
		;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	return v;
}
