"""The daemon's configuration: what the user wrote, what was derived from it,
and the one reference through which everyone reads it.

::

    DaemonConfig     user-supplied, from TOML (runtimes, default_runtime, log_level)
    ResolvedConfig   a DaemonConfig + its ResolvedRuntimes (wrapper scripts written)
                     + a generation number: one immutable snapshot
    ConfigStore      holds the current ResolvedConfig; reload() builds a new one
                     completely, then swaps the single reference

Readers take ``store.current`` once per operation and use that snapshot
throughout, so each operation sees one consistent configuration however many
reloads happen meanwhile.  Nothing is ever mutated in place, so readers need no
lock.  Wrapper scripts a snapshot refers to are never deleted while the process
lives (see :mod:`supervisor._runtimes`), so an old snapshot stays usable.
"""

from __future__ import annotations

import os
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .. import errors
from .._log import get_logger
from ._runtimes import (
    DEFAULT_BINARY,
    DEFAULT_RUNTIME,
    SHIM_V2,
    STOCK_RUNTIMES,
    ResolvedRuntime,
    Runtime,
    resolve,
)

__all__ = ["LOG_LEVELS", "ConfigStore", "DaemonConfig", "ResolvedConfig"]

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
"""The accepted values of ``log_level``."""

_log = get_logger("config")

# A config file is a few lines; anything this large is the wrong file.
_MAX_CONFIG = 1 << 20

_TOP_KEYS = frozenset({"default_runtime", "log_level", "runtimes"})
_RUNTIME_KEYS = frozenset({"shim", "path", "args", "options"})


def _no_runtimes() -> Mapping[str, Runtime]:
    return MappingProxyType({})


# TOML's names for what it holds, not Python's: the person reading the error wrote TOML.
_TOML_TYPES: Mapping[type, str] = MappingProxyType(
    {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
)


def _type_name(value: object) -> str:
    return _TOML_TYPES.get(type(value), f"a {type(value).__name__}")


def _expect(value: object, kind: type, where: str) -> Any:
    # bool is an int to Python; TOML keeps them apart and so do we.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise errors.InvalidArgument(
            f"{where} must be {_TOML_TYPES[kind]}, not {_type_name(value)}"
        )
    return value


