"""OCI runtimes: which shim runs a container, with which runc-like binary.

A :class:`Runtime` is what the user configures: a name, a containerd shim
(:data:`SHIM_V2` or :data:`SHIM_V1`), the OCI binary and extra arguments for
it, and extra shim options.  Shims accept a binary but no arguments, so a
runtime with arguments gets a small ``#!/bin/sh`` wrapper script that execs
the binary with them.

Wrapper scripts are content-addressed and immutable for the life of the
process: the file name carries the SHA-256 of the contents, an existing file
is never rewritten, and nothing but :func:`clean_stale_wrappers` (called once,
at daemon start) ever deletes one.  A container keeps the binary path it was
created with for its whole life, and a request may hold a configuration
snapshot from before a reload; both must still find their script, whatever
the configuration says now.

:func:`resolve` turns a Runtime into a :class:`ResolvedRuntime`: the shim name
and the ``runtime_options`` mapping to hand to ``Client.new_container``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shlex
import stat
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .. import errors
from .._ids import validate_id
from .._log import get_logger
from .._types import DEFAULT_RUNTIME

__all__ = [
    "DEFAULT_BINARY",
    "DEFAULT_RUNTIME",
    "SHIM_OPTION_FIELDS",
    "SHIM_V1",
    "SHIM_V2",
    "STOCK_RUNTIMES",
    "ResolvedRuntime",
    "Runtime",
    "clean_stale_wrappers",
    "resolve",
    "wrapper_name",
    "wrapper_script",
    "write_wrapper",
]

SHIM_V2 = DEFAULT_RUNTIME
SHIM_V1 = "io.containerd.runtime.v1.linux"

DEFAULT_BINARY = "runc"
"""The OCI binary both shims run when told none: no option needed to choose it."""

_log = get_logger("runtimes")

# The shims' options messages, field name -> Python type: containerd.runc.v1.Options
# (shim v2) and containerd.linux.runc.RuncOptions (shim v1).  Written out rather
# than read off the generated classes because generated code stops at the
# backend boundary; tests/unit/test_runtimes.py fails if the two drift apart.
_UINT32 = "uint32"
SHIM_OPTION_FIELDS: Mapping[str, Mapping[str, type | str]] = MappingProxyType(
    {
        SHIM_V2: MappingProxyType(
            {
                "no_pivot_root": bool,
                "no_new_keyring": bool,
                "shim_cgroup": str,
                "io_uid": _UINT32,
                "io_gid": _UINT32,
                "binary_name": str,
                "root": str,
                "criu_path": str,
                "systemd_cgroup": bool,
                "criu_image_path": str,
                "criu_work_path": str,
            }
        ),
        SHIM_V1: MappingProxyType(
            {
                "runtime": str,
                "runtime_root": str,
                "criu_path": str,
                "systemd_cgroup": bool,
            }
        ),
    }
)

# The option through which each shim takes the OCI binary.  A runtime sets it
# with `path`, never through `options`, so that there is one source of truth.
_BINARY_OPTION: Mapping[str, str] = MappingProxyType({SHIM_V2: "binary_name", SHIM_V1: "runtime"})

# <runtime name>-<sha256 of contents>.  Runtime names follow containerd's id
# rules (at most 76 characters), so a name is at most 141 bytes, well inside
# NAME_MAX (255).
_NAME = r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*"
_WRAPPER_NAME = re.compile(rf"({_NAME})-([0-9a-f]{{64}})", re.ASCII)
# Temporary files a crashed writer may have left: "." + wrapper name + "." + random + ".tmp".
_WRAPPER_TEMP = re.compile(rf"\.{_NAME}-[0-9a-f]{{64}}\.[A-Za-z0-9_]+\.tmp", re.ASCII)


def _frozen_options(options: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(options))


def _empty_options() -> Mapping[str, Any]:
    return MappingProxyType({})


def _check_word(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise errors.InvalidArgument(f"{what} must be a string, not {type(value).__name__}")
    # A NUL cannot travel in an exec argument; the shell would cut it short.
    if "\0" in value:
        raise errors.InvalidArgument(f"{what} {value!r} contains a NUL byte")
    return value


def _check_option(shim: str, key: object, value: object, runtime: str) -> None:
    fields = SHIM_OPTION_FIELDS[shim]
    if not isinstance(key, str) or key not in fields:
        raise errors.InvalidArgument(
            f"runtime {runtime!r}: unknown option {key!r} for shim {shim}; "
            f"known options: {', '.join(sorted(fields))}"
        )
    if key == _BINARY_OPTION[shim]:
        raise errors.InvalidArgument(
            f"runtime {runtime!r}: set the binary with 'path', not with option {key!r}"
        )
    kind = fields[key]
    if kind == _UINT32:
        # bool is an int to Python but not to protobuf.
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32
        expected = "an integer in [0, 2**32)"
    else:
        assert isinstance(kind, type)
        ok = type(value) is kind
        expected = "a boolean" if kind is bool else "a string"
    if not ok:
        raise errors.InvalidArgument(
            f"runtime {runtime!r}: option {key!r} must be {expected}, not {value!r}"
        )


@dataclass(frozen=True, slots=True)
class Runtime:
    """An OCI runtime as the user configures it.

    Attributes:
        name: what containers ask for; containerd's id rules (letters, digits,
            ``._-``, at most 76 characters).
        shim: the containerd shim, :data:`SHIM_V2` (default) or :data:`SHIM_V1`.
        path: the OCI binary the shim runs: an absolute path or a name looked
            up on the shim's ``PATH``.
        args: extra arguments placed before the shim's own; any make the
            runtime go through a wrapper script (see :func:`write_wrapper`).
        options: extra shim options, fields of the shim's options message
            (``systemd_cgroup``, ``root``...); stored as a read-only copy.  The
            binary option (``binary_name``/``runtime``) is set with ``path``.

    Raises:
        InvalidArgument: any field is malformed.

    Example::

        Runtime("debug-runc", path="/usr/sbin/runc", args=("--debug",),
                options={"systemd_cgroup": True})
    """

    name: str
    shim: str = SHIM_V2
    path: str = DEFAULT_BINARY
    args: tuple[str, ...] = ()
    # Excluded from the hash (a mapping proxy is unhashable) but compared:
    # equal runtimes still hash alike.
    options: Mapping[str, Any] = field(default_factory=_empty_options, hash=False)

    def __post_init__(self) -> None:
        validate_id(self.name, kind="runtime name")
        if self.shim not in SHIM_OPTION_FIELDS:
            raise errors.InvalidArgument(
                f"runtime {self.name!r}: unknown shim {self.shim!r}; use {SHIM_V2} or {SHIM_V1}"
            )
        _check_word(self.path, f"runtime {self.name!r}: path")
        # `exec -x` may be read as an option to exec itself, and shims treat
        # an empty binary as "use the default".
        if not self.path or self.path.startswith("-"):
            raise errors.InvalidArgument(
                f"runtime {self.name!r}: path {self.path!r} must be non-empty "
                "and must not start with '-'"
            )
        # A lone string is a sequence too; "--debug" must not become 7 arguments.
        if isinstance(self.args, str | bytes) or not isinstance(self.args, tuple | list):
            raise errors.InvalidArgument(
                f"runtime {self.name!r}: args must be a list of strings, not "
                f"{type(self.args).__name__}"
            )
        for arg in self.args:
            _check_word(arg, f"runtime {self.name!r}: argument")
        object.__setattr__(self, "args", tuple(self.args))
        if not isinstance(self.options, Mapping):
            raise errors.InvalidArgument(
                f"runtime {self.name!r}: options must be a mapping, not "
                f"{type(self.options).__name__}"
            )
        for key, value in self.options.items():
            _check_option(self.shim, key, value, self.name)
        # Copy so that the caller's dict can change without changing us.
        object.__setattr__(self, "options", _frozen_options(self.options))


STOCK_RUNTIMES: Mapping[str, Runtime] = MappingProxyType(
    {
        "runc": Runtime("runc"),
        SHIM_V2: Runtime(SHIM_V2),
        SHIM_V1: Runtime(SHIM_V1, shim=SHIM_V1),
    }
)
"""The runtimes that always exist; user runtimes may not reuse these names."""


@dataclass(frozen=True, slots=True)
class ResolvedRuntime:
    """A runtime ready to create containers with.

    Attributes:
        name: the runtime's name.
        shim: pass as ``runtime=`` to ``Client.new_container``.
        binary: the program the shim will run: the wrapper script when the
            runtime has arguments, else the runtime's ``path``.
        script: the wrapper script, or ``None`` when there is none.
        options: pass as ``runtime_options=``: the runtime's options plus the
            binary (``binary_name`` for shim v2, ``runtime`` for v1) unless it
            is the shim's default, ``runc``.  Empty for the stock runtimes.

    Example::

        r = store.current.runtime(name)
        await client.new_container(id, spec, runtime=r.shim, runtime_options=r.options)
    """

    name: str
    shim: str
    binary: str
    script: Path | None
    options: Mapping[str, Any] = field(default_factory=_empty_options, hash=False)


def wrapper_script(runtime: Runtime) -> bytes:
    """The ``#!/bin/sh`` script that execs ``runtime.path`` with ``runtime.args``,
    followed by whatever the shim passes (``"$@"``).

    Every word is quoted with :func:`shlex.quote`, so arguments reach the binary
    byte for byte.  The output depends only on ``path`` and ``args``.
    """
    words = " ".join(shlex.quote(w) for w in (runtime.path, *runtime.args))
    return f'#!/bin/sh\nexec {words} "$@"\n'.encode()


def wrapper_name(runtime: Runtime, contents: bytes) -> str:
    """The wrapper's file name: ``<name>-<sha256 hex of contents>``."""
    return f"{runtime.name}-{hashlib.sha256(contents).hexdigest()}"


