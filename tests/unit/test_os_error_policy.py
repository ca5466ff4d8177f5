"""What the operating system refuses reaches the caller through the one
policy of :func:`supervisor.errors.from_os_error`: a library error by errno,
never a raw ``OSError``, and nothing left behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from supervisor import errors
from supervisor.backends.fake import FakeTransport
from supervisor.fifo import _log_pump, _logger
from tests.unit.conftest import NS, connect, spec


@pytest.mark.asyncio
async def test_a_state_dir_under_a_file_is_the_callers_invalid_argument(
    fake: FakeTransport, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(errors.InvalidArgument, match="cannot use state directory"):
        async with connect(fake, tmp_path / "file" / "state"):
            pass


@pytest.mark.asyncio
async def test_a_bundle_directory_that_cannot_be_made_is_mapped_and_undone(
    fake: FakeTransport, state_dir: Path
) -> None:
    async with connect(fake, state_dir) as client:
        level = state_dir / NS
        assert not level.exists()
        level.write_text("")  # where the container's bundle would go
        with pytest.raises(errors.NotFound, match="cannot make the bundle directory"):
            await client.new_container("nobundle", spec())
        assert await client.containers() == []
        level.unlink()


def test_a_log_file_the_system_refuses_is_mapped_by_errno(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: Any, **kwargs: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_log_pump.os, "open", full)
    with pytest.raises(errors.Unavailable, match="cannot open log_path"):
        _log_pump.open_log_file(tmp_path / "out.log")


def test_a_log_path_that_does_not_work_as_given_is_invalid_argument(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(errors.InvalidArgument, match="cannot open log_path"):
        _log_pump.open_log_file(tmp_path / "file" / "out.log")
    os.symlink(tmp_path / "target", tmp_path / "link.log")
    with pytest.raises(errors.InvalidArgument, match="cannot open log_path"):
        _log_pump.open_log_file(tmp_path / "link.log")
    assert not (tmp_path / "target").exists()


def test_a_logger_script_that_cannot_be_written_is_a_library_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisor import _paths

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_paths, "write_new", full)
    with pytest.raises(errors.Unavailable, match="cannot write the logger"):
        _logger.logger_script(tmp_path)
