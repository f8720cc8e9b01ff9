"""benchmarks/bench_generate.py's CPU smoke mode runs every method, with the settings bench_attention.py uses."""
import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, BENCH)
    try:
        import _settings
        import bench_generate

        yield _settings, bench_generate
    finally:
        sys.path.remove(BENCH)


@pytest.mark.parametrize("graphs", [True, False])  # static-cache loops; generate with the dynamic cache
def test_every_method_end_to_end_on_cpu(bench, graphs, capsys):
    settings, bench_generate = bench
    methods = [*settings.ALL_METHODS, "plain"] if graphs else ["string"]
    argv = ["--device", "cpu", "--tiny", "--layers", "1", "--lengths", "512", "--new-tokens", "3",
            "--sdpa-backends", "default", "--methods", ",".join(methods)] + (["--graphs"] if graphs else [])
    rows = bench_generate.main(argv)
    assert [r[1] for r in rows] == methods
    assert all(r[2] == "default" and r[3] is not None for r in rows)
    out = capsys.readouterr().out
    assert "failed" not in out and out.count("| 512 | ") == 2 * len(methods)  # streamed, then the summary


def test_one_source_of_method_settings(bench):
    settings, _ = bench
    sys.path.insert(0, BENCH)
    try:
        import bench_attention
    finally:
        sys.path.remove(BENCH)
    assert bench_attention.method_at is settings.method_at and bench_attention.ALL_METHODS is settings.ALL_METHODS
    m = settings.method_at("rerope_leaky", 32768)
    assert (m.name, m.window, m.leaky) == ("rerope", 4096, 16.0)


def test_table_rows_have_the_header_columns(bench):
    _, bench_generate = bench
    base = {"prefill_s": 0.3, "tok_s": 50.0, "peak_gib": 9.88, "peak_prefill_gib": 9.88, "peak_decode_gib": 6.3,
            "path": "generate static"}
    ours = dict(base, path="graph")
    old = {"prefill_s": 0.3, "tok_s": 50.0, "peak_gib": None, "path": "generate"}  # a row without the split
    header = bench_generate.HEADER.splitlines()
    for row in ((32768, "string", "default", base, ours), (512, "string", "-", None, old)):
        line = bench_generate._line(*row)
        assert line.count("|") == header[0].count("|") == header[1].count("|")
    assert bench_generate._line(32768, "string", "default", base, ours).endswith("| 9.88 / 9.88 | 6.30 / 6.30 |")


@pytest.mark.parametrize("who", ["sdpa", "string"])  # transformers' generate (static cache); static_generate
def test_phase_split_at_the_first_token(bench, who, monkeypatch):
    """Both loops mark the phase boundary right after the prompt's forward: a fake allocator (CUDA calls patched)
    peaks at 100 in the prompt's forward, 20 in the first decode step and 10 in later ones, so the prefill phase
    must read 100 and the decode phase 20 (a boundary one step late would give 10, none would give no split)."""
    _, bench_generate = bench
    import torch

    model = bench_generate.build_model(1, torch.device("cpu"), tiny=True)
    ids = torch.randint(1, 1000, (1, 512), generator=torch.Generator().manual_seed(0))  # STRING: 0.33 N > W = 128
    mem = {"peak": 0, "steps": 0}

    def forward(module, args, kwargs):
        n = kwargs["input_ids"].shape[1]
        mem["steps"] = 0 if n > 1 else mem["steps"] + 1
        mem["peak"] = max(mem["peak"], 100 if n > 1 else 20 if mem["steps"] == 1 else 10)

    class FakeCuda(bench_generate.PhasePeaks):
        def __init__(self, device):
            super().__init__(device)
            self.cuda = True

    monkeypatch.setattr(bench_generate, "PhasePeaks", FakeCuda)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: mem["peak"] * 2**30)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: mem.update(peak=0))
    handle = model.register_forward_pre_hook(forward, with_kwargs=True)
    try:
        if who == "sdpa":
            r = bench_generate.measure(model, ids, 4, graphs=True)
        else:
            r = bench_generate.measure_method(model, ids, 4, who, "auto", graphs=True)
    finally:
        handle.remove()
    assert (r["peak_prefill_gib"], r["peak_decode_gib"], r["peak_gib"]) == (100, 20, 100), r


def test_k1_variants_measure_each_method_off_and_on(bench, monkeypatch):
    """--k1-variants: every method twice in one run, '<m>' with ROPESHIFT_K1_CACHE=0 and '<m> [k1]' with 1 (the
    switch seen by the measurement), off first for the first method and on first for the next; the environment
    restored after."""
    _, bench_generate = bench
    from ropeshift.attention.far_cache import K1_ENV

    seen = []
    real = bench_generate.measure_method

    def spy(model, ids, new_tokens, name, impl, graphs=False):
        seen.append((name, os.environ.get(K1_ENV)))
        return real(model, ids, new_tokens, name, impl, graphs)

    monkeypatch.setattr(bench_generate, "measure_method", spy)
    monkeypatch.delenv(K1_ENV, raising=False)
    argv = ["--device", "cpu", "--tiny", "--layers", "1", "--lengths", "512", "--new-tokens", "3",
            "--sdpa-backends", "default", "--methods", "rerope,dca", "--graphs", "--k1-variants"]
    rows = bench_generate.main(argv)
    assert [r[1] for r in rows] == ["rerope", "rerope [k1]", "dca [k1]", "dca"]
    assert seen == [("rerope", "0"), ("rerope", "1"), ("dca", "1"), ("dca", "0")] and K1_ENV not in os.environ