def _ensure_private_dir(directory: Path) -> None:
    # 0700: root-run shims pass through regardless, and a rootless daemon runs
    # its shims as itself.  Refuse a directory others can write to: they could
    # swap a script that a shim will exec as us.
    if not hasattr(os, "geteuid"):
        # Windows: no /bin/sh to run the script, and no POSIX owner to check.
        raise errors.FailedPrecondition(
            f"wrapper directory {directory}: runtimes with arguments need a POSIX shell "
            "(not available on Windows)"
        )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise errors.FailedPrecondition(f"wrapper directory {directory} is not a directory")
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise errors.FailedPrecondition(
            f"wrapper directory {directory} must be owned by uid {os.geteuid()} and "
            f"writable by no one else (it is uid {st.st_uid}, mode {stat.filemode(st.st_mode)})"
        )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_wrapper(directory: Path, runtime: Runtime) -> Path:
    """Write ``runtime``'s wrapper script into ``directory``; return its path.

    The file is named by its contents (see :func:`wrapper_name`), so the same
    runtime always yields the same path and a changed one a new path.  An
    existing file of that name is left as it is; a new one appears complete or
    not at all (written to a temporary file, fsynced, then linked into place).
    ``directory`` is created with mode 0700 if missing.

    Raises:
        FailedPrecondition: ``directory`` is not a directory of ours that
            nobody else can write to.
        OSError: the file could not be written.
    """
    contents = wrapper_script(runtime)
    target = directory / wrapper_name(runtime, contents)
    _ensure_private_dir(directory)
    if os.path.lexists(target):
        return target
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    try:
        try:
            os.write(fd, contents)
            os.fchmod(fd, 0o755)  # not subject to the umask, unlike mkstemp's mode
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # link() refuses to replace: a file that another writer put there
            # first is kept, not rewritten, and its inode never changes.
            os.link(tmp, target)
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                raise
            # A file system without hard links: rename is atomic too.
            os.replace(tmp, target)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    _fsync_dir(directory)
    _log.debug("runtime.wrapper.write", runtime=runtime.name, path=str(target))
    return target


