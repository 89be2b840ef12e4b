"""The front door's side of run-time adapters: vLLM's load and unload calls, and which
adapter version a request is for.

`/v1/load_lora_adapter`, `/v1/unload_lora_adapter` (deploy/openai_app.py) and their gRPC
twins (deploy/grpc_ingress.py) pass their bodies on to the LoRAAdapterStore, the one owner
of the loaded adapters (actors/adapters/adapter_store.py), and turn its refusals into
vLLM's status codes: a bad adapter 400, an unknown one 404. Every request for `base:NAME`
is resolved here to the adapter's current version, so that an adapter unloaded is refused
at once (404), while requests already under way keep the version they were given.
"""

from __future__ import annotations

from typing import Any

from actors.adapters.adapter_store import UnknownAdapter
from cluster.adapter_check import AdapterRejected
from cluster.request import BASE_MODEL_NAME, parse_model_name
from deploy.openai_protocol import APIError, bad_request, model_not_found
from tetriserve.v1 import adapters_pb2


class LoraAdmin:
    """Mixin for the ingress deployment; the host class sets `store`, the adapter store's
    actor handle."""

    store: Any

    async def _load_lora(self, lora_name: str, lora_path: str) -> str:
        request = adapters_pb2.LoadLoraAdapterRequest(lora_name=lora_name, lora_path=lora_path)
        await self._ask_store(self.store.load, request)
        return f"Success: LoRA adapter '{lora_name}' added successfully."

    async def _unload_lora(self, lora_name: str) -> str:
        request = adapters_pb2.UnloadLoraAdapterRequest(lora_name=lora_name)
        reply = await self._ask_store(self.store.unload, request)
        return adapters_pb2.LoraAdapterReply.FromString(reply).message

    async def _ask_store(self, method: Any, request: Any) -> bytes:
        try:
            return await method.remote(request.SerializeToString())
        except UnknownAdapter as exc:
            raise APIError(404, _reason(exc), "NotFoundError") from None
        except AdapterRejected as exc:  # the name, the path or the files: no one param
            raise bad_request(_reason(exc)) from None

    async def _model_names(self) -> list[str]:
        """`base` and `base:NAME` for every adapter loaded now."""
        reply = adapters_pb2.ListAdaptersReply.FromString(await self.store.list_adapters.remote())
        return [BASE_MODEL_NAME] + [f"{BASE_MODEL_NAME}:{a.name}" for a in reply.adapters]

    async def _resolve(self, model: str) -> tuple[str | None, int]:
        """The adapter a `model` field names and its current version ((None, 0): the base
        model); a 404 for a name that is not loaded."""
        try:
            adapter = parse_model_name(model)
        except ValueError:
            raise model_not_found(model) from None
        if adapter is None:
            return None, 0
        request = adapters_pb2.ResolveAdapterRequest(name=adapter)
        try:
            reply = await self.store.resolve.remote(request.SerializeToString())
        except UnknownAdapter:
            raise model_not_found(model) from None
        return adapter, adapters_pb2.AdapterInfo.FromString(reply).version


def _reason(exc: Exception) -> str:
    """The message the store gave (a Ray error wraps it with its traceback)."""
    cause = getattr(exc, "cause", None) or exc
    return str(cause)
