"""The fake's events service: subscriptions to a namespace's task events
and the Sync markers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager

from ... import errors
from ..._types import Topic
from ..base import EventStream, Sync
from ._connection import Connection
from ._state import _Subscription

__all__ = ["EventCalls"]


class EventCalls:
    """The Transport's event calls, for :class:`FakeTransport`."""

    _conn: Connection

    @asynccontextmanager
    async def subscribe(
        self, topics: Collection[Topic] | None = None
    ) -> AsyncIterator[EventStream]:
        await self._conn.before("subscribe")
        sub = _Subscription(
            self._conn, self._conn.name, None if topics is None else frozenset(topics)
        )
        self._conn.daemon.subscriptions.append(sub)
        stream = self._stream(sub)
        try:
            yield stream
        finally:
            if sub in self._conn.daemon.subscriptions:
                self._conn.daemon.subscriptions.remove(sub)
            await stream.aclose()

    @staticmethod
    async def _stream(sub: _Subscription) -> EventStream:
        while True:
            if sub.items:
                yield sub.items.popleft()
            elif sub.error is not None:
                raise errors.Unavailable(sub.error)
            else:
                await sub.changed().wait()

    async def sync(self, token: str) -> None:
        await self._conn.before("sync")
        marker = Sync(token)
        for sub in self._conn.daemon.subscriptions:
            if sub.namespace == self._conn.name:
                sub.push(marker)
        await self._conn.after("sync")
