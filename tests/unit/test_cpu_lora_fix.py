"""The CPU LoRA ops replacement: rows without an adapter (index -1) get no delta."""

from __future__ import annotations

import torch

from actors.engine import vllm_cpu_lora_fix as fix


def test_rows_without_adapter_get_no_delta_and_others_their_own() -> None:
    torch.manual_seed(0)
    inputs = torch.randn(4, 16)
    weights = torch.randn(2, 1, 8, 16)  # two adapter slots, rank 8
    indices = torch.tensor([-1, 0, 1, -1])
    out = torch.zeros(4, 8)
    fix.bgmv_shrink(inputs, weights, out, indices, scaling=2.0)
    assert torch.all(out[0] == 0) and torch.all(out[3] == 0)
    assert torch.allclose(out[1], 2.0 * inputs[1] @ weights[0, 0].T, atol=1e-5)
    assert torch.allclose(out[2], 2.0 * inputs[2] @ weights[1, 0].T, atol=1e-5)


def test_expand_adds_only_to_rows_with_an_adapter() -> None:
    torch.manual_seed(1)
    inputs = torch.randn(3, 8)
    weights = torch.randn(1, 1, 16, 8)
    base = torch.randn(3, 16)
    out = base.clone()
    fix.sgmv_expand(inputs, weights, out, None, torch.tensor([1, 2]), torch.tensor([-1, 0]),
                    2, 2, 3, add_inputs=True)  # fmt: skip
    assert torch.equal(out[0], base[0])
    assert torch.allclose(out[1:], base[1:] + inputs[1:] @ weights[0, 0].T, atol=1e-5)


def test_apply_patches_the_cpu_punica_wrapper_once() -> None:
    fix.apply()
    fix.apply()
    from vllm.lora.punica_wrapper import punica_cpu

    assert punica_cpu.bgmv_shrink is fix.bgmv_shrink
    assert punica_cpu.sgmv_expand_slice is fix.sgmv_expand_slice
