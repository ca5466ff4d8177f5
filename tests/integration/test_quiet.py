"""A program that configures no logging sees nothing of the library, and a
log write that fails (closed stdout, full disk) never fails an operation."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

_SILENT = textwrap.dedent(
    """
    import sys, anyio, supervisor

    async def main(address, rootfs, state):
        async with supervisor.Daemon(state + "/root", state + "/state") as daemon:
            async with supervisor.connect(daemon.address, namespace="quiet",
                                          state_dir=state + "/lib") as client:
                spec = supervisor.default_spec(["sh", "-c", "echo hi"], rootfs)
                result = await client.run("one", spec)
                assert result.stdout == b"hi\\n", result
        async with supervisor.connect(address, namespace="quiet2",
                                      state_dir=state + "/lib2") as client:
            await client.run("two", supervisor.default_spec(["true"], rootfs))

    anyio.run(main, *sys.argv[1:4])
    """
)


@pytest.mark.parametrize("stdout", ["pipe", "closed", "full"])
def test_a_program_that_configures_no_logging_sees_nothing(
    containerd_address: str, rootfs: str, tmp_path: Path, stdout: str
) -> None:
    # /tmp keeps the embedded containerd's socket path short enough.
    state = tempfile.mkdtemp(prefix="sv-quiet-", dir="/tmp")
    args = [sys.executable, "-c", _SILENT, containerd_address, rootfs, state]
    try:
        if stdout == "pipe":
            result = subprocess.run(args, capture_output=True, timeout=120)
            assert result.returncode == 0, result.stderr.decode()
            assert (result.stdout, result.stderr) == (b"", b"")
        else:
            # A closed stdout, or one on a full disk: a log write there must
            # never fail an operation (stderr still shows any traceback).
            target = "exec 1>&-" if stdout == "closed" else "exec 1>/dev/full"
            shell = f'{target}; exec "$@"'
            result = subprocess.run(
                ["sh", "-c", shell, "sh", *args], stderr=subprocess.PIPE, timeout=120
            )
            assert result.returncode == 0, result.stderr.decode()
            assert result.stderr == b""
    finally:
        subprocess.run(["rm", "-rf", state], check=False)
