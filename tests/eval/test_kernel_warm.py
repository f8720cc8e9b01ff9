"""The kernel warm-up helpers (``ropeshift.eval.kernel_warm``): which methods each helper gets, what one runs (every
method at every length of the run, on a one-layer copy of the model, leaving no method applied), and that they start
only on CUDA and never fail a run.

CPU: the helpers' work runs here on the CPU attention path (the kernels it compiles on a GPU are not compiled here).
Run: pytest tests/eval/test_kernel_warm.py -v
"""
from __future__ import annotations

import pytest

from ropeshift.eval import kernel_warm as kw
from ropeshift.eval.options import MethodSpec
from ropeshift.eval.runner import RunConfig

METHODS = (MethodSpec("rope"), MethodSpec("string", {"shift": 100, "window": 16}), MethodSpec("yarn", {"factor": 2.0}),
           MethodSpec("lm_infinite"), MethodSpec("rerope", {"window": 64}))


def _cfg(tmp_path, model="tiny", tasks=("passkey", "perplexity"), methods=METHODS):
    return RunConfig(model=model, tasks=tasks, lengths=(128, 256), methods=methods, samples=1, out=tmp_path)


def test_helpers_get_every_method_once_first_methods_first():
    labels = [m.label for m in METHODS]
    got = kw.shares(METHODS, 2)
    assert [[m.label for m in share] for share in got] == [labels[0::2], labels[1::2]]
    assert [share[0] for share in kw.shares(METHODS, 4)] == list(METHODS[:4])  # the run's first methods first
    assert sorted(m.label for share in kw.shares(METHODS, 4) for m in share) == sorted(labels)
    assert len(kw.shares(METHODS[:2], 4)) == 2 and kw.shares(METHODS, 0) == [list(METHODS)]


def test_a_helper_runs_each_method_at_each_length_and_kind_then_removes_it(tmp_path, tok, tiny_llama, monkeypatch):
    from ropeshift import describe
    from ropeshift.eval import warm_up as wu

    calls = []
    real = wu.warm_up

    def spy(model, tokenizer, kind, decode="auto", sizes=None):
        calls.append((describe(model)["method"], kind, sizes))
        return real(model, tokenizer, kind, decode, sizes)

    monkeypatch.setattr(wu, "warm_up", spy)
    seconds = kw.warm_methods(_cfg(tmp_path), METHODS[:2], tiny_llama)
    assert list(seconds) == ["rope", "string-shift100-window16"] and all(s > 0 for s in seconds.values())
    want = []
    for method in ("rope", "string"):  # each method active for its own calls, longest length first
        for length in (256, 128):
            want += [(method, "generation", (kw.ROWS, length, kw.MAX_NEW)),
                     (method, "generation", (kw.ROWS, length - 1, kw.MAX_NEW)),
                     (method, "likelihood", (kw.ROWS - 1, length, kw.MAX_NEW))]
    assert calls == want
    assert describe(tiny_llama)["method"] == "rope"  # nothing left applied
    calls.clear()
    kw.warm_methods(_cfg(tmp_path, tasks=("passkey",)), METHODS[1:2], tiny_llama)
    assert {k for _, k, _ in calls} == {"generation"}  # no likelihood task, no likelihood warm-up


def test_the_helpers_model_is_the_first_layer_of_the_models_config(tmp_path, tok, tiny_llama):
    tiny_llama.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    model = kw.model_for(str(tmp_path / "m"), "cpu")
    assert model.config.num_hidden_layers == 1 and len(model.model.layers) == 1
    for key in ("hidden_size", "num_attention_heads", "num_key_value_heads", "vocab_size"):
        assert getattr(model.config, key) == getattr(tiny_llama.config, key)
    assert model.config.rope_parameters == tiny_llama.config.rope_parameters
    assert not model.training


def test_helpers_start_on_cuda_only_and_never_fail_the_run(tmp_path, monkeypatch, capsys):
    cfg = _cfg(tmp_path)
    monkeypatch.delenv(kw.ENV, raising=False)
    assert kw.start(cfg, "cpu") == []
    monkeypatch.setenv(kw.ENV, "0")
    assert kw.start(cfg, "cuda") == []
    monkeypatch.delenv(kw.ENV)
    import torch

    if torch.cuda.is_available():
        pytest.skip("a machine without CUDA: the helpers return at once")
    procs = kw.start(cfg, None, helpers=2)   # no CUDA here: each helper sees none and returns
    assert len(procs) == 2
    kw.stop(procs, wait_s=60)
    assert all(p.exitcode == 0 for p in procs)


def test_a_failing_helper_says_so_and_exits_cleanly(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(kw, "model_for", lambda name, device, dtype=None: (_ for _ in ()).throw(OSError("no such model")))
    kw._helper(_cfg(tmp_path), METHODS[:1], "cuda:0")  # in this process: it must not raise
    assert "kernel warm-up helper failed (OSError: no such model)" in capsys.readouterr().err


def test_the_compile_log_names_ropeshift_kernels_only_and_never_raises(monkeypatch, capsys):
    knobs = pytest.importorskip("triton").knobs
    from types import SimpleNamespace as NS

    def ours(Q, N, BLOCK, RULE):  # a stand-in for a @triton.jit function of ropeshift's
        pass

    ours.__module__ = "ropeshift.kernels._prefill"
    jit = NS(fn=ours, arg_names=["Q", "N", "BLOCK", "RULE"])
    src = NS(fn=jit, constants={(2,): 64, (3,): 1}, attrs={(1,): [["tt.divisibility", 16]]})
    times = NS(total=2_500_000)
    assert kw.compile_line(src, times) == "ours 2.50 s {'BLOCK': 64, 'RULE': 1} div16=['N']"
    other = NS(fn=NS(fn=print, arg_names=[]), constants={}, attrs={})
    assert kw.compile_line(other, times) is None  # inductor's and other libraries' kernels: not ours to list

    earlier = []
    set_before = lambda *a, **k: earlier.append(k)  # noqa: E731
    monkeypatch.setattr(knobs.compilation, "listener", set_before)
    monkeypatch.delenv(kw.LOG_ENV, raising=False)
    kw.log_compiles("rank 1")
    assert knobs.compilation.listener is set_before and not earlier  # off without the variable: unchanged
    monkeypatch.setenv(kw.LOG_ENV, "1")
    kw.log_compiles("rank 1")
    listener = knobs.compilation.listener
    listener(src=src, metadata={}, metadata_group={}, times=times, cache_hit=False)
    listener(src=src, metadata={}, metadata_group={}, times=times, cache_hit=True)  # found on disk: not listed
    listener(src=NS(), metadata={}, metadata_group={}, times=None, cache_hit=False)  # odd input: no error
    err = capsys.readouterr().err
    assert err.count("kernel compiled (rank 1, pid") == 1 and ", at " in err and "ours 2.50 s" in err
    assert len(earlier) == 3  # the listener set before is still called
