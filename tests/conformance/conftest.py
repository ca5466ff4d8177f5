"""The ``transport`` fixture, once per implementation, and the ``world``
that drives what is not a Transport call: the processes themselves.

Every process here is ``sh -c 'read code; exit $code'`` on FIFOs the test
made: on containerd it blocks until :meth:`World.finish` writes its exit
code on its stdin; the fake's process "exits" through its control
:meth:`FakeControls.exit`. Either way nothing ends by itself and nothing is
timed, so both halves run the same steps to the same states.

The containerd half uses the plugin's namespace of the test's own (which
``--containerd-required`` makes a failure, never a skip, when containerd is
missing); the fixture kills and deletes what the test left, and the plugin
then checks the namespace is empty.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import pytest_asyncio

import supervisor
from supervisor import errors
from supervisor._types import ProcessState, StdioPaths
from supervisor.backends.base import Transport
from supervisor.backends.containerd import ContainerdTransport
from supervisor.backends.fake import FakeTransport

RUNC = "io.containerd.runc.v2"
ARGS = ["sh", "-c", "read code; exit $code"]
FAKE_NS = "conformance"
CATCHABLE = [s for s in signal.Signals if s not in (signal.SIGKILL, signal.SIGSTOP)]
# Hang guard only: a wait that must end fails the test instead of hanging it.
GUARD = 30.0

IMPLEMENTATIONS = [
    pytest.param("fake", id="fake"),
    pytest.param("containerd", id="containerd", marks=pytest.mark.integration),
]


class World:
    """What a test needs besides the transport: specs, stdio FIFOs, and a
    way to make a running process exit with a code of the test's choice."""

    def __init__(
        self, kind: str, transport: Transport, fifo_dir: Path, rootfs: str, address: str
    ) -> None:
        self.kind = kind
        self.transport = transport
        self._address = address
        self._dir = fifo_dir
        self._rootfs = rootfs
        self._stdin: dict[tuple[str, str], int] = {}
        self._fds: list[int] = []

    def connect(self, namespace: str | None = None) -> Transport:
        """A second connection to the same containerd, in the same namespace
        unless told otherwise (the caller closes it)."""
        namespace = namespace or self.transport.namespace
        if isinstance(self.transport, FakeTransport):
            return self.transport.controls.reopen(namespace)
        return ContainerdTransport.open(self._address, namespace)

    def spec(self) -> dict[str, Any]:
        return supervisor.default_spec(ARGS, self._rootfs)

    def process(self) -> dict[str, Any]:
        """An exec's process spec (the same program)."""
        proc: dict[str, Any] = self.spec()["process"]
        return proc

    def stdio(self, container_id: str, exec_id: str = "") -> StdioPaths:
        """Three FIFOs for the process, opened on our side first (read and
        write, so that neither end ever sees end-of-file or EPIPE)."""
        name = f"{container_id}-{exec_id or 'init'}"
        paths = []
        for stream in ("in", "out", "err"):
            path = self._dir / f"{name}.{stream}"
            with contextlib.suppress(FileExistsError):
                os.mkfifo(path, 0o600)
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
            self._fds.append(fd)
            if stream == "in":
                self._stdin[(container_id, exec_id or container_id)] = fd
            paths.append(str(path))
        stdin, stdout, stderr = paths
        return StdioPaths(stdin, stdout, stderr)

    def finish(self, container_id: str, exec_id: str = "", code: int = 0) -> None:
        """The running process exits with ``code`` (soon, on containerd:
        follow with a wait)."""
        process_id = exec_id or container_id
        if isinstance(self.transport, FakeTransport):
            self.transport.controls.exit(container_id, exec_id or None, code=code)
        else:
            os.write(self._stdin[(container_id, process_id)], f"{code}\n".encode())

    async def container(self, container_id: str, **labels: str) -> None:
        await self.transport.create_container(
            container_id, self.spec(), runtime=RUNC, runtime_options=None, labels=labels
        )

    async def task(self, container_id: str, *, start: bool = True) -> int:
        """A container with a task (started unless told not to); its pid."""
        await self.container(container_id)
        pid = await self.transport.create_task(container_id, self.stdio(container_id))
        if isinstance(self.transport, FakeTransport):
            # The program is a pid namespace's init without signal handlers:
            # the kernel keeps from it every signal but SIGKILL.
            self.transport.controls.ignore(container_id, None, *CATCHABLE)
        if start:
            assert await self.transport.start(container_id, "") == pid
        return pid

    async def exec(self, container_id: str, exec_id: str, *, start: bool = True) -> int:
        await self.transport.exec(
            container_id, exec_id, self.process(), self.stdio(container_id, exec_id)
        )
        if start:
            return await self.transport.start(container_id, exec_id)
        return 0

    async def exec_hog(self, container_id: str, exec_id: str, limit: int) -> int:
        """An exec that grows its memory until the kernel OOM-kills it, in a
        task whose memory (and swap) ``limit`` is set here; its pid."""
        resources = {"memory": {"limit": limit, "swap": limit}}
        await self.transport.update_resources(container_id, resources)
        process = self.process()
        process["args"] = ["sh", "-c", "x=x; while :; do x=$x$x; done"]
        await self.transport.exec(container_id, exec_id, process, self.stdio(container_id, exec_id))
        pid = await self.transport.start(container_id, exec_id)
        if isinstance(self.transport, FakeTransport):
            self.transport.controls.oom(container_id)
            self.transport.controls.exit(container_id, exec_id, code=128 + signal.SIGKILL)
        return pid

    async def wait(self, container_id: str, exec_id: str = "") -> Any:
        with anyio.fail_after(GUARD):
            return await self.transport.wait(container_id, exec_id)

    def close(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()


def transport_gap(world: World, request: pytest.FixtureRequest, reason: str) -> None:
    """Where :class:`ContainerdTransport` (not containerd) breaks the
    contract the fake keeps: the containerd half is expected to fail, and
    fails the suite once it passes, so the mark goes with the fix."""
    if world.kind == "containerd":
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


async def outcome(call: Any) -> str:
    """The error class a call raised, or ``"ok"``."""
    try:
        with anyio.fail_after(GUARD):
            await call
    except errors.SupervisorError as exc:
        return type(exc).__name__
    return "ok"


async def cleanup(transport: Transport) -> None:
    """Kill and delete every task, then every container, of the namespace."""
    with anyio.fail_after(GUARD):
        for record in await transport.list_tasks():
            cid = record.container_id
            # Unknown: runc thawed it under containerd (a signal to all).
            with contextlib.suppress(errors.NotFound, errors.FailedPrecondition, errors.Unknown):
                if record.state is ProcessState.PAUSED:
                    await transport.resume(cid)
            if record.state is not ProcessState.STOPPED:
                with contextlib.suppress(errors.NotFound, errors.FailedPrecondition):
                    await transport.kill(cid, "", signal.SIGKILL, True)
                with contextlib.suppress(errors.NotFound):
                    await transport.wait(cid, "")
            with contextlib.suppress(errors.NotFound):
                await transport.delete_task(cid)
        for container in await transport.list_containers():
            with contextlib.suppress(errors.NotFound):
                await transport.delete_container(container.id)


@pytest.fixture(params=IMPLEMENTATIONS)
def kind(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def place(kind: str, request: pytest.FixtureRequest) -> tuple[str, str, str]:
    """``(address, namespace, rootfs)``: for containerd the plugin's fresh
    namespace (asked for here, outside the event loop, as the plugin's
    record of the test wants); the fake needs none of them."""
    if kind == "fake":
        return "", FAKE_NS, "/nonexistent/rootfs"
    address: str = request.getfixturevalue("containerd_address")
    namespace: str = request.getfixturevalue("supervisor_namespace")
    rootfs: str = request.getfixturevalue("rootfs")
    return address, namespace, rootfs


@pytest_asyncio.fixture
async def world(kind: str, place: tuple[str, str, str], tmp_path: Path) -> AsyncIterator[World]:
    """The test's transport, bound to a fresh namespace, with its helpers;
    whatever the test made is gone afterwards."""
    address, namespace, rootfs = place
    t: Transport
    if kind == "fake":
        t = FakeTransport(namespace)
    else:
        t = ContainerdTransport.open(address, namespace)
    fifo_dir = tmp_path / "fifo"
    fifo_dir.mkdir()
    w = World(kind, t, fifo_dir, rootfs, address)
    try:
        yield w
    finally:
        try:
            await cleanup(t)
        finally:
            w.close()
            await t.aclose()


@pytest.fixture
def transport(world: World) -> Transport:
    """A Transport bound to a namespace of the test's own (see :func:`world`)."""
    return world.transport
