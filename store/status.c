/*
 * status.c - read-only summaries of a store for .recfs/status, statfs and
 * recfsctl stats.
 */
#include "store_i.h"
#include "admin.h"
#include "history.h"
#include "jnl.h"
#include "etcd_hist.h"

#include <errno.h>
#include <string.h>
#include <sys/statvfs.h>

void store_status_get(struct store *s, struct store_status *st)
{
	memset(st, 0, sizeof(*st));
	st->revision = store_revision(s);
	store_counts(s, &st->records, &st->tombstones);
	st->journal_bytes = s->jnl ? jnl_segment_bytes(s->jnl) : 0;
	st->sync_batch_ms = s->batch ? s->opts.sync_batch_ms : 0;
	st->durable = s->jnl ? jnl_last_seq(s->jnl) : st->revision;
	st->read_only = s->opts.read_only;
	pthread_mutex_lock(&s->mu);
	st->broken = s->broken != 0;
	pthread_mutex_unlock(&s->mu);
	reserve_status(s->reserve, st);
	if (s->eh) {
		st->history_elected = true;
		ehist_writer(s->eh, st->history_writer,
			     sizeof(st->history_writer),
			     &st->history_writer_me);
	}
	if (s->hist) {
		(void)store_hist_start(s); /* a status asked: catch up */
		st->history = true;
		st->history_done = hist_done(s->hist);
		st->history_lag = st->revision > st->history_done
					  ? st->revision - st->history_done
					  : 0;
		st->history_error = hist_error(s->hist);
		st->history_resident = hist_index_resident(s->hist);
	}
}

int store_statfs(struct store *s, struct statvfs *out)
{
	if (s->dirfd < 0) {
		memset(out, 0, sizeof(*out));
		out->f_bsize = out->f_frsize = 4096;
		out->f_blocks = out->f_bfree = out->f_bavail = 1u << 20;
		out->f_files = out->f_ffree = out->f_favail = 1u << 20;
		out->f_namemax = 255;
		return 0;
	}
	return fstatvfs(s->dirfd, out) < 0 ? -errno : 0;
}
