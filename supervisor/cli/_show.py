"""``inspect`` and ``version``: looking, never changing (``logs`` is in ``_logs``).

Tables by default, JSON with ``--format json`` (times in RFC 3339).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any

import anyio

from .. import errors
from .._types import ProcessState
from ..domain._container import Container
from ..domain._supervised_state import Record
from ..domain._task import Task
from ._connection import open_client
from ._format import command_line, human_bytes, printable, rfc3339, spec_args
from ._options import LOG_PATH_LABEL
from ._supervision import supervision_fields, supervision_json, supervision_of

__all__ = ["inspect", "version"]


@dataclass
class _State:
    """A container and what its task is doing."""

    container: Container
    task: Task | None
    state: ProcessState | None = None
    exit_code: int | None = None
    exited_at: Any = None
    pids: list[int] = field(default_factory=list)
    supervision: Record | None = None

    @property
    def status(self) -> str:
        if self.state is None:
            return "stopped"  # no task: created, or stopped and its task deleted
        if self.state is ProcessState.STOPPED:
            return "exited" if self.exit_code is None else f"exited ({self.exit_code})"
        return str(self.state.value)

    @property
    def pid(self) -> int | None:
        if self.task is None or self.state is ProcessState.STOPPED:
            return None
        return self.task.pid or None


async def _fill(entry: _State, pids: bool) -> None:
    task = entry.task
    if task is None:
        return
    try:
        entry.state = await task.status()
        if entry.state is ProcessState.STOPPED:
            # Already over: the wait returns at once.
            status = await task.wait()
            entry.exit_code, entry.exited_at = status.exit_code, status.exited_at
        elif pids:
            entry.pids = [p.pid for p in await task.pids()]
    except errors.NotFound:
        entry.task, entry.state = None, None  # deleted meanwhile


async def _states(
    pairs: list[tuple[Container, Task | None]], *, pids: bool = False
) -> list[_State]:
    entries = [_State(c, t) for c, t in pairs]
    async with anyio.create_task_group() as tg:
        for entry in entries:
            tg.start_soon(_fill, entry, pids)
    return entries


# -- what ps and inspect show ---------------------------------------------------


def _ps_record(e: _State) -> dict[str, Any]:
    return {
        "id": e.container.id,
        "status": e.state.value if e.state is not None else "stopped",
        "pid": e.pid,
        "exit_code": e.exit_code,
        "exited_at": rfc3339(e.exited_at),
        "command": spec_args(e.container.spec),
        "runtime": e.container.runtime,
        "labels": e.container.labels,
    }


# -- inspect ----------------------------------------------------------------------


def _inspect_record(e: _State) -> dict[str, Any]:
    return {
        **_ps_record(e),
        "processes": e.pids,
        "log_path": e.container.labels.get(LOG_PATH_LABEL),
        "bundle_dir": str(e.container.bundle_dir),
        "spec": e.container.spec,
        "supervision": supervision_json(e.supervision),
    }


def _limits(spec: dict[str, Any]) -> str:
    res = (spec.get("linux") or {}).get("resources") or {}
    parts = []
    limit = (res.get("memory") or {}).get("limit")
    if isinstance(limit, int) and limit > 0:
        parts.append(f"memory {human_bytes(limit)}")
    cpu = res.get("cpu") or {}
    quota, period = cpu.get("quota"), cpu.get("period")
    if isinstance(quota, int) and isinstance(period, int) and quota > 0 and period > 0:
        parts.append(f"cpus {quota / period:g}")
    pids = (res.get("pids") or {}).get("limit")
    if isinstance(pids, int) and pids > 0:
        parts.append(f"pids {pids}")
    return ", ".join(parts) or "none"


# The mounts every container gets (see default_spec): not worth listing.
_STANDARD_MOUNTS = frozenset({"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"})


def _mount_text(m: dict[str, Any]) -> str:
    options = m.get("options") or []
    mode = " (ro)" if "ro" in options else ""
    return f"{m.get('source')} -> {m.get('destination')} [{m.get('type')}]{mode}"


def _inspect_text(e: _State) -> str:
    spec = e.container.spec
    process = spec.get("process") or {}
    root = spec.get("root") or {}
    user = process.get("user") or {}
    namespaces = {ns.get("type") for ns in (spec.get("linux") or {}).get("namespaces") or []}
    mounts = [
        _mount_text(m)
        for m in spec.get("mounts") or []
        if m.get("destination") not in _STANDARD_MOUNTS
    ]
    fields: list[tuple[str, list[str]]] = [
        ("ID", [e.container.id]),
        ("Status", [e.status]),
        ("Pid", [str(e.pid or "")]),
        ("Processes", [" ".join(str(p) for p in e.pids)]),
        ("Exited at", [rfc3339(e.exited_at) or ""]),
        ("Command", [command_line(spec_args(e.container.spec))]),
        ("Rootfs", [f"{root.get('path')}{' (read-only)' if root.get('readonly') else ''}"]),
        ("Hostname", [str(spec.get("hostname") or "")]),
        ("Network", ["own namespace" if "network" in namespaces else "host"]),
        ("Terminal", ["yes" if process.get("terminal") else "no"]),
        ("Working dir", [str(process.get("cwd") or "/")]),
        ("User", [f"{user.get('uid', 0)}:{user.get('gid', 0)}"]),
        ("Env", [str(v) for v in process.get("env") or []]),
        ("Mounts", mounts),
        ("Limits (spec)", [_limits(spec)]),
        ("Runtime", [e.container.runtime]),
        ("Log path", [e.container.labels.get(LOG_PATH_LABEL) or ""]),
        ("Labels", [f"{k}={v}" for k, v in sorted(e.container.labels.items())]),
        *supervision_fields(e.supervision),
    ]
    width = max(len(name) for name, _ in fields) + 2
    lines = []
    for name, values in fields:
        values = values or [""]
        values = [printable(v) for v in values]
        lines.append(f"{name + ':':<{width}}{values[0]}".rstrip())
        lines.extend(f"{'':<{width}}{v}" for v in values[1:])
    return "\n".join(lines)


async def inspect(args: argparse.Namespace) -> int:
    found: list[tuple[Container, Task | None]] = []
    failed = False
    async with open_client(args, observe=True) as client:
        for cid in args.containers:
            try:
                container = await client.load_container(cid)
            except errors.NotFound:
                print(f"supervisor: no such container: {cid}", file=sys.stderr)
                failed = True
                continue
            try:
                task: Task | None = await container.task()
            except errors.NotFound:
                task = None
            found.append((container, task))
        entries = await _states(found, pids=True)
    for e in entries:
        e.supervision = supervision_of(args, e.container.id)
    if args.format == "json":
        print(json.dumps([_inspect_record(e) for e in entries], indent=2))
    else:
        print("\n\n".join(_inspect_text(e) for e in entries))
    return 125 if failed else 0


# -- version ----------------------------------------------------------------------


async def version(args: argparse.Namespace) -> int:
    from .. import __version__

    if args.format != "json":
        print(f"Client:\n  supervisor  {__version__}", flush=True)
    async with open_client(args, observe=True) as client:
        server = await client.version()
    if args.format == "json":
        print(json.dumps({"client": {"supervisor": __version__}, "server": {"containerd": server}}))
    else:
        print(f"Server:\n  containerd  {server}")
    return 0
