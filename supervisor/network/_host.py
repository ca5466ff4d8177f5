"""What the network layer asks of the host: its routes and addresses (to pick
a free subnet), bridges by name, and file locks between library instances."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import anyio

from .. import errors
from .._timeouts import backoff

__all__ = [
    "SUBNET_POOL",
    "UsedNetwork",
    "bridge_exists",
    "bridge_subnet",
    "choose_subnet",
    "delete_bridge",
    "file_lock",
    "host_networks",
    "scoped_name",
]

# Where the default network's subnets come from when the caller names none:
# /24s of 10.88.0.0/13 (10.88.0.0 - 10.95.255.255), the first free one from a
# starting point derived from the state directory, so that two state
# directories rarely even try the same one.
SUBNET_POOL = ipaddress.IPv4Network("10.88.0.0/13")
SUBNET_PREFIX = 24
_IP_TIMEOUT = 10.0


def scoped_name(state_dir: Path) -> str:
    """``sv-`` and 8 hex digits of the state directory's real path: the bridge
    and CNI network name of that directory's default network (11 bytes,
    within IFNAMSIZ)."""
    digest = hashlib.sha256(os.fsencode(os.path.realpath(state_dir))).hexdigest()
    return f"sv-{digest[:8]}"


@dataclass(frozen=True, slots=True)
class UsedNetwork:
    """A network the host already uses: a route's destination or an address's."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    what: str  # "route 10.0.0.0/8 dev eth0", for messages
    dev: str | None


async def _ip_json(*args: str) -> list[dict[str, object]]:
    try:
        with anyio.fail_after(_IP_TIMEOUT):
            done = await anyio.run_process(["ip", "-j", *args], check=False)
    except TimeoutError:
        raise errors.DeadlineExceeded(f"`ip {' '.join(args)}` did not answer") from None
    except OSError as exc:
        raise errors.FailedPrecondition(f"cannot run `ip` (iproute2): {exc}") from None
    if done.returncode != 0:
        raise errors.Unknown(
            f"`ip {' '.join(args)}` failed: {done.stderr.decode(errors='replace').strip()}"
        )
    try:
        data = json.loads(done.stdout or b"[]")
    except ValueError:
        raise errors.Unknown(f"`ip -j {' '.join(args)}` printed no JSON") from None
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


async def host_networks() -> list[UsedNetwork]:
    """Every IPv4 route destination (all tables) and interface address."""
    used: list[UsedNetwork] = []
    for route in await _ip_json("-4", "route", "show", "table", "all"):
        dst = route.get("dst")
        if not isinstance(dst, str) or dst == "default":
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        dev = route.get("dev")
        dev = dev if isinstance(dev, str) else None
        used.append(UsedNetwork(net, f"route {dst}" + (f" dev {dev}" if dev else ""), dev))
    for link in await _ip_json("-4", "addr", "show"):
        dev = link.get("ifname")
        dev = dev if isinstance(dev, str) else None
        infos = link.get("addr_info")
        for info in infos if isinstance(infos, list) else []:
            if not isinstance(info, dict):
                continue
            try:
                net = ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False)
            except (KeyError, ValueError):
                continue
            used.append(UsedNetwork(net, f"address {info['local']} dev {dev}", dev))
    return used


def conflict(
    subnet: ipaddress.IPv4Network, used: Iterable[UsedNetwork], *, own_dev: str
) -> UsedNetwork | None:
    """The first host network ``subnet`` overlaps, ignoring our own bridge."""
    for u in used:
        if u.dev == own_dev or u.network.version != 4:
            continue
        if u.network.prefixlen == 0:
            continue
        if subnet.overlaps(u.network):
            return u
    return None


def choose_subnet(
    state_dir: Path, used: list[UsedNetwork], *, own_dev: str
) -> ipaddress.IPv4Network:
    """The first free /24 of :data:`SUBNET_POOL`, from a point derived from
    ``state_dir``.

    Raises:
        FailedPrecondition: every subnet of the pool is in use.
    """
    candidates = list(SUBNET_POOL.subnets(new_prefix=SUBNET_PREFIX))
    start = int(hashlib.sha256(os.fsencode(os.path.realpath(state_dir))).hexdigest(), 16)
    for i in range(len(candidates)):
        subnet = candidates[(start + i) % len(candidates)]
        if conflict(subnet, used, own_dev=own_dev) is None:
            return subnet
    raise errors.FailedPrecondition(
        f"no free /{SUBNET_PREFIX} left in {SUBNET_POOL}: give the network a subnet"
    )


def bridge_exists(name: str) -> bool:
    return os.path.isdir(f"/sys/class/net/{name}/bridge")


async def bridge_subnet(name: str) -> ipaddress.IPv4Network | None:
    """The IPv4 subnet of bridge ``name``'s first address, if it has one."""
    for link in await _ip_json("-4", "addr", "show", "dev", name):
        for info in link.get("addr_info") or []:  # type: ignore[attr-defined]
            with contextlib.suppress(KeyError, ValueError, TypeError):
                return ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False)
    return None


async def delete_bridge(name: str) -> None:
    """Remove bridge ``name`` (and its route) if it exists and is a bridge."""
    if not bridge_exists(name):
        return
    with anyio.fail_after(_IP_TIMEOUT):
        done = await anyio.run_process(
            ["ip", "link", "delete", name, "type", "bridge"], check=False
        )
    if done.returncode != 0 and bridge_exists(name):
        raise errors.Unknown(
            f"cannot delete bridge {name}: {done.stderr.decode(errors='replace').strip()}"
        )


@contextlib.asynccontextmanager
async def file_lock(
    path: Path, *, shared: bool = False, bound: float = 30.0, wait: bool = True
) -> AsyncIterator[bool]:
    """``flock`` on ``path`` (made if missing), polled so that waiting stays
    cancellable; yields whether the lock was taken (always, when ``wait``).

    Raises:
        DeadlineExceeded: ``wait`` and not taken within ``bound`` seconds.
    """
    import fcntl  # Linux only: the package is imported on Windows too

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        taken = False
        delays = backoff(0.002, 0.05)
        with anyio.move_on_after(bound):
            while True:
                try:
                    fcntl.flock(fd, op)
                    taken = True
                    break
                except BlockingIOError:
                    if not wait:
                        break
                await anyio.sleep(next(delays))
        if not taken and wait:
            raise errors.DeadlineExceeded(f"lock {path} still held after {bound:g}s")
        yield taken
    finally:
        os.close(fd)  # releases the lock
