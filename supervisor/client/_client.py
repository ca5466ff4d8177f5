"""The client of one namespace, and the containers made or loaded through it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from .. import _platform, errors
from .._cleanup import shielded, undo_if_cancelled
from .._ids import validate_id
from .._log import get_logger
from .._types import ContainerRecord, RunResult
from ..domain._container import Container, oom_killed
from ..domain._process import Output
from ..domain._session import Session
from ..domain._task import Task
from ..spec._builder import checked_spec
from ..spec._bundle import bundle_owner, bundle_path, prepare_bundle, remove_bundle

__all__ = ["Client"]

_log = get_logger("client")


def _check_text(value: object, what: str, container_id: str) -> str:
    if not isinstance(value, str) or not value:
        raise errors.InvalidArgument(
            f"{what} must be a non-empty string", container_id=container_id
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.InvalidArgument(
            f"{what} is not valid UTF-8: {value!r}", container_id=container_id
        ) from None
    return value


def _checked_labels(labels: Mapping[str, str] | None, container_id: str) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise errors.InvalidArgument("labels must be a mapping", container_id=container_id)
    checked: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(value, str):
            raise errors.InvalidArgument(
                "labels must map strings to strings", container_id=container_id
            )
        checked[_check_text(key, "a label key", container_id)] = value
        if value:
            _check_text(value, f"label {key!r}", container_id)
    return checked


# Shims whose options message carries io_uid/io_gid (containerd.runc.v1.Options
# and the legacy containerd.linux.runc.RuncOptions).
_RUNC_SHIMS = frozenset(
    {"io.containerd.runc.v2", "io.containerd.runc.v1", "io.containerd.runtime.v1.linux"}
)


def _remapped_io(
    runtime: str, options: Mapping[str, Any] | None, owner: tuple[int, int] | None
) -> Mapping[str, Any] | None:
    """With a user namespace, the shim must hand the process's stdio pipes to
    the remapped root (what moby sets), or ``echo hi > /dev/stdout`` inside
    is refused; the caller's own io_uid/io_gid win."""
    if owner is None or runtime not in _RUNC_SHIMS:
        return options
    merged = dict(options or {})
    merged.setdefault("io_uid", owner[0])
    merged.setdefault("io_gid", owner[1])
    return merged


