"""An image's settings read back (``client.image``), and containers made
from an image with the caller's settings merged on as ``docker run`` does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import supervisor
from supervisor import errors
from tests._image_layout import image_tar

pytestmark = pytest.mark.asyncio

REF = "example.com/settings/app:1"
CONFIG: dict[str, Any] = {
    "Entrypoint": ["sh", "-c"],
    "Cmd": ["echo cmd $GREETING $EXTRA; pwd; id -u"],
    "Env": ["PATH=/bin:/usr/bin", "GREETING=image", "EXTRA=image-extra"],
    "WorkingDir": "/tmp",
    "User": "0:0",
    "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
    "StopSignal": "SIGQUIT",
    "Labels": {"org.example.role": "test"},
    "Healthcheck": {
        "Test": ["CMD-SHELL", "true"],
        "Interval": 5_000_000_000,
        "Timeout": 1_500_000_000,
        "StartPeriod": 0,
        "Retries": 3,
    },
}


@pytest_asyncio.fixture
async def image(client: supervisor.Client, tmp_path: Path) -> AsyncIterator[str]:
    await client.import_image(image_tar(tmp_path / "app.tar", REF, CONFIG), name=REF)
    yield REF
    for found in await client.images():
        await client.remove_image(found.name)


async def _output(client: supervisor.Client, cid: str, **kw: Any) -> str:
    result = await client.run(cid, **kw)
    assert result.exit_code == 0, result.stderr
    return result.stdout.decode()


async def test_image_reads_the_settings(client: supervisor.Client, image: str) -> None:
    config = await client.image(image)
    assert isinstance(config, supervisor.ImageConfig)
    assert config.ref == REF
    assert config.digest.startswith("sha256:")
    assert config.entrypoint == ("sh", "-c")
    assert config.cmd == tuple(CONFIG["Cmd"])
    assert config.env == tuple(CONFIG["Env"])
    assert (config.working_dir, config.user) == ("/tmp", "0:0")
    assert config.exposed_ports == ("53/udp", "8080/tcp")
    assert config.stop_signal == "SIGQUIT"
    assert config.labels == {"org.example.role": "test"}
    assert config.healthcheck == supervisor.ImageHealthcheck(
        ("CMD-SHELL", "true"), interval=5.0, timeout=1.5, start_period=None, retries=3
    )


async def test_image_not_here_is_not_found(client: supervisor.Client) -> None:
    with pytest.raises(errors.NotFound):
        await client.image("example.com/settings/absent:1")
