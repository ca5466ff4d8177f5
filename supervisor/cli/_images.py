"""``pull``, ``images``, ``rmi``, ``import``, ``export``, and the image side
of ``run IMAGE [CMD...]`` (when no ``--rootfs`` is given)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from .. import errors
from ._errors import CliError
from ._format import human_bytes, rfc3339, table

if TYPE_CHECKING:
    from ..backends.blocking._messages import ListedImage
    from ..client._client import Client
    from ..domain._container import Container
    from ..images import LayerProgress


__all__ = ["export", "images", "import_", "new_image_container", "pull", "rmi"]

_SHORT_TYPES = {
    "application/vnd.oci.image.index.v1+json": "oci index",
    "application/vnd.oci.image.manifest.v1+json": "oci manifest",
    "application/vnd.docker.distribution.manifest.list.v2+json": "docker list",
    "application/vnd.docker.distribution.manifest.v2+json": "docker manifest",
}


class Progress:
    """A pull's progress on stderr: one line per blob redrawn in place on a
    terminal (at most ten times a second), else a plain line each time a
    blob changes state."""

    def __init__(self, out: TextIO, *, live: bool) -> None:
        self._out = out
        self._live = live
        self._rows: dict[str, tuple[str, int, int]] = {}
        self._drawn = 0
        self._last = 0.0

    def __call__(self, item: LayerProgress) -> None:
        before = self._rows.get(item.digest)
        self._rows[item.digest] = (item.state, item.offset, item.size)
        changed = before is None or before[0] != item.state
        if not self._live:
            if changed:
                print(f"{_short(item.digest)}: {self._text(item.digest)}", file=self._out)
            return
        now = time.monotonic()
        if changed or now - self._last >= 0.1:
            self._last = now
            self._draw()

    def _text(self, digest: str) -> str:
        state, offset, size = self._rows[digest]
        if state == "downloading":
            return f"downloading {human_bytes(offset)}/{human_bytes(size)}"
        return f"{state} {human_bytes(size)}"

    def _draw(self) -> None:
        # Back to the first row drawn, then every row again, each cleared.
        text = f"\x1b[{self._drawn}F" if self._drawn else ""
        for digest in self._rows:
            text += f"\x1b[2K{_short(digest)}: {self._text(digest)}\n"
        self._drawn = len(self._rows)
        self._out.write(text)
        self._out.flush()

    def finish(self) -> None:
        if self._live and self._rows:
            self._draw()


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _credentials(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise CliError("-u/--user wants USER:PASSWORD")
    return user, password


async def pull(args: argparse.Namespace) -> int:
    auth = _credentials(args.user)
    progress = Progress(sys.stderr, live=sys.stderr.isatty())
    if args.tlskey is not None and args.tlscert is None:
        raise CliError("--tlskey needs --tlscert")
    from ._connection import open_client

    async with open_client(args) as client:
        try:
            image = await client.pull(
                args.ref, platform=args.platform, auth=auth, progress=progress,
                plain_http=args.plain_http, skip_verify=args.skip_verify,
                tls_ca=args.tlscacert, tls_cert=args.tlscert, tls_key=args.tlskey,
            )  # fmt: skip
        finally:
            progress.finish()
    print(f"Digest: {image.digest}", file=sys.stderr)
    print(image.name, flush=True)
    return 0


def _record(image: ListedImage) -> dict[str, Any]:
    return {
        "name": image.name,
        "digest": image.digest,
        "media_type": image.media_type,
        "size": image.size,
        "created": rfc3339(image.created_at),
        "labels": image.labels,
    }


def _listing(args: argparse.Namespace) -> list[ListedImage]:
    """Every image of the namespace over the blocking channel (unix
    sockets), as ``ps`` lists containers; over the client elsewhere."""
    # sys.platform, not supervisor._platform, which loads anyio.
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import anyio

        return anyio.run(_listing_over_client, args)
    from ..backends.blocking import Channel, list_images

    try:
        with Channel(args.address, args.namespace, timeout=args.timeout) as channel:
            return list_images(channel)
    except errors.DeadlineExceeded:
        raise errors.Unavailable(
            f"containerd at {args.address} did not answer within {args.timeout}s; is it running?"
        ) from None


async def _listing_over_client(args: argparse.Namespace) -> list[ListedImage]:
    from ..backends.blocking._messages import ListedImage
    from ._connection import open_client

    async with open_client(args, observe=True) as client:
        return [
            ListedImage(i.name, i.digest, i.media_type, i.size, i.labels, i.created_at)
            for i in await client.images()
        ]


def images(args: argparse.Namespace) -> int:
    found = sorted(_listing(args), key=lambda i: i.name)
    if args.format == "json":
        for image in found:
            print(json.dumps(_record(image)))
        return 0
    rows = [
        (
            i.name,
            _short(i.digest),
            _SHORT_TYPES.get(i.media_type, i.media_type),
            rfc3339(i.created_at) or "",
        )
        for i in found
    ]
    print(table(["NAME", "DIGEST", "TYPE", "CREATED"], rows))
    return 0


async def rmi(args: argparse.Namespace) -> int:
    """Each named image in turn; one that fails is reported, the others
    still removed, and the exit code is then 125."""
    from ._each import each_named

    async def one(client: Client, ref: str) -> str:
        await client.remove_image(ref)
        return f"Untagged: {ref}"

    return await each_named(args, args.refs, one, observe=True)


async def import_(args: argparse.Namespace) -> int:
    from ._connection import open_client

    async with open_client(args) as client:
        found = await client.import_image(args.file, name=args.name)
    for image in found:
        print(image.name, flush=True)
    return 0


async def export(args: argparse.Namespace) -> int:
    from ._connection import open_client

    async with open_client(args) as client:
        await client.export_image(args.ref, args.file)
    return 0


async def new_image_container(
    client: Client, args: argparse.Namespace, cid: str, labels: dict[str, str] | None
) -> Container:
    """``run IMAGE [CMD...]``: the container of an image, its spec the
    image's config with run's flags applied over it. As ``docker run``,
    the image is pulled when it is not here (``--pull missing``), every time
    (``always``) or never; a pull that needs more than ``pull``'s defaults
    (credentials beyond ``~/.docker/config.json``, a platform, plain HTTP
    to a remote registry) is ``supervisor pull``'s to make."""
    from .._types import DEFAULT_RUNTIME
    from ._network import network_options

    ref = await _image_ref(client, args.command[0], args.pull)
    return await client.new_container(
        cid,
        image=ref,
        **_image_settings(args, cid),
        runtime=args.runtime or DEFAULT_RUNTIME,
        labels=labels,
        **network_options(args),
        restart=getattr(args, "restart", None),
    )


