"""Running the ``supervisor`` command as a user runs it (``python -m
supervisor``) against the suite's containerd, for the command's tests."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio
from anyio.abc import Process

from tests._containerd import REPO

__all__ = ["Cli", "clean_env", "run_raw"]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment without CONTAINERD_* (the options must say it all)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTAINERD_")}
    env.update(extra or {})
    return env


class Cli:
    """``python -m supervisor -a ADDRESS -n NAMESPACE --state-dir DIR ...``."""

    def __init__(self, address: str, namespace: str, state_dir: Path, rootfs: str) -> None:
        self.address = address
        self.namespace = namespace
        self.state_dir = state_dir
        self.rootfs = rootfs
        self.globals = ["-a", address, "-n", namespace, "--state-dir", str(state_dir)]

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "supervisor", *self.globals, *args]

    async def __call__(
        self, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None
    ) -> tuple[int, str, str]:
        return await run_raw(self.argv(*args), input=input, env=env)

    async def start(self, *args: str) -> Process:
        return await anyio.open_process(self.argv(*args), cwd=REPO, env=clean_env())

    async def ps(self) -> list[dict[str, object]]:
        code, out, err = await self("ps", "--format", "json")
        assert code == 0, err
        return [json.loads(line) for line in out.splitlines()]

    async def wait_status(self, cid: str, status: str) -> dict[str, object]:
        with anyio.fail_after(30):
            while True:
                rows = {r["id"]: r for r in await self.ps()}
                if cid in rows and rows[cid]["status"] == status:
                    return rows[cid]
                await anyio.sleep(0.1)


async def run_raw(
    argv: Sequence[str], *, input: bytes | None = None, env: Mapping[str, str] | None = None
) -> tuple[int, str, str]:
    with anyio.fail_after(60):
        done = await anyio.run_process(
            list(argv), input=input, check=False, cwd=REPO, env=clean_env(env)
        )
    return done.returncode, done.stdout.decode(), done.stderr.decode()
