"""The evaluation's compiled decoder layers (``ropeshift.eval.dense_compile``): which modules each mode compiles,
that attention stays out of the trace (no recompile per method), that outputs and texts do not change (fp32),
the run option and its CLI flag.

CPU: dynamo's trace with the "eager" backend (no C++ toolchain needed); the ``gpu`` tests compile with inductor
on CUDA and compare the CUDA-graph decode loop's texts with the uncompiled model's.
Run: pytest tests/eval/test_dense_compile.py -v
"""
from __future__ import annotations

import copy

import pytest
import torch

from ropeshift.attention.interface import EAGER_UNDER_COMPILE
from ropeshift.eval import dense_compile as dc
from ropeshift.eval.generation import activate, deactivate, generate
from ropeshift.eval.options import MethodSpec
from ropeshift.eval.prompts import encode

@pytest.fixture(autouse=True)
def _dynamo_config():
    """compile_model("layers") sets a process-wide dynamo setting: restored after each test, so the rest of the
    suite compiles as before (dynamo's own ``config.patch``: pytest's monkeypatch deletes a module attribute it
    did not find in the module's ``__dict__``, which hides a dynamo config entry for good)."""
    with torch._dynamo.config.patch(allow_unspec_int_on_nn_module=torch._dynamo.config.allow_unspec_int_on_nn_module), \
            torch.compiler.config.patch(dynamic_sources=torch.compiler.config.dynamic_sources):
        yield


TEXTS = ["The grass is green. The sky", "Here we go", "def f(x):\n    return the grass is green and the sea"]
SPECS = [MethodSpec("plain", {}), MethodSpec("string", {"shift": 8, "window": 2})]


def test_layers_and_blocks(tiny_llama):
    layers = tiny_llama.config.num_hidden_layers
    assert [n for n, _ in dc.decoder_layers(tiny_llama)] == [f"model.layers.{i}" for i in range(layers)]
    names = [n for n, _ in dc.dense_blocks(tiny_llama)]
    want = {f"model.layers.{i}.{a}" for i in range(layers) for a in ("mlp", "input_layernorm",
                                                                      "post_attention_layernorm")}
    assert set(names) == want and len(names) == len(want)
    for _, m in dc.dense_blocks(tiny_llama):  # nothing that holds attention, nothing without weights
        assert not any(dc.is_attention(x) for x in m.modules())
    assert all(dc.is_attention(layer.self_attn) for layer in tiny_llama.model.layers)


@pytest.mark.parametrize("mode", dc.MODES)
def test_compile_is_idempotent(tiny_llama, mode):
    model = copy.deepcopy(tiny_llama)
    n = dc.compile_model(model, mode, backend="eager")
    layers = model.config.num_hidden_layers
    assert n == (layers if mode == "layers" else 3 * layers)
    assert dc.compile_model(model, mode, backend="eager") == 0
    for layer in model.model.layers:
        compiled_layer = getattr(layer, "_compiled_call_impl", None) is not None
        assert compiled_layer == (mode == "layers")
        assert (layer.mlp._compiled_call_impl is not None) == (mode == "blocks")
        assert getattr(layer.self_attn, "_compiled_call_impl", None) is None
        assert getattr(layer.self_attn, EAGER_UNDER_COMPILE, False) == (mode == "layers")
    with pytest.raises(ValueError, match="compile mode"):
        dc.compile_model(model, "whole")


def test_layers_keep_attention_out_of_the_trace(tiny_llama, tok, monkeypatch):
    """Under "layers" the attention call is a graph break: ropeshift's attention runs eagerly in every layer of
    every forward (never under tracing), and a second method or a new length compiles nothing new."""
    from ropeshift.attention import interface

    calls = []
    real = interface.attend
    monkeypatch.setattr(interface, "attend", lambda *a, **k: calls.append(torch.compiler.is_compiling())
                        or real(*a, **k))
    torch._dynamo.reset()
    model = copy.deepcopy(tiny_llama)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append({str(n.target) for n in gm.graph.nodes})
        return gm.forward

    dc.compile_model(model, "layers", backend=backend)
    ids = torch.tensor([encode(tok, TEXTS[0], True) * 3])
    with torch.no_grad():
        for i, spec in enumerate(SPECS + [MethodSpec("self_extend", {"group_size": 3, "window": 6})]):
            activate(model, spec)
            try:
                model(ids[:, : ids.shape[1] - i])
            finally:
                deactivate(model)
            if i == 0:
                first = len(graphs)
    assert first > 0 and len(graphs) == first  # no recompile for another method or length
    assert calls == [False] * (3 * model.config.num_hidden_layers)  # 3 forwards, every layer, eager


def test_compile_seconds_counts_what_a_forward_compiled(tiny_llama, tok):
    """``batch_log.compile_seconds`` (the runner's per-batch ``compile_s``) grows by a first compiled forward and not
    by a repeat of it."""
    from ropeshift.eval.batch_log import compile_seconds

    torch._dynamo.reset()
    model = copy.deepcopy(tiny_llama)
    dc.compile_model(model, "layers", backend="eager")
    ids = torch.tensor([encode(tok, TEXTS[0], True) * 2] * 2)
    t0 = compile_seconds()
    with torch.no_grad():
        model(ids)
        t1 = compile_seconds()
        model(ids)
    assert t1 > t0 and compile_seconds() == t1


