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
 * A record larger than one frame (JNL_MAX_RECORD) is written with
 * jnl_big_*: several frames, all with the record's one seq, each but the
 * last marked JNL_FRAME_MORE ("more frames of this seq follow"). Readers
 * pass each frame on as its own call, in order, but only when the last
 * frame is there; they find that out by reading ahead and verifying the
 * rest without keeping it, so memory stays at one frame.
 *
 * Format (little-endian; also in recfs(5)). A segment file starts with
 * JNL_SEGMENT_MAGIC and the u64 seq of its first record (JNL_FILE_HDR
 * bytes), then frames follow back to back:
 *
 *	u32 magic 0x31464a52 ("RJF1")
 *	u32 payload length, ORed with JNL_FRAME_MORE on every frame of a
 *	    multi-frame record but its last
 *	u64 seq
 *	u64 xxh3-64 of (the 16 bytes above, then the payload)
 *	payload (at most JNL_MAX_RECORD bytes)
 *
 * Frames of one segment carry seqs first, first+1, ... with no holes; the
 * frames of one multi-frame record are consecutive and in one segment.
 * Segments without multi-frame records are exactly what the journal wrote
 * before they existed (JNL_FRAME_MORE is never set in them), and readers
 * that predate them see a multi-frame record as a corrupt frame.
 *
 * Failpoints (struct io): "jnl.open" (opening a segment to write it),
 * "jnl.hdr.write", "jnl.hdr.fsync", "jnl.dir.fsync", "jnl.write" (one
 * pwritev per batch), "jnl.fsync" (every fdatasync of a segment: one per
 * batch, plus the one that makes an undo or a trim durable),
 * "jnl.truncate" (undo of a failed batch, trim of a torn tail), "jnl.cut",
 * "jnl.cut.fsync" (zeros after the last record cut off),
 * "jnl.drop.unlink", "jnl.scan.open" (directory and segments),
 * "jnl.scan.read", "jnl.cursor.open", "jnl.cursor.read" (cursors, also
 * their look-ahead over a multi-frame record), "jnl.big.write" (the
 * pwritev of each frame of a multi-frame record), "jnl.big.fsync" (its
 * commit's fdatasync, and the one that makes its undo durable),
 * "jnl.big.truncate" (the undo of a dropped or failed multi-frame record).
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

/* In a frame's length word: more frames of this seq follow (see above). */
#define JNL_FRAME_MORE 0x80000000u

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

/*
 * A record too large for one frame, written as several frames that all
 * carry one seq: readers see all of its frames or none.
 *
 * jnl_big_begin waits for the appends in flight (a batch being written,
 * a jnl_sync in its fdatasync, another multi-frame record), then holds the
 * journal: jnl_append, jnl_append_nosync, jnl_sync and jnl_rotate wait
 * until jnl_big_commit or jnl_big_abort (so the thread holding it must not
 * call them), and appends that arrive while jnl_big_begin waits wait for
 * it too. Returns 0 and *out, -EIO on a broken journal, or -ENOMEM.
 *
 * jnl_big_add writes one frame (payload <= JNL_MAX_RECORD, else -EFBIG
 * and nothing is written) at the end of the segment, not synced yet. A
 * failed write (-EIO, -ENOSPC, ...) leaves `b` unusable but still held:
 * the caller then calls jnl_big_abort (or jnl_big_commit, which fails with
 * the same error).
 *
 * jnl_big_commit writes the last frame (payload <= JNL_MAX_RECORD; it may
 * be empty), makes the whole record durable with one fdatasync (and the
 * jnl_append_nosync records before it), gives it the next seq (*seq; the
 * one its frames carry: nobody else could take it meanwhile), releases
 * the journal and frees `b`. On error nothing of it stays in the journal
 * (as jnl_big_abort) and no seq was used; if that undo fails, the journal
 * is broken (as after a failed batch, see jnl_append).
 *
 * jnl_big_abort drops it: the frames written are cut off the segment
 * again (ftruncate + fdatasync), the journal is released, `b` freed.
 * Accepts NULL.
 */
struct jnl_big;
int jnl_big_begin(struct jnl *j, struct jnl_big **out);
int jnl_big_add(struct jnl_big *b, const struct iovec *iov, int iovcnt);
int jnl_big_commit(struct jnl_big *b, const struct iovec *iov, int iovcnt,
		   uint64_t *seq);
void jnl_big_abort(struct jnl_big *b);

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
 * current segment holds no records. Must not run concurrently with
 * jnl_append; waits for a multi-frame record (jnl_big_*) to be over.
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
 * append returned only once durable). No append may be running, no
 * multi-frame record held. Accepts NULL.
 */
