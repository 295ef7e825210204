/*
 * change_decode.h - journal records decoded as store changes (struct
 * store_change, changes.h): the one decoder behind `recfsctl watch`
 * (changes.c) and the history writer's change source (store_hist.c).
 * Not for use outside store/.
 */
#ifndef RECFS_CHANGE_DECODE_H
#define RECFS_CHANGE_DECODE_H

#include "changes.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Decode the journal frame payload[0..len) of revision `rev` and call fn
 * for each change it holds, in order: a PUT or DEL is one, a rename a put
 * of its target (other: the source, other_version its version) then a
 * delete of its source (other: the target), a txn (REC_TXN, or one of
 * the REC_TXN_PART frames before it) one per part, a metadata change
 * none. The change's strings and content point into payload (id and
 * other are not NUL-terminated: use id_len, other_len). *ends (may be
 * NULL) is false for a REC_TXN_PART frame, after which more frames of
 * the same revision follow. Returns 0, fn's non-zero return, or -EBADMSG
 * (not a change record).
 */
int change_decode(const void *payload, size_t len, uint64_t rev,
		  int (*fn)(void *arg, const struct store_change *ch),
		  void *arg, bool *ends);

/* Is the frame payload[0..len) the last of its revision (not a
   REC_TXN_PART)? */
bool change_frame_ends(const void *payload, size_t len);

#endif
