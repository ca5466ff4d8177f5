"""Images: pulling from registries, archives, unpacking, containers from images.

Loaded on first use (``Client.pull`` and the other image methods), never by
``import supervisor``. One module per concept::

    _reference.py   image references and their normalisation
    _digest.py      digests, verifying streams, chain ids
    _platform.py    os/arch/variant and choosing from an index
    _manifest.py    manifests, indexes, configs (Docker v2 and OCI media types)
    _auth.py        credentials and WWW-Authenticate challenges
    _registry.py    the registry HTTP API v2 over httpx
    _pull.py        registry -> content store -> image record, under a lease
    _unpack.py      layers -> committed snapshots named by chain id
    _local.py       reading an image back from the content store
    _image_spec.py  an OCI runtime spec from an image's config
    _tar.py         an archive's members, checked as hostile before any is read
    _layout.py      the OCI image layout's names
    _archive_plan.py what an archive holds, read and checked before any write
    _archive.py     importing OCI layout and docker save tars
    _export.py      exporting an image as an OCI layout docker load takes
    _containers.py  a container's own snapshot on its image
    _users.py       user and group names looked up in the image's own files
    _service.py     what Client's image methods call
    _types.py       values crossing the boundary to containerd

The RPC side lives in :mod:`supervisor.backends.containerd_images`.
"""

from __future__ import annotations

from ..oci._platform import Platform, host_platform, parse_platform
from ..oci._types import Image, LayerProgress, Mount
from ._auth import Credentials
from ._reference import Reference, parse_reference

__all__ = [
    "Credentials",
    "Image",
    "LayerProgress",
    "Mount",
    "Platform",
    "Reference",
    "host_platform",
    "parse_platform",
    "parse_reference",
]
