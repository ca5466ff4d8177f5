"""What :class:`supervisor.Client`'s image methods call: one object per call
that binds the client's session to containerd's image-side services."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import errors
from .._log import get_logger
from ..oci._digest import chain_ids
from ..oci._platform import Platform, host_platform, parse_platform
from ..oci._types import Image, ImageRecord
from ._auth import Credentials
from ._local import LocalImage, load_image
from ._pull import Progress, PullOptions, lease, pull
from ._reference import parse_reference
from ._tls import TLSOptions
from ._unpack import SNAPSHOT_GC_LABEL, unpack

if TYPE_CHECKING:
    from ..backends.containerd_images import ContainerdImages
    from ..domain._session import Session

__all__ = ["ImageService"]

_log = get_logger("images")
_PROBE_KEY = "supervisor-snapshotter-probe"


def image_of(record: ImageRecord) -> Image:
    t = record.target
    return Image(
        record.name, t.digest, t.media_type, t.size, dict(record.labels), record.created_at
    )


def _credentials(auth: object) -> Credentials | None:
    if auth is None or isinstance(auth, Credentials):
        return auth
    if isinstance(auth, tuple) and len(auth) == 2 and all(isinstance(x, str) for x in auth):
        return Credentials(auth[0], auth[1])
    raise errors.InvalidArgument("auth must be a (username, password) tuple")


def _path(value: str | os.PathLike[str] | None, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike) or not os.fspath(value):
        raise errors.InvalidArgument(f"{what} must be a path")
    return str(os.fspath(value))


def _platform(value: str | Platform | None) -> Platform:
    if value is None:
        return host_platform()
    if isinstance(value, Platform):
        return value
    return parse_platform(value)


class ImageService:
    def __init__(self, session: Session) -> None:
        self._session = session
        channel = getattr(session.raw_transport, "_channel", None)
        if channel is None:
            raise errors.FailedPrecondition("images need the containerd transport")
        from ..backends.containerd_images import ContainerdImages

        self.store: ContainerdImages = ContainerdImages(
            channel, session.namespace, rpc_timeout=session.timeouts.rpc
        )

    @property
    def cleanup(self) -> float:
        return self._session.timeouts.cleanup

    async def snapshotter(self, wanted: str | None) -> str:
        """``wanted``, or overlayfs where this containerd has it, else native."""
        if wanted is not None:
            if not isinstance(wanted, str) or not wanted:
                raise errors.InvalidArgument("snapshotter must be a non-empty string")
            return wanted
        try:
            await self.store.snapshot_exists("overlayfs", _PROBE_KEY)
        except (errors.InvalidArgument, errors.FailedPrecondition, errors.Unknown):
            return "native"
        return "overlayfs"

    async def pull(
        self,
        ref: str,
        *,
        platform: str | Platform | None = None,
        progress: Progress | None = None,
        insecure: bool = False,
        auth: Any = None,
        unpack: bool = True,
        snapshotter: str | None = None,
        http_timeout: float = 30.0,
        plain_http: bool = False,
        skip_verify: bool = False,
        tls_ca: str | os.PathLike[str] | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        certs_dirs: Sequence[str | os.PathLike[str]] | None = None,
    ) -> Image:
        """:meth:`supervisor.Client.pull`, with the TLS choices of
        :mod:`._tls` (``insecure`` is the deprecated ``plain_http``)."""
        self._session.check_open()
        reference = parse_reference(ref)
        if not isinstance(http_timeout, int | float) or not 0 < http_timeout < float("inf"):
            raise errors.InvalidArgument(f"http_timeout must be positive seconds: {http_timeout!r}")
        tls = TLSOptions(
            tls_ca=_path(tls_ca, "tls_ca"),
            tls_cert=_path(tls_cert, "tls_cert"),
            tls_key=_path(tls_key, "tls_key"),
            plain_http=bool(plain_http or insecure),
            skip_verify=bool(skip_verify),
            certs_dirs=None
            if certs_dirs is None
            else tuple(_path(d, "certs_dirs") or "" for d in certs_dirs),
        )
        opts = PullOptions(
            platform=_platform(platform),
            tls=tls,
            credentials=_credentials(auth),
            progress=progress,
            snapshotter=await self.snapshotter(snapshotter) if unpack else None,
            http_timeout=http_timeout,
            cleanup=self.cleanup,
        )
        return image_of(await pull(self.store, reference, opts))

    async def images(self) -> list[Image]:
        self._session.check_open()
        return [image_of(r) for r in await self.store.list_images()]

    async def remove(self, ref: str) -> None:
        self._session.check_open()
        name = str(parse_reference(ref))
        # sync: containerd returns after its GC ran, so what only this image
        # held (blobs, snapshots) is gone when this returns.
        await self.store.delete_image(name, sync=True)
        _log.info("image.remove", image=name)

    async def local(self, ref: str, platform: str | Platform | None = None) -> LocalImage:
        return await load_image(self.store, str(parse_reference(ref)), _platform(platform))

    async def ensure_unpacked(self, image: LocalImage, snapshotter: str) -> str:
        """The image's top chain id, unpacking what is not yet a snapshot."""
        chains = chain_ids(image.config.diff_ids)
        top = chains[-1] if chains else ""
        if not top or await self.store.snapshot_exists(snapshotter, top):
            return top
        async with lease(self.store, "unpack", self.cleanup) as lease_id:
            await unpack(
                self.store,
                snapshotter,
                image.manifest,
                image.config,
                lease=lease_id,
                cleanup=self.cleanup,
            )
            await self.store.set_content_labels(
                image.manifest.config.digest, {SNAPSHOT_GC_LABEL + snapshotter: top}
            )
        return top