class Client:
    """A connection to containerd bound to one namespace; made by :func:`connect`.

    Containers made or loaded through it are :class:`Container` objects that
    the caller keeps; the client itself holds no per-container state beyond
    what waiting for exits needs.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def namespace(self) -> str:
        """The containerd namespace every call of this client acts in."""
        return self._session.namespace

    @property
    def state_dir(self) -> Path:
        """The directory holding this library's bundles and FIFOs."""
        return self._session.state_dir

    @property
    def closed(self) -> bool:
        """True once the client's ``async with`` block has been left."""
        return self._session.closed

    async def version(self) -> str:
        """containerd's version string, e.g. ``"1.6.20~ds1"``."""
        return await self._session.transport.version()

    async def new_container(
        self,
        id: str,
        spec: Mapping[str, Any] | None = None,
        *,
        image: str | None = None,
        args: Sequence[str] | None = None,
        snapshotter: str | None = None,
        runtime: str = _platform.DEFAULT_RUNTIME,
        runtime_options: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        replace: bool = False,
    ) -> Container:
        """Create a container in containerd.

        Args:
            id: the container id (letters, digits, ``._-``; at most 76 chars).
            spec: the OCI runtime spec as a mapping (see :func:`supervisor.default_spec`).
                ``linux.cgroupsPath`` defaults to ``/<namespace>/<id>``
                (``/containerd-<scope>/<namespace>/<id>`` for a containerd
                other than the default one, see ``docs/daemon.md``). With
                ``image``, optional: its keys override the spec built from the
                image's config (see ``docs/images.md``).
            image: run from this image (pulled or imported before): the
                container gets a snapshot of its own (key = ``id``) on the
                image's layers, removed with the container.
            args: with ``image``, replace the image's ``Cmd``.
            snapshotter: with ``image``, the snapshotter (default: overlayfs
                where containerd has it, else native).
            runtime: the containerd shim, e.g. ``io.containerd.runc.v2``.
            runtime_options: the shim's options as a mapping of its options
                message's fields, e.g. ``{"binary_name": "/usr/bin/crun"}``.
                For a containerd other than the default one, a runc shim's
                ``root`` defaults to ``runc`` beside its socket.
            labels: containerd labels.
            replace: if a container with this id exists, force-delete its
                task (SIGKILL to every process) and delete it first, as
                dockerd does for a leftover of a crash (moby#38346).

        Raises:
            InvalidArgument: bad id, spec, labels or options; nothing was created.
            AlreadyExists: a container with this id exists (and ``replace`` is
                false); it is left untouched.

        Example::

            spec = supervisor.default_spec(["sh", "-c", "echo hi"], rootfs)
            container = await client.new_container("web-1", spec)
            container = await client.new_container("web-2", image="busybox:1", args=["ls"])
        """
        # Every check that needs no spec comes first: a refused call must not
        # even have prepared an image's snapshot.
        self._session.check_open()
        validate_id(id, kind="container id")
        _check_text(runtime, "runtime", id)
        label_map = _checked_labels(labels, id)
        if runtime_options is not None and not isinstance(runtime_options, Mapping):
            raise errors.InvalidArgument("runtime_options must be a mapping", container_id=id)
        if image is not None:
            from ..images._containers import new_image_container

            async def create(body: dict[str, Any], rootfs: Any, name: str) -> Container:
                return await self._create_container(
                    id, body, runtime, runtime_options, label_map, replace, rootfs, name
                )

            return await new_image_container(
                self._session, id, image, spec, args=args, snapshotter=snapshotter, create=create
            )
        if spec is None:
            raise errors.InvalidArgument("a spec or an image is needed", container_id=id)
        return await self._create_container(id, spec, runtime, runtime_options, label_map, replace)

    async def _create_container(
        self,
        id: str,
        spec: Mapping[str, Any],
        runtime: str,
        runtime_options: Mapping[str, Any] | None,
        label_map: dict[str, str],
        replace: bool,
        rootfs: tuple[str, str, tuple[Any, ...]] | None = None,
        image: str = "",
    ) -> Container:
        # id, runtime, labels and options were checked by new_container.
        session = self._session
        body = checked_spec(spec)
        owner = bundle_owner(body)
        runtime_options = _remapped_io(runtime, runtime_options, owner)
        runtime_options = _platform.default_runtime_options(
            runtime, runtime_options, session.instance
        )
        _platform.default_spec_section(body, self.namespace, id, instance=session.instance)
        bundle = bundle_path(session.state_dir, self.namespace, id, owner)

        # Only a container made from an image names its snapshot: other
        # transports need not know the keywords.
        snapshot: dict[str, str] = (
            {"snapshotter": rootfs[0], "snapshot_key": rootfs[1], "image": image}
            if rootfs is not None
            else {}
        )

        async def create() -> None:
            await session.transport.create_container(
                id,
                body,
                runtime=runtime,
                runtime_options=runtime_options,
                labels=label_map,
                **snapshot,
            )

        # containerd first, the directory after: until containerd has said the
        # id is ours, a directory of that name may be a live container's.
        with shielded(session.timeouts.shield, "creating the container"):
            try:
                await create()
            except errors.AlreadyExists:
                if not replace:
                    raise
                await self._replace(id)
                await create()
            try:
                prepare_bundle(bundle, owner)
            except BaseException as exc:
                with anyio.move_on_after(session.timeouts.cleanup):
                    with contextlib.suppress(errors.SupervisorError):
                        await session.transport.delete_container(id)
                remove_bundle(session.state_dir, bundle)
                if isinstance(exc, OSError):
                    raise errors.Unknown(
                        f"cannot make the bundle directory {bundle}: {exc}", container_id=id
                    ) from exc
                raise
        container = Container(
            session, id, spec=body, runtime=runtime, labels=label_map, bundle_dir=bundle
        )
        if rootfs is not None:
            from ..images._containers import SnapshotRootfs

            container.rootfs = SnapshotRootfs(session, *rootfs)
        _log.debug("container.create", container_id=id, runtime=runtime)
        await undo_if_cancelled(container.delete, limit=session.timeouts.cleanup, what="container")
        return container

    @contextlib.asynccontextmanager
    async def running(
        self,
        id: str,
        spec: Mapping[str, Any],
        *,
        stdin: bool = False,
        terminal: bool = False,
        log_path: str | os.PathLike[str] | None = None,
        output: Output = "pipe",
        runtime: str = _platform.DEFAULT_RUNTIME,
        runtime_options: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        replace: bool = False,
    ) -> AsyncIterator[Task]:
        """A started container for the length of a block: ``async with
        client.running(id, spec) as task``.

        However the block ends (normally, by an error, or cancelled), the
        task is killed, waited for and deleted, and then the container, each
        step bounded by ``timeouts.cleanup``; what containerd still held
        after that is logged. The arguments are those of
        :meth:`new_container` and :meth:`Container.new_task`.

        Example::

            async with client.running("web", spec) as task:
                async for line in task.aiter_lines():
                    if "ready" in line:
                        break
        """
        container = await self.new_container(
            id,
            spec,
            runtime=runtime,
            runtime_options=runtime_options,
            labels=labels,
            replace=replace,
        )
        try:
            task = await container.new_task(
                stdin=stdin, terminal=terminal, log_path=log_path, output=output
            )
            try:
                await task.start()
                yield task
            finally:
                await self._bounded(task.delete(force=True), id, "task")
        finally:
            # Forced: whatever task is still there (a delete above that
            # failed, a create whose outcome stayed unknown) goes with it.
            await self._bounded(container.delete(force=True), id, "container")

    async def _bounded(self, cleanup: Any, container_id: str, what: str) -> None:
        limit = self._session.timeouts.cleanup
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(limit) as scope:
                try:
                    await cleanup
                except errors.NotFound:
                    pass
                except errors.SupervisorError as exc:
                    _log.warning(
                        "cleanup.failed", container_id=container_id, what=what, error=str(exc)
                    )
            if scope.cancelled_caught:
                _log.warning("cleanup.timeout", container_id=container_id, what=what, seconds=limit)

    async def run(
        self,
        id: str,
        spec: Mapping[str, Any],
        *,
        input: bytes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - subprocess.run's name and meaning
        terminal: bool = False,
        runtime: str = _platform.DEFAULT_RUNTIME,
        runtime_options: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        replace: bool = False,
    ) -> RunResult:
        """Run a container to its end and return its exit status and output,
        deleting task and container afterwards: ``subprocess.run`` for
        containers.

        Args:
            input: bytes for the process's stdin (then end-of-file).
            timeout: seconds before the process is killed and
                :class:`~supervisor.errors.DeadlineExceeded` raised.

        Example::

            result = await client.run("once", supervisor.default_spec(["date"], rootfs))
            print(result.exit_code, result.stdout.decode())
        """
        async with self.running(
            id,
            spec,
            stdin=input is not None,
            terminal=terminal,
            runtime=runtime,
            runtime_options=runtime_options,
            labels=labels,
            replace=replace,
        ) as task:
            with anyio.move_on_after(timeout) as scope:
                out, err = await task.communicate(input)
                status = await task.wait()
            if scope.cancelled_caught:
                raise errors.DeadlineExceeded(
                    f"the process did not end within {timeout}s", container_id=id
                )
        return RunResult(status, out, err)

    async def _replace(self, id: str) -> None:
        old = await self.load_container(id)
        with contextlib.suppress(errors.NotFound):
            await old.delete(force=True)
        _log.info("container.replaced", container_id=id)

    async def load_container(self, id: str) -> Container:
        """A container that exists in containerd (made by this or another client).

        Raises:
            NotFound: no such container.
        """
        validate_id(id, kind="container id")
        record = await self._session.transport.get_container(id)
        return self._from_record(record)

    async def containers(self) -> list[Container]:
        """Every container in the client's namespace."""
        return [self._from_record(r) for r in await self._session.transport.list_containers()]

    async def restore(self, *, attach: bool = True) -> list[tuple[Container, Task | None]]:
        """Every container of the namespace with its task (``None`` if it has
        none), in two RPCs however many there are: what an application calls
        after its own restart, where loading each would cost one more RPC per
        container.

        A task that stopped while nobody listened is reported to the backend
        now (once, and not at all if an earlier run's backend handled it; see
        ``docs/events.md``); its ``wait()`` returns at once. If its cgroup
        counted an OOM kill, an OOM event comes first and the exit carries
        ``oom_killed``, as live (one more RPC for all such tasks together).

        The stdio of live processes is reopened as :meth:`Container.task`
        does (not with ``attach=False``: see there); each exec made through
        the library costs one more RPC.
        """
        transport = self._session.transport
        records = await transport.list_containers()
        tasks = {t.container_id: t for t in await transport.list_tasks()}
        containers = [self._from_record(r) for r in records]
        # Every question first, then every adoption without an await: a call
        # that fails leaves nothing opened or tracked.
        loaded = {c.id: (tasks[c.id], await c._exec_records()) for c in containers if c.id in tasks}
        oom = await oom_killed(self._session, loaded)
        restored: list[tuple[Container, Task | None]] = []
        for container in containers:
            task = None
            if container.id in loaded:
                record, execs = loaded[container.id]
                task = container._adopt(record, execs, attach=attach, oom=container.id in oom)
            restored.append((container, task))
        _log.info("client.restored", namespace=self.namespace, containers=len(restored))
        return restored

    def _from_record(self, record: ContainerRecord) -> Container:
        # The bundle path is derived, never read from the record: any client
        # of containerd can write labels, and the path decides what we delete.
        cid, spec = record.id, record.spec
        validate_id(cid, kind="container id")
        try:
            owner = bundle_owner(spec)
        except errors.InvalidArgument:
            owner = None
        bundle = bundle_path(self._session.state_dir, self.namespace, cid, owner)
        container = Container(
            self._session,
            cid,
            spec=spec,
            runtime=record.runtime,
            labels=record.labels,
            bundle_dir=bundle,
        )
        if record.snapshotter and record.snapshot_key:
            # Made from an image: its task's root filesystem is that snapshot.
            from ..images._containers import SnapshotRootfs

            container.rootfs = SnapshotRootfs(
                self._session, record.snapshotter, record.snapshot_key
            )
        return container

    # -- images (supervisor.images; loaded on first use) -------------------

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
        """Pull an image from its registry into containerd and unpack it.

        Everything is written under a containerd lease that is deleted at the
        end; a pull that fails or is cancelled leaves its blobs to
        containerd's GC. See ``docs/images.md``.

        Args:
            ref: ``[registry/]repository[:tag][@sha256:...]``.
            platform: ``os/arch[/variant]`` to choose from an index (default:
                this machine's).
            progress: called with a :class:`supervisor.images.LayerProgress`
                per blob as it goes.
            insecure: deprecated spelling of ``plain_http``.
            auth: ``(username, password)``; default: podman's ``auth.json``,
                then ``~/.docker/config.json`` (see ``docs/images.md``).
            unpack: unpack into the snapshotter (default: overlayfs where
                containerd has it, else native).
            http_timeout: seconds for connecting, each read and a response's
                head; a transfer must also average 10 KiB/s over each such
                window.
            plain_http: plain HTTP instead of TLS (ctr's ``--plain-http``).
                A loopback registry is tried over HTTPS first and falls back
                to plain HTTP by itself.
            skip_verify: TLS without checking the registry's certificate.
            tls_ca: a PEM file of CA certificates to trust, besides the
                system's and those of the hosts directories.
            tls_cert, tls_key: a client certificate (PEM) and its key.
            certs_dirs: the hosts directories (default
                ``$SUPERVISOR_CERTS_DIRS``, else ``/etc/containerd/certs.d``
                then ``/etc/docker/certs.d``).

        Returns:
            a :class:`supervisor.images.Image`.

        Raises:
            NotFound: no such image or platform. FailedPrecondition: refused
            credentials, an untrusted certificate, or content that does not
            match its digest. InvalidArgument: a certificate or key that
            cannot be used. Unavailable: the registry could not be reached.
            DeadlineExceeded: it answered too slowly. An error the registry
            caused has its ``registry`` attribute set (``host[:port]``).
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
