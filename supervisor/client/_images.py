"""The client's image calls: a façade that hands over to :mod:`supervisor.images`
(loaded on the first image call, not with the client)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..domain._session import Session

if TYPE_CHECKING:
    from ..oci._image_config import ImageConfig

__all__ = ["ImageCalls"]


class ImageCalls:
    """Images in containerd's content store, for :class:`~supervisor.Client`."""

    _session: Session

    async def pull(
        self,
        ref: str,
        *,
        platform: str | None = None,
        progress: Callable[[Any], None] | None = None,
        insecure: bool = False,
        auth: tuple[str, str] | None = None,
        unpack: bool = True,
        snapshotter: str | None = None,
        http_timeout: float = 30.0,
        plain_http: bool = False,
        skip_verify: bool = False,
        tls_ca: str | os.PathLike[str] | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        certs_dirs: Sequence[str | os.PathLike[str]] | None = None,
    ) -> Any:
        """Pull an image from its registry into containerd and unpack it; returns a
        :class:`supervisor.images.Image`. Written under a lease deleted at the end: a
        failed or cancelled pull leaves its blobs to containerd's GC (``docs/images.md``).

        Args:
            ref: ``[registry/]repository[:tag][@sha256:...]``.
            platform: ``os/arch[/variant]`` to take from an index (default: this machine's).
            progress: called with a :class:`supervisor.images.LayerProgress` per blob.
            auth: ``(username, password)``; default: podman's ``auth.json``, then docker's.
            unpack, snapshotter: unpack into it (default: overlayfs where there, else native).
            http_timeout: seconds for connecting, each read and a response's head; a
                transfer must also average 10 KiB/s over each such window.
            plain_http, skip_verify: plain HTTP (a loopback registry falls back to it by
                itself; ``insecure`` is its deprecated name); TLS without checking.
            tls_ca, tls_cert, tls_key, certs_dirs: CA certificates to trust, a client
                certificate and its key (PEM files); the hosts directories (default
                ``$SUPERVISOR_CERTS_DIRS``, else containerd's then docker's ``certs.d``).

        Raises:
            NotFound: no such image or platform. FailedPrecondition: refused credentials,
            an untrusted certificate, or content not matching its digest. InvalidArgument:
            a certificate or key that cannot be used. Unavailable, DeadlineExceeded: the
            registry could not be reached, or too slowly (its errors have ``registry``).
        """
        from ..images._service import ImageService

        return await ImageService(self._session).pull(
            ref,
            platform=platform,
            progress=progress,
            insecure=insecure,
            auth=auth,
            unpack=unpack,
            snapshotter=snapshotter,
            http_timeout=http_timeout,
            plain_http=plain_http,
            skip_verify=skip_verify,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            certs_dirs=certs_dirs,
        )

    async def image(self, ref: str) -> ImageConfig:
        """The run settings of an image that is here (pulled or imported):
        entrypoint, cmd, env, working dir, user, exposed ports, stop signal,
        labels and healthcheck, for this machine's platform.

        Raises:
            NotFound: no such image here, or not for this platform.
            InvalidArgument: ``ref`` is not an image reference.

        Example::

            config = await client.image("busybox:1")
            print(config.cmd, config.env)
        """
        from ..images._service import ImageService
        from ..oci._image_config import image_config

        local = await ImageService(self._session).local(ref)
        return image_config(local.record.name, local.manifest_desc.digest, local.config.config)

    async def images(self) -> list[Any]:
        """Every image in the namespace, as :class:`supervisor.images.Image`."""
        from ..images._service import ImageService

        return await ImageService(self._session).images()

    async def remove_image(self, ref: str) -> None:
        """Delete an image record; containerd's GC then removes the content
        and snapshots nothing else uses.

        Raises:
            NotFound: no such image.
        """
        from ..images._service import ImageService

        await ImageService(self._session).remove(ref)

    async def import_image(
        self, path: str | os.PathLike[str], *, name: str | None = None
    ) -> list[Any]:
        """Import the images of an OCI image-layout tar or a ``docker save``
        tar, and unpack them as :meth:`pull` does.

        The archive is treated as hostile: a member path that is absolute
        or climbs out, a link or device, a blob whose bytes are not its
        digest, refuse the whole archive (see ``docs/images.md``). What was
        written is held by a lease until the image records exist, so a
        refused import leaves nothing containerd's GC keeps.

        Args:
            path: the tar file (plain or compressed).
            name: the reference to store the image under, when the archive
                holds one image (needed when it names none itself).

        Returns:
            the imported images, as :class:`supervisor.images.Image`.

        Raises:
            NotFound: no such file. InvalidArgument: not an archive, or one
            that is refused. FailedPrecondition: content that does not match
            its digest.
        """
        from ..images._archive import import_archive
        from ..images._service import image_of

        return [image_of(r) for r in await import_archive(self._session, path, name=name)]

    async def export_image(self, ref: str, path: str | os.PathLike[str]) -> None:
        """Write an image as an OCI image-layout tar at ``path`` (a new
        file), with docker's ``manifest.json`` too, so ``docker load`` and
        :meth:`import_image` both take it. Every platform of an index that
        the content store holds goes in.

        Raises:
            NotFound: no such image (or some of its content is missing).
            AlreadyExists: ``path`` exists.
        """
        from ..images._export import export_archive

        await export_archive(self._session, ref, path)
