"""Which refused task creates name a leftover task directory
(``supervisor.backends._leftover``): the words containerd 1.6 uses, and a
directory older than the socket the containerd now running listens on (the
loser of two concurrent creates sees a directory younger than it)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from supervisor import errors
from supervisor.backends._leftover import leftover_dir, raise_if_leftover


def _plant(tmp_path: Path, socket_age: float) -> tuple[str, str]:
    bundle = tmp_path / "io.containerd.runtime.v2.task" / "ns" / "c1"
    bundle.mkdir(parents=True)
    sock = tmp_path / "containerd.sock"
    sock.touch()
    # The socket's age against the directory's last change (its ctime is now).
    when = time.time() - socket_age
    os.utime(sock, (when, when))
    return f"failed to start shim: mkdir {bundle}: file exists", str(sock)


def test_a_directory_older_than_containerd_is_a_leftover(tmp_path: Path) -> None:
    message, sock = _plant(tmp_path, socket_age=-60)
    assert leftover_dir(message, sock) == str(tmp_path / "io.containerd.runtime.v2.task/ns/c1")


def test_a_directory_younger_than_containerd_is_a_create_in_flight(tmp_path: Path) -> None:
    message, sock = _plant(tmp_path, socket_age=60)
    assert leftover_dir(message, sock) is None


def test_other_words_or_no_socket_tell_nothing(tmp_path: Path) -> None:
    message, sock = _plant(tmp_path, socket_age=-60)
    assert leftover_dir("task c1: already exists", sock) is None
    assert leftover_dir(message, "") is None
    assert leftover_dir(message, str(tmp_path / "elsewhere.sock")) is None


@pytest.mark.asyncio
async def test_a_task_containerd_knows_is_no_leftover(tmp_path: Path) -> None:
    message, sock = _plant(tmp_path, socket_age=-60)
    refused = errors.AlreadyExists(message, container_id="c1")

    async def known(cid: str) -> object:
        return object()

    async def unknown(cid: str) -> object:
        raise errors.NotFound("no task", container_id=cid)

    await raise_if_leftover(refused, "c1", sock, known)  # returns: the error stands
    with pytest.raises(errors.FailedPrecondition, match="left behind") as caught:
        await raise_if_leftover(refused, "c1", sock, unknown)
    assert caught.value.__cause__ is refused
