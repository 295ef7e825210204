#!/usr/bin/env bash
# Installed like a system file system: `meson install --destdir` puts
# recfs, recfsctl, the three man pages and the bash completion in place;
# the installed recfs mounts through mount(8) and libfuse's mount.fuse3
# (`mount -t fuse.recfs`), from an fstab line (`mount -T FILE`: the line
# recfs(1) documents) and with the options of the systemd unit recfs(1)
# documents (checked by systemd-analyze verify when there is one); the
# completion offers commands, options, directories and record IDs.
#
# mount(8) removes PATH from mount.fuse3's environment, and mount.fuse3
# runs `recfs STORE MNT -o OPTS` through /bin/sh, which then looks only in
# its default path (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:
# /sbin:/bin). So the script runs in a mount namespace of its own, where
# the installed bin directory is bound over /usr/local/sbin: recfs is
# found as it is after a real install, while nothing is installed outside
# the temp dir and no mount is seen outside the namespace. Skipped (exit
# 77) only when mount.fuse3 is missing (Debian package fuse3).

if [[ ! -x /sbin/mount.fuse3 && ! -x /usr/sbin/mount.fuse3 ]]; then
	echo "SKIP: no /sbin/mount.fuse3 (Debian package fuse3, in tools/deps):" \
		"cannot test mount -t fuse.recfs" | tee /dev/stderr
	exit 77
fi
if [[ ${RECFS_T_INSTALL_NS:-} != 1 ]]; then
	export RECFS_T_INSTALL_NS=1
	# unshare execs in place: meson's timeout still reaches this pid
	exec unshare --mount --propagation private -- bash "$0" "$@"
	echo "Bail out! unshare --mount failed (needs root)" >&2
	exit 2
fi

. "$(dirname "$0")/lib.sh"

# ---- mounts through mount(8) -----------------------------------------------

INST_PIDS=()  # daemons that mount(8) started for this script
INST_MNTS=()  # where
BOUND=        # the bind mount over /usr/local/sbin

# lock_pid STORE: the pid in STORE's lock (empty when not held).
lock_pid() {
	sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$1/lock" 2>/dev/null
}

# sys_mount MNT ARGS...: `mount ARGS...`; then MNT must be a mount point
# and the daemon is remembered (from the lock of $STORE) for the unmount.
sys_mount() {
	local mnt=$1 out rc pid
	shift
	mkdir -p "$mnt"
	out=$(mount "$@" 2>&1)
	rc=$?
	if ((rc != 0)) || ! mountpoint -q "$mnt"; then
		note "mount $* failed (exit $rc): $out"
		return 1
	fi
	pid=$(lock_pid "$STORE")
	INST_PIDS+=("$pid")
	INST_MNTS+=("$mnt")
	return 0
}

# sys_umount MNT: `umount MNT`, then wait (bounded) for its daemon to
# exit. Non-zero if umount failed or the daemon did not exit.
sys_umount() {
	local mnt=$1 i pid=''
	for i in "${!INST_MNTS[@]}"; do
		[[ ${INST_MNTS[i]} == "$mnt" ]] && pid=${INST_PIDS[i]}
	done
	umount "$mnt" || return 1
	[[ -n $pid ]] || return 1
	await 20 "! alive $pid"
}

install_cleanup() {
	local i pid mnt
	for i in "${!INST_MNTS[@]}"; do
		mnt=${INST_MNTS[i]} pid=${INST_PIDS[i]}
		if mountpoint -q "$mnt"; then
			umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null
		fi
		[[ -n $pid ]] || continue
		await 10 "! alive $pid" && continue
		echo "# recfs (pid $pid) did not exit after umount: killed"
		kill -TERM "$pid" 2>/dev/null
		await 5 "! alive $pid" || kill -KILL "$pid" 2>/dev/null
	done
	[[ -n $BOUND ]] && umount "$BOUND" 2>/dev/null
}
trap 'rc=$?; install_cleanup; (exit $rc); cleanup' EXIT

# man_text FILE: the page as text, 200 columns (so no example is wrapped),
# without indentation.
man_text() {
	LC_ALL=C MANWIDTH=200 man -l "$1" 2>/dev/null | sed 's/^ *//'
}

# ---- meson install ---------------------------------------------------------

DEST=$T/dest
out=$(cd "$RECFS_BUILD_ROOT" && meson install --no-rebuild --quiet \
	--destdir "$DEST" 2>&1)
