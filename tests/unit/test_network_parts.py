"""Pure parts of supervisor.network: port specs, conflists, DNS files, CNI
results, the OCI spec changes, subnet choice and plugin error classes."""

from __future__ import annotations

import ipaddress
import json
import socket
import types
from pathlib import Path
from typing import Any

import pytest

from supervisor import errors
from supervisor.network import (
    ConfList,
    DnsConfig,
    NetworkInfo,
    PluginError,
    PortMapping,
    apply_network,
    find_conflist,
    network_changes,
    parse_port,
    scoped_name,
)
from supervisor.network._dns import hosts_file, resolv_conf, valid_hostname
from supervisor.network._errors import plugin_error
from supervisor.network._host import SUBNET_POOL, UsedNetwork, choose_subnet, conflict
from supervisor.network._info import parse_result
from supervisor.network._ports import PortReservation, reserve

# -- ports ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("18080:80", PortMapping(80, 18080, "tcp", "")),
        ("127.0.0.1:18081:81/udp", PortMapping(81, 18081, "udp", "127.0.0.1")),
        ("80", PortMapping(80, 0, "tcp", "")),
        ("0:80", PortMapping(80, 0, "tcp", "")),
        ("127.0.0.1::81", PortMapping(81, 0, "tcp", "127.0.0.1")),
        ("[::1]:8443:443/tcp", PortMapping(443, 8443, "tcp", "::1")),
        ("5353:53/sctp", PortMapping(53, 5353, "sctp", "")),
    ],
)
def test_port_specs(spec: str, expected: PortMapping) -> None:
    assert parse_port(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "http",
        "0",
        "70000",
        "1:70000",
        "70000:80",
        "80/icmp",
        "80/TCP",
        "127.0.0.1:81",
        "300.0.0.1:1:2",
        "1:2:3:4",
        "80-81:80-81",
        "[::1:80:80",
        12,
        None,
    ],
)
def test_bad_port_specs_are_invalid_argument(spec: Any) -> None:
    with pytest.raises(errors.InvalidArgument):
        parse_port(spec)


def test_port_zero_picks_a_free_port_and_holds_it() -> None:
    held = PortReservation()
    try:
        [got] = reserve([parse_port("127.0.0.1:0:80")], held)
        assert got.host_port > 0 and got.container_port == 80
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", got.host_port))
    finally:
        held.close()


def test_a_taken_port_is_already_exists_and_nothing_stays_held() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        held = PortReservation()
        free = PortMapping(81, 0, "tcp", "127.0.0.1")
        with pytest.raises(errors.AlreadyExists, match=str(port)):
            reserve([free, PortMapping(80, port, "tcp", "127.0.0.1")], held)
    # The first mapping's socket was closed again: the refusal left nothing.
    assert held._sockets == []


def test_the_same_port_twice_in_one_call_is_refused() -> None:
    held = PortReservation()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        with pytest.raises(errors.AlreadyExists):
            reserve([PortMapping(80, port, "tcp", "127.0.0.1")] * 2, held)
    finally:
        held.close()


def test_a_foreign_host_address_is_invalid_argument() -> None:
    with pytest.raises(errors.InvalidArgument, match="192.0.2.254"):
        reserve([PortMapping(80, 0, "tcp", "192.0.2.254")], PortReservation())


def test_portmap_entry() -> None:
    assert parse_port("127.0.0.1:18081:81/udp").to_cni() == {
        "hostPort": 18081,
        "containerPort": 81,
        "protocol": "udp",
        "hostIP": "127.0.0.1",
    }
    assert "hostIP" not in parse_port("18080:80").to_cni()


# -- conflists ----------------------------------------------------------------


def test_a_single_plugin_conf_is_a_list_of_one() -> None:
    net = ConfList.from_dict({"cniVersion": "0.4.0", "name": "n", "type": "bridge", "x": 1})
    assert net.plugins == ({"type": "bridge", "x": 1},)


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"cniVersion": "1.0.0", "plugins": [{"type": "bridge"}]},
        {"cniVersion": "1.0.0", "name": "../x", "plugins": [{"type": "bridge"}]},
        {"name": "n", "plugins": [{"type": "bridge"}]},
        {"cniVersion": "one", "name": "n", "plugins": [{"type": "bridge"}]},
        {"cniVersion": "1.0.0", "name": "n", "plugins": []},
        {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../../bin/sh"}]},
        {"cniVersion": "1.0.0", "name": "n", "plugins": [{}]},
        {"cniVersion": "1.0.0", "name": "n", "plugins": ["bridge"]},
        {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "b", "capabilities": []}]},
        {"cniVersion": "1.0.0", "name": "n"},
    ],
)
def test_malformed_conflists_are_invalid_argument(data: Any) -> None:
    with pytest.raises(errors.InvalidArgument):
        ConfList.from_dict(data)


