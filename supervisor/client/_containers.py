"""The client's containers: made (from a spec or an image), loaded, replaced."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from .. import _platform, errors
from .._cleanup import shielded, undo_if_cancelled
from .._ids import validate_id
from .._log import get_logger
from .._types import ContainerRecord
from ..domain._container import Container
from ..domain._labels import checked_label_selector
from ..domain._network import NetworkAttachment
from ..domain._session import Session
from ..spec._builder import checked_spec
from ..spec._bundle import bundle_owner, bundle_path, prepare_bundle, remove_bundle
from ..spec._settings import ProcessSettings, checked_settings, with_settings
from ._arguments import checked_arguments, remapped_io
from ._network import ClientNetwork, NetworkRequest, checked_network, network_labels
from ._supervision import HealthCheck, RestartPolicy, checked_supervision, start_supervising

__all__ = ["ContainerCalls"]

_log = get_logger("client")

# An image's snapshot for a container: (snapshotter, key, mounts).
_Rootfs = tuple[str, str, tuple[Any, ...]]


class ContainerCalls:
    """Making and loading containers, for :class:`~supervisor.Client`."""

    _session: Session
    _network: ClientNetwork

    async def new_container(
        self,
        id: str,
        spec: Mapping[str, Any] | None = None,
        *,
        image: str | None = None,
        args: Sequence[str] | None = None,
        entrypoint: Sequence[str] | None = None,
        env: Sequence[str] | None = None,
        workdir: str | None = None,
        user: str | int | None = None,
        snapshotter: str | None = None,
        runtime: str = _platform.DEFAULT_RUNTIME,
        runtime_options: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        replace: bool = False,
        network: str = "none",
        ports: Sequence[str] | None = None,
        cni_conf_dir: str | os.PathLike[str] | None = None,
        restart: str | RestartPolicy | None = None,
        healthcheck: HealthCheck | Mapping[str, Any] | None = None,
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
            args, entrypoint, env, workdir, user: as ``docker run``'s, onto the
                image's config (or the spec's process): see ``docs/images.md``.
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
            network, ports, cni_conf_dir: see ``docs/networking.md``.
            restart, healthcheck: as docker's; see ``docs/supervision.md``.

        Raises:
            InvalidArgument: bad id, spec, labels or options; nothing was created.
            AlreadyExists: a container with this id exists (and ``replace`` is
                false); it is left untouched. Network errors: see ``docs/networking.md``.

        Example::

            spec = supervisor.default_spec(["sh", "-c", "echo hi"], rootfs)
            container = await client.new_container("web-1", spec)
            container = await client.new_container("web-2", image="busybox:1", args=["ls"])
        """
        self._session.check_open()
        label_map = checked_arguments(id, runtime, runtime_options, labels)
        settings = checked_settings(
            args=args, entrypoint=entrypoint, env=env, workdir=workdir, user=user
        )
        net = checked_network(id, network, ports, cni_conf_dir)
        plan = await checked_supervision(self._session, id, restart, healthcheck, image, label_map)
        options = (runtime, runtime_options, label_map, replace, net)
        made = await self._made(id, spec, image, settings, snapshotter, options)
        return await start_supervising(self._session, made, plan)

    async def _made(
        self,
        id: str,
        spec: Mapping[str, Any] | None,
        image: str | None,
        settings: ProcessSettings,
        snapshotter: str | None,
        options: Any,
    ) -> Container:
        if image is not None:
            return await self._new_image_container(id, image, spec, settings, snapshotter, options)
        if spec is None:
            raise errors.InvalidArgument("a spec or an image is needed", container_id=id)
        return await self._create_container(id, with_settings(spec, settings), *options)

    async def _new_image_container(
        self,
        id: str,
        image: str,
        spec: Mapping[str, Any] | None,
        settings: ProcessSettings,
        snapshotter: str | None,
        options: tuple[str, Mapping[str, Any] | None, dict[str, str], bool, NetworkRequest | None],
    ) -> Container:
        from ..images._containers import new_image_container

        async def create(body: dict[str, Any], rootfs: Any, name: str) -> Container:
            return await self._create_container(id, body, *options, rootfs, name)

        return await new_image_container(
            self._session,
            id,
            image,
            spec,
            settings=settings,
            snapshotter=snapshotter,
            create=create,
        )

    async def _create_container(
        self,
        id: str,
        spec: Mapping[str, Any],
        runtime: str,
        runtime_options: Mapping[str, Any] | None,
        label_map: dict[str, str],
        replace: bool,
        net: NetworkRequest | None,
        rootfs: _Rootfs | None = None,
        image: str = "",
    ) -> Container:
        # id, runtime, labels and options were checked by new_container.
        body = checked_spec(spec)
        if net is None:
            return await self._create_checked(
                id, body, runtime, runtime_options, label_map, replace, rootfs, image
            )
        # Attached first: the spec names the network namespace. A replaced
        # container goes before, as its network holds the id.
        if replace:
            with contextlib.suppress(errors.NotFound):
                await self._replace(id)
        name = body.get("hostname")
        host = name if isinstance(name, str) else None
        attachment, mark = await self._network.attach(id, net, host)
        try:
            from ..network._info import apply_network

            body = apply_network(body, attachment.info)
            label_map = {**label_map, **network_labels(attachment.info)}
            container = await self._create_checked(
                id, body, runtime, runtime_options, label_map, replace, rootfs, image, attachment
            )
        except BaseException:
            await self._network.undo(id)
            raise
        finally:
            self._network.created(id, mark)
        return container

    async def _create_checked(
        self,
        id: str,
        body: dict[str, Any],
        runtime: str,
        runtime_options: Mapping[str, Any] | None,
        label_map: dict[str, str],
        replace: bool,
        rootfs: _Rootfs | None,
        image: str,
        attachment: NetworkAttachment | None = None,
    ) -> Container:
        session = self._session
        owner = bundle_owner(body)
        runtime_options = remapped_io(runtime, runtime_options, owner)
        runtime_options = _platform.default_runtime_options(
            runtime, runtime_options, session.instance
        )
        _platform.default_spec_section(body, session.namespace, id, instance=session.instance)
        bundle = bundle_path(session.state_dir, session.namespace, id, owner)

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

        await self._create_with_bundle(id, create, bundle, owner, replace)
        container = Container(
            session, id, spec=body, runtime=runtime, labels=label_map, bundle_dir=bundle
        )
        if rootfs is not None:
            from ..images._containers import SnapshotRootfs

            container.rootfs = SnapshotRootfs(session, *rootfs)
        container.network_attachment = attachment
        _log.debug("container.create", container_id=id, runtime=runtime)
        await undo_if_cancelled(container.delete, limit=session.timeouts.cleanup, what="container")
        return container

    async def _create_with_bundle(
        self,
        id: str,
        create: Callable[[], Awaitable[None]],
        bundle: Path,
        owner: tuple[int, int] | None,
        replace: bool,
    ) -> None:
        # containerd first, the directory after: until containerd has said the
        # id is ours, a directory of that name may be a live container's.
        session = self._session
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
                    raise errors.from_os_error(
                        exc, f"cannot make the bundle directory {bundle}", container_id=id
                    ) from exc
                raise

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

    async def containers(
        self, *, labels: Mapping[str, str | None] | None = None
    ) -> list[Container]:
        """Every container in the client's namespace, or (``labels``) those
        whose labels include all of these: ``{"app": "web"}`` selects the
        containers labelled ``app=web``, a value ``None`` those with the key
        whatever its value. One List RPC: containerd's own filters
        (``labels."app"=="web"``) do the selecting.

        Raises:
            InvalidArgument: ``labels`` is not a mapping of non-empty
                strings to strings or None.

        Example::

            web = await client.containers(labels={"app": "web", "tier": None})
        """
        selector = None if labels is None else checked_label_selector(labels)
        records = await self._session.transport.list_containers(selector)
        return [self._from_record(r) for r in records]

    def _from_record(self, record: ContainerRecord) -> Container:
        # The bundle path is derived, never read from the record: any client
        # of containerd can write labels, and the path decides what we delete.
        cid, spec = record.id, record.spec
        validate_id(cid, kind="container id")
        try:
            owner = bundle_owner(spec)
        except errors.InvalidArgument:
            owner = None
        bundle = bundle_path(self._session.state_dir, self._session.namespace, cid, owner)
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
        container.network_attachment = self._network.attachment(cid)
        return container
