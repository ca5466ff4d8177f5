"""``supervisor run -it`` on a real pseudo-terminal, as a user at a terminal
sees it: raw mode while attached and the terminal restored afterwards,
nothing echoed twice, the command back as soon as the shell exits (no key
press needed), resizes followed, a 0x0 terminal tolerated."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import anyio
import pytest

from tests._containerd import REPO
from tests.integration.cli_runner import Cli, clean_env

pytestmark = pytest.mark.asyncio

# Generous: this is about "returns without a key press", not about speed.
_EXIT_BOUND = 10.0


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal:
    """A command on a pseudo-terminal of its own, as its controlling terminal
    (``setsid -c``), driven from the master side."""

    def __init__(self, argv: list[str], rows: int = 24, cols: int = 80) -> None:
        self.master, self.slave = os.openpty()
        set_size(self.slave, rows, cols)
        self.before = termios.tcgetattr(self.slave)
        self.output = b""
        self.proc = subprocess.Popen(
            ["setsid", "-c", *argv],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            cwd=REPO,
            env=clean_env(),
        )

    def read_until(self, needle: bytes, timeout: float = 30.0, start: int = 0) -> bytes:
        """Everything read so far once it holds ``needle`` at or after ``start``."""
        end = time.monotonic() + timeout
        while needle not in self.output[start:]:
            left = end - time.monotonic()
            assert left > 0, f"{needle!r} not seen; got {self.output!r}"
            ready, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if ready:
                try:
                    self.output += os.read(self.master, 4096)
                except OSError:  # EIO: every slave fd closed
                    break
        assert needle in self.output[start:], f"{needle!r} not seen; got {self.output!r}"
        return self.output

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def wait(self, timeout: float) -> int:
        """The command's exit code, reading (and keeping) its output meanwhile."""
        end = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < end, f"still running; output {self.output!r}"
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    self.output += os.read(self.master, 4096)
                except OSError:
                    pass
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


async def on_terminal(cli: Cli, *args: str, rows: int = 24, cols: int = 80) -> Terminal:
    return Terminal(cli.argv(*args), rows, cols)


def shell(cli: Cli, *flags: str) -> list[str]:
    return ["run", "--rootfs", cli.rootfs, "--rm", "-it", *flags, "--", "sh"]


async def test_exit_returns_at_once_with_the_code_and_restores_the_terminal(cli: Cli) -> None:
    term = await on_terminal(cli, *shell(cli))
    try:

        def session() -> tuple[int, float]:
            term.read_until(b"/ # ")
            term.type(b"echo mark''er\r")
            term.read_until(b"marker\r\n")
            term.read_until(b"/ # ")
            sent = time.monotonic()
            term.type(b"exit 7\r")  # and no key afterwards
            code = term.wait(_EXIT_BOUND)
            return code, time.monotonic() - sent

        code, _ = await anyio.to_thread.run_sync(session)
        assert code == 7
        # Echoed once, by the container's terminal; the host's (raw) echoed nothing.
        assert term.output.count(b"echo mark''er") == 1
        assert termios.tcgetattr(term.slave) == term.before
    finally:
        term.close()


async def test_raw_mode_while_attached(cli: Cli) -> None:
    term = await on_terminal(cli, *shell(cli))
    try:

        def session() -> list[int | list[bytes | int]]:
            term.read_until(b"/ # ")
            during = termios.tcgetattr(term.slave)
            term.type(b"exit\r")
            term.wait(_EXIT_BOUND)
            return during

        during = await anyio.to_thread.run_sync(session)
        lflag = during[3]
        assert isinstance(lflag, int)
        assert not lflag & (termios.ECHO | termios.ICANON | termios.ISIG)
        assert termios.tcgetattr(term.slave) == term.before
    finally:
        term.close()


async def test_terminal_restored_when_a_signal_ends_it(cli: Cli) -> None:
    script = 'trap "exit 5" HUP; echo ready; while :; do sleep 0.1; done'
    args = ["run", "--rootfs", cli.rootfs, "--rm", "-it", "--", "sh", "-c", script]
    term = await on_terminal(cli, *args)
    try:

        def session() -> int:
            term.read_until(b"ready")
            # Forwarded to the container (its pid 1 heeds only what it traps).
            term.proc.send_signal(signal.SIGHUP)
            return term.wait(_EXIT_BOUND)

        code = await anyio.to_thread.run_sync(session)
        assert code == 5
        assert termios.tcgetattr(term.slave) == term.before
    finally:
        term.close()


async def test_terminal_restored_when_the_command_is_missing(cli: Cli) -> None:
    args = ["run", "--rootfs", cli.rootfs, "--rm", "-it", "--", "no-such-command"]
    term = await on_terminal(cli, *args)
    try:
        code = await anyio.to_thread.run_sync(lambda: term.wait(60))
        assert code == 127
        assert b"not found" in term.output
        assert termios.tcgetattr(term.slave) == term.before
    finally:
        term.close()


async def test_resize_follows_the_terminal(cli: Cli) -> None:
    term = await on_terminal(cli, *shell(cli), rows=30, cols=100)
    try:

        def session() -> int:
            term.read_until(b"/ # ")
            term.type(b"stty size\r")
            term.read_until(b"30 100\r\n")
            # The kernel sends SIGWINCH to the terminal's foreground group: us.
            set_size(term.slave, 40, 120)
            end = time.monotonic() + 30
            while b"40 120\r\n" not in term.output:
                assert time.monotonic() < end, term.output
                mark = len(term.output)
                term.type(b"stty size\r")
                term.read_until(b"/ # ", start=mark)
            term.type(b"exit 0\r")
            return term.wait(_EXIT_BOUND)

        assert await anyio.to_thread.run_sync(session) == 0
    finally:
        term.close()


async def test_a_zero_size_terminal_is_ignored(cli: Cli) -> None:
    args = ["run", "--rootfs", cli.rootfs, "--rm", "-it", "--", "sh", "-c", "echo fine"]
    term = await on_terminal(cli, *args, rows=0, cols=0)
    try:
        code = await anyio.to_thread.run_sync(lambda: term.wait(60))
        assert code == 0, term.output
        assert b"fine" in term.output and b"terminal size" not in term.output
    finally:
        term.close()


async def test_tty_with_input_that_is_not_a_terminal_is_refused(cli: Cli) -> None:
    code, out, err = await cli(
        "run", "--rootfs", cli.rootfs, "--rm", "-it", "--", "cat", input=b"hi\n"
    )
    assert (code, out) == (125, "")
    assert err == "supervisor: the input device is not a TTY\n"
    assert await cli.ps() == []
    # As docker: -t alone (no stdin wanted) works without a terminal here.
    code, out, err = await cli("run", "--rootfs", cli.rootfs, "--rm", "-t", "--", "echo", "hi")
    assert (code, out) == (0, "hi\r\n"), err


async def test_stdin_from_a_file_or_dev_null(cli: Cli, tmp_path: Path) -> None:
    """Files and /dev/null cannot be polled: they are read another way, to the end."""
    data = tmp_path / "input"
    data.write_bytes(b"a\nb\nc\n")
    argv = cli.argv("run", "--rootfs", cli.rootfs, "--rm", "-i", "--", "wc", "-l")
    for source, expected in ((str(data), b"3"), (os.devnull, b"0")):
        with open(source, "rb") as stdin, anyio.fail_after(60):
            done = await anyio.run_process(
                argv, stdin=stdin, check=False, cwd=REPO, env=clean_env()
            )
        assert (done.returncode, done.stdout.strip()) == (0, expected), done.stderr
