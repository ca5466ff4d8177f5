#!/usr/bin/env bash
# Builds a busybox root filesystem in DIR from Debian's busybox-static: no image
# registry is reachable here, and none is needed for a shell and coreutils.
#   scripts/mkrootfs.sh DIR
set -euo pipefail
dir=${1:?usage: mkrootfs.sh DIR}
bb=${BUSYBOX:-/bin/busybox}
if [ -x "$dir/bin/busybox" ] && [ -e "$dir/bin/sh" ] && cmp -s "$bb" "$dir/bin/busybox"; then
  exit 0
fi
tmp="$dir.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"/{bin,dev,proc,sys,tmp,etc,root,run,var}
cp "$bb" "$tmp/bin/busybox"
for applet in $("$bb" --list); do
  # Linking busybox over itself would make a symlink loop.
  [ "$applet" = busybox ] && continue
  ln -sf busybox "$tmp/bin/$applet"
done
chmod 1777 "$tmp/tmp"
echo 'root:x:0:0:root:/root:/bin/sh' > "$tmp/etc/passwd"
echo 'root:x:0:' > "$tmp/etc/group"
rm -rf "$dir"
mv "$tmp" "$dir"
