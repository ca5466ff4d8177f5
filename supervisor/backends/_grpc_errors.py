"""What a call through grpclib raises, as :mod:`supervisor.errors`.

:func:`map_grpc_errors` is the one place where grpclib's failures are
translated: a gRPC status by its code (:mod:`._status`), a lost or broken
connection as :class:`~supervisor.errors.Unavailable`, anything unexpected
as :class:`~supervisor.errors.Unknown` with its cause chained.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpclib.exceptions

from .. import errors
from ._status import error_for

__all__ = ["map_grpc_errors"]


@contextmanager
def map_grpc_errors(
    container_id: str | None = None, process_id: str | None = None, *, where: str = ""
) -> Iterator[None]:
    """Translate what a call through grpclib raises into :mod:`supervisor.errors`.

    A gRPC status becomes its class; a deadline :class:`DeadlineExceeded`; a
    connection that cannot be made or that broke :class:`Unavailable` (what
    the event monitor rides out by resubscribing). Anything else, a reply
    that does not decode or a bug, is :class:`Unknown` with the exception as
    its cause: retrying it as if containerd were down would only fail again.
    ``where``: containerd's socket, named by an :class:`Unavailable`.
    """
    task, before = _cancel_count()
    try:
        yield
    except errors.SupervisorError:
        raise
    except Exception as exc:
        _forget_grpclib_cancels(task, before)
        raise _translated(exc, container_id, process_id, where) from exc


def _cancel_count() -> tuple[asyncio.Task[Any] | None, int]:
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return None, 0
    return task, (task.cancelling() if task is not None else 0)


def _forget_grpclib_cancels(task: asyncio.Task[Any] | None, before: int) -> None:
    # grpclib wakes a call whose stream was terminated with a native
    # Task.cancel() and raises its own error instead: the request stays
    # counted on the task, and anyio then takes the expiry of any cancel
    # scope open around the call for a cancellation from outside, which
    # escapes as a bare CancelledError. Take back what the call left; a real
    # cancellation of the caller is a CancelledError, never translated here.
    if task is not None:
        while task.cancelling() > before:
            task.uncancel()


def _translated(
    exc: Exception, container_id: str | None, process_id: str | None, where: str = ""
) -> errors.SupervisorError:
    """The library error for what a call through grpclib raised."""
    ids = {"container_id": container_id, "process_id": process_id}
    # An outage names the socket: the caller may not be the one who chose it.
    at = f" at {where}" if where else ""
    if isinstance(exc, grpclib.exceptions.GRPCError):
        cls = error_for(exc.status.value, exc.message or "")
        return cls(exc.message or exc.status.name, **ids)
    if isinstance(exc, TimeoutError):
        # Before OSError: TimeoutError is one, and a deadline is not an outage.
        return errors.DeadlineExceeded("containerd did not answer in time", **ids)
    if where and isinstance(exc, (FileNotFoundError, ConnectionRefusedError, PermissionError)):
        # The socket cannot be opened: said as the blocking reader says it.
        return errors.Unavailable(
            f"cannot reach containerd at {where}: {exc.strerror or exc}", **ids
        )
    if isinstance(exc, (grpclib.exceptions.StreamTerminatedError, OSError)):
        # StreamTerminatedError: grpclib lost the connection, or containerd
        # sent GOAWAY or reset the stream; OSError: the socket itself.
        return errors.Unavailable(
            f"containerd connection{at} failed: {exc or type(exc).__name__}", **ids
        )
    if _on_closed_connection(exc):
        return errors.Unavailable(
            f"containerd connection{at} failed: closed under the call "
            f"({type(exc).__name__}: {exc})",
            **ids,
        )
    if _broken_framing(exc):
        # As the blocking reader reports the same reply: a protocol failure.
        return errors.Unavailable(
            f"containerd{at} sent a broken reply: {type(exc).__name__}: {exc}", **ids
        )
    return errors.Unknown(
        f"containerd call failed unexpectedly: {type(exc).__name__}: {exc}", **ids
    )


def _on_closed_connection(exc: Exception) -> bool:
    """True if grpclib or h2 raised ``exc`` working on a connection that had
    been closed under the call: a dead connection, not a bug.

    grpclib's close deletes attributes that a late user then misses
    (``Connection._transport``, ``H2Connection._frame_dispatch_table``,
    ``EventsProcessor.processors``: grpclib issues 110, 140, 153, 156), and h2
    refuses to send on a connection it saw a GOAWAY for (a call that waited
    for the socket to drain while containerd went away raises
    ``h2.exceptions.ProtocolError`` then). Told apart from the same
    exception types raised elsewhere by the state of the connection object
    that raised: the one an AttributeError names, or the ``self`` of the
    grpclib and h2 frames the exception passed through.
    """
    from grpclib import protocol
    from h2.connection import ConnectionState, H2Connection

    def closed(obj: object) -> bool:
        if isinstance(obj, (protocol.Stream, protocol.EventsProcessor)):
            obj = obj.connection
        if isinstance(obj, protocol.Connection):
            return obj.is_closing()  # also True once grpclib's close ran
        if isinstance(obj, H2Connection):
            return (
                not hasattr(obj, "_frame_dispatch_table")
                or obj.state_machine.state is ConnectionState.CLOSED
            )
        return False

    if isinstance(exc, AttributeError) and closed(exc.obj):
        return True
    tb = exc.__traceback__
    while tb is not None:
        if closed(tb.tb_frame.f_locals.get("self")):
            return True
        tb = tb.tb_next
    return False


def _broken_framing(exc: Exception) -> bool:
    """True if grpclib's own reading of gRPC's length-prefixed messages
    failed: a stream that ended inside a message, or a compressed message
    that was never negotiated. A message that arrived whole but does not
    decode fails inside the codec instead, and is no protocol failure."""
    from grpclib import protocol, stream

    if not isinstance(exc, (AssertionError, NotImplementedError)):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code in (
        stream.recv_message.__code__,
        protocol.Buffer.read.__code__,
    )