def test_layers_share_one_graph_through_the_decode_loop(tok):
    """The static-cache loop over a compiled model compiles the same graphs for 2 layers as for 10 (no graph per
    layer: ``layer_idx`` symbolic, the cache update outside the trace), so dynamo's recompile limit (beyond which
    layers would silently run eager) is never approached."""
    from tests.tiny_models import tiny_model

    from ropeshift.eval.graph_decode import static_generate

    counts = []
    for layers in (2, 10):
        torch._dynamo.reset()
        model = tiny_model(num_hidden_layers=layers, vocab_size=len(tok))
        graphs = []
        dc.compile_model(model, "layers", backend=lambda gm, ex: graphs.append(gm) or gm.forward)
        activate(model, SPECS[1])
        try:
            row = encode(tok, TEXTS[2], True)
            ids = torch.tensor([row, row[::-1]])
            with torch.inference_mode():
                static_generate(model, ids, torch.ones_like(ids), lambda t, _: torch.zeros(2, dtype=torch.bool),
                                max_new=4, graphs=False)
        finally:
            deactivate(model)
        counts.append(len(graphs))
    assert counts[0] == counts[1] > 0  # a graph per layer would give 10 (or the limit, 8) where 2 layers give 2


def test_layers_keep_the_head_size_a_constant(tok):
    """Only ``layer_idx`` is a symbolic module integer (``layer_index_dynamic``): no compiled graph takes another
    module attribute (``head_dim``) as a symbolic input (with every module integer symbolic, the fused RoPE
    kernels index q and k by runtime divisions by the head size: ~10x slower on the H100). That every layer still
    shares its graphs is ``test_layers_share_one_graph_through_the_decode_loop``."""
    from tests.tiny_models import tiny_model

    from ropeshift.eval.graph_decode import static_generate

    torch._dynamo.reset()
    model = tiny_model(num_hidden_layers=3, vocab_size=len(tok))
    symbols = []  # (placeholder name, value) of every SymInt input of every graph

    def backend(gm, example_inputs):
        names = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
        symbols.extend((k, int(x)) for k, x in zip(names, example_inputs) if isinstance(x, torch.SymInt))
        return gm.forward

    dc.compile_model(model, "layers", backend=backend)
    activate(model, SPECS[1])
    try:
        for rows, n in ((2, 23), (3, 31)):
            ids = torch.tensor([encode(tok, TEXTS[2], True)[:n]] * rows)
            with torch.inference_mode():
                static_generate(model, ids, torch.ones_like(ids), lambda t, _: torch.zeros(rows, dtype=torch.bool),
                                max_new=3, graphs=False)
    finally:
        deactivate(model)
    attributes = [k for k, _ in symbols if k.startswith("l_self_")]
    assert all("layer_idx" in k for k in attributes), attributes
    assert symbols  # graphs were compiled, with the prompt's sizes symbolic (so the check above saw inputs)


@pytest.mark.parametrize("mode", dc.MODES)
@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_outputs_and_texts_unchanged(tiny_llama, tok, spec, mode):
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
    dc.compile_model(model, mode, backend="eager")
    activate(model, spec)
    try:
        with torch.no_grad():
            got_logits = model(ids).logits
        got = generate(model, tok, rows, 12)
        loop = generate(model, tok, rows, 12, decode="loop")  # the static-cache loop, steps eager on a CPU
    finally:
        deactivate(model)
    torch.testing.assert_close(got_logits, want_logits, rtol=0, atol=1e-5)
    assert got == want and loop == want


def test_resolve_by_setting_and_device(tiny_llama):
    assert dc.resolve("auto", tiny_llama) is None  # a CPU model
    assert dc.resolve("layers", tiny_llama) == "layers"
    assert dc.resolve("blocks", tiny_llama) == "blocks"
    assert dc.resolve("off", tiny_llama) is None
    with pytest.raises(ValueError, match="compile must be"):
        dc.resolve("yes", tiny_llama)


def test_run_option_and_flag(tmp_path):
    from ropeshift.cli.main import build_parser
    from ropeshift.eval.runner import RunConfig

    base = dict(model="m", tasks=("passkey",), lengths=(512,), methods=(MethodSpec("rope"),), samples=1,
                out=tmp_path)
    assert RunConfig(**base).compile == "auto"
    with pytest.raises(ValueError, match="compile must be"):
        RunConfig(**base, compile="sometimes")
    for cmd in ("eval", "needle"):
        assert build_parser().parse_args([cmd, "--compile", "blocks"]).compile == "blocks"
        assert build_parser().parse_args([cmd]).compile == "auto"


# ---- CUDA: inductor, the CUDA-graph decode loop ----------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("mode", dc.MODES)
@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_cuda_compiled_model_keeps_graph_loop_texts(tiny_llama, tok, spec, mode):
    eager = copy.deepcopy(tiny_llama).cuda()
    compiled = copy.deepcopy(tiny_llama).cuda()
    assert dc.resolve("auto", compiled) == "layers"
    dc.compile_model(compiled, mode)
    rows = [encode(tok, t, True) for t in TEXTS]
    out = []
    for model in (eager, compiled):
        activate(model, spec)
        try:
            out.append([generate(model, tok, rows, budget) for budget in (1, 5, 24)])  # auto: the graph loop
        finally:
            deactivate(model)
    assert out[1] == out[0]
