"""A container's root filesystem when a snapshot holds it.

The image layer makes such snapshots, and removes them; the domain objects
only need the snapshot's mounts for the task and its removal with the
container. So the image layer plugs in from above (it hands each container
a :class:`Rootfs`), and the domain objects never import it: containerd's Go
client does the same with its ``NewContainerOpts``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..oci._types import Mount

__all__ = ["Rootfs"]


class Rootfs(Protocol):
    """A snapshot that is a container's root filesystem."""

    @property
    def snapshotter(self) -> str: ...

    @property
    def key(self) -> str: ...

    async def mounts(self) -> tuple[Mount, ...]:
        """The mounts the task's root filesystem is made of."""
        ...

    async def remove(self) -> None:
        """Remove the snapshot (one already gone is fine)."""
        ...
