/*
 * sandbox.h - the fresh temp directory each test runs in (libgit2's
 * sandbox habit), shared by the unit test executables that use it.
 */
#ifndef RECFS_TEST_SANDBOX_H
#define RECFS_TEST_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Make a new directory "ROOT/recfs-NAME.XXXXXX" into dir[len], ROOT
 * being $RECFS_TEST_TMPDIR, else /dev/shm (a process crash does not lose
 * the page cache: the disk adds nothing but time), else /tmp. Asserts
 * that it was made. With `quiet`, what the store logs on stderr is
 * dropped unless RECFS_TEST_VERBOSE is set.
 */
void sandbox_new(char *dir, size_t len, const char *name, bool quiet);

/*
 * The same in ROOT: for tests of the file system's own behaviour, that
 * must not run on tmpfs when the sandbox would be there ("/tmp").
 */
void sandbox_new_in(char *dir, size_t len, const char *root, const char *name,
		    bool quiet);

/* Remove `path` and everything under it (directories made unreadable
   by a test included). */
void sandbox_rm(const char *path);

/*
 * A shell command (printf format, one %s: a git directory) that turns
 * every pack of the repository into loose objects and removes the packs,
 * for tests that remove one object (the history writer packs them).
 */
#define LOOSEN_SH                                                              \
	"cd '%s' && for p in objects/pack/pack-*.pack; do "                    \
	"[ -e \"$p\" ] || continue; mv \"$p\" \"$p.x\"; "                      \
	"rm -f \"${p%%.pack}.idx\"; git unpack-objects -q <\"$p.x\" && "       \
	"rm \"$p.x\" || exit 1; done"

#endif
