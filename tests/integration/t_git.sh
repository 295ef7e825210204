#!/usr/bin/env bash
# git inside a mount (SPEC 2: ".git is an ordinary ID (so git init works
# inside a mount)"): git init + add + commit, git clone (non-bare) of a
# small local repository, a commit in the clone, git gc, git fsck --full,
# all exit 0; the clone's work tree equals the origin's; after a remount
# git fsck and git log still agree.
. "$(dirname "$0")/lib.sh"

export HOME=$T/home GIT_CONFIG_NOSYSTEM=1
mkdir -p "$HOME"
cat >"$HOME/.gitconfig" <<'CFG'
[user]
	name = recfs test
	email = test@recfs.invalid
[init]
	defaultBranch = main
[safe]
	directory = *
[gc]
	auto = 0
CFG

# g DIR ARGS...: git in DIR, its output in $T/git.out
g() {
	local dir=$1
	shift
	git -C "$dir" "$@" >"$T/git.out" 2>&1
}
gout() {
	head -c 300 "$T/git.out" | tr '\n' ' '
}

# a small origin on the plain disk: 3 commits, a namespace, a symlink, an
# executable
O=$T/origin
mkdir -p "$O/src/lib"
git init -q "$O"
printf '# origin\n' >"$O/README"
printf 'int main(void) { return 0; }\n' >"$O/src/main.c"
git -C "$O" add -A && git -C "$O" commit -qm one
printf 'void f(void);\n' >"$O/src/lib/f.h"
printf '#!/bin/sh\necho hi\n' >"$O/run.sh"
chmod +x "$O/run.sh"
git -C "$O" add -A && git -C "$O" commit -qm two
ln -s src/main.c "$O/main-link"
head -c 200000 /dev/urandom >"$O/blob.bin"
git -C "$O" add -A && git -C "$O" commit -qm three

mount_store || exit 1

# git init, add, commit
R=$MNT/r1
g "$MNT" init r1
check "[ $? = 0 ]" "git init r1 in the mount ($(gout))"
printf 'hello\n' >"$R/a.txt" 2>/dev/null
mkdir -p "$R/dir" 2>/dev/null && printf 'deep\n' >"$R/dir/b.txt" 2>/dev/null
g "$R" add -A
check "[ $? = 0 ]" "git add ($(gout))"
g "$R" commit -m first
check "[ $? = 0 ]" "git commit ($(gout))"
printf 'hello again\n' >>"$R/a.txt" 2>/dev/null
g "$R" commit -am second
check "[ $? = 0 ]" "a second git commit -a ($(gout))"
check "[ \"\$(git -C '$R' rev-list --count HEAD 2>/dev/null)\" = 2 ]" \
	"git log has the 2 commits"
check "[ -z \"\$(git -C '$R' status --porcelain 2>&1)\" ]" \
	"git status is clean ($(git -C "$R" status --porcelain 2>&1 | head -3 | tr '\n' ' '))"
g "$R" gc --quiet
check "[ $? = 0 ]" "git gc ($(gout))"
g "$R" fsck --full --strict
check "[ $? = 0 ] && ! grep -qiE 'error|missing|broken|corrupt' '$T/git.out'" \
	"git fsck --full ($(gout))"

# git clone (non-bare) of the origin
C=$MNT/clone
g "$MNT" clone "$O" clone
check "[ $? = 0 ]" "git clone of a local repository into the mount ($(gout))"
check "diff -r --no-dereference --exclude=.git '$O' '$C' >/dev/null" \
	"the clone's work tree equals the origin's ($(diff -rq --no-dereference --exclude=.git "$O" "$C" 2>&1 | head -3 | tr '\n' ' '))"
check "[ \"\$(git -C '$C' rev-parse HEAD 2>&1)\" = \"\$(git -C '$O' rev-parse HEAD)\" ] && [ -z \"\$(git -C '$C' status --porcelain 2>&1)\" ]" \
	"the clone is at the origin's HEAD and clean ($(git -C "$C" status --porcelain 2>&1 | head -3 | tr '\n' ' '))"
check "[ -x '$C/run.sh' ] && [ -L '$C/main-link' ]" \
	"the clone kept the executable bit and the symlink"
printf 'changed in the clone\n' >>"$C/README"
g "$C" commit -am 'from the clone'
check "[ $? = 0 ]" "git commit in the clone ($(gout))"
g "$C" gc --quiet --aggressive
check "[ $? = 0 ]" "git gc --aggressive in the clone ($(gout))"
g "$C" fsck --full --strict
check "[ $? = 0 ] && ! grep -qiE 'error|missing|broken|corrupt' '$T/git.out'" \
	"git fsck --full in the clone ($(gout))"
check "[ \"\$(git -C '$C' rev-list --count HEAD 2>/dev/null)\" = 4 ]" \
	"the clone has 4 commits"

umount_store
mount_store || exit 1
g "$C" fsck --full --strict
check "[ $? = 0 ]" "after a remount: git fsck --full in the clone ($(gout))"
g "$R" fsck --full --strict
check "[ $? = 0 ]" "after a remount: git fsck --full in r1 ($(gout))"
check "[ \"\$(git -C '$C' rev-list --count HEAD 2>/dev/null)\" = 4 ] && [ \"\$(git -C '$R' rev-list --count HEAD 2>/dev/null)\" = 2 ]" \
	"after a remount: git log still has 4 and 2 commits"
g "$MNT" clone -q "$C" clone2
check "[ $? = 0 ] && [ \"\$(git -C '$MNT/clone2' rev-parse HEAD 2>&1)\" = \"\$(git -C '$C' rev-parse HEAD 2>&1)\" ]" \
	"git clone from the mount into the mount ($(gout))"

finish
