"""The live Task and Process objects of one Container object: the one place
that holds them, so that no object reaches into another's fields to add or
drop one.

The Container object makes it and hands it to every Task and Process it
(or its Task) makes; each drops itself once deleted. It belongs to the
Container object, not to the session: two Container objects loaded for one
id each keep their own Task object, and objects the application drops are
collected with their container instead of living on in the session.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

__all__ = ["LiveProcesses"]

TaskT = TypeVar("TaskT")
ProcT = TypeVar("ProcT")


class LiveProcesses(Generic[TaskT, ProcT]):
    """The container's live Task object, and each Task object's execs.

    Generic so that the process module, which the task module builds on,
    need not import the Task class back.
    """

    def __init__(self) -> None:
        self._task: TaskT | None = None
        # Keyed by the Task object: a Task deleted (or replaced by a newer
        # one) still lists the execs it had, as long as anyone holds it.
        self._execs: weakref.WeakKeyDictionary[TaskT, dict[str, ProcT]] = (
            weakref.WeakKeyDictionary()
        )
        # How each process reopens stdio it was loaded without (weakly: a
        # process the application dropped is not kept for it).
        self._reattach: weakref.WeakKeyDictionary[
            object, weakref.WeakMethod[Callable[[], None]]
        ] = weakref.WeakKeyDictionary()

    @property
    def task(self) -> TaskT | None:
        """The container's live Task object, if any."""
        return self._task

    def add_task(self, task: TaskT) -> None:
        """``task`` is now the container's Task object."""
        self._task = task
        self._execs.setdefault(task, {})

    def drop_task(self, task: TaskT) -> None:
        """``task`` was deleted: the container has no live Task (unless a
        newer object took its place already)."""
        if self._task is task:
            self._task = None

    def execs(self, task: TaskT) -> Mapping[str, ProcT]:
        """A copy of the execs of that Task object."""
        return dict(self._execs.get(task, {}))

    def has_exec(self, task: TaskT, exec_id: str) -> bool:
        return exec_id in self._execs.get(task, {})

    def add_exec(self, task: TaskT, exec_id: str, process: ProcT) -> None:
        self._execs.setdefault(task, {})[exec_id] = process

    def drop_exec(self, exec_id: str, process: ProcT) -> None:
        """``process`` was deleted: the container's live Task lists it no more."""
        if self._task is None:
            return
        execs = self._execs.get(self._task, {})
        if execs.get(exec_id) is process:
            del execs[exec_id]

    def on_attach(self, process: ProcT | TaskT, reattach: Callable[[], None]) -> None:
        """``reattach`` (a method of ``process``) reopens the stdio it was
        loaded without, when :meth:`attach` asks."""
        self._reattach[process] = weakref.WeakMethod(reattach)

    def attach(self, task: TaskT) -> None:
        """Reopen the stdio of ``task`` and of its execs, those loaded
        without attaching it (a later ``Container.task()`` that attaches)."""
        for process in (task, *self.execs(task).values()):
            ref = self._reattach.get(process)
            reattach = None if ref is None else ref()
            if reattach is not None:
                reattach()
