"""The platform choices (supervisor._platform), and the package on a simulated
Windows: imported, connected to a stand-in transport, and made to build a
task's requests, in a subprocess so that the simulation never leaks into
other tests.

The simulation: ``sys.platform = "win32"``, ``os.name = "nt"``; no ``fcntl``
(nor ``pwd``, ``grp``, ``termios``, ``tty``, ``pty``, ``resource``); no
``os.geteuid``/``getuid``/``mkfifo``/``pidfd_open``/``chown``/``sysconf`` and
no ``O_NONBLOCK``/``O_CLOEXEC``/``O_NOFOLLOW``/``O_DIRECTORY``; no
``signal.SIGKILL``/``SIGUSR1``/``SIGHUP``/``SIGWINCH``. The standard library
and third-party packages are imported first, on the real platform (on
Windows they load their Windows halves, which Linux does not have); then
every ``supervisor`` module is dropped and imported again under the
simulation. Paths stay POSIX paths: what is simulated is which attributes and
modules the library touches, not Windows path syntax. asyncio's proactor
pipe server is stood in for by unix sockets named after the pipes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from supervisor import _platform
from supervisor.spec._bundle import bundle_owner
from tests._containerd import REPO

# -- the platform choices -------------------------------------------------------------


def test_each_platform_has_its_defaults() -> None:
    linux, windows = _platform.detect("linux"), _platform.detect("win32")
    assert _platform.PLATFORM is _platform.detect()  # this interpreter's
    assert (linux.default_address, linux.default_runtime, linux.stdio) == (
        "/run/containerd/containerd.sock",
        "io.containerd.runc.v2",
        "fifo",
    )
    assert (windows.default_address, windows.default_runtime, windows.stdio) == (
        "\\\\.\\pipe\\containerd-containerd",
        "io.containerd.runhcs.v1",
        "named-pipe",
    )
    assert windows.is_windows and not linux.is_windows
    assert not windows.update_resources and linux.update_resources
    assert _platform.detect("freebsd14") == linux


def test_windows_state_dir_is_per_user_and_stable(tmp_path: Path) -> None:
    windows = _platform.detect("win32")
    local = str(tmp_path / "AppData" / "Local")
    assert _platform.default_state_dir(windows, {"LOCALAPPDATA": local}) == (
        Path(local) / "containerd-supervisor"
    )
    # Without LOCALAPPDATA: the per-user temporary directory, the same each run
    # (the exit ledger restore() reads lives there).
    first = _platform.default_state_dir(windows, {})
    assert (
        first == _platform.default_state_dir(windows, {}) and first.name == "containerd-supervisor"
    )


def test_linux_state_dir_as_before(tmp_path: Path) -> None:
    linux = _platform.detect("linux")
    got = _platform.default_state_dir(linux, {"XDG_RUNTIME_DIR": str(tmp_path)})
    if os.geteuid() == 0:
        assert got == Path("/run/containerd-supervisor")
    else:
        assert got == tmp_path / "containerd-supervisor"


USERNS_SPEC: dict[str, Any] = {
    "process": {"args": ["sh"]},
    "linux": {
        "namespaces": [{"type": "user"}],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 200000, "size": 65536}],
    },
}


def test_bundle_ownership_follows_a_user_namespace_on_linux_only() -> None:
    assert bundle_owner(USERNS_SPEC, _platform.detect("linux")) == (100000, 200000)
    assert bundle_owner(USERNS_SPEC, _platform.detect("win32")) is None


def test_spec_defaults_never_add_a_linux_section_on_windows() -> None:
    linux_spec: dict[str, Any] = {"process": {}}
    _platform.default_spec_section(linux_spec, "ns", "web", _platform.detect("linux"))
    assert linux_spec["linux"] == {"cgroupsPath": "/ns/web"}
    windows_spec: dict[str, Any] = {"process": {}, "windows": {"layerFolders": ["a", "b"]}}
    _platform.default_spec_section(windows_spec, "ns", "web", _platform.detect("win32"))
    assert "linux" not in windows_spec  # it would make hcsshim run a Linux container (LCOW)


def test_exec_defaults() -> None:
    assert _platform.default_process_fields(_platform.detect("linux")) == {
        "cwd": "/",
        "user": {"uid": 0, "gid": 0},
    }
    assert _platform.default_process_fields(_platform.detect("win32")) == {"cwd": "C:\\"}


def test_import_supervisor_leaves_the_named_pipe_module_unloaded() -> None:
    code = (
        "import sys, supervisor, supervisor.fifo\n"
        "assert 'supervisor.fifo._named_pipes' not in sys.modules\n"
        "from supervisor.fifo import NamedPipeSet\n"
        "assert NamedPipeSet.__module__ == 'supervisor.fifo._named_pipes'\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# -- the package on a simulated Windows ------------------------------------------------

_SIMULATION = textwrap.dedent(
    r"""
    import asyncio, importlib, importlib.abc, json, os, pathlib, signal, sys, traceback

    STATE = pathlib.Path(sys.argv[1])
    WANTED = [
        "supervisor", "supervisor.fifo", "supervisor.fifo._named_pipes",
        "supervisor._platform", "supervisor.stats._summary", "supervisor.backends.base",
        "supervisor.backends.runhcs", "supervisor.backends._hcs_messages",
        "supervisor.backends._decode_windows", "supervisor.backends._named_pipe",
        "supervisor.backends.containerd", "supervisor.daemon._windows",
    ]
    OTHERS = ["supervisor.daemon", "supervisor.cli"]

    # 1. Everything outside the package, loaded on the real platform.
    for name in WANTED + OTHERS:
        try:
            importlib.import_module(name)
        except Exception:
            pass
    import anyio._backends._asyncio  # noqa: F401  (anyio loads it lazily)

    # 2. Windows, as far as the package can tell.
    LINUX_ONLY = {"fcntl", "pwd", "grp", "termios", "tty", "pty", "resource"}
    for name in [m for m in sys.modules if m == "supervisor" or m.startswith("supervisor.")]:
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
    pathlib.WindowsPath = pathlib.PosixPath  # keep POSIX paths (see the test's docstring)
    for attr in ("O_NONBLOCK", "O_CLOEXEC", "O_NOFOLLOW", "O_DIRECTORY", "geteuid", "getuid",
                 "getgid", "getegid", "mkfifo", "pidfd_open", "chown", "fchown", "lchown",
                 "sysconf"):
        if hasattr(os, attr):
            delattr(os, attr)
    for attr in ("SIGKILL", "SIGUSR1", "SIGHUP", "SIGWINCH", "SIGQUIT"):
        if hasattr(signal, attr):
            delattr(signal, attr)

    out = {"imports": {}, "steps": {}, "requests": []}
    for name in WANTED + OTHERS:
        try:
            importlib.import_module(name)
            out["imports"][name] = "ok"
        except Exception as exc:
            out["imports"][name] = f"{type(exc).__name__}: {exc}"

    # 3. A stand-in containerd, and asyncio's proactor pipe server stood in for.
    import supervisor
    from supervisor import errors
    from supervisor._platform import PLATFORM
    from supervisor._types import ExitStatus
    from supervisor.backends import runhcs

    out["platform"] = PLATFORM.name

    class Stub:
        namespace = "win"

        def __init__(self):
            self.tasks = set()

        def record(self, call, **fields):
            out["requests"].append({"call": call, **fields})

        def bind(self, namespace):
            if namespace != self.namespace:
                raise errors.InvalidArgument(f"bound to {self.namespace}, not {namespace}")

        async def aclose(self):
            pass

        async def version(self):
            return "1.7.0"

        async def create_container(self, cid, spec, *, runtime, runtime_options, labels):
            self.record("create_container", id=cid, spec=spec, runtime=runtime,
                        runtime_options=runtime_options)

        async def create_task(self, cid, stdio):
            self.record("create_task", id=cid, stdin=stdio.stdin, stdout=stdio.stdout,
                        stderr=stdio.stderr, terminal=stdio.terminal)
            self.tasks.add(cid)
            return 4321

        async def exec(self, cid, eid, spec, stdio):
            self.record("exec", id=cid, exec_id=eid, spec=spec, stdin=stdio.stdin,
                        stdout=stdio.stdout, stderr=stdio.stderr, terminal=stdio.terminal)

        async def start(self, cid, eid):
            self.record("start", id=cid, exec_id=eid)
            return 4321

        async def update_resources(self, cid, resources):
            self.record("update_resources", id=cid)

        async def kill(self, cid, eid, sig, all):
            self.record("kill", id=cid, exec_id=eid, signal=sig, all=all)

        async def wait(self, cid, eid):
            return ExitStatus(1)

        async def delete_process(self, cid, eid):
            self.record("delete_process", id=cid, exec_id=eid)
            return ExitStatus(1)

        async def delete_task(self, cid):
            self.record("delete_task", id=cid)
            self.tasks.discard(cid)
            return ExitStatus(1)

        async def get_task(self, cid, eid=""):
            raise errors.NotFound("no task", container_id=cid)

        async def delete_container(self, cid):
            self.record("delete_container", id=cid)

    def socket_of(name):
        import hashlib
        return str(STATE / "pipes" / hashlib.sha1(name.encode()).hexdigest()[:16])

    async def start_serving_pipe(factory, name):
        server = await asyncio.get_running_loop().create_unix_server(factory, socket_of(name))
        return [server]

    async def step(name, work):
        try:
            out["steps"][name] = {"ok": True, "value": await work()}
        except Exception as exc:
            out["steps"][name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    async def main():
        loop = asyncio.get_running_loop()
        loop.start_serving_pipe = start_serving_pipe
        (STATE / "pipes").mkdir(parents=True)
        spec = runhcs.windows_spec(["cmd", "/c", "echo hi"], ["C:\\l\\base", "C:\\l\\web"])
        async with supervisor.connect(PLATFORM.default_address, namespace="win",
                                      transport=Stub(), state_dir=STATE / "state",
                                      events=False) as client:
            box = {}

            async def container():
                box["c"] = await client.new_container("web", spec)
                return str(box["c"].bundle_dir)

            async def task():
                box["t"] = await box["c"].new_task(stdin=True, terminal=False)
                await box["t"].start()
                shim_end = socket_of(box["t"]._fifos.stdout_path)
                _, writer = await asyncio.open_unix_connection(shim_end)
                writer.write(b"hello from the shim")
                await writer.drain()
                data = await box["t"].stdout.receive()
                writer.close()
                return data.decode()

            async def exec_():
                proc = await box["t"].exec("e1", ["cmd"], terminal=True)
                await proc.delete()

            async def update():
                await box["t"].update_resources({"memory": {"limit": 1 << 26}})

            async def delete():
                await box["t"].delete(force=True)

            async def container_delete():
                await box["c"].delete()

            await step("new_container", container)
            await step("new_task", task)
            await step("exec", exec_)
            await step("update_resources", update)
            await step("task_delete_force", delete)
            await step("container_delete", container_delete)

    try:
        asyncio.run(main())
    except Exception as exc:
        out["steps"]["close"] = {"ok": False, "error": "".join(traceback.format_exception(exc))}
    else:
        out["steps"]["close"] = {"ok": True, "value": None}
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    state = tmp_path_factory.mktemp("win")
    result = subprocess.run(
        [sys.executable, "-c", _SIMULATION, str(state)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


CORE = [
    "supervisor",
    "supervisor.fifo",
    "supervisor.fifo._named_pipes",
    "supervisor._platform",
    "supervisor.stats._summary",
    "supervisor.backends.base",
    "supervisor.backends.runhcs",
    "supervisor.backends._hcs_messages",
    "supervisor.backends._decode_windows",
    "supervisor.backends._named_pipe",
    "supervisor.backends.containerd",
]


def _calls(out: dict[str, Any], call: str) -> list[dict[str, Any]]:
    return [r for r in out["requests"] if r["call"] == call]


def test_the_core_imports_on_windows(simulated: dict[str, Any]) -> None:
    assert simulated["platform"] == "windows"
    assert {m: simulated["imports"][m] for m in CORE} == dict.fromkeys(CORE, "ok")


def test_a_task_on_windows_gets_served_named_pipes(simulated: dict[str, Any]) -> None:
    steps = simulated["steps"]
    for name in ("new_container", "new_task", "exec", "container_delete", "close"):
        assert steps[name]["ok"], steps[name]
    # The shim's side of stdout (a client of the served pipe) reached the task.
    assert steps["new_task"]["value"] == "hello from the shim"
    (task,) = _calls(simulated, "create_task")
    assert task["terminal"] is False
    prefix = "\\\\.\\pipe\\containerd-web-init."
    for stream in ("stdin", "stdout", "stderr"):
        assert task[stream].startswith(prefix) and task[stream].endswith(f"-{stream}")
    (ex,) = _calls(simulated, "exec")
    assert ex["terminal"] is True and ex["stdin"] == "" and ex["stderr"] == ""  # none with a tty
    assert ex["stdout"].startswith("\\\\.\\pipe\\containerd-web-exec.e1.")
    # The bundle directory is made, without any uid/gid.
    assert steps["new_container"]["value"].endswith("/state/win/web")


# What needs the lead's wiring (see the issue 14 report): strict, so that it
# fails the moment the wiring lands and the marker must go.


def test_windows_defaults_reach_the_requests(simulated: dict[str, Any]) -> None:
    (create,) = _calls(simulated, "create_container")
    assert create["runtime"] == "io.containerd.runhcs.v1"
    assert "linux" not in create["spec"]
    (ex,) = _calls(simulated, "exec")
    assert ex["spec"]["cwd"] == "C:\\" and "user" not in ex["spec"]
    steps = simulated["steps"]
    assert steps["update_resources"]["ok"] and not _calls(simulated, "update_resources")
    assert steps["task_delete_force"]["ok"], steps["task_delete_force"]
    assert [k["signal"] for k in _calls(simulated, "kill")] == [9]


# The daemon package (with its Windows parts) imports on Windows too.
def test_the_daemon_package_imports_on_windows(simulated: dict[str, Any]) -> None:
    for name in ("supervisor.daemon", "supervisor.daemon._windows"):
        assert simulated["imports"][name] == "ok", simulated["imports"][name]
