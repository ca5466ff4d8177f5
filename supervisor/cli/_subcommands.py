"""Every subcommand of ``supervisor`` (but ``daemon``, whose parser belongs
to ``_daemon``): the module and function that handle it, its help, and the
flags it takes."""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable

from ._arg_types import (
    parse_cpus,
    parse_pids_limit,
    parse_seconds,
    parse_signal,
    parse_size,
    parse_stop_time,
)
from ._checkpoint_args import add_checkpoint_verbs
from ._cp import add_cp_arguments
from ._network import add_network_options

__all__ = ["SUBCOMMANDS"]


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
    add_network_options(p)
    rw = p.add_mutually_exclusive_group()
    rw.add_argument(
        "--read-only", action="store_true", help="mount the root filesystem read-only (default)"
    )
    rw.add_argument(
        "--writable", action="store_true", help="let the container write to the rootfs directory"
    )
    p.add_argument("--rm", action="store_true", help="delete the container when it exits")
    p.add_argument(
        "--restart",
        metavar="POLICY",
        help="no, on-failure[:N], always, unless-stopped: recorded with the container, "
        "enforced by the application that holds the state directory (see docs/supervision.md)",
    )
    p.add_argument(
        "--log-path",
        metavar="FILE",
        help="append the container's output to FILE, CRI log format (read it back with 'logs')",
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
    p.add_argument(
        "--checkpoint", metavar="NAME", help="restore the processes from this checkpoint (CRIU)"
    )
    _containers(p)


def _stop(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-t", "--time", type=parse_stop_time, default=10.0, help="seconds before SIGKILL"
    )
    p.add_argument(
        "-s", "--signal", type=parse_signal, default=None, help="default: the image's, else TERM"
    )
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
    from ._log_args import add_log_arguments

    add_log_arguments(p)


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
SUBCOMMANDS: dict[str, tuple[str, str, str | None, _Builder]] = {
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
    "start": ("_checkpoint:start", "start stopped containers", None, _start),
    "stop": (
        "_lifecycle:stop",
        "stop running containers",
        "Send --signal (default: the image's StopSignal, else SIGTERM), wait up to\n"
        "--time seconds, then SIGKILL every process; the task is deleted.",
        _stop,
    ),
    "restart": (
        "_lifecycle:restart",
        "stop containers, then start them again",
        "Stop as `stop` does, then start a new task as `start` does.",
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
        "_logs:logs",
        "print a container's log file",
        "Print the output of a container run with --log-path: stdout lines on stdout,\n"
        "stderr lines on stderr. T is an RFC 3339 time (2026-12-07T10:02:00Z),\n"
        "seconds since the epoch, or a duration before now (10m, 1h30m).",
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
    "cp": (
        "_cp:cp",
        "copy files between a container and this machine",
        "cp ID:SRC DEST or cp SRC ID:DEST, as docker cp: into a directory that\n"
        "exists, else as DEST itself; - for a tar on stdin or stdout. With a task,\n"
        "what its processes see; without one, the snapshot or the spec's root.",
        add_cp_arguments,
    ),
    "images": ("_images:images", "list images", None, _format_option),
    "rmi": ("_images:rmi", "remove images", None, _rmi),
    "import": ("_images:import_", "import an OCI layout or docker save tar", None, _import),
    "export": ("_images:export", "write an image as an OCI layout tar", None, _export),
    "checkpoint": (
        "_checkpoint:checkpoint",
        "checkpoint containers with CRIU, list and remove checkpoints",
        "create [--leave-running] CONTAINER NAME: save the running container's\n"
        "processes (stopped by it unless --leave-running); ls; rm NAME...;\n"
        "start --checkpoint NAME CONTAINER restores them (docs/checkpoint.md).",
        add_checkpoint_verbs,
    ),
}