rc=$?
check "[ $rc = 0 ]" "meson install --destdir exits 0 ($(tail -n1 <<<"$out"))"
# where meson was told to install (the build's own prefix and dirs)
opt() {
	meson introspect "$RECFS_BUILD_ROOT" --buildoptions |
		python3 -c 'import json, sys
print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == sys.argv[1]))' "$1"
}
under() { # under DIR_OPTION: $DEST + the absolute directory
	local d
	d=$(opt "$1")
	[[ $d == /* ]] || d=$(opt prefix)/$d
	echo "$DEST$d"
}
BIN=$(under bindir)
MAN=$(under mandir)
COMPL=$(under datadir)/bash-completion/completions/recfsctl
VERSION=$(meson introspect "$RECFS_BUILD_ROOT" --projectinfo |
	python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')
note "installed under $DEST$(opt prefix)"

check "[ -x '$BIN/recfs' ] && [ -x '$BIN/recfsctl' ]" \
	"recfs and recfsctl are in ${BIN#"$DEST"}"
check "'$BIN/recfs' --version | grep -q '^recfs $VERSION '" \
	"the installed recfs --version says $VERSION"
check "'$BIN/recfsctl' --help | grep -q '^commands:'" \
	"the installed recfsctl runs (--help lists the commands)"
if ! "$BIN/recfsctl" --version >/dev/null 2>&1; then
	note "recfsctl has no --version (exit 2, unknown command): not checked"
fi
for page in man1/recfs.1 man1/recfsctl.1 man5/recfs.5; do
	f=$MAN/$page
	check "[ -f '$f' ]" "${f#"$DEST"} is installed"
	check "out=\$(groff -man -Tutf8 -ww -z '$f' 2>&1) && [ -z \"\$out\" ]" \
		"groff -man -ww renders $page without a warning"
	check "out=\$(LC_ALL=C MANWIDTH=80 man --warnings -l '$f' 2>&1 >/dev/null) &&
		[ -z \"\$out\" ]" "man -l renders $page without a warning"
done
check "[ \"\$(MANPATH='$MAN' man -w 5 recfs)\" = '$MAN/man5/recfs.5' ]" \
	"man finds recfs(5) in the installed man directory"
check "[ -f '$COMPL' ]" "the bash completion is ${COMPL#"$DEST"}"

# ---- mount -t fuse.recfs ---------------------------------------------------

if [[ ! -d /usr/local/sbin ]]; then
	echo "Bail out! no /usr/local/sbin to bind the installed bin over" >&2
	exit 2
fi
mount --bind "$BIN" /usr/local/sbin && BOUND=/usr/local/sbin
check "[ -n '$BOUND' ]" "the installed bin is bound over /usr/local/sbin (in this namespace)"
check "[ \"\$(env -i /bin/sh -c 'command -v recfs')\" = /usr/local/sbin/recfs ]" \
	"sh without PATH (as mount.fuse3 runs it) finds the installed recfs"

out=$("$BIN/recfsctl" init "$STORE" 2>&1)
check "[ -d '$STORE/records' ]" "the installed recfsctl init makes a store ($out)"

if sys_mount "$MNT" -t fuse.recfs "$STORE" "$MNT"; then
	check "awk -v m='$MNT' '\$2 == m && \$3 == \"fuse.recfs\"' /proc/mounts | grep -q ." \
		"mount -t fuse.recfs STORE MNT: a fuse.recfs mount"
	check "[ -n '${INST_PIDS[-1]}' ] && alive '${INST_PIDS[-1]}'" \
		"the daemon runs and holds the store's lock (pid ${INST_PIDS[-1]})"
	echo hello >"$MNT/greeting"
	check "[ \"\$(cat '$MNT/greeting')\" = hello ]" "a record written is read back"
	check "[ \"\$(version '$MNT/greeting')\" = 1 ]" "... at version 1"
	check "sys_umount '$MNT'" "umount MNT: unmounted, and the daemon exits"
	check "[ -z \"\$(lock_pid '$STORE')\" ]" "... after releasing the lock"
	check "[ \"\$(cat '$STORE/records/greeting')\" = hello ]" \
		"the record is in the store"
else
	check false "mount -t fuse.recfs STORE MNT"
fi

# ---- /etc/fstab, through mount -T FILE ----------------------------------------

# The line recfs(1) documents, and one with the options that are for
# mount(8) and systemd only; each on a mount point of its own.
doc_line=$(man_text "$MAN/man1/recfs.1" |
	awk '$1 == "/var/lib/recfs/store" && $3 == "fuse.recfs" && NF == 6')
check "[ -n '$doc_line' ]" "recfs(1) has an fstab line ($doc_line)"
M1=$T/fstab-doc M2=$T/fstab-noauto M3=$T/fstab-systemd
FSTAB=$T/fstab
{
	awk -v s="$STORE" -v m="$M1" '{$1 = s; $2 = m; print}' <<<"$doc_line"
	echo "$STORE $M2 fuse.recfs defaults,noauto,relatime,lazytime 0 0"
	echo "$STORE $M3 fuse.recfs defaults,noauto,nofail,_netdev,comment=x,x-systemd.automount,x-systemd.requires=network-online.target,x-systemd.mount-timeout=30 0 0"
} >"$FSTAB"
n=0
for m in "$M1" "$M2" "$M3"; do
	n=$((n + 1))
	opts=$(awk -v m="$m" '$2 == m {print $4}' "$FSTAB")
	if ! sys_mount "$m" -T "$FSTAB" "$m"; then
		check false "mount -T FSTAB MNT ($opts)"
		continue
	fi
	check "mountpoint -q '$m'" "mount -T FSTAB MNT: the line with $opts"
	echo "line $n" >"$m/fstab"
	check "[ \"\$(cat '$m/fstab')\" = 'line $n' ] && [ \"\$(version '$m/fstab')\" = $n ]" \
		"... a record written is read back, at version $n"
	if [[ $opts == *allow_other* ]]; then
		check "awk -v m='$m' '\$2 == m {print \$4}' /proc/mounts |
			grep -E 'default_permissions.*allow_other|allow_other.*default_permissions' |
			grep nosuid | grep -q nodev" \
			"... mounted nosuid,nodev,allow_other and so default_permissions"
	fi
	check "sys_umount '$m'" "... umount MNT: unmounted, and the daemon exits"
done

# ---- the systemd unit of recfs(1) --------------------------------------------

UNIT=$T/units/srv-records.mount
mkdir -p "$T/units"
man_text "$MAN/man1/recfs.1" | sed -n '/^\[Unit\]$/,/^WantedBy=/p' >"$UNIT"
check "grep -qx 'Type=fuse.recfs' '$UNIT' && grep -qx 'Where=/srv/records' '$UNIT' &&
	grep -qx 'What=/var/lib/recfs/store' '$UNIT'" \
	"recfs(1) has a mount unit: $(grep -E '^(Type|Options)=' "$UNIT" | tr '\n' ' ')"
if command -v systemd-analyze >/dev/null; then
	# MANPATH: its Documentation=man:recfs(1) must be found
	check "out=\$(cd '$T/units' && MANPATH='$MAN' systemd-analyze verify \
		./srv-records.mount 2>&1) && [ -z \"\$out\" ] || { echo \"\$out\"; false; }" \
		"systemd-analyze verify accepts it, with nothing to say"
else
	echo "ok - systemd-analyze verify of the unit # SKIP no systemd-analyze"
fi
# what systemd does with it: mount -t TYPE -o OPTIONS WHAT WHERE
type=$(sed -n 's/^Type=//p' "$UNIT")
uopts=$(sed -n 's/^Options=//p' "$UNIT")
M4=$T/unit
if sys_mount "$M4" -t "$type" -o "$uopts" "$STORE" "$M4"; then
	check "[ \"\$(cat '$M4/greeting')\" = hello ]" \
		"mount -t $type -o $uopts (the unit's): records are read"
	check "sys_umount '$M4'" "... umount: unmounted, and the daemon exits"
else
	check false "mount -t $type -o $uopts (the unit's)"
fi

# ---- bash completion -----------------------------------------------------------

# complete LINE: what the installed completion offers for LINE (the last
# word is completed; a trailing space starts a new one), one a line.
complete_line() {
	PATH=$BIN:$PATH bash --norc --noprofile -c '
		source "$1" || exit 1
		read -r -a COMP_WORDS <<<"$2"
		[[ $2 == *" " ]] && COMP_WORDS+=("")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMP_LINE=$2 COMP_POINT=${#2}
		_recfsctl
		printf "%s\n" "${COMPREPLY[@]}"' _ "$COMPL" "$1"
}
check "PATH='$BIN':\$PATH bash --norc -c \"source '$COMPL' && complete -p recfsctl\" |
	grep -q _recfsctl" "the completion registers for recfsctl"
check "complete_line 'recfsctl ro' | grep -qx rollback" \
	"recfsctl ro<TAB> offers rollback ($(complete_line 'recfsctl ro' | tr '\n' ' '))"
check "complete_line 'recfsctl log --j' | grep -qx -- --json" \
	"recfsctl log --j<TAB> offers --json ($(complete_line 'recfsctl log --j' | tr '\n' ' '))"
check "complete_line 'recfsctl rollback --' | grep -qx -- --dry-run" \
	"recfsctl rollback --<TAB> offers --dry-run"
check "complete_line 'recfsctl verify $T/sto' | grep -qx '$STORE'" \
	"recfsctl verify DIR<TAB> completes the store directory"
check "complete_line 'recfsctl show $STORE gr' | grep -qx greeting" \
	"recfsctl show STORE gr<TAB> completes the record ID"
check "! complete_line 'recfsctl update --retries ' | grep -q ." \
	"nothing is offered for the value of --retries"

finish
