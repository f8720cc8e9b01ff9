"""The compile warm-up of a waiting rank (``ropeshift.eval.warm_up``): its batch's sizes bind nothing, it compiles
the graphs that later batches of any method and shape reuse (generation and likelihood), and the runner runs it on
the ranks that wait for rank 0's prompts, for the kind each starts with.

CPU: dynamo's trace with a counting backend (no C++ toolchain needed), as in test_dense_compile.py.
Run: pytest tests/eval/test_warm_up.py -v
"""
from __future__ import annotations

import contextlib
import copy

import pytest
import torch

from ropeshift.eval import dense_compile as dc
from ropeshift.eval import warm_up as wu
from ropeshift.eval.generation import activate, deactivate, generate
from ropeshift.eval.options import MethodSpec
from ropeshift.eval.records import GENERATION, LIKELIHOOD

SPECS = {"rope": MethodSpec("rope"), "string": MethodSpec("string", {"shift": 8, "window": 2}),
         "yarn": MethodSpec("yarn", {"factor": 2.0})}


@pytest.fixture(autouse=True)
def _dynamo_config():
    """compile_model("layers") sets a process-wide dynamo setting: restored after each test (as in
    test_dense_compile.py)."""
    with torch._dynamo.config.patch(allow_unspec_int_on_nn_module=torch._dynamo.config.allow_unspec_int_on_nn_module), \
            torch.compiler.config.patch(dynamic_sources=torch.compiler.config.dynamic_sources):
        yield


def test_batch_sizes_differ_from_each_other_and_the_config():
    """The config's integers (nested ones too) are never used: 5, 6 and 37 are taken here, so are 42 = 37 + 5."""
    from types import SimpleNamespace

    config = SimpleNamespace(to_dict=lambda: {"num_attention_heads": 5, "flag": True, "head_dim": 37,
                                              "rope_parameters": {"original_max_position_embeddings": 42},
                                              "layer_types": [6, 6], "eos_token_id": [4, 7]})
    taken = wu.config_ints(config)
    assert taken == {4, 5, 6, 7, 37, 42}   # True is not an integer here
    rows, tokens, max_new = wu.batch_sizes(config)
    sizes = {rows, tokens, max_new, tokens + max_new}
    assert len(sizes) == 4 and not sizes & taken
    assert (rows, tokens) == (8, 38) and max_new >= wu.DECODE_STEPS


def test_unknown_kind_is_refused(tiny_llama, tok):
    with pytest.raises(ValueError, match="kind must be one of"):
        wu.warm_up(tiny_llama, tok, "scoring")


@contextlib.contextmanager
def _compiled_under_string(base):
    """``(model, graphs)``: a copy of ``base`` whose layers are compiled by a backend that records each traced
    graph in ``graphs``, with STRING active for the duration."""
    torch._dynamo.reset()
    model = copy.deepcopy(base)
    graphs = []
    dc.compile_model(model, "layers", backend=lambda gm, ex: graphs.append(gm) or gm.forward)
    activate(model, SPECS["string"], None, "ropeshift")
    try:
        yield model, graphs
    finally:
        deactivate(model)


def test_later_batches_of_any_method_and_shape_compile_nothing(tiny_llama, tok):
    """After one warm-up per kind (under STRING), generation (the static-cache loop) and likelihood batches of other
    methods, row counts and lengths trace no new graph; texts equal the uncompiled model's."""
    with _compiled_under_string(tiny_llama) as (model, graphs):
        assert wu.warm_up(model, tok, GENERATION, decode="loop") > 0
        n_gen = len(graphs)
        wu.warm_up(model, tok, LIKELIHOOD)
    assert n_gen > 0 and len(graphs) > n_gen

    def batch(m, name, rows, length, new):
        ids = [[(i * 31 + j * 17) % 200 + 3 for j in range(length - 3 * (i % 2))] for i in range(rows)]
        activate(m, SPECS[name], None, "ropeshift")
        try:
            texts = generate(m, tok, ids, new, decode="loop")
            with torch.inference_mode():
                nll = m(input_ids=torch.tensor([r[:length - 3] for r in ids]), logits_to_keep=5, use_cache=False).logits
        finally:
            deactivate(m)
        return texts, nll

    before = len(graphs)
    for name, rows, length, new in (("rope", 2, 40, 6), ("string", 6, 90, 9), ("yarn", 3, 64, 12)):
        texts, logits = batch(model, name, rows, length, new)
        want_texts, want_logits = batch(tiny_llama, name, rows, length, new)
        assert texts == want_texts
        torch.testing.assert_close(logits, want_logits)
    assert len(graphs) == before


def test_a_warm_up_without_the_tokenizer_leaves_nothing_to_compile(tiny_llama, tok):
    """``warm_up(model, None, ...)`` (a rank that has its model before rank 0's tokenizer, ``launch.run_rank``): the
    model's pad and EOS ids (``SpecialIds``) stand in, and a later batch with the real tokenizer traces no graph."""
    ids = wu.SpecialIds.of(tiny_llama)
    assert (ids.pad_token_id, ids.eos_token_id) == (0, 2) and ids.decode([5, 6], skip_special_tokens=True) == ""
    with _compiled_under_string(tiny_llama) as (model, graphs):
        wu.warm_up(model, None, GENERATION, decode="loop")
        traced = len(graphs)
        rows = [[(i * 13 + j * 5) % 200 + 3 for j in range(50 + i)] for i in range(3)]
        texts = generate(model, tok, rows, 7, decode="loop")
    assert traced > 0 and len(graphs) == traced and len(texts) == 3


