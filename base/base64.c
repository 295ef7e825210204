/*
 * base64.c - see base64.h.
 */
#include "base64.h"

#include <errno.h>
#include <stdint.h>

static const char enc[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encoded_len(size_t n)
{
	size_t groups = n / 3 + (n % 3 != 0);

	if (groups > SIZE_MAX / 4)
		return SIZE_MAX;
	return groups * 4;
}

size_t base64_encode(char *dst, const void *src, size_t n)
{
	const unsigned char *s = src;
	char *d = dst;
	size_t i;

	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 |
			     s[i + 2];

		*d++ = enc[v >> 18];
		*d++ = enc[(v >> 12) & 63];
		*d++ = enc[(v >> 6) & 63];
		*d++ = enc[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)s[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)s[i + 1] << 8;
		*d++ = enc[v >> 18];
		*d++ = enc[(v >> 12) & 63];
		*d++ = i + 1 < n ? enc[(v >> 6) & 63] : '=';
		*d++ = '=';
	}
	*d = '\0';
	return (size_t)(d - dst);
}

/* The 6-bit value of `c`, or -1. */
static int dec(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long base64_decode(void *dst, const char *src, size_t n)
{
	unsigned char *d = dst;
	size_t i, pad = 0;

	if (n % 4)
		return -EINVAL;
	if (n && src[n - 1] == '=')
		pad = src[n - 2] == '=' ? 2 : 1;
	for (i = 0; i < n; i += 4) {
		int last = i + 4 == n;
		int a = dec((unsigned char)src[i]);
		int b = dec((unsigned char)src[i + 1]);
		int c = last && pad == 2 ? 0 : dec((unsigned char)src[i + 2]);
		int e = last && pad ? 0 : dec((unsigned char)src[i + 3]);
		uint32_t v;

		if (a < 0 || b < 0 || c < 0 || e < 0)
			return -EINVAL;
		v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 |
		    (uint32_t)e;
		*d++ = (unsigned char)(v >> 16);
		if (!last || pad < 2)
			*d++ = (unsigned char)(v >> 8);
		if (!last || pad < 1)
			*d++ = (unsigned char)v;
	}
	return (long)(d - (unsigned char *)dst);
}
