"""gRPC status codes as :mod:`supervisor.errors` types, without grpclib.

Both ways of reaching containerd (grpclib in :mod:`.containerd`, the blocking
reader in :mod:`.blocking`) translate a failed call's status here, so one
status and message always become the same error.
"""

from __future__ import annotations

from .. import errors

__all__ = ["error_for"]

# gRPC's own numbering (google.rpc.Code), which grpclib's Status also uses.
_CANCELLED = 1
_INVALID_ARGUMENT = 3
_DEADLINE_EXCEEDED = 4
_NOT_FOUND = 5
_ALREADY_EXISTS = 6
_FAILED_PRECONDITION = 9
_ABORTED = 10
_OUT_OF_RANGE = 11
_UNAVAILABLE = 14

_CODE_TO_ERROR: dict[int, type[errors.SupervisorError]] = {
    _NOT_FOUND: errors.NotFound,
    _ALREADY_EXISTS: errors.AlreadyExists,
    _INVALID_ARGUMENT: errors.InvalidArgument,
    _OUT_OF_RANGE: errors.InvalidArgument,
    _FAILED_PRECONDITION: errors.FailedPrecondition,
    _ABORTED: errors.FailedPrecondition,
    _UNAVAILABLE: errors.Unavailable,
    _CANCELLED: errors.Cancelled,
    _DEADLINE_EXCEEDED: errors.DeadlineExceeded,
}

# containerd 1.6 reports some conditions as UNKNOWN, with only the words to
# tell them apart. Checked in order: the first match wins.
_UNKNOWN_REFINED: tuple[tuple[str, type[errors.SupervisorError]], ...] = (
    # runc, when the process's executable cannot be run
    ("executable file not found", errors.CommandNotFound),
    ("exec format error", errors.CommandNotExecutable),
    ("cannot delete a running process", errors.FailedPrecondition),
    ("cannot delete running task", errors.FailedPrecondition),
    ("is not running", errors.FailedPrecondition),
    # pause/resume of a created task; pause/resume/update of a stopped one;
    # exec into a stopped task; a second start ("cannot ... stopped process")
    ("in created state", errors.FailedPrecondition),
    ("a stopped container", errors.FailedPrecondition),
    ("in a stopped state", errors.FailedPrecondition),
    ("a stopped process", errors.FailedPrecondition),
    ("cannot start a running process", errors.FailedPrecondition),
    ("cannot resume a running process", errors.FailedPrecondition),
    ("cannot pause a paused container", errors.FailedPrecondition),
    ("in a paused state", errors.FailedPrecondition),
    ("cannot delete a paused process", errors.FailedPrecondition),
    ("cannot exec in a paused container", errors.FailedPrecondition),
    ("process already finished", errors.NotFound),
)


def _refine(cls: type[errors.SupervisorError], message: str) -> type[errors.SupervisorError]:
    if cls is not errors.Unknown or not message:
        return cls
    if "failed to start shim" in message and "file exists" in message:
        # The loser of two concurrent creates of one container's task: the
        # winner's shim holds the task's state directory.
        return errors.AlreadyExists
    if 'exec: "' in message and "no such file or directory" in message:
        return errors.CommandNotFound
    if 'exec: "' in message and "permission denied" in message:
        return errors.CommandNotExecutable
    for words, refined in _UNKNOWN_REFINED:
        if words in message:
            return refined
    return cls


def error_for(code: int, message: str) -> type[errors.SupervisorError]:
    """The error type for a call that ended with gRPC status ``code``."""
    return _refine(_CODE_TO_ERROR.get(code, errors.Unknown), message)
