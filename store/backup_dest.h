/*
 * backup_dest.h - the destination directory of store_backup (backup.c).
 * Plain functions of paths and descriptors, no store state: any thread.
 */
#ifndef RECFS_BACKUP_DEST_H
#define RECFS_BACKUP_DEST_H

#include <stdbool.h>

/* Open DEST if it is an empty directory, or create it (*created): 0 with
 *dfd (the caller's), -ENOTEMPTY, -EEXIST (not a directory), -errno. */
int backup_open_dest(const char *dest, int *dfd, bool *created);
/* -EINVAL if DEST lies inside the store at `store_path` (the copy would
   copy itself), 0, or -errno. */
int backup_check_outside(const char *store_path, const char *dest);
/* Remove everything under `dfd` (what a failed backup made). */
void backup_remove_tree(int dfd);
/* fsync the directory holding DEST, so that its name is durable. */
int backup_parent_sync(const char *dest);

#endif
