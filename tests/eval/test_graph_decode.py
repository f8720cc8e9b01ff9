"""The static-cache decode loop (``ropeshift.eval.graph_decode``) gives ``model.generate``'s texts: left padding,
per-row budgets, per-row stops, EOS; rope (the model's SDPA), plain and string, fp32. On CPU the loop runs its
steps eagerly; the ``gpu`` tests capture and replay the CUDA graph and compare it with the eager loop and with
``model.generate``.

Run: pytest tests/eval/test_graph_decode.py -v      (GPU: the same; the gpu-marked tests skip without CUDA)
"""
from __future__ import annotations

import pytest
import torch

from ropeshift.eval.generation import AnswerEnd, activate, deactivate, generate
from ropeshift.eval.options import MethodSpec
from ropeshift.eval.prompts import encode

MAX_NEW = 24
SPECS = [MethodSpec("rope", {}), MethodSpec("plain", {}), MethodSpec("string", {"shift": 8, "window": 2})]
TEXTS = ["The grass is green. The sky", "Here we go",
         "def f(x):\n    return the grass is green and the sky is blue, the sea", "a"]


@pytest.fixture(scope="module")
def rows(tok):
    return [encode(tok, t, True) for t in TEXTS]


def _cases(tok, rows):
    """(max_new_tokens, stop) pairs: one budget, per-row budgets, predicates (an answer end, a length, none)."""
    first = tok.decode(encode(tok, "green", False))
    return [
        (MAX_NEW, None),
        ([3, MAX_NEW, 7, 12], None),
        ([MAX_NEW, 9, MAX_NEW, 5], [AnswerEnd([first]), lambda t: len(t) >= 10, None, lambda t: " " in t]),
        (MAX_NEW, [lambda t: True] * len(rows)),  # every row ends at its first token
        (1, None),  # the prefill's token is the whole answer
    ]


@pytest.mark.parametrize("model", SPECS, indirect=True, ids=[s.name for s in SPECS])
def test_loop_texts_equal_generate(model, tok, rows):
    for budget, stop in _cases(tok, rows):
        want = generate(model, tok, rows, budget, stop=stop, decode="generate")
        got = generate(model, tok, rows, budget, stop=stop, decode="loop")
        assert got == want, (budget, stop)


@pytest.mark.parametrize("model", SPECS[1:2], indirect=True, ids=["plain"])
def test_loop_stops_when_every_row_has_ended(model, tok, rows):
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        generate(model, tok, rows, MAX_NEW, stop=[lambda t: True] * len(rows), decode="loop")
        assert len(calls) == 1  # the prefill's token ends every row: no decode step
        calls.clear()
        generate(model, tok, rows, MAX_NEW, stop=[lambda t: len(t) >= 1, None, lambda t: True, lambda t: True],
                 decode="loop")
        assert 1 < len(calls) <= MAX_NEW
    finally:
        handle.remove()


@pytest.mark.parametrize("model", SPECS[1:2], indirect=True, ids=["plain"])
def test_loop_reports_its_phases(model, tok, rows):
    """``stats``: the path, one prefill, the decode forwards counted (the prefill's token is step 1, so a batch that
    runs to its budget makes MAX_NEW - 1 decode forwards) and each phase's seconds."""
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        stats = {}
        generate(model, tok, rows, MAX_NEW, decode="loop", stats=stats)
        assert stats["decode"] == "loop" and stats["steps"] == MAX_NEW == len(calls)
        assert stats["decode_steps"] == MAX_NEW - 1  # eager: every forward after the prefill is a loop step
        assert stats["compactions"] == 0 and stats["capture_s"] == 0.0  # eager: nothing captured
        assert stats["prefill_s"] > 0 and stats["decode_s"] > 0 and 0 <= stats["check_s"]
        stats = {}
        generate(model, tok, rows, MAX_NEW, stop=[lambda t: True] * len(rows), decode="loop", stats=stats)
        assert stats["steps"] == 1 and stats["decode_s"] == 0.0 and stats["decode_steps"] == 0
        stats = {}
        generate(model, tok, rows, 5, decode="generate", stats=stats)
        assert stats["decode"] == "generate" and stats["steps"] == 5 and stats["generate_s"] > 0
    finally:
        handle.remove()


@pytest.mark.parametrize("model", SPECS[1:3], indirect=True, ids=["plain", "string"])
def test_ended_rows_stop_reading_their_keys(model, tok, rows, monkeypatch):
    """A row that has ended attends to its own new keys only (its mask zeroed below the next slot), and no row's
    text changes: the texts with and without retiring are equal, and each retired row's later steps see none of
    its prompt's keys, only the keys written since it ended."""
    import ropeshift.attention.interface as I
    from ropeshift.eval.graph_decode import RETIRE_ENV

    stop = [lambda t: len(t) >= 1, None, lambda t: len(t) >= 6, None]  # rows 0 and 2 end early (a text of at least
    # 1 or 6 characters), 1 and 3 run on
    monkeypatch.setenv(RETIRE_ENV, "0")
    want, off = generate(model, tok, rows, MAX_NEW, stop=stop, decode="loop"), {}
    generate(model, tok, rows, MAX_NEW, stop=stop, decode="loop", stats=off)
    assert off["retired"] == 0
    monkeypatch.delenv(RETIRE_ENV)
    seen, attend = [], I.attend
    monkeypatch.setattr(I, "attend", lambda *a, **k: (seen.append(k["kvalid"].sum(1).tolist()), attend(*a, **k))[1])
    on = {}
    got = generate(model, tok, rows, MAX_NEW, stop=stop, decode="loop", stats=on)
    assert got == want and on["retired"] == 2
    # the batch's last step (it writes the key of token MAX_NEW - 1): rows 1 and 3 read their prompt and every new
    # key; row 0 (ended at token 1) and row 2 (a few tokens later) read no prompt key, only the keys written since
    last = seen[-1]
    assert last[1::2] == [len(rows[1]) + MAX_NEW - 1, len(rows[3]) + MAX_NEW - 1]
    assert last[0] == MAX_NEW - 1 and 0 < last[2] < MAX_NEW - 1


