"""An import cancelled while it reads a huge archive stops reading it."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

import supervisor
from supervisor import errors

pytestmark = pytest.mark.asyncio

# 64 GiB of 1 MiB reads: a minute of hashing if nothing stops it, far more
# than a loaded machine takes to deliver the cancellation.
READS = 1 << 16


class _Endless:
    """A member that reads as READS MiB of zeros, counting the reads."""

    def __init__(self, started: threading.Event) -> None:
        self.reads = 0
        self._started = started
        self._zeros = bytes(1 << 20)

    def read(self, size: int = -1) -> bytes:
        if self.reads >= READS:
            return b""
        self.reads += 1
        self._started.set()
        return self._zeros[: size if size > 0 else None]

    def __enter__(self) -> _Endless:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


async def test_a_cancelled_import_stops_reading_the_archive(
    client: supervisor.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisor.images._tar import Archive

    # A docker save whose legacy layer must be hashed before anything is
    # written: that hashing runs in a worker thread.
    rootfs = {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": rootfs})
    manifest = [{"Config": "config.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]
    path = tmp_path / "save.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in (
            ("manifest.json", json.dumps(manifest).encode()),
            ("config.json", config.encode()),
            ("l/layer.tar", b"\0" * 1024),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    started = threading.Event()
    endless = _Endless(started)
    original = Archive._open

    def opened(self: Archive, name: str) -> Any:
        return endless if name == "l/layer.tar" else original(self, name)

    monkeypatch.setattr(Archive, "_open", opened)
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            with pytest.raises(errors.SupervisorError):
                await client.import_image(path)

        tg.start_soon(run)
        assert await anyio.to_thread.run_sync(started.wait, 60)
        tg.cancel_scope.cancel()
    # The worker thread saw the cancellation at its next chunk, instead of
    # hashing the whole member first.
    assert endless.reads < READS
    assert await client.images() == []
