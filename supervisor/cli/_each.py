"""The subcommands that act on each named thing in turn (``rm``, ``stop``,
``rmi``, ``checkpoint rm``, ...): one that fails is reported and the others
are still done; the exit code is then 125."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from .. import errors
from ._connection import open_client
from ._errors import EXIT_FAILED, CliError, describe

if TYPE_CHECKING:
    from ..client._client import Client

__all__ = ["each_named"]


async def each_named(
    args: argparse.Namespace,
    names: Iterable[str],
    action: Callable[[Client, str], Awaitable[str | None]],
    *,
    observe: bool,
) -> int:
    """``action`` on every name; what it returns (if not None) is printed."""
    failed = False
    async with open_client(args, observe=observe) as client:
        for name in names:
            try:
                done = await action(client, name)
            except errors.Unavailable:
                raise  # nothing else will work either
            except (errors.SupervisorError, CliError) as exc:
                failed = True
                print(describe(exc, args.address), file=sys.stderr)
                continue
            if done is not None:
                print(done, flush=True)
    return EXIT_FAILED if failed else 0
