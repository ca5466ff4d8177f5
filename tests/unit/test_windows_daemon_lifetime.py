"""The whole Daemon on a simulated Windows: the platform's parts selected by
``supervisor.daemon._platform_parts``, driven through the stand-ins of
``test_windows_daemon`` (kernel32, the subprocess start, ``msvcrt.locking``)
and a stand-in health checker in place of grpc over a named pipe.

It runs in a subprocess, simulated as ``test_windows_platform`` does (no
``fcntl``, no ``O_NOFOLLOW``/``geteuid``/``pidfd_open``, no
``SIGKILL``/``SIGUSR1``), so that nothing Linux-only the Daemon touches goes
unnoticed and the simulation never leaks into other tests. What it cannot
show is Windows' own behaviour behind the seams (see docs/windows.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from supervisor.daemon import Daemon, _platform_parts
from tests._containerd import REPO

_SIMULATION = textwrap.dedent(
    r"""
    import asyncio, importlib, importlib.abc, json, logging, os, pathlib, signal, sys

    BASE = pathlib.Path(sys.argv[1])

    # 1. Everything outside the package, loaded on the real platform.
    import anyio, anyio._backends._asyncio, grpclib.client, pytest  # noqa: F401
    import supervisor.daemon  # noqa: F401  (its third-party imports)

    # 2. Windows, as far as the package can tell.
    LINUX_ONLY = {"fcntl", "pwd", "grp", "termios", "tty", "pty", "resource"}
    for name in [m for m in sys.modules if m.split(".")[0] in ("supervisor", "tests")]:
        del sys.modules[name]
    for name in LINUX_ONLY:
        sys.modules.pop(name, None)

    class NoLinux(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name in LINUX_ONLY:
                raise ImportError(f"No module named {name!r} (simulated Windows)")
            return None

    sys.meta_path.insert(0, NoLinux())
    sys.platform = "win32"
    os.name = "nt"
    pathlib.WindowsPath = pathlib.PosixPath  # POSIX paths: see test_windows_platform
    for attr in ("O_NONBLOCK", "O_CLOEXEC", "O_NOFOLLOW", "O_DIRECTORY", "geteuid", "getuid",
                 "getgid", "getegid", "mkfifo", "pidfd_open", "chown", "fchown", "lchown",
                 "sysconf"):
        if hasattr(os, attr):
            delattr(os, attr)
    for attr in ("SIGKILL", "SIGUSR1", "SIGHUP", "SIGWINCH", "SIGQUIT", "pidfd_send_signal"):
        if hasattr(signal, attr):
            delattr(signal, attr)

    from supervisor import errors
    from supervisor.daemon import Daemon, DaemonTimeouts, _platform_parts
    from supervisor.daemon import _windows as win
    from tests.unit.test_windows_daemon import BINARY, FakeKernel32, Locks, Starter

    out = {"selected": _platform_parts.select().name, "events": []}

    class Events(logging.Handler):
        def emit(self, record):
            fields = getattr(record, "fields", {})
            out["events"].append([getattr(record, "event", record.getMessage()),
                                  {k: fields.get(k) for k in ("pid", "reason") if k in fields}])

    logger = logging.getLogger("supervisor")
    logger.addHandler(Events())
    logger.setLevel(logging.DEBUG)

    TIMEOUTS = DaemonTimeouts(
        start=5, stop=2, kill=2, health_interval=0.02, health_timeout=0.5, health_failures=2,
        start_poll=0.01, restart_initial=0.01, restart_max=0.05, dump_grace=0.01, log_poll=0.02,
    )

    async def until(predicate, what):
        with anyio.fail_after(20):
            while not predicate():
                await anyio.sleep(0.01)
        out.setdefault("reached", []).append(what)

    async def main():
        k32, locks = FakeKernel32(), Locks()
        starter = Starter(k32)
        health = {"answers": True, "addresses": set()}

        class Health:
            # containerd "answers" while a process of its runs and is not hung.
            def __init__(self, address):
                health["addresses"].add(address)

            async def check(self, within):
                running = any(p.code is None for p in k32.procs.values())
                return running and health["answers"]

            def close(self):
                pass

        _platform_parts.select = lambda: _platform_parts.windows_parts(
            control=k32, start=starter, locking=locks, health=Health
        )
        state, root = BASE / "state", BASE / "root"

        # -- started, crashed, hung, stopped ----------------------------------------
        daemon = Daemon(root, state, binary=BINARY, timeouts=TIMEOUTS)
        async with daemon:
            first = daemon.pid
            out["address"], out["debug_address"] = daemon.address, daemon.debug_address
            out["health_addresses"] = sorted(health["addresses"])
            out["config"] = daemon.config_path.read_text()
            out["pid_file"] = daemon.pid_file.read_text()
            out["lock_held"] = len(locks.held)
            try:
                async with Daemon(root, state, binary=BINARY, timeouts=TIMEOUTS):
                    out["second"] = "entered"
            except errors.FailedPrecondition as exc:
                out["second"] = str(exc)

            k32.procs[first].exit(2)  # containerd crashes
            await until(lambda: daemon.restarts == 1 and daemon.pid not in (None, first),
                        "restarted after a crash")
            second = daemon.pid
            out["pid_file_after_crash"] = daemon.pid_file.read_text()

            health["answers"] = False  # containerd hangs
            await until(lambda: k32.events, "asked for its stacks")
            health["answers"] = True
            await until(lambda: daemon.restarts == 2 and daemon.pid not in (None, second),
                        "replaced when unresponsive")
            third = daemon.pid
            out["killed"] = {str(pid): code for pid, code in
                             ((p.pid, p.code) for p in k32.procs.values())}
        out["pids"] = [first, second, third]
        out["stack_events"] = k32.events
        out["breaks"] = list(k32.breaks)
        out["starts"] = [list(args) for args, kwargs in starter.calls]
        out["creationflags"] = sorted({kw["creationflags"] for _, kw in starter.calls})
        out["after_exit"] = {
            "pid_file": daemon.pid_file.exists(), "locks": len(locks.held),
            "handles": len(k32.handles), "running": sorted(
                p.pid for p in k32.procs.values() if p.code is None),
        }

        # -- adopted, under a state directory too long for a unix socket --------------
        long_state = BASE / ("s" * 150) / "state"
        long_state.mkdir(parents=True)
        k32.add(4242, created=7)
        (long_state / "containerd.pid").write_text("4242 7\n")
        calls = len(starter.calls)
        adopter = Daemon(root, long_state, binary=BINARY, timeouts=TIMEOUTS)
        async with adopter:
            out["adopted"] = {"pid": adopter.pid, "starts": len(starter.calls) - calls,
                              "address": adopter.address}
        out["adopted"]["breaks"] = k32.breaks[-1]
        out["adopted"]["handles"] = len(k32.handles)
        out["adopted"]["locks"] = len(locks.held)

        # -- a runtime with arguments needs a #!/bin/sh wrapper: refused, nothing held --
        from supervisor.daemon import DaemonConfig, Runtime
        wrapped = DaemonConfig(runtimes={"dbg": Runtime("dbg", path="runhcs.exe", args=("-d",))})
        try:
            async with Daemon(root, state, binary=BINARY, timeouts=TIMEOUTS, config=wrapped):
                out["wrapped"] = "entered"
        except errors.SupervisorError as exc:
            out["wrapped"] = f"{type(exc).__name__}: {exc}"
        out["wrapped_locks"] = len(locks.held)

    asyncio.run(main())
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("windaemon")
    result = subprocess.run(
        [sys.executable, "-c", _SIMULATION, str(base)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    out["base"] = str(base)
    return out


def _events(run: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [fields for event, fields in run["events"] if event == name]


def test_the_windows_parts_are_selected_on_windows(run: dict[str, Any]) -> None:
    from supervisor.daemon import _windows

    assert run["selected"] == "windows"
    state = Path(run["base"]) / "state"
    assert run["address"] == _windows.pipe_address(state)
    assert run["debug_address"] == _windows.debug_pipe_address(state)
    # The health check and containerd's config both use the pipes.
    assert run["health_addresses"] == [run["address"]]
    assert f"address = {json.dumps(run['address'])}" in run["config"]
    assert f"address = {json.dumps(run['debug_address'])}" in run["config"]


def test_entry_locks_spawns_and_records_the_creation_time(run: dict[str, Any]) -> None:
    first, second, third = run["pids"]
    assert run["pid_file"] == f"{first} 133000000000\n"
    assert run["pid_file_after_crash"] == f"{second} 133000000000\n"
    assert run["lock_held"] == 1
    assert "another supervisor" in run["second"]
    assert run["creationflags"] == [0x200]  # CREATE_NEW_PROCESS_GROUP, each time
    assert len(run["starts"]) == 3 and all(a[0].endswith("containerd.exe") for a in run["starts"])


def test_a_crash_and_a_hang_are_both_replaced(run: dict[str, Any]) -> None:
    first, second, third = run["pids"]
    assert len({first, second, third}) == 3
    assert run["killed"][str(first)] == 2  # its own exit code
    downs = _events(run, "daemon.containerd_down")
    assert [(d["pid"], d["reason"]) for d in downs] == [
        (first, "exited"),
        (second, "unresponsive"),
    ]
    # The hung one was asked for its stacks through its event, then terminated.
    assert run["stack_events"] == [f"Global\\stackdump-{second}"]
    assert run["killed"][str(second)] == 1  # FakeProcess.kill: asyncio's own handle
    assert len(_events(run, "daemon.restarted")) == 2


def test_exit_stops_with_ctrl_break_and_lets_everything_go(run: dict[str, Any]) -> None:
    third = run["pids"][2]
    assert run["breaks"] == [third]
    assert run["killed"][str(third)] is None  # still running when read inside the block
    assert run["after_exit"] == {"pid_file": False, "locks": 0, "handles": 0, "running": []}
    assert [e["pid"] for e in _events(run, "daemon.stopped")][:1] == [third]


def test_an_adopted_containerd_under_a_long_state_dir(run: dict[str, Any]) -> None:
    # No unix socket, so no length limit: the pipe name is fixed-length.
    adopted = run["adopted"]
    assert adopted["pid"] == 4242 and adopted["starts"] == 0
    assert adopted["address"].startswith("\\\\.\\pipe\\containerd-supervisor-")
    assert adopted["breaks"] == 4242
    assert adopted["handles"] == 0 and adopted["locks"] == 0


def test_linux_selects_the_linux_parts(tmp_path: Path) -> None:
    parts = _platform_parts.select()
    assert parts.name == "linux" and parts.unix_sockets
    daemon = Daemon(tmp_path / "root", tmp_path / "state")
    assert daemon.address == str(tmp_path / "state" / "containerd.sock")
    assert daemon.debug_address == str(tmp_path / "state" / "debug.sock")


def test_a_runtime_with_arguments_is_refused_on_windows(run: dict[str, Any]) -> None:
    assert run["wrapped"].startswith("FailedPrecondition: ") and "POSIX shell" in run["wrapped"]
    assert run["wrapped_locks"] == 0