def _check_keys(table: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise errors.InvalidArgument(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"in {where}; expected {', '.join(sorted(allowed))}"
        )


def _runtime_from_table(name: str, table: object) -> Runtime:
    where = f"runtimes.{name}"
    body: dict[str, Any] = _expect(table, dict, f"[{where}]")
    _check_keys(body, _RUNTIME_KEYS, f"[{where}]")
    args = _expect(body.get("args", []), list, f"{where}.args")
    for i, arg in enumerate(args):
        _expect(arg, str, f"{where}.args[{i}]")
    # Runtime checks the values themselves; its messages name the runtime.
    return Runtime(
        name=name,
        shim=_expect(body.get("shim", SHIM_V2), str, f"{where}.shim"),
        path=_expect(body.get("path", DEFAULT_BINARY), str, f"{where}.path"),
        args=tuple(args),
        options=_expect(body.get("options", {}), dict, f"[{where}.options]"),
    )


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """The configuration as the user supplied it.

    Attributes:
        runtimes: the user's runtimes by name, on top of
            :data:`~supervisor._runtimes.STOCK_RUNTIMES` (whose names they may
            not reuse); stored as a read-only copy.
        default_runtime: the runtime for containers that name none; a stock or
            user runtime.
        log_level: one of :data:`LOG_LEVELS`.

    Raises:
        InvalidArgument: a runtime is keyed by a name not its own or reuses a
            stock name, ``default_runtime`` names no runtime, or ``log_level``
            is unknown.

    Example::

        DaemonConfig.from_toml('''
            default_runtime = "fast"
            [runtimes.fast]
            path = "/usr/sbin/runc"
            args = ["--debug"]
        ''')
    """

    # Compared but not hashed: a mapping proxy is unhashable.
    runtimes: Mapping[str, Runtime] = field(default_factory=_no_runtimes, hash=False)
    default_runtime: str = DEFAULT_RUNTIME
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not isinstance(self.runtimes, Mapping):
            raise errors.InvalidArgument(
                f"runtimes must be a mapping, not {type(self.runtimes).__name__}"
            )
        for name, runtime in self.runtimes.items():
            if not isinstance(runtime, Runtime):
                raise errors.InvalidArgument(
                    f"runtime {name!r} must be a Runtime, not {type(runtime).__name__}"
                )
            if name != runtime.name:
                raise errors.InvalidArgument(
                    f"runtime {runtime.name!r} is filed under another name, {name!r}"
                )
            if name in STOCK_RUNTIMES:
                raise errors.InvalidArgument(
                    f"runtime {name!r} is a stock runtime and cannot be redefined; "
                    f"stock runtimes: {', '.join(sorted(STOCK_RUNTIMES))}"
                )
        if not isinstance(self.default_runtime, str):
            raise errors.InvalidArgument(
                f"default_runtime must be a string, not {type(self.default_runtime).__name__}"
            )
        if self.default_runtime not in STOCK_RUNTIMES and self.default_runtime not in self.runtimes:
            known = sorted({*STOCK_RUNTIMES, *self.runtimes})
            raise errors.InvalidArgument(
                f"default_runtime {self.default_runtime!r} names no runtime; "
                f"known runtimes: {', '.join(known)}"
            )
        if self.log_level not in LOG_LEVELS:
            raise errors.InvalidArgument(
                f"log_level {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}"
            )
        # Copy so that the caller's dict can change without changing us.
        object.__setattr__(self, "runtimes", MappingProxyType(dict(self.runtimes)))

    @classmethod
    def from_toml(cls, text: str) -> DaemonConfig:
        """Parse a TOML document (see the module's example for the layout).

        Raises:
            InvalidArgument: for any bad input, and nothing else: not a
                string, malformed or too deeply nested TOML, an unknown key,
                a value of the wrong type, or anything the constructor
                rejects; the message says which key.
        """
        if not isinstance(text, str):
            raise errors.InvalidArgument(f"TOML text must be a string, not {type(text).__name__}")
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise errors.InvalidArgument(f"invalid TOML: {exc}") from exc
        except RecursionError:
            # tomllib recurses once per level of nested arrays and tables.
            raise errors.InvalidArgument("invalid TOML: nested too deeply") from None
        try:
            return cls._from_document(doc)
        except RecursionError:
            raise errors.InvalidArgument("invalid TOML: nested too deeply") from None
        except (TypeError, ValueError) as exc:
            # The checks above are meant to catch every bad value with a
            # message of their own; whatever slips past is still bad input.
            raise errors.InvalidArgument(f"invalid configuration: {exc}") from exc

    @classmethod
    def _from_document(cls, doc: dict[str, Any]) -> DaemonConfig:
        _check_keys(doc, _TOP_KEYS, "the top level")
        tables = _expect(doc.get("runtimes", {}), dict, "[runtimes]")
        runtimes = {name: _runtime_from_table(name, t) for name, t in tables.items()}
        return cls(
            runtimes=runtimes,
            default_runtime=_expect(
                doc.get("default_runtime", DEFAULT_RUNTIME), str, "default_runtime"
            ),
            log_level=_expect(doc.get("log_level", "info"), str, "log_level"),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DaemonConfig:
        """Read and parse the TOML file at ``path`` (at most 1 MiB).

        Raises:
            InvalidArgument: for any bad input, and nothing else: the file is
                missing, unreadable, a directory, too large or not UTF-8, or
                :meth:`from_toml` refuses it; the message starts with ``path``.
        """
        if isinstance(path, bytes) or not isinstance(path, str | os.PathLike):
            raise errors.InvalidArgument(f"a config path must be a path, not {type(path).__name__}")
        try:
            with open(path, "rb") as f:
                data = f.read(_MAX_CONFIG + 1)
        except (OSError, TypeError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise errors.InvalidArgument(f"{path}: cannot read the config: {reason}") from exc
        if len(data) > _MAX_CONFIG:
            raise errors.InvalidArgument(f"{path}: larger than {_MAX_CONFIG} bytes")
        try:
            return cls.from_toml(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise errors.InvalidArgument(f"{path}: not UTF-8: {exc}") from exc
        except errors.InvalidArgument as exc:
            raise errors.InvalidArgument(f"{path}: {exc.message}") from exc


@dataclass(frozen=True, slots=True)
class ResolvedConfig:
    """One immutable snapshot of the daemon configuration.

    Attributes:
        config: what the user supplied.
        runtimes: every runtime, stock and user, resolved (wrapper scripts on
            disk), by name; read-only.
        generation: 0 for the configuration the store started with, then one
            more on each successful reload.
    """

    config: DaemonConfig
    runtimes: Mapping[str, ResolvedRuntime] = field(hash=False)
    generation: int

    def runtime(self, name: str | None = None) -> ResolvedRuntime:
        """The runtime called ``name``, or the default runtime for ``None``.

        A name that no runtime has but that reads like a containerd shim
        (``io.containerd.runhcs.v1``, ``io.containerd.kata.v2``: a dot, no
        slash) passes through to containerd as that shim, with no options, as
        dockerd passes it.

        Raises:
            NotFound: no runtime has that name and it is no shim name.
        """
        key = self.config.default_runtime if name is None else name
        try:
            return self.runtimes[key]
        except KeyError:
            if "." in key and "/" not in key and not key.startswith("."):
                return ResolvedRuntime(name=key, shim=key, binary="", script=None)
            raise errors.NotFound(
                f"unknown runtime {key!r}; known runtimes: {', '.join(sorted(self.runtimes))}"
            ) from None


def _resolve_config(config: DaemonConfig, wrapper_dir: Path, generation: int) -> ResolvedConfig:
    # Every script is on disk before the snapshot exists, so no reader can
    # ever hold a snapshot that names a missing script.
    runtimes = {
        name: resolve(runtime, wrapper_dir)
        for name, runtime in (*STOCK_RUNTIMES.items(), *config.runtimes.items())
    }
    return ResolvedConfig(config=config, runtimes=MappingProxyType(runtimes), generation=generation)


class ConfigStore:
    """Holds the current :class:`ResolvedConfig`; swaps it whole on reload.

    Read :attr:`current` once per operation and keep using that snapshot: two
    reads may straddle a reload.  Reading takes no lock (it is a single
    attribute load); writers are serialized among themselves.

    :meth:`reload` does blocking file I/O (it may write wrapper scripts): from
    async code, run it in a worker thread.  Do not call it from a raw
    :func:`signal.signal` handler, which could interrupt a reload in progress on
    the same thread and deadlock on the writers' lock; use the event loop's
    signal handling (``loop.add_signal_handler``, anyio's
    ``open_signal_receiver``), which runs handlers outside signal context.

    Args:
        config: the initial configuration.
        wrapper_dir: where wrapper scripts are written (created 0700).

    Raises:
        FailedPrecondition, OSError: a wrapper script could not be written.

    Example::

        store = ConfigStore(DaemonConfig.load(path), state_dir / "runtimes")
        clean_stale_wrappers(store.wrapper_dir, store.wrapper_paths())
        ...
        r = store.current.runtime(requested)   # one snapshot per request
    """

    def __init__(self, config: DaemonConfig, wrapper_dir: Path) -> None:
        self._wrapper_dir = Path(wrapper_dir)
        self._lock = threading.Lock()
        self._current = _resolve_config(config, self._wrapper_dir, 0)
        self._log_swap("config.load", self._current, initial=True)

    @property
    def current(self) -> ResolvedConfig:
        """The configuration in force now: a consistent, immutable snapshot."""
        return self._current

    @property
    def wrapper_dir(self) -> Path:
        """Where wrapper scripts live."""
        return self._wrapper_dir

    def reload(self, new: DaemonConfig) -> ResolvedConfig:
        """Make ``new`` the current configuration and return its snapshot.

        The new snapshot is built completely, wrapper scripts written, before
        it replaces the old one in a single assignment.  If anything fails the
        current configuration stays as it was.  Scripts of the old
        configuration are left on disk: containers and snapshots may still
        use them.

        Raises:
            FailedPrecondition, OSError: a wrapper script could not be written.
        """
        with self._lock:
            resolved = _resolve_config(new, self._wrapper_dir, self._current.generation + 1)
            self._current = resolved
            # Logged under the lock so that the log shows swaps in their order.
            self._log_swap("config.reload", resolved)
        return resolved

    def wrapper_paths(self) -> frozenset[Path]:
        """The wrapper scripts the current configuration uses."""
        snapshot = self._current
        return frozenset(r.script for r in snapshot.runtimes.values() if r.script is not None)

    @staticmethod
    def _log_swap(event: str, resolved: ResolvedConfig, *, initial: bool = False) -> None:
        # The first configuration is part of starting up (the daemon says it
        # started); a reload is what an operator asked for and wants to see.
        (_log.debug if initial else _log.info)(
            event,
            generation=resolved.generation,
            runtimes=sorted(resolved.runtimes),
            default_runtime=resolved.config.default_runtime,
            # Not "log_level" or "level": renderers use those for the
            # record's own level, and a field would overwrite it.
            config_log_level=resolved.config.log_level,
        )
