#!/bin/bash
# PID 1 of the cgroup2 lane's guest (installed as /sbin/cg2-init by build.sh).
# Mounts a pure cgroup v2 hierarchy, the run's job folder (9p tag cg2job, read-write:
# job.sh in, rc out) and the repository (9p tag cg2repo, read-only, at the host's
# absolute path), starts a private containerd and runs pytest with the job's
# arguments. Its stdout and stderr go to the virtio-serial ports cg2.out and
# cg2.err, which the host streams; the exit code goes to the job folder's rc.
# It always ends by powering the VM off.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
JOB=/run/cg2/job
CTRD=/run/cg2/ctrd

say() { echo "[cgroup2-vm $(cut -d' ' -f1 /proc/uptime)s] $*"; }

finish() {
  local rc=$1
  if mountpoint -q "$JOB"; then
    echo "$rc" >"$JOB/rc.tmp" && mv -f "$JOB/rc.tmp" "$JOB/rc"
  fi
  sync
  exec >/dev/console 2>&1 </dev/null
  /bin/busybox poweroff -f
  echo o >/proc/sysrq-trigger
  sleep 30
}

die() {
  say "ERROR: $1" >&2
  finish "${2:-3}"
}

# Until the serial ports are found, messages go to the console (ttyS0), which
# the host shows when a run ends without a result.
exec </dev/null >/dev/console 2>&1

mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
# /tmp (TMPDIR, so pytest's tmp_path) stays on the root disk: guest-local, thrown
# away with the snapshot, and a real block device for tests that count block IO.
mkdir -p /tmp && chmod 1777 /tmp
# As systemd mounts it on a unified host.
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup ||
  mount -t cgroup2 cgroup2 /sys/fs/cgroup || die "cannot mount cgroup2"
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
  echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control || say "cannot enable the $c controller"
done
echo cgroup2-vm >/proc/sys/kernel/hostname
ip link set lo up 2>/dev/null
modprobe overlay 2>/dev/null
# For the networking tests: bridges and veths (the kernel would load them on
# demand too, as it does the netfilter modules iptables asks for).
modprobe -a bridge veth 2>/dev/null
ulimit -n 65536

mkdir -p "$JOB"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 cg2job "$JOB" || die "cannot mount the job folder"

port() {
  local n
  for n in /sys/class/virtio-ports/*/name; do
    [ -r "$n" ] && [ "$(cat "$n")" = "$1" ] && { echo "/dev/$(basename "$(dirname "$n")")"; return 0; }
  done
  return 1
}
for _ in $(seq 100); do
  out=$(port cg2.out) && err=$(port cg2.err) && [ -c "$out" ] && [ -c "$err" ] && break
  sleep 0.05
done
[ -c "${out:-}" ] && [ -c "${err:-}" ] || die "no virtio-serial ports cg2.out and cg2.err"
exec >"$out" 2>"$err"

# REPO, ROOTFS, VENV, PYTEST_TIMEOUT, the PYTEST_ARGS array and GUEST_CMD, written by run.sh.
# shellcheck disable=SC1091
. "$JOB/job.sh" || die "cannot read job.sh"

fstype=$(stat -fc %T /sys/fs/cgroup)
say "kernel $(uname -r); /sys/fs/cgroup is $fstype; controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
[ "$fstype" = cgroup2fs ] || die "/sys/fs/cgroup is $fstype, not cgroup2fs: this is not a cgroup v2 guest"
awk '$3 == "cgroup" { found = 1 } END { exit !found }' /proc/mounts && die "a cgroup v1 hierarchy is mounted"
# The package versions (dpkg-query is quick; each Go binary takes a second or two to start here).
say "$(dpkg-query -W -f='${Package} ${Version}; ' containerd runc python3)kernel command line: $(cat /proc/cmdline)"

mkdir -p "$REPO"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro cg2repo "$REPO" ||
  die "cannot mount the repository at $REPO"
# The containers get a guest-local copy of the rootfs at the same path: nothing
# they do reaches the host's tree.
if [ -d "$ROOTFS" ]; then
  mkdir -p /run/cg2/rootfs
  cp -a "$ROOTFS/." /run/cg2/rootfs/ && mount --bind /run/cg2/rootfs "$ROOTFS" ||
    die "cannot copy the rootfs $ROOTFS"
fi

"$REPO/scripts/containerd-private.sh" start "$CTRD" || die "containerd did not start"
say "containerd ready on $CTRD/containerd.sock"

cd "$REPO" || die "no $REPO"
export HOME=/root TMPDIR=/tmp LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
export SUPERVISOR_TEST_ADDRESS="$CTRD/containerd.sock" SUPERVISOR_TEST_ROOTFS="$ROOTFS"
if [ -n "${GUEST_CMD:-}" ]; then
  # CGROUP2_GUEST_CMD on the host: a shell command instead of pytest, the venv first on PATH.
  say "bash -c ${GUEST_CMD@Q}"
  PATH="$VENV/bin:$PATH" timeout -s INT -k 30 "$PYTEST_TIMEOUT" bash -c "$GUEST_CMD"
else
  say "python -m pytest -p no:cacheprovider ${PYTEST_ARGS[*]}"
  # SIGINT first: pytest then prints where it was stuck and its summary.
  timeout -s INT -k 30 "$PYTEST_TIMEOUT" "$VENV/bin/python" -m pytest -p no:cacheprovider "${PYTEST_ARGS[@]}"
fi
rc=$?
if [ "$rc" = 124 ]; then
  say "ERROR: the run did not finish within $PYTEST_TIMEOUT s in the guest and was interrupted" >&2
fi
if [ "$rc" != 0 ] && [ -f "$CTRD/containerd.log" ]; then
  say "the last lines of containerd's log:" >&2
  tail -n 25 "$CTRD/containerd.log" >&2
fi
"$REPO/scripts/containerd-private.sh" stop "$CTRD"
say "exit code $rc"
finish "$rc"
