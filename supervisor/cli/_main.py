"""The ``supervisor`` command: run, exec, ps, kill, stats, events (and daemon).

Every subcommand takes ``--address`` and ``--namespace``; ``run`` can also
start an embedded containerd of its own (``--embedded DIR``) for the length
of the run, which is what ``make run`` shows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

from .. import errors
from .._client import Client
from .._connect import connect
from .._process import Process
from .._spec import default_spec, process_spec
from .._types import ExitStatus
from ..daemon import Daemon
from ..events import EventInfo, EventType
from ._daemon import add_parser as add_daemon_parser
from ._logging import configure_logging

DEFAULT_ADDRESS = os.environ.get("CONTAINERD_ADDRESS", "/run/containerd/containerd.sock")
DEFAULT_NAMESPACE = os.environ.get("CONTAINERD_NAMESPACE", "default")


def parse_size(text: str) -> int:
    """``64m``, ``1g``, ``512k`` or plain bytes."""
    match = re.fullmatch(r"(\d+)([kmg]?)b?", text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"bad size {text!r}")
    return int(match.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2)]


def parse_signal(text: str) -> int:
    if text.isdigit():
        return int(text)
    name = text.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise argparse.ArgumentTypeError(f"unknown signal {text!r}") from None


# -- stdio plumbing ------------------------------------------------------------


async def pump_out(stream: ByteReceiveStream | None, fd: int) -> None:
    """Copy a process's output to our ``fd`` as it arrives."""
    if stream is None:
        return
    while True:
        try:
            data = await stream.receive()
        except anyio.EndOfStream:
            return
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]


async def pump_in(stream: ByteSendStream | None, process: Process) -> None:
    """Copy our stdin to the process, then close its stdin."""
    if stream is None:
        return
    while True:
        data = await anyio.to_thread.run_sync(os.read, 0, 65536, abandon_on_cancel=True)
        if not data:
            break
        await stream.send(data)
    await process.close_stdin()


async def attach_and_wait(process: Process, *, stdin: bool) -> ExitStatus:
    """Stream stdio both ways, forward SIGINT/SIGTERM/SIGWINCH, and wait for the exit."""

    async def forward_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGWINCH) as sigs:
            strikes = 0
            async for sig in sigs:
                if sig == signal.SIGWINCH:
                    with contextlib.suppress(OSError, errors.SupervisorError):
                        size = os.get_terminal_size(1)
                        await process.resize(size.columns, size.lines)
                    continue
                strikes += 1  # a second ^C means it
                with contextlib.suppress(errors.NotFound):
                    await process.kill(signal.SIGKILL if strikes > 1 else int(sig))

    async with anyio.create_task_group() as outer:
        outer.start_soon(forward_signals)
        if stdin:
            outer.start_soon(pump_in, process.stdin, process)
        async with anyio.create_task_group() as pumps:
            pumps.start_soon(pump_out, process.stdout, 1)
            pumps.start_soon(pump_out, process.stderr, 2)
            status = await process.wait()
            # Output drains to EOF after the exit; bounded, because a process
            # left behind in the container could hold the pipe open.
            pumps.cancel_scope.deadline = anyio.current_time() + 5
        outer.cancel_scope.cancel()
    return status


# -- subcommands -------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_client(args: argparse.Namespace) -> AsyncIterator[Client]:
    embedded = getattr(args, "embedded", None)
    if embedded is None:
        async with connect(args.address, namespace=args.namespace, state_dir=args.state_dir) as c:
            yield c
        return
    base = Path(embedded)
    # containerd's own chatter (plugin loading, shim clean-up) would drown
    # the container's output; errors still come through.
    async with Daemon(base / "root", base / "state", log_level="error") as daemon:
        async with connect(
            daemon.address,
            namespace=args.namespace,
            state_dir=args.state_dir or base / "supervisor",
        ) as c:
            yield c


async def cmd_run(args: argparse.Namespace) -> int:
    if not args.command:
        raise errors.InvalidArgument("run needs a command after --")
    cid = args.id or f"run-{uuid.uuid4().hex[:12]}"
    spec = default_spec(
        args.command,
        args.rootfs,
        terminal=args.tty,
        memory_limit=args.memory,
        hostname=cid[:63],
    )
    async with open_client(args) as client:
        container = await client.new_container(cid, spec)
        try:
            task = await container.new_task(stdin=args.interactive, terminal=args.tty)
            try:
                await task.start()
                if args.tty and os.isatty(1):
                    size = os.get_terminal_size(1)
                    await task.resize(size.columns, size.lines)
                status = await attach_and_wait(task, stdin=args.interactive)
            finally:
                with anyio.CancelScope(shield=True):
                    await task.delete(force=True)
        finally:
            if args.rm:
                with anyio.CancelScope(shield=True):
                    await container.delete()
    if status.oom_killed:
        print(f"supervisor: {cid} was OOM-killed", file=sys.stderr)
    return status.exit_code


async def cmd_exec(args: argparse.Namespace) -> int:
    if not args.command:
        raise errors.InvalidArgument("exec needs a command after --")
    async with open_client(args) as client:
        container = await client.load_container(args.container)
        task = await container.task()
        exec_id = args.exec_id or f"exec-{uuid.uuid4().hex[:12]}"
        proc = await task.exec(
            exec_id,
            process_spec(args.command, terminal=args.tty),
            stdin=args.interactive,
            terminal=args.tty,
        )
        try:
            await proc.start()
            status = await attach_and_wait(proc, stdin=args.interactive)
        finally:
            with anyio.CancelScope(shield=True):
                await proc.delete(force=True)
    return status.exit_code


