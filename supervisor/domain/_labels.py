"""A container's labels changed after creation, and label selectors checked
before they reach containerd's filters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from .. import errors
from .._log import get_logger

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["checked_label_selector", "set_labels_method"]

_log = get_logger("container")


def _checked(labels: object, container_id: str | None, what: str) -> dict[str, str | None]:
    """A copy of ``labels``: non-empty UTF-8 keys, values UTF-8 text or None."""
    if not isinstance(labels, Mapping):
        raise errors.InvalidArgument(f"{what} must be a mapping", container_id=container_id)
    checked: dict[str, str | None] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not key:
            raise errors.InvalidArgument(
                f"{what}: a key must be a non-empty string, not {key!r}",
                container_id=container_id,
            )
        if value is not None and not isinstance(value, str):
            raise errors.InvalidArgument(
                f"{what}: the value of {key!r} must be a string or None",
                container_id=container_id,
            )
        for text in (key, value or ""):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise errors.InvalidArgument(
                    f"{what}: {text!r} is not valid UTF-8", container_id=container_id
                ) from None
        checked[key] = value
    return checked


def checked_label_selector(labels: object) -> dict[str, str | None]:
    """``labels=`` of a listing: each key must be there with that value (a
    value ``None``: with any value)."""
    return _checked(labels, None, "labels")


class _Labelled(Protocol):
    id: str
    labels: dict[str, str]
    _session: Session


async def set_labels_method(self: _Labelled, labels: Mapping[str, str | None]) -> dict[str, str]:
    """Set these labels in containerd, the others left as they are (one
    Update with a field mask of exactly these keys); a value ``None`` (or
    ``""``: containerd stores no empty label) removes the key.
    :attr:`labels` becomes containerd's record of them, which is returned.
    An empty mapping changes nothing.

    Raises:
        InvalidArgument: not a mapping of non-empty strings to strings or
            None, or a label over containerd's size (4096 bytes of key and
            value together); nothing was changed.
        NotFound: the container is gone.

    Example::

        await container.set_labels({"stage": "done", "claimed-by": None})
    """
    wanted = _checked(labels, self.id, "labels")
    if not wanted:
        # An update without a field mask would replace the whole record.
        return dict(self.labels)
    session = self._session
    session.check_open()
    self.labels = await session.transport.update_container_labels(self.id, wanted)
    _log.debug("container.labels", container_id=self.id, keys=sorted(wanted))
    return dict(self.labels)
