"""``checkpoint``'s verbs and their arguments (no more than argparse: the
parser is built before anything else loads)."""

from __future__ import annotations

import argparse

__all__ = ["add_checkpoint_verbs"]


def add_checkpoint_verbs(p: argparse.ArgumentParser) -> None:
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    create = verbs.add_parser("create", help="checkpoint a running container")
    create.add_argument(
        "--leave-running",
        action="store_true",
        help="the container runs on (default: it is stopped by the checkpoint)",
    )
    create.add_argument(
        "--rw",
        action="store_true",
        help="save the container's file changes too (a container made from an image), "
        "so that it can be restored into a new container",
    )
    create.add_argument("container", metavar="CONTAINER")
    create.add_argument("name", metavar="NAME")
    ls = verbs.add_parser("ls", help="list checkpoints")
    ls.add_argument("--format", choices=["table", "json"], default="table")
    ls.add_argument("--json", action="store_true", help="same as --format json")
    rm = verbs.add_parser("rm", help="remove checkpoints")
    rm.add_argument("names", nargs="+", metavar="NAME")
