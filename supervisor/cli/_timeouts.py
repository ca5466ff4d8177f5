"""The bounds every subcommand reaches containerd with."""

from __future__ import annotations

import argparse

from .._timeouts import Timeouts

__all__ = ["cli_timeouts"]

# Each call's own deadline is never shorter than the library's default:
# --timeout is about reaching containerd, not about how long runc may take.
_MIN_RPC = 30.0


def cli_timeouts(args: argparse.Namespace) -> Timeouts:
    return Timeouts(connect=args.timeout, rpc=max(args.timeout, _MIN_RPC))
