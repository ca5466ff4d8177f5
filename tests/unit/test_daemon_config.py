from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.daemon._config import ConfigStore, DaemonConfig, ResolvedConfig
from supervisor.daemon._runtimes import DEFAULT_RUNTIME, SHIM_V1, SHIM_V2, STOCK_RUNTIMES, Runtime
from supervisor.errors import InvalidArgument, NotFound

FULL = """
default_runtime = "fast"
log_level = "debug"

[runtimes.fast]
shim = "io.containerd.runc.v2"
path = "/usr/sbin/runc"
args = ["--debug"]

[runtimes.fast.options]
systemd_cgroup = false
root = "/run/fast"

[runtimes.old]
shim = "io.containerd.runtime.v1.linux"
path = "/usr/bin/crun"

[runtimes.old.options]
runtime_root = "/run/old"
"""


@pytest.fixture
def wrappers(tmp_path: Path) -> Path:
    return tmp_path / "wrappers"


# -- DaemonConfig ---------------------------------------------------------------


def test_defaults() -> None:
    c = DaemonConfig()
    assert (dict(c.runtimes), c.default_runtime, c.log_level) == ({}, DEFAULT_RUNTIME, "info")
    assert DaemonConfig.from_toml("") == c


def test_from_toml_full() -> None:
    c = DaemonConfig.from_toml(FULL)
    assert c.default_runtime == "fast"
    assert c.log_level == "debug"
    assert c.runtimes["fast"] == Runtime(
        "fast",
        shim=SHIM_V2,
        path="/usr/sbin/runc",
        args=("--debug",),
        options={"systemd_cgroup": False, "root": "/run/fast"},
    )
    assert c.runtimes["old"] == Runtime(
        "old", shim=SHIM_V1, path="/usr/bin/crun", options={"runtime_root": "/run/old"}
    )


def test_runtime_table_defaults() -> None:
    c = DaemonConfig.from_toml("[runtimes.bare]\n")
    assert c.runtimes["bare"] == Runtime("bare")
    assert c.default_runtime == DEFAULT_RUNTIME


def test_default_runtime_may_be_stock() -> None:
    for name in STOCK_RUNTIMES:
        assert DaemonConfig.from_toml(f'default_runtime = "{name}"').default_runtime == name


def test_runtimes_are_copied_and_read_only() -> None:
    mine = {"fast": Runtime("fast", args=("--debug",))}
    c = DaemonConfig(runtimes=mine)
    mine["slow"] = Runtime("slow")
    assert list(c.runtimes) == ["fast"]
    with pytest.raises(TypeError):
        c.runtimes["x"] = Runtime("x")  # type: ignore[index]
    assert hash(c) == hash(DaemonConfig(runtimes={"fast": Runtime("fast", args=("--debug",))}))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default_runtime = ", "invalid TOML"),
        ("[runtimes.fast]\npath = 'a'\npath = 'b'", "invalid TOML"),
        ("colour = 'blue'", "unknown key 'colour' in the top level"),
        ("default_runtime = 3", "default_runtime must be a string, not an integer"),
        ("log_level = true", "log_level must be a string, not a boolean"),
        ("log_level = 'verbose'", "log_level 'verbose' is not one of"),
        ("log_level = 'DEBUG'", "log_level 'DEBUG'"),
        ("runtimes = 'runc'", "[runtimes] must be a table, not a string"),
        ("runtimes = ['runc']", "[runtimes] must be a table, not an array"),
        ("runtimes.fast = 1", "[runtimes.fast] must be a table, not an integer"),
        ("[runtimes.fast]\npathh = '/x'", "unknown key 'pathh' in [runtimes.fast]"),
        ("[runtimes.fast]\nz = 1\ny = 2", "unknown keys 'y', 'z' in [runtimes.fast]"),
        ("[runtimes.fast]\npath = 5", "runtimes.fast.path must be a string, not an integer"),
        ("[runtimes.fast]\nshim = 2", "runtimes.fast.shim must be a string"),
        ("[runtimes.fast]\nshim = 'io.containerd.kata.v2'", "unknown shim"),
        ("[runtimes.fast]\nargs = '--debug'", "runtimes.fast.args must be an array, not a string"),
        ("[runtimes.fast]\nargs = ['--a', 1]", "runtimes.fast.args[1] must be a string"),
        ("[runtimes.fast]\nargs = [['x']]", "runtimes.fast.args[0] must be a string, not an array"),
        ("[runtimes.fast]\noptions = 'x'", "[runtimes.fast.options] must be a table"),
        ("[runtimes.fast.options]\nsystemd = true", "unknown option 'systemd'"),
        ("[runtimes.fast.options]\nsystemd_cgroup = 'yes'", "must be a boolean"),
        ("[runtimes.fast.options]\nbinary_name = 'crun'", "set the binary with 'path'"),
        ("[runtimes.fast.options]\nio_uid = -1", "'io_uid' must be an integer"),
        ("[runtimes.'has space']", "runtime name 'has space' is invalid"),
        ("[runtimes.'../x']", "runtime name '../x' is invalid"),
        ("[runtimes.runc]\npath = '/x'", "'runc' is a stock runtime"),
        ("[runtimes.'io.containerd.runc.v2']", "is a stock runtime"),
        ("default_runtime = 'fast'", "default_runtime 'fast' names no runtime"),
        ("default_runtime = 'fast'\n[runtimes.slow]", "known runtimes: io.containerd"),
    ],
    ids=repr,
)
def test_from_toml_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        DaemonConfig.from_toml(text)
    assert message in str(info.value)


