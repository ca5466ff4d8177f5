"""What a process knows of its container, as a type: the Container class
itself makes Tasks, so naming it here would tie the two modules in a
circle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._network import AttachedNetwork

__all__ = ["ContainerRef"]


class ContainerRef(Protocol):
    """The :class:`~supervisor.Container` a process belongs to."""

    id: str
    spec: dict[str, Any]
    runtime: str
    labels: dict[str, str]
    bundle_dir: Path

    @property
    def network(self) -> AttachedNetwork | None: ...

    async def delete(self, *, force: bool = False) -> None: ...
