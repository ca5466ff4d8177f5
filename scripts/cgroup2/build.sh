#!/usr/bin/env bash
# Builds (when missing or stale) the guest for the cgroup v2 test lane:
#   OUT/vmlinux      the host's Debian kernel, uncompressed (boots faster under TCG)
#   OUT/initrd.img   busybox + the modules that mount the root disk and the 9p shares
#   OUT/root.img     ext4: a minbase Debian of the host's release with containerd,
#                    runc and python3, the kernel's modules, and guest-init.sh
#   OUT/stamp        a hash of everything above is built from; rebuilt when it changes
# Installs the host packages it needs with apt when missing. Never mounts anything
# on the host (mke2fs -d fills the disk image from a directory).
#   scripts/cgroup2/build.sh [OUT]     (default: <repo>/.build/cgroup2)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(realpath -m "${1:-$repo/.build/cgroup2}")

HOST_PACKAGES="qemu-system-x86 qemu-utils linux-image-amd64 mmdebstrap busybox-static cpio
  python3 python3-venv e2fsprogs kmod"
# containernetworking-plugins and iptables: the networking tests (-m network).
GUEST_PACKAGES="containerd,runc,python3,python3-venv,busybox-static,iproute2,kmod,ca-certificates,procps,containernetworking-plugins,iptables,criu"
INITRD_MODULES="virtio_pci virtio_blk virtio_console virtio_rng crc32c_generic ext4 9pnet_virtio 9p"

log() { echo "cgroup2-build: $*" >&2; }

ensure_host_packages() {
  local missing="" p
  for p in $HOST_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  log "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# The kernel that linux-image-amd64 currently points at (not the running one).
kernel_version() {
  dpkg-query -W -f='${Depends}' linux-image-amd64 | sed -n 's/^linux-image-\([^ ,]*\).*/\1/p'
}

# The host's Debian sources for its own release (bookworm, -updates, -security),
# as one-line entries for mmdebstrap: read from apt at run time, never written down.
apt_mirrors() {
  local codename=$1 lines
  lines=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' 2>/dev/null |
    awk -v c="$codename" '$2 == c || $2 == c "-updates" || $2 == c "-security"' | sort -u)
  if [ -z "$lines" ]; then
    apt-get update -qq
    lines=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' |
      awk -v c="$codename" '$2 == c || $2 == c "-updates" || $2 == c "-security"' | sort -u)
  fi
  [ -n "$lines" ] || { log "no apt source for $codename found on this host"; exit 1; }
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg opt=""
  [ -r "$keyring" ] && opt="[signed-by=$keyring] "
  while read -r uri release; do
    echo "deb ${opt}${uri} ${release} main"
  done <<<"$lines"
}

# Writes an uncompressed vmlinux (ELF, booted through its PVH note) from a
# bzImage; prints nothing and returns 1 when the payload is not xz or gzip.
extract_vmlinux() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import gzip, lzma, sys, zlib
data = open(sys.argv[1], "rb").read()
for magic, make in ((b"\xfd7zXZ\x00", lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ)),
                    (b"\x1f\x8b\x08", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS))):
    start = data.find(magic)
    while start != -1:
        try:
            elf = make().decompress(data[start:])
        except (lzma.LZMAError, zlib.error, EOFError):
            elf = b""
        if elf[:4] == b"\x7fELF":
            open(sys.argv[2], "wb").write(elf)
            sys.exit(0)
        start = data.find(magic, start + 1)
sys.exit(1)
PY
}

inputs_hash() {
  local kver=$1 codename=$2
  {
    cat "$here/build.sh" "$here/guest-init.sh" "$here/initrd-init.sh"
    echo "$kver $codename"
    dpkg-query -W -f='${Version}\n' "linux-image-$kver"
    cat /etc/debian_version
  } | sha256sum | cut -d' ' -f1
}

