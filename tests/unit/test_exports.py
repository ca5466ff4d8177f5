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
    # Every name the package serves (lazily, from its table) is in __all__,
    # and every name in __all__ is served.
    served = set(supervisor._LOCATIONS) | {"__version__"}
    assert served == set(supervisor.__all__)
    assert set(supervisor.__all__) <= set(dir(supervisor))


def test_import_supervisor_alone_loads_nothing_else() -> None:
    import subprocess
    import sys

    code = (
        "import sys, supervisor; "
        "print(sorted(m for m in sys.modules if m.startswith('supervisor')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['supervisor']"


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
        "RESTART",
        "HEALTH",
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


def test_the_command_renders_library_records_through_structlog_only_when_asked() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from supervisor.cli._logging import configure_logging\n"
        "from supervisor._log import get_logger\n"
        "configure_logging('info', 'console')\n"
        "assert 'structlog' not in sys.modules\n"
        "get_logger('t').info('thing.done', container_id='web')\n"
        "assert 'structlog' in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "thing.done" in out.stderr and "container_id=web" in out.stderr
