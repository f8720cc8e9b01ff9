"""The decode loop leaves no allocation behind (``ropeshift.eval.graph_decode.blas_workspaces_dropped``).

PyTorch keeps a cuBLAS workspace per (handle, stream) for the life of the process (32 MiB each on Hopper); a loop
that warmed up on a new side stream per call kept one more per call, which is what made the end-to-end peak of
benchmarks/bench_generate.py grow by ~64 MiB per method measured (benchmarks/RESULTS.md, issue 9). CPU: the
workspaces are dropped on entry and exit of the warm-up and the capture; CUDA (``gpu``): repeated calls leave
``memory_allocated`` where it was.

Run: pytest tests/eval/test_graph_decode_memory.py -v
"""
from __future__ import annotations

import pytest
import torch

from ropeshift.eval import graph_decode as G


def test_workspaces_dropped_on_entry_and_exit(monkeypatch):
    calls = []
    monkeypatch.setattr(torch._C, "_cuda_clearCublasWorkspaces", lambda: calls.append("clear"), raising=False)
    with G.blas_workspaces_dropped():
        calls.append("body")
    assert calls == ["clear", "body", "clear"]
    calls.clear()
    with pytest.raises(RuntimeError), G.blas_workspaces_dropped():
        raise RuntimeError("a failed capture still drops them")
    assert calls == ["clear", "clear"]


def test_no_op_without_cuda_bindings(monkeypatch):
    monkeypatch.delattr(torch._C, "_cuda_clearCublasWorkspaces", raising=False)
    with G.blas_workspaces_dropped():
        pass


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graph_loop_leaves_no_allocation(tiny_llama, tok):
    """Three captured loops in a row leave allocated memory at most where an eager forward left it (its main-stream
    workspace; the loop drops the workspaces it made) and the same after each."""
    import copy

    from ropeshift.eval.generation import activate, deactivate, left_pad
    from ropeshift.eval.options import MethodSpec
    from ropeshift.eval.prompts import encode

    model = copy.deepcopy(tiny_llama).cuda()
    activate(model, MethodSpec("string", {"shift": 8, "window": 2}))
    try:
        assert G.graph_decode_reason(model) is None
        ids, mask = left_pad([encode(tok, "The grass is green. The sky", True)], tok.pad_token_id)
        never = lambda toks, _: torch.zeros(toks.shape[0], dtype=torch.bool)  # noqa: E731
        with torch.inference_mode():  # an eager forward on the main stream: its workspace, the baseline
            model(input_ids=ids.cuda(), attention_mask=mask.cuda())
        torch.cuda.synchronize()
        baseline = torch.cuda.memory_allocated()
        after = []
        for _ in range(3):
            G.static_generate(model, ids.cuda(), mask.cuda(), never, max_new=8, graphs=True, check_every=8)
            torch.cuda.synchronize()
            after.append(torch.cuda.memory_allocated())
        # no workspace of the side stream (nor anything else) stays behind: none above the baseline, none growing
        assert max(after) <= baseline and after[1] == after[0] and after[2] == after[0], (baseline, after)
    finally:
        deactivate(model)
