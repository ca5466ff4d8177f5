"""``client.run(..., timeout=)`` against the real containerd: the error
carries the output gathered so far (as ``subprocess.TimeoutExpired``), and
the process is stopped with a grace period before the container goes."""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest

import supervisor
from supervisor import errors

pytestmark = pytest.mark.asyncio

# The trap first: a SIGTERM that came before it would be dropped (PID 1 gets
# no signal it has no handler for), and only SIGKILL after the grace would end it.
GRACEFUL = "trap 'echo bye; echo bye-err >&2; exit 3' TERM; echo out-1; echo err-1 >&2; "
LOOP = "while :; do sleep 0.1; done"


async def test_timeout_carries_the_output_and_stops_with_grace(
    client: supervisor.Client, rootfs: str
) -> None:
    spec = supervisor.default_spec(["sh", "-c", GRACEFUL + LOOP], rootfs)
    with anyio.fail_after(60), pytest.raises(errors.DeadlineExceeded) as caught:
        await client.run("grace", spec, timeout=2, stop_timeout=30)
    error = caught.value
    # What the trap wrote while it stopped is there too: the grace was given.
    assert error.stdout == b"out-1\nbye\n"
    assert error.stderr == b"err-1\nbye-err\n"
    assert "exit code 3" in str(error)
    assert await client.containers() == []


async def test_timeout_then_sigkill_after_the_grace(client: supervisor.Client, rootfs: str) -> None:
    script = "trap '' TERM; echo out-1; echo err-1 >&2; " + LOOP
    spec = supervisor.default_spec(["sh", "-c", script], rootfs)
    with anyio.fail_after(60), pytest.raises(errors.DeadlineExceeded) as caught:
        await client.run("ignores", spec, timeout=2, stop_timeout=0.1)
    assert caught.value.stdout == b"out-1\n"
    assert caught.value.stderr == b"err-1\n"
    assert "exit code 137" in str(caught.value)
    assert await client.containers() == []


async def test_timeout_with_a_terminal(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["sh", "-c", GRACEFUL + LOOP], rootfs, terminal=True)
    with anyio.fail_after(60), pytest.raises(errors.DeadlineExceeded) as caught:
        await client.run("tty", spec, timeout=2, stop_timeout=30, terminal=True)
    # A terminal carries both streams on stdout, with its own line endings.
    assert caught.value.stdout == b"out-1\r\nerr-1\r\nbye\r\nbye-err\r\n"
    assert caught.value.stderr == b""


async def test_without_timeout_the_error_has_no_output(client: supervisor.Client) -> None:
    assert errors.DeadlineExceeded("x").stdout is None
    assert errors.DeadlineExceeded("x").stderr is None


@pytest.mark.parametrize(
    "kw",
    [
        {"timeout": -1},
        {"timeout": math.nan},
        {"timeout": "1"},
        {"stop_timeout": -0.5},
        {"stop_timeout": math.inf},
        {"stop_timeout": None},
    ],
)
async def test_invalid_timeouts_make_nothing(
    client: supervisor.Client, rootfs: str, kw: dict[str, Any]
) -> None:
    spec = supervisor.default_spec(["true"], rootfs)
    with pytest.raises(errors.InvalidArgument):
        await client.run("invalid", spec, **kw)
    assert await client.containers() == []
