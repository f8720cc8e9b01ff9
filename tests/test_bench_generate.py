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
