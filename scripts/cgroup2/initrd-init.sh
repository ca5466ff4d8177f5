#!/bin/busybox sh
# shellcheck shell=dash
# /init of the cgroup2 lane's initramfs: load the virtio, ext4 and 9p modules,
# mount the root disk and hand over to /sbin/cg2-init (guest-init.sh) on it.
# Any failure powers the VM off, and the host reports the console log.
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
  echo "cg2-initrd: $*" >&2
  sleep 1
  poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r ko; do
  # crc32c-intel needs SSE4.2, which -cpu qemu64 lacks; crc32c_generic follows it.
  insmod "/modules/$ko" 2>/dev/null || case "$ko" in crc32c-intel.ko) ;; *) echo "cg2-initrd: insmod $ko failed" >&2 ;; esac
done </modules/order

i=0
while [ ! -b /dev/vda ]; do
  i=$((i + 1))
  [ "$i" -gt 200 ] && fail "no /dev/vda after 10 s"
  sleep 0.05
done
mount -t ext4 -o rw /dev/vda /newroot || fail "cannot mount /dev/vda"
[ -x /newroot/sbin/cg2-init ] || fail "no /sbin/cg2-init on the root disk"
umount /proc /sys
mount --move /dev /newroot/dev || umount /dev
exec switch_root /newroot /sbin/cg2-init
