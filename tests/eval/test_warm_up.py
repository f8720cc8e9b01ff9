"""The start-up warm-up (``eval.warm_up``): it runs the loop's calls with the run's first method, leaves the model
as it found it, is taken by the runner before the prompts are collected (with a "warm-up" start-up phase), and
changes no record. Run: pytest tests/eval/test_warm_up.py -v"""
from __future__ import annotations

import pytest
import torch

from ropeshift.eval import warm_up as W
from ropeshift.eval.generation import generate
from ropeshift.eval.options import MethodSpec
from ropeshift.eval.runner import RunConfig, run
from ropeshift.eval.tasks import TaskOptions


def _cfg(tmp_path, **kw):
    base = dict(model="tiny", tasks=("passkey", "perplexity"), lengths=(256,),
                methods=(MethodSpec("string", {"shift": 100, "window": 16}), MethodSpec("rope")), samples=2,
                out=tmp_path, batch_tokens=512, options=TaskOptions(depths=2))
    base.update(kw)
    return RunConfig(**base)


def test_wanted_on_cuda_only_and_off_by_env(tiny_llama, monkeypatch):
    assert not W.wanted(tiny_llama)  # a CPU model: nothing is compiled there
    if torch.cuda.is_available():
        m = tiny_llama.to("cuda")
        try:
            assert W.wanted(m)
            monkeypatch.setenv(W.WARM_ENV, "0")
            assert not W.wanted(m)
        finally:
            tiny_llama.to("cpu")


def test_warm_up_runs_both_calls_and_leaves_the_model_unpatched(tiny_llama, tok, tmp_path):
    """A generation (prompt forward with a mask, then one-token steps) and a likelihood forward (no mask,
    every position's logits) with the method applied; afterwards nothing is applied and generation is
    unchanged."""
    import ropeshift

    rows = [tok.encode("The grass is green. The sky"), tok.encode("Here we go")]
    before, plain = generate(tiny_llama, tok, rows, 8), ropeshift.describe(tiny_llama)
    calls = []

    def hook(module, args, kwargs, out):
        calls.append((kwargs["input_ids"].shape, kwargs.get("attention_mask") is None, out.logits.shape[1],
                      ropeshift.describe(module)["method"]))

    handle = tiny_llama.register_forward_hook(hook, with_kwargs=True)
    try:
        spent = W.warm_up(tiny_llama, tok, MethodSpec("string", {"shift": 100, "window": 16}), _cfg(tmp_path),
                          likelihood=True, decode="loop")
    finally:
        handle.remove()
    assert spent > 0
    assert {applied for *_, applied in calls} == {"string"}
    prefill, *steps, lik = calls
    assert prefill[0] == (2, max(W.ROWS)) and not prefill[1] and prefill[2] == 1
    assert len(steps) >= 3 and all(s[0] == (2, 1) for s in steps)  # decodes past graph_decode.WARMUP_STEPS
    assert lik[0] == (2, min(W.ROWS)) and lik[1] and lik[2] == min(W.ROWS)
    assert ropeshift.describe(tiny_llama) == plain
    assert generate(tiny_llama, tok, rows, 8) == before


def test_runner_warms_up_before_the_prompts_and_writes_the_same_records(tiny_llama, tok, tmp_path, monkeypatch):
    """With the warm-up taken (as on CUDA), the start-up log has its phase before "prompts", the warm-up got
    the run's first method and both kinds, and the records equal a run without it."""
    from ropeshift.eval.batch_log import read_batches
    from ropeshift.eval.records import iter_records

    seen = []
    real = W.warm_up

    def spy(model, tokenizer, method, cfg, **kw):
        seen.append((method.name, kw))
        return real(model, tokenizer, method, cfg, decode="loop", **kw)

    monkeypatch.setattr(W, "wanted", lambda model: True)
    monkeypatch.setattr(W, "warm_up", spy)
    assert run(_cfg(tmp_path / "warm"), tiny_llama, tok, progress=False) == 8
    assert seen == [("string", {"likelihood": True, "generation": True})]
    start = next(b for b in read_batches(tmp_path / "warm") if b["kind"] == "startup")
    phases = list(start["phases"])
    assert phases.index("warm-up") < phases.index("prompts")
    monkeypatch.setattr(W, "wanted", lambda model: False)
    assert run(_cfg(tmp_path / "cold"), tiny_llama, tok, progress=False) == 8
    assert "warm-up" not in next(b for b in read_batches(tmp_path / "cold") if b["kind"] == "startup")["phases"]
    key = lambda r: (r.task, r.method, r.index, r.prompt_hash, r.prediction, r.score)  # noqa: E731
    warm, cold = sorted(map(key, iter_records(tmp_path / "warm"))), sorted(map(key, iter_records(tmp_path / "cold")))
    assert warm == cold and len(warm) == 8


@pytest.mark.parametrize("kinds", [("passkey",), ("perplexity",)])
def test_only_the_runs_kinds_are_warmed(tiny_llama, tok, tmp_path, monkeypatch, kinds):
    seen = []
    monkeypatch.setattr(W, "wanted", lambda model: True)
    monkeypatch.setattr(W, "warm_up", lambda *a, **kw: seen.append(kw) or 0.0)
    run(_cfg(tmp_path, tasks=kinds), tiny_llama, tok, progress=False)
    assert seen == [{"likelihood": kinds == ("perplexity",), "generation": kinds == ("passkey",)}]
