"""The warm-up before the evaluation loop (``ropeshift.eval.warm_up``): where it runs, that it runs every row
once and leaves the model as it found it. The compile it saves is measured on the GPU (benchmarks/RESULTS.md).

Run: pytest tests/eval/test_warm_up.py -v
"""
from __future__ import annotations

from ropeshift.eval.generation import generate
from ropeshift.eval.options import MethodSpec
from ropeshift.eval.prompts import encode
from ropeshift.eval.warm_up import WARM_ENV, enabled, warm_up


def test_warm_up_only_when_asked_with_compiled_layers_on_cuda(tiny_llama, monkeypatch):
    import copy

    import torch

    cuda_ok = torch.cuda.is_available()
    assert not enabled(tiny_llama, "layers")  # off by default
    monkeypatch.setenv(WARM_ENV, "1")
    assert not enabled(tiny_llama, "layers")  # a CPU model: nothing is compiled, nothing to warm
    assert not enabled(tiny_llama, None)
    if cuda_ok:
        assert enabled(copy.deepcopy(tiny_llama).cuda(), "layers")


def test_warm_up_runs_every_row_and_leaves_the_model_unpatched(tiny_llama, tok):
    rows = [encode(tok, "The grass is green. The sky", True)]
    before = generate(tiny_llama, tok, rows, 6)
    methods = (MethodSpec("rope"), MethodSpec("string", {"shift": 40, "window": 8}), MethodSpec("pi", {"factor": 2.0}))
    got = warm_up(tiny_llama, tok, methods, 96, plain_attention="ropeshift")
    assert got["methods"] == 3 and got["warm_up_s"] > 0
    assert getattr(tiny_llama.config, "_attn_implementation", None) != "ropeshift"
    assert generate(tiny_llama, tok, rows, 6) == before
