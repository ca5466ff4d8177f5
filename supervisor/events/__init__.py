"""Task events: the keyed ordered queue, event kinds, and the backend protocol.

``Queue`` runs jobs one at a time per key and concurrently across keys; the
client's event monitor (``_monitor``) feeds every task event through one, keyed
by container id, to the application's :class:`Backend`.
"""

from ._queue import Queue
from ._types import Backend, EventInfo, EventType

__all__ = ["Backend", "EventInfo", "EventType", "Queue"]
