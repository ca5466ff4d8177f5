"""The checkpoint figures' way out of the VM and into the report
(``benchmarks.checkpoint_vm``, ``benchmarks.report``): the guest's marked line
found among the console's other output, every way the VM step can end
recorded with its reason, and the report saying what it has."""

from __future__ import annotations

import json
from typing import Any

from benchmarks.checkpoint_cost import MARK, SIDES, summary
from benchmarks.checkpoint_vm import outcome, parse
from benchmarks.report import render

TIMES = {
    "library/checkpoint": [3.0, 2.0, 4.0],
    "library/restore": [2.0, 2.0, 2.0],
    "ctr/checkpoint": [6.0, 4.0, 4.0],
    "ctr/restore": [4.0, 5.0, 1.0],
}


def figures() -> dict[str, Any]:
    return {**summary(TIMES), "rounds": 3, "versions": {"containerd": "v1.6.20"}, "sides": SIDES}


def test_summary_pairs_the_rounds() -> None:
    s = summary(TIMES)
    assert s["checkpoint_seconds"]["library/checkpoint"] == 3.0
    # Per-round ratios 0.5, 0.5, 1.0 for the checkpoint; 0.5, 0.4, 2.0 for the restore.
    assert s["library_over_ctr"] == {"checkpoint": 0.5, "restore": 0.5}
    assert s["library_over_ctr_of_medians"] == {"checkpoint": 0.75, "restore": 0.5}


def test_the_marked_line_is_found_among_the_guest_output() -> None:
    lines = [
        "[cgroup2-vm 5.5s] kernel 6.1.0\n",
        f"{MARK}{json.dumps({'rounds': 1})}\n",
        "library/checkpoint 3.00 s\n",
        "[cgroup2-vm 90.1s] exit code 0\n",
    ]
    assert parse(lines) == {"rounds": 1}
    assert parse(lines[:1]) is None


def test_a_marked_line_cut_short_is_no_figures() -> None:
    assert parse([f"{MARK}" + '{"rounds": 1, "check\n']) is None


def test_every_end_of_the_vm_step_is_recorded_with_its_reason() -> None:
    good = figures()
    assert outcome(0, good, []) == good
    assert outcome(0, {"skipped": "criu check fails: vdso"}, []) == {
        "skipped": "criu check fails: vdso"
    }
    # Figures printed before a failing exit are not trusted.
    failed = outcome(3, good, ["cgroup2: the VM ran 80 s; bash exited with 3\n"])
    assert failed == {
        "failed": "the lane exited with 3: cgroup2: the VM ran 80 s; bash exited with 3"
    }
    assert "CGROUP2_TIMEOUT" in outcome(124, None, [])["failed"]
    assert "without reporting a result" in outcome(125, None, [])["failed"]
    assert outcome(0, None, [])["failed"] == "the guest printed no figures"
    assert "outer bound" in outcome(None, None, [])["failed"]


def test_the_report_shows_both_sides_and_their_ratio() -> None:
    text = render({"checkpoint": figures()})
    assert "## Checkpoint and restore (cgroup v2 VM, CRIU)" in text
    assert "| checkpoint | 3.00 | 4.00 | 0.50 [0.75] |" in text
    assert "| restore | 2.00 | 4.00 | 0.50 [0.50] |" in text
    assert "ctr containers checkpoint --task --rw" in text
    assert "containerd v1.6.20" in text


def test_the_report_says_why_the_vm_step_gave_no_figures() -> None:
    text = render({"checkpoint": {"failed": "the lane exited with 125 (no result)"}})
    assert "Not measured: the VM step failed: the lane exited with 125 (no result)." in text
    assert "Not measured in this run" in render({})
