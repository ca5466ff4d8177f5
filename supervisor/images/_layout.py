"""The OCI image layout's names, as both import and export use them."""

from __future__ import annotations

from ..oci._digest import check_digest

__all__ = ["MAX_DEPTH", "NAME_ANNOTATION", "REF_ANNOTATION", "blob_name"]

# Indexes pointing to indexes: deeper than this is refused.
MAX_DEPTH = 4
# containerd's annotation for an image's full name, and OCI's for its tag.
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"


def blob_name(digest: str) -> str:
    """Where a layout keeps the blob with that digest."""
    return "blobs/sha256/" + check_digest(digest)[7:]
