"""What the plugin keeps about one test: the library's log lines of its
namespace, the containers it started, and what it leaked.

A test is recognised by a context variable set while its namespace fixture
is up: pytest-asyncio runs the test and its fixtures in copies of the main
context, so every task the test starts (and every log record such a task
emits) carries it, while the session's private containerd thread and other
sessions' clients do not.

The library's logger is opened to DEBUG while a test runs so the report can
show everything; a filter on each ``supervisor.*`` logger keeps from every
handler (pytest's log capture too) what the application's levels would not
have let through, so nothing else changes.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import stat
import weakref
from collections import deque
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

if TYPE_CHECKING:
    from .. import Client
    from ._factory import Containers

__all__ = ["RECORD", "TestRecord", "current"]

_LOGGER = "supervisor"
# The level we give the library's logger while a test runs: below DEBUG, and
# one nobody else sets, so a level someone else set meanwhile is told apart.
_OURS = logging.DEBUG - 1
_KEEP_LOG_LINES = 5000
_FORMAT = logging.Formatter(
    "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s %(message)s", datefmt="%H:%M:%S"
)

current: contextvars.ContextVar[TestRecord | None] = contextvars.ContextVar(
    "supervisor_pytest_test", default=None
)

_TaskFactory = Callable[..., "asyncio.Future[Any]"]


class TestRecord:
    """One test's namespace, log lines, containers and leaks."""

    __test__ = False  # not a test class, whatever pytest's naming rules say

    def __init__(self, namespace: str, state_dir: Path) -> None:
        self.namespace = namespace
        self.state_dir = state_dir
        self.log_lines: deque[str] = deque(maxlen=_KEEP_LOG_LINES)
        self.containers: Containers | None = None
        # The test's clients (the fixture's, the factory's): what their
        # processes left unread goes in the report of a failure.
        self.clients: list[Client] = []
        self.leaks: list[str] = []
        self.failed = False  # the test itself failed (in setup or call)
        self._tap: _Tap | None = None
        self._tapped: list[logging.Logger] = []
        self._saved_level = logging.NOTSET
        self._token: contextvars.Token[TestRecord | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous_factory: _TaskFactory | None = None
        self._tasks: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()

    # -- the test's context and log ------------------------------------------

    def enter(self) -> None:
        """Mark the current context as this test's and start taking its log."""
        self._token = current.set(self)
        root = logging.getLogger(_LOGGER)
        saved = logging.NOTSET if root.level == _OURS else root.level
        self._saved_level = saved
        tap = _Tap(self, root, saved)
        self._tap = tap
        # Each logger's own filter: a logger's filters see the records it
        # makes, before any handler (pytest's capture among them) does.
        self._tapped = [root] + [
            logger
            for name, logger in logging.Logger.manager.loggerDict.items()
            if name.startswith(_LOGGER + ".") and isinstance(logger, logging.Logger)
        ]
        for logger in self._tapped:
            logger.addFilter(tap)
        if root.getEffectiveLevel() > _OURS:
            root.setLevel(_OURS)

    def leave(self) -> None:
        root = logging.getLogger(_LOGGER)
        if self._tap is not None:
            for logger in self._tapped:
                logger.removeFilter(self._tap)
            self._tap = None
            self._tapped = []
        if root.level == _OURS:
            root.setLevel(self._saved_level)
        if self._token is not None:
            current.reset(self._token)
            self._token = None

    def finish(self) -> None:
        """After every fixture's teardown: a fixture that saved our level
        while the test ran (caplog.set_level does) may have put it back."""
        root = logging.getLogger(_LOGGER)
        if root.level == _OURS:
            root.setLevel(self._saved_level)

    # -- asyncio tasks the test starts ----------------------------------------

    def watch_tasks(self, loop: asyncio.AbstractEventLoop) -> None:
        """Note every task made in this test's context from now on."""
        self._loop = loop
        self._previous_factory = loop.get_task_factory()
        # typeshed's factory type is generic in the task's result; ours passes any.
        loop.set_task_factory(cast(Any, self._task_factory))

    def _task_factory(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Future[Any]:
        previous = self._previous_factory
        if previous is not None:
            task: asyncio.Future[Any] = previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        if current.get() is self and isinstance(task, asyncio.Task):
            self._tasks.add(task)
        return task

    async def pending_tasks(self) -> list[str]:
        """Tasks of the test still pending; they are cancelled (bounded wait)."""
        loop = self._loop
        if loop is None:
            return []
        if loop.get_task_factory() == self._task_factory:
            loop.set_task_factory(cast(Any, self._previous_factory))
        me = asyncio.current_task()
        for _ in range(5):  # let tasks that are already finishing finish
            await asyncio.sleep(0)
        left = [t for t in self._tasks if t is not me and not t.done()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=5.0)
        return [f"pending asyncio task {_describe(t)}" for t in left]

    # -- stdio -----------------------------------------------------------------

    def open_fifos(self) -> list[str]:
        """FIFOs under the test's state directory that this process holds open."""
        prefix = str(self.state_dir) + os.sep
        found = []
        try:
            fds = os.listdir("/proc/self/fd")
        except OSError:  # not Linux
            return []
        for fd in fds:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
                if target.startswith(prefix) and stat.S_ISFIFO(os.fstat(int(fd)).st_mode):
                    found.append(f"open FIFO {target[len(prefix) :]} (fd {fd})")
            except (OSError, ValueError):
                continue
        return sorted(found)

    # -- the report ------------------------------------------------------------

    def sections(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.containers is not None and len(self.containers):
            out.append(("containers stdout/stderr", self.containers.report()))
        unread = self._unread()
        if unread:
            out.append(("unread container output", unread))
        lines = "\n".join(self.log_lines) if self.log_lines else "(no records)"
        out.append(("supervisor log", f"namespace {self.namespace}\n{lines}"))
        return out

    def _unread(self) -> str:
        from ._unread import unread_output

        # The containers fixture reads its own containers' pipes: taking
        # bytes from them here would hide those bytes from its section.
        skip = {r.id for r in self.containers} if self.containers is not None else set()
        try:
            return unread_output(self.clients, skip)
        except Exception as exc:  # noqa: BLE001 - the report must not fail the run
            return f"(cannot read the unread output: {exc!r})"


def _describe(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    what = getattr(coro, "__qualname__", None) or repr(coro)
    where = ""
    code = getattr(coro, "cr_code", None)
    frame = getattr(coro, "cr_frame", None)
    if code is not None and frame is not None:
        where = f" at {code.co_filename}:{frame.f_lineno}"
    return f"{task.get_name()!r} running {what}{where}"


class _Tap(logging.Filter):
    """Keeps the test's records, and lets through only those the
    application's own levels would have let through."""

    def __init__(self, test: TestRecord, root: logging.Logger, saved_level: int) -> None:
        super().__init__()
        self._test = test
        self._root = root
        self._saved_level = saved_level

    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(record, "fields", None)
        namespace = fields.get("namespace") if isinstance(fields, dict) else None
        if namespace is None:
            namespace = getattr(record, "namespace", None)
        if namespace is not None:
            mine = namespace == self._test.namespace
        else:
            mine = current.get() is self._test
        if mine:
            try:
                self._test.log_lines.append(_FORMAT.format(record))
            except Exception:  # noqa: BLE001 - a bad record must not fail the test
                self._test.log_lines.append(f"{record.levelname} {record.name} {record.msg!r}")
        return record.levelno >= self._threshold(record.name)

    def _threshold(self, name: str) -> int:
        node: logging.Logger | None = logging.getLogger(name)
        while node is not None:
            level = node.level
            if node is self._root and level == _OURS:
                level = self._saved_level
            if level:
                return level
            node = node.parent
        return logging.NOTSET


# Where each test item keeps its record (the plugin makes it, the fixtures use it).
RECORD: pytest.StashKey[TestRecord] = pytest.StashKey()
