"""Every example in README.md and docs/*.md runs as written.

The fences, and what is done with each:

- ```python: a complete program. It runs in a process of its own, with the
  test containerd's socket in ``SUPERVISOR_ADDRESS`` and a busybox root
  filesystem in ``SUPERVISOR_ROOTFS`` (and, for one that reads it, a
  registry on 127.0.0.1 holding ``busybox:1`` in ``SUPERVISOR_REGISTRY``),
  and must exit 0. An ```output block
  right after it holds lines it must print, in that order. Afterwards no
  namespace it made may hold a container or an image (they are removed
  either way).
- ```python pytest: a test file of an application, run by pytest (the
  plugin) with the ```ini block of docs/pytest-plugin.md as its
  configuration; every test in it must pass.
- ```python no-run: a fragment that cannot run (a signature, say). Counted:
  there may be only a few.
- ```console: ``$ `` lines are run by ``sh`` (``CONTAINERD_ADDRESS`` is the
  test containerd); the lines below each are its output (stdout and stderr),
  exactly.
- ```sh: command synopses. Every ``supervisor SUBCOMMAND`` they name must be
  one the command has.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import supervisor
from supervisor import errors
from supervisor.testing import Containerd
from supervisor.testing._namespaces import Namespaces, blocking, collect, purge

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Fragments are allowed, but few: a reader should be able to run what is shown.
MAX_NO_RUN = 4
# A bound against a block that hangs, not a measure of its speed.
_BLOCK_BOUND = 300.0

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    info: str
    body: str
    output: str | None  # the ```output block right after it, if any

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text()
        matches = list(_FENCE.finditer(text))
        for i, match in enumerate(matches):
            following = matches[i + 1] if i + 1 < len(matches) else None
            output = None
            if (
                following is not None
                and following.group(1).strip() == "output"
                and not text[match.end() : following.start()].strip(" \t\n:").count("\n\n")
            ):
                output = following.group(2)
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(path, line, match.group(1).strip(), match.group(2), output))
    return found


def of_kind(info: str) -> list[Block]:
    return [b for b in blocks() if b.info == info]


def ids(found: list[Block]) -> list[str]:
    return [b.name for b in found]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # A socket path must stay short (108 bytes): pytest's tmp_path can be long.
    path = Path(tempfile.mkdtemp(prefix="svdoc-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def environment(containerd: Containerd, rootfs: Path, tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SUPERVISOR_ADDRESS=containerd.address,
        SUPERVISOR_ROOTFS=str(rootfs),
        CONTAINERD_ADDRESS=containerd.address,
        TMPDIR=str(tmp),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
    )
    for name in ("SUPERVISOR_CONTAINERD_ADDRESS", "SUPERVISOR_BUSYBOX_ROOTFS"):
        env.pop(name, None)
    return env


def left_in(address: str, names: set[str], state_dir: Path) -> list[str]:
    """What the namespaces hold (containers, images); they are then emptied
    and removed."""

    async def look(namespace: str) -> list[str]:
        async with supervisor.connect(
            address, namespace=namespace, events=False, state_dir=state_dir
        ) as client:
            found = [f"container {c.id} in {namespace}" for c in await client.containers()]
            return found + [f"image {i.name} in {namespace}" for i in await client.images()]

    found: list[str] = []
    namespaces = Namespaces(address)
    for name in sorted(names):
        found += blocking(look, name)
        blocking(purge, address, name, state_dir)
        blocking(collect, address, name, state_dir)
        with contextlib.suppress(errors.SupervisorError):
            namespaces.remove(name)
    return found


@contextlib.contextmanager
def nothing_left(block: Block, containerd: Containerd, tmp: Path) -> Iterator[None]:
    """Fails if a namespace made meanwhile holds a container or an image
    afterwards; removes the namespaces made either way."""
    namespaces = Namespaces(containerd.address)
    before = set(namespaces.list())
    left: list[str] = []
    try:
        yield
    finally:
        made = set(namespaces.list()) - before
        made = {n for n in made if not n.startswith("svt-")}  # the plugin's, of other tests
        left = left_in(containerd.address, made, tmp / "look")
    assert not left, f"{block.name} left behind: {left}"


def run_program(
    block: Block, containerd: Containerd, rootfs: Path, tmp: Path, extra: dict[str, str]
) -> str:
    program = tmp / "example.py"
    program.write_text(block.body)
    with nothing_left(block, containerd, tmp):
        done = subprocess.run(
            [sys.executable, str(program)],
            cwd=tmp,
            env={**environment(containerd, rootfs, tmp), **extra},
            capture_output=True,
            text=True,
            timeout=_BLOCK_BOUND,
        )
        assert done.returncode == 0, (
            f"{block.name} exited {done.returncode}\n--- stdout\n{done.stdout}\n"
            f"--- stderr\n{done.stderr}"
        )
    return done.stdout


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry on 127.0.0.1 holding busybox:1, for the examples that
    read ``SUPERVISOR_REGISTRY`` (started only when one does)."""
    from tests._registry import busybox_registry

    with busybox_registry(tmp_path_factory.mktemp("docs-registry")) as (host, _):
        yield host


