"""The vLLM KV connector that moves a prompt's KV cache through memory nodes.

Loaded by vLLM from `kv_transfer_config` (`kv_connector_module_path=actors.engine.kv_connector`).
The request's `kv_transfer_params` name the pages of its lease (cluster/kv_transfer.py).

Prefill engine (produce): each forward pass, every KV block that received prompt tokens in
it is written into its page layer by layer, as `save_kv_layer` hands each layer over, and
sealed in `wait_for_save`, before the step's tokens leave the engine (actors/kv/page_io.py:
one copy into the memory node's shared arena on this machine, or one call through the
switch from another). So the first token never leaves before its prompt's KV is whole in
memory nodes: nobody polls for pages, and no block needs holding past the request's end
(`request_finished` frees at once).

Decode engine (consume): `get_num_new_matched_tokens` answers that the lease's pages will
be loaded asynchronously; while the engine goes on with its other requests, a loader
thread checks each page's trailer against the lease and copies it into the blocks vLLM
allocated, and `get_finished` tells vLLM which requests may run. The engine then computes
only what the pages did not hold. A page that cannot be read, or is not whole under its
lease, is a load error: vLLM recomputes from there (`kv_load_failure_policy` = "recompute"),
so a failed transfer costs time, never correctness. A request's pages are sent for once:
when it waits again (after a failed load or a preemption), it recomputes what it lacks.

The scheduler side (in vLLM's engine-core process) plans `SaveOp`s and `LoadOp`s each step;
the worker side (in the worker process) runs them against the engine's cache tensors.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from vllm.distributed.kv_transfer.kv_connector.v1.base import (
    KVConnectorBase_V1,
    KVConnectorMetadata,
    KVConnectorRole,
)

from actors.engine.kv_layout import block_bytes
from actors.kv.kv_client import KVClient, KVTransferError
from actors.kv.page_io import PageIO
from cluster.kv_pages import pages_touched
from cluster.kv_transfer import LoadOp, PageLoad, PageSave, SaveOp, TransferParams

if TYPE_CHECKING:
    from vllm.config import VllmConfig
    from vllm.forward_context import ForwardContext
    from vllm.v1.core.kv_cache_manager import KVCacheBlocks
    from vllm.v1.core.sched.output import SchedulerOutput
    from vllm.v1.request import Request

log = logging.getLogger(__name__)


@dataclass
class StepPlan(KVConnectorMetadata):
    saves: list[SaveOp] = field(default_factory=list)
    loads: list[LoadOp] = field(default_factory=list)


@dataclass(slots=True)
class _Production:
    """A prefill whose prompt KV this engine writes; `saved`: tokens written so far."""

    params: TransferParams
    num_tokens: int
    block_ids: list[int]
    saved: int = 0


class TetriserveConnector(KVConnectorBase_V1):
    def __init__(
        self, vllm_config: VllmConfig, role: KVConnectorRole, kv_cache_config: Any = None
    ) -> None:
        super().__init__(vllm_config=vllm_config, role=role, kv_cache_config=kv_cache_config)
        self._block_size = vllm_config.cache_config.block_size
        extra = self._kv_transfer_config.kv_connector_extra_config
        self._switch_address: str = extra["switch_address"]
        # The Ray node the engine is on: only memory nodes of the same node are reached
        # one-sided, through their arenas (None: any on this machine).
        self._node: str | None = extra.get("node")
        self._timeout_s = float(extra.get("timeout_s", 5.0))
        # Scheduler side.
        self._producing: dict[str, _Production] = {}
        self._to_load: list[LoadOp] = []
        # Requests whose prompt KV was sent for once: whatever brings one back to the
        # waiting queue (a failed load, a preemption) recomputes it instead of loading again,
        # so pages that are gone cannot send it round the load again and again.
        self._load_planned: set[str] = set()
        # Worker side.
        self._pages: PageIO | None = None
        self._caches: list[torch.Tensor] = []
        self._layer_index: dict[str, int] = {}
        self._loader: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._loaded: set[str] = set()  # requests whose load ended since the last step
        self._failed_blocks: set[int] = set()

    # ---------------------------------------------------------------- scheduler side

    def get_num_new_matched_tokens(
        self, request: Request, num_computed_tokens: int
    ) -> tuple[int, bool]:
        params = TransferParams.from_kv_transfer_params(request.kv_transfer_params)
        if params is None or params.role != "consume":
            return 0, False
        if request.request_id in self._load_planned:
            return 0, False
        prompt = len(request.prompt_token_ids or ())
        new = max(0, params.loadable(self._block_size, prompt) - num_computed_tokens)
        return new, new > 0

    def update_state_after_alloc(
        self, request: Request, blocks: KVCacheBlocks, num_external_tokens: int
    ) -> None:
        if num_external_tokens <= 0:
            return
        params = TransferParams.from_kv_transfer_params(request.kv_transfer_params)
        assert params is not None
        end = params.loadable(self._block_size, len(request.prompt_token_ids or ()))
        block_ids = blocks.get_block_ids()[0]
        pages = [
            PageLoad(
                block_ids[page],
                min(self._block_size, end - page * self._block_size),
                params.pages[page],
            )
            for page in pages_touched(self._block_size, end - num_external_tokens, end)
        ]
        self._to_load.append(
            LoadOp(request.request_id, params.tenant, params.nonce, pages, params.capability)
        )
        self._load_planned.add(request.request_id)

    def build_connector_meta(self, scheduler_output: SchedulerOutput) -> KVConnectorMetadata:
        plan = StepPlan(loads=self._to_load)
        self._to_load = []
        scheduled = scheduler_output.num_scheduled_tokens
        for new in scheduler_output.scheduled_new_reqs:
            extra = (new.sampling_params.extra_args or {}) if new.sampling_params else {}
            params = TransferParams.from_kv_transfer_params(extra.get("kv_transfer_params"))
            if params is not None and params.role == "produce" and params.pages:
                count = min(params.num_tokens, len(new.prompt_token_ids or ()))
                block_ids = list(new.block_ids[0])
                self._producing[new.req_id] = _Production(params, count, block_ids)
                self._plan_save(plan, new.req_id, new.num_computed_tokens + scheduled[new.req_id])
        cached = scheduler_output.scheduled_cached_reqs
        for i, req_id in enumerate(cached.req_ids):
            production = self._producing.get(req_id)
            if production is None:
                continue
            new_blocks = cached.new_block_ids[i]
            if req_id in cached.resumed_req_ids and new_blocks is not None:
                production.block_ids = list(new_blocks[0])
            elif new_blocks is not None:
                production.block_ids.extend(new_blocks[0])
            self._plan_save(plan, req_id, cached.num_computed_tokens[i] + scheduled[req_id])
        return plan

    def _plan_save(self, plan: StepPlan, req_id: str, computed: int) -> None:
        """Saves the blocks that received prompt tokens this step (a block written again
        as more of its tokens are computed is sealed again, with more valid tokens)."""
        production = self._producing[req_id]
        end = min(production.num_tokens, computed)
        pages = production.params.pages
        if end > production.saved:
            saves = [
                PageSave(
                    production.block_ids[page],
                    min(self._block_size, end - page * self._block_size),
                    pages[page],
                )
                for page in pages_touched(self._block_size, production.saved, end)
                if page < len(pages)
            ]
            production.saved = end
            params = production.params
            plan.saves.append(SaveOp(req_id, params.tenant, params.nonce, saves, params.capability))
        if production.saved >= production.num_tokens:
            del self._producing[req_id]

    def request_finished(self, request: Request, block_ids: list[int]) -> tuple[bool, None]:
        """Nothing to hold: a step's pages are sealed before the step ends."""
        self._producing.pop(request.request_id, None)
        self._load_planned.discard(request.request_id)
        return False, None

    # ------------------------------------------------------------------- worker side

    def register_kv_caches(self, kv_caches: dict[str, torch.Tensor]) -> None:
        self._caches = list(kv_caches.values())
        self._layer_index = {name: i for i, name in enumerate(kv_caches)}

    def _io(self) -> PageIO:
        if self._pages is None:
            client = KVClient(self._switch_address, timeout_s=self._timeout_s)
            caches = self._caches
            self._pages = PageIO(client, block_bytes(caches[0]), len(caches), self._node)
        return self._pages

    def start_load_kv(self, forward_context: ForwardContext, **kwargs: Any) -> None:
        plan = self._get_connector_metadata()
        assert isinstance(plan, StepPlan)
        if plan.loads and self._loader is None:
            self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kv-load")
        for op in plan.loads:
            assert self._loader is not None
            self._loader.submit(self._load, op)

    def _load(self, op: LoadOp) -> None:
        """On the loader thread: the request's pages into its blocks; from the first page
        that fails, its blocks are reported, and vLLM recomputes them."""
        loaded = 0
        try:
            io = self._io()
            io.client.present(op.tenant, op.capability)
            placed = io.read(op.tenant, [(p.handle, p.needed_tokens) for p in op.pages], op.nonce)
            blocks = [page.block_id for page in op.pages[: len(placed.places)]]
            for layer, cache in enumerate(self._caches):
                io.read_layer(placed, layer, cache, blocks)
            loaded = len(blocks)
            if placed.failure is not None:
                log.warning("KV load of %s stopped, recomputing: %s", op.req_id, placed.failure)
        except Exception:
            log.exception("KV load of %s crashed, recomputing", op.req_id)
        with self._lock:
            self._failed_blocks.update(page.block_id for page in op.pages[loaded:])
            self._loaded.add(op.req_id)

    def wait_for_layer_load(self, layer_name: str) -> None:
        return

    def save_kv_layer(
        self, layer_name: str, kv_layer: torch.Tensor, attn_metadata: Any, **kwargs: Any
    ) -> None:
        plan = self._get_connector_metadata()
        assert isinstance(plan, StepPlan)
        layer = self._layer_index[layer_name]
        for op in plan.saves:
            handles = [page.handle for page in op.pages]
            self._io().write_layer(handles, layer, kv_layer, [page.block_id for page in op.pages])

    def wait_for_save(self) -> None:
        plan = self._get_connector_metadata()
        assert isinstance(plan, StepPlan)
        for op in plan.saves:
            sealed = [(page.handle, page.valid_tokens) for page in op.pages]
            try:
                self._io().client.present(op.tenant, op.capability)
                self._io().seal(op.tenant, sealed, op.nonce)
            except KVTransferError as exc:
                log.warning("KV save of %s failed; decode will recompute: %s", op.req_id, exc)

    def get_finished(self, finished_req_ids: set[str]) -> tuple[set[str] | None, set[str]]:
        with self._lock:
            loaded, self._loaded = self._loaded, set()
        return None, loaded

    def get_block_ids_with_load_errors(self) -> set[int]:
        with self._lock:
            failed, self._failed_blocks = self._failed_blocks, set()
        return failed

    def shutdown(self) -> None:
        if self._loader is not None:
            self._loader.shutdown(wait=True)
        if self._pages is not None:
            self._pages.close()
