"""An in-memory containerd for unit tests: :class:`FakeTransport`.

It implements :class:`~supervisor.backends.base.Transport` with no containerd
behind it; :func:`supervisor.connect` binds it to its namespace.  Containers,
tasks and execs live in dictionaries and follow containerd 1.6's rules, as
checked against a real one: the same errors for the same state conflicts, the
same task events in the same order with the same fields as
:mod:`supervisor.backends._decode` produces; the project's
``tests/conformance`` suite runs the same test bodies against both to keep
it so.  No process runs: a test says what the processes do through the
transport's :attr:`~FakeTransport.controls` (:meth:`~FakeControls.exit`,
:meth:`~FakeControls.oom`), makes calls fail or stop half-way
(:meth:`~FakeControls.fail_next`, :meth:`~FakeControls.hold`), disturbs the
event stream (:meth:`~FakeControls.break_stream`,
:meth:`~FakeControls.drop_events`, :meth:`~FakeControls.restart`) and looks
at what the library did (:attr:`~FakeControls.calls`,
:meth:`~FakeControls.processes`, :meth:`~FakeControls.is_empty`).

Stdio: the fake opens no FIFO; it records the paths it is given.  The
library opens its own ends before creating a process and drops its
keep-alive writers at start, so a started process's stdout reads end-of-file
at once.

Every call raises only :mod:`supervisor.errors` types.  Make the fake inside
a running event loop (its controls use anyio events).

Example::

    fake = FakeTransport()
    async with supervisor.connect("fake", namespace="test", transport=fake,
                                  state_dir=tmp_path) as client:
        container = await client.new_container("web", spec)
        task = await container.new_task()
        await task.start()
        fake.controls.exit("web", code=3)         # the init process exits
        assert (await task.wait()).exit_code == 3
        await task.delete()
        await container.delete()
    assert fake.controls.calls["start"] == 1 and fake.controls.is_empty()
"""

from ._controls import FakeControls
from ._state import ZERO_TIME, Hold
from ._transport import FakeTransport

__all__ = ["ZERO_TIME", "FakeControls", "FakeTransport", "Hold"]
