"""The command line: the global options, and the parser of the one
subcommand given (each subcommand's flags are in ``_subcommands``, the
types of their values in ``_arg_types``).

Building the parser imports argparse and nothing of the library: a
subcommand's module (and with it grpclib and the generated bindings) is
loaded only once that subcommand is dispatched (see ``_main``). The daemon
subcommand's parser belongs to ``_daemon``, which loads the embedded
containerd's code; it is built only when ``daemon`` is the subcommand.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from ._arg_types import parse_cpus, parse_seconds, parse_signal, parse_size
from ._errors import EXIT_FAILED
from ._subcommands import SUBCOMMANDS

__all__ = ["Parser", "build_parser", "parse", "parse_cpus", "parse_signal", "parse_size"]

DEFAULT_ADDRESS = "/run/containerd/containerd.sock"
DEFAULT_NAMESPACE = "default"
DEFAULT_TIMEOUT = 10.0

_DESCRIPTION = """\
Run and manage containers through containerd.

Global options go before the subcommand (as with ctr and nerdctl); --address,
--namespace, --timeout, --state-dir and the logging options are also taken
after it.

exit codes: 125 the supervisor or containerd failed (or the command line is
wrong), 126 the container's command cannot be invoked, 127 it was not found;
otherwise the container's own exit code.
"""

_DAEMON_HELP = "run an embedded containerd in the foreground (SIGHUP reloads --config)"


class Parser(argparse.ArgumentParser):
    """argparse without abbreviated long options (``--name`` must never be
    read as ``--namespace``), exiting 125 on a usage error as docker does:
    2 is a plausible exit code of the container's own command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_FAILED, f"{self.prog}: error: {message}\n")


def _env_default(name: str, fallback: str) -> str:
    return os.environ.get(name) or fallback


def _add_connection(p: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every subcommand shares. At the top they carry the
    defaults; after the subcommand they are overrides that are absent unless
    given (SUPPRESS), so a value given before the subcommand stands."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    p.add_argument(
        *(("-a",) if top else ()),
        "--address",
        metavar="SOCK",
        default=default(_env_default("CONTAINERD_ADDRESS", DEFAULT_ADDRESS)),
        help="containerd's socket (default $CONTAINERD_ADDRESS or " + DEFAULT_ADDRESS + ")",
    )
    p.add_argument(
        *(("-n",) if top else ()),
        "--namespace",
        metavar="NS",
        default=default(_env_default("CONTAINERD_NAMESPACE", DEFAULT_NAMESPACE)),
        help="containerd namespace (default $CONTAINERD_NAMESPACE or " + DEFAULT_NAMESPACE + ")",
    )
    p.add_argument(
        "--timeout",
        metavar="S",
        type=parse_seconds,
        default=default(DEFAULT_TIMEOUT),
        help=f"seconds to wait for containerd to answer (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        default=default(None),
        help="where the supervisor keeps bundles and FIFOs "
        "(default /run/containerd-supervisor for root)",
    )
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=default("warning"),
        help="the supervisor's own log lines on stderr (default warning)",
    )
    p.add_argument(
        "--log-format",
        choices=["console", "json"],
        default=default("console"),
        help="how log lines look (default console)",
    )


def build_parser(selected: str | None = None) -> Parser:
    """The parser; with ``selected``, holding that subcommand alone.

    Each parser argparse makes costs translation-catalogue look-ups on disk,
    so only the one subcommand given is built (``daemon``'s also loads the
    embedded containerd's code). Without one (``supervisor --help``, or no
    subcommand found), every subcommand is a placeholder that only shows in
    the listing.
    """
    from .. import __version__

    common = Parser(add_help=False)
    _add_connection(common, top=False)

    parser = Parser(prog="supervisor", description=_DESCRIPTION)
    _add_connection(parser, top=True)
    parser.add_argument("--version", action="version", version=f"supervisor {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    if selected is None:
        for name, (_, help, _, _) in SUBCOMMANDS.items():
            sub.add_parser(name, help=help, add_help=False)
        sub.add_parser("daemon", help=_DAEMON_HELP, add_help=False)
    elif selected == "daemon":
        from ._daemon import add_parser as add_daemon_parser

        add_daemon_parser(sub, common)
    else:
        handler, help, description, build = SUBCOMMANDS[selected]
        p: Parser = sub.add_parser(
            selected, parents=[common], help=help, description=description or help
        )
        p.set_defaults(handler=handler)
        build(p)
    return parser


# Global options that take a value: what to skip when looking for the subcommand.
_VALUED = frozenset(
    {"-a", "--address", "-n", "--namespace", "--timeout", "--state-dir", "--log-level"}
    | {"--log-format"}
)


def subcommand(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (after the global options), or None
    when there is none or help is asked for before it."""
    tokens = iter(argv)
    for token in tokens:
        if token in ("-h", "--help", "--"):
            return None
        if token in _VALUED:
            next(tokens, None)
        elif not token.startswith("-"):
            return token if token in SUBCOMMANDS or token == "daemon" else None
    return None


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line (exits 0 after --help/--version, 125 on a usage error)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(subcommand(args_list)).parse_args(args_list)
    if getattr(args, "json", False):
        args.format = "json"
    command = getattr(args, "command", None)
    if command and command[0] == "--":
        args.command = command[1:]
    return args
