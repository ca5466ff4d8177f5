"""What the operating system refuses while the network layer reads its
configuration comes out as a library error (supervisor.errors.from_os_error),
never as a bare OSError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supervisor import errors
from supervisor.network import find_conflist


def test_a_configuration_directory_that_loops_is_invalid_argument(tmp_path: Path) -> None:
    loop = tmp_path / "net.d"
    loop.symlink_to(loop)
    with pytest.raises(errors.InvalidArgument, match="net.d"):
        find_conflist(loop, "web")


def test_an_unreadable_conflist_of_another_name_is_skipped(tmp_path: Path) -> None:
    # Only the file that names the network may fail the call.
    (tmp_path / "10-loop.conflist").symlink_to(tmp_path / "10-loop.conflist")
    net = {"cniVersion": "1.0.0", "name": "web", "plugins": [{"type": "bridge"}]}
    (tmp_path / "20-web.conflist").write_text(json.dumps(net))
    assert find_conflist(tmp_path, "web").name == "web"
