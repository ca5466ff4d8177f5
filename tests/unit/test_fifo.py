"""stdio FIFOs without containerd: we play the shim's part with plain os.open.

Every test checks /proc/self/fd before and after, since "never leaked on an
error path" is the point of FifoSet.
"""

from __future__ import annotations

import errno
import gc
import os
import resource
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from supervisor import errors
from supervisor.domain._create import stdio_paths
from supervisor.fifo import FdReceiveStream, FdSendStream, FifoSet
from supervisor.spec._bundle import bundle_path

DEADLINE = 5.0
NB = os.O_NONBLOCK | os.O_CLOEXEC


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@contextmanager
def no_fd_leak() -> Iterator[None]:
    gc.collect()  # a stray unreachable object closing an fd later would skew the count
    before = _fds()
    yield
    gc.collect()
    leaked = _fds() - before
    assert not leaked, {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in leaked}


def _mode(path: Path | str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _is_fifo(path: Path | str) -> bool:
    return stat.S_ISFIFO(os.lstat(path).st_mode)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _shim_writer(path: str) -> int:
    # Succeeds at once only because our read end is already open.
    return os.open(path, os.O_WRONLY | NB)


# -- creation, naming, removal ------------------------------------------------


def test_create_makes_private_dirs_and_fifos_named_after_the_process(tmp_path: Path) -> None:
    bundle = bundle_path(tmp_path / "state", "ns", "web-1", None)
    with no_fd_leak():
        fifos = FifoSet.create(bundle, "init", stdin=True, terminal=False)
        try:
            # Every level create() made is 0700: other users must not be able
            # to open a container's stdio.
            for d in (tmp_path / "state", tmp_path / "state" / "ns", bundle):
                assert d.is_dir() and _mode(d) == 0o700, d
            assert fifos.stdin_path == str(bundle / "init-stdin")
            assert fifos.stdout_path == str(bundle / "init-stdout")
            assert fifos.stderr_path == str(bundle / "init-stderr")
            assert sorted(os.listdir(bundle)) == ["init-stderr", "init-stdin", "init-stdout"]
            for p in (fifos.stdin_path, fifos.stdout_path, fifos.stderr_path):
                assert _is_fifo(p) and _mode(p) == 0o600, p
            assert isinstance(fifos.stdin, FdSendStream)
            assert isinstance(fifos.stdout, FdReceiveStream)
            assert isinstance(fifos.stderr, FdReceiveStream)
            # What containerd is told is exactly these files.
            paths = stdio_paths(fifos)
            assert (paths.stdin, paths.stdout, paths.stderr, paths.terminal) == (
                str(bundle / "init-stdin"),
                str(bundle / "init-stdout"),
                str(bundle / "init-stderr"),
                False,
            )
        finally:
            fifos.remove()
    # Removal takes the levels it made with it, and nothing above them.
    assert _tree(tmp_path) == []
    assert tmp_path.is_dir()


def test_terminal_has_no_stderr_and_stdin_only_when_asked(tmp_path: Path) -> None:
    with no_fd_leak(), FifoSet.create(tmp_path, "exec.sh-1", stdin=False, terminal=True) as fifos:
        assert os.listdir(tmp_path) == ["exec.sh-1-stdout"]
        assert fifos.stdin is None and fifos.stdin_path is None
        assert fifos.stderr is None and fifos.stderr_path is None
        paths = stdio_paths(fifos)
        assert (paths.stdin, paths.stderr, paths.terminal) == ("", "", True)
    assert os.listdir(tmp_path) == []


def test_processes_of_one_container_do_not_collide(tmp_path: Path) -> None:
    # init and execs share the bundle directory; the name keeps them apart and
    # removing one process's set leaves the others alone.
    bundle = tmp_path / "bundle"
    bundle.mkdir(mode=0o755)
    with no_fd_leak():
        init = FifoSet.create(bundle, "init", stdin=False, terminal=False)
        ex = FifoSet.create(bundle, "exec.e1", stdin=True, terminal=False)
        assert sorted(os.listdir(bundle)) == [
            "exec.e1-stderr",
            "exec.e1-stdin",
            "exec.e1-stdout",
            "init-stderr",
            "init-stdout",
        ]
        ex.remove()
        assert sorted(os.listdir(bundle)) == ["init-stderr", "init-stdout"]
        init.remove()
    # A directory create() did not make outlives the process, untouched.
    assert bundle.is_dir() and os.listdir(bundle) == []
    assert _mode(bundle) == 0o755


def test_remove_is_idempotent_and_closes_every_fd(tmp_path: Path) -> None:
    with no_fd_leak():
        fifos = FifoSet.create(tmp_path / "b", "init", stdin=True, terminal=False)
        streams = [fifos.stdin, fifos.stdout, fifos.stderr]
        fifos.remove()
        fifos.remove()
        fifos.close()
        assert [s.fileno for s in streams if s is not None] == [-1, -1, -1]
    assert _tree(tmp_path) == []


def test_leaving_with_on_an_error_removes_everything(tmp_path: Path) -> None:
    with no_fd_leak(), pytest.raises(ZeroDivisionError):
        with FifoSet.create(tmp_path / "b", "init", stdin=True, terminal=False):
            1 / 0  # noqa: B018
    assert _tree(tmp_path) == []


def test_leftover_fifo_of_a_crashed_run_is_replaced(tmp_path: Path) -> None:
    old = tmp_path / "init-stdout"
    os.mkfifo(old)
    os.chmod(old, 0o644)  # chmod, not mkfifo's mode: the umask must not blur it
    with no_fd_leak(), FifoSet.create(tmp_path, "init", stdin=False, terminal=True) as fifos:
        assert fifos.stdout_path == str(old)
        # A fresh FIFO (create never chmods, so the mode tells them apart).
        assert _is_fifo(old) and _mode(old) == 0o600
    assert os.listdir(tmp_path) == []


def test_a_file_that_is_not_a_fifo_is_left_alone_and_nothing_else_stays(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "init-stderr").write_text("not ours")
    with no_fd_leak(), pytest.raises(errors.AlreadyExists):
        FifoSet.create(bundle, "init", stdin=True, terminal=False)
    # stdin and stdout were made before stderr failed: both gone again.
    assert os.listdir(bundle) == ["init-stderr"]
    assert (bundle / "init-stderr").read_text() == "not ours"


def test_directory_that_cannot_be_made_is_mapped_by_errno(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with no_fd_leak(), pytest.raises(errors.NotFound, match="cannot make stdio FIFOs"):
        FifoSet.create(tmp_path / "file" / "bundle", "init", stdin=False, terminal=False)
    assert _tree(tmp_path) == ["file"]


def test_fifo_that_cannot_be_made_removes_the_dirs_made(tmp_path: Path) -> None:
    with no_fd_leak(), pytest.raises(errors.InvalidArgument):
        FifoSet.create(tmp_path / "a" / "b", "x" * 300, stdin=False, terminal=False)
    assert _tree(tmp_path) == []


def test_mkdir_failing_midway_removes_the_levels_already_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "Nothing is left behind" also when the disk fills up between two levels.
    real_mkdir = Path.mkdir

    def mkdir(self: Path, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        if self.name == "b":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        real_mkdir(self, mode, parents, exist_ok)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(errors.Unavailable):
        FifoSet.create(tmp_path / "a" / "b", "init", stdin=False, terminal=False)
    assert _tree(tmp_path) == []


def _free_fd_numbers(count: int) -> list[int]:
    free: list[int] = []
    n = 0
    while len(free) < count:
        try:
            os.fstat(n)
        except OSError:
            free.append(n)
        n += 1
    return free


# create()'s os.open calls, in order: [stdin,] stdout read end, its keep-alive
# writer, stderr read end, its keep-alive writer.  ``free_slots`` lets exactly
# that many succeed, so the next one meets a real EMFILE.
_EMFILE_CASES = [(False, n) for n in range(4)] + [(True, n) for n in range(5)]


@pytest.mark.parametrize(
    ("stdin", "free_slots"),
    _EMFILE_CASES,
    ids=[f"{'stdin' if s else 'no-stdin'}-fails-open-{n + 1}" for s, n in _EMFILE_CASES],
)
def test_running_out_of_fds_leaks_none(tmp_path: Path, stdin: bool, free_slots: int) -> None:
    # Each must fail cleanly, closing whatever the earlier calls opened.
    with no_fd_leak():
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # The lowest free numbers are handed out first, so a limit just above
        # the (free_slots)th free number leaves exactly free_slots usable.
        limit = _free_fd_numbers(free_slots + 1)[-1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        try:
            with pytest.raises(errors.Unavailable) as info:
                FifoSet.create(tmp_path / "b", "init", stdin=stdin, terminal=False)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert isinstance(info.value.__cause__, OSError)
        assert info.value.__cause__.errno == errno.EMFILE
    assert _tree(tmp_path) == []


# -- the streams ------------------------------------------------------------


@pytest.mark.asyncio
async def test_stdout_reads_without_blocking_and_ends_after_started(tmp_path: Path) -> None:
    with no_fd_leak(), anyio.fail_after(DEADLINE):
        with FifoSet.create(tmp_path, "init", stdin=False, terminal=False) as fifos:
            # A blocking fd would stall the whole loop in os.read (and hang
            # this test past fail_after), so check that first.
            assert not os.get_blocking(fifos.stdout.fileno)
            assert fifos.stderr is not None and not os.get_blocking(fifos.stderr.fileno)
            shim_out = _shim_writer(fifos.stdout_path)
            assert fifos.stderr_path is not None
            shim_err = _shim_writer(fifos.stderr_path)
            try:
                got: list[bytes] = []
                ticks = 0

                async def reader() -> None:
                    got.append(await fifos.stdout.receive())

                async with anyio.create_task_group() as tg:
                    tg.start_soon(reader)
                    # The reader is parked on an empty FIFO; the loop goes on.
                    for _ in range(20):
                        await anyio.lowlevel.checkpoint()
                        ticks += 1
                    assert got == [] and ticks == 20
                    os.write(shim_out, b"hello")
                assert got == [b"hello"]

                os.write(shim_err, b"oops")
                assert await fifos.stderr.receive() == b"oops"

                # Before started(), our keep-alive writer means a writer that
                # comes and goes (an exec's, before its Start) is no EOF.
                os.close(os.open(fifos.stdout_path, os.O_WRONLY | NB))
                with anyio.move_on_after(0.05) as scope:
                    await fifos.stdout.receive()
                assert scope.cancelled_caught

                fifos.started()
                os.write(shim_out, b"last")
                os.close(shim_out)
                shim_out = -1
                assert await fifos.stdout.receive() == b"last"
                with pytest.raises(anyio.EndOfStream):
                    await fifos.stdout.receive()
                os.close(shim_err)
                shim_err = -1
                with pytest.raises(anyio.EndOfStream):
                    await fifos.stderr.receive()
            finally:
                for fd in (shim_out, shim_err):
                    if fd >= 0:
                        os.close(fd)


@pytest.mark.asyncio
async def test_stdin_takes_writes_before_the_shim_attaches(tmp_path: Path) -> None:
    with no_fd_leak(), anyio.fail_after(DEADLINE):
        with FifoSet.create(tmp_path, "init", stdin=True, terminal=True) as fifos:
            assert fifos.stdin is not None and fifos.stdin_path is not None
            assert not os.get_blocking(fifos.stdin.fileno)
            await fifos.stdin.send(b"early input\n")  # nobody reads yet
            shim_in = FdReceiveStream(os.open(fifos.stdin_path, os.O_RDONLY | NB))
            try:
                assert await shim_in.receive() == b"early input\n"
            finally:
                await shim_in.aclose()


@pytest.mark.asyncio
async def test_stdin_large_write_flows_and_close_gives_eof(tmp_path: Path) -> None:
    # Far more than a pipe buffer: send() has to park in wait_writable and
    # resume as the reader drains, all on one loop.
    payload = os.urandom(1 << 20)
    with no_fd_leak(), anyio.fail_after(DEADLINE):
        with FifoSet.create(tmp_path, "init", stdin=True, terminal=True) as fifos:
            assert fifos.stdin is not None and fifos.stdin_path is not None
            shim_in = FdReceiveStream(os.open(fifos.stdin_path, os.O_RDONLY | NB))
            fd_before = fifos.stdin.fileno
            fifos.started()  # now a pure writer: closing it is the reader's EOF
            assert fifos.stdin.fileno == fd_before  # swapped in place
            assert os.readlink(f"/proc/self/fd/{fd_before}").endswith("init-stdin")
            received = bytearray()

            async def read_all() -> None:
                while True:
                    try:
                        received.extend(await shim_in.receive())
                    except anyio.EndOfStream:
                        return

            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(read_all)
                    await fifos.stdin.send(payload)
                    await fifos.stdin.aclose()
            finally:
                await shim_in.aclose()
            assert bytes(received) == payload


@pytest.mark.asyncio
async def test_stdin_reports_a_gone_reader_after_started(tmp_path: Path) -> None:
    with no_fd_leak(), anyio.fail_after(DEADLINE):
        with FifoSet.create(tmp_path, "init", stdin=True, terminal=True) as fifos:
            assert fifos.stdin is not None and fifos.stdin_path is not None
            shim_in = os.open(fifos.stdin_path, os.O_RDONLY | NB)
            fifos.started()
            os.close(shim_in)  # the process exited
            # Were we still a reader too (O_RDWR), this would fill the pipe and
            # then wait forever instead.
            with pytest.raises(anyio.BrokenResourceError):
                await fifos.stdin.send(b"x" * 1024)


@pytest.mark.asyncio
async def test_closing_wakes_a_parked_receive(tmp_path: Path) -> None:
    with no_fd_leak(), anyio.fail_after(DEADLINE):
        with FifoSet.create(tmp_path, "init", stdin=True, terminal=False) as fifos:
            outcome: list[type[BaseException]] = []
            parked = anyio.Event()

            async def reader() -> None:
                parked.set()
                try:
                    await fifos.stdout.receive()
                except BaseException as exc:
                    outcome.append(type(exc))
                    raise

            with pytest.raises(BaseExceptionGroup) as info:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(reader)
                    await parked.wait()
                    await anyio.sleep(0.01)  # inside wait_readable by now
                    fifos.close()
            assert info.group_contains(anyio.ClosedResourceError)
            assert outcome == [anyio.ClosedResourceError]
            # Closed for good: no call may touch the old fd number again.
            with pytest.raises(anyio.ClosedResourceError):
                await fifos.stdout.receive()
            assert fifos.stdin is not None
            with pytest.raises(anyio.ClosedResourceError):
                await fifos.stdin.send(b"x")


# -- platforms ------------------------------------------------------------------


def test_without_fifos_create_refuses_and_makes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Windows' os has no mkfifo: the FIFO set must say so, not fail midway.
    monkeypatch.delattr(os, "mkfifo")
    with no_fd_leak(), pytest.raises(errors.FailedPrecondition, match="POSIX"):
        FifoSet.create(tmp_path / "b", "init", stdin=True, terminal=False)
    assert not (tmp_path / "b").exists()


@pytest.mark.asyncio
async def test_open_stdio_builds_what_the_platform_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisor import _platform
    from supervisor.fifo import open_stdio

    monkeypatch.setattr(_platform, "PLATFORM", _platform.detect("linux"))
    with no_fd_leak():
        stdio = await open_stdio(tmp_path / "b", "init.0123abcd", stdin=False, terminal=False)
        assert isinstance(stdio, FifoSet) and _is_fifo(stdio.stdout_path)
        stdio.remove()
    monkeypatch.setattr(_platform, "PLATFORM", _platform.detect("win32"))
    # Named pipes, served through asyncio's proactor loop, which Linux lacks:
    # reaching that refusal shows the Windows branch was taken.
    with pytest.raises(errors.FailedPrecondition, match="proactor"):
        await open_stdio(tmp_path / "b", "init.0123abcd", stdin=False, terminal=False)
    assert not (tmp_path / "b").exists()