async def cmd_ps(args: argparse.Namespace) -> int:
    async with connect(args.address, namespace=args.namespace, events=False) as client:
        rows = []
        for container in await client.containers():
            try:
                task = await container.task()
                state, pid = "running", task.pid
            except errors.NotFound:
                state, pid = "no task", 0
            rows.append((container.id, container.runtime, state, pid))
    if args.json:
        for cid, runtime, state, pid in rows:
            print(json.dumps({"id": cid, "runtime": runtime, "task": state, "pid": pid}))
    else:
        print(f"{'CONTAINER':<30} {'RUNTIME':<24} {'TASK':<10} PID")
        for cid, runtime, state, pid in rows:
            print(f"{cid:<30} {runtime:<24} {state:<10} {pid or ''}")
    return 0


async def cmd_kill(args: argparse.Namespace) -> int:
    async with connect(args.address, namespace=args.namespace, events=False) as client:
        task = await (await client.load_container(args.container)).task()
        await task.kill(args.signal, all=args.all)
    return 0


async def cmd_stats(args: argparse.Namespace) -> int:
    async with connect(args.address, namespace=args.namespace, events=False) as client:
        task = await (await client.load_container(args.container)).task()
        stats = await task.stats()
    if args.json:
        print(json.dumps(asdict(stats), default=str))
    else:
        print(f"memory  {stats.memory.usage} / {stats.memory.limit} bytes")
        print(f"cpu     {stats.cpu.total_usage} ns")
        print(f"pids    {stats.pids.current}")
    return 0


class _Printer:
    """A Backend that prints each event as it is delivered."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    async def process_event(self, container_id: str, event: EventType, info: EventInfo) -> None:
        if self.as_json:
            record = {"event": event.value, **asdict(info)}
            print(json.dumps(record, default=str), flush=True)
        else:
            extra = ""
            if event is EventType.EXIT:
                extra = f" exit_code={info.exit_code} oom_killed={info.oom_killed}"
            print(
                f"{event.value:<13} {container_id} process={info.process_id} pid={info.pid}{extra}",
                flush=True,
            )


async def cmd_events(args: argparse.Namespace) -> int:
    async with connect(args.address, namespace=args.namespace, backend=_Printer(args.json)):
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as sigs:
            async for _ in sigs:
                break
    return 0


# -- parser ------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--address", default=DEFAULT_ADDRESS, help="containerd socket (default: %(default)s)"
    )
    common.add_argument(
        "--namespace", default=DEFAULT_NAMESPACE, help="containerd namespace (default: %(default)s)"
    )
    common.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )
    common.add_argument("--log-format", default="console", choices=["console", "json"])

    parser = argparse.ArgumentParser(prog="supervisor", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", parents=[common], help="run a container and stream its output")
    run.add_argument("--rootfs", required=True, help="root filesystem directory")
    run.add_argument("--id", help="container id (default: generated)")
    run.add_argument("--rm", action="store_true", help="delete the container afterwards")
    run.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    run.add_argument("-i", "--interactive", action="store_true", help="connect stdin")
    run.add_argument("--memory", type=parse_size, help="memory limit, e.g. 64m")
    run.add_argument("--state-dir", type=Path, help="where bundles and FIFOs go")
    run.add_argument(
        "--embedded",
        metavar="DIR",
        help="start a containerd of our own under DIR instead of --address",
    )
    run.add_argument("command", nargs=argparse.REMAINDER)
    run.set_defaults(func=cmd_run)

    ex = sub.add_parser("exec", parents=[common], help="run a process in a running container")
    ex.add_argument("container")
    ex.add_argument("--exec-id")
    ex.add_argument("-t", "--tty", action="store_true")
    ex.add_argument("-i", "--interactive", action="store_true")
    ex.add_argument("--state-dir", type=Path)
    ex.add_argument("command", nargs=argparse.REMAINDER)
    ex.set_defaults(func=cmd_exec)

    ps = sub.add_parser("ps", parents=[common], help="list containers and their tasks")
    ps.add_argument("--json", action="store_true")
    ps.set_defaults(func=cmd_ps)

    kill = sub.add_parser("kill", parents=[common], help="signal a container's task")
    kill.add_argument("container")
    kill.add_argument("--signal", "-s", type=parse_signal, default=int(signal.SIGTERM))
    kill.add_argument("--all", action="store_true", help="signal every process of the task")
    kill.set_defaults(func=cmd_kill)

    stats = sub.add_parser("stats", parents=[common], help="a container's cgroup metrics")
    stats.add_argument("container")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=cmd_stats)

    events = sub.add_parser("events", parents=[common], help="print task events live")
    events.add_argument("--json", action="store_true", help="JSON lines")
    events.set_defaults(func=cmd_events)

    add_daemon_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "command", None) and args.command[0] == "--":
        args.command = args.command[1:]
    if not hasattr(args, "state_dir"):
        args.state_dir = None
    # Paths become absolute here, before the loop runs: containerd and the
    # embedded daemon resolve them from other working directories.
    for name in ("rootfs", "embedded", "state_dir", "dir", "root", "state", "config"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(args, name, type(value)(os.path.abspath(value)))
    configure_logging(
        args.log_level,
        args.log_format,
        containerd_chatter=getattr(args, "containerd_chatter", False),
    )
    try:
        code: int = anyio.run(args.func, args)
    except errors.SupervisorError as exc:
        print(f"supervisor: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code
