"""The client's containers for the length of a block, or of one process:
``running()`` and ``run()``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Unpack

import anyio

from .. import _platform, errors
from .._log import get_logger
from .._types import RunResult
from ..domain._logs import LogArgs
from ..domain._process import LogWriter, Output
from ..domain._task import Task
from ._containers import ContainerCalls
from ._run_output import checked_run_timeouts, run_to_end
from ._supervision import HealthCheck, RestartPolicy

__all__ = ["RunCalls"]

_log = get_logger("client")


class RunCalls(ContainerCalls):
    """Started containers that are deleted again, for :class:`~supervisor.Client`."""

    @contextlib.asynccontextmanager
    async def running(
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
        stdin: bool = False,
        terminal: bool = False,
        log_path: str | os.PathLike[str] | None = None,
        output: Output = "pipe",
        log_writer: LogWriter = "client",
        runtime: str = _platform.DEFAULT_RUNTIME,
        runtime_options: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        replace: bool = False,
        network: str = "none",
        ports: Sequence[str] | None = None,
        cni_conf_dir: str | os.PathLike[str] | None = None,
        restart: str | RestartPolicy | None = None,
        healthcheck: HealthCheck | Mapping[str, Any] | None = None,
        **log_args: Unpack[LogArgs],
    ) -> AsyncIterator[Task]:
        """A started container for the length of a block: ``async with
        client.running(id, spec) as task``.

        However the block ends (normally, by an error, or cancelled), the
        task is killed, waited for and deleted, and then the container, each
        step bounded by ``timeouts.cleanup``; what containerd still held
        after that is logged. The arguments are those of
        :meth:`new_container` (``image=`` and its settings too) and
        :meth:`Container.new_task` (``stdin``,
        ``terminal``, ``log_path``, ``log_format``..., ``output``, ``log_writer``).

        Example::

            async with client.running("web", spec) as task:
                async for line in task.aiter_lines():
                    if "ready" in line:
                        break
        """
        container = await self.new_container(
            id, spec, image=image, args=args, entrypoint=entrypoint, env=env, workdir=workdir,
            user=user, runtime=runtime, runtime_options=runtime_options, labels=labels,
            replace=replace, network=network, ports=ports, cni_conf_dir=cni_conf_dir,
            restart=restart, healthcheck=healthcheck,
        )  # fmt: skip
        try:
            task = await container.new_task(
                stdin=stdin, terminal=terminal, log_path=log_path, output=output,
                log_writer=log_writer, **log_args,
            )  # fmt: skip
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
        spec: Mapping[str, Any] | None = None,
        *,
        image: str | None = None,
        args: Sequence[str] | None = None,
        entrypoint: Sequence[str] | None = None,
        env: Sequence[str] | None = None,
        workdir: str | None = None,
        user: str | int | None = None,
        input: bytes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - subprocess.run's name and meaning
        stop_timeout: float = 10.0,
        terminal: bool = False,
        runtime: str = _platform.DEFAULT_RUNTIME,
        runtime_options: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        replace: bool = False,
        network: str = "none",
        ports: Sequence[str] | None = None,
        cni_conf_dir: str | os.PathLike[str] | None = None,
    ) -> RunResult:
        """Run a container to its end and return its exit status and output,
        deleting task and container afterwards: ``subprocess.run`` for
        containers.

        Args:
            input: bytes for the process's stdin (then end-of-file).
            timeout: seconds before the process is stopped (with
                ``stop_timeout`` seconds of grace: :meth:`Task.stop`) and
                ``DeadlineExceeded`` raised, its ``stdout``/``stderr`` what
                the process wrote (as ``subprocess.TimeoutExpired``).
            network, ports, cni_conf_dir, image, args, entrypoint, env,
                workdir, user: as :meth:`new_container`.

        Example::

            result = await client.run("once", supervisor.default_spec(["date"], rootfs))
            print(result.exit_code, result.stdout.decode())
        """
        checked_run_timeouts(timeout, stop_timeout, id)
        async with self.running(
            id,
            spec,
            image=image,
            args=args,
            entrypoint=entrypoint,
            env=env,
            workdir=workdir,
            user=user,
            stdin=input is not None,
            terminal=terminal,
            runtime=runtime,
            runtime_options=runtime_options,
            labels=labels,
            replace=replace,
            network=network,
            ports=ports,
            cni_conf_dir=cni_conf_dir,
        ) as task:
            status, out, err = await run_to_end(task, input, timeout, stop_timeout)
        return RunResult(status, out, err)
