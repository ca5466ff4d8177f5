"""Exporting an image as an OCI layout tar that ``docker load`` also takes
(a ``manifest.json`` beside ``index.json``), every blob verified against its
digest as it is written into a file we create."""

from __future__ import annotations

import contextlib
import json
import os
import tarfile
import time
from typing import TYPE_CHECKING

import anyio

from .. import errors
from .._log import get_logger
from ..oci._digest import Verifier
from ..oci._manifest import (
    MANIFEST_TYPES,
    MAX_MANIFEST_SIZE,
    OCI_INDEX,
    Descriptor,
    Manifest,
    media_type_of,
    parse_index,
    parse_manifest,
)
from ..oci._platform import Platform, host_platform, select_platform
from ._layout import MAX_DEPTH, NAME_ANNOTATION, REF_ANNOTATION, blob_name
from ._reference import DOCKER_HUB, parse_reference

if TYPE_CHECKING:
    from ..backends.containerd_images import ContainerdImages
    from ..domain._session import Session

__all__ = ["export_archive"]

_log = get_logger("images.archive")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class _TarWriter:
    """A tar written member by member to a file we created, the data of a
    member streamed in after its header (tarfile wants a file object)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._mtime = int(time.time())

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            done = os.write(self._fd, view)
            view = view[done:]

    def header(self, name: str, size: int) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, self._mtime
        self._write(info.tobuf(format=tarfile.PAX_FORMAT))

    def data(self, chunk: bytes) -> None:
        self._write(chunk)

    def pad(self, size: int) -> None:
        rest = size % tarfile.BLOCKSIZE
        if rest:
            self._write(b"\0" * (tarfile.BLOCKSIZE - rest))

    def end(self) -> None:
        self._write(b"\0" * (2 * tarfile.BLOCKSIZE))
        os.fsync(self._fd)


async def _export_blob(
    store: ContainerdImages, tar: _TarWriter, desc: Descriptor, data: bytes | None
) -> None:
    await anyio.to_thread.run_sync(tar.header, blob_name(desc.digest), desc.size)
    verifier = Verifier(desc.digest, desc.size)
    if data is not None:
        verifier.update(data)
        await anyio.to_thread.run_sync(tar.data, data)
    else:
        async for chunk in store.read_content(desc.digest):
            verifier.update(chunk)
            await anyio.to_thread.run_sync(tar.data, chunk)
    verifier.check()
    await anyio.to_thread.run_sync(tar.pad, desc.size)


def _familiar(name: str) -> str | None:
    """The name ``docker load`` tags the image with (``busybox:1``)."""
    ref = parse_reference(name)
    if ref.tag is None:
        return None
    path = ref.path
    if ref.domain == DOCKER_HUB:
        path = path.removeprefix("library/")
        return f"{path}:{ref.tag}"
    return f"{ref.domain}/{path}:{ref.tag}"


async def _collect(
    store: ContainerdImages, top: Descriptor, platform: Platform
) -> tuple[list[tuple[Descriptor, bytes | None]], Manifest | None]:
    """Every blob of the image that the store holds (children first), and
    the manifest ``docker load`` is given (this host's platform)."""
    blobs: dict[str, tuple[Descriptor, bytes | None]] = {}
    chosen: Manifest | None = None

    async def visit(desc: Descriptor, depth: int) -> Manifest | None:
        if depth > MAX_DEPTH:
            raise errors.FailedPrecondition("indexes nested too deep")
        body = await store.read_all(desc.digest, MAX_MANIFEST_SIZE)
        media_type = media_type_of(body, desc.media_type)
        if media_type in MANIFEST_TYPES:
            manifest = parse_manifest(body, media_type)
            for layer in manifest.layers:
                if await store.content_size(layer.digest) is None:
                    raise errors.NotFound(f"layer {layer.digest} is not in the content store")
                blobs[layer.digest] = (layer, None)
            config = await store.read_all(manifest.config.digest, MAX_MANIFEST_SIZE)
            blobs[manifest.config.digest] = (manifest.config, config)
            blobs[desc.digest] = (desc, body)
            return manifest
        children = parse_index(body)
        present = [c for c in children if await store.content_size(c.digest) is not None]
        try:
            best = present[select_platform(platform, [c.platform for c in present])]
        except errors.NotFound:
            best = None
        found: Manifest | None = None
        for child in present:
            got = await visit(child, depth + 1)
            if child is best:
                found = got
        blobs[desc.digest] = (desc, body)
        return found

    chosen = await visit(top, 0)
    return list(blobs.values()), chosen


async def export_archive(session: Session, ref: str, path: str | os.PathLike[str]) -> None:
    """Write an image as an OCI layout tar: see :meth:`supervisor.Client.export_image`."""
    from ._service import ImageService

    session.check_open()
    service = ImageService(session)
    store = service.store
    name = str(parse_reference(ref))
    record = await store.get_image(name)
    top = record.target
    # The whole image must be readable before the file is made.
    blobs, manifest = await _collect(store, top, host_platform())
    target = os.fspath(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644)
    except FileExistsError:
        raise errors.AlreadyExists(f"{target} exists: export writes a new file") from None
    except OSError as exc:
        raise errors.from_os_error(exc, f"cannot create {target}", given=True) from exc
    tar = _TarWriter(fd)
    try:
        for desc, data in blobs:
            await _export_blob(store, tar, desc, data)
        top_json = Descriptor(top.media_type, top.digest, top.size).to_json()
        top_json["annotations"] = {NAME_ANNOTATION: name}
        familiar = _familiar(name)
        parsed = parse_reference(name)
        if parsed.tag is not None:
            top_json["annotations"][REF_ANNOTATION] = parsed.tag
        small = {
            "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
            "index.json": json.dumps(
                {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top_json]}
            ).encode(),
        }
        if manifest is not None:
            docker = [
                {
                    "Config": blob_name(manifest.config.digest),
                    "RepoTags": [familiar] if familiar else [],
                    "Layers": [blob_name(layer.digest) for layer in manifest.layers],
                }
            ]
            small["manifest.json"] = json.dumps(docker).encode()
        for member, data in small.items():
            await anyio.to_thread.run_sync(tar.header, member, len(data))
            await anyio.to_thread.run_sync(tar.data, data)
            await anyio.to_thread.run_sync(tar.pad, len(data))
        await anyio.to_thread.run_sync(tar.end)
    except BaseException:
        with contextlib.suppress(OSError):
            _remove_ours(target, fd)
        raise
    finally:
        os.close(fd)
    _log.info("image.export", image=name, path=target)


def _remove_ours(path: str, fd: int) -> None:
    """Unlink the half-written file, unless the name now holds another."""
    mine, there = os.fstat(fd), os.lstat(path)
    if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
        os.unlink(path)
