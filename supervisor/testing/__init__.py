"""Testing applications that embed the supervisor: a pytest plugin.

Installed with the package (entry point ``pytest11``, name ``supervisor``);
it does nothing until a test asks for one of its fixtures:

``containerd_daemon`` (session)
    the session's containerd: the one at ``--containerd-address`` (or
    ``$SUPERVISOR_CONTAINERD_ADDRESS``), else a private one started through
    :class:`supervisor.Daemon`. Tests are skipped, naming what is missing,
    when there is none; with ``--containerd-required`` they fail instead.
``supervisor_client`` (function)
    a connected :class:`supervisor.Client` in a fresh namespace of the test's
    own, emptied and removed afterwards.
``busybox_rootfs`` (session), ``oci_spec``
    a root filesystem of Debian's static busybox, and
    ``oci_spec(args, **options)``, :func:`supervisor.default_spec` for it.
``containers`` (function)
    ``await containers.run(args)`` (or ``run(image=ref)``): a started
    container whose output is captured (``running.output`` bytes,
    ``running.text``); ``await running.wait_for_line(pattern, timeout)``.
``supervisor_client_factory`` (function)
    ``async with supervisor_client_factory() as client``: another client on
    the test's namespace and state directory (the application restarted).
``supervisor_namespace``, ``supervisor_state_dir`` (function)
    the test's namespace and the client's state directory.

A failing test's report shows its containers' output, what processes it
made through its clients left unread in their pipes, and the library's log
lines of its namespace; a test that leaves a live task, an exited task it
never deleted, an open FIFO or a pending asyncio task behind fails at
teardown, naming it. See
``docs/pytest-plugin.md``.

Importing this package (and the plugin) loads neither grpclib nor the daemon.
"""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from ._containerd import Containerd
    from ._factory import Containers, RunningContainer
    from ._rootfs import build_busybox_rootfs

__all__ = ["Containerd", "Containers", "RunningContainer", "build_busybox_rootfs"]

_WHERE = {
    "Containerd": "._containerd",
    "Containers": "._factory",
    "RunningContainer": "._factory",
    "build_busybox_rootfs": "._rootfs",
}


def __getattr__(name: str) -> _Any:
    # Loaded on first use: pytest imports this package in every session of
    # every project that has the supervisor installed.
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
