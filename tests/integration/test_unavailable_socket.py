"""An ``Unavailable`` for a containerd that is not there names its socket:
in the library's own error (not only in the command's message), and the
command says it once."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

import supervisor
from supervisor import errors
from tests.integration.cli_runner import run_raw

pytestmark = pytest.mark.asyncio


def _stale_socket(path: Path) -> Path:
    # A socket file nothing listens on (a containerd that died): refused.
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    return path


@pytest.mark.parametrize("events", [True, False])
@pytest.mark.parametrize("kind", ["missing", "refused"])
async def test_unavailable_names_the_socket(tmp_path: Path, events: bool, kind: str) -> None:
    path = tmp_path / "c.sock"
    if kind == "refused":
        _stale_socket(path)
    with pytest.raises(errors.Unavailable) as caught:
        async with supervisor.connect(
            str(path), namespace="x", events=events, state_dir=tmp_path / "sv"
        ):
            pass
    assert str(path) in str(caught.value), caught.value


async def test_a_call_on_a_socket_gone_names_it(tmp_path: Path) -> None:
    from supervisor.backends.containerd import ContainerdTransport

    path = _stale_socket(tmp_path / "c.sock")
    transport = ContainerdTransport.open(str(path), "x")
    try:
        with pytest.raises(errors.Unavailable) as caught:
            await transport.list_containers()
        assert f"cannot reach containerd at {path}" in str(caught.value)
    finally:
        await transport.aclose()


@pytest.mark.parametrize("command", [["stop", "x"], ["kill", "x"], ["rm", "x"]])
async def test_the_command_names_the_socket_once(tmp_path: Path, command: list[str]) -> None:
    path = _stale_socket(tmp_path / "c.sock")
    argv = [sys.executable, "-m", "supervisor", "-a", str(path), "--state-dir", str(tmp_path)]
    code, _, err = await run_raw([*argv, *command])
    assert code == 125, err
    assert err.count(str(path)) == 1, err
    assert err.startswith(f"supervisor: Unavailable: cannot reach containerd at {path}"), err
