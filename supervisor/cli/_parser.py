"""The command line: global options, every subcommand and its flags.

Building the parser imports argparse and nothing of the library: a
subcommand's module (and with it grpclib and the generated bindings) is
loaded only once that subcommand is dispatched (see ``_main``). The daemon
subcommand's parser belongs to ``_daemon``, which loads the embedded
containerd's code; it is built only when ``daemon`` is the subcommand.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ._errors import EXIT_FAILED

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


# -- value types ----------------------------------------------------------------

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?")
_SCALE = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``64m``, ``1.5g``, ``512k``, ``64MiB`` or plain bytes."""
    match = _SIZE.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 64m, 1g, 512k)")
    value = int(float(match.group(1)) * _SCALE[match.group(2)])
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, not {text!r}")
    return value


def parse_signal(text: str) -> int:
    """``TERM``, ``SIGKILL`` or a number."""
    if text.isdigit():
        number = int(text)
        if not 1 <= number <= 64:
            raise argparse.ArgumentTypeError(f"signal {number} is out of range (1..64)")
        return number
    name = text.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise argparse.ArgumentTypeError(f"unknown signal {text!r}") from None


def parse_cpus(text: str) -> float:
    """A number of CPUs, e.g. ``0.5`` or ``2``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad number of CPUs {text!r}") from None
    if not 0.01 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"--cpus must be between 0.01 and 1024, not {text}")
    return value


def parse_pids_limit(text: str) -> int:
    """A positive process count, or -1 for no limit."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad pids limit {text!r}") from None
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError("--pids-limit must be positive (or -1: no limit)")
    return value


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad number of seconds {text!r}") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"seconds must be positive, not {text}")
    return value


def parse_stop_time(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad number of seconds {text!r}") from None
    if not 0 <= value < 1e6:
        raise argparse.ArgumentTypeError(f"seconds must not be negative, not {text}")
    return value


# -- the parser -----------------------------------------------------------------


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


def _format_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        choices=["table", "json"],
        default="table",
        help="a table (default) or JSON",
    )
    p.add_argument("--json", action="store_true", help="same as --format json")


def _command(p: argparse.ArgumentParser) -> None:
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")


def _process_options(p: argparse.ArgumentParser) -> None:
    """Options of the process itself, shared by run and exec."""
    p.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="KEY[=VALUE]",
        help="set an environment variable (KEY alone: take it from here)",
    )
    p.add_argument(
        "--env-file",
        action="append",
        default=[],
        metavar="FILE",
        help="read KEY=VALUE lines from FILE",
    )
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory in the container")
    p.add_argument("-u", "--user", metavar="UID[:GID]", help="user (and group) to run as")
    p.add_argument("-i", "--interactive", action="store_true", help="connect stdin")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    p.add_argument(
        "-d", "--detach", action="store_true", help="start it in the background, print its id"
    )


def _resource_options(p: argparse.ArgumentParser, *, update: bool = False) -> None:
    p.add_argument("-m", "--memory", type=parse_size, help="memory limit, e.g. 64m")
    p.add_argument("--cpus", type=parse_cpus, help="CPU limit, e.g. 0.5")
    p.add_argument(
        "--pids-limit",
        type=parse_pids_limit,
        help="most processes at once" + (" (-1: no limit)" if update else ""),
    )


def _run(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rootfs", metavar="DIR", help="root filesystem directory (else: run IMAGE [CMD...])"
    )
    p.add_argument(
        "--name", "--id", dest="id", metavar="ID", help="container id (default: made up)"
    )
    _process_options(p)
    p.add_argument(
        "-v",
        "--volume",
        action="append",
        default=[],
        metavar="SRC:DST[:ro]",
        help="bind-mount host path SRC at DST",
    )
    p.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="type=bind,src=S,dst=D[,ro]",
        help="a bind or tmpfs mount (type=tmpfs,dst=D)",
    )
    _resource_options(p)
    p.add_argument("--hostname", metavar="NAME", help="hostname (default: the container id)")
    p.add_argument(
        "--network",
        choices=["none", "host"],
        default="none",
        help="none: a network namespace of its own with loopback only (default); "
        "host: the host's network",
    )
    rw = p.add_mutually_exclusive_group()
    rw.add_argument(
        "--read-only", action="store_true", help="mount the root filesystem read-only (default)"
    )
    rw.add_argument(
        "--writable", action="store_true", help="let the container write to the rootfs directory"
    )
    p.add_argument("--rm", action="store_true", help="delete the container when it exits")
    p.add_argument(
        "--log-path",
        metavar="FILE",
        help="append the container's output to FILE (read it back with 'logs')",
    )
    p.add_argument("--runtime", help="containerd shim (default io.containerd.runc.v2)")
    p.add_argument(
        "--pull",
        choices=["missing", "always", "never"],
        default="missing",
        help="with IMAGE: pull it when it is not here (default), always, or never",
    )
    p.add_argument(
        "--embedded",
        metavar="DIR",
        help="start a containerd of our own under DIR for this run instead of --address",
    )
    _command(p)


def _exec(p: argparse.ArgumentParser) -> None:
    p.add_argument("container")
    _process_options(p)
    p.add_argument("--exec-id", metavar="ID", help="the process's id (default: made up)")
    _command(p)


