"""The CNI protocol (supervisor.network._cni) against fake plugins in a tmp
CNI_PATH: environment, chaining, the result cache, errors, timeouts and
cancellation.  No root, no network: the fakes only log and print."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor import errors
from supervisor.network import CNI, ConfList, PluginError, RuntimeConf

pytestmark = pytest.mark.asyncio

# Hang guard for waits that must end (a failing test fails, never hangs).
GUARD = 20.0

# A plugin for tests: logs each call (command, CNI_* environment, stdin) as a
# JSON line to the file its config names, and behaves as its config says.
FAKE_PLUGIN = r"""
import json, os, subprocess, sys, time
conf = json.load(sys.stdin)
cmd = os.environ.get("CNI_COMMAND", "")
env = {k: v for k, v in os.environ.items() if k.startswith("CNI_")}
log = conf.get("log")
if log:
    with open(log, "a") as f:
        f.write(json.dumps({"plugin": conf.get("type"), "command": cmd, "env": env,
                            "conf": conf}) + "\n")
if cmd == "VERSION":
    # VERSION's stdin is only {"cniVersion"}: "fake-b" claims CNI 1.1 by name.
    supported = ["0.4.0", "1.0.0"]
    if os.path.basename(sys.argv[0]) == "fake-b":
        supported.append("1.1.0")
    print(json.dumps({"cniVersion": conf.get("cniVersion"), "supportedVersions": supported}))
    sys.exit(0)
