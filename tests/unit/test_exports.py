"""The public surface: __all__ and the real exports must not drift apart."""

from __future__ import annotations

import supervisor
import supervisor.errors
import supervisor.events


def test_all_names_exist() -> None:
    for module in (supervisor, supervisor.errors, supervisor.events):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_every_public_name_is_in_all() -> None:
    public = {
        name
        for name in vars(supervisor)
        # "@py_*": pytest's assertion rewriting, which the installed plugin
        # (supervisor.testing) brings to the package.
        if not name.startswith(("_", "@"))
    }
    subpackages = {"annotations", "backends", "events", "fifo", "images", "testing"}
    public -= subpackages
    lazy = {"Daemon", "DaemonConfig", "DaemonTimeouts", "ConfigStore", "ResolvedConfig"}
    lazy |= {"Runtime", "ResolvedRuntime", "ProcessSummary", "daemon", "cli"}
    assert public - lazy == set(supervisor.__all__) - lazy - {"__version__"}


def test_contract_names() -> None:
    for name in (
        "connect",
        "Client",
        "Container",
        "Task",
        "Process",
        "ExitStatus",
        "Backend",
        "EventType",
        "EventInfo",
    ):
        assert name in supervisor.__all__
    assert {e.name for e in supervisor.EventType} == {
        "CREATE",
        "START",
        "EXIT",
        "OOM",
        "EXEC_ADDED",
        "EXEC_STARTED",
        "PAUSED",
        "RESUMED",
    }
    assert issubclass(supervisor.Task, supervisor.Process)
    for cls in (
        "NotFound",
        "AlreadyExists",
        "InvalidArgument",
        "FailedPrecondition",
        "Unavailable",
        "Unknown",
    ):
        assert issubclass(getattr(supervisor.errors, cls), supervisor.errors.SupervisorError)
