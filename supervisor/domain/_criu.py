"""Whether CRIU can checkpoint on this machine, asked before a checkpoint or a
restore changes anything.

containerd reports a CRIU that cannot work only once the dump has begun, and
as an opaque "criu failed" from runc; ``criu check`` names the reason (a
kernel without what CRIU reads, say) before anything is touched. The library
talks to a containerd on the same machine (its FIFOs are local), so the
``criu`` found here is the one runc runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import anyio

from .. import errors

__all__ = ["criu_failure", "criu_ready", "find_criu"]

# runc finds criu on the shim's PATH, which has the sbin directories that a
# user's PATH often lacks.
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
# A passed check holds for the life of the process: CRIU and the kernel do not
# change under it. A failure is asked again (criu may be installed meanwhile).
_passed: set[str] = set()
# runc's "criu failed: type DUMP errno 0 path= /run/.../criu-dump.log: ...".
_LOG_PATH = re.compile(r"path= (/\S+\.log)")


def find_criu() -> str | None:
    """The ``criu`` on PATH, else in the sbin directories; None if none."""
    found = shutil.which("criu")
    if found is None:
        found = shutil.which("criu", path=os.pathsep.join(_SBIN))
    return found


async def criu_ready(limit: float, *, container_id: str | None = None) -> None:
    """Return if CRIU is there and ``criu check`` passes (run as root only:
    it needs root, as runc running it does).

    Raises:
        FailedPrecondition: no CRIU, or ``criu check`` failed (its reason in
            the message), or did not answer within ``limit`` seconds.
    """
    criu = find_criu()
    if criu is None:
        raise errors.FailedPrecondition(
            "checkpoints need CRIU, which is not installed here (no criu on PATH "
            f"nor in {', '.join(_SBIN)})",
            container_id=container_id,
        )
    if criu in _passed or os.geteuid() != 0:
        return
    try:
        with anyio.fail_after(limit):
            done = await anyio.run_process([criu, "check"], check=False, stdin=subprocess.DEVNULL)
    except TimeoutError:
        raise errors.FailedPrecondition(
            f"CRIU cannot be used: `{criu} check` did not finish within {limit}s",
            container_id=container_id,
        ) from None
    except OSError as exc:
        raise errors.FailedPrecondition(
            f"CRIU cannot be used: `{criu} check` could not run: {exc}",
            container_id=container_id,
        ) from exc
    if done.returncode != 0:
        said = (done.stderr + done.stdout).decode(errors="replace").strip().splitlines()
        reason = "; ".join(said[-3:]) or f"exit status {done.returncode}"
        raise errors.FailedPrecondition(
            f"CRIU cannot checkpoint on this machine: `criu check` failed: {reason}",
            container_id=container_id,
        )
    _passed.add(criu)


def criu_failure(
    exc: errors.SupervisorError, doing: str, *, container_id: str
) -> errors.SupervisorError:
    """A runc error that says CRIU failed, as a FailedPrecondition carrying
    the error lines of CRIU's own log (runc names its path; the shim keeps
    it in the task's bundle until the task is deleted); any other error as
    it was. A mount CRIU cannot handle, or a restore on a CPU without the
    dump's features, shows there."""
    if "criu failed" not in exc.message:
        return exc
    said = ""
    found = _LOG_PATH.search(exc.message)
    if found is not None:
        try:
            with open(found.group(1), encoding="utf-8", errors="replace") as log:
                lines = [line.strip() for line in log if "Error" in line]
        except OSError:
            lines = []
        said = "; ".join(lines[-3:])
    cause = said or exc.message
    return errors.FailedPrecondition(f"CRIU could not {doing}: {cause}", container_id=container_id)
