"""One Transport contract, one suite: every test body here runs against the
in-memory :class:`~supervisor.backends.fake.FakeTransport` and a real
containerd (:class:`~supervisor.backends.containerd.ContainerdTransport`), so
the fake cannot drift from what containerd does.

How to add a test: take the ``transport`` fixture (a fresh namespace, emptied
afterwards) and the ``world`` (specs, stdio FIFOs, and
:meth:`~tests.conformance.conftest.World.finish` to make a process exit with
a code: on containerd through its stdin, on the fake through its control),
and assert only what containerd guarantees; events are read until the last
one expected, never at a moment. When the fake then disagrees, fix the fake.
When the containerd transport breaks a rule the fake keeps (a call the
transport should refuse before containerd acts on it), mark the body with
:func:`~tests.conformance.conftest.transport_gap`: its containerd half is
then an expected failure that fails the suite once the transport is fixed.

The containerd half is marked ``integration``; with ``--containerd-required``
(the project's default) a missing containerd fails it, never skips it.
"""
