"""Regression tests for what adversarial use found: refused calls that changed
state, waits that hung, paths taken from labels, inputs altered in transit.
Each test failed on the code before its fix."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import supervisor
from supervisor import errors
from tests.integration.conftest import fifo_files
from tests.integration.helpers import Recorder, read_all

pytestmark = pytest.mark.asyncio


async def _sleeper(client: supervisor.Client, rootfs: str, cid: str) -> supervisor.Task:
    container = await client.new_container(cid, supervisor.default_spec(["sleep", "60"], rootfs))
    task = await container.new_task()
    await task.start()
    return task


# -- ownership of ids and files ------------------------------------------------


async def test_refused_duplicate_exec_id_leaves_the_existing_exec_working(
    client: supervisor.Client, rootfs: str
) -> None:
    task = await _sleeper(client, rootfs, "dup")
    first = await task.exec("probe", ["sh", "-c", "echo first"])
    with pytest.raises(errors.AlreadyExists):
        await task.exec("probe", ["sh", "-c", "echo second"])
    await first.start()
    out, _ = await first.communicate()
    assert out == b"first\n"
    await first.delete()
    await task.delete(force=True)
    await task.container.delete()


async def test_concurrent_new_task_exactly_one_wins_and_runs(
    client: supervisor.Client, rootfs: str, state_dir: Path
) -> None:
    spec = supervisor.default_spec(["sh", "-c", "echo won"], rootfs)
    container = await client.new_container("race", spec)
    results: list[supervisor.Task | BaseException] = []

    async def attempt() -> None:
        try:
            results.append(await container.new_task())
        except errors.SupervisorError as exc:
            results.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(attempt)
        tg.start_soon(attempt)
    winners = [r for r in results if isinstance(r, supervisor.Task)]
    losers = [r for r in results if not isinstance(r, supervisor.Task)]
    assert len(winners) == 1, results
    assert len(losers) == 1 and isinstance(losers[0], errors.AlreadyExists), results
    task = winners[0]
    await task.start()
    out, _ = await task.communicate()
    assert out == b"won\n"
    await task.delete()
    await container.delete()
    assert fifo_files(state_dir) == []


async def test_exec_id_equal_to_the_container_id_is_refused(
    client: supervisor.Client, rootfs: str
) -> None:
    task = await _sleeper(client, rootfs, "same")
    with pytest.raises(errors.InvalidArgument, match="container id"):
        await task.exec("same", ["true"])
    assert await task.status() is supervisor.ProcessState.RUNNING
    await task.delete(force=True)
    await task.container.delete()


async def test_container_delete_asks_containerd_whether_a_task_exists(
    client: supervisor.Client, rootfs: str
) -> None:
    await _sleeper(client, rootfs, "shared")
    other = await client.load_container("shared")  # knows nothing of the task
    with pytest.raises(errors.FailedPrecondition):
        await other.delete()
    task = await other.task()
    assert await task.status() is supervisor.ProcessState.RUNNING
    await task.delete(force=True)
    await other.delete()


async def test_bundle_label_set_by_another_client_is_never_followed(
    client: supervisor.Client, rootfs: str, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    await client.new_container(
        "labelled",
        supervisor.default_spec(["true"], rootfs),
        labels={"io.containerd-supervisor.bundle": str(victim)},
    )
    loaded = await client.load_container("labelled")
    assert loaded.bundle_dir == client.state_dir / client.namespace / "labelled"
    await loaded.delete()
    assert (victim / "precious").read_text() == "keep me"


async def test_user_namespace_level_never_meets_another_namespace(
    containerd_address: str, client: supervisor.Client, rootfs: str, state_dir: Path
) -> None:
    # The level a remapped container of client.namespace would once have used.
    neighbour = f"{client.namespace}.100000.100000"[:76]
    async with supervisor.connect(
        containerd_address, namespace=neighbour, state_dir=state_dir
    ) as other:
        try:
            spec = supervisor.default_spec(["sh", "-c", "sleep 1; echo alive"], rootfs)
            container = await other.new_container("n1", spec)
            task = await container.new_task()
            await task.start()
            userns = supervisor.default_spec(["true"], rootfs)
            userns["linux"]["namespaces"].append({"type": "user"})
            userns["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
            userns["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
            remapped = await client.new_container("n1", userns)
            out, _ = await task.communicate()
            assert out == b"alive\n"
            await task.delete()
            await container.delete()
            await remapped.delete()
        finally:
            with contextlib.suppress(errors.SupervisorError):
                for c in await other.containers():
                    with contextlib.suppress(errors.NotFound):
                        await (await c.task()).delete(force=True)
                    await c.delete()


async def test_an_observer_keeps_nothing_for_another_clients_execs(
    containerd_address: str, client: supervisor.Client, rootfs: str, state_dir: Path
) -> None:
    rec = Recorder()
    observer_state = state_dir.parent / "observer"
    async with supervisor.connect(
        containerd_address, namespace=client.namespace, backend=rec, state_dir=observer_state
    ) as observer:
        task = await _sleeper(client, rootfs, "busy")
        for i in range(20):
            proc = await task.exec(f"e{i}", ["true"])
            await proc.start()
            await proc.wait()
            await proc.delete()
        await rec.wait_for(lambda: sum(rec.exits().values()) == 20)
        session = observer._session
        assert len(session.tracker) <= 1  # at most the init process it saw start
        ledger_dir = observer_state / ".exits" / client.namespace
        assert not any(ledger_dir.glob("busy@e*"))
        await task.delete(force=True)
        await task.container.delete()
        await rec.wait_for(lambda: rec.exits()[("busy", "busy")] == 1)
        with anyio.fail_after(10):
            while len(session.tracker):
                await anyio.sleep(0.05)


# -- waiting, cancelling, closing ---------------------------------------------


async def test_wait_returns_for_an_exec_deleted_before_it_ran(
    client: supervisor.Client, rootfs: str
) -> None:
    task = await _sleeper(client, rootfs, "never")
    proc = await task.exec("idle", ["true"])
    async with anyio.create_task_group() as tg:
        waited: list[supervisor.ExitStatus] = []

        async def wait() -> None:
            waited.append(await proc.wait())

        tg.start_soon(wait)
        await anyio.sleep(0.05)
        await proc.delete()
    assert len(waited) == 1
    await task.delete(force=True)
    await task.container.delete()


async def test_failed_exec_start_is_typed_and_cleaned_up(
    client: supervisor.Client, rootfs: str, state_dir: Path
) -> None:
    task = await _sleeper(client, rootfs, "missing")
    before = set(fifo_files(state_dir))
    proc = await task.exec("ghost", ["/no/such/binary"])
    with pytest.raises(errors.CommandNotFound):
        await proc.start()
    with anyio.fail_after(5):
        await proc.wait()  # returns: it will never run
    with pytest.raises(errors.NotFound):
        await proc.status()
    assert set(fifo_files(state_dir)) == before
    assert task.execs == {}
    await task.delete(force=True)
    await task.container.delete()


async def test_missing_binary_of_the_init_process_is_typed(
    client: supervisor.Client, rootfs: str, state_dir: Path
) -> None:
    container = await client.new_container(
        "noexe", supervisor.default_spec(["/no/such/binary"], rootfs)
    )
    with pytest.raises(errors.CommandNotFound):
        task = await container.new_task()
        await task.start()
    with contextlib.suppress(errors.NotFound):
        await (await container.task()).delete(force=True)
    await container.delete()
    assert fifo_files(state_dir) == []


@pytest.mark.parametrize("delay", [0.0, 0.001, 0.005, 0.02])
async def test_cancelled_start_leaves_working_stdio_or_a_retryable_task(
    client: supervisor.Client, rootfs: str, delay: float
) -> None:
    spec = supervisor.default_spec(["sh", "-c", "echo hi"], rootfs)
    container = await client.new_container(f"cstart-{int(delay * 1000)}", spec)
    task = await container.new_task()
    with anyio.move_on_after(delay):
        await anyio.lowlevel.checkpoint() if delay else None
        await task.start()
    if await task.status() is supervisor.ProcessState.CREATED:
        await task.start()
    with anyio.fail_after(10):
        out = await read_all(task.stdout)  # reaches end-of-file: no write end of ours is left
    assert out == b"hi\n"
    assert (await task.wait()).exit_code == 0
    await task.delete()
    await container.delete()


async def test_calls_after_close_raise_closed(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as c:
        task = await _sleeper(c, rootfs, "after")
        container = task.container
        pending: list[BaseException] = []

        async def wait() -> None:
            try:
                await task.wait()
            except errors.Closed as exc:
                pending.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.05)
            c._session.close()  # what leaving the block does first
    assert len(pending) == 1
    calls = (
        c.version,
        c.containers,
        c.restore,
        lambda: c.new_container("x", supervisor.default_spec(["true"], rootfs)),
        lambda: c.load_container("after"),
        container.new_task,
        container.delete,
        task.start,
        task.kill,
        task.wait,
        task.pause,
        task.stats,
        task.delete,
        lambda: task.exec(None, ["true"]),
    )
    for call in calls:
        with pytest.raises(errors.Closed):
            await call()
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as again:
        await (await (await again.load_container("after")).task()).delete(force=True)
        await (await again.load_container("after")).delete()


async def test_a_stuck_backend_cannot_hold_close(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    class Stuck:
        async def process_event(
            self, container_id: str, event: supervisor.EventType, info: supervisor.EventInfo
        ) -> None:
            await anyio.sleep_forever()

    timeouts = supervisor.Timeouts(handler=0.5)
    with anyio.fail_after(30):
        async with supervisor.connect(
            containerd_address,
            namespace=namespace,
            backend=Stuck(),
            state_dir=state_dir,
            timeouts=timeouts,
        ) as c:
            task = await _sleeper(c, rootfs, "stuck")
            await task.delete(force=True)
            await task.container.delete()


# -- errors and inputs -----------------------------------------------------------


def _deep(levels: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(levels):
        value = {"x": value}
    return value


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s["linux"].__setitem__("namespaces", 5),
        lambda s: s["linux"].__setitem__("namespaces", [5]),
        lambda s: s.__setitem__("annotations", _deep(5000)),
        lambda s: s.__setitem__("annotations", {"a": "\udc80"}),
        lambda s: s["process"].__setitem__("args", ["echo", "\udc80"]),
        lambda s: s["process"].__setitem__("args", "echo hi"),
        lambda s: s.__setitem__("x", 1 << 70),
        lambda s: s.__setitem__("x", float("nan")),
        lambda s: s.__setitem__("x", object()),
        lambda s: s["linux"].update(
            namespaces=[{"type": "user"}],
            uidMappings=[{"containerID": 0, "hostID": 1 << 40, "size": 1}],
            gidMappings=[{"containerID": 0, "hostID": 0, "size": 1}],
        ),
        lambda s: s["linux"].update(
            namespaces=[{"type": "user"}],
            uidMappings=[{"containerID": 5, "hostID": 1000, "size": 1}],
            gidMappings=[{"containerID": 0, "hostID": 0, "size": 1}],
        ),
    ],
)
async def test_bad_specs_are_invalid_argument_and_make_nothing(
    client: supervisor.Client, rootfs: str, state_dir: Path, mutate: object
) -> None:
    spec = supervisor.default_spec(["true"], rootfs)
    assert callable(mutate)
    mutate(spec)
    with pytest.raises(errors.InvalidArgument):
        await client.new_container("bad", spec)
    assert await client.containers() == []
    assert not (state_dir / client.namespace / "bad").exists()


async def test_self_referencing_spec_is_invalid_argument(
    client: supervisor.Client, rootfs: str
) -> None:
    spec = supervisor.default_spec(["true"], rootfs)
    loop: dict[str, object] = {}
    loop["self"] = loop
    spec["annotations"] = loop
    with pytest.raises(errors.InvalidArgument):
        await client.new_container("loop", spec)


async def test_bad_labels_and_runtime_names_are_invalid_argument(
    client: supervisor.Client, rootfs: str
) -> None:
    spec = supervisor.default_spec(["true"], rootfs)
    for kwargs in (
        {"labels": {"k": "\udc80"}},
        {"labels": {"\udc80": "v"}},
        {"labels": {"k": 5}},
        {"runtime": "io.containerd.\udc80"},
        {"runtime": 5},
        {"runtime_options": {"no_such_option": True}},
    ):
        with pytest.raises(errors.InvalidArgument):
            await client.new_container("bad", spec, **kwargs)  # type: ignore[arg-type]
    assert await client.containers() == []


async def test_signals_and_sizes_that_cannot_be_sent_faithfully_are_refused(
    client: supervisor.Client, rootfs: str
) -> None:
    task = await _sleeper(client, rootfs, "inputs")
    for bad in ("abc", 2**32 + 9, 0, -1, 65, 9.0, True):
        with pytest.raises(errors.InvalidArgument):
            await task.kill(bad)  # type: ignore[arg-type]
    for w, h in (("a", 1), (2**40, 1), (1, 2**16), (0, 0), (1.5, 2)):
        with pytest.raises(errors.InvalidArgument):
            await task.resize(w, h)  # type: ignore[arg-type]
    assert await task.status() is supervisor.ProcessState.RUNNING
    await task.delete(force=True)
    await task.container.delete()


async def test_update_resources_is_checked_before_the_rpc(
    client: supervisor.Client, rootfs: str
) -> None:
    task = await _sleeper(client, rootfs, "resources")
    for bad in (
        {"memroy": {"limit": 1 << 26}},
        {"memory": {"limti": 5}},
        {"memory": {"limit": "lots"}},
        {"memory": {"limit": object()}},
        {"cpu": {"shares": -1}},
        {"pids": {"limit": 1 << 70}},
        {"blockIO": {"weight": 5000}},
        [("memory", 1)],
    ):
        with pytest.raises(errors.InvalidArgument):
            await task.update_resources(bad)  # type: ignore[arg-type]
    await task.update_resources({"memory": {"limit": 64 << 20}, "pids": {"limit": 100}})
    await task.delete(force=True)
    await task.container.delete()


async def test_status_tells_created_running_paused_stopped(
    client: supervisor.Client, rootfs: str
) -> None:
    container = await client.new_container(
        "states2", supervisor.default_spec(["sleep", "60"], rootfs)
    )
    task = await container.new_task()
    assert await task.status() is supervisor.ProcessState.CREATED
    await task.start()
    assert await task.status() is supervisor.ProcessState.RUNNING
    await task.pause()
    assert await task.status() is supervisor.ProcessState.PAUSED
    await task.resume()
    await task.kill(9)  # pid 1 of a container ignores SIGTERM without a handler
    await task.wait()
    assert await task.status() is supervisor.ProcessState.STOPPED
    await task.delete()
    await container.delete()


async def test_state_dir_of_another_user_or_writable_by_others_is_refused(
    containerd_address: str, namespace: str, tmp_path: Path
) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o777)
    os.chmod(open_dir, 0o777)
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 65534, 65534)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    for bad in (open_dir, foreign, link):
        with pytest.raises(errors.FailedPrecondition):
            async with supervisor.connect(containerd_address, namespace=namespace, state_dir=bad):
                pass
