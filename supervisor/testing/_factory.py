"""The ``containers`` fixture: start containers in a test, capture their
output, wait for a line, and have them all gone when the test ends.

Output is read as it comes, by reader tasks the fixture owns (in a
:class:`~supervisor._background.Background`, since pytest-asyncio sets a
fixture up and tears it down in different tasks): a container never blocks
on a full pipe because the test did not read it, and what it printed is
there for :meth:`RunningContainer.wait_for_line` and for the failure report.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ByteReceiveStream

from .. import errors
from .._background import Background
from .._types import DEFAULT_RUNTIME, ExitStatus

if TYPE_CHECKING:
    from .. import Client, Container, Task

__all__ = ["Containers", "RunningContainer"]

# What is kept of a container's output: the tail, for the report and for
# wait_for_line; everything is read, so the container never blocks.
_KEEP_BYTES = 4 << 20
_KEEP_LINES = 20_000
_CLEANUP_TIMEOUT = 30.0
# new_container's own arguments that containers.run() sets itself.
# containers.run()'s keywords that go to new_container, not into the spec.
# Options for client.new_container, not for the spec (supervision's too).
_NETWORK_OPTIONS = frozenset({"network", "ports", "cni_conf_dir", "restart", "healthcheck"})
_SET_HERE = frozenset({"id", "spec", "image", "args", "runtime", "runtime_options", "labels"})


class _Output:
    """A process's output: both streams in arrival order, and complete lines."""

    def __init__(self, streams: int) -> None:
        self.combined = bytearray()
        self.by_stream: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.dropped = 0
        self.lines: list[str] = []
        self.lines_dropped = 0
        self._partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self._open = streams
        self._changed = anyio.Event()

    @property
    def ended(self) -> bool:
        return self._open == 0

    def feed(self, stream: str, data: bytes) -> None:
        for buffer in (self.combined, self.by_stream[stream]):
            buffer += data
            if len(buffer) > _KEEP_BYTES:
                cut = len(buffer) - _KEEP_BYTES
                del buffer[:cut]
                if buffer is self.combined:
                    self.dropped += cut
        *complete, self._partial[stream] = (self._partial[stream] + data).split(b"\n")
        self._add_lines(complete)

    def end(self, stream: str) -> None:
        rest, self._partial[stream] = self._partial[stream], b""
        self._add_lines([rest] if rest else [])
        self._open -= 1
        self._notify()

    def _add_lines(self, raw: list[bytes]) -> None:
        if not raw:
            return
        self.lines.extend(line.decode(errors="replace").rstrip("\r") for line in raw)
        if len(self.lines) > _KEEP_LINES:
            cut = len(self.lines) - _KEEP_LINES
            del self.lines[:cut]
            self.lines_dropped += cut
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def changed(self) -> None:
        await self._changed.wait()


