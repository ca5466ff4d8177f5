"""The one error hierarchy of :mod:`supervisor`.

::

    SupervisorError
    ├── NotFound             the container, task or process does not exist
    ├── AlreadyExists        the id is taken
    ├── InvalidArgument      bad input: rejected before anything was created
    │   ├── CommandNotFound      the process's executable does not exist
    │   └── CommandNotExecutable the process's executable cannot be run
    ├── FailedPrecondition   the object is in the wrong state for the call
    │   ├── Closed               the client was closed
    │   └── StdinNotRead         a send to a process that exited (also an
    │                            ``anyio.BrokenResourceError``)
    ├── Unavailable          containerd cannot be reached (or went away mid-call)
    ├── Cancelled            containerd cancelled the call on its side
    ├── DeadlineExceeded     a call ran past its deadline
    └── Unknown              anything containerd reported that fits nowhere else,
                             and any unexpected failure (its cause chained)

Every gRPC status from containerd becomes exactly one of these at the transport
boundary (``supervisor.backends``), with containerd's own message kept; callers
never see grpclib's ``GRPCError``.  A connection that cannot be made or that
breaks is :class:`Unavailable`; anything the boundary does not know (a reply
that does not decode, a bug) is :class:`Unknown` with the original exception as
its ``__cause__``, never relabelled as an outage.  Each error carries the ids
it concerns, when the call had them, and one met at an image registry may name
that registry (:attr:`SupervisorError.registry`).
"""

from __future__ import annotations

__all__ = [
    "as_library_error",
    "from_os_error",
    "AlreadyExists",
    "Cancelled",
    "Closed",
    "CommandNotExecutable",
    "CommandNotFound",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "StdinNotRead",
    "SupervisorError",
    "Unavailable",
    "Unknown",
]


