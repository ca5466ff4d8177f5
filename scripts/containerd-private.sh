#!/usr/bin/env bash
# Starts or stops a private containerd on its own socket and directories, for
# the test suite and the benchmarks; never touches a system-wide containerd.
#   scripts/containerd-private.sh start DIR   (prints nothing; socket DIR/containerd.sock)
#   scripts/containerd-private.sh stop DIR
set -euo pipefail
cmd=${1:?usage: containerd-private.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: containerd-private.sh start|stop DIR}")
sock="$dir/containerd.sock"
pidfile="$dir/containerd.pid"

# Alive means running: this machine's pid 1 does not reap orphans, so a
# killed containerd can linger as a zombie that `kill -0` still finds.
alive() {
  [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

stop() {
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if alive "$pid"; then
    kill -TERM "$pid"
    for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case "$cmd" in
start)
  stop
  mkdir -p "$dir/root" "$dir/state"
  cat > "$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
[debug]
  address = "$dir/debug.sock"
TOML
  rm -f "$sock"
  setsid containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  for _ in $(seq 150); do
    if ctr -a "$sock" version >/dev/null 2>&1; then exit 0; fi
    alive "$(cat "$pidfile")" || break
    sleep 0.1
  done
  echo "containerd did not come up; its log:" >&2
  tail -n 30 "$dir/containerd.log" >&2
  exit 1
  ;;
stop) stop ;;
*) echo "usage: containerd-private.sh start|stop DIR" >&2; exit 2 ;;
esac