class RunningContainer:
    """A container started by :meth:`Containers.run`, with its task and output.

    Attributes:
        container: the :class:`supervisor.Container`.
        task: its started :class:`supervisor.Task`. Its ``stdout`` and
            ``stderr`` are read by the fixture: use :attr:`output` and
            :meth:`wait_for_line` instead. ``task.stdin`` is there when
            ``run(..., stdin=True)``.
        args: the command it runs.
    """

    def __init__(self, container: Container, task: Task, args: Sequence[str]) -> None:
        self.container = container
        self.task = task
        self.args = list(args)
        self.exit_status: ExitStatus | None = None
        streams = 1 if task.stderr is None else 2
        self._output = _Output(streams)

    @property
    def id(self) -> str:
        return self.container.id

    def host_port(self, container_port: int, protocol: str = "tcp") -> tuple[str, int]:
        """Where the host reaches ``container_port`` of a container run with
        ``ports=``: ``(address, port)``, as testcontainers'
        ``get_exposed_port`` (a port published on all addresses is reached
        on ``127.0.0.1``).

        Raises:
            NotFound: that port is not published.
        """
        from ..network import NetworkInfo

        info = self.container.network
        if not isinstance(info, NetworkInfo):
            raise errors.NotFound(
                "the container is on no network (run it with network= and ports=)",
                container_id=self.id,
            )
        port = info.host_port(container_port, protocol)
        wanted = (container_port, protocol)
        host = next(p.host_ip for p in info.ports if (p.container_port, p.protocol) == wanted)
        return ("127.0.0.1" if host in ("", "0.0.0.0") else host, port)

    @property
    def output(self) -> bytes:
        """stdout and stderr so far, interleaved as they were read."""
        return bytes(self._output.combined)

    @property
    def stdout(self) -> bytes:
        """Standard output so far (with a terminal: all output)."""
        return bytes(self._output.by_stream["stdout"])

    @property
    def stderr(self) -> bytes:
        """Standard error so far."""
        return bytes(self._output.by_stream["stderr"])

    @property
    def text(self) -> str:
        """:attr:`output` decoded as UTF-8 (bad bytes replaced)."""
        return self.output.decode(errors="replace")

    @property
    def lines(self) -> list[str]:
        """Complete lines so far, both streams, decoded as UTF-8 (bad bytes replaced)."""
        return list(self._output.lines)

    async def wait_for_line(
        self,
        pattern: str | re.Pattern[str],
        timeout: float = 30.0,  # noqa: ASYNC109 - a readiness probe's own bound
    ) -> re.Match[str]:
        """Wait until a line of output matches ``pattern`` (``re.search``),
        counting lines printed before the call too.

        Returns:
            The match (its groups can carry what the line announced, a port say).

        Raises:
            DeadlineExceeded: no such line within ``timeout`` seconds.
            FailedPrecondition: the output ended (the process exited) first.
            Both messages end with the last lines of output.
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        seen = 0  # index into the lines ever printed
        output = self._output
        with anyio.move_on_after(timeout):
            while True:
                start = max(seen - output.lines_dropped, 0)
                for line in output.lines[start:]:
                    match = regex.search(line)
                    if match is not None:
                        return match
                seen = output.lines_dropped + len(output.lines)
                if output.ended:
                    raise errors.FailedPrecondition(
                        f"the output of {self.id} ended without a line matching "
                        f"{regex.pattern!r}{self._tail()}",
                        container_id=self.id,
                    )
                await output.changed()
        raise errors.DeadlineExceeded(
            f"no line matching {regex.pattern!r} from {self.id} within {timeout}s{self._tail()}",
            container_id=self.id,
        )

    async def wait(self) -> ExitStatus:
        """Wait for the process to exit (see :meth:`supervisor.Process.wait`)."""
        self.exit_status = await self.task.wait()
        return self.exit_status

    def _tail(self, lines: int = 20) -> str:
        shown = self._output.lines[-lines:]
        if not shown:
            return " (no output)"
        return "; last lines:\n" + "\n".join(f"  {line}" for line in shown)

    def report(self, max_lines: int = 200) -> str:
        """A few lines for a failure report: the command and its output's tail."""
        head = f"[{self.id}] {' '.join(self.args)}"
        if self.exit_status is not None:
            head += f"  (exit {self.exit_status.exit_code})"
        lines = self.output.decode(errors="replace").splitlines()
        if self._output.dropped > 0 or len(lines) > max_lines:
            lines = ["[... earlier output left out ...]", *lines[-max_lines:]]
        return "\n".join([head, *(lines or ["(no output)"])])

    async def _pump(self, name: str, stream: ByteReceiveStream | None) -> None:
        if stream is None:
            return
        try:
            while True:
                data = await stream.receive()
                self._output.feed(name, data)
        except (
            anyio.EndOfStream,
            anyio.ClosedResourceError,
            anyio.BrokenResourceError,
            errors.SupervisorError,
        ):
            pass
        finally:
            self._output.end(name)


