"""The CNI protocol, from the spec (containernetworking/cni SPEC.md, 1.0 and 1.1).

A plugin is an executable found by its ``type`` on ``CNI_PATH``.  It gets
its command and the container's identity in environment variables
(``CNI_COMMAND``, ``CNI_CONTAINERID``, ``CNI_NETNS``, ``CNI_IFNAME``,
``CNI_ARGS``, ``CNI_PATH``), its configuration as JSON on stdin, and answers
with JSON on stdout: a result, or an error with a code when it exits
non-zero.  A network is a list of plugins: ADD runs them in order, each
getting the previous one's result as ``prevResult``; DEL runs them in
reverse with the result ADD returned, which is why that result is cached
on disk (:class:`~._cache.ResultCache`) between the two; CHECK runs them in order
with the cached result.  VERSION asks a plugin which versions it speaks;
STATUS (CNI 1.1) asks whether it is ready, and is only sent to plugins that
claim 1.1.

Every plugin run is bounded by a timeout and killed, with everything it
started (its own process group), on timeout or cancellation (``_run.py``).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from .. import errors
from .._log import get_logger
from ._cache import ResultCache
from ._conflist import ConfList, valid_network_name, version_tuple
from ._errors import plugin_error
from ._run import run_plugin
from ._runtime import RuntimeConf, valid_ifname

__all__ = ["CNI", "VersionInfo"]

log = get_logger("network.cni")

# How much of a plugin's stderr an error quotes.
_STDERR_TAIL = 2000


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """A plugin's answer to VERSION."""

    cni_version: str
    supported_versions: tuple[str, ...]