mode = conf.get("mode", "ok")
if mode == "slow" and cmd == "ADD":
    # Runs on after whoever started it is gone, until the "go" file
    # appears; then leaves its "marker" (as an ADD leaves rules) for DEL.
    with open(conf["pids"], "w") as f:
        f.write(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not os.path.exists(conf["go"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    open(conf["marker"], "w").close()
if mode == "slow" and cmd == "DEL" and os.path.exists(conf["marker"]):
    os.unlink(conf["marker"])
if conf.get("fail_if") and not os.path.exists(conf["fail_if"]):
    mode = "ok"  # misbehaves only while that file exists
if cmd in conf.get("fail_on", ["ADD"]):
    if mode == "fail":
        print(json.dumps({"cniVersion": conf["cniVersion"], "code": conf.get("code", 7),
                          "msg": "refused by the fake", "details": "details here"}))
        sys.exit(1)
    if mode == "crash":
        sys.stderr.write("the fake crashed\n")
        sys.exit(2)
    if mode == "garbage":
        print("this is not json")
        sys.exit(0)
    if mode == "hang":
        child = subprocess.Popen(["sleep", "1000"])
        with open(conf["pids"], "w") as f:
            f.write(f"{os.getpid()} {child.pid}")
        time.sleep(1000)
if cmd == "ADD":
    prev = conf.get("prevResult")
    if prev is None:
        result = {"cniVersion": conf["cniVersion"],
                  "interfaces": [{"name": env["CNI_IFNAME"], "mac": "02:00:00:00:00:01",
                                  "sandbox": env.get("CNI_NETNS", "")}],
                  "ips": [{"address": conf.get("ip", "10.99.0.5/24"), "gateway": "10.99.0.1",
                           "interface": 0}]}
    else:
        result = dict(prev)
    if prev is None or not conf.get("pass_on"):  # pass_on: as portmap and firewall do
        result.setdefault("dns", {})
        result["dns"].setdefault("search", []).append(conf["type"])
    print(json.dumps(result))
"""


def write_plugin(directory: Path, name: str) -> Path:
    path = directory / name
    path.write_text(f"#!{sys.executable}\n{FAKE_PLUGIN}")
    path.chmod(0o755)
    return path


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    for name in ("fake-a", "fake-b", "fake-c"):
        write_plugin(directory, name)
    return directory


@pytest.fixture
def calls(tmp_path: Path) -> Callable[[], list[dict[str, Any]]]:
    log = tmp_path / "calls.jsonl"

    def read() -> list[dict[str, Any]]:
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    return read


def conflist(tmp_path: Path, *plugins: dict[str, Any], version: str = "1.0.0") -> ConfList:
    log = str(tmp_path / "calls.jsonl")
    return ConfList.from_dict(
        {"cniVersion": version, "name": "testnet", "plugins": [{"log": log, **p} for p in plugins]}
    )


def rt(**kw: Any) -> RuntimeConf:
    base: dict[str, Any] = {"container_id": "c1", "netns": "/var/run/netns/nowhere"}
    base.update(kw)
    return RuntimeConf(**base)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def wait_until(predicate: Callable[[], bool]) -> None:
    with anyio.fail_after(GUARD):
        while not predicate():
            await anyio.sleep(0.01)


async def test_add_chains_results_and_sets_the_environment(
    tmp_path: Path, plugins: Path, calls: Callable[[], list[dict[str, Any]]]
) -> None:
    cni = CNI([plugins], tmp_path / "cache")
    net = conflist(
        tmp_path,
        {"type": "fake-a"},
        {"type": "fake-b", "capabilities": {"portMappings": True}},
        {"type": "fake-c"},
    )
    ports = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    result = await cni.add(
        net,
        rt(args=(("K8S_POD_NAME", "web"), ("X", "1")), capability_args={"portMappings": ports}),
    )
    assert result["dns"]["search"] == ["fake-a", "fake-b", "fake-c"]
    log = calls()
    assert [c["plugin"] for c in log] == ["fake-a", "fake-b", "fake-c"]
    env = log[0]["env"]
    assert env == {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/var/run/netns/nowhere",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "K8S_POD_NAME=web;X=1",
        "CNI_PATH": str(plugins),
    }
    # The list's name and version go to every plugin; prevResult from the second on.
    assert all(c["conf"]["name"] == "testnet" and c["conf"]["cniVersion"] == "1.0.0" for c in log)
    assert "prevResult" not in log[0]["conf"]
    assert log[1]["conf"]["prevResult"]["dns"]["search"] == ["fake-a"]
    assert log[2]["conf"]["prevResult"]["dns"]["search"] == ["fake-a", "fake-b"]
    # runtimeConfig only for the plugin that declared the capability.
    assert log[1]["conf"]["runtimeConfig"] == {"portMappings": ports}
    assert "runtimeConfig" not in log[0]["conf"] and "runtimeConfig" not in log[2]["conf"]
    cached = cni.cache.get("testnet", "c1", "eth0")
    assert cached is not None and cached.result == result


async def test_the_cache_is_written_again_only_when_a_plugin_changed_the_result(
    tmp_path: Path, plugins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each write makes a file and renames it over the last: the default
    # network's portmap and firewall pass bridge's result on as they got it,
    # and rewriting it after each (and once more at the end) cost an attach
    # two of its four writes for nothing.
    cni = CNI([plugins], tmp_path / "cache")
    writes: list[Any] = []
    real_put = cni.cache.put

    def put(network: ConfList, runtime: RuntimeConf, result: Any) -> None:
        writes.append(result)
        real_put(network, runtime, result)

    monkeypatch.setattr(cni.cache, "put", put)
    net = conflist(
        tmp_path,
        {"type": "fake-a"},
        {"type": "fake-b", "pass_on": True},
        {"type": "fake-c", "pass_on": True},
    )
    result = await cni.add(net, rt())
    # The intent before any plugin runs, then fake-a's result: no more.
    assert writes == [None, result]
    cached = cni.cache.get("testnet", "c1", "eth0")
    assert cached is not None and cached.result == result
    # A plugin that changes it is written (the last one's change included).
    writes.clear()
    net = conflist(
        tmp_path, {"type": "fake-a"}, {"type": "fake-b", "pass_on": True}, {"type": "fake-c"}
    )
    result = await cni.add(net, rt(container_id="c2"))
    assert result["dns"]["search"] == ["fake-a", "fake-c"]
    assert writes == [None, {**result, "dns": {"search": ["fake-a"]}}, result]
    cached = cni.cache.get("testnet", "c2", "eth0")
    assert cached is not None and cached.result == result


async def test_del_runs_in_reverse_with_the_cached_result_and_drops_it(
    tmp_path: Path, plugins: Path, calls: Callable[[], list[dict[str, Any]]]
) -> None:
    cni = CNI([plugins], tmp_path / "cache")
    net = conflist(tmp_path, {"type": "fake-a"}, {"type": "fake-b"})
    result = await cni.add(net, rt())
    # DEL uses what ADD was given, even if the configuration changed since.
    changed = conflist(tmp_path, {"type": "fake-c"})
    await cni.delete(changed, rt())
    dels = [c for c in calls() if c["command"] == "DEL"]
    assert [c["plugin"] for c in dels] == ["fake-b", "fake-a"]
    assert all(c["conf"]["prevResult"] == result for c in dels)
    assert cni.cache.get("testnet", "c1", "eth0") is None
    assert cni.cache.all() == []


async def test_del_without_a_cache_entry_still_calls_every_plugin(
    tmp_path: Path, plugins: Path, calls: Callable[[], list[dict[str, Any]]]
) -> None:
    cni = CNI([plugins], tmp_path / "cache")
    net = conflist(tmp_path, {"type": "fake-a"}, {"type": "fake-b"})
    await cni.delete(net, rt(netns=None))
    dels = calls()
    assert [c["plugin"] for c in dels] == ["fake-b", "fake-a"]
    assert "CNI_NETNS" not in dels[0]["env"] and "prevResult" not in dels[0]["conf"]


async def test_a_failing_del_keeps_the_entry_and_still_runs_the_rest(
    tmp_path: Path, plugins: Path, calls: Callable[[], list[dict[str, Any]]]
) -> None:
    cni = CNI([plugins], tmp_path / "cache")
    net = conflist(
        tmp_path, {"type": "fake-a"}, {"type": "fake-b", "mode": "fail", "fail_on": ["DEL"]}
    )
    await cni.add(net, rt())
    with pytest.raises(PluginError) as caught:
        await cni.delete(net, rt())
    assert caught.value.plugin == "fake-b" and caught.value.command == "DEL"
    assert [c["plugin"] for c in calls() if c["command"] == "DEL"] == ["fake-b", "fake-a"]
    assert cni.cache.get("testnet", "c1", "eth0") is not None


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (1, errors.FailedPrecondition),
        (3, errors.NotFound),
        (7, errors.InvalidArgument),
        (11, errors.Unavailable),
        (999, errors.Unknown),
    ],
)
async def test_a_failing_add_is_a_typed_error_and_is_undone(
    tmp_path: Path,
    plugins: Path,
    calls: Callable[[], list[dict[str, Any]]],
    code: int,
    kind: type[errors.SupervisorError],
) -> None:
    cni = CNI([plugins], tmp_path / "cache")
    net = conflist(tmp_path, {"type": "fake-a"}, {"type": "fake-b", "mode": "fail", "code": code})
    with pytest.raises(PluginError) as caught:
        await cni.add(net, rt())
    err = caught.value
    assert isinstance(err, kind)
    assert (err.plugin, err.command, err.code, err.msg) == (
        "fake-b",
        "ADD",
        code,
        "refused by the fake",
    )
    assert err.details == "details here" and err.container_id == "c1"
    assert "fake-b" in str(err) and f"code {code}" in str(err)
    # What fake-a added was DELeted again (every plugin, in reverse), and the
    # cache holds nothing.
    assert [(c["plugin"], c["command"]) for c in calls()][2:] == [
        ("fake-b", "DEL"),
        ("fake-a", "DEL"),
    ]
    assert cni.cache.all() == []


@pytest.mark.parametrize(
    ("mode", "words"), [("crash", "the fake crashed"), ("garbage", "not json")]
)
async def test_a_plugin_without_a_usable_answer_is_unknown(
    tmp_path: Path, plugins: Path, mode: str, words: str
) -> None:
    cni = CNI([plugins], tmp_path / "cache")
    net = conflist(tmp_path, {"type": "fake-a", "mode": mode})
    with pytest.raises(PluginError) as caught:
        await cni.add(net, rt())
    assert isinstance(caught.value, errors.Unknown)
    assert caught.value.code is None and words in str(caught.value)
    assert cni.cache.all() == []


async def test_a_missing_plugin_is_refused_before_anything_runs(
    tmp_path: Path, plugins: Path, calls: Callable[[], list[dict[str, Any]]]
) -> None:
    (plugins / "not-executable").write_text("#!/bin/sh\n")
    cni = CNI([plugins], tmp_path / "cache")
    for missing in ("no-such-plugin", "not-executable"):
        net = conflist(tmp_path, {"type": "fake-a"}, {"type": missing})
        with pytest.raises(errors.InvalidArgument, match=missing):
            await cni.add(net, rt())
    assert calls() == []
    assert cni.cache.all() == []
    # An IPAM plugin a plugin delegates to is needed just as much.
    net = conflist(tmp_path, {"type": "fake-a", "ipam": {"type": "no-such-ipam"}})
    with pytest.raises(errors.InvalidArgument, match="no-such-ipam"):
        await cni.add(net, rt())
    assert calls() == [] and cni.cache.all() == []


async def test_a_hanging_plugin_is_killed_with_its_children_at_the_timeout(
    tmp_path: Path, plugins: Path
) -> None:
    cni = CNI([plugins], tmp_path / "cache", timeout=0.5)
    pids = tmp_path / "pids"
    net = conflist(tmp_path, {"type": "fake-a", "mode": "hang", "pids": str(pids)})
    with pytest.raises(errors.DeadlineExceeded, match="fake-a"):
        await cni.add(net, rt())
    plugin_pid, child_pid = map(int, pids.read_text().split())
    await wait_until(lambda: not alive(plugin_pid) and not alive(child_pid))
    assert cni.cache.all() == []


async def test_cancelling_add_kills_the_plugin_and_undoes_the_add(
    tmp_path: Path, plugins: Path, calls: Callable[[], list[dict[str, Any]]]
) -> None:
    cni = CNI([plugins], tmp_path / "cache")
    pids = tmp_path / "pids"
    net = conflist(
        tmp_path, {"type": "fake-a"}, {"type": "fake-b", "mode": "hang", "pids": str(pids)}
    )
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(cni.add, net, rt())
            await wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 2)
            tg.cancel_scope.cancel()
    plugin_pid, child_pid = map(int, pids.read_text().split())
    await wait_until(lambda: not alive(plugin_pid) and not alive(child_pid))
    assert [(c["plugin"], c["command"]) for c in calls()][-2:] == [
        ("fake-b", "DEL"),
        ("fake-a", "DEL"),
    ]
    assert cni.cache.all() == []


async def test_check_uses_the_cached_result(
    tmp_path: Path, plugins: Path, calls: Callable[[], list[dict[str, Any]]]
) -> None:
    cni = CNI([plugins], tmp_path / "cache")
    net = conflist(tmp_path, {"type": "fake-a"}, {"type": "fake-b"})
    with pytest.raises(errors.NotFound):
        await cni.check(net, rt())
    result = await cni.add(net, rt())
    await cni.check(net, rt())
    checks = [c for c in calls() if c["command"] == "CHECK"]
    assert [c["plugin"] for c in checks] == ["fake-a", "fake-b"]
    assert all(c["conf"]["prevResult"] == result for c in checks)
    old = conflist(tmp_path, {"type": "fake-a"}, version="0.3.1")
    with pytest.raises(errors.FailedPrecondition, match="0.4.0"):
        await cni.check(old, rt())


async def test_version_and_status(
    tmp_path: Path, plugins: Path, calls: Callable[[], list[dict[str, Any]]]
) -> None:
    cni = CNI([plugins], tmp_path / "cache")
    info = await cni.version("fake-a")
    assert info.supported_versions == ("0.4.0", "1.0.0")
    assert (await cni.version("fake-b")).supported_versions == ("0.4.0", "1.0.0", "1.1.0")
    # A 1.1 network: STATUS goes only to the plugin that speaks 1.1.0, with
    # its configuration.
    net = conflist(tmp_path, {"type": "fake-a"}, {"type": "fake-b"}, version="1.1.0")
    await cni.status(net)
    assert [(c["plugin"], c["command"]) for c in calls()] == [("fake-b", "STATUS")]
    # A 1.0 network: no STATUS at all.
    await cni.status(conflist(tmp_path, {"type": "fake-b"}))
    assert len(calls()) == 1
    sick = conflist(
        tmp_path,
        {"type": "fake-b", "mode": "fail", "code": 50, "fail_on": ["STATUS"]},
        version="1.1.0",
    )
    with pytest.raises(errors.Unavailable, match="fake-b"):
        await cni.status(sick)


async def test_stray_cni_variables_of_the_parent_do_not_leak(
    tmp_path: Path,
    plugins: Path,
    calls: Callable[[], list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CNI_ARGS", "IgnoreUnknown=1;POISON=1")
    monkeypatch.setenv("CNI_NETNS", "/proc/1/ns/net")
    cni = CNI([plugins], tmp_path / "cache")
    await cni.delete(conflist(tmp_path, {"type": "fake-a"}), rt(netns=None))
    env = calls()[0]["env"]
    assert "CNI_ARGS" not in env and "CNI_NETNS" not in env


@pytest.mark.parametrize(
    "bad",
    [
        rt(container_id="../etc"),
        rt(ifname="a/b"),
        rt(ifname="sixteen-chars-xx"),
        rt(netns=None),
        rt(args=(("A;B", "1"),)),
        rt(args=(("A", "1;B=2"),)),
    ],
)
async def test_bad_runtime_input_is_refused_before_any_plugin_runs(
    tmp_path: Path, plugins: Path, calls: Callable[[], list[dict[str, Any]]], bad: RuntimeConf
) -> None:
    cni = CNI([plugins], tmp_path / "cache")
    with pytest.raises(errors.InvalidArgument):
        await cni.add(conflist(tmp_path, {"type": "fake-a"}), bad)
    assert calls() == []
    assert not os.path.exists(tmp_path / "cache") or cni.cache.all() == []
