"""Restart policies and health checks against the real containerd: each
policy, a stop by the caller, the back-off, the lock, the application's own
restart, and each health transition."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

import supervisor
from supervisor import EventType, HealthCheck, RestartPolicy
from tests.integration.helpers import Recorder

pytestmark = pytest.mark.asyncio

# Fast back-off for tests: the rules are docker's, the figures smaller.
FAST = {"initial_delay": 0.05, "max_delay": 0.4}


def _spec(rootfs: str, script: str, data: Path) -> dict[str, Any]:
    return supervisor.default_spec(["sh", "-c", script], rootfs, mounts=[f"{data}:/data"])


def _starts(data: Path) -> int:
    path = data / "starts"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _restarts(rec: Recorder, cid: str) -> list[supervisor.EventInfo]:
    return [i for e, i in rec.of(cid) if e is EventType.RESTART]


async def _poll(pred: Any, timeout: float = 30) -> None:
    # A condition the supervisor reaches on its own (no event marks it).
    with anyio.fail_after(timeout):
        while not pred():
            await anyio.sleep(0.02)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


async def test_on_failure_restarts_up_to_its_count(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, data: Path
) -> None:
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        spec = _spec(rootfs, "echo x >> /data/starts; exit 3", data)
        policy = RestartPolicy("on-failure", 2, **FAST)
        container = await client.new_container("crash", spec, restart=policy)
        assert container.labels["supervisor.restart"] == "on-failure:2"
        task = await container.new_task(output="null")
        await task.start()
        await rec.wait_for(lambda: rec.exits()[("crash", "crash")] == 3)
        await rec.wait_for(lambda: len(_restarts(rec, "crash")) == 2)
        last = [i for e, i in rec.of("crash") if e is EventType.EXIT][-1]
        # The third exit decided on (not restarted: the count is reached).
        await _poll(
            lambda: (
                container.last_exit is not None and container.last_exit.exited_at == last.exited_at
            )
        )
        assert [i.attempt for i in _restarts(rec, "crash")] == [1, 2]
        assert container.last_exit is not None
        assert container.last_exit.exit_code == 3 and not container.last_exit.by_caller
        assert _starts(data) == 3
        assert str(container.restart_policy) == "on-failure:2"
        await container.delete(force=True)


async def test_on_failure_does_not_restart_a_clean_exit_always_does(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, data: Path
) -> None:
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        spec = _spec(rootfs, "echo x >> /data/starts; exit 0", data)
        clean = await client.new_container("clean", spec, restart="on-failure")
        task = await clean.new_task(output="null")
        await task.start()
        await task.wait()
        await _poll(lambda: clean.last_exit is not None)
        assert clean.restart_count == 0 and _restarts(rec, "clean") == []
        await clean.delete(force=True)

        spec = _spec(rootfs, "echo x >> /data/always; exit 0", data)
        always = await client.new_container("always", spec, restart=RestartPolicy("always", **FAST))
        task = await always.new_task(output="null")
        await task.start()
        await rec.wait_for(lambda: len(_restarts(rec, "always")) >= 2)
        await _poll(lambda: len((data / "always").read_text().splitlines()) >= 3)
        await always.delete(force=True)
        count = len((data / "always").read_text().splitlines())
        # Deleted: nothing restarts it any more (the task is gone for good).
        with pytest.raises(supervisor.errors.NotFound):
            await client.load_container("always")
        assert count >= 3


async def test_a_kill_by_the_caller_is_no_failure(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, data: Path
) -> None:
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        spec = _spec(rootfs, "echo x >> /data/starts; exec sleep 600", data)
        for policy in ("always", "unless-stopped", "on-failure"):
            cid = f"kill-{policy}"
            container = await client.new_container(cid, spec, restart=policy)
            task = await container.new_task(output="null")
            await task.start()
            await task.kill(9)
            status = await task.wait()
            assert status.exit_code == 137
            await _poll(lambda c=container: c.last_exit is not None)  # type: ignore[misc]
            assert container.last_exit is not None and container.last_exit.by_caller
            assert container.restart_count == 0
            assert _restarts(rec, cid) == []
            # A start by the caller undoes the stop: a crash then restarts.
            await task.delete()
            task = await container.new_task(output="null")
            await task.start()
            await container.delete(force=True)


async def test_back_off_doubles_between_restarts(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, data: Path
) -> None:
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        spec = _spec(rootfs, "exit 1", data)
        policy = RestartPolicy("always", initial_delay=0.1, max_delay=0.4)
        container = await client.new_container("loop", spec, restart=policy)
        task = await container.new_task(output="null")
        await task.start()
        await rec.wait_for(lambda: len(_restarts(rec, "loop")) >= 5)
        # The events of the fifth restart's task, which may come after its report.
        await rec.wait_for(lambda: [e for e, _ in rec.of("loop")].count(EventType.START) >= 6)
        await container.delete(force=True)
    events = rec.of("loop")
    restarts = _restarts(rec, "loop")[:5]
    assert [r.attempt for r in restarts] == [1, 2, 3, 4, 5]
    assert [r.delay for r in restarts] == [0.1, 0.2, 0.4, 0.4, 0.4]
    # Each restart's task started at least its delay after the exit before it
    # (containerd's own timestamps; lower bounds only).
    exits = [i.exited_at for e, i in events if e is EventType.EXIT]
    starts = [i.timestamp for e, i in events if e is EventType.START]
    for n, r in enumerate(restarts):
        gap = (starts[n + 1] - exits[n]).total_seconds()  # type: ignore[operator]
        assert gap >= r.delay * 0.95, (n, gap, r.delay)


async def test_only_the_lock_holder_enforces(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, data: Path
) -> None:
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as first:
        spec = _spec(rootfs, "echo x >> /data/starts; exit 1", data)
        policy = RestartPolicy("on-failure", 1, **FAST)
        container = await first.new_container("locked", spec, restart=policy)
        async with supervisor.connect(
            containerd_address, namespace=namespace, state_dir=state_dir
        ) as second:
            other = await second.load_container("locked")
            task = await other.new_task(output="null")
            await task.start()
            await task.wait()
            # The first client holds the lock; the second made and started
            # the task, and the first did not see it start: nobody restarts.
            await second.restore()
            assert _starts(data) == 1
        # The first client picks it up at its restore: the exit is a failure
        # it has not decided on, restarted once.
        await first.restore()
        await rec.wait_for(lambda: len(_restarts(rec, "locked")) == 1)
        await _poll(lambda: _starts(data) == 2)
        await container.delete(force=True)


_FIRST_RUN = textwrap.dedent(
    """
    import sys, anyio, supervisor

    async def main(address, namespace, state, rootfs, data, cid, policy, script, kill):
        async with supervisor.connect(address, namespace=namespace, state_dir=state) as client:
            spec = supervisor.default_spec(
                ["sh", "-c", script], rootfs, mounts=[data + ":/data"]
            )
            policy = supervisor.RestartPolicy(policy, initial_delay=0.05)
            container = await client.new_container(cid, spec, restart=policy)
            task = await container.new_task(output="null")
            await task.start()
            if kill == "kill":
                await task.kill(9)
                await task.wait()

    anyio.run(main, *sys.argv[1:])
    """
)


def _first_run(
    address: str,
    ns: str,
    state: Path,
    rootfs: str,
    data: Path,
    cid: str,
    policy: str,
    script: str,
    kill: str,
) -> None:
    args = [address, ns, str(state), rootfs, str(data), cid, policy, script, kill]
    subprocess.run([sys.executable, "-c", _FIRST_RUN, *args], check=True, timeout=60)


async def test_after_the_application_restarts(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, tmp_path: Path
) -> None:
    dirs = {name: tmp_path / name for name in ("crashed", "stopped", "always")}
    for d in dirs.values():
        d.mkdir()
    crash = "echo x >> /data/starts; sleep 0.3; exit 1"
    sleeper = "echo x >> /data/starts; exec sleep 600"
    args = (containerd_address, namespace, state_dir, rootfs)
    # Exits while nobody supervises: restarted once by the next run.
    _first_run(*args, dirs["crashed"], "crashed", "on-failure", crash, "")
    # Stopped by the caller: unless-stopped remembers it, always does not
    # (docker's rule when its daemon starts).
    _first_run(*args, dirs["stopped"], "stopped", "unless-stopped", sleeper, "kill")
    _first_run(*args, dirs["always"], "always", "always", sleeper, "kill")
    await _poll(lambda: _starts(dirs["crashed"]) == 1)
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        restored = dict((c.id, c) for c, _ in await client.restore())
        await rec.wait_for(lambda: len(_restarts(rec, "crashed")) >= 1)
        await rec.wait_for(lambda: len(_restarts(rec, "always")) == 1)
        assert _restarts(rec, "crashed")[0].attempt == 1
        assert _restarts(rec, "stopped") == []
        assert restored["stopped"].last_exit is not None
        assert restored["stopped"].last_exit.by_caller
        await _poll(lambda: _starts(dirs["always"]) == 2)
        assert _starts(dirs["stopped"]) == 1
        # A second restore decides nothing twice.
        await client.restore()
        for cid in ("stopped", "always", "crashed"):
            await restored[cid].delete(force=True)
        assert len(_restarts(rec, "always")) == 1


async def test_health_starting_healthy_unhealthy(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, data: Path
) -> None:
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        spec = _spec(rootfs, "sleep 0.5; touch /tmp/ready; exec sleep 600", data)
        check = HealthCheck(
            ["CMD-SHELL", "test -e /tmp/ready && echo ok"], interval=0.1, retries=2, start_period=60
        )
        container = await client.new_container("web", spec, healthcheck=check)
        task = await container.new_task(output="null")
        await task.start()
        assert task.health().status == "starting"
        health = await task.wait_healthy(timeout=30)
        assert health.status == "healthy" and health.log[-1].output.strip() == "ok"
        probe = await task.exec(None, ["rm", "/tmp/ready"], output="null")
        await probe.start()
        await probe.wait()
        await probe.delete()
        await _poll(lambda: task.health().status == "unhealthy")
        assert task.health().failing_streak >= 2
        assert len(task.health().log) <= 5
        # Never restarted for it without restart_unhealthy.
        assert (await task.status()) is supervisor.ProcessState.RUNNING
        with pytest.raises(supervisor.errors.FailedPrecondition):
            await task.wait_healthy(timeout=5)
        statuses = [i.health for e, i in rec.of("web") if e is EventType.HEALTH]
        assert statuses == ["healthy", "unhealthy"]
        # No probe exec is left behind in the task.
        await _poll(lambda: not task.execs)
        assert len(await task.pids()) == 1
        await container.delete(force=True)


async def test_a_probe_that_cannot_run_says_why(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, data: Path
) -> None:
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as client:
        spec = _spec(rootfs, "exec sleep 600", data)
        check = HealthCheck(["CMD", "/no/such/probe"], interval=0.1, retries=1)
        container = await client.new_container("missing", spec, healthcheck=check)
        task = await container.new_task(output="null")
        await task.start()
        with pytest.raises(supervisor.errors.FailedPrecondition):
            await task.wait_healthy(timeout=30)
        result = task.health().log[-1]
        assert result.exit_code == -1 and "/no/such/probe" in result.output
        await container.delete(force=True)


async def test_a_probe_past_its_timeout_is_killed(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, data: Path
) -> None:
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as client:
        spec = _spec(rootfs, "exec sleep 600", data)
        check = HealthCheck(["CMD", "sleep", "600"], interval=0.05, timeout=0.3, retries=1)
        container = await client.new_container("slow", spec, healthcheck=check)
        task = await container.new_task(output="null")
        await task.start()
        await _poll(lambda: task.health().status == "unhealthy")
        assert "timed out" in task.health().log[-1].output
        await _poll(lambda: not task.execs)
        # The sleeping probe was killed: one probe at a time, and none left
        # between probes.
        pids = await task.pids()
        assert len(pids) <= 2
        await container.delete(force=True)


async def test_restart_when_unhealthy_only_when_asked(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, data: Path
) -> None:
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        spec = _spec(rootfs, "echo x >> /data/starts; exec sleep 600", data)
        check = HealthCheck(["CMD", "false"], interval=0.1, retries=2, restart_unhealthy=True)
        container = await client.new_container(
            "sick", spec, restart=RestartPolicy("on-failure", 1, **FAST), healthcheck=check
        )
        task = await container.new_task(output="null")
        await task.start()
        await rec.wait_for(lambda: len(_restarts(rec, "sick")) == 1)
        assert container.last_exit is not None and container.last_exit.unhealthy
        assert container.last_exit.exit_code == 137
        await _poll(lambda: _starts(data) == 2)
        await container.delete(force=True)


async def test_a_restart_made_but_not_started_by_a_dead_run_is_finished_once(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, data: Path
) -> None:
    from supervisor.domain._supervised_state import read_record, write_record

    # As an application killed between making the restart's task and
    # starting it leaves things: a record with the restart pending (decided
    # on the exit of an earlier task, pid 1) and a task never started.
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir, events=False
    ) as first:
        spec = _spec(rootfs, "echo x >> /data/starts; exec sleep 600", data)
        container = await first.new_container("half", spec, restart=RestartPolicy("always"))
        await container.new_task(output="null")
        record = read_record(state_dir, namespace, "half")
        assert record is not None
        record.pending = {"attempt": 1, "delay": 0.05, "pid": 1}
        write_record(state_dir, namespace, "half", record)
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        ((container, _),) = await client.restore()
        await rec.wait_for(lambda: len(_restarts(rec, "half")) == 1)
        assert _restarts(rec, "half")[0].attempt == 1
        await _poll(lambda: _starts(data) == 1)
        assert container.restart_count == 1
        assert (await (await container.task()).status()) is supervisor.ProcessState.RUNNING
        await container.delete(force=True)


async def test_closing_the_client_mid_probe_leaves_no_probe(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, data: Path
) -> None:
    spec = _spec(rootfs, "exec sleep 600", data)
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as client:
        check = HealthCheck(["CMD", "sleep", "600"], interval=0.01, timeout=600)
        container = await client.new_container("probed", spec, healthcheck=check)
        task = await container.new_task(output="null")
        await task.start()
        await _poll(lambda: len(task.execs) == 1)  # a probe is running
    # Closed mid-probe: the probe was killed and deleted on the way out.
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir, events=False
    ) as other:
        container = await other.load_container("probed")
        task = await container.task(attach=False)
        assert task.execs == {}
        assert len(await task.pids()) == 1
        await container.delete(force=True)
    assert not (state_dir / ".supervision" / namespace / "probed.json").exists()


async def test_nothing_of_supervision_without_a_policy(
    client: supervisor.Client, state_dir: Path, rootfs: str, data: Path
) -> None:
    container = await client.new_container("plain", _spec(rootfs, "exit 1", data))
    task = await container.new_task(output="null")
    await task.start()
    await task.wait()
    assert "supervisor.restart" not in container.labels
    assert container.restart_count == 0 and container.last_exit is None
    assert task.health().status == "none"
    assert not (state_dir / ".supervision").exists()
    await container.delete(force=True)


async def test_back_off_starts_over_after_the_task_stayed_up(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, data: Path
) -> None:
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        spec = _spec(rootfs, "sleep 0.4; exit 1", data)
        policy = RestartPolicy("always", initial_delay=0.05, max_delay=1.0, reset_after=0.3)
        container = await client.new_container("steady", spec, restart=policy)
        task = await container.new_task(output="null")
        await task.start()
        await rec.wait_for(lambda: len(_restarts(rec, "steady")) >= 3)
        await container.delete(force=True)
    # Each task stayed up longer than reset_after: no doubling.
    assert [r.delay for r in _restarts(rec, "steady")[:3]] == [0.05, 0.05, 0.05]


async def test_last_exit_says_oom(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, data: Path
) -> None:
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as client:
        spec = supervisor.default_spec(
            ["sh", "-c", "exec dd if=/dev/zero of=/tmp/fill bs=1M count=64"],
            rootfs,
            memory_limit=16 << 20,
        )
        container = await client.new_container("oom", spec, restart="on-failure:1")
        task = await container.new_task(output="null")
        await task.start()
        status = await task.wait()
        assert status.oom_killed
        await _poll(lambda: container.last_exit is not None)
        assert container.last_exit is not None and container.last_exit.oom_killed
        assert container.last_exit.exit_code == 137
        await container.delete(force=True)


async def test_an_image_healthcheck_applies_unless_one_is_given(
    client: supervisor.Client, tmp_path: Path
) -> None:
    from tests._image_layout import image_tar

    ref = "example.com/supervision/probed:1"
    config = {
        "Cmd": ["sh", "-c", "touch /tmp/ok; exec sleep 60"],
        "Healthcheck": {"Test": ["CMD-SHELL", "test -e /tmp/ok"], "Interval": 100_000_000},
    }
    await client.import_image(image_tar(tmp_path / "probed.tar", ref, config), name=ref)
    try:
        container = await client.new_container("from-image", image=ref)
        task = await container.new_task(output="null")
        await task.start()
        health = await task.wait_healthy(timeout=30)
        assert health.status == "healthy"
        await container.delete(force=True)
        # The caller's own check wins; ["NONE"] turns the image's off.
        plain = await client.new_container("no-check", image=ref, healthcheck={"test": ["NONE"]})
        task = await plain.new_task(output="null")
        await task.start()
        assert task.health().status == "none"
        await plain.delete(force=True)
    finally:
        await client.remove_image(ref)


async def test_a_refused_kill_marks_no_stop(
    client: supervisor.Client, state_dir: Path, rootfs: str, data: Path
) -> None:
    from supervisor.domain._supervised_state import read_record

    spec = _spec(rootfs, "exec sleep 600", data)
    container = await client.new_container("refused", spec, restart="unless-stopped")
    task = await container.new_task(output="null")
    await task.start()
    with pytest.raises(supervisor.errors.InvalidArgument):
        await task.kill(0)
    record = read_record(state_dir, client.namespace, "refused")
    assert record is not None and not record.caller_stopped
    await container.delete(force=True)
