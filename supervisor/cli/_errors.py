"""Exit codes scripts can trust, and error messages that say what to do.

docker's convention: 125 when the command itself, containerd or an image
registry failed, 126 when the container's command could not be invoked, 127
when it was not found; anything else is the container's own exit code. A
message blames containerd's socket only for a failure of the containerd
connection: one at a registry names the registry.
"""

from __future__ import annotations

from .. import errors

__all__ = [
    "EXIT_CANNOT_INVOKE",
    "EXIT_FAILED",
    "EXIT_NOT_FOUND",
    "CliError",
    "describe",
    "exit_code",
    "registry_of",
]

EXIT_FAILED = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127


class CliError(Exception):
    """A refusal by the command itself (bad input, an unusable terminal):
    printed as ``supervisor: <message>``, exit code 125 unless told."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def exit_code(exc: BaseException) -> int:
    """The command's exit code for an error that ended it."""
    if isinstance(exc, CliError):
        return exc.code
    if isinstance(exc, errors.CommandNotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, errors.CommandNotExecutable):
        return EXIT_CANNOT_INVOKE
    return EXIT_FAILED


def describe(exc: BaseException, address: str) -> str:
    """The lines printed on stderr for an error that ended the command; what
    they quote (containerd's messages, stored names) is made printable."""
    from ._format import printable

    return "\n".join(printable(line) for line in _describe(exc, address).split("\n"))


def registry_of(exc: BaseException) -> str | None:
    """The registry (``host[:port]``) an image call failed at; ``""`` when
    it failed at a registry whose host is not known; ``None`` when it did
    not fail at a registry at all."""
    named = getattr(exc, "registry", None)
    if isinstance(named, str) and named:
        return named
    # Until every image error names its registry: the registry code chains
    # what httpx raised, and that knows the request it failed.
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if type(cause).__module__.partition(".")[0] == "httpx":
            try:
                netloc = cause.request.url.netloc  # type: ignore[attr-defined]
            except (AttributeError, RuntimeError):  # httpx: no request attached
                return ""
            return bytes(netloc).decode("ascii", errors="replace")
        cause = cause.__cause__ or cause.__context__
    return None


def _describe(exc: BaseException, address: str) -> str:
    if isinstance(exc, CliError):
        return f"supervisor: {exc.message}"
    registry = registry_of(exc) if isinstance(exc, errors.SupervisorError) else None
    if registry is not None:
        where = f"the registry at {registry}" if registry else "the registry"
        if isinstance(exc, errors.Unavailable):
            return (
                f"supervisor: Unavailable: cannot reach {where}: {exc}\n"
                f"supervisor: is the registry up? the image reference names it "
                f"(host[:port]/repository:tag)"
            )
        return f"supervisor: {type(exc).__name__}: {where}: {exc}"
    if isinstance(exc, errors.Unavailable):
        detail = str(exc)
        if address not in detail:
            detail = f"cannot reach containerd at {address}: {detail}"
        return (
            f"supervisor: Unavailable: {detail}\n"
            f"supervisor: is containerd running? -a/--address (or $CONTAINERD_ADDRESS) "
            f"names its socket, --timeout bounds the wait"
        )
    if isinstance(exc, errors.CommandNotFound):
        return f"supervisor: CommandNotFound: the command was not found in the container: {exc}"
    if isinstance(exc, errors.CommandNotExecutable):
        return f"supervisor: CommandNotExecutable: the command cannot be run: {exc}"
    if isinstance(exc, errors.SupervisorError):
        return f"supervisor: {type(exc).__name__}: {exc}"
    return f"supervisor: {type(exc).__name__}: {exc}"
