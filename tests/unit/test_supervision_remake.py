"""Making a supervised container's task again: a create that containerd
refuses for a task directory a killed containerd left behind is waited out
(the directory goes when the Daemon's next start, or an operator, removes
it), not the end of the container's supervision. A stub container stands
for containerd here: the refusal itself is tested in test_task_leftover."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor import errors
from supervisor.supervision._remake import new_started

pytestmark = pytest.mark.asyncio


class _Task:
    def __init__(self) -> None:
        self.started = 0

    async def start(self) -> None:
        self.started += 1


class _Container:
    id = "wedged"

    def __init__(self, refusals: int, cause: errors.SupervisorError) -> None:
        self.refusals = refusals
        self.cause = cause
        self.creates = 0
        self.made: list[_Task] = []

    async def new_task(self, **settings: Any) -> _Task:
        self.creates += 1
        if self.creates <= self.refusals:
            try:
                raise self.cause
            except errors.SupervisorError as exc:
                raise errors.FailedPrecondition(
                    "the task directory was left behind", container_id=self.id
                ) from exc
        task = _Task()
        self.made.append(task)
        return task


async def test_a_leftover_task_directory_is_waited_out() -> None:
    container = _Container(3, errors.AlreadyExists("mkdir: file exists"))
    task = await new_started(container, {})  # type: ignore[arg-type]
    assert container.creates == 4
    assert container.made == [task] and task.started == 1  # type: ignore[comparison-overlap]


async def test_another_failed_precondition_ends_the_restart() -> None:
    container = _Container(1, errors.InvalidArgument("no"))
    with pytest.raises(errors.FailedPrecondition):
        await new_started(container, {})  # type: ignore[arg-type]
    assert container.creates == 1