@pytest.mark.parametrize("rank,world,tasks,kind", [
    (1, 2, ("passkey",), GENERATION),
    (1, 2, ("passkey", "perplexity"), LIKELIHOOD),      # the last rank starts on likelihood
    (1, 3, ("passkey", "perplexity"), GENERATION),
    (2, 3, ("passkey", "perplexity"), LIKELIHOOD),
])
def test_runner_warms_up_a_waiting_rank_for_its_first_kind(tmp_path, tok, tiny_llama, monkeypatch, rank, world,
                                                           tasks, kind):
    """``runner.run`` on a rank other than 0 of a compiled multi-rank run: the layers compiled once, one warm-up
    of the kind ``claim_queues`` starts that rank on, before it takes rank 0's plan (after which its prompts are read),
    under the run's second method, deactivated after; no eager lead; the start-up log has a warm-up phase."""
    from ropeshift.eval import parallel, runner
    from ropeshift.eval.batch_log import read_batches
    from ropeshift.eval.parallel import Ranks

    events = []
    monkeypatch.setattr(dc, "compile_model", lambda model, mode: events.append(("compile", mode)))
    monkeypatch.setattr(dc, "eager_lead", lambda *a: pytest.fail("a warmed-up rank runs no eager lead"))
    monkeypatch.setattr(wu, "warm_up", lambda model, tok_, k: events.append(("warm", k)) or 0.1)
    monkeypatch.setattr(parallel, "barrier", lambda ranks: events.append(("barrier",)))

    def take(ranks):  # rank 0's plan: every sample of every method
        events.append(("plan",))
        work = runner.plan_work(cfg, runner.prepare_samples(cfg, tok, progress=False))
        return {"todo": [(m.label, t, n, [s.index for s in todo]) for m, t, n, todo in work], "joins": {},
                "run_id": "run"}

    monkeypatch.setattr(parallel, "take", take)
    monkeypatch.setattr(parallel, "claims", lambda ranks, folder, sizes, first: (
        (q, i) for q in range(len(sizes)) for i in range(sizes[q])))   # this rank alone takes every item
    methods = (MethodSpec("rope"), MethodSpec("string", {"shift": 100, "window": 16}))
    cfg = runner.RunConfig(model="tiny", tasks=tasks, lengths=(256,), methods=methods, samples=2, out=tmp_path,
                           batch_size=2, compile="layers")
    runner.run(cfg, tiny_llama, tok, progress=False, ranks=Ranks(rank=rank, world=world))
    assert [e[:2] for e in events[:3]] == [("compile", "layers"), ("warm", kind), ("plan",)]
    startup = [b for b in read_batches(tmp_path) if b["kind"] == "startup"]
    assert startup and "warm-up" in startup[0]["phases"]

    events.clear()
    monkeypatch.setenv(wu.ENV, "0")     # off: no warm-up
    monkeypatch.setattr(dc, "eager_lead", lambda *a: 0)
    runner.run(cfg, tiny_llama, tok, progress=False, ranks=Ranks(rank=rank, world=world))
    assert not any(e[0] == "warm" for e in events)


def test_warm_up_runs_under_the_second_method_and_deactivates(tiny_llama, tok, monkeypatch):
    from ropeshift import describe
    from ropeshift.eval import runner
    from ropeshift.eval.parallel import Ranks

    seen = []
    monkeypatch.setattr(wu, "warm_up", lambda model, tok_, kind: seen.append((kind, describe(model)["method"])))
    methods = (MethodSpec("rope"), MethodSpec("string", {"shift": 100, "window": 16}))
    cfg = runner.RunConfig(model="tiny", tasks=("passkey",), lengths=(256,), methods=methods, samples=1, out=".")
    wu.for_rank(cfg, tiny_llama, tok, Ranks(rank=1, world=2))
    assert seen == [(GENERATION, "string")] and describe(tiny_llama)["method"] == "rope"  # deactivated


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_warm_up_leaves_nothing_to_compile(tiny_llama, tok):
    """On CUDA with inductor: after the two warm-ups, generation batches (the captured decode loop) and likelihood
    forwards of other methods and shapes compile nothing more, and their texts equal the eager model's."""
    from ropeshift.eval.batch_log import compile_seconds

    torch._dynamo.reset()
    eager = copy.deepcopy(tiny_llama).cuda()
    model = copy.deepcopy(tiny_llama).cuda()
    dc.compile_model(model, "layers")
    activate(model, SPECS["string"], None, "ropeshift")
    try:
        for kind in (GENERATION, LIKELIHOOD):
            wu.warm_up(model, tok, kind)
    finally:
        deactivate(model)
    spent = compile_seconds()
    assert spent > 0
    for name, rows, length, new in (("rope", 2, 40, 6), ("string", 6, 90, 9), ("yarn", 3, 64, 12)):
        ids = [[(i * 31 + j * 17) % 200 + 3 for j in range(length - 3 * (i % 2))] for i in range(rows)]
        out = []
        for m in (eager, model):
            activate(m, SPECS[name], None, "ropeshift")
            try:
                out.append(generate(m, tok, ids, new))
                with torch.inference_mode():
                    m(input_ids=torch.tensor([r[:length - 3] for r in ids], device="cuda"), logits_to_keep=5,
                      use_cache=False)
            finally:
                deactivate(m)
        assert out[1] == out[0]
    assert compile_seconds() == spent


def test_check_script_smoke(benchmarks_path, capsys):
    """benchmarks/check_warm_up.py on the CPU (tiny shape, dynamo's trace only): the warm-ups compile, the
    study-like batches after them compile nothing."""
    import check_warm_up

    assert check_warm_up.main(["--device", "cpu", "--tiny", "--backend", "eager"]) == 0
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| warm-up") or line.startswith("| generation") or line.startswith("| likelihood")]
    assert len(rows) == 6
    assert all(float(r[2]) > 0 for r in rows[:2]) and all(float(r[2]) == 0 for r in rows[2:])
