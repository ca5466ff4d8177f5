"""The embedded containerd's Windows pieces, run on Linux through their seams:
a stand-in for kernel32 (process handles), for the subprocess start, and for
``msvcrt.locking``. What they cannot show is Windows' own behaviour behind
those calls (see docs/windows.md)."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor import errors
from supervisor.daemon import _windows as win
from supervisor.daemon._windows_files import WindowsStateLock
from supervisor.daemon._windows_kernel32 import Kernel32Control

BINARY = "/opt/containerd/bin/containerd.exe"


@dataclass
class Proc:
    pid: int
    created: int
    image: str = BINARY
    code: int | None = None
    foreign: bool = False  # another user's: OpenProcess is denied
    console: bool = True  # shares our console: CTRL_BREAK reaches it
    gone: anyio.Event = field(default_factory=anyio.Event)

    def exit(self, code: int) -> None:
        if self.code is None:
            self.code = code
            self.gone.set()


class FakeKernel32:
    """A process table behind the ProcessControl seam."""

    def __init__(self) -> None:
        self.procs: dict[int, Proc] = {}
        self.handles: dict[int, int] = {}
        self.next_handle = 100
        self.terminated: list[tuple[int, int]] = []
        self.breaks: list[int] = []
        self.events: list[str] = []
        self.known_events: set[str] = set()

    def add(self, pid: int, created: int, **kw: Any) -> Proc:
        proc = Proc(pid, created, **kw)
        self.procs[pid] = proc
        return proc

    def open(self, pid: int) -> int | None:
        proc = self.procs.get(pid)
        if proc is None:
            return None
        if proc.foreign:
            raise PermissionError(5, "Access is denied")
        self.next_handle += 4
        self.handles[self.next_handle] = pid
        return self.next_handle

    def _proc(self, handle: int) -> Proc:
        return self.procs[self.handles[handle]]

    def close(self, handle: int) -> None:
        del self.handles[handle]

    def exit_code(self, handle: int) -> int | None:
        return self._proc(handle).code

    def creation_time(self, handle: int) -> int:
        return self._proc(handle).created

    def image_path(self, handle: int) -> str:
        return self._proc(handle).image

    def terminate(self, handle: int, code: int) -> None:
        proc = self._proc(handle)
        if proc.code is not None:
            raise PermissionError(5, "Access is denied")
        self.terminated.append((proc.pid, code))
        proc.exit(code)

    def ctrl_break(self, pid: int) -> bool:
        self.breaks.append(pid)
        proc = self.procs[pid]
        if not proc.console:
            return False
        proc.exit(0xC000013A)  # what a console control event exits with
        return True

    def set_event(self, name: str) -> bool:
        self.events.append(name)
        return name in self.known_events


class FakeProcess:
    """What asyncio.create_subprocess_exec returns, for one Proc."""

    def __init__(self, proc: Proc) -> None:
        self._proc = proc
        self.pid = proc.pid
        self.killed = 0

    @property
    def returncode(self) -> int | None:
        return self._proc.code

    async def wait(self) -> int:
        await self._proc.gone.wait()
        assert self._proc.code is not None
        return self._proc.code

    def kill(self) -> None:
        self.killed += 1
        self._proc.exit(1)


class Starter:
    def __init__(self, k32: FakeKernel32, *, error: BaseException | None = None) -> None:
        self.k32 = k32
        self.error = error
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.process: FakeProcess | None = None

    async def __call__(self, *args: Any, **kwargs: Any) -> FakeProcess:
        self.calls.append((args, kwargs))
        os.write(kwargs["stdout"], b"containerd starting\n")
        if self.error is not None:
            raise self.error
        self.process = FakeProcess(self.k32.add(4000 + len(self.calls), created=133_000_000_000))
        return self.process


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# -- addresses ------------------------------------------------------------------------


def test_the_pipe_is_the_same_for_a_directory_and_differs_between_them(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    digest = hashlib.sha256(str(a).encode()).hexdigest()[:16]
    assert win.pipe_address(a) == f"\\\\.\\pipe\\containerd-supervisor-{digest}"
    assert win.pipe_address(a) == win.pipe_address(Path(str(a)))
    assert win.pipe_address(a) != win.pipe_address(b)
    assert win.debug_pipe_address(a) == win.pipe_address(a) + "-debug"


# -- one supervisor per state directory -------------------------------------------------


class Locks:
    """msvcrt.locking's non-blocking byte-range lock, per file and handle."""

    def __init__(self) -> None:
        self.held: dict[int, int] = {}  # inode -> fd holding it
        self.calls: list[tuple[int, int]] = []

    def __call__(self, fd: int, mode: int, nbytes: int) -> None:
        assert nbytes == 1 and os.lseek(fd, 0, os.SEEK_CUR) == 0
        self.calls.append((fd, mode))
        inode = os.fstat(fd).st_ino
        if mode == 2:  # LK_NBLCK
            if inode in self.held:
                raise PermissionError(13, "Permission denied")
            self.held[inode] = fd
        elif mode == 0:  # LK_UNLCK
            assert self.held.pop(inode) == fd
        else:
            raise AssertionError(f"mode {mode}")


