"""ServingInstance: one engine that serves in the prefill or the decode role, and can flip.

Roles are virtual: the engine is both a KV producer and a KV consumer, the prefill role
(prefill_instance.py) and the decode role (decode_instance.py) share it, and the role says
only which work the global scheduler sends here. To flip, the scheduler stops routing to the
instance, waits until its load report shows nothing in flight, then calls `set_role`, which
refuses while any work remains: the model is never reloaded and no request is lost. Work
that reaches an instance after it flipped is still served.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from actors import metrics
from actors.instances.decode_instance import DecodeInstance
from actors.instances.prefill_instance import PrefillInstance
from actors.instances.serving_engine import ServingEngine
from actors.kv.kv_client import KVClient
from actors.model_shipping import ShippedModel, local_dir
from actors.node_address import node_tag
from actors.wire import load_to_wire
from cluster.config import EngineConfig, SchedulingConfig
from cluster.instance_flip import Role
from cluster.kv_pages import PageLayout


class StillBusy(RuntimeError):
    """The instance cannot flip yet: it has work in flight."""


class ServingInstance:
    def __init__(
        self,
        instance_id: str,
        role: str,
        config: EngineConfig,
        model: ShippedModel,
        switch_address: str,
        layout: PageLayout,
        scheduling: SchedulingConfig,
        chunk_tokens: int,
        adapter_store: Any = None,
        metrics_port: int | None = None,
    ) -> None:
        self.role = Role(role)
        config = _on_this_node(config, model)
        model_id = model.directory  # the model's name in KV keys, the same on every node
        self.serving = ServingEngine(instance_id, config, adapter_store, metrics_port)
        # The pages this engine writes hold its KV as its engine stores it.
        layout = replace(layout, dtype_bytes=self.serving.engine.kv_dtype_bytes)
        kv = KVClient(switch_address)
        self.prefill_role = PrefillInstance(
            self.serving, kv, model_id, layout, scheduling, chunk_tokens
        )
        self.decode_role = DecodeInstance(self.serving, kv, model_id, scheduling)
        self.flips = 0

    async def prefill(self, task_bytes: bytes) -> AsyncIterator[bytes]:
        async for message in self.prefill_role.prefill(task_bytes):
            yield message

    async def decode(self, task_bytes: bytes) -> AsyncIterator[bytes]:
        async for message in self.decode_role.decode(task_bytes):
            yield message

    def release_lease(self, lease_id: str, tenant: int) -> None:
        self.prefill_role.release_lease(lease_id, tenant)

    def abort_prefill(self, request_id: str) -> None:
        self.prefill_role.abort(request_id)

    async def observe(self, prompt: list[int], output_tokens: int) -> None:
        await self.prefill_role.observe(prompt, output_tokens)

    def set_decode_loads(self, reports: list[bytes]) -> None:
        self.prefill_role.set_decode_loads(reports)

    def load_report(self) -> bytes:
        role = self.prefill_role if self.role is Role.PREFILL else self.decode_role
        load = role.load()
        load.queued += self._other_role_waiting()
        return load_to_wire(load, self.role).SerializeToString()

    def _other_role_waiting(self) -> int:
        if self.role is Role.PREFILL:
            return self.decode_role.waiting
        return len(self.prefill_role.queue)

    def set_role(self, role: str) -> str:
        """Flips to `role`; refused with StillBusy while any request is in flight here."""
        in_flight = self.serving.running + self.decode_role.waiting + len(self.prefill_role.queue)
        if in_flight:
            raise StillBusy(f"{in_flight} requests still in flight")
        if Role(role) is not self.role:
            self.role = Role(role)
            self.flips += 1
        return self.role.value

    def metrics_target(self) -> str | None:
        """Where Prometheus scrapes this instance ("host:port"), None when it exports nothing."""
        return self.serving.metrics_target

    def stats(self) -> dict[str, Any]:
        return {
            **self.decode_role.counters,
            "role": self.role.value,
            "flips": self.flips,
            "busy_seconds": self.serving.busy_seconds,
            "cores": self.serving.cores,
            "model_dir": str(self.serving.engine.config.model_dir),
            "predictor_observations": self.prefill_role.predictor.observations,
            "kv_failures": metrics.kv_failures(self.serving.instance_id),
        }


def _on_this_node(config: EngineConfig, model: ShippedModel) -> EngineConfig:
    """`config` for the Ray node the engine runs on (known only here, in the actor Ray
    placed): the checkpoint's directory on this node, and the KV connector told the node,
    since the memory nodes it reaches one-sided are those of that node."""
    update: dict = {"model_dir": local_dir(model), **cores_on_this_node(config)}
    if config.kv_transfer is not None:
        extra = {**config.kv_transfer.get("kv_connector_extra_config", {}), "node": node_tag()}
        update["kv_transfer"] = {**config.kv_transfer, "kv_connector_extra_config": extra}
    return config.model_copy(update=update)


def cores_on_this_node(config: EngineConfig) -> dict[str, str | None]:
    """The engine's core numbers counted on this node: modulo its cores, and nothing
    borrowed where that would be the engine's own core (a node of one core)."""
    if config.cpu_cores is None or not config.cpu_cores.isdigit():
        return {}
    count = os.cpu_count() or 1
    home = int(config.cpu_cores) % count
    borrowed = None if config.borrowed_cores is None else int(config.borrowed_cores) % count
    lent = borrowed is not None and borrowed != home
    return {"cpu_cores": str(home), "borrowed_cores": str(borrowed) if lent else None}
