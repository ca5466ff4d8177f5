"""Confined path resolution (supervisor.files._walk): links and ``..`` never
lead out of the root, as if chrooted."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.files._walk import MAX_LINKS, resolve


@pytest.fixture
def root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    base = tmp_path / "root"
    (base / "a" / "b").mkdir(parents=True)
    (base / "abs").symlink_to("/a")
    (base / "a" / "up").symlink_to("../../../../..")
    (base / "a" / "pw").symlink_to("/etc/passwd")
    (base / "loop").symlink_to("loop")
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    yield base, fd
    os.close(fd)


@pytest.mark.parametrize(
    "path,parent,name",
    [
        ("a/b", "a", "b"),
        ("/abs/b", "a", "b"),
        ("a/up/a/b", "a", "b"),
        ("/../../../a", "", "a"),
        ("a/up/abs/up/new", "", "new"),
        ("a/pw", "a", "pw"),
        ("/", "", ""),
    ],
)
def test_resolution_stays_in_the_root(
    root: tuple[Path, int], path: str, parent: str, name: str
) -> None:
    base, fd = root
    found = resolve(fd, path)
    try:
        assert os.readlink(f"/proc/self/fd/{found.dir_fd}") == str(base / parent).rstrip("/")
        assert found.name == name
    finally:
        found.close()


def test_a_followed_absolute_link_starts_from_the_root(root: tuple[Path, int]) -> None:
    _, fd = root
    with pytest.raises(FileNotFoundError):  # /etc is not in this root
        resolve(fd, "a/pw/x")


def test_loops_end(root: tuple[Path, int]) -> None:
    _, fd = root
    with pytest.raises(OSError) as caught:
        resolve(fd, "loop/x")
    assert "too many links" in str(caught.value) and MAX_LINKS == 40


def test_no_fd_is_left_open(root: tuple[Path, int]) -> None:
    _, fd = root
    before = len(os.listdir("/proc/self/fd"))
    for path in ("a/b", "a/up/a/b", "a/pw"):
        resolve(fd, path).close()
    with pytest.raises(OSError):
        resolve(fd, "loop/x")
    assert len(os.listdir("/proc/self/fd")) == before
