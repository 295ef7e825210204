/*
 * base64.h - standard base64 (RFC 4648, section 4: "+/" and "=" padding),
 * as etcd v3's JSON gateway carries keys and values.
 */
#ifndef RECFS_BASE64_H
#define RECFS_BASE64_H

#include <stddef.h>

/* Bytes of the encoding of `n` bytes, without the NUL; SIZE_MAX if that
   does not fit size_t. */
size_t base64_encoded_len(size_t n);

/*
 * Encode src[n] into dst, which has room for base64_encoded_len(n) + 1
 * bytes; dst is NUL-terminated. Returns the length written.
 */
size_t base64_encode(char *dst, const void *src, size_t n);

/*
 * Decode the `n` characters of `src` (padded; no whitespace) into dst,
 * which has room for n / 4 * 3 bytes. Returns the number of bytes
 * decoded, or -EINVAL if `src` is not base64 (a bad character, a length
 * that is not a multiple of 4, padding inside).
 */
long base64_decode(void *dst, const char *src, size_t n);

#endif
