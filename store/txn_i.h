/*
 * txn_i.h - what txn.c (the parts, step 1) and txn_commit.c (the journal
 * and apply steps) share. Not for use outside store/.
 *
 * A txn keeps its parts in a spool file (spool.c), not in memory: each
 * part is a struct part_hdr followed by its ID and its stage's name. The
 * stages are referenced by name and closed (file backend); the memory
 * backend's have no name: their content is copied into `data_fd` (a
 * memfd) and they are closed too, so no fd is held per part.
 */
#ifndef RECFS_TXN_I_H
#define RECFS_TXN_I_H

#include "store_i.h"
#include "txn.h"
#include "id.h"

/* One part as spooled (raw: the file is this process's own). */
struct part_hdr {
	uint16_t id_len;
	uint8_t stage_len;
	bool del, has_owner, symlink, has_mtime;
	bool noop;    /* at commit: changes nothing */
	bool marked;  /* at commit: busy (by this txn) */
	int32_t mode; /* -1: keep */
	struct store_cond cond;
	struct store_owner owner;
	struct timespec mtime;
	uint8_t hash[16];
	uint64_t size, ino;
	uint64_t data_off; /* memory backend: the content in t->data_fd */
	struct store_result res;
};

/* A part read back. */
struct part {
	struct part_hdr h;
	uint64_t at; /* offset of h in the spool */
	char id[ID_MAX_LEN + 1];
	char stage[STORE_STAGE_NAME_MAX];
};

struct store_txn {
	struct store *s;
	struct spool req; /* the parts as added */
	size_t n;
	int data_fd; /* memory backend: the parts' content, or -1 */
	uint64_t data_size;
	bool used;	/* committed (or tried): no more parts */
	bool committed; /* the change is in: its stages are its own */
	int err;	/* a part could not be spooled: commit fails */
	int apply_err;	/* the apply step could not read its parts back */
	struct store_result res; /* store_txn_part_result's answer */
};

/* Read the next part (the spool is being read). Returns 0 or -errno. */
int txn_part_read(struct store_txn *t, struct part *p);
/* Write p->h back to its place. Returns 0 or -errno. */
int txn_part_save(struct store_txn *t, const struct part *p);
/* The stage of a put: file backend, `named` (by name, closed: fd -1);
   memory backend, a new stage (*made, store_stage_free) holding the
   `size` bytes at `data_off` of data_fd. NULL for a delete. */
int txn_stage(struct store_txn *t, const char *name, uint64_t data_off,
	      uint64_t size, struct store_stage *named,
	      struct store_stage **out, struct store_stage **made);

/*
 * Steps 2 to 4 (txn_commit.c) once the `nchange` changing parts are
 * marked busy: encode the parts into journal frames, make by-reference
 * stages durable, journal (one REC_TXN frame, or REC_TXN_PART frames and
 * a REC_TXN), feed the history, apply every part. Returns 0 (*seq set)
 * or -errno from before the commit point (the marks are still set then).
 * If the apply step fails after it (t->apply_err), the parts not applied
 * are still marked (part_hdr.marked).
 */
int txn_journal_apply(struct store_txn *t, const struct store_who *who,
		      uint64_t *seq);

#endif
