"""``supervisor events``: the namespace's task events as they happen, until
SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import json
import signal
from dataclasses import asdict
from typing import Any

import anyio

from ..events import EventInfo, EventType
from ._connection import open_client
from ._format import printable, rfc3339

__all__ = ["events"]


class _Printer:
    """A Backend that prints each event as it is delivered."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    async def process_event(self, container_id: str, event: EventType, info: EventInfo) -> None:
        if self.as_json:
            record: dict[str, Any] = {"event": event.value, **asdict(info)}
            for key in ("exited_at", "timestamp"):
                record[key] = rfc3339(record[key])
            print(json.dumps(record), flush=True)
            return
        extra = ""
        if event is EventType.EXIT:
            extra = f" exit_code={info.exit_code} oom_killed={info.oom_killed}"
        when = rfc3339(info.timestamp) or "-"
        print(
            f"{when} {event.value:<13} {printable(container_id)} "
            f"process={printable(info.process_id)} pid={info.pid}{extra}",
            flush=True,
        )


async def events(args: argparse.Namespace) -> int:
    printer = _Printer(args.format == "json")
    async with open_client(args, events=True, observe=True, backend=printer):
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as sigs:
            async for _ in sigs:
                break
    return 0
