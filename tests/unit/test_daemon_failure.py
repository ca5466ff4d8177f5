"""A Daemon whose watchdog dies fails its callers at once, as ``connect()``
does when its event machinery dies: ``closed`` turns true, what would lead a
caller to containerd raises the error, and so does leaving the context.

The Daemon runs whole, on the platform parts of ``_platform_parts`` with the
stand-ins of ``test_windows_daemon`` behind them (a process table, the
subprocess start, the lock) and a health check that can be made to fail as a
bug would: no containerd is needed to show what the Daemon does with it.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from supervisor import errors
from supervisor.daemon import Daemon, DaemonConfig, DaemonTimeouts, _platform_parts
from tests.unit.test_windows_daemon import BINARY, FakeKernel32, Locks, Starter

pytestmark = pytest.mark.asyncio

TIMEOUTS = DaemonTimeouts(
    start=5,
    stop=2,
    kill=2,
    health_interval=0.02,
    health_timeout=0.5,
    health_failures=2,
    start_poll=0.01,
    restart_initial=0.01,
    restart_max=0.05,
    dump_grace=0.01,
    log_poll=0.02,
)


class Health:
    """containerd answers, until the check itself breaks."""

    def __init__(self) -> None:
        self.broken: BaseException | None = None

    async def check(self, within: float) -> bool:
        if self.broken is not None:
            raise self.broken
        return True

    def close(self) -> None:
        pass


@pytest.fixture
def health(monkeypatch: pytest.MonkeyPatch) -> Health:
    k32, probe = FakeKernel32(), Health()
    parts = _platform_parts.windows_parts(
        control=k32, start=Starter(k32), locking=Locks(), health=lambda address: probe
    )
    monkeypatch.setattr(_platform_parts, "select", lambda: parts)
    return probe


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__
    return False


@pytest.mark.parametrize(
    "broken,raised",
    [
        (RuntimeError("a bug in the watchdog"), errors.Unknown),
        (errors.FailedPrecondition("the watchdog met a refusal"), errors.FailedPrecondition),
    ],
    ids=["unexpected", "typed"],
)
async def test_a_dead_watchdog_fails_the_callers_at_once(
    tmp_path: Path, health: Health, broken: BaseException, raised: type[errors.SupervisorError]
) -> None:
    daemon = Daemon(tmp_path / "root", tmp_path / "state", binary=BINARY, timeouts=TIMEOUTS)
    with pytest.raises(raised) as on_exit:
        async with daemon:
            assert not daemon.closed
            daemon.reload(DaemonConfig())  # fine while the watchdog runs
            health.broken = broken
            with anyio.fail_after(20):  # a bound for a hang, not a speed
                while not daemon.closed:  # noqa: ASYNC110 - the attribute under test
                    await anyio.sleep(0.01)
            calls = {
                "reload": lambda: daemon.reload(DaemonConfig()),
                "config": lambda: daemon.config,
                "runtime": lambda: daemon.runtime(),
                "address": lambda: daemon.address,
            }
            for name, call in calls.items():
                with pytest.raises(raised) as later:
                    call()
                assert _caused_by(later.value, type(broken)), name
    assert _caused_by(on_exit.value, type(broken))
    assert daemon.closed


async def test_closed_after_a_clean_exit_and_not_before(tmp_path: Path, health: Health) -> None:
    daemon = Daemon(tmp_path / "root", tmp_path / "state", binary=BINARY, timeouts=TIMEOUTS)
    assert not daemon.closed
    async with daemon:
        assert not daemon.closed
    assert daemon.closed
    assert daemon.address.startswith("\\\\.\\pipe\\")  # still there to name in messages


async def test_wait_failed_returns_the_watchdogs_error_at_once(
    tmp_path: Path, health: Health
) -> None:
    # What the `supervisor daemon` command awaits beside its signals: it ends
    # with the daemon instead of serving a containerd that is gone.
    daemon = Daemon(tmp_path / "root", tmp_path / "state", binary=BINARY, timeouts=TIMEOUTS)
    with pytest.raises(errors.Unknown):
        async with daemon, anyio.create_task_group() as tg:
            got: list[errors.SupervisorError] = []

            async def waiter() -> None:
                got.append(await daemon.wait_failed())

            tg.start_soon(waiter)
            await anyio.lowlevel.checkpoint()
            assert got == []
            health.broken = RuntimeError("a bug in the watchdog")
            with anyio.fail_after(20):  # a bound for a hang, not a speed
                await daemon.wait_failed()
            assert isinstance(got[0] if got else await daemon.wait_failed(), errors.Unknown)