class Containers:
    """The ``containers`` fixture: a factory of started, tracked containers.

    Example::

        async def test_server(containers):
            web = await containers.run(["httpd", "-f", "-v", "-p", "8080"])
            await web.wait_for_line("started")   # or containers.wait_for_line(web, ...)
            ...

    Every container it started is killed and deleted when the test ends; its
    output appears in the report of a failing test.
    """

    def __init__(
        self, client: Client, rootfs: Path, labels: Mapping[str, str], test_name: str
    ) -> None:
        self._client = client
        self._rootfs = rootfs
        self._labels = dict(labels)
        self._started: list[RunningContainer] = []
        self._made: list[Container] = []
        self._background = Background(f"supervisor-pytest-output:{test_name}")
        self._group: anyio.abc.TaskGroup | None = None
        self._count = 0

    def __iter__(self) -> Iterator[RunningContainer]:
        return iter(list(self._started))

    def __len__(self) -> int:
        return len(self._started)

    async def run(
        self,
        args: Sequence[str] | None = None,
        *,
        image: str | None = None,
        id: str | None = None,
        stdin: bool = False,
        terminal: bool = False,
        labels: Mapping[str, str] | None = None,
        runtime: str = DEFAULT_RUNTIME,
        runtime_options: Mapping[str, Any] | None = None,
        **spec_options: Any,
    ) -> RunningContainer:
        """Create and start a container running ``args`` in the busybox
        rootfs, or in a snapshot of ``image``.

        Args:
            args: the command; with ``image``, it replaces the image's ``Cmd``
                (None: the image's own command).
            image: an image pulled or imported before: the container runs
                on it, as ``client.new_container(id, image=...)`` does.
            id: the container id (default: made from the command and a counter).
            stdin: give the process a stdin pipe (``running.task.stdin``).
            terminal: run it with a pseudo-terminal.
            labels: more containerd labels (the session's are always added).
            runtime, runtime_options: as :meth:`supervisor.Client.new_container`.
            spec_options: passed to :func:`supervisor.default_spec` (``env``,
                ``cwd``, ...); with ``image``, to ``client.new_container``;
                ``network``, ``ports`` always to it (then :meth:`RunningContainer.host_port`).
                ``restart``, ``healthcheck`` too; ``wait_healthy=True``: returns once healthy.

        Returns:
            The started container; its output is being captured.

        Raises:
            InvalidArgument: neither ``args`` nor ``image``, or an option
                the call cannot take; nothing was created.
        """
        if self._group is None:
            raise errors.FailedPrecondition("the containers fixture has been torn down")
        if not args and image is None:
            raise errors.InvalidArgument("containers.run() needs args, an image, or both")
        wait_healthy = bool(spec_options.pop("wait_healthy", False))
        self._count += 1
        id = id if id is not None else self._new_id(args, image)
        labels = {**(labels or {}), **self._labels}
        if image is None:
            container = await self._new_from_rootfs(
                id, args or [], terminal, runtime, runtime_options, labels, spec_options
            )
        else:
            container = await self._new_from_image(
                id, image, args, terminal, runtime, runtime_options, labels, spec_options
            )
        self._made.append(container)
        task = await container.new_task(stdin=stdin, terminal=terminal)
        running = RunningContainer(container, task, args or [f"(image {image})"])
        self._started.append(running)
        return await self._start(running, wait_healthy)

    async def _start(self, running: RunningContainer, wait_healthy: bool) -> RunningContainer:
        assert self._group is not None
        task = running.task
        self._group.start_soon(running._pump, "stdout", task.stdout)
        self._group.start_soon(running._pump, "stderr", task.stderr)
        await task.start()
        if wait_healthy:
            # Bounded: a check that never passes fails the test, not hangs it.
            await task.wait_healthy(timeout=60)
        return running

    def _new_id(self, args: Sequence[str] | None, image: str | None) -> str:
        named = Path(args[0]).name if args else (image or "").rsplit("/", 1)[-1]
        base = re.sub(r"[^a-z0-9]+", "-", named.lower()).strip("-")
        return f"{base or 'c'}-{self._count}"

    async def _new_from_rootfs(
        self,
        id: str,
        args: Sequence[str],
        terminal: bool,
        runtime: str,
        runtime_options: Mapping[str, Any] | None,
        labels: Mapping[str, str],
        spec_options: Mapping[str, Any],
    ) -> Container:
        from .. import default_spec

        net = {k: v for k, v in spec_options.items() if k in _NETWORK_OPTIONS}
        options = {k: v for k, v in spec_options.items() if k not in _NETWORK_OPTIONS}
        spec = default_spec(list(args), str(self._rootfs), terminal=terminal, **options)
        return await self._client.new_container(
            id, spec, runtime=runtime, runtime_options=runtime_options, labels=labels, **net
        )

    async def _new_from_image(
        self,
        id: str,
        image: str,
        args: Sequence[str] | None,
        terminal: bool,
        runtime: str,
        runtime_options: Mapping[str, Any] | None,
        labels: Mapping[str, str],
        options: Mapping[str, Any],
    ) -> Container:
        taken = inspect.signature(self._client.new_container).parameters
        unknown = sorted(set(options) - set(taken) | set(options) & _SET_HERE)
        if unknown:
            raise errors.InvalidArgument(
                f"containers.run(image=...) cannot take {', '.join(unknown)}"
            )
        return await self._client.new_container(
            id,
            {"process": {"terminal": True}} if terminal else None,
            image=image,
            args=list(args) if args else None,
            runtime=runtime,
            runtime_options=runtime_options,
            labels=labels,
            **options,
        )

    async def wait_for_line(
        self,
        running: RunningContainer,
        pattern: str | re.Pattern[str],
        timeout: float = 30.0,  # noqa: ASYNC109 - a readiness probe's own bound
    ) -> re.Match[str]:
        """Same as ``running.wait_for_line(pattern, timeout)``."""
        return await running.wait_for_line(pattern, timeout)

    def report(self) -> str:
        return "\n\n".join(r.report() for r in self._started)

    # -- the fixture's side --------------------------------------------------

    async def _open(self) -> None:
        await self._background.start(self._readers)

    async def _readers(self) -> None:
        async with anyio.create_task_group() as group:
            self._group = group
            self._background.ready()
            await self._background.until_stopped()
            group.cancel_scope.cancel()

    async def _close(self) -> list[str]:
        """Kill and delete every container made; problems come back as lines."""
        problems: list[str] = []
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_TIMEOUT) as scope:
            for container in reversed(self._made):
                try:
                    with contextlib.suppress(errors.NotFound):
                        # force: SIGKILL first if it still runs
                        await (await container.task()).delete(force=True)
                    with contextlib.suppress(errors.NotFound):
                        await container.delete()
                except errors.SupervisorError as exc:
                    problems.append(f"cannot remove container {container.id!r}: {exc}")
        if scope.cancelled_caught:
            problems.append(f"removing the containers took longer than {_CLEANUP_TIMEOUT}s")
        await self._background.stop()
        self._group = None
        return problems