async def _image_ref(client: Client, image: str, pull: str) -> str:
    """The stored name of ``image``, pulled first as ``--pull`` says."""
    if pull != "always":
        try:
            return (await client.image(image)).ref
        except errors.NotFound:
            if pull == "never":
                raise CliError(
                    f"no image {image!r} here (--pull never): supervisor pull {image} first"
                ) from None
    print(f"supervisor: pulling {image}", file=sys.stderr)
    progress = Progress(sys.stderr, live=sys.stderr.isatty())
    try:
        pulled = await client.pull(image, progress=progress)
    finally:
        progress.finish()
    return str(pulled.name)


def _image_settings(args: argparse.Namespace, cid: str) -> dict[str, Any]:
    """``new_container``'s keywords for run's flags over an image: the
    process settings go on top of the image's config (as ``docker run``);
    the rest of the spec is the library's default one with the flags."""
    from .. import default_spec
    from ._options import bind_mounts, container_path, environment

    base = default_spec(
        ["true"],
        "rootfs",
        hostname=args.hostname or cid[:63],
        mounts=bind_mounts(args.volume, args.mount),
        memory=args.memory,
        cpus=args.cpus,
        pids_limit=args.pids_limit,
    )
    linux: dict[str, Any] = {"resources": base["linux"]["resources"]}
    if args.network == "host":
        linux["namespaces"] = [n for n in base["linux"]["namespaces"] if n["type"] != "network"]
    overrides = {
        "process": {"terminal": args.tty},
        "hostname": base["hostname"],
        "mounts": base["mounts"],
        "linux": linux,
        # The container writes to a snapshot of its own unless told otherwise.
        "root": {"readonly": bool(args.read_only)},
    }
    return {
        "spec": overrides,
        "args": args.command[1:] or None,
        "env": environment([], args.env_file, args.env),
        "workdir": container_path(args.workdir, "-w") if args.workdir is not None else None,
        "user": args.user,
    }
