"""A vLLM plugin that keeps base-model tokens free of LoRA deltas on CPU engines.

vLLM marks tokens without an adapter with index -1; the CPU LoRA ops of this vLLM build
index the stacked adapter weights with it directly, and -1 selects the last adapter slot,
so base-model requests batched with LoRA requests silently get an adapter's delta (wrong
text with HTTP 200). The GPU kernels skip -1; these replacements do the same: a -1 row's
delta is zero, and a batch in which no row has an adapter costs nothing. The others compute
one product per adapter in the batch (vLLM's ops copied the adapter's weights once per row:
on a 32-sequence decode step of the small model, more time than the base model's GEMMs).

Loaded in every vLLM process (engine core and workers) through the `vllm.general_plugins`
entry point declared in pyproject.toml.
"""

from __future__ import annotations

import importlib

import torch

_PATCHED_FLAG = "_tetriserve_lora_index_fix"
_MODULES = (
    "vllm.lora.ops.torch_ops.lora_ops",
    "vllm.lora.ops.torch_ops",
    "vllm.lora.punica_wrapper.punica_cpu",
)
_NAMES = (
    "bgmv_shrink",
    "bgmv_expand",
    "bgmv_expand_slice",
    "sgmv_shrink",
    "sgmv_expand",
    "sgmv_expand_slice",
)


def _lora_delta(
    inputs: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor | None:
    """Each row's delta under its adapter slot, zero for rows without one; None when no row
    has an adapter. Rows are grouped by slot, one matrix product per slot in the batch,
    rather than a copy of the slot's weights for every row."""
    slots = torch.unique(indices[indices >= 0]).tolist()
    if not slots:
        return None
    out = torch.zeros(inputs.shape[0], weights.shape[-2], dtype=dtype)
    for slot in slots:
        rows = indices == slot
        weight = weights[slot].reshape(weights.shape[-2], weights.shape[-1]).to(dtype=dtype)
        out[rows] = inputs[rows].to(dtype=dtype) @ weight.T
    return out


def bgmv_shrink(inputs, lora_b_weights, output_tensor, lora_indices_tensor, scaling=1.0):
    outputs = _lora_delta(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    if outputs is None:
        output_tensor[:, : lora_b_weights.shape[-2]] = 0
        return
    output_tensor[:, : outputs.shape[1]] = scaling * outputs[:]


def bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs=True):
    outputs = _lora_delta(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    common = min(lora_b_weights.shape[-2], output_tensor.shape[1])
    if outputs is None:
        if not add_inputs:
            output_tensor[:, :common] = 0
        return
    limit = output_tensor.shape[0]
    if outputs.shape[0] == 1 and output_tensor.shape[0] != 1:
        limit = 1
    if add_inputs:
        output_tensor[:, :common] += outputs[:limit, :common]
    else:
        output_tensor[:, :common] = outputs[:limit, :common]


def bgmv_expand_slice(
    inputs,
    lora_b_weights,
    output_tensor,
    lora_indices_tensor,
    slice_offset,
    slice_size,
    add_inputs=True,
):
    outputs = _lora_delta(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    window = slice(slice_offset, slice_offset + slice_size)
    if outputs is None:
        if not add_inputs:
            output_tensor[:, window] = 0
        return
    if add_inputs:
        output_tensor[:, window] += outputs[:]
    else:
        output_tensor[:, window] = outputs[:]


def _per_token(lora_indices: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
    return torch.repeat_interleave(lora_indices, seq_len)


def sgmv_shrink(inputs, lora_a, out, starts, seq_len, lora_indices, batches, max_len, n, scaling):
    bgmv_shrink(inputs, lora_a, out, _per_token(lora_indices, seq_len), scaling)


def sgmv_expand(
    inputs, lora_b, out, starts, seq_len, lora_indices, batches, max_len, n, add_inputs=False
):
    bgmv_expand(inputs, lora_b, out, _per_token(lora_indices, seq_len), add_inputs)


def sgmv_expand_slice(
    inputs,
    lora_b,
    out,
    starts,
    seq_len,
    lora_indices,
    batches,
    max_len,
    n,
    slice_offset,
    slice_size,
    add_inputs=False,
):
    indices = _per_token(lora_indices, seq_len)
    bgmv_expand_slice(inputs, lora_b, out, indices, slice_offset, slice_size, add_inputs)


def apply() -> None:
    """The `vllm.general_plugins` entry point; safe to call more than once."""
    replacements = globals()
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if getattr(module, _PATCHED_FLAG, False):
            continue
        for op in _NAMES:
            if hasattr(module, op):
                setattr(module, op, replacements[op])
        setattr(module, _PATCHED_FLAG, True)
