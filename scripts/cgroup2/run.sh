#!/usr/bin/env bash
# Runs pytest against a real containerd + runc inside a throw-away QEMU VM on a
# pure cgroup v2 kernel, streams its output here, and exits with pytest's code.
#   scripts/cgroup2/run.sh [PYTEST ARGS...]   (paths relative to the repo root;
#                              default: -m "cgroup or network or criu" tests/integration)
# Environment:
#   CGROUP2_TIMEOUT  seconds for the whole VM run before QEMU is killed (2700)
#   CGROUP2_MEM      guest memory in MiB (2048)
#   CGROUP2_SMP      guest CPUs (2)
#   CGROUP2_GUEST_CMD  a shell command to run in the guest (in the repo, containerd
#                    up, the venv first on PATH) instead of pytest; for poking around
# Exit codes besides pytest's: 124 the VM hit CGROUP2_TIMEOUT and was killed;
# 125 the VM stopped without reporting a result (its console log is shown).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$repo/.build/cgroup2
venv=$out/venv
rootfs=$repo/.build/rootfs
timeout_s=${CGROUP2_TIMEOUT:-2700}
mem=${CGROUP2_MEM:-2048}
smp=${CGROUP2_SMP:-2}

log() { echo "cgroup2: $*" >&2; }

[ $# -gt 0 ] || set -- -m "cgroup or network or criu" tests/integration
case "$timeout_s" in '' | *[!0-9]*) log "CGROUP2_TIMEOUT must be a number of seconds"; exit 2 ;; esac

# The guest image (rebuilt when its inputs changed) and the host packages.
"$here/build.sh" "$out"

# A venv made with Debian's python3, the same as the guest's, so that it runs
# there from the shared folder. PyPI is reachable from here, not from the guest.
ensure_venv() {
  local want
  want=$({ sha256sum "$repo/pyproject.toml"; /usr/bin/python3 --version; } | sha256sum | cut -c1-16)
  exec 8>"$out/venv.lock"
  flock 8
  if [ -f "$venv/.installed" ] && [ "$(cat "$venv/.installed")" = "$want" ]; then
    exec 8>&-
    return 0
  fi
  log "making $venv with /usr/bin/python3"
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  (cd "$repo" && "$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]')
  echo "$want" >"$venv/.installed"
  exec 8>&-
}
ensure_venv
"$repo/scripts/mkrootfs.sh" "$rootfs"
# Bytecode made here, as any run on the host makes it: the guest reads the
# repository read-only, and compiling there costs seconds under emulation.
"$venv/bin/python" -m compileall -q -j0 "$repo/supervisor" "$repo/tests" >/dev/null || true

run=$(mktemp -d "${TMPDIR:-/tmp}/cgroup2-run.XXXXXX")
mkdir -p "$run/job"
: >"$run/stdout"
: >"$run/stderr"
: >"$run/console.log"
qemu_pid=""
tails=()
cleanup() {
  # qemu_pid is timeout(1)'s, which passes SIGTERM on to QEMU; QEMU itself is
  # killed outright if it is still there after 10 s.
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
    local child
    child=$(pgrep -P "$qemu_pid" || true)
    kill -TERM "$qemu_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.2; done
    # shellcheck disable=SC2086
    kill -KILL $child "$qemu_pid" 2>/dev/null || true
  fi
  if [ ${#tails[@]} -gt 0 ]; then kill "${tails[@]}" 2>/dev/null || true; fi
  cp -f "$run/console.log" "$out/last-console.log" 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# The guest's own pytest timeout leaves time to boot and to report.
guest_timeout=$((timeout_s > 300 ? timeout_s - 120 : timeout_s * 3 / 5))
{
  printf 'REPO=%q\n' "$repo"
  printf 'ROOTFS=%q\n' "$rootfs"
  printf 'VENV=%q\n' "$venv"
  printf 'PYTEST_TIMEOUT=%q\n' "$guest_timeout"
  printf 'PYTEST_ARGS=('
  printf '%q ' "$@"
  printf ')\n'
  printf 'GUEST_CMD=%q\n' "${CGROUP2_GUEST_CMD:-}"
} >"$run/job/job.sh"

# shellcheck disable=SC2054 # the commas belong to QEMU's options
qemu=(
  qemu-system-x86_64
  -accel tcg -cpu qemu64 -smp "$smp" -m "$mem"
  -nodefaults -no-user-config -display none -no-reboot
  -kernel "$out/vmlinux" -initrd "$out/initrd.img"
  -append "console=ttyS0 panic=1 quiet cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1"
  -serial "file:$run/console.log"
  -drive "file=$out/root.img,format=raw,if=virtio,snapshot=on"
  -virtfs "local,path=$repo,mount_tag=cg2repo,security_model=passthrough,readonly=on"
  -virtfs "local,path=$run/job,mount_tag=cg2job,security_model=passthrough"
  -device virtio-serial-pci
  -chardev "file,id=cg2out,path=$run/stdout,append=on"
  -device virtserialport,chardev=cg2out,name=cg2.out
  -chardev "file,id=cg2err,path=$run/stderr,append=on"
  -device virtserialport,chardev=cg2err,name=cg2.err
  -device virtio-rng-pci
)
what="pytest $*"
[ -z "${CGROUP2_GUEST_CMD:-}" ] || what="bash -c ${CGROUP2_GUEST_CMD@Q}"
log "booting the VM (TCG, $smp CPUs, $mem MiB; timeout ${timeout_s} s): $what"
t0=$SECONDS
timeout -k 10 "$timeout_s" "${qemu[@]}" </dev/null &
qemu_pid=$!
tail -n +1 -F -s 0.2 --pid="$qemu_pid" "$run/stdout" 2>/dev/null &
tails+=($!)
tail -n +1 -F -s 0.2 --pid="$qemu_pid" "$run/stderr" >&2 2>/dev/null &
tails+=($!)
qrc=0
wait "$qemu_pid" || qrc=$?
qemu_pid=""
wait "${tails[@]}" 2>/dev/null || true
tails=()
elapsed=$((SECONDS - t0))
echo >&2 # pytest's progress line may be unfinished

show_console() {
  log "the guest's console (last 40 lines; all of it in $out/last-console.log):"
  tail -n 40 "$run/console.log" >&2
}

if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
  log "FAILED: the VM did not finish within ${timeout_s} s (CGROUP2_TIMEOUT); QEMU was killed"
  show_console
  exit 124
fi
if [ ! -f "$run/job/rc" ]; then
  log "FAILED: the VM stopped after ${elapsed} s without reporting a result (QEMU exit $qrc)"
  show_console
  exit 125
fi
rc=$(cat "$run/job/rc")
log "the VM ran ${elapsed} s; ${what%% *} exited with $rc"
exit "$rc"
