"""Label selectors as containerd's filter syntax: one filter whose
comma-joined selectors must all match (``labels."k"=="v",labels."j"``)."""

from __future__ import annotations

import json
from collections.abc import Mapping

__all__ = ["label_filter"]


def _quoted(text: str) -> str:
    # containerd unquotes a double-quoted field or value as Go's strconv
    # does (\\, \", \n, \t, \uXXXX...), and takes any other rune as it is:
    # JSON's escaping is a subset it reads back exactly.
    return json.dumps(text, ensure_ascii=False)


def label_filter(labels: Mapping[str, str | None]) -> str:
    """The filter matching every container whose labels include all of
    ``labels`` (a value ``None``: the key, whatever its value). Keys are
    always quoted: a key such as ``com.example.role`` would otherwise be
    read as a path of three fields."""
    selectors = []
    for key, value in labels.items():
        field = f"labels.{_quoted(key)}"
        selectors.append(field if value is None else f"{field}=={_quoted(value)}")
    return ",".join(selectors)