def _start(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--attach", action="store_true", help="stream its output and wait")
    p.add_argument("-i", "--interactive", action="store_true", help="connect stdin (with -a)")
    _containers(p)


def _stop(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-t", "--time", type=parse_stop_time, default=10.0, help="seconds before SIGKILL"
    )
    p.add_argument("-s", "--signal", type=parse_signal, default=int(signal.SIGTERM))
    _containers(p)


def _rm(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    _containers(p)


def _kill(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-s", "--signal", type=parse_signal, default=int(signal.SIGKILL), help="default KILL"
    )
    p.add_argument("--all", action="store_true", help="signal every process of the task")
    _containers(p)


def _containers(p: argparse.ArgumentParser) -> None:
    p.add_argument("containers", nargs="+", metavar="CONTAINER")


def _update(p: argparse.ArgumentParser) -> None:
    _resource_options(p, update=True)
    _containers(p)


def _ps(p: argparse.ArgumentParser) -> None:
    _format_option(p)
    p.add_argument("-q", "--quiet", action="store_true", help="ids only")


def _inspect(p: argparse.ArgumentParser) -> None:
    _format_option(p)
    _containers(p)


def _stats(p: argparse.ArgumentParser) -> None:
    _format_option(p)
    p.add_argument("--no-stream", action="store_true", help="one sample, then exit")
    p.add_argument("--interval", type=parse_seconds, default=1.0, help="seconds between samples")
    p.add_argument("containers", nargs="*", metavar="CONTAINER")


def _logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until it exits")
    p.add_argument("container")


def _pull(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", metavar="REF")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="default: this machine's")
    p.add_argument("--plain-http", action="store_true", help="plain HTTP, not TLS")
    p.add_argument(
        "--insecure", action="store_true", dest="plain_http", help=argparse.SUPPRESS
    )  # the old name of --plain-http
    p.add_argument("--skip-verify", action="store_true", help="do not verify the TLS certificate")
    p.add_argument("--tlscacert", metavar="FILE", help="CA certificates (PEM) for the registry")
    p.add_argument("--tlscert", metavar="FILE", help="client certificate (PEM)")
    p.add_argument("--tlskey", metavar="FILE", help="client key (PEM)")
    p.add_argument("-u", "--user", metavar="USER:PASS", help="registry credentials")


def _rmi(p: argparse.ArgumentParser) -> None:
    p.add_argument("refs", nargs="+", metavar="REF")


def _import(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE")
    p.add_argument("--name", metavar="REF", help="store the (one) image under this name")


def _export(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", metavar="REF")
    p.add_argument("file", metavar="FILE")


_Builder = Callable[[argparse.ArgumentParser], None]

# name: (handler "module:function", help, description or None, its arguments)
_SUBCOMMANDS: dict[str, tuple[str, str, str | None, _Builder]] = {
    "run": (
        "_run:run",
        "run a command in a new container",
        "Run a command in a new container made from a root filesystem directory\n"
        "(--rootfs DIR -- CMD...) or from an image (IMAGE [CMD...], pulled if missing).\n\n"
        "The root filesystem is mounted read-only unless --writable is given: the\n"
        "directory is used in place (no copy-on-write layer), so containers that\n"
        "share it must not write to it. /tmp is a private tmpfs.\n\n"
        "The command's exit code is the container's.",
        _run,
    ),
    "exec": (
        "_exec:exec_",
        "run a command in a running container",
        "Run a command in a running container, with the container's own environment,\n"
        "working directory and user unless -e, -w or -u say otherwise.",
        _exec,
    ),
    "start": ("_lifecycle:start", "start stopped containers", None, _start),
    "stop": (
        "_lifecycle:stop",
        "stop running containers",
        "Send SIGTERM (or --signal), wait up to --time seconds, then SIGKILL.",
        _stop,
    ),
    "rm": ("_lifecycle:rm", "delete containers", None, _rm),
    "kill": ("_lifecycle:kill", "send a signal to containers", None, _kill),
    "pause": ("_lifecycle:pause", "freeze every process of containers", None, _containers),
    "unpause": ("_lifecycle:unpause", "thaw paused containers", None, _containers),
    "update": ("_lifecycle:update", "change running containers' limits", None, _update),
    "ps": ("_ps:ps", "list containers", None, _ps),
    "inspect": ("_show:inspect", "show containers in detail", None, _inspect),
    "stats": (
        "_stats:stats",
        "live CPU, memory and process counts",
        "Live CPU %, memory and process counts of running containers (all of them\n"
        "unless named), refreshed every --interval seconds until interrupted.",
        _stats,
    ),
    "logs": (
        "_show:logs",
        "print a container's log file",
        "Print the output of a container run with --log-path.",
        _logs,
    ),
    "events": ("_events:events", "print task events as they happen", None, _format_option),
    "version": (
        "_show:version",
        "the supervisor's and containerd's versions",
        None,
        _format_option,
    ),
    "pull": ("_images:pull", "pull an image and unpack it", None, _pull),
    "images": ("_images:images", "list images", None, _format_option),
    "rmi": ("_images:rmi", "remove images", None, _rmi),
    "import": ("_images:import_", "import an OCI layout or docker save tar", None, _import),
    "export": ("_images:export", "write an image as an OCI layout tar", None, _export),
}


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
        for name, (_, help, _, _) in _SUBCOMMANDS.items():
            sub.add_parser(name, help=help, add_help=False)
        sub.add_parser("daemon", help=_DAEMON_HELP, add_help=False)
    elif selected == "daemon":
        from ._daemon import add_parser as add_daemon_parser

        add_daemon_parser(sub, common)
    else:
        handler, help, description, build = _SUBCOMMANDS[selected]
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
            return token if token in _SUBCOMMANDS or token == "daemon" else None
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
