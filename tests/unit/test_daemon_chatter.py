"""containerd's known-harmless lines are forwarded at DEBUG; every other
line keeps its level (the lines are containerd 1.6.20's own, as logged here)."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.daemon._log_follower import forward_line

NS = "namespace=svt-1-test"
HARMLESS = [
    'level=info msg="loading plugin \\"io.containerd.content.v1.content\\"..." '
    "type=io.containerd.content.v1",
    'level=info msg="skip loading plugin \\"io.containerd.snapshotter.v1.aufs\\"..." '
    'error="aufs is not supported: skip plugin" type=io.containerd.snapshotter.v1',
    'level=warning msg="failed to load plugin io.containerd.snapshotter.v1.devmapper" '
    'error="devmapper not configured"',
    'level=warning msg="could not use snapshotter devmapper in metadata plugin" '
    'error="devmapper not configured"',
    f'level=info msg="starting signal loop" {NS} path=/x/ignores pid=12291',
    'level=info msg="shim disconnected" id=ignores',
    f'level=warning msg="cleaning up after shim disconnected" id=ignores {NS}',
    'level=info msg="cleaning up dead shim"',
    'level=warning msg="cleanup warnings time=\\"2026-12-07T04:10:43Z\\" level=info '
    'msg=\\"starting signal loop\\" namespace=svt pid=12352 runtime=io.containerd.runc.v2\\n"',
    'level=warning msg="cleanup warnings time=\\"2026-12-07T04:10:44Z\\" level=info '
    'msg=\\"starting signal loop\\" namespace=svt pid=12467\\ntime=\\"2026-12-07T04:10:44Z\\" '
    'level=warning msg=\\"failed to remove runc container\\" error=\\"runc did not terminate '
    'successfully: exit status 255: \\" runtime=io.containerd.runc.v2\\n"',
]
KEPT = [
    ('level=info msg="containerd successfully booted in 0.018s"', "info"),
    (
        'level=warning msg="failed to load plugin io.containerd.snapshotter.v1.devmapper" '
        'error="device busy"',
        "warning",
    ),
    (
        'level=warning msg="failed to load plugin io.containerd.grpc.v1.tasks" '
        'error="devmapper not configured"',
        "warning",
    ),
    (
        'level=warning msg="cleanup warnings time=\\"t\\" level=error msg=\\"cannot open\\"\\n"',
        "warning",
    ),
    ('level=error msg="loading plugin \\"x\\"..."', "error"),
    ('level=warning msg="unknown status" status=0', "warning"),
]


class _Logger:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, method: str) -> Any:
        return lambda event, **fields: self.calls.append((method, fields.get("msg", "")))


@pytest.mark.parametrize("line", HARMLESS)
def test_known_harmless_lines_are_debug(line: str) -> None:
    logger = _Logger()
    forward_line(logger, f'time="2026-12-07T04:09:56Z" {line}')
    [(method, _)] = logger.calls
    assert method == "debug"


@pytest.mark.parametrize(("line", "level"), KEPT)
def test_other_lines_keep_their_level(line: str, level: str) -> None:
    logger = _Logger()
    forward_line(logger, f'time="2026-12-07T04:09:56Z" {line}')
    [(method, _)] = logger.calls
    assert method == level
