"""The vLLM KV connector that moves a prompt's KV cache through memory nodes.

Loaded by vLLM from `kv_transfer_config` (`kv_connector_module_path=actors.engine.kv_connector`).
Prefill engine (produce): after each forward pass, every KV block that received prompt
tokens in that pass is copied out and written whole, as one page (cluster/kv_pages.py),
through the SuperNIC switch to a memory node, by a thread of its own: the engine goes on
(its first token leaves) while the pages travel, in order. The prefill instance's lease
waits for the pages it looks up (actors/instances/prefill_instance.py). Decode engine (consume):
before the first forward pass of a request, its pages are read by handle (one-sided reads:
no owner-side logic) and copied into the engine's blocks, so the engine computes only the
last prompt token. A page that cannot be read is reported as a load error and vLLM
recomputes from there (`kv_load_failure_policy` = "recompute"): a failed transfer costs
time, never correctness.

The scheduler side (in vLLM's engine-core process) plans `SaveOp`s and `LoadOp`s each step;
the worker side (in the worker process) runs them against the engine's cache tensors.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from vllm.distributed.kv_transfer.kv_connector.v1.base import (
    KVConnectorBase_V1,
    KVConnectorMetadata,
    KVConnectorRole,
)

from actors.engine.kv_layout import extract_blocks, inject_blocks
from actors.kv.kv_client import KVClient, KVTransferError
from cluster.kv_pages import PageKey, open_page, page_keys, pages_touched, seal_page
from cluster.kv_transfer import LoadOp, PageLoad, PageSave, SaveOp, TransferParams

if TYPE_CHECKING:
    from vllm.config import VllmConfig
    from vllm.forward_context import ForwardContext
    from vllm.v1.core.kv_cache_manager import KVCacheBlocks
    from vllm.v1.core.sched.output import SchedulerOutput
    from vllm.v1.request import Request

log = logging.getLogger(__name__)


def _log_crash(save: Future) -> None:
    """Nobody waits on a save: an error `_save` did not expect is logged here or never."""
    if not save.cancelled() and save.exception() is not None:
        log.error("KV save crashed; decode will recompute", exc_info=save.exception())


@dataclass
class StepPlan(KVConnectorMetadata):
    saves: list[SaveOp] = field(default_factory=list)
    loads: list[LoadOp] = field(default_factory=list)


@dataclass(slots=True)
class _Production:
    params: TransferParams
    num_tokens: int
    keys: list[PageKey]
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
        self._timeout_s = float(extra.get("timeout_s", 5.0))
        # Scheduler side.
        self._producing: dict[str, _Production] = {}
        self._to_load: dict[str, tuple[TransferParams, int, int]] = {}
        # Worker side.
        self._client: KVClient | None = None
        self._caches: list[torch.Tensor] = []
        self._layer_index: dict[str, int] = {}
        self._staged: dict[int, list[torch.Tensor | None]] = {}
        self._failed_blocks: set[int] = set()
        self._saver: ThreadPoolExecutor | None = None

    # ---------------------------------------------------------------- scheduler side

    def get_num_new_matched_tokens(
        self, request: Request, num_computed_tokens: int
    ) -> tuple[int, bool]:
        params = TransferParams.from_kv_transfer_params(request.kv_transfer_params)
        if params is None or params.role != "consume":
            return 0, False
        return max(0, self._loadable(request, params) - num_computed_tokens), False

    def _loadable(self, request: Request, params: TransferParams) -> int:
        """Prompt tokens the lease's pages can supply; the last prompt token is computed."""
        return min(
            params.num_tokens,
            len(params.pages) * self._block_size,
            len(request.prompt_token_ids or ()) - 1,
        )

    def update_state_after_alloc(
        self, request: Request, blocks: KVCacheBlocks, num_external_tokens: int
    ) -> None:
        if num_external_tokens <= 0:
            return
        params = TransferParams.from_kv_transfer_params(request.kv_transfer_params)
        assert params is not None
        end = self._loadable(request, params)
        self._to_load[request.request_id] = (params, end - num_external_tokens, end)

    def build_connector_meta(self, scheduler_output: SchedulerOutput) -> KVConnectorMetadata:
        plan = StepPlan()
        scheduled = scheduler_output.num_scheduled_tokens
        for new in scheduler_output.scheduled_new_reqs:
            block_ids = list(new.block_ids[0])
            if new.req_id in self._to_load:
                plan.loads.append(self._load_op(new.req_id, block_ids))
            extra = (new.sampling_params.extra_args or {}) if new.sampling_params else {}
            params = TransferParams.from_kv_transfer_params(extra.get("kv_transfer_params"))
            if params is not None and params.role == "produce":
                prompt = list(new.prompt_token_ids or ())
                count = min(params.num_tokens, len(prompt))
                keys = page_keys(params.model, params.adapter, prompt[:count], self._block_size)
                self._producing[new.req_id] = _Production(params, count, keys, block_ids)
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

    def _load_op(self, req_id: str, block_ids: list[int]) -> LoadOp:
        params, start, end = self._to_load.pop(req_id)
        pages = [
            PageLoad(
                page,
                block_ids[page],
                min(self._block_size, end - page * self._block_size),
                params.pages[page],
            )
            for page in pages_touched(self._block_size, start, end)
        ]
        return LoadOp(req_id, params.tenant, pages)

    def _plan_save(self, plan: StepPlan, req_id: str, computed: int) -> None:
        production = self._producing[req_id]
        end = min(production.num_tokens, computed)
        if end > production.saved:
            pages = [
                PageSave(
                    production.block_ids[page],
                    min(self._block_size, end - page * self._block_size),
                    production.keys[page],
                )
                for page in pages_touched(self._block_size, production.saved, end)
            ]
            production.saved = end
            plan.saves.append(SaveOp(req_id, production.params.tenant, pages))
        if production.saved >= production.num_tokens:
            del self._producing[req_id]

    def request_finished(self, request: Request, block_ids: list[int]) -> tuple[bool, None]:
        self._producing.pop(request.request_id, None)
        self._to_load.pop(request.request_id, None)
        return False, None

    # ------------------------------------------------------------------- worker side

    def register_kv_caches(self, kv_caches: dict[str, torch.Tensor]) -> None:
        self._caches = list(kv_caches.values())
        self._layer_index = {name: i for i, name in enumerate(kv_caches)}

    def _kv(self) -> KVClient:
        if self._client is None:
            self._client = KVClient(self._switch_address, timeout_s=self._timeout_s)
        return self._client

    def start_load_kv(self, forward_context: ForwardContext, **kwargs: Any) -> None:
        plan = self._get_connector_metadata()
        assert isinstance(plan, StepPlan)
        for op in plan.loads:
            loaded = 0
            try:
                pages = self._kv().read_pages(op.tenant, [page.handle for page in op.pages])
                for page, data in zip(op.pages, pages, strict=True):
                    self._inject(page, data)
                    loaded += 1
            except (KVTransferError, ValueError) as exc:
                log.warning("KV load of %s failed, recomputing: %s", op.req_id, exc)
                self._failed_blocks.update(p.block_id for p in op.pages[loaded:])

    def _inject(self, page: PageLoad, data: bytes) -> None:
        blocks, valid = open_page(data)
        if valid < page.needed_tokens:
            raise ValueError(f"page holds {valid} tokens, {page.needed_tokens} needed")
        flat = torch.frombuffer(bytearray(blocks), dtype=torch.uint8)
        per_layer = flat.view(len(self._caches), -1)
        for layer, cache in enumerate(self._caches):
            inject_blocks(cache, [page.block_id], per_layer[layer].view(cache.dtype).view(1, -1))

    def wait_for_layer_load(self, layer_name: str) -> None:
        return

    def save_kv_layer(
        self, layer_name: str, kv_layer: torch.Tensor, attn_metadata: Any, **kwargs: Any
    ) -> None:
        plan = self._get_connector_metadata()
        assert isinstance(plan, StepPlan)
        layer = self._layer_index[layer_name]
        for i, op in enumerate(plan.saves):
            staged = self._staged.setdefault(i, [None] * len(self._caches))
            staged[layer] = extract_blocks(kv_layer, [page.block_id for page in op.pages])

    def wait_for_save(self) -> None:
        plan = self._get_connector_metadata()
        assert isinstance(plan, StepPlan)
        staged, self._staged = self._staged, {}
        for i, op in enumerate(plan.saves):
            layers = staged.get(i)
            if layers is None or any(t is None for t in layers):
                continue
            blocks = torch.stack(layers, dim=1)  # [pages, layers, block numel], a copy
            if self._saver is None:
                self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kv-save")
            self._saver.submit(self._save, op, blocks).add_done_callback(_log_crash)

    def _save(self, op: SaveOp, blocks: torch.Tensor) -> None:
        """The step's pages of one request, sealed, in one write (allocated by key); on the
        saver thread, so a failure is logged: the decode side recomputes what is missing."""
        pages = [
            (
                page.key,
                seal_page(
                    blocks[row].contiguous().view(torch.uint8).numpy().tobytes(),
                    page.valid_tokens,
                ),
            )
            for row, page in enumerate(op.pages)
        ]
        try:
            self._kv().write_pages(op.tenant, pages)
        except KVTransferError as exc:
            log.warning("KV save of %s failed; decode will recompute: %s", op.req_id, exc)

    def get_block_ids_with_load_errors(self) -> set[int]:
        failed, self._failed_blocks = self._failed_blocks, set()
        return failed

    def shutdown(self) -> None:
        if self._saver is not None:
            self._saver.shutdown(wait=True)
        if self._client is not None:
            self._client.close()
