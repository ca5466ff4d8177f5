"""OCI image values: descriptors and manifests, digests, platforms, and the
records and mounts that the image transports carry (below the transports,
so the image code above and the transports below share them)."""
