"""Validation of container and exec ids, done before anything is created.

containerd's identifier rules: letters, digits, ``.``, ``_`` and ``-``, at most
76 characters, starting and ending with a letter or digit, separators never
doubled (``a.b-c`` is fine, ``a..b`` and ``a-`` are not).  Because every id is checked
here first, no file-system path is ever built from a bad id.
"""

from __future__ import annotations

import re

from .errors import InvalidArgument

MAX_ID_LENGTH = 76
# fullmatch against an ASCII-only class: "\w" or str.isalnum() would admit
# non-ASCII letters, which containerd refuses.
_ID = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*", re.ASCII)


def validate_id(value: object, *, kind: str = "id") -> str:
    """Return ``value`` if it is a valid containerd identifier, else raise.

    Raises:
        InvalidArgument: not a string, empty, too long, or with a character
            outside containerd's set.
    """
    if not isinstance(value, str):
        raise InvalidArgument(f"{kind} must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidArgument(f"{kind} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(f"{kind} {value[:20]!r}... is longer than {MAX_ID_LENGTH} characters")
    if _ID.fullmatch(value) is None:
        raise InvalidArgument(
            f"{kind} {value!r} is invalid: use letters, digits, '.', '_' and '-', "
            "starting and ending with a letter or digit"
        )
    return value