def test_cpu_default_stays_model_generate(tiny_llama, tok, rows, monkeypatch):
    import ropeshift.eval.graph_decode as G

    monkeypatch.setattr(G, "static_generate", lambda *a, **k: pytest.fail("the loop ran on CPU by default"))
    generate(tiny_llama, tok, rows, 4)
    with pytest.raises(ValueError, match="decode must be"):
        generate(tiny_llama, tok, rows, 4, decode="graphs")


def test_graph_reason_names_what_is_missing(tiny_llama, monkeypatch):
    from ropeshift.eval.graph_decode import GRAPHS_ENV, graph_decode_reason

    assert "CUDA" in graph_decode_reason(tiny_llama)
    monkeypatch.setenv(GRAPHS_ENV, "0")
    assert graph_decode_reason(tiny_llama) == f"{GRAPHS_ENV}=0"


# ---- CUDA: capture and replay -------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
GPU_SPECS = [MethodSpec("plain", {}), MethodSpec("string", {"shift": 8, "window": 2}),
             MethodSpec("self_extend", {"group_size": 3, "window": 6}), MethodSpec("dca", {"chunk_size": 9,
                                                                                          "local_window": 2})]


@pytest.fixture(scope="module")
def cuda_llama(tiny_llama):
    import copy

    return copy.deepcopy(tiny_llama).cuda()


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("spec", GPU_SPECS, ids=[s.name for s in GPU_SPECS])
def test_cuda_graph_loop_equals_generate(cuda_llama, tok, rows, spec):
    from ropeshift.eval.graph_decode import graph_decode_reason

    activate(cuda_llama, spec)
    try:
        assert graph_decode_reason(cuda_llama) is None
        for budget, stop in _cases(tok, rows):
            want = generate(cuda_llama, tok, rows, budget, stop=stop, decode="generate")
            got = generate(cuda_llama, tok, rows, budget, stop=stop)  # auto: the graph loop
            assert got == want, (spec.name, budget, stop)
    finally:
        deactivate(cuda_llama)


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_replay_equals_eager_steps(cuda_llama, tok, rows):
    """The captured step replayed gives the eager steps' tokens, token for token (same kernels, same shapes)."""
    from ropeshift.eval.generation import _row_stopper, left_pad
    from ropeshift.eval.graph_decode import static_generate

    activate(cuda_llama, MethodSpec("string", {"shift": 8, "window": 2}))
    try:
        ids, mask = left_pad(rows, tok.pad_token_id)
        out = []
        for graphs in (False, True):
            stopper = _row_stopper(tok, 0, [None] * len(rows), set(), [MAX_NEW] * len(rows))
            out.append(static_generate(cuda_llama, ids.cuda(), mask.cuda(), stopper, max_new=MAX_NEW, graphs=graphs))
        assert out[0].shape == (len(rows), MAX_NEW) and torch.equal(out[0], out[1])
    finally:
        deactivate(cuda_llama)


@pytest.mark.gpu
@needs_cuda
def test_cuda_run_merges_answer_budgets_with_the_same_records(cuda_llama, tok, tmp_path, monkeypatch):
    """On CUDA with retire on, the runner batches passkey (6 new tokens) and needle (24) together
    (``batching.decode_bucket`` merged); every record equals a run with retire off (power-of-4 buckets, ended rows
    read their keys): predictions and scores, fp32."""
    from ropeshift.eval.batch_log import read_batches
    from ropeshift.eval.graph_decode import RETIRE_ENV, retire_possible
    from ropeshift.eval.records import read_cell
    from ropeshift.eval.runner import RunConfig, run
    from ropeshift.eval.tasks import TaskOptions

    assert retire_possible(cuda_llama)
    method = MethodSpec("string", {"shift": 100, "window": 16})

    def study(out):
        cfg = RunConfig(model="tiny", tasks=("needle", "passkey"), lengths=(256,), samples=4, out=out, batch_size=3,
                        methods=(method,), options=TaskOptions(depths=4))
        run(cfg, cuda_llama, tok, progress=False)
        lines = [b for b in read_batches(out) if b["kind"] != "startup"]
        assert all(b["peak_gib"] > 0 and b["reserved_gib"] > 0 and b["free_gib"] > 0 for b in lines)  # CUDA memory
        return [b["tasks"] for b in lines]

    # batches of at most 3, none of 1 row (batching.fill_cuts), longest budget first where merged
    assert study(tmp_path / "merged") == [{"needle": 3}, {"needle": 1, "passkey": 2}, {"passkey": 2}]
    monkeypatch.setenv(RETIRE_ENV, "0")
    assert study(tmp_path / "pow4") == [{"needle": 2}, {"needle": 2}, {"passkey": 2}, {"passkey": 2}]
    for task in ("needle", "passkey"):
        got = {r.index: (r.prediction, r.score) for r in read_cell(tmp_path / "merged", "tiny", task, method.label, 256)}
        want = {r.index: (r.prediction, r.score) for r in read_cell(tmp_path / "pow4", "tiny", task, method.label, 256)}
        assert got == want and len(got) == 4
