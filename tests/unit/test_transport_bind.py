"""ContainerdTransport.bind: bound from the start, it accepts only its own
namespace (what connect() checks against the namespace it was given)."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor import errors
from supervisor.backends.containerd import ContainerdTransport


@pytest.mark.asyncio
async def test_the_containerd_transport_accepts_only_its_own_namespace(tmp_path: Path) -> None:
    transport = ContainerdTransport.open(str(tmp_path / "absent.sock"), "mine")
    try:
        transport.bind("mine")
        with pytest.raises(errors.InvalidArgument, match="bound to namespace mine, not other"):
            transport.bind("other")
        # Refused, the transport is as it was.
        assert transport.namespace == "mine"
        transport.bind("mine")
    finally:
        await transport.aclose()