class SupervisorError(Exception):
    """Root of every error this library raises on purpose.

    Attributes:
        message: what went wrong, containerd's own words where it said something.
        container_id: the container the failing call was about, if any.
        process_id: the exec id (or the container id for an init process), if any.
        registry: the image registry (``host[:port]``) the failing call was
            speaking to, if it failed there rather than at containerd.
    """

    def __init__(
        self,
        message: str,
        *,
        container_id: str | None = None,
        process_id: str | None = None,
        registry: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.container_id = container_id
        self.process_id = process_id
        self.registry = registry

    def __str__(self) -> str:
        where = []
        if self.container_id is not None:
            where.append(f"container={self.container_id}")
        if self.process_id is not None and self.process_id != self.container_id:
            where.append(f"process={self.process_id}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


class NotFound(SupervisorError):
    """The container, task or process does not exist (any more)."""


class AlreadyExists(SupervisorError):
    """An object with this id exists already."""


class InvalidArgument(SupervisorError):
    """The input was rejected; nothing was created or changed."""


class CommandNotFound(InvalidArgument):
    """The process's executable was not found in the container."""


class CommandNotExecutable(InvalidArgument):
    """The process's executable exists but cannot be run (permissions, format)."""


class FailedPrecondition(SupervisorError):
    """The object is not in a state that allows the call (e.g. a task still exists)."""


class Closed(FailedPrecondition):
    """The client (or the object's client) was closed; nothing more can be done through it."""


class StdinNotRead(FailedPrecondition):
    """A send to the standard input of a process that has exited, whose pipe
    nobody empties any more. What the library raises is an
    ``anyio.BrokenResourceError`` too (what anyio streams raise when their
    reader is gone)."""


class Unavailable(SupervisorError):
    """containerd could not be reached, or the connection broke during the call."""


class Cancelled(SupervisorError):
    """containerd cancelled the call on its side."""


class DeadlineExceeded(SupervisorError):
    """The call did not finish before its deadline.

    Attributes:
        stdout: from :meth:`Client.run` past its ``timeout``: what the
            process wrote on stdout until it was stopped (as
            ``subprocess.TimeoutExpired`` has it); ``None`` otherwise.
        stderr: the same for stderr.
    """

    stdout: bytes | None = None
    stderr: bytes | None = None


class Unknown(SupervisorError):
    """containerd reported an error that maps to no more specific class, or
    something failed that the library did not expect (the original exception
    is the ``__cause__``)."""


# One policy for what the operating system refuses, by errno (see from_os_error).
_OS_CLASSES: dict[str, type[SupervisorError]] = {
    # a path or name that does not work as given
    "ENOENT": NotFound,
    "ENOTDIR": NotFound,
    "EEXIST": AlreadyExists,
    "ELOOP": InvalidArgument,
    "EISDIR": InvalidArgument,
    "ENAMETOOLONG": InvalidArgument,
    "EINVAL": InvalidArgument,
    "ENXIO": InvalidArgument,
    # the machine does not allow it as it stands
    "EACCES": FailedPrecondition,
    "EPERM": FailedPrecondition,
    "EROFS": FailedPrecondition,
    "EBUSY": FailedPrecondition,
    "ENOEXEC": FailedPrecondition,
    # out of something that may come back
    "ENOSPC": Unavailable,
    "EDQUOT": Unavailable,
    "EMFILE": Unavailable,
    "ENFILE": Unavailable,
    "ENOMEM": Unavailable,
    "EAGAIN": Unavailable,
    "ECONNREFUSED": Unavailable,
    "ECONNRESET": Unavailable,
    "EPIPE": Unavailable,
    "ETIMEDOUT": DeadlineExceeded,
}


def from_os_error(
    exc: OSError,
    doing: str,
    *,
    given: bool = False,
    container_id: str | None = None,
    process_id: str | None = None,
) -> SupervisorError:
    """The library error for an ``OSError`` met while ``doing`` something
    (``"cannot open /x"``): one policy for the whole library.

    By errno: a path that is missing is :class:`NotFound`, one taken
    :class:`AlreadyExists`, one that cannot be used as given (a symlink
    refused, a directory, a name too long) :class:`InvalidArgument`; what
    the machine does not allow (permissions, a read-only or busy file
    system) is :class:`FailedPrecondition`; running out of something that
    may come back (space, fds, memory) is :class:`Unavailable`; anything
    else :class:`Unknown`. With ``given=True`` the path came from the caller,
    so a missing or unusable one is :class:`InvalidArgument`. The message
    says what was being done and the system's words; raise it ``from exc``.
    """
    import errno

    name = errno.errorcode.get(exc.errno or 0, "")
    cls = _OS_CLASSES.get(name, Unknown)
    if given and cls in (NotFound, AlreadyExists):
        cls = InvalidArgument
    reason = exc.strerror or str(exc) or type(exc).__name__
    return cls(f"{doing}: {reason}", container_id=container_id, process_id=process_id)


def as_library_error(exc: BaseException, what: str) -> SupervisorError:
    """What a background task's failure means to its owner's callers: the
    error itself if it is one of ours, else :class:`Unknown` saying that
    ``what`` failed, with the exception as its cause (the one rule for
    ``connect()``'s event machinery and the ``Daemon``'s watchdog)."""
    if isinstance(exc, SupervisorError):
        return exc
    error = Unknown(f"{what} failed: {exc!r}")
    error.__cause__ = exc
    return error


def raised_again(error: SupervisorError) -> SupervisorError:
    """A fresh copy of ``error`` to raise in one more caller, chained to it.

    One failure reported to many callers (every wait and call of a client
    whose event machinery died) must not be raised as the same object: each
    raise would lengthen its traceback and rewrite its context.
    """
    again = type(error).__new__(type(error))
    again.__dict__.update(error.__dict__)
    again.args = error.args
    again.__cause__ = error
    again.__suppress_context__ = True
    return again


def unwrap_group(exc: BaseException) -> BaseException:
    """What a task group raised, without the group around it.

    Task groups wrap what their tasks raise; callers of this library should
    see a :class:`SupervisorError` itself.  A group whose members are all
    SupervisorErrors (say, the two ends of one broken connection) yields its
    first; a single member of any kind yields that member; anything else is
    left as it is.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending:
        item = pending.pop(0)
        if isinstance(item, BaseExceptionGroup):
            pending[:0] = list(item.exceptions)
        else:
            leaves.append(item)
    if len(leaves) == 1 or all(isinstance(e, SupervisorError) for e in leaves):
        return leaves[0]
    return exc