def test_find_conflist(tmp_path: Path) -> None:
    net = {"cniVersion": "1.0.0", "name": "web", "plugins": [{"type": "bridge"}]}
    (tmp_path / "10-other.conflist").write_text(
        json.dumps({**net, "name": "other", "plugins": [{"type": "ptp"}]})
    )
    (tmp_path / "20-web.conflist").write_text(json.dumps(net))
    (tmp_path / "30-broken.conflist").write_text("{ not json")
    (tmp_path / "README").write_text("web")
    found = find_conflist(tmp_path, "web")
    assert found.name == "web" and found.plugins == ({"type": "bridge"},)
    assert found.source == str(tmp_path / "20-web.conflist")
    with pytest.raises(errors.NotFound, match="nope"):
        find_conflist(tmp_path, "nope")
    with pytest.raises(errors.NotFound):
        find_conflist(tmp_path / "missing", "web")
    with pytest.raises(errors.InvalidArgument):
        find_conflist(tmp_path, "../web")


def test_a_malformed_conflist_of_that_name_is_invalid_argument(tmp_path: Path) -> None:
    (tmp_path / "10-web.conflist").write_text('{"name": "web", "cniVersion": "1.0.0", plugins')
    with pytest.raises(errors.InvalidArgument, match="not JSON"):
        find_conflist(tmp_path, "web")
    (tmp_path / "10-web.conflist").write_text('{"name": "web", "cniVersion": "1.0.0"}')
    with pytest.raises(errors.InvalidArgument, match="neither plugins nor type"):
        find_conflist(tmp_path, "web")


# -- plugin errors ---------------------------------------------------------------


def test_plugin_errors_are_both_plugin_error_and_their_class() -> None:
    err = plugin_error(plugin="bridge", command="ADD", code=7, msg="bad", container_id="c")
    assert isinstance(err, PluginError) and isinstance(err, errors.InvalidArgument)
    assert isinstance(err, errors.SupervisorError)
    assert str(err) == (
        "CNI plugin 'bridge' failed ADD: code 7 (invalid network config): bad (container=c)"
    )
    assert isinstance(plugin_error(plugin="p", command="DEL", code=None, msg=""), errors.Unknown)


# -- DNS files ----------------------------------------------------------------------


def test_resolv_conf_drops_loopback_resolvers(tmp_path: Path) -> None:
    host = tmp_path / "resolv.conf"
    host.write_text(
        "# generated\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nnameserver ::1\n"
        "nameserver fd00::53\nsearch example.internal corp\noptions edns0 trust-ad\n"
    )
    assert resolv_conf(host_file=host, upstream_file=tmp_path / "none") == (
        "nameserver 10.255.255.53\nnameserver fd00::53\n"
        "search example.internal corp\noptions edns0 trust-ad\n"
    )
    mine = DnsConfig(nameservers=("10.0.0.53",), options=("ndots:2",))
    assert resolv_conf(mine, host_file=host) == (
        "nameserver 10.0.0.53\nsearch example.internal corp\noptions ndots:2\n"
    )
    missing = tmp_path / "missing"
    assert resolv_conf(host_file=missing, upstream_file=missing) == "\n"


def test_behind_systemd_resolved_the_upstream_servers_are_used(tmp_path: Path) -> None:
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 127.0.0.53\noptions edns0\nsearch lan\n")
    upstream = tmp_path / "upstream.conf"
    upstream.write_text("nameserver 10.1.1.1\nnameserver 127.0.0.1\nsearch other\n")
    assert resolv_conf(host_file=host, upstream_file=upstream) == (
        "nameserver 10.1.1.1\nsearch lan\noptions edns0\n"
    )


def test_dns_config_checks_its_input() -> None:
    with pytest.raises(errors.InvalidArgument):
        DnsConfig(nameservers=("dns.example",))
    with pytest.raises(errors.InvalidArgument):
        DnsConfig(search=("a b",))


def test_hosts_and_hostnames() -> None:
    text = hosts_file("web.local", ["10.88.0.2"])
    assert "127.0.0.1\tlocalhost" in text and "10.88.0.2\tweb.local web" in text
    assert "127.0.1.1\tweb" in hosts_file("web", [])
    assert valid_hostname("a-b.c") == "a-b.c"
    for bad in ("", "-a", "a_b", "a" * 64, "a..b"):
        with pytest.raises(errors.InvalidArgument):
            valid_hostname(bad)


# -- results and specs -------------------------------------------------------------


