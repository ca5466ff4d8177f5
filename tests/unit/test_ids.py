from __future__ import annotations

import pytest

from supervisor._ids import MAX_ID_LENGTH, validate_id
from supervisor.errors import InvalidArgument


@pytest.mark.parametrize("good", ["a", "A1", "web-1", "a.b_c-d", "0", "x" * MAX_ID_LENGTH])
def test_valid(good: str) -> None:
    assert validate_id(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../x",
        "a/b",
        "x" * (MAX_ID_LENGTH + 1),
        "a\0b",
        "café",
        "ａ",
        ".a",
        "-a",
        "a-",
        "a..b",
        "a b",
        "a\n",
        "a\\b",
        None,
        3,
        b"abc",
    ],
    ids=repr,
)
def test_invalid(bad: object) -> None:
    with pytest.raises(InvalidArgument):
        validate_id(bad)