def test_a_second_supervisor_is_refused_until_the_first_lets_go(tmp_path: Path) -> None:
    locks = Locks()
    path = tmp_path / "supervisor.lock"
    fds = _fds()
    first, second = (
        WindowsStateLock(path, locking=locks),
        WindowsStateLock(path, locking=locks),
    )
    first.acquire()
    assert first.held
    with pytest.raises(errors.FailedPrecondition, match="another supervisor"):
        second.acquire()
    assert not second.held and len(_fds() - fds) == 1  # the refused one closed its handle
    with pytest.raises(errors.FailedPrecondition, match="held already"):
        first.acquire()
    first.release()
    first.release()  # idempotent
    second.acquire()
    second.release()
    assert _fds() == fds and locks.held == {}


def test_a_lock_file_that_is_a_link_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "supervisor.lock").symlink_to(target)
    lock = WindowsStateLock(tmp_path / "supervisor.lock", locking=Locks())
    with pytest.raises(errors.FailedPrecondition, match="link"):
        lock.acquire()


# -- spawning -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_spawn_starts_a_process_group_and_records_pid_and_creation_time(
    tmp_path: Path,
) -> None:
    k32 = FakeKernel32()
    start = Starter(k32)
    log, pid_file, config = tmp_path / "containerd.log", tmp_path / "containerd.pid", tmp_path / "c"
    log.write_bytes(b"earlier run\n")
    fds = _fds()
    child = await win.spawn(
        BINARY, config, log, pid_file, kill_within=1, poll=0.01, control=k32, start=start
    )
    ((args, kwargs),) = start.calls
    assert args == (BINARY, "--config", str(config))
    assert kwargs["creationflags"] == win.CREATE_NEW_PROCESS_GROUP
    assert kwargs["stdout"] == kwargs["stderr"]
    assert log.read_bytes() == b"earlier run\ncontainerd starting\n"  # appended
    assert pid_file.read_text() == f"{child.pid} 133000000000\n"
    assert not child.adopted and child.returncode is None
    assert len(k32.handles) == 1
    # ... and the next supervisor finds it again.
    again = win.adopt(pid_file, BINARY, config, poll=0.01, control=k32)
    assert again is not None and again.pid == child.pid
    again.close()
    child.close()
    assert k32.handles == {} and _fds() == fds


@pytest.mark.asyncio
async def test_spawn_of_a_missing_binary_is_invalid_and_leaks_nothing(tmp_path: Path) -> None:
    k32 = FakeKernel32()
    start = Starter(k32, error=FileNotFoundError(2, "The system cannot find the file specified"))
    fds = _fds()
    with pytest.raises(errors.InvalidArgument, match="not found"):
        await win.spawn(
            BINARY,
            tmp_path / "c",
            tmp_path / "log",
            tmp_path / "pid",
            kill_within=1,
            poll=0.01,
            control=k32,
            start=start,
        )
    assert _fds() == fds and not (tmp_path / "pid").exists()


@pytest.mark.asyncio
async def test_a_child_whose_pid_file_cannot_be_written_is_killed(tmp_path: Path) -> None:
    k32 = FakeKernel32()
    start = Starter(k32)
    pid_file = tmp_path / "containerd.pid"
    pid_file.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(errors.FailedPrecondition, match="link"):
        await win.spawn(
            BINARY,
            tmp_path / "c",
            tmp_path / "log",
            pid_file,
            kill_within=1,
            poll=0.01,
            control=k32,
            start=start,
        )
    assert start.process is not None and start.process.killed == 1
    assert k32.handles == {}  # the handle was let go
    assert not (tmp_path / "elsewhere").exists()


# -- adopting ---------------------------------------------------------------------------------


def _adopt(tmp_path: Path, k32: FakeKernel32, text: str | None) -> win.WindowsChild | None:
    pid_file = tmp_path / "containerd.pid"
    if text is not None:
        pid_file.write_text(text)
    return win.adopt(pid_file, BINARY, tmp_path / "c", poll=0.01, control=k32)


