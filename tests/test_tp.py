"""Tensor parallelism: a model loaded with transformers' ``tp_plan="auto"`` under ``torchrun`` takes every method.

One ``torchrun --standalone --nproc-per-node 2`` run (CPU, gloo: transformers picks the backend from the device)
loads a tiny random Llama and Qwen2 (4 query heads, 2 KV heads: GQA) with ``ropeshift.load_model(folder,
tp_plan="auto")``, applies rope
(unpatched), STRING and two key-remapping baselines, and saves per rank: the prefill logits of a left-padded batch,
the logits of 20 greedy decode steps through ``generate`` (KV cache) and the head counts each attention call saw.
The test compares them with the same models in this process, without TP.

This file is also the worker script: ``python -m torch.distributed.run ... tests/test_tp.py FOLDER OUT``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ARCHS = ("llama", "qwen2")
METHODS = {  # settings whose regions all fall inside ~40-60 token rows
    "rope": {},
    "string": dict(shift=16, window=4, train_length=64),
    "self_extend": dict(group_size=3, window=9),
    "dca": dict(chunk_size=12, local_window=3),
}
DECODE_STEPS = 20
PROMPT_LENGTHS = (40, 33)  # two rows, the second left-padded


def _prompts(vocab: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(7)
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in PROMPT_LENGTHS]


def run_methods(folder: Path, tp_plan: str | None) -> dict:
    """{arch: {method: {"prefill": [b, l, V], "decode": [steps, b, V], "tokens": [b, steps], "heads": set}}}."""
    import ropeshift
    import ropeshift.attention.interface as interface
    from ropeshift.eval.generation import left_pad

    heads: set[tuple[int, int]] = set()
    attend = interface.attend

    def spy(impl, q, k, *args, **kw):  # records the head counts every attention call sees
        heads.add((q.shape[1], k.shape[1]))
        return attend(impl, q, k, *args, **kw)

    interface.attend = spy
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend (the ranks share the cores)
    out: dict = {}
    try:
        for arch in ARCHS:
            model, _ = ropeshift.load_model(str(folder / arch), dtype=torch.float32, device="cpu",
                                            tp_plan=tp_plan, progress=False)
            ids, mask = left_pad(_prompts(model.config.vocab_size), pad_id=0)
            out[arch] = {}
            for method, params in METHODS.items():
                heads.clear()
                ropeshift.apply(model, method, **params)
                with torch.inference_mode():
                    prefill = model(input_ids=ids, attention_mask=mask).logits
                    gen = model.generate(
                        input_ids=ids, attention_mask=mask, max_new_tokens=DECODE_STEPS + 1,
                        min_new_tokens=DECODE_STEPS + 1, do_sample=False, pad_token_id=0,
                        output_logits=True, return_dict_in_generate=True,
                    )
                out[arch][method] = {
                    "prefill": prefill.float(), "decode": torch.stack(gen.logits[1:]).float(),
                    "tokens": gen.sequences[:, ids.shape[1]:], "heads": set(heads),
                }
                ropeshift.remove(model)
    finally:
        interface.attend = attend
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory) -> Path:
    from .test_loader import _save_with_tokenizer
    from .tiny_models import tiny_model

    folder = tmp_path_factory.mktemp("tp_models")
    for arch in ARCHS:
        _save_with_tokenizer(tiny_model(arch), folder / arch)
    return folder


@pytest.fixture(scope="module")
def results(saved_models, tmp_path_factory) -> tuple[list[dict], dict]:
    """(each TP rank's results, the single-process results): this file under torchrun with 2 CPU ranks, and
    ``run_methods`` here while it runs."""
    out = tmp_path_factory.mktemp("tp_out")
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]), "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           __file__, str(saved_models), str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        single = run_methods(saved_models, tp_plan=None)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{stdout[-3000:]}\n{stderr[-6000:]}"
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)], single


@pytest.fixture(scope="module")
def tp_results(results) -> list[dict]:
    return results[0]


@pytest.fixture(scope="module")
def single_results(results) -> dict:
    return results[1]


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("arch", ARCHS)
def test_tp_logits_equal_single_process(tp_results, single_results, arch, method):
    ref = single_results[arch][method]
    for rank, res in enumerate(tp_results):
        got = res[arch][method]
        torch.testing.assert_close(got["prefill"], ref["prefill"], msg=lambda m: f"rank {rank} prefill: {m}")
        assert got["decode"].shape[0] == DECODE_STEPS
        torch.testing.assert_close(got["decode"], ref["decode"], msg=lambda m: f"rank {rank} decode: {m}")
        assert torch.equal(got["tokens"], ref["tokens"]), f"rank {rank}: greedy tokens differ"


@pytest.mark.parametrize("arch", ARCHS)
def test_each_rank_attends_over_its_local_heads(tp_results, single_results, arch):
    assert single_results[arch]["string"]["heads"] == {(4, 2)}  # 4 query heads, 2 KV heads
    for res in tp_results:
        for method in METHODS:
            if method != "rope":  # rope runs sdpa, not the ropeshift attention function
                assert res[arch][method]["heads"] == {(2, 1)}, (arch, method)


def test_methods_change_the_logits(single_results):
    """The comparison is meaningful: every method moves the logits away from rope's at these lengths."""
    for arch in ARCHS:
        rope = single_results[arch]["rope"]["prefill"]
        for method in METHODS:
            if method != "rope":
                assert (single_results[arch][method]["prefill"] - rope).abs().max() > 1e-3, (arch, method)


def _worker(folder: str, out: str) -> None:
    results = run_methods(Path(folder), tp_plan="auto")
    rank = torch.distributed.get_rank()
    torch.save(results, Path(out) / f"rank{rank}.pt")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    _worker(*sys.argv[1:3])
