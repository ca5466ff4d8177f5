"""A client whose event monitor dies, on a real containerd: pending waits
raise at once, later calls raise, ``closed`` turns true; a failure that is
not an outage (a decoding bug, a refused resubscription) is never retried."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import supervisor
from supervisor import errors
from supervisor._types import Topic
from supervisor.backends import containerd as grpc_backend
from supervisor.backends.base import EventStream
from supervisor.backends.containerd import ContainerdTransport
from tests.integration.conftest import purge_namespace

pytestmark = pytest.mark.asyncio

# Hang guard only: before the fix these waits never returned.
GUARD = 30.0


async def test_an_event_that_does_not_decode_fails_the_client_not_a_retry_loop(
    containerd_address: str,
    namespace: str,
    state_dir: Path,
    rootfs: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decode = grpc_backend.decode_event
    armed = False
    failures = 0

    def buggy_decode(envelope: Any) -> Any:
        nonlocal failures
        decoded = decode(envelope)
        if armed and getattr(decoded, "container_id", None) == "poison":
            failures += 1
            raise ValueError("a decoder bug")
        return decoded

    monkeypatch.setattr(grpc_backend, "decode_event", buggy_decode)
    with pytest.raises(errors.Unknown) as at_exit:
        async with supervisor.connect(
            containerd_address, namespace=namespace, state_dir=state_dir
        ) as client:
            victim = await client.new_container(
                "victim", supervisor.default_spec(["sleep", "3600"], rootfs)
            )
            task = await victim.new_task()
            await task.start()
            poison = await client.new_container("poison", supervisor.default_spec(["true"], rootfs))
            armed = True
            poison_task = await poison.new_task()
            # The victim never exits: only the failure ends its wait.
            pending = await _wait_while(task, poison_task.start)
            assert isinstance(pending, errors.Unknown)
            assert isinstance(pending.__cause__, errors.Unknown)
            assert isinstance(pending.__cause__.__cause__, ValueError)
            assert client.closed
            with pytest.raises(errors.Unknown):
                await client.containers()
    assert isinstance(at_exit.value.__cause__, ValueError)
    # Once: Unknown is not resubscribed as if containerd were down.
    assert failures == 1
    await purge_namespace(containerd_address, namespace)  # the victim still runs


async def _wait_while(
    task: supervisor.Task, trigger: Callable[[], Awaitable[Any]]
) -> BaseException:
    """What ``task.wait()`` raised, pending while ``trigger()`` ran."""
    raised: list[BaseException] = []

    async def waiter() -> None:
        try:
            status = await task.wait()
        except errors.SupervisorError as exc:
            raised.append(exc)
        else:
            pytest.fail(f"the wait returned {status}")

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.lowlevel.checkpoint()  # the wait is pending first
            await trigger()
    return raised[0]


class _RefusesResubscription:
    """The real transport, whose first subscription can be broken on demand
    and whose later subscriptions fail with ``refusal``."""

    def __init__(self, real: ContainerdTransport, refusal: errors.SupervisorError) -> None:
        self._real = real
        self._refusal = refusal
        self._break = anyio.Event()
        self.subscriptions = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def break_stream(self) -> None:
        """The live stream fails with Unavailable, as on a broken connection
        (at the next item: a marker of ours that containerd delivers)."""
        self._break.set()
        await self._real.sync("wake")

    @contextlib.asynccontextmanager
    async def subscribe(
        self, topics: Collection[Topic] | None = None
    ) -> AsyncIterator[EventStream]:
        self.subscriptions += 1
        if self.subscriptions > 1:
            raise self._refusal
        async with self._real.subscribe(topics) as stream:
            yield self._breakable(stream)

    async def _breakable(self, stream: EventStream) -> EventStream:
        async for item in stream:
            if self._break.is_set():
                raise errors.Unavailable("containerd connection failed: injected")
            yield item


@pytest.mark.parametrize(
    "refusal",
    [errors.FailedPrecondition("resubscription refused"), errors.Unknown("resubscription bug")],
    ids=["failed-precondition", "unknown"],
)
async def test_a_refused_resubscription_fails_pending_and_later_calls(
    containerd_address: str,
    namespace: str,
    state_dir: Path,
    rootfs: str,
    refusal: errors.SupervisorError,
) -> None:
    transport = _RefusesResubscription(
        ContainerdTransport.open(containerd_address, namespace), refusal
    )
    with pytest.raises(type(refusal)):
        async with supervisor.connect(
            containerd_address,
            namespace=namespace,
            state_dir=state_dir,
            transport=transport,
        ) as client:
            container = await client.new_container(
                "stranded", supervisor.default_spec(["sleep", "3600"], rootfs)
            )
            task = await container.new_task()
            await task.start()
            pending = await _wait_while(task, transport.break_stream)
            assert type(pending) is type(refusal)
            assert refusal.message in str(pending)
            assert client.closed
            with pytest.raises(type(refusal)):
                await task.kill()
    assert transport.subscriptions == 2  # no retry after the refusal
    await purge_namespace(containerd_address, namespace)