@pytest.mark.parametrize(
    ("text", "setup", "reason"),
    [
        ("", None, "holds no pid"),
        ("4242\n", None, "holds no pid"),  # a Linux-style pid file
        ("x y\n", None, "holds no pid"),
        ("4242 1\n", None, "gone"),
        ("4242 1\n", {"created": 2}, "another process"),  # the pid was reused
        ("4242 1\n", {"created": 1, "code": 0}, "gone"),
        ("4242 1\n", {"created": 1, "image": "C:\\Windows\\notepad.exe"}, "executable"),
        ("4242 1\n", {"created": 1, "foreign": True}, "not ours"),
    ],
)
def test_a_stale_pid_file_is_removed_and_its_process_left_alone(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    text: str,
    setup: dict[str, Any] | None,
    reason: str,
) -> None:
    k32 = FakeKernel32()
    proc = k32.add(4242, **setup) if setup is not None else None
    with caplog.at_level(logging.INFO, logger="supervisor"):
        assert _adopt(tmp_path, k32, text) is None
    assert not (tmp_path / "containerd.pid").exists()
    assert k32.handles == {} and k32.terminated == [] and k32.breaks == []
    if proc is not None:
        assert proc.code == setup.get("code") if setup else True
    (record,) = [r for r in caplog.records if r.event == "daemon.stale_pid_file"]  # type: ignore[attr-defined]
    assert reason in record.fields["reason"]  # type: ignore[attr-defined]


def test_no_pid_file_is_nothing_to_adopt(tmp_path: Path) -> None:
    assert _adopt(tmp_path, FakeKernel32(), None) is None


def test_a_pid_file_that_is_a_link_is_stale_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("4242 1\n")
    (tmp_path / "containerd.pid").symlink_to(target)
    k32 = FakeKernel32()
    k32.add(4242, created=1)
    assert _adopt(tmp_path, k32, None) is None
    assert not (tmp_path / "containerd.pid").is_symlink() and target.read_text() == "4242 1\n"


# -- watching, stopping, killing --------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_adopted_containerd_is_polled_until_it_exits(tmp_path: Path) -> None:
    k32 = FakeKernel32()
    proc = k32.add(4242, created=1)
    child = _adopt(tmp_path, k32, "4242 1\n")
    assert child is not None and child.adopted
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(child.watch)
            await anyio.sleep(0.05)
            assert not child.exited.is_set()  # still running: still watched
            proc.exit(3)
            await child.exited.wait()
    assert child.returncode == 3
    child.close()
    child.close()
    assert k32.handles == {}


@pytest.mark.asyncio
async def test_stop_asks_with_ctrl_break_and_kill_terminates(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    k32 = FakeKernel32()
    polite = k32.add(4242, created=1)
    child = _adopt(tmp_path, k32, "4242 1\n")
    assert child is not None
    child.terminate()
    assert k32.breaks == [4242] and await child.wait_gone(1)
    assert polite.code == 0xC000013A and k32.terminated == []
    child.close()

    # No shared console: the request fails, is logged, and the stop timeout
    # ends in TerminateProcess.
    deaf = k32.add(4343, created=2, console=False)
    child = _adopt(tmp_path, k32, "4343 2\n")
    assert child is not None
    with caplog.at_level(logging.WARNING, logger="supervisor"):
        child.terminate()
    assert [r.event for r in caplog.records] == ["daemon.stop_request_failed"]  # type: ignore[attr-defined]
    assert not await child.wait_gone(0.05)
    assert await child.kill(1)
    assert k32.terminated == [(4343, 137)] and deaf.code == 137
    assert await child.kill(1)  # gone already: nothing more is sent
    assert k32.terminated == [(4343, 137)]
    child.close()


@pytest.mark.asyncio
async def test_a_hung_containerd_is_asked_for_its_stacks_through_its_event(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    k32 = FakeKernel32()
    k32.add(4242, created=1)
    k32.known_events.add("Global\\stackdump-4242")
    child = _adopt(tmp_path, k32, "4242 1\n")
    assert child is not None
    with caplog.at_level(logging.WARNING, logger="supervisor"):
        child.dump_stacks()
        assert k32.events == ["Global\\stackdump-4242"] and not caplog.records
        k32.known_events.clear()  # not an administrator: the event cannot be opened
        child.dump_stacks()
    assert [r.event for r in caplog.records] == ["daemon.stack_dump_unavailable"]  # type: ignore[attr-defined]
    child.close()


@pytest.mark.asyncio
async def test_our_own_child_is_waited_for_and_killed_through_asyncio(tmp_path: Path) -> None:
    k32 = FakeKernel32()
    start = Starter(k32)
    child = await win.spawn(
        BINARY,
        tmp_path / "c",
        tmp_path / "log",
        tmp_path / "pid",
        kill_within=1,
        poll=0.01,
        control=k32,
        start=start,
    )
    assert start.process is not None
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(child.watch)
            assert await child.kill(1)
            await child.exited.wait()
    assert start.process.killed == 1 and k32.terminated == []
    assert child.returncode == 1
    child.close()


def test_kernel32_is_only_there_on_windows() -> None:
    with pytest.raises(errors.FailedPrecondition, match="Windows"):
        Kernel32Control()