void jnl_close(struct jnl *j);

/* What jnl_scan found. */
struct jnl_scan_report {
	uint64_t records;    /* records passed to the callback (a
				multi-frame record counts once) */
	uint64_t last_seq;   /* highest seq seen (0 if none) */
	uint64_t torn_bytes; /* bytes ignored at the tail of the last segment */
	uint64_t zero_bytes; /* such a tail that holds only zeros, as the
				space jnl_append writes ahead of the records
				does: counted here instead */
	unsigned segments;   /* segment files read */
};

/*
 * Called for each valid record in seq order; non-zero return stops.
 * `payload` is only valid during the call. A multi-frame record comes as
 * one call per frame, in order, all with its seq, and only if its last
 * frame is there.
 */
typedef int (*jnl_scan_cb)(void *arg, uint64_t seq, const void *payload,
			   size_t len);

/*
 * Read every record with seq > `after` from the segments in `dirfd`, in
 * order. A torn or corrupt tail of the *last* segment is ignored (and
 * counted in rep->torn_bytes; a multi-frame record whose last frame is
 * missing there is such a tail, from its first frame on); a bad record
 * (or a multi-frame record without its last frame) followed by more data
 * in an
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
 * A multi-frame record comes as one call per frame, in order, all with
 * its seq; before its first frame the cursor reads the rest ahead and
 * verifies it (without keeping it), so a durable record that is not
 * whole is -EBADMSG before any of its frames is returned.
 */
int jnl_cursor_next(struct jnl_cursor *c, uint64_t upto, uint64_t *seq,
		    const void **payload, size_t *len);

/* The seq of the record the next jnl_cursor_next will return (in the
   middle of a multi-frame record: its seq, the rest of it comes next). */
uint64_t jnl_cursor_pos(const struct jnl_cursor *c);

/* Go back (or forward) so that the next record returned is `pos` (as if
   opened with after = pos - 1; a multi-frame record from its first
   frame). Returns 0 or -errno. */
int jnl_cursor_seek(struct jnl_cursor *c, uint64_t pos);

/* Close a cursor. Accepts NULL. */
void jnl_cursor_close(struct jnl_cursor *c);

/*
 * Framing helpers, shared with snapshot files. jnl_frame_encode fills
 * hdr[JNL_FRAME_HDR] for a record of `seq` made of `iov`, whose total
 * length must not exceed JNL_MAX_RECORD (the caller checks).
 * jnl_frame_decode checks one frame at the start of buf[0..avail):
 * returns the frame's total length (> 0), 0 if more bytes are needed
 * (*need says how many in all), or -EBADMSG if it is not a valid frame
 * (a frame marked JNL_FRAME_MORE is not: snapshot files never hold one).
 * The _part variants write and read that mark (*more) too; `more` may be
 * NULL.
 */
void jnl_frame_encode(uint8_t hdr[JNL_FRAME_HDR], uint64_t seq,
		      const struct iovec *iov, int iovcnt);
long jnl_frame_decode(const uint8_t *buf, size_t avail, uint64_t *seq,
		      const uint8_t **payload, size_t *len, size_t *need);
void jnl_frame_encode_part(uint8_t hdr[JNL_FRAME_HDR], uint64_t seq, bool more,
			   const struct iovec *iov, int iovcnt);
long jnl_frame_decode_part(const uint8_t *buf, size_t avail, uint64_t *seq,
			   const uint8_t **payload, size_t *len, bool *more,
			   size_t *need);

#endif
