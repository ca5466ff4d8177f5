"""One Transport contract, one suite: every test body here runs against the
in-memory :class:`~supervisor.backends.fake.FakeTransport` and a real
containerd (:class:`~supervisor.backends.containerd.ContainerdTransport`), so
the fake cannot drift from what containerd does."""
