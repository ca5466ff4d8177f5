"""``supervisor``: parse the command line, load the one subcommand asked for,
run it, and turn how it ended into an exit code and a message.

Only argparse is loaded to parse: each subcommand's module (and with it
grpclib and the generated bindings, or the embedded containerd's code) is
imported when it is dispatched.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

from ._errors import describe, exit_code
from ._parser import parse

__all__ = ["main"]

# Options holding paths: made absolute before the loop runs, because
# containerd and the embedded daemon resolve them from other directories.
_PATHS = ("rootfs", "embedded", "state_dir", "dir", "root", "state", "config", "log_path")


# inspect.CO_COROUTINE, read without loading inspect (and dis, and ast)
_CO_COROUTINE = 0x80

_Handler = Callable[[argparse.Namespace], Awaitable[int] | int]


def _handler(args: argparse.Namespace) -> _Handler:
    func: _Handler | None = getattr(args, "func", None)
    if func is not None:  # the daemon subcommand sets its own
        return func
    module_name, _, name = args.handler.partition(":")
    module = importlib.import_module(f"{__package__}.{module_name}")
    found: _Handler = getattr(module, name)
    return found


def _run(handler: _Handler, args: argparse.Namespace) -> int:
    # A subcommand that needs no event loop (``ps``) is a plain function: it
    # should not pay for loading asyncio and anyio.
    code = getattr(handler, "__code__", None)
    if code is not None and not code.co_flags & _CO_COROUTINE:
        return cast(int, handler(args))
    import anyio

    coroutine = cast("Callable[[argparse.Namespace], Awaitable[int]]", handler)
    return anyio.run(coroutine, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``supervisor`` command; its exit code."""
    args = parse(argv)
    for name in _PATHS:
        value = getattr(args, name, None)
        if value is not None:
            setattr(args, name, type(value)(os.path.abspath(value)))
    from ._logging import configure_logging

    configure_logging(
        args.log_level,
        args.log_format,
        containerd_chatter=getattr(args, "containerd_chatter", False),
    )
    from .. import errors

    handler = _handler(args)
    try:
        code = _run(handler, args)
    except BaseException as exc:
        error: BaseException = errors.unwrap_group(exc)
        if isinstance(error, KeyboardInterrupt):
            return 130
        if isinstance(error, BrokenPipeError):
            # Our stdout was closed under us (``supervisor ps | head -1``):
            # what a program killed by SIGPIPE would report.
            _silence_stdout()
            return 128 + signal.SIGPIPE
        if not isinstance(error, Exception) or not _expected(error):
            raise
        print(describe(error, args.address), file=sys.stderr)
        return exit_code(error)
    return code


def _expected(exc: Exception) -> bool:
    from .. import errors
    from ._errors import CliError

    return isinstance(exc, errors.SupervisorError | CliError)


def _silence_stdout() -> None:
    # Python flushes stdout again at exit and would report the same broken
    # pipe as an unraisable error.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