class CNI:
    """Runs CNI plugins for network configuration lists.

    Args:
        paths: the directories searched for plugin binaries (``CNI_PATH``).
        cache_dir: where ADD results are kept for DEL and CHECK.
        timeout: bound on each plugin run, in seconds; a plugin still running
            then is killed with its process group and the call raises
            :class:`~supervisor.errors.DeadlineExceeded`.
    """

    def __init__(self, paths: Sequence[Path | str], cache_dir: Path, *, timeout: float = 30.0):
        self.paths = tuple(Path(p) for p in paths)
        self.cache = ResultCache(cache_dir)
        self.timeout = timeout

    # -- the protocol's commands on a network ----------------------------

    async def add(self, network: ConfList, rt: RuntimeConf) -> dict[str, Any]:
        """ADD: run the plugins in order, chaining results; cache and return
        the last one.  A failure (or cancellation) DELs what was added,
        shielded and bounded, before the error is raised: nothing is left.

        Raises:
            PluginError: a plugin failed (its class follows the CNI code).
            InvalidArgument: a plugin binary is missing or not executable.
            DeadlineExceeded: a plugin ran past the timeout.
        """
        self._check_rt(rt, need_netns=True)
        self.check_plugins(network)
        # The intent goes to disk first: if the application dies during ADD,
        # the next release finds the entry and DELs what the plugins made.
        self.cache.put(network, rt, None)
        prev: dict[str, Any] | None = None
        cached: dict[str, Any] | None = None
        try:
            for i, plugin in enumerate(network.plugins):
                stdin = network.plugin_config(
                    i, prev_result=prev, capability_args=rt.capability_args
                )
                out = await self._exec(str(plugin["type"]), "ADD", stdin, rt)
                if out is None:
                    raise plugin_error(
                        plugin=str(plugin["type"]),
                        command="ADD",
                        code=None,
                        msg="printed no result",
                        container_id=rt.container_id,
                    )
                prev = out
                if prev != cached:
                    # What a DEL after an interruption must be given: plugins
                    # (firewall) find their rules by the addresses in it.
                    # Only when it changed: most plugins after the first
                    # (portmap, firewall) pass it on as they got it.
                    self.cache.put(network, rt, prev)
                    cached = prev
            assert prev is not None
            return prev
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._undo_bound(network)):
                try:
                    await self._delete(network, rt, prev_result=prev)
                    self.cache.remove(network.name, rt.container_id, rt.ifname)
                except (errors.SupervisorError, OSError) as exc:
                    log.warning(
                        "cni.add_undo_failed",
                        network=network.name,
                        container_id=rt.container_id,
                        error=str(exc),
                    )
            raise

    async def delete(self, network: ConfList | None, rt: RuntimeConf) -> None:
        """DEL: run the plugins in reverse with the cached result, then drop
        the cache entry.  Every plugin runs even if one fails (so one broken
        plugin does not strand the others' state); the first failure is then
        raised and the entry kept, so a retry can finish the job.

        ``network`` may be ``None`` when the cache is to supply it.  With no
        cache entry and no network there is nothing to do.
        """
        self._check_rt(rt, need_netns=False)
        name = network.name if network is not None else None
        cached = None
        if name is not None:
            cached = self.cache.get(name, rt.container_id, rt.ifname)
        if cached is not None:
            # What ADD was called with, not what the configuration says today.
            network = cached.network
        if network is None:
            return
        prev = cached.result if cached is not None else None
        await self._delete(network, rt, prev_result=prev)
        self.cache.remove(network.name, rt.container_id, rt.ifname)

    async def check(self, network: ConfList, rt: RuntimeConf) -> None:
        """CHECK (CNI >= 0.4.0): every plugin confirms the attachment is as ADD
        left it.

        Raises:
            NotFound: nothing was ADDed for this container and interface.
            FailedPrecondition: the network's cniVersion predates CHECK.
            PluginError: a plugin found something wrong.
        """
        self._check_rt(rt, need_netns=True)
        if version_tuple(network.cni_version) < (0, 4, 0):
            raise errors.FailedPrecondition(
                f"network {network.name!r} is CNI {network.cni_version}: CHECK needs 0.4.0",
                container_id=rt.container_id,
            )
        cached = self.cache.get(network.name, rt.container_id, rt.ifname)
        if cached is None or cached.result is None:
            raise errors.NotFound(
                f"no cached ADD result for network {network.name!r}, interface {rt.ifname!r}",
                container_id=rt.container_id,
            )
        if cached.network.disable_check:
            return
        for i, plugin in enumerate(cached.network.plugins):
            stdin = cached.network.plugin_config(
                i, prev_result=cached.result, capability_args=rt.capability_args
            )
            await self._exec(str(plugin["type"]), "CHECK", stdin, rt)

    async def status(self, network: ConfList) -> None:
        """STATUS (CNI 1.1): is every plugin ready for ADDs?  Plugins that do not
        speak 1.1 (the Debian 1.1.1 set speaks up to 1.0.0) have no STATUS; for
        them, being present and answering VERSION is the answer.

        Raises:
            InvalidArgument: a plugin is missing.
            PluginError: a plugin said it is not ready (code 50/51: Unavailable).
        """
        for i, plugin in enumerate(network.plugins):
            ptype = str(plugin["type"])
            info = await self.version(ptype)
            if version_tuple(network.cni_version) >= (1, 1, 0) and "1.1.0" in (
                info.supported_versions
            ):
                stdin = network.plugin_config(i, prev_result=None, capability_args={})
                await self._exec(ptype, "STATUS", stdin, None)

    async def version(self, plugin: str, cni_version: str = "1.0.0") -> VersionInfo:
        """VERSION: the versions a plugin speaks."""
        stdin = json.dumps({"cniVersion": cni_version}).encode()
        out = await self._exec(plugin, "VERSION", stdin, None)
        if out is None:
            raise plugin_error(plugin=plugin, command="VERSION", code=None, msg="printed nothing")
        supported = out.get("supportedVersions")
        if not isinstance(supported, list) or not all(isinstance(v, str) for v in supported):
            raise plugin_error(
                plugin=plugin, command="VERSION", code=None, msg="no supportedVersions list"
            )
        return VersionInfo(str(out.get("cniVersion", "")), tuple(supported))

    # -- plumbing ------------------------------------------------------------

    def find_plugin(self, plugin: str) -> Path:
        """The binary for plugin ``plugin`` on the search path.

        Raises:
            InvalidArgument: no executable of that name in any directory.
        """
        valid_network_name(plugin, what="plugin type")
        for directory in self.paths:
            path = directory / plugin
            try:
                st = os.stat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK):
                return path
        raise errors.InvalidArgument(
            f"CNI plugin {plugin!r} not found (or not executable) in "
            + ":".join(str(p) for p in self.paths)
        )

    def check_plugins(self, network: ConfList) -> None:
        """Every binary the network needs is there: its plugins' and the IPAM
        plugins they delegate to (``ipam.type``).

        Raises:
            InvalidArgument: one is missing or not executable (named).
        """
        for plugin in network.plugins:
            self.find_plugin(str(plugin["type"]))
            ipam = plugin.get("ipam")
            if isinstance(ipam, dict) and "type" in ipam:
                self.find_plugin(str(ipam["type"]))

    def _check_rt(self, rt: RuntimeConf, *, need_netns: bool) -> None:
        valid_network_name(rt.container_id, what="container id")
        valid_ifname(rt.ifname)
        if need_netns and not rt.netns:
            raise errors.InvalidArgument(
                "a network namespace path is needed", container_id=rt.container_id
            )
        for k, v in rt.args:
            if not k or "=" in k or ";" in k + v or "\0" in k + v:
                raise errors.InvalidArgument(f"CNI_ARGS pair {k!r}={v!r} is invalid")

    def _undo_bound(self, network: ConfList) -> float:
        return self.timeout * len(network.plugins) + 1.0

    async def _delete(
        self, network: ConfList, rt: RuntimeConf, *, prev_result: Mapping[str, Any] | None
    ) -> None:
        first: BaseException | None = None
        for i in reversed(range(len(network.plugins))):
            plugin = str(network.plugins[i]["type"])
            stdin = network.plugin_config(
                i, prev_result=prev_result, capability_args=rt.capability_args
            )
            try:
                await self._exec(plugin, "DEL", stdin, rt)
            except (errors.SupervisorError, OSError) as exc:
                log.warning(
                    "cni.del_failed", plugin=plugin, container_id=rt.container_id, error=str(exc)
                )
                if first is None:
                    first = exc
        if first is not None:
            raise first

    def _env(self, command: str, rt: RuntimeConf | None) -> dict[str, str]:
        # As libcni: the runtime's own environment (PATH finds iptables for
        # the plugins), minus any CNI_* a parent left, plus ours.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        env["CNI_COMMAND"] = command
        env["CNI_PATH"] = ":".join(str(p) for p in self.paths)
        if rt is not None:
            env["CNI_CONTAINERID"] = rt.container_id
            env["CNI_IFNAME"] = rt.ifname
            if rt.netns:
                env["CNI_NETNS"] = rt.netns
            if rt.args:
                env["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in rt.args)
        return env

    async def _exec(
        self, plugin: str, command: str, stdin: bytes, rt: RuntimeConf | None
    ) -> dict[str, Any] | None:
        """Run one plugin; its parsed stdout, or None if it printed nothing."""
        path = self.find_plugin(plugin)
        cid = rt.container_id if rt is not None else None
        log.debug("cni.exec", plugin=plugin, command=command, container_id=cid)
        run = await run_plugin(path, self._env(command, rt), stdin, self.timeout)
        if run.timed_out:
            raise errors.DeadlineExceeded(
                f"CNI plugin {plugin!r} ({command}) did not finish within {self.timeout:g}s",
                container_id=cid,
            )
        stdout, stderr = run.stdout, run.stderr
        text = bytes(stdout).strip()
        err_tail = bytes(stderr[-_STDERR_TAIL:]).decode(errors="replace").strip()
        parsed: Any = None
        if text:
            try:
                parsed = json.loads(text)
            except (ValueError, UnicodeDecodeError):
                parsed = None
        if run.returncode != 0:
            if isinstance(parsed, dict) and isinstance(parsed.get("code"), int):
                raise plugin_error(
                    plugin=plugin,
                    command=command,
                    code=parsed["code"],
                    msg=str(parsed.get("msg", "")),
                    details=str(parsed.get("details", "")),
                    container_id=cid,
                )
            raise plugin_error(
                plugin=plugin,
                command=command,
                code=None,
                msg=f"exited with status {run.returncode}",
                details=err_tail or text.decode(errors="replace")[:_STDERR_TAIL],
                container_id=cid,
            )
        if not text:
            return None
        if not isinstance(parsed, dict):
            raise plugin_error(
                plugin=plugin,
                command=command,
                code=None,
                msg="printed something that is not a JSON object",
                details=text.decode(errors="replace")[:_STDERR_TAIL],
                container_id=cid,
            )
        return parsed
