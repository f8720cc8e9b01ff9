"""Mistakes caught before the model loads, and the dry-run plan's notes (issue 8).

Run: pytest tests/test_preflight.py -q
"""
import pytest
import torch

import ropeshift
from ropeshift.cli.main import main

from .test_bad_inputs import model_folder  # noqa: F401  (module fixture: a tiny Llama folder, L = 256)
from .tiny_models import tiny_model


def _never_load(monkeypatch):
    from ropeshift.eval import cli_common

    def fail(args):
        raise AssertionError("the model was loaded before the mistake was reported")

    monkeypatch.setattr(cli_common, "load", fail)


@pytest.mark.parametrize("extra, message", [
    (["--methods", "rope,yarn"], "yarn: pass exactly one of factor"),
    (["--methods", "rope,strng"], "Did you mean: string"),
    (["--methods", "string", "--shift", "999"], "shift S must be < the training length L=256"),
    (["--tasks", "qa:/nonexistent/squad.json"], "file not found"),
])
def test_mistakes_are_reported_before_the_model_loads(monkeypatch, capsys, tmp_path, model_folder, extra, message):  # noqa: F811
    _never_load(monkeypatch)
    argv = ["eval", "--model", str(model_folder), "--out", str(tmp_path), "--lengths", "128", "--no-progress",
            "--tasks", "passkey", *extra]
    if "--tasks" in extra:
        del argv[argv.index("--tasks"):argv.index("--tasks") + 2]
    assert main(argv) == 2
    out = capsys.readouterr()
    assert message in out.err and out.out == ""  # not even the plan


def test_dry_run_notes_lengths_beyond_L_and_estimates_the_time(capsys, tmp_path, model_folder):  # noqa: F811
    argv = ["needle", "--dry-run", "--model", str(model_folder), "--out", str(tmp_path), "--lengths", "128,512",
            "--methods", "rope,string,yarn", "--factor", "2", "--window", "8"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "> L=256: beyond the training length; only length-extrapolating methods are meaningful here" in out
    assert "estimated time: about" in out and "tokens x 2 x" in out
    assert "string-window8" in out and "yarn-factor2" in out  # each flag went to the method that takes it
    assert not (tmp_path / model_folder.name).exists()  # a dry run writes nothing


def test_estimate_follows_the_documented_model():
    from ropeshift.eval import preflight as pf

    facts = pf.ModelFacts(config=None, meta_model=None, n_params=10**8)
    cpu = pf.estimate_seconds(facts, tokens=1000, samples=1, device="cpu")
    import os

    assert cpu == pytest.approx(2 * 10**8 * 1000 / (pf.CPU_FLOPS_PER_CORE * (os.cpu_count() or 1)))
    gpu = pf.estimate_seconds(facts, tokens=1000, samples=2, device="cuda")
    assert gpu == pytest.approx(2 * 10**8 * 1000 / pf.CUDA_FLOPS + 2 * pf.CUDA_SAMPLE_OVERHEAD)


@pytest.mark.filterwarnings("ignore:ropeshift. input positions reach")
@pytest.mark.parametrize("method", ["string", "rerope", "self_extend", "dca", "lm_infinite"])
@pytest.mark.parametrize("L", [4, 16, 64, 387])
def test_default_parameters_work_on_short_models(method, L):
    # issue 8: apply(model, "string") raised on every model with L <= 387 (default W = 128 >= S)
    model = tiny_model("llama", max_position_embeddings=L)
    ropeshift.apply(model, method)
    assert ropeshift.describe(model)["method"] == method
    with torch.no_grad():
        assert torch.isfinite(model(torch.randint(3, 128, (1, 2 * L))).logits).all()
