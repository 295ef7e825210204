/*
 * jnl.h - the journal: a durable, ordered log of opaque records with group
 * commit. It is the commit point of recfs: a change is committed when its
 * record is in the journal and the journal is fdatasync'ed.
 *
 * The journal lives in one directory (STORE/journal) as segment files
 * named by the sequence number of their first record, "%020llu.log". Each
 * record gets the next sequence number (the store revision) when it is
 * written; numbers have no holes, even when a write fails. Each record is
 * framed with its length, its sequence number and an xxh3-64 checksum, so
 * a torn tail (a crash in the middle of a write) is detected and ignored.
 *
 * The journal does not know what records mean: the store encodes them.
 *
 * Failpoints (struct io): "jnl.open" (opening a segment to write it),
 * "jnl.hdr.write", "jnl.hdr.fsync", "jnl.dir.fsync", "jnl.write" (one
 * pwritev per batch), "jnl.fsync" (every fdatasync of a segment: one per
 * batch, plus the one that makes an undo or a trim durable),
 * "jnl.truncate" (undo of a failed batch, trim of a torn tail), "jnl.cut",
 * "jnl.cut.fsync" (zeros after the last record cut off),
 * "jnl.drop.unlink", "jnl.scan.open" (directory and segments),
 * "jnl.scan.read", "jnl.cursor.open", "jnl.cursor.read" (cursors).
 */
#ifndef RECFS_JNL_H
#define RECFS_JNL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct io;
struct jnl;

/* Largest payload of one record; larger appends fail with -EFBIG. */
#define JNL_MAX_RECORD (4u << 20)

/* Bytes of framing before each payload. */
#define JNL_FRAME_HDR 24

/* Magic at the start of a segment file and of a snapshot file. */
#define JNL_SEGMENT_MAGIC "RECFSJ01"
#define JNL_SNAPSHOT_MAGIC "RECFSS01"
#define JNL_FILE_HDR 16 /* 8 bytes magic + u64 (LE) first seq / revision */

struct jnl_opts {
	struct io *io;	   /* failpoints; NULL for real I/O */
	int dirfd;	   /* the journal directory; borrowed, kept open */
	uint64_t next_seq; /* sequence number of the first new record (>=1) */
};

/*
 * Open the journal for appending: creates a new segment whose first
 * record will be `next_seq` (existing segments are left for jnl_scan and
 * jnl_drop_upto). Call it after jnl_scan, with the scan's last_seq + 1
 * (or later, if no segment holds records). The newest existing segments
 * are made fit to be followed: one that holds no records is reused (if
 * named `next_seq`) or removed, and the torn tail of the last one that
 * holds records is cut off. Returns 0, -EEXIST if the journal already
 * holds record `next_seq`, -EINVAL if `next_seq` would leave a gap after
 * the last record, or -errno; *out belongs to the caller.
 */
int jnl_open(struct jnl **out, const struct jnl_opts *opts);

/*
 * Append one record made of `iov` and make it durable. Concurrent callers
 * share writes and fdatasyncs (group commit): one thread writes and syncs
 * the records of everyone who is waiting. Returns 0 and the record's
 * sequence number in *seq, or -errno (-EIO, -ENOSPC, ...) in which case
 * the record is not in the journal and no sequence number was used. After
 * a failure that could not be undone (truncating the torn batch failed)
 * every later append fails with -EIO.
 */
int jnl_append(struct jnl *j, const struct iovec *iov, int iovcnt,
	       uint64_t *seq);

/*
 * Append one record and return once it is written in order (one pwritev,
 * group-committed like jnl_append) without waiting for an fdatasync: the
 * record is durable after the next jnl_sync, jnl_append, jnl_rotate or
 * jnl_close (sync=batch, SPEC section 3). Until then a crash may lose it,
 * and then every record after it too: the records of a segment are
 * written at increasing offsets of one file and a scan stops at the first
 * one missing or torn, and a segment is made durable before the next one
 * is started, so what survives is always a prefix. Returns as jnl_append.
 */
int jnl_append_nosync(struct jnl *j, const struct iovec *iov, int iovcnt,
		      uint64_t *seq);

/*
 * Make every record written so far durable (one fdatasync, unless there
 * is nothing to do). Returns 0, or -EIO: then the journal is broken (the
 * records written but not synced may be lost) and refuses appends.
 */
int jnl_sync(struct jnl *j);

/* Sequence number of the last durable record (next_seq - 1 at open). */
uint64_t jnl_last_seq(struct jnl *j);

/* Sequence number of the last record written, durable or not
   (>= jnl_last_seq). */
uint64_t jnl_written_seq(struct jnl *j);

/* Bytes in the current segment. */
uint64_t jnl_segment_bytes(struct jnl *j);

