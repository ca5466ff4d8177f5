"""An in-memory containerd for unit tests: :class:`FakeTransport`.

It implements :class:`~supervisor.backends.base.Transport` with no containerd
behind it.  Containers, tasks and execs live in dictionaries and follow
containerd 1.6's rules, as checked against a real one: the same errors for
the same state conflicts, the same task events in the same order with the
same fields as :mod:`supervisor.backends._decode` produces; the project's
``tests/conformance`` suite runs the same test bodies against both to keep
it so.  No process runs:
a test says what the processes do through the controls
(:meth:`~FakeTransport.exit`, :meth:`~FakeTransport.oom`), makes calls fail or
stop half-way (:meth:`~FakeTransport.fail_next`, :meth:`~FakeTransport.hold`),
disturbs the event stream (:meth:`~FakeTransport.break_stream`,
:meth:`~FakeTransport.drop_events`, :meth:`~FakeTransport.restart`) and looks
at what the library did (:attr:`~FakeTransport.calls`,
:meth:`~FakeTransport.processes`, :meth:`~FakeTransport.is_empty`).

Stdio: the fake opens no FIFO; it records the paths it is given.  The
library opens its own ends before creating a process and drops its
keep-alive writers at start, so a started process's stdout reads end-of-file
at once.

Every call raises only :mod:`supervisor.errors` types.  Make the fake inside
a running event loop (its controls use anyio events).

Example::

    fake = FakeTransport("test")
    async with supervisor.connect("fake", namespace="test", transport=fake,
                                  state_dir=tmp_path) as client:
        container = await client.new_container("web", spec)
        task = await container.new_task()
        await task.start()
        fake.exit("web", code=3)                  # the init process exits
        assert (await task.wait()).exit_code == 3
        await task.delete()
        await container.delete()
    assert fake.calls["start"] == 1 and fake.is_empty()
"""

from ._state import ZERO_TIME, Hold
from ._transport import FakeTransport

__all__ = ["ZERO_TIME", "FakeTransport", "Hold"]
