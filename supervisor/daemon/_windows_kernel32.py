"""The seam between the embedded containerd's Windows pieces and Windows:
what the Daemon needs to know and do about one process, by handle.

:class:`ProcessControl` is the seam; :class:`Kernel32Control` is it through
ctypes calls into kernel32 (Windows only). Everything above it takes a
``ProcessControl`` as a parameter, so that it runs and is unit-tested on
Linux against a stand-in.
"""

from __future__ import annotations

from typing import Any, Protocol

from .. import errors

__all__ = ["Kernel32Control", "ProcessControl"]


class ProcessControl(Protocol):
    """What the daemon needs from Windows about one process (by handle)."""

    def open(self, pid: int) -> int | None:
        """A handle to ``pid`` (query, wait and terminate rights); None when
        there is no such process.

        Raises:
            PermissionError: it exists but we may not open it (not ours).
        """
        ...

    def close(self, handle: int) -> None: ...

    def exit_code(self, handle: int) -> int | None:
        """The exit code once the process has exited; None while it runs."""
        ...

    def creation_time(self, handle: int) -> int:
        """When the process was created, in 100 ns units since 1601."""
        ...

    def image_path(self, handle: int) -> str:
        """The full path of the process's executable."""
        ...

    def terminate(self, handle: int, code: int) -> None:
        """End the process at once (it gets no say)."""
        ...

    def ctrl_break(self, pid: int) -> bool:
        """Send CTRL_BREAK to the process group ``pid`` leads; False if it
        could not be sent (no console shared with it)."""
        ...

    def set_event(self, name: str) -> bool:
        """Signal the named event; False if it cannot be opened."""
        ...


class Kernel32Control:
    """:class:`ProcessControl` through kernel32 (ctypes); Windows only."""

    _ACCESS = 0x1000 | 0x00100000 | 0x0001  # QUERY_LIMITED_INFORMATION | SYNCHRONIZE | TERMINATE
    _EVENT_MODIFY_STATE = 0x0002
    _WAIT_OBJECT_0 = 0
    _ERROR_INVALID_PARAMETER = 87
    _ERROR_ACCESS_DENIED = 5

    def __init__(self) -> None:
        import ctypes

        loader = getattr(ctypes, "WinDLL", None)
        if loader is None:
            raise errors.FailedPrecondition("kernel32 is only there on Windows")
        self._ctypes = ctypes
        self._k32: Any = loader("kernel32", use_last_error=True)

    def _error(self, what: str) -> OSError:
        code = self._ctypes.get_last_error()  # type: ignore[attr-defined]
        return OSError(code, f"{what} failed (Windows error {code})")

    def open(self, pid: int) -> int | None:
        handle = self._k32.OpenProcess(self._ACCESS, False, pid)
        if handle:
            return int(handle)
        code = self._ctypes.get_last_error()  # type: ignore[attr-defined]
        if code == self._ERROR_ACCESS_DENIED:
            raise PermissionError(code, f"process {pid} is not ours to open")
        if code == self._ERROR_INVALID_PARAMETER:
            return None
        raise OSError(code, f"OpenProcess({pid}) failed (Windows error {code})")

    def close(self, handle: int) -> None:
        self._k32.CloseHandle(handle)

    def exit_code(self, handle: int) -> int | None:
        # Waited on rather than compared with STILL_ACTIVE (259), which a
        # process may also exit with.
        if self._k32.WaitForSingleObject(handle, 0) != self._WAIT_OBJECT_0:
            return None
        code = self._ctypes.c_ulong()
        if not self._k32.GetExitCodeProcess(handle, self._ctypes.byref(code)):
            raise self._error("GetExitCodeProcess")
        return int(code.value)

    def creation_time(self, handle: int) -> int:
        times = [self._ctypes.c_ulonglong() for _ in range(4)]
        if not self._k32.GetProcessTimes(handle, *(self._ctypes.byref(t) for t in times)):
            raise self._error("GetProcessTimes")
        return int(times[0].value)

    def image_path(self, handle: int) -> str:
        size = self._ctypes.c_ulong(32768)
        buffer = self._ctypes.create_unicode_buffer(size.value)
        if not self._k32.QueryFullProcessImageNameW(handle, 0, buffer, self._ctypes.byref(size)):
            raise self._error("QueryFullProcessImageNameW")
        return str(buffer.value)

    def terminate(self, handle: int, code: int) -> None:
        if not self._k32.TerminateProcess(handle, code):
            raise self._error("TerminateProcess")

    def ctrl_break(self, pid: int) -> bool:
        return bool(self._k32.GenerateConsoleCtrlEvent(1, pid))  # CTRL_BREAK_EVENT

    def set_event(self, name: str) -> bool:
        event = self._k32.OpenEventW(self._EVENT_MODIFY_STATE, False, name)
        if not event:
            return False
        try:
            return bool(self._k32.SetEvent(event))
        finally:
            self._k32.CloseHandle(event)
