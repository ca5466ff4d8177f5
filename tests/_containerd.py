"""A private containerd for tests: its own socket and directories, started and
stopped through ``scripts/containerd-private.sh`` so the suite and the Makefile
set it up the same way."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "containerd-private.sh"


def alive(pid: int) -> bool:
    """Running, not a zombie: this machine's pid 1 does not reap orphans."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return False


class PrivateContainerd:
    """One containerd on ``<dir>/containerd.sock``; ``kill()`` and ``start()``
    again reuse the same root and state, as a crash and restart would."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.address = str(directory / "containerd.sock")

    @property
    def pid(self) -> int | None:
        try:
            pid = int((self.dir / "containerd.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if alive(pid) else None

    def start(self) -> None:
        subprocess.run([str(SCRIPT), "start", str(self.dir)], check=True)

    def stop(self) -> None:
        subprocess.run([str(SCRIPT), "stop", str(self.dir)], check=True)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill containerd only (shims live on), and reap it."""
        pid = self.pid
        assert pid is not None, "containerd is not running"
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            # The script started it in the background of a shell that exited,
            # so it is not our child; wait until it is gone.
            for _ in range(200):
                if not alive(pid):
                    break
                time.sleep(0.01)


def short_tmpdir(prefix: str) -> Path:
    """A directory under /tmp: unix socket paths must stay under 108 bytes."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
