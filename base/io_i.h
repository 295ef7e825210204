/*
 * io_i.h - inside the I/O shim: what the wrapped calls (io.c) use of the
 * failpoints (io_fail.c). Not for use outside base/io*.c.
 */
#ifndef RECFS_IO_I_H
#define RECFS_IO_I_H

#include "io.h"

#include <stdbool.h>

/*
 * Pass failpoint `point` (NULL io or point: nothing): count the hit and,
 * if armed, act -- return the armed error (IO_FAIL), set *is_short and
 * return it (IO_SHORT; is_short may be NULL), _exit (IO_CRASH), or block
 * until released and return 0 (IO_STALL). Otherwise 0. Thread-safe.
 */
int io_fp_pass(struct io *io, const char *point, bool *is_short);

/* io_fp_pass for calls that cannot be split: an injected EINTR is
   retried (passing the point again), any other error returned. */
int io_fp_gate(struct io *io, const char *point);

#endif