def test_constructor_errors() -> None:
    with pytest.raises(InvalidArgument, match="filed under another name"):
        DaemonConfig(runtimes={"a": Runtime("b")})
    with pytest.raises(InvalidArgument, match="must be a Runtime"):
        DaemonConfig(runtimes={"a": "runc"})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgument, match="stock runtime"):
        DaemonConfig(runtimes={SHIM_V1: Runtime(SHIM_V1, shim=SHIM_V1)})
    with pytest.raises(InvalidArgument, match="names no runtime"):
        DaemonConfig(default_runtime="nope")


def test_load(tmp_path: Path) -> None:
    path = tmp_path / "daemon.toml"
    path.write_text(FULL)
    assert DaemonConfig.load(path) == DaemonConfig.from_toml(FULL)
    path.write_text("colour = 1")
    with pytest.raises(InvalidArgument, match=rf"^{path}: unknown key 'colour'"):
        DaemonConfig.load(path)
    path.write_bytes(b"log_level = '\xff'")
    with pytest.raises(InvalidArgument, match="not UTF-8"):
        DaemonConfig.load(path)
    with pytest.raises(InvalidArgument, match="No such file"):
        DaemonConfig.load(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 5000 + "]" * 5000,
        "a = " + "{b = " * 3000 + "1" + "}" * 3000,
        "[runtimes.x]\nargs = " + "[" * 5000 + "]" * 5000,
    ],
    ids=["arrays", "inline-tables", "inside-a-runtime"],
)
def test_deeply_nested_toml_is_invalid_argument(text: str) -> None:
    # tomllib recurses once per level: a RecursionError must not escape.
    with pytest.raises(InvalidArgument, match="nested too deeply"):
        DaemonConfig.from_toml(text)


def test_from_toml_refuses_what_is_not_text() -> None:
    with pytest.raises(InvalidArgument, match="must be a string, not bytes"):
        DaemonConfig.from_toml(b"log_level = 'info'")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="must be a string, not NoneType"):
        DaemonConfig.from_toml(None)  # type: ignore[arg-type]


def test_a_type_or_value_error_inside_is_invalid_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever slips past the checks with a TypeError or ValueError is still
    # bad input to the caller, never a crash of its own kind.
    def broken(name: str, table: object) -> Runtime:
        raise ValueError(f"odd value in {name}")

    monkeypatch.setattr("supervisor.daemon._config._runtime_from_table", broken)
    with pytest.raises(InvalidArgument, match="odd value in x"):
        DaemonConfig.from_toml("[runtimes.x]\npath = 'runc'")


