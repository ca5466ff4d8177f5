"""The committed bindings are exactly what the pinned generator makes."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _diff(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    out = [f"only in committed: {n}" for n in cmp.left_only]
    out += [f"only in regenerated: {n}" for n in cmp.right_only]
    out += [f"differs: {n}" for n in cmp.diff_files]
    for name in cmp.subdirs:
        out += [f"{name}/{line}" for line in _diff(a / name, b / name)]
    # dircmp compares shallowly by stat; be exact.
    for name in cmp.same_files:
        if (a / name).read_bytes() != (b / name).read_bytes():
            out.append(f"differs: {name}")
    return out


def test_regenerated_bindings_match(tmp_path: Path) -> None:
    out = tmp_path / "_proto"
    env = dict(os.environ, PYTHON=sys.executable)
    subprocess.run([str(REPO / "protos" / "generate.sh"), str(out)], check=True, env=env)
    assert _diff(REPO / "supervisor" / "_proto", out) == []
