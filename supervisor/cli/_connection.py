"""Reaching containerd for one subcommand: the socket, the namespace, the
timeouts, and for ``run --embedded`` a containerd of our own."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from .._timeouts import Timeouts
from ..client._client import Client
from ..client._connect import connect
from ..events import Backend
from ._timeouts import cli_timeouts

__all__ = ["open_client"]


@contextlib.asynccontextmanager
async def open_client(
    args: argparse.Namespace,
    *,
    events: bool = False,
    observe: bool = False,
    backend: Backend | None = None,
) -> AsyncIterator[Client]:
    """A client for the subcommand.

    Args:
        events: subscribe to events (exits are then heard as they happen,
            OOM kills included); without, waits use containerd's Wait call.
        observe: the subcommand only looks (or signals): it gets a private,
            empty state directory, so loading a task never reopens the stdio
            FIFOs of a process that a ``run`` or ``exec`` elsewhere is
            reading, nor touches their files (nor records, for a backend,
            which exits it handled).
        backend: hears the namespace's events (needs ``events``).
    """
    embedded = getattr(args, "embedded", None)
    timeouts = cli_timeouts(args)
    if embedded is not None:
        async with _embedded(args, Path(embedded), timeouts, events) as client:
            yield client
        return
    if observe:
        scratch = tempfile.mkdtemp(prefix="supervisor-cli-")
        try:
            async with connect(
                args.address,
                namespace=args.namespace,
                state_dir=scratch,
                timeouts=timeouts,
                events=events,
                backend=backend,
            ) as client:
                yield client
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    async with connect(
        args.address,
        namespace=args.namespace,
        state_dir=args.state_dir,
        timeouts=timeouts,
        events=events,
        backend=backend,
    ) as client:
        yield client


@contextlib.asynccontextmanager
async def _embedded(
    args: argparse.Namespace, base: Path, timeouts: Timeouts, events: bool
) -> AsyncIterator[Client]:
    from ..daemon import Daemon

    # containerd's own chatter (plugin loading, shim clean-up) would drown
    # the container's output; errors still come through.
    async with Daemon(base / "root", base / "state", log_level="error") as daemon:
        args.address = daemon.address  # error messages name the socket in use
        async with connect(
            daemon.address,
            namespace=args.namespace,
            state_dir=args.state_dir or base / "supervisor",
            timeouts=timeouts,
            events=events,
        ) as client:
            yield client