def test_load_refuses_every_bad_file_with_invalid_argument(tmp_path: Path) -> None:
    cases = {
        "missing": tmp_path / "absent.toml",
        "a directory": tmp_path,
        "too large": tmp_path / "big.toml",
        "nested": tmp_path / "nested.toml",
    }
    cases["too large"].write_bytes(b"# " + b"x" * (1 << 20) + b"\n")
    cases["nested"].write_text("a = " + "[" * 5000 + "]" * 5000)
    for what, path in cases.items():
        with pytest.raises(InvalidArgument, match=f"^{path}: ") as info:
            DaemonConfig.load(path)
        print(what, info.value)
    with pytest.raises(InvalidArgument, match="must be a path"):
        DaemonConfig.load(3)  # type: ignore[arg-type]


# -- ResolvedConfig and ConfigStore ----------------------------------------------


def test_store_resolves_stock_and_user_runtimes(wrappers: Path) -> None:
    store = ConfigStore(DaemonConfig.from_toml(FULL), wrappers)
    cur = store.current
    assert isinstance(cur, ResolvedConfig)
    assert cur.generation == 0
    assert set(cur.runtimes) == {*STOCK_RUNTIMES, "fast", "old"}
    fast = cur.runtime()
    assert fast is cur.runtime("fast")
    assert fast.script is not None and fast.script.exists()
    assert fast.options["binary_name"] == str(fast.script)
    assert dict(cur.runtime("old").options) == {
        "runtime_root": "/run/old",
        "runtime": "/usr/bin/crun",
    }
    assert dict(cur.runtime("runc").options) == {}
    assert store.wrapper_paths() == frozenset({fast.script})
    with pytest.raises(NotFound, match="unknown runtime 'nope'"):
        cur.runtime("nope")
    # shim-like names pass through to containerd, as dockerd passes them
    kata = cur.runtime("io.containerd.kata.v2")
    assert (kata.shim, kata.script, dict(kata.options)) == ("io.containerd.kata.v2", None, {})
    for not_a_shim in ("/usr/bin/runc", "../x.y", ".hidden.v2", "a/b.c"):
        with pytest.raises(NotFound):
            cur.runtime(not_a_shim)
    with pytest.raises(TypeError):
        cur.runtimes["x"] = fast  # type: ignore[index]


def test_reload_swaps(wrappers: Path) -> None:
    store = ConfigStore(DaemonConfig(), wrappers)
    before = store.current
    assert before.runtime().name == DEFAULT_RUNTIME
    assert store.wrapper_paths() == frozenset()
    after = store.reload(DaemonConfig.from_toml(FULL))
    assert store.current is after
    assert after.generation == 1
    assert after.runtime().name == "fast"
    # The old snapshot is untouched: whoever holds it keeps a consistent view.
    assert before.generation == 0 and "fast" not in before.runtimes


