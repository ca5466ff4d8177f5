"""The floor for Python: the same work as the library's lifecycle, written
straight on the generated stubs with nothing in between (no objects, no
events, no validation, no logging).  Whatever the library costs on top of this
is its overhead."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

from grpclib.client import Channel

from supervisor._proto.containerd.services.containers import v1 as pb_containers
from supervisor._proto.containerd.services.tasks import v1 as pb_tasks
from supervisor._proto.google.protobuf import Any as PbAny

SPEC_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"


class Floor:
    def __init__(self, address: str, namespace: str, fifo_dir: Path) -> None:
        self.channel = Channel(path=address)
        md = {"containerd-namespace": namespace}
        self.containers = pb_containers.ContainersStub(self.channel, metadata=md)
        self.tasks = pb_tasks.TasksStub(self.channel, metadata=md)
        self.fifo_dir = fifo_dir
        self.namespace = namespace

    def close(self) -> None:
        self.channel.close()

    def _fifos(self, name: str) -> tuple[str, str, list[int]]:
        d = self.fifo_dir / name
        d.mkdir(parents=True, exist_ok=True)
        out, err = str(d / "stdout"), str(d / "stderr")
        os.mkfifo(out)
        os.mkfifo(err)
        fds = [os.open(p, os.O_RDONLY | os.O_NONBLOCK) for p in (out, err)]
        return out, err, fds

    @staticmethod
    def _release(name_dir: Path, fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)
        shutil.rmtree(name_dir, ignore_errors=True)

    async def lifecycle(self, cid: str, spec: dict[str, Any]) -> int:
        spec = dict(spec, linux=dict(spec["linux"], cgroupsPath=f"/{self.namespace}/{cid}"))
        await self.containers.create(
            pb_containers.CreateContainerRequest(
                container=pb_containers.Container(
                    id=cid,
                    runtime=pb_containers.ContainerRuntime(name="io.containerd.runc.v2"),
                    spec=PbAny(type_url=SPEC_URL, value=json.dumps(spec).encode()),
                )
            )
        )
        out, err, fds = self._fifos(cid)
        await self.tasks.create(
            pb_tasks.CreateTaskRequest(container_id=cid, stdout=out, stderr=err)
        )
        # Wait is issued before Start so that an instant exit cannot be missed.
        waiter = asyncio.ensure_future(self.tasks.wait(pb_tasks.WaitRequest(container_id=cid)))
        await asyncio.sleep(0)
        await self.tasks.start(pb_tasks.StartRequest(container_id=cid))
        reply = await waiter
        await self.tasks.delete(pb_tasks.DeleteTaskRequest(container_id=cid))
        self._release(self.fifo_dir / cid, fds)
        await self.containers.delete(pb_containers.DeleteContainerRequest(id=cid))
        return int(reply.exit_status)

    async def exec(self, cid: str, exec_id: str, process: dict[str, Any]) -> int:
        name = f"{cid}.{exec_id}"
        out, err, fds = self._fifos(name)
        await self.tasks.exec(
            pb_tasks.ExecProcessRequest(
                container_id=cid,
                exec_id=exec_id,
                stdout=out,
                stderr=err,
                spec=PbAny(type_url=PROCESS_URL, value=json.dumps(process).encode()),
            )
        )
        waiter = asyncio.ensure_future(
            self.tasks.wait(pb_tasks.WaitRequest(container_id=cid, exec_id=exec_id))
        )
        await asyncio.sleep(0)
        await self.tasks.start(pb_tasks.StartRequest(container_id=cid, exec_id=exec_id))
        reply = await waiter
        await self.tasks.delete_process(
            pb_tasks.DeleteProcessRequest(container_id=cid, exec_id=exec_id)
        )
        self._release(self.fifo_dir / name, fds)
        return int(reply.exit_status)
