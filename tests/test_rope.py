"""RoPE rotation maths: composition, agreement with transformers, partial rotary, fp32 frequencies.

Run: pytest tests/test_rope.py -v
"""
import pytest
import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from ropeshift.rope import rope_info, rotate

from .tiny_models import tiny_model


def _inv(dim=32, base=10000.0):
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))


def test_rotate_matches_transformers_rope():
    inv = _inv()
    x = torch.randn(2, 3, 7, 32, dtype=torch.float64)
    pos = torch.arange(7)[None].expand(2, 7) * 13 + 5
    freqs = pos[..., None].double() * inv
    emb = torch.cat((freqs, freqs), -1)
    hf, _ = apply_rotary_pos_emb(x, x, emb.cos(), emb.sin())
    ours = rotate(x, pos[:, None, :], inv)
    torch.testing.assert_close(ours, hf, rtol=0, atol=1e-12)


def test_rotation_composes_and_inverts():
    inv = _inv()
    x = torch.randn(4, 9, 32, dtype=torch.float64)
    a, b = 1234, -987
    torch.testing.assert_close(rotate(rotate(x, a, inv), b, inv), rotate(x, a + b, inv), rtol=0, atol=1e-10)
    torch.testing.assert_close(rotate(rotate(x, a, inv), -a, inv), x, rtol=0, atol=1e-10)


def test_logit_depends_only_on_relative_distance():
    inv = _inv()
    q, k = torch.randn(32, dtype=torch.float64), torch.randn(32, dtype=torch.float64)
    l1 = rotate(q, 500, inv) @ rotate(k, 300, inv)
    l2 = rotate(q, 1200, inv) @ rotate(k, 1000, inv)
    assert abs(l1 - l2) < 1e-10
    assert abs(l1 - rotate(q, 200, inv) @ k) < 1e-10


def test_partial_rotary_leaves_tail_untouched():
    inv = _inv(dim=16)  # r = 16 of d = 32
    x = torch.randn(5, 32)
    y = rotate(x, 77, inv)
    assert torch.equal(y[..., 16:], x[..., 16:])
    assert not torch.allclose(y[..., :16], x[..., :16])
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5)


def test_per_row_deltas_broadcast():
    inv = _inv()
    x = torch.randn(2, 3, 4, 32, dtype=torch.float64)  # [b, h, l, d]
    delta = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])[:, None, :]  # [b, 1, l]
    y = rotate(x, delta, inv)
    torch.testing.assert_close(y[1, 2, 3], rotate(x[1, 2, 3], 8, inv))


@pytest.mark.parametrize("arch", ["llama", "phi3"])
def test_rope_info_reads_fp32_frequencies(arch):
    model = tiny_model(arch, dtype=torch.bfloat16)
    info = rope_info(model)
    assert info.inv_freq.dtype == torch.float32
    rot = next(m for m in model.modules() if hasattr(m, "inv_freq"))
    assert info.rotary_dim == 2 * rot.inv_freq.numel()
    torch.testing.assert_close(info.inv_freq, rot.original_inv_freq.float(), rtol=1e-2, atol=0)
    if arch == "phi3":
        assert info.rotary_dim == info.head_dim // 2


def test_yarn_frequencies_not_scaled_twice():
    rope = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64}
    model = tiny_model("llama", rope_parameters=rope)
    info = rope_info(model)
    assert info.attention_scaling > 1.0  # yarn's mscale multiplies the model's cos/sin ...
    rot = next(m for m in model.modules() if hasattr(m, "inv_freq"))
    torch.testing.assert_close(info.inv_freq, rot.inv_freq.float())  # ... but our rotation uses inv_freq only
