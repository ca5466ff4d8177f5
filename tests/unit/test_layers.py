"""The layers: the core never imports the daemon or the command, and
``import supervisor`` loads neither grpclib nor the generated bindings."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests._containerd import REPO

_BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = {blocked!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"layer violation: {{name}} imported")
            return None

    sys.meta_path.insert(0, Block())
    """
)


def _run(blocked: list[str], body: str) -> subprocess.CompletedProcess[str]:
    code = _BLOCKER.format(blocked=blocked) + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_core_imports_without_daemon_cli_grpclib_or_protos() -> None:
    result = _run(
        ["supervisor.daemon", "supervisor.cli", "supervisor.testing", "grpclib", "betterproto2"]
        + ["supervisor._proto"],
        """
        import supervisor, supervisor.errors, supervisor.events, supervisor.fifo
        import supervisor.backends.base, supervisor.backends.fake
        assert "supervisor.daemon" not in sys.modules
        print("ok")
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_daemon_names_load_on_first_use() -> None:
    result = _run(
        ["supervisor.cli"],
        """
        import supervisor
        assert "supervisor.daemon" not in sys.modules
        assert supervisor.Daemon.__module__ == "supervisor.daemon._daemon"
        print("ok")
        """,
    )
    assert result.returncode == 0, result.stderr


def test_daemon_does_not_import_the_command() -> None:
    result = _run(["supervisor.cli"], "import supervisor.daemon\nprint('ok')\n")
    assert result.returncode == 0, result.stderr


def test_no_module_of_the_core_imports_an_upper_layer() -> None:
    # Every module below daemon/, cli/ and testing/, the grpclib side included.
    result = _run(
        ["supervisor.daemon", "supervisor.cli", "supervisor.testing"],
        """
        import importlib, pkgutil, supervisor
        upper = ("supervisor.daemon", "supervisor.cli", "supervisor.testing", "supervisor._proto")
        names = [
            m.name
            for m in pkgutil.walk_packages(supervisor.__path__, "supervisor.")
            if not m.name.startswith(upper) and m.name != "supervisor.__main__"
        ]
        for name in names:
            importlib.import_module(name)
        print(len(names))
        """,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 40
