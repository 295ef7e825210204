/*
 * jnl_frame.c - one frame of the journal (the format is in jnl.h):
 * encoding it, decoding it from a buffer, and the readers' look-ahead,
 * which verifies the rest of a multi-frame record in the file piece by
 * piece without keeping it.
 */
#include "jnl_i.h"

#include "io.h"

#include <errno.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

/* Bytes the look-ahead reads at a time (on the stack). */
#define JNL_AHEAD_BUF (32u << 10)

void jnl_frame_encode_part(uint8_t hdr[JNL_FRAME_HDR], uint64_t seq, bool more,
			   const struct iovec *iov, int iovcnt)
{
	XXH3_state_t st;
	size_t len = 0;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	wr_le32(hdr, JNL_FRAME_MAGIC);
	wr_le32(hdr + 4, (uint32_t)len | (more ? JNL_FRAME_MORE : 0));
	wr_le64(hdr + 8, seq);
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, hdr, 16);
	for (int i = 0; i < iovcnt; i++)
		if (iov[i].iov_len)
			XXH3_64bits_update(&st, iov[i].iov_base,
					   iov[i].iov_len);
	wr_le64(hdr + 16, XXH3_64bits_digest(&st));
}

void jnl_frame_encode(uint8_t hdr[JNL_FRAME_HDR], uint64_t seq,
		      const struct iovec *iov, int iovcnt)
{
	jnl_frame_encode_part(hdr, seq, false, iov, iovcnt);
}

long jnl_frame_decode_part(const uint8_t *buf, size_t avail, uint64_t *seq,
			   const uint8_t **payload, size_t *len, bool *more,
			   size_t *need)
{
	uint8_t magic[4];
	XXH3_state_t st;
	uint32_t word = 0, plen = 0;
	size_t total;

	/* Reject as early as the bytes allow: a torn tail is often zeros. */
	wr_le32(magic, JNL_FRAME_MAGIC);
	for (size_t i = 0; i < 4 && i < avail; i++)
		if (buf[i] != magic[i])
			return -EBADMSG;
	if (avail >= 8) {
		word = rd_le32(buf + 4);
		plen = word & ~JNL_FRAME_MORE;
		if (plen > JNL_MAX_RECORD)
			return -EBADMSG;
	}
	if (avail < JNL_FRAME_HDR) {
		if (need)
			*need = JNL_FRAME_HDR;
		return 0;
	}
	total = JNL_FRAME_HDR + (size_t)plen;
	if (avail < total) {
		if (need)
			*need = total;
		return 0;
	}
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, buf, 16);
	XXH3_64bits_update(&st, buf + JNL_FRAME_HDR, plen);
	if (XXH3_64bits_digest(&st) != rd_le64(buf + 16))
		return -EBADMSG;
	if (seq)
		*seq = rd_le64(buf + 8);
	if (payload)
		*payload = buf + JNL_FRAME_HDR;
	if (len)
		*len = plen;
	if (more)
		*more = (word & JNL_FRAME_MORE) != 0;
	if (need)
		*need = total;
	return (long)total;
}

long jnl_frame_decode(const uint8_t *buf, size_t avail, uint64_t *seq,
		      const uint8_t **payload, size_t *len, size_t *need)
{
	/* a part of a multi-frame record is not a frame here (snapshots) */
	if (avail >= 8 && (rd_le32(buf + 4) & JNL_FRAME_MORE))
		return -EBADMSG;
	return jnl_frame_decode_part(buf, avail, seq, payload, len, NULL, need);
}

/*
 * Verify the frame at `off` of fd where it is, reading it in pieces.
 * Returns its total length (> 0) with *seq and *more set, 0 if there is
 * no valid frame there (torn, zeros, the file ends), or -errno.
 */
static long frame_check_at(struct io *io, const char *point, int fd,
			   uint64_t off, uint64_t *seq, bool *more)
{
	uint8_t buf[JNL_AHEAD_BUF];
	XXH3_state_t st;
	uint64_t sum;
	uint32_t word, plen, done = 0;
	size_t want;
	ssize_t n;

	n = io_pread_all(io, point, fd, buf, JNL_FRAME_HDR, (off_t)off);
	if (n < 0)
		return (long)n;
	if (n < JNL_FRAME_HDR || rd_le32(buf) != JNL_FRAME_MAGIC)
		return 0;
	word = rd_le32(buf + 4);
	plen = word & ~JNL_FRAME_MORE;
	if (plen > JNL_MAX_RECORD)
		return 0;
	*seq = rd_le64(buf + 8);
	*more = (word & JNL_FRAME_MORE) != 0;
	sum = rd_le64(buf + 16);
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, buf, 16);
	while (done < plen) {
		want = plen - done < sizeof(buf) ? plen - done : sizeof(buf);
		n = io_pread_all(io, point, fd, buf, want,
				 (off_t)(off + JNL_FRAME_HDR + done));
		if (n < 0)
			return (long)n;
		if ((size_t)n < want)
			return 0;
		XXH3_64bits_update(&st, buf, want);
		done += (uint32_t)want;
	}
	if (XXH3_64bits_digest(&st) != sum)
		return 0;
	return (long)(JNL_FRAME_HDR + plen);
}

int jnl_big_rest(struct io *io, const char *point, int fd, uint64_t off,
		 uint64_t limit, uint64_t seq, uint64_t *end)
{
	uint64_t s;
	bool more = true;
	long fl;

	while (more) {
		*end = off;
		fl = frame_check_at(io, point, fd, off, &s, &more);
		if (fl <= 0)
			return (int)fl;
		if ((uint64_t)fl > limit || off > limit - (uint64_t)fl)
			return 0;
		if (s != seq)
			return -EBADMSG;
		off += (uint64_t)fl;
	}
	*end = off;
	return 1;
}
