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


def test_a_batch_without_adapters_leaves_outputs_as_the_base_model_made_them() -> None:
    torch.manual_seed(2)
    inputs = torch.randn(3, 8)
    weights = torch.randn(2, 1, 16, 8)
    base = torch.randn(3, 16)
    out = base.clone()
    fix.bgmv_expand(inputs, weights, out, torch.tensor([-1, -1, -1]), add_inputs=True)
    assert torch.equal(out, base)
    fix.bgmv_expand_slice(inputs, weights, out, torch.tensor([-1, -1, -1]), 0, 16, False)
    assert torch.all(out == 0)  # without add_inputs the delta is written: zero
    shrunk = torch.randn(3, 16)
    fix.bgmv_shrink(inputs.T.contiguous()[:3, :3], weights[:, :, :4, :3], shrunk,
                    torch.tensor([-1, -1, -1]))  # fmt: skip
    assert torch.all(shrunk[:, :4] == 0) and not torch.all(shrunk[:, 4:] == 0)


def test_rows_of_one_adapter_match_a_row_by_row_product() -> None:
    torch.manual_seed(3)
    inputs = torch.randn(5, 8)
    weights = torch.randn(3, 1, 16, 8)
    indices = torch.tensor([2, 0, 2, -1, 0])
    out = torch.zeros(5, 16)
    fix.bgmv_expand(inputs, weights, out, indices, add_inputs=False)
    for row, slot in enumerate(indices.tolist()):
        expected = torch.zeros(16) if slot < 0 else inputs[row] @ weights[slot, 0].T
        assert torch.allclose(out[row], expected, atol=1e-5)
