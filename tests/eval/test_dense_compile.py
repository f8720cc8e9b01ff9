"""The evaluation's compiled dense blocks (``ropeshift.eval.dense_compile``): which modules it compiles, that
attention stays eager, that outputs and texts do not change (fp32), the run option and its CLI flag.

CPU: dynamo's trace with the "eager" backend (no C++ toolchain needed); the ``gpu`` tests compile with inductor
on CUDA and compare the CUDA-graph decode loop's texts with the uncompiled model's.
Run: pytest tests/eval/test_dense_compile.py -v
"""
from __future__ import annotations

import copy

import pytest
import torch

from ropeshift.eval import dense_compile as dc
from ropeshift.eval.generation import activate, deactivate, generate
from ropeshift.eval.options import MethodSpec
from ropeshift.eval.prompts import encode

TEXTS = ["The grass is green. The sky", "Here we go", "def f(x):\n    return the grass is green and the sea"]
SPECS = [MethodSpec("plain", {}), MethodSpec("string", {"shift": 8, "window": 2})]


def test_blocks_are_norms_and_mlps_of_every_layer(tiny_llama):
    names = [n for n, _ in dc.dense_blocks(tiny_llama)]
    layers = tiny_llama.config.num_hidden_layers
    want = {f"model.layers.{i}.{a}" for i in range(layers) for a in ("mlp", "input_layernorm",
                                                                      "post_attention_layernorm")}
    assert set(names) == want and len(names) == len(want)
    for _, m in dc.dense_blocks(tiny_llama):  # nothing that holds attention, nothing without weights
        assert not any(dc.is_attention(x) for x in m.modules())
    assert all(dc.is_attention(layer.self_attn) for layer in tiny_llama.model.layers)


def test_compile_is_idempotent_and_leaves_attention_eager(tiny_llama):
    model = copy.deepcopy(tiny_llama)
    n = dc.compile_dense_blocks(model, backend="eager")
    assert n == 3 * model.config.num_hidden_layers
    assert dc.compile_dense_blocks(model, backend="eager") == 0
    for layer in model.model.layers:
        assert layer.mlp._compiled_call_impl is not None
        assert getattr(layer.self_attn, "_compiled_call_impl", None) is None


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_outputs_and_texts_unchanged(tiny_llama, tok, spec):
    torch._dynamo.reset()
    model = copy.deepcopy(tiny_llama)
    rows = [encode(tok, t, True) for t in TEXTS]
    ids = torch.tensor([rows[0] * 3])
    activate(tiny_llama, spec)
    try:
        with torch.no_grad():
            want_logits = tiny_llama(ids).logits
        want = generate(tiny_llama, tok, rows, 12)
    finally:
        deactivate(tiny_llama)
    dc.compile_dense_blocks(model, backend="eager")
    activate(model, spec)
    try:
        with torch.no_grad():
            got_logits = model(ids).logits
        got = generate(model, tok, rows, 12)
    finally:
        deactivate(model)
    torch.testing.assert_close(got_logits, want_logits, rtol=0, atol=1e-5)
    assert got == want


def test_wanted_by_setting_and_device(tiny_llama):
    assert dc.wanted("auto", tiny_llama) is False  # a CPU model
    assert dc.wanted("on", tiny_llama) is True
    assert dc.wanted("off", tiny_llama) is False
    with pytest.raises(ValueError, match="auto, on or off"):
        dc.wanted("yes", tiny_llama)


def test_run_option_and_flag(tmp_path):
    from ropeshift.cli.main import build_parser
    from ropeshift.eval.runner import RunConfig

    base = dict(model="m", tasks=("passkey",), lengths=(512,), methods=(MethodSpec("rope"),), samples=1,
                out=tmp_path)
    assert RunConfig(**base).compile_blocks == "auto"
    with pytest.raises(ValueError, match="compile_blocks"):
        RunConfig(**base, compile_blocks="sometimes")
    for cmd in ("eval", "needle"):
        args = build_parser().parse_args([cmd, "--compile-blocks", "off"])
        assert args.compile_blocks == "off"
        assert build_parser().parse_args([cmd]).compile_blocks == "auto"


# ---- CUDA: inductor, the CUDA-graph decode loop ----------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_cuda_compiled_blocks_keep_graph_loop_texts(tiny_llama, tok, spec):
    eager = copy.deepcopy(tiny_llama).cuda()
    compiled = copy.deepcopy(tiny_llama).cuda()
    assert dc.wanted("auto", compiled)
    dc.compile_dense_blocks(compiled)
    rows = [encode(tok, t, True) for t in TEXTS]
    out = []
    for model in (eager, compiled):
        activate(model, spec)
        try:
            out.append([generate(model, tok, rows, budget) for budget in (1, 5, 24)])  # auto: the graph loop
        finally:
            deactivate(model)
    assert out[1] == out[0]
