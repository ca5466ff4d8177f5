"""Exit codes scripts can trust, and error messages that say what to do.

docker's convention: 125 when the command itself or containerd failed, 126
when the container's command could not be invoked, 127 when it was not
found; anything else is the container's own exit code.
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


def _describe(exc: BaseException, address: str) -> str:
    if isinstance(exc, CliError):
        return f"supervisor: {exc.message}"
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