@pytest.mark.parametrize("block", of_kind("python"), ids=ids(of_kind("python")))
def test_a_python_example_runs(
    block: Block,
    containerd_daemon: Containerd,
    busybox_rootfs: Path,
    short_tmp: Path,
    request: pytest.FixtureRequest,
) -> None:
    extra = {}
    if "SUPERVISOR_REGISTRY" in block.body:
        extra["SUPERVISOR_REGISTRY"] = request.getfixturevalue("registry")
    printed = run_program(block, containerd_daemon, busybox_rootfs, short_tmp, extra)
    if block.output is not None:
        lines = iter(printed.splitlines())
        for expected in block.output.splitlines():
            assert any(line == expected for line in lines), (
                f"{block.name} did not print {expected!r} (in order); it printed:\n{printed}"
            )


def _pytest_ini() -> str:
    [ini] = [b for b in of_kind("ini") if "asyncio_default_fixture_loop_scope" in b.body]
    return ini.body


@pytest.mark.parametrize("block", of_kind("python pytest"), ids=ids(of_kind("python pytest")))
def test_a_test_file_example_passes(
    block: Block, containerd_daemon: Containerd, busybox_rootfs: Path, short_tmp: Path
) -> None:
    (short_tmp / "pytest.ini").write_text(_pytest_ini())
    (short_tmp / "test_example.py").write_text(block.body)
    env = environment(containerd_daemon, busybox_rootfs, short_tmp)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            f"--containerd-address={containerd_daemon.address}",
            f"--busybox-rootfs={busybox_rootfs}",
            "test_example.py",
        ],
        cwd=short_tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=_BLOCK_BOUND,
    )
    assert done.returncode == 0, f"{block.name}\n{done.stdout}\n{done.stderr}"
    assert " passed" in done.stdout and "warning" not in done.stdout.lower(), done.stdout


@pytest.mark.parametrize("block", of_kind("console"), ids=ids(of_kind("console")))
def test_a_console_example_prints_what_it_shows(
    block: Block, containerd_daemon: Containerd, busybox_rootfs: Path, short_tmp: Path
) -> None:
    env = environment(containerd_daemon, busybox_rootfs, short_tmp)
    command: str | None = None
    expected: list[str] = []
    steps: list[tuple[str, list[str]]] = []
    for line in block.body.splitlines():
        if line.startswith("$ "):
            if command is not None:
                steps.append((command, expected))
            command, expected = line[2:], []
        else:
            expected.append(line)
    if command is not None:
        steps.append((command, expected))
    assert steps, f"{block.name} has no $ line"
    with nothing_left(block, containerd_daemon, short_tmp):
        for command, expected in steps:
            run_console(block, command, expected, env, short_tmp)


def run_console(
    block: Block, command: str, expected: list[str], env: dict[str, str], tmp: Path
) -> None:
    done = subprocess.run(
        ["sh", "-c", f"{{ {command}\n}} 2>&1"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=_BLOCK_BOUND,
    )
    assert done.stdout.splitlines() == expected, (
        f"{block.name}: `{command}` printed:\n{done.stdout}"
    )


def test_only_a_few_examples_do_not_run() -> None:
    fragments = of_kind("python no-run")
    assert len(fragments) <= MAX_NO_RUN, ids(fragments)
    runnable = of_kind("python") + of_kind("python pytest") + of_kind("console")
    assert len(runnable) >= 10, "the examples were not found"
    unknown = {
        b.info
        for b in blocks()
        if b.info.split(" ")[0] not in {"python", "console", "sh", "toml", "ini", "output", ""}
    }
    assert not unknown, f"fences of unknown kinds: {unknown}"
    shown = {b.output for b in of_kind("python") if b.output is not None}
    orphans = [b.name for b in of_kind("output") if b.body not in shown]
    assert not orphans, f"```output blocks that follow no ```python block: {orphans}"


def test_sh_synopses_name_real_subcommands() -> None:
    from supervisor.cli._subcommands import SUBCOMMANDS

    known = {*SUBCOMMANDS, "daemon"}
    named: set[str] = set()
    for block in of_kind("sh"):
        for line in block.body.splitlines():
            if not line.startswith("supervisor "):
                continue
            for i, part in enumerate(line.split("|")):
                words = part.split()[1:] if i == 0 else part.split()
                for word in words:
                    if word.startswith(("-", "[")) or word.rstrip("].").isupper():
                        continue
                    named.add(word)
                    break
    assert named, "no supervisor commands found in the ```sh blocks"
    assert named <= known, f"not subcommands: {sorted(named - known)}"


def test_every_python_example_parses() -> None:
    # The cheap check first: a syntax error shows without containerd.
    for block in of_kind("python") + of_kind("python pytest"):
        compile(block.body, block.name, "exec")