def test_parse_result_picks_the_sandbox_interface() -> None:
    result = {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "sv-1", "mac": "aa:aa:aa:aa:aa:aa"},
            {"name": "veth1"},
            {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "/x"},
        ],
        "ips": [
            {"address": "fd00::2/64", "interface": 2},
            {"address": "10.88.0.2/24", "gateway": "10.88.0.1", "interface": 2},
        ],
    }
    assert parse_result(result, "eth0") == {
        "interface": "eth0",
        "mac": "02:00:00:00:00:02",
        "ip": "10.88.0.2",
        "prefix_length": 24,
        "gateway": "10.88.0.1",
    }
    old = {"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.3/16", "gateway": "10.1.0.1"}}
    assert parse_result(old, "eth0")["ip"] == "10.1.0.3"
    assert parse_result(None, "eth0") == {}


def test_apply_network_sets_the_namespace_hostname_and_files() -> None:
    spec = {
        "hostname": "old",
        "mounts": [{"destination": "/proc"}, {"destination": "/etc/hosts", "source": "/x"}],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "uts"}, {"type": "network"}]},
    }
    info = NetworkInfo(
        "web",
        "bridge",
        "/s/netns/web",
        hostname="web",
        resolv_conf="/s/r",
        hosts="/s/h",
        hostname_file="/s/n",
    )
    out = apply_network(spec, info)
    assert out["linux"]["namespaces"] == [
        {"type": "pid"},
        {"type": "uts"},
        {"type": "network", "path": "/s/netns/web"},
    ]
    assert out["hostname"] == "web"
    assert [(m["destination"], m.get("source")) for m in out["mounts"]] == [
        ("/proc", None),
        ("/etc/resolv.conf", "/s/r"),
        ("/etc/hosts", "/s/h"),
        ("/etc/hostname", "/s/n"),
    ]
    # The caller's spec is untouched.
    assert spec["linux"]["namespaces"][2] == {"type": "network"}  # type: ignore[index]
    host = apply_network(spec, NetworkInfo("web", "host", None))
    assert host["linux"]["namespaces"] == [{"type": "pid"}, {"type": "uts"}]
    changes = network_changes(info)
    assert changes["namespace"] == {"type": "network", "path": "/s/netns/web"}
    assert changes["mounts"] == out["mounts"][1:] and changes["hostname"] == "web"


def test_the_exported_names_are_the_public_ones() -> None:
    import supervisor.network as network

    public = {
        name
        for name, value in vars(network).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    public.discard("annotations")
    assert public == set(network.__all__)


def test_network_info_round_trips_and_finds_host_ports() -> None:
    info = NetworkInfo(
        "web", "bridge", "/n", ip="10.88.0.2", ports=(PortMapping(80, 18080, "tcp", "127.0.0.1"),)
    )
    assert NetworkInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
    assert info.host_port(80) == 18080
    with pytest.raises(errors.NotFound):
        info.host_port(80, "udp")


# -- subnets and names -------------------------------------------------------------


def used(*nets: str, dev: str = "eth0") -> list[UsedNetwork]:
    return [UsedNetwork(ipaddress.ip_network(n), f"route {n}", dev) for n in nets]


def test_subnet_choice_avoids_the_hosts_networks(tmp_path: Path) -> None:
    first = choose_subnet(tmp_path, [], own_dev="sv-x")
    assert first.subnet_of(SUBNET_POOL) and first.prefixlen == 24
    # Taken by the host: the next free one; our own bridge's route does not count.
    second = choose_subnet(tmp_path, used(str(first)), own_dev="sv-x")
    assert second != first and second.subnet_of(SUBNET_POOL)
    assert choose_subnet(tmp_path, used(str(first), dev="sv-x"), own_dev="sv-x") == first
    # A wide route covering the whole pool: nothing is free.
    with pytest.raises(errors.FailedPrecondition):
        choose_subnet(tmp_path, used("10.0.0.0/8"), own_dev="sv-x")
    # The default route covers everything and is ignored.
    assert choose_subnet(tmp_path, used("0.0.0.0/0"), own_dev="sv-x") == first
    clash = conflict(ipaddress.IPv4Network("10.88.1.0/24"), used("10.88.0.0/16"), own_dev="x")
    assert clash is not None and clash.what == "route 10.88.0.0/16"


def test_scoped_names_differ_per_state_dir_and_fit_ifnamsiz(tmp_path: Path) -> None:
    a, b = scoped_name(tmp_path / "a"), scoped_name(tmp_path / "b")
    assert a != b and a.startswith("sv-") and len(a.encode()) <= 15
    assert scoped_name(tmp_path / "a") == a