def test_invalid_reload_leaves_current_intact(
    wrappers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ConfigStore(DaemonConfig.from_toml(FULL), wrappers)
    before = store.current
    with pytest.raises(InvalidArgument):
        store.reload(DaemonConfig.from_toml("default_runtime = 'gone'"))
    assert store.current is before

    # A failure while writing a wrapper script (after validation) is no different.
    def no_space(*args: Any, **kwargs: Any) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("supervisor.daemon._runtimes.write_wrapper", no_space)
    with pytest.raises(OSError, match="No space"):
        store.reload(DaemonConfig.from_toml("[runtimes.new]\nargs = ['--x']"))
    assert store.current is before
    monkeypatch.undo()
    assert store.reload(DaemonConfig()).generation == 1  # no generation was used up


def test_reload_keeps_dropped_runtimes_scripts(wrappers: Path) -> None:
    store = ConfigStore(DaemonConfig.from_toml(FULL), wrappers)
    script = store.current.runtime("fast").script
    assert script is not None
    store.reload(DaemonConfig())
    assert "fast" not in store.current.runtimes
    assert store.wrapper_paths() == frozenset()
    assert script.exists()
    # Changing the args gives a new script; the old one still stays.
    store.reload(DaemonConfig.from_toml("[runtimes.fast]\nargs = ['--other']"))
    new = store.current.runtime("fast").script
    assert new is not None and new != script and script.exists() and new.exists()
    # Going back to the first configuration finds the very same file.
    store.reload(DaemonConfig.from_toml(FULL))
    assert store.current.runtime("fast").script == script


# -- concurrency ----------------------------------------------------------------

RELOADS = 1000


def _config(tag: str) -> DaemonConfig:
    # Every field derives from the tag, so a snapshot that mixed two
    # configurations would show two tags.
    name = f"rt-{tag}"
    return DaemonConfig(
        runtimes={name: Runtime(name, path=f"/bin/{tag}", args=(f"--tag={tag}",))},
        default_runtime=name,
        log_level={"a": "debug", "b": "warning"}[tag],
    )


def _check(snapshot: ResolvedConfig) -> int:
    """Assert the snapshot is all A or all B; return its generation."""
    tag = snapshot.config.default_runtime.removeprefix("rt-")
    # The store starts on A and alternates, so the generation tells the tag too.
    assert tag == ("a" if snapshot.generation % 2 == 0 else "b")
    assert snapshot.config.log_level == {"a": "debug", "b": "warning"}[tag]
    assert list(snapshot.config.runtimes) == [f"rt-{tag}"]
    assert set(snapshot.runtimes) == {*STOCK_RUNTIMES, f"rt-{tag}"}
    rt = snapshot.runtime()
    assert rt.name == f"rt-{tag}"
    assert rt.script is not None and rt.script.name.startswith(f"rt-{tag}-")
    assert rt.options["binary_name"] == str(rt.script)
    return snapshot.generation


@pytest.fixture
def fast_switching() -> Iterator[None]:
    # Switch threads far more often than the default 5 ms, so that readers
    # and the writer interleave many times over 1,000 reloads.
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.mark.asyncio
@pytest.mark.usefixtures("fast_switching")
async def test_readers_never_see_a_mixed_config(wrappers: Path) -> None:
    store = ConfigStore(_config("a"), wrappers)
    configs = [_config("b"), _config("a")]
    writer_running = threading.Event()
    writer_done = threading.Event()
    generations_seen: list[set[int]] = []
    reads: list[int] = []
    lock = threading.Lock()  # only for the tallies, never around store.current

    def record(seen: set[int], count: int) -> None:
        with lock:
            generations_seen.append(seen)
            reads.append(count)

    def thread_reader() -> None:
        seen: set[int] = set()
        count, last = 0, -1
        writer_running.wait()
        while not writer_done.is_set():
            generation = _check(store.current)
            assert generation >= last, "generations went backwards"
            last = generation
            seen.add(generation)
            count += 1
        record(seen, count)

    async def task_reader() -> None:
        seen: set[int] = set()
        count, last = 0, -1
        while not writer_done.is_set():
            generation = _check(store.current)
            assert generation >= last, "generations went backwards"
            last = generation
            seen.add(generation)
            count += 1
            await asyncio.sleep(0)
        record(seen, count)

    def writer() -> None:
        writer_running.set()
        try:
            for i in range(RELOADS):
                assert store.reload(configs[i % 2]).generation == i + 1
        finally:
            writer_done.set()

    failures: list[BaseException] = []

    def guarded(target: Any) -> Any:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # surfaced below, not lost in a thread
                failures.append(exc)
                writer_done.set()

        return run

    threads = [threading.Thread(target=guarded(thread_reader)) for _ in range(4)]
    for t in threads:
        t.start()
    tasks = [asyncio.create_task(task_reader()) for _ in range(4)]
    await asyncio.sleep(0)  # let the tasks start reading before the writer does
    await asyncio.to_thread(guarded(writer))
    await asyncio.gather(*tasks)
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    if failures:
        raise failures[0]

    assert store.current.generation == RELOADS
    _check(store.current)
    assert len(reads) == 8
    # Every reader read many times, and saw several generations: reading
    # really overlapped the reloads.
    assert min(reads) > 0, reads
    assert all(len(seen) >= 2 for seen in generations_seen), [len(s) for s in generations_seen]
    # Alternating between two configurations wrote exactly two scripts.
    assert len(list(wrappers.iterdir())) == 2