def clean_stale_wrappers(directory: Path, keep: Collection[Path]) -> list[Path]:
    """Delete the wrapper scripts in ``directory`` that are not in ``keep``.

    Only regular files named like wrappers (or like a crashed writer's
    temporary files) are touched; anything else is left alone.  ``keep`` is
    matched by file name, which errs towards keeping.  Call this only at
    daemon start, before any container or request could use an old script.

    Returns:
        The paths removed, sorted.
    """
    wanted = {p.name for p in keep}
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if entry.name in wanted:
            continue
        if not (_WRAPPER_NAME.fullmatch(entry.name) or _WRAPPER_TEMP.fullmatch(entry.name)):
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        removed.append(directory / entry.name)
    removed.sort()
    if removed:
        _log.debug("runtime.wrapper.clean", directory=str(directory), removed=len(removed))
    return removed


def resolve(runtime: Runtime, wrapper_dir: Path) -> ResolvedRuntime:
    """``runtime`` ready for use, its wrapper script written if it needs one.

    Raises:
        FailedPrecondition, OSError: as :func:`write_wrapper`.
    """
    script: Path | None = None
    binary = runtime.path
    if runtime.args:
        script = write_wrapper(wrapper_dir, runtime)
        binary = str(script)
    options = dict(runtime.options)
    if binary != DEFAULT_BINARY:
        options[_BINARY_OPTION[runtime.shim]] = binary
    return ResolvedRuntime(
        name=runtime.name,
        shim=runtime.shim,
        binary=binary,
        script=script,
        options=MappingProxyType(options),
    )
