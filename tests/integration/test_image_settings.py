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


async def test_env_is_merged_by_key(client: supervisor.Client, image: str) -> None:
    out = await _output(client, "env-merge", image=image, env=["GREETING=mine", "NEW=1"])
    assert out.splitlines() == ["cmd mine image-extra", "/tmp", "0"]
    out = await _output(
        client, "env-all", image=image, args=["echo $PATH $GREETING $EXTRA $NEW"], env=["NEW=1"]
    )
    assert out == "/bin:/usr/bin image image-extra 1\n"


async def test_args_replace_cmd_and_keep_the_entrypoint(
    client: supervisor.Client, image: str
) -> None:
    out = await _output(client, "args", image=image, args=["echo args $GREETING"])
    assert out == "args image\n"


async def test_entrypoint_replaces_it_and_drops_cmd(client: supervisor.Client, image: str) -> None:
    assert await _output(client, "ep", image=image, entrypoint=["echo"]) == "\n"
    out = await _output(client, "ep-args", image=image, entrypoint=["echo"], args=["a", "b"])
    assert out == "a b\n"


async def test_workdir_and_user_replace(client: supervisor.Client, image: str) -> None:
    out = await _output(client, "wd", image=image, workdir="/bin", user="1000:1001")
    assert out.splitlines() == ["cmd image image-extra", "/bin", "1000"]
    async with client.running("wd-running", image=image, args=["id -g"], user="5:7") as task:
        out_b, _ = await task.communicate()
    assert out_b == b"7\n"


async def test_spec_containers_take_the_same_settings(
    client: supervisor.Client, rootfs: str
) -> None:
    spec = supervisor.default_spec(["sh", "-c", "echo $A $B; pwd; id -u"], rootfs, env=["A=1"])
    result = await client.run("spec-set", spec, env=["B=2"], workdir="/bin", user=3)
    assert result.stdout.decode().splitlines() == ["1 2", "/bin", "3"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"env": ["NOVALUE"]},
        {"env": "A=1"},
        {"args": "echo hi"},
        {"entrypoint": [1]},
        {"workdir": "relative"},
        {"user": "somebody"},
    ],
)
async def test_bad_settings_create_nothing(
    client: supervisor.Client, image: str, kwargs: dict[str, Any]
) -> None:
    from supervisor.images._service import ImageService

    with pytest.raises(errors.InvalidArgument):
        await client.new_container("bad-settings", image=image, **kwargs)
    assert await client.containers() == []
    store = ImageService(client._session).store
    assert not await store.snapshot_exists(
        await ImageService(client._session).snapshotter(None), "bad-settings"
    )


async def test_entrypoint_needs_an_image(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["true"], rootfs)
    with pytest.raises(errors.InvalidArgument):
        await client.new_container("ep-spec", spec, entrypoint=["echo"])
    assert await client.containers() == []


PASSWD = b"root:x:0:0:root:/root:/bin/sh\napp:x:1500:1600:app:/home/app:/bin/sh\n"
GROUP = b"root:x:0:\napp:x:1600:\nstaff:x:50:app\n"


@pytest_asyncio.fixture
async def named_image(client: supervisor.Client, tmp_path: Path) -> AsyncIterator[str]:
    ref = "example.com/settings/named:1"
    config = {"Cmd": ["sh", "-c", "id -u; id -g"], "User": "app"}
    files = {"etc/passwd": PASSWD, "etc/group": GROUP}
    path = image_tar(tmp_path / "named.tar", ref, config, files)
    await client.import_image(path, name=ref)
    yield ref
    for found in await client.images():
        await client.remove_image(found.name)


@pytest.mark.parametrize(
    "kwargs,out",
    [
        ({}, "1500\n1600\n"),
        ({"user": "app:staff"}, "1500\n50\n"),
        ({"user": "7:staff"}, "7\n50\n"),
        ({"user": "root"}, "0\n0\n"),
        ({"user": "8:9"}, "8\n9\n"),
    ],
)
async def test_user_names_are_looked_up_in_the_image(
    client: supervisor.Client, named_image: str, kwargs: dict[str, Any], out: str
) -> None:
    assert await _output(client, "named-user", image=named_image, **kwargs) == out


@pytest.mark.parametrize("user", ["nobody", "app:nogroup"])
async def test_an_unknown_name_creates_nothing(
    client: supervisor.Client, named_image: str, user: str
) -> None:
    from supervisor.images._service import ImageService

    with pytest.raises(errors.InvalidArgument):
        await client.new_container("unknown-user", image=named_image, user=user)
    assert await client.containers() == []
    service = ImageService(client._session)
    assert not await service.store.snapshot_exists(await service.snapshotter(None), "unknown-user")
    assert ".archive" not in Path("/proc/self/mountinfo").read_text()


async def test_names_are_for_images_only(client: supervisor.Client, rootfs: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        spec = supervisor.default_spec(["id"], rootfs)
        await client.new_container("named-spec", spec, user="app")
    assert await client.containers() == []
