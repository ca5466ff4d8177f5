"""``supervisor daemon``: run the embedded containerd in the foreground.

SIGINT or SIGTERM stops it (containerd gets SIGTERM, running containers'
shims are left alone); SIGHUP reloads ``--config``. A reload that fails keeps
the configuration in force and says why (``daemon.reload_failed``); a
``--config`` that cannot be used at start is one line on stderr and exit
code 2, before anything is started.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

import anyio

from .. import errors
from .._log import get_logger
from ..daemon import Daemon, DaemonConfig

_log = get_logger("cli.daemon")

# argparse's exit code for a command line it refuses: a bad --config is one.
EXIT_BAD_CONFIG = 2


def _load(path: Path | None) -> DaemonConfig:
    return DaemonConfig() if path is None else DaemonConfig.load(path)


async def cmd_daemon(args: argparse.Namespace) -> int:
    config_file: Path | None = args.config
    try:
        config = _load(config_file)
    except errors.InvalidArgument as exc:
        message = " ".join(str(exc).split())  # one line, whatever TOML said
        print(f"supervisor daemon: bad --config: {message}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    base = Path(args.dir)
    async with Daemon(
        args.root or base / "root",
        args.state or base / "state",
        binary=args.binary,
        log_level=args.containerd_log_level,
        config=config,
    ) as daemon:
        async with anyio.create_task_group() as tg:

            async def until_failed() -> None:
                # A watchdog that died fails the daemon: the command ends,
                # and leaving the context reports why.
                await daemon.wait_failed()
                tg.cancel_scope.cancel()

            tg.start_soon(until_failed)
            await _serve(daemon, config_file)
            tg.cancel_scope.cancel()
    return 0


async def _serve(daemon: Daemon, config_file: Path | None) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        # Printed, not only logged: scripts wait for this line to connect,
        # or to send SIGHUP, which must find its handler in place.
        print(f"containerd ready at {daemon.address} (pid {daemon.pid})", flush=True)
        async for signum in signals:
            if signum != signal.SIGHUP:
                _log.info("daemon.signal", signal=signal.Signals(signum).name)
                return
            if config_file is None:
                _log.info("daemon.reload_skipped", reason="no --config given")
                continue
            try:
                daemon.reload(_load(config_file))
            except Exception as exc:  # noqa: BLE001 - a bad reload must not end the daemon
                # Whatever went wrong, containerd keeps running on the
                # configuration in force; the operator reads why.
                _log.error(
                    "daemon.reload_failed",
                    path=str(config_file),
                    error=str(exc) or type(exc).__name__,
                )


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``daemon`` subcommand to the ``supervisor`` command's parser."""
    p = sub.add_parser(
        "daemon",
        parents=[common],
        help="run an embedded containerd in the foreground (SIGHUP reloads --config)",
    )
    p.add_argument(
        "--dir",
        default="/var/lib/containerd-supervisor",
        help="base directory; root and state default to DIR/root and DIR/state",
    )
    p.add_argument("--root", type=Path, help="containerd's root directory")
    p.add_argument("--state", type=Path, help="config, socket, pid file and containerd state")
    p.add_argument("--binary", default="containerd", help="the containerd executable")
    p.add_argument("--config", type=Path, help="TOML: runtimes, default_runtime, log_level")
    p.add_argument(
        "--containerd-log-level",
        choices=["trace", "debug", "info", "warn", "error"],
        help="containerd's own log level (default: the config's log_level)",
    )
    p.set_defaults(func=cmd_daemon, containerd_chatter=True)