/*
 * Start a new segment (the current one is closed, not removed; its
 * records are made durable first, then it is closed). Does nothing if the
 * current segment holds no records. Must not run concurrently with jnl_append.
 * Returns 0, -EIO on a broken journal, or -errno.
 */
int jnl_rotate(struct jnl *j);

/*
 * Remove every segment all of whose records have seq <= `seq`, except the
 * current one; fsyncs the directory. Returns 0 or -errno.
 */
int jnl_drop_upto(struct jnl *j, uint64_t seq);

/*
 * Close: makes the records of jnl_append_nosync durable (every other
 * append returned only once durable). No append may be running. Accepts
 * NULL.
 */
void jnl_close(struct jnl *j);

/* What jnl_scan found. */
struct jnl_scan_report {
	uint64_t records;    /* records passed to the callback */
	uint64_t last_seq;   /* highest seq seen (0 if none) */
	uint64_t torn_bytes; /* bytes ignored at the tail of the last segment */
	uint64_t zero_bytes; /* such a tail that holds only zeros, as the
				space jnl_append writes ahead of the records
				does: counted here instead */
	unsigned segments;   /* segment files read */
};

/*
 * Called for each valid record in seq order; non-zero return stops.
 * `payload` is only valid during the call.
 */
typedef int (*jnl_scan_cb)(void *arg, uint64_t seq, const void *payload,
			   size_t len);

/*
 * Read every record with seq > `after` from the segments in `dirfd`, in
 * order. A torn or corrupt tail of the *last* segment is ignored (and
 * counted in rep->torn_bytes); a bad record followed by more data in an
 * earlier segment, a gap in sequence numbers or a bad segment header is
 * corruption: returns -EBADMSG after logging the file and offset. Returns
 * 0, -EBADMSG, -errno, or the callback's non-zero value. Allocates at most
 * JNL_MAX_RECORD + framing at a time. `io`, `cb` and `rep` may be NULL;
 * rep->records counts the records with seq > `after` even without a cb.
 * Files in `dirfd` not named like segments are ignored. Read-only.
 */
int jnl_scan(struct io *io, int dirfd, uint64_t after, jnl_scan_cb cb,
	     void *arg, struct jnl_scan_report *rep);

/*
 * A cursor reads the records of a journal in order while it is being
 * written, without reading the segments again from the start: it keeps
 * its place and follows into newer segments (jnl_read.c).
 */
struct jnl_cursor;

/*
 * Open a cursor on the journal in `dirfd` (borrowed; kept open by the
 * caller) whose first record will be the one after `after`. If the
 * journal no longer holds that record (the oldest segment starts later),
 * the cursor starts at the oldest one: jnl_cursor_pos says where. Returns
 * 0 or -errno; *out belongs to the caller (jnl_cursor_close).
 */
int jnl_cursor_open(struct io *io, int dirfd, uint64_t after,
		    struct jnl_cursor **out);

/*
 * The next record, if its seq is at most `upto`. `upto` must be durable
 * (a seq jnl_append returned, or jnl_last_seq): the cursor never reads
 * past it, so it never sees a batch that could still be cut off, and a
 * torn tail is never mistaken for records. Returns 1 with *seq, *payload
 * (valid until the next call on the cursor) and *len set; 0 if there is
 * no record up to `upto` yet (call again later with a larger one); or
 * -EBADMSG (a durable record is missing or corrupt; logged) or -errno.
 */
int jnl_cursor_next(struct jnl_cursor *c, uint64_t upto, uint64_t *seq,
		    const void **payload, size_t *len);

/* The seq of the record the next jnl_cursor_next will return. */
uint64_t jnl_cursor_pos(const struct jnl_cursor *c);

/* Go back (or forward) so that the next record returned is `pos` (as if
   opened with after = pos - 1). Returns 0 or -errno. */
int jnl_cursor_seek(struct jnl_cursor *c, uint64_t pos);

/* Close a cursor. Accepts NULL. */
void jnl_cursor_close(struct jnl_cursor *c);

/*
 * Framing helpers, shared with snapshot files. jnl_frame_encode fills
 * hdr[JNL_FRAME_HDR] for a record of `seq` made of `iov`, whose total
 * length must not exceed JNL_MAX_RECORD (the caller checks).
 * jnl_frame_decode checks one frame at the start of buf[0..avail):
 * returns the frame's total length (> 0), 0 if more bytes are needed
 * (*need says how many in all), or -EBADMSG if it is not a valid frame.
 */
void jnl_frame_encode(uint8_t hdr[JNL_FRAME_HDR], uint64_t seq,
		      const struct iovec *iov, int iovcnt);
long jnl_frame_decode(const uint8_t *buf, size_t avail, uint64_t *seq,
		      const uint8_t **payload, size_t *len, size_t *need);

#endif
