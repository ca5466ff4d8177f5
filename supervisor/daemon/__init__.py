"""The embedded containerd: started, watched, restarted and stopped by us.

This layer sits above the core (it may import from it, never the reverse)::

    _daemon.py        Daemon: the public face, its directories, entry and exit, failure
    _watchdog.py      Watchdog: containerd kept running (health checks, restarts, reaping)
    _launcher.py      Launcher: one containerd process adopted or started, stopped, killed
    _platform_parts.py  the platform's pieces for the Daemon, chosen in one place
    _child.py         Linux: one containerd process (pidfd, /proc): spawn, adopt, stop, kill
    _lock.py          Linux: one supervisor per state directory (flock)
    _windows.py       Windows: pipe addresses, process handles, adoption by creation
                      time, CTRL_BREAK, stack-dump event, TerminateProcess
    _windows_files.py Windows: files opened without following links, the msvcrt
                      lock, the pid file with the creation time
    _windows_kernel32.py  Windows: the ProcessControl seam and its kernel32 ctypes calls
    _files.py         directories of ours, files opened without following links
    _config.py        DaemonConfig and the atomically swapped ConfigStore
    _containerd_toml.py  the config file containerd is started with
    _runtimes.py      Runtime definitions and their wrapper scripts
    _orphans.py       shims a killed containerd lost mid-create, killed at the next start
    _log_follower.py  containerd's log file followed into `supervisor.containerd`
    _timeouts.py      DaemonTimeouts
"""

from ._config import ConfigStore, DaemonConfig, ResolvedConfig
from ._daemon import Daemon
from ._runtimes import ResolvedRuntime, Runtime
from ._timeouts import DaemonTimeouts

__all__ = [
    "ConfigStore",
    "Daemon",
    "DaemonConfig",
    "DaemonTimeouts",
    "ResolvedConfig",
    "ResolvedRuntime",
    "Runtime",
]
