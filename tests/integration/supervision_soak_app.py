"""The application of the supervision soak (``test_supervision_soak.py``),
run as a process of its own so that the test can SIGKILL it.

``run``: the first generation makes the containers (crash-loopers with
``on-failure:N`` and a health check, and one steady container with a slow
probe), later ones take them up with ``restore()``; then it supervises until
killed. Every RESTART its backend hears is appended to ``DATA/reports``.

``final:SECONDS``: takes them up, waits until every crash-looper made its N
restarts and stopped (at most SECONDS from its start: then it writes what
it found to ``DATA/stuck.json`` and fails), writes what it saw to
``DATA/final.json``, deletes everything and says what was left.

    python -m tests.integration.supervision_soak_app ADDRESS NS STATE ROOTFS DATA MODE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio

import supervisor
from supervisor import EventType, HealthCheck, RestartPolicy, errors

LOOPERS = 4
RESTARTS = 12
OUTAGE = (errors.Unavailable, errors.DeadlineExceeded, errors.Cancelled)
POLICY = RestartPolicy("on-failure", RESTARTS, initial_delay=0.2, max_delay=0.8)


class Reports:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def process_event(
        self, container_id: str, event: EventType, info: supervisor.EventInfo
    ) -> None:
        if event is EventType.RESTART:
            line = json.dumps({"cid": container_id, "attempt": info.attempt, "delay": info.delay})
            with self.path.open("a") as f:
                f.write(line + "\n")


async def _retry(action: Any) -> Any:
    with anyio.fail_after(90):
        while True:
            try:
                return await action()
            except OUTAGE:
                await anyio.sleep(0.1)


def _spec(rootfs: str, data: Path, name: str, script: str) -> dict[str, Any]:
    mounts = [f"{data}:/data"]
    return supervisor.default_spec(["sh", "-c", script], rootfs, mounts=mounts)


async def _make(client: supervisor.Client, rootfs: str, data: Path) -> None:
    # Each start and each exit is stamped with the host's uptime (not
    # namespaced): the test measures the back-off from them.
    for k in range(LOOPERS):
        cid = f"loop-{k}"
        script = (
            f"read t _ < /proc/uptime; echo start $t >> /data/{cid}; sleep 0.3; "
            f"read t _ < /proc/uptime; echo exit $t >> /data/{cid}; exit 1"
        )
        check = HealthCheck(["CMD", "true"], interval=0.1, timeout=5)
        container = await client.new_container(
            cid, _spec(rootfs, data, cid, script), restart=POLICY, healthcheck=check
        )
        task = await container.new_task(output="null")
        await task.start()
    # A probe that never ends in time: each is killed at its timeout.
    slow = HealthCheck(["CMD", "sleep", "30"], interval=0.05, timeout=0.3)
    steady = await client.new_container(
        "steady",
        _spec(rootfs, data, "steady", "exec sleep 100000"),
        restart="always",
        healthcheck=slow,
    )
    task = await steady.new_task(output="null")
    await task.start()


async def _run(client: supervisor.Client, rootfs: str, data: Path) -> None:
    restored = await _retry(client.restore)
    if not restored:
        await _make(client, rootfs, data)
    print("ready", flush=True)
    await anyio.sleep_forever()


def _starts(data: Path, cid: str) -> int:
    path = data / cid
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if line.startswith("start"))


async def _final(client: supervisor.Client, data: Path, state: Path, deadline: float) -> None:
    pairs = await _retry(client.restore)
    containers = {c.id: c for c, _ in pairs}
    loopers = [containers[f"loop-{k}"] for k in range(LOOPERS)]
    try:
        with anyio.fail_after(max(deadline - anyio.current_time(), 0.0)):
            while not all([await _done(c) for c in loopers]):
                await anyio.sleep(0.1)
    except TimeoutError:
        (data / "stuck.json").write_text(json.dumps(await _diagnosis(loopers, data), default=str))
        raise
    # The steady container's probes: at most the one running now.
    steady_task = await _retry((await _retry(lambda: client.load_container("steady"))).task)
    pids = [p.pid for p in await _retry(steady_task.pids)]
    execs = sorted(steady_task.execs)
    procs = {}
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            ppid = next(
                line.split()[1]
                for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("PPid:")
            )
            procs[pid] = f"{cmd} (ppid {ppid})"
        except OSError as exc:
            procs[pid] = repr(exc)
    seen = {
        "counts": {c.id: c.restart_count for c in loopers},
        "starts": {c.id: _starts(data, c.id) for c in loopers},
        "steady_pids": pids,
        "steady_execs": execs,
        "steady_procs": procs,
        "steady_restarts": containers["steady"].restart_count,
    }
    for c in containers.values():
        await _retry(lambda c=c: c.delete(force=True))
    session = client._session
    seen["tracker"] = len(session.tracker)
    seen["fifos"] = [str(p) for p in state.rglob("*") if p.is_fifo()]
    seen["ledger"] = [str(p) for p in (state / ".exits").rglob("*") if p.is_file()]
    seen["records"] = [str(p) for p in (state / ".supervision").rglob("*.json")]
    (data / "final.json").write_text(json.dumps(seen))


async def _diagnosis(loopers: list[supervisor.Container], data: Path) -> dict[str, Any]:
    from supervisor.domain._supervised_state import record_for

    out: dict[str, Any] = {}
    for c in loopers:
        record = record_for(c._session, c.id)
        try:
            task = await c.task(attach=False)
            state = [task.pid, (await task.status()).value]
        except errors.SupervisorError as exc:
            state = [repr(exc)]
        out[c.id] = {
            "record": None if record is None else json.loads(record.to_json()),
            "task": state,
            "starts": _starts(data, c.id),
        }
    return out


async def _done(container: supervisor.Container) -> bool:
    # Made its restarts, and decided on the exit of its last task (the one
    # it has now): nothing is pending.
    from supervisor.domain._supervised_state import record_for

    record = record_for(container._session, container.id)
    if record is None or record.restart_count != RESTARTS or record.pending is not None:
        return False
    try:
        task = await container.task(attach=False)
    except (errors.NotFound, *OUTAGE):
        return False
    return record.handled is not None and record.handled[0] == task.pid


async def main(address: str, ns: str, state: str, rootfs: str, data: str, mode: str) -> None:
    data_dir = Path(data)
    backend = Reports(data_dir / "reports")
    mode, _, budget = mode.partition(":")
    deadline = anyio.current_time() + float(budget or 120)

    async def connect() -> Any:
        return supervisor.connect(address, namespace=ns, backend=backend, state_dir=state)

    while True:
        try:
            async with await connect() as client:
                if mode == "run":
                    await _run(client, rootfs, data_dir)
                else:
                    await _final(client, data_dir, Path(state), deadline)
                return
        except OUTAGE:
            await anyio.sleep(0.2)  # containerd is being restarted


if __name__ == "__main__":
    import logging
    import os

    logging.basicConfig(
        filename=str(Path(sys.argv[5]) / "app.log"),
        level=logging.INFO,
        format=f"%(asctime)s {os.getpid()} %(name)s %(message)s",
    )
    anyio.run(main, *sys.argv[1:])