build() {
  local kver=$1 codename=$2 hash=$3
  local tmp="$out/tmp.$$"
  rm -rf "$out"/tmp.*
  mkdir -p "$tmp"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  local t0=$SECONDS
  log "building the guest: kernel $kver, Debian $codename (into $out)"

  # The kernel.
  if ! extract_vmlinux "/boot/vmlinuz-$kver" "$tmp/vmlinux"; then
    log "could not extract vmlinux; booting the compressed kernel"
    cp "/boot/vmlinuz-$kver" "$tmp/vmlinux"
  fi

  # The initramfs: static busybox and the modules, in dependency order.
  local ird="$tmp/initrd" m line ko
  mkdir -p "$ird"/{bin,dev,proc,sys,newroot,modules}
  cp /bin/busybox "$ird/bin/busybox"
  cp "$here/initrd-init.sh" "$ird/init"
  chmod 755 "$ird/init"
  : >"$ird/modules/order"
  for m in $INITRD_MODULES; do
    while read -r line; do
      case "$line" in
      insmod\ *)
        ko=${line#insmod }
        ko=${ko%% *}
        if ! grep -qxF "$(basename "$ko")" "$ird/modules/order"; then
          cp "$ko" "$ird/modules/"
          basename "$ko" >>"$ird/modules/order"
        fi
        ;;
      esac
    done < <(modprobe -S "$kver" --show-depends "$m")
  done
  (cd "$ird" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$tmp/initrd.img"

  # The root: a minbase Debian of the host's release. /sys is not mounted in
  # the chroot (nothing here needs it), so the host's cgroup tree is never near.
  local mirrors=()
  mapfile -t mirrors < <(apt_mirrors "$codename")
  log "mmdebstrap ($GUEST_PACKAGES)"
  mmdebstrap --mode=root --variant=minbase --skip=chroot/mount/sys \
    --include="$GUEST_PACKAGES" \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --quiet \
    "$codename" "$tmp/root" "${mirrors[@]}"
  log "mmdebstrap done after $((SECONDS - t0)) s"
  mkdir -p "$tmp/root/lib/modules"
  cp -a "/lib/modules/$kver" "$tmp/root/lib/modules/"
  install -m 755 "$here/guest-init.sh" "$tmp/root/sbin/cg2-init"
  echo cgroup2-vm >"$tmp/root/etc/hostname"
  : >"$tmp/root/etc/machine-id"

  local size_mb
  size_mb=$(( $(du -sm "$tmp/root" | cut -f1) + 1024 ))
  mke2fs -q -t ext4 -L cg2root -d "$tmp/root" "$tmp/root.img" "${size_mb}M" >/dev/null
  rm -rf "$tmp/root" "$tmp/initrd"

  mv -f "$tmp/vmlinux" "$tmp/initrd.img" "$tmp/root.img" "$out/"
  echo "$hash" >"$out/stamp"
  rm -rf "$tmp"
  trap - EXIT
  log "built in $((SECONDS - t0)) s: $(du -sh --apparent-size "$out/root.img" | cut -f1) disk" \
    "($(du -sh "$out/root.img" | cut -f1) used), kernel $kver"
}

main() {
  [ "$(id -u)" = 0 ] || { log "must run as root (apt, mmdebstrap)"; exit 1; }
  ensure_host_packages
  local kver codename hash
  kver=$(kernel_version)
  [ -n "$kver" ] && [ -r "/boot/vmlinuz-$kver" ] || { log "no kernel for linux-image-amd64 in /boot"; exit 1; }
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  hash=$(inputs_hash "$kver" "$codename")
  mkdir -p "$out"
  exec 9>"$out/build.lock"
  flock 9
  if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$hash" ] &&
    [ -f "$out/root.img" ] && [ -f "$out/vmlinux" ] && [ -f "$out/initrd.img" ]; then
    return 0
  fi
  rm -f "$out/stamp"
  build "$kver" "$codename" "$hash"
}

main
