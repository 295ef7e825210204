/*
 * bytes.h - byte order: read (rd_) and write (wr_) unsigned integers at
 * an unaligned address, little-endian (le: the journal, the record
 * codec, the indexes) or big-endian (be: git's pack and index formats).
 * Pure functions of their arguments; safe from any thread.
 */
#ifndef RECFS_BYTES_H
#define RECFS_BYTES_H

#include <stdint.h>

static inline uint16_t rd_le16(const void *src)
{
	const uint8_t *p = src;

	return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static inline uint32_t rd_le32(const void *src)
{
	const uint8_t *p = src;

	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t rd_le64(const void *src)
{
	const uint8_t *p = src;

	return (uint64_t)rd_le32(p) | (uint64_t)rd_le32(p + 4) << 32;
}

static inline void wr_le16(void *dst, uint16_t v)
{
	uint8_t *p = dst;

	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void wr_le32(void *dst, uint32_t v)
{
	uint8_t *p = dst;

	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void wr_le64(void *dst, uint64_t v)
{
	uint8_t *p = dst;

	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t rd_be16(const void *src)
{
	const uint8_t *p = src;

	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t rd_be32(const void *src)
{
	const uint8_t *p = src;

	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t rd_be64(const void *src)
{
	const uint8_t *p = src;

	return (uint64_t)rd_be32(p) << 32 | (uint64_t)rd_be32(p + 4);
}

static inline void wr_be16(void *dst, uint16_t v)
{
	uint8_t *p = dst;

	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void wr_be32(void *dst, uint32_t v)
{
	uint8_t *p = dst;

	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static inline void wr_be64(void *dst, uint64_t v)
{
	uint8_t *p = dst;

	wr_be32(p, (uint32_t)(v >> 32));
	wr_be32(p + 4, (uint32_t)v);
}

#endif
