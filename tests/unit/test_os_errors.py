"""One policy for what the operating system refuses: errors.from_os_error."""

from __future__ import annotations

import errno

import pytest

from supervisor import errors


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (errno.ENOENT, errors.NotFound),
        (errno.EEXIST, errors.AlreadyExists),
        (errno.ELOOP, errors.InvalidArgument),
        (errno.EACCES, errors.FailedPrecondition),
        (errno.EROFS, errors.FailedPrecondition),
        (errno.ENOSPC, errors.Unavailable),
        (errno.EMFILE, errors.Unavailable),
        (errno.EIO, errors.Unknown),
    ],
)
def test_each_errno_has_one_class(code: int, cls: type[errors.SupervisorError]) -> None:
    error = errors.from_os_error(
        OSError(code, "the system's words"), "cannot do it", process_id="p"
    )
    assert type(error) is cls
    assert error.message == "cannot do it: the system's words"
    assert error.process_id == "p"


def test_a_path_the_caller_gave_that_does_not_work_is_invalid_argument() -> None:
    for code in (errno.ENOENT, errno.EEXIST, errno.ELOOP):
        error = errors.from_os_error(OSError(code, "no"), "cannot open /x", given=True)
        assert type(error) is errors.InvalidArgument
    assert type(errors.from_os_error(PermissionError(errno.EACCES, "no"), "x", given=True)) is (
        errors.FailedPrecondition
    )
