"""Bad input gets a clear error naming the parameter and its allowed range, before any model work.

Run: pytest tests/test_api_errors.py -v
"""
import warnings

import pytest
import torch

import ropeshift

from .tiny_models import tiny_model


@pytest.fixture
def model():
    return tiny_model("llama")  # L = 256


def _untouched(model):
    return model.config._attn_implementation == "sdpa" and not hasattr(model.config, "ropeshift")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(shift=10, window=10), r"window W must be < shift S \(0 <= W < S\)"),
        (dict(shift=0), r"string: shift must be an int number of tokens >= 1"),
        (dict(shift=-5), r"string: shift must be an int number of tokens >= 1"),
        (dict(shift=1.5), r"ratio of L and must be in \(0, 1\)"),
        (dict(shift=0.0), r"ratio of L and must be in \(0, 1\)"),
        (dict(shift=256), r"shift S must be < the training length L=256"),
        (dict(shift=100, window=4, train_length=64), r"shift S must be < the training length L=64"),
        (dict(shift=20, window=-1), r"string: window must be an int >= 0, got -1"),
        (dict(shift="10"), r"shift"),
        (dict(shift=20, window=4, logit_scale=0), r"logit_scale must be a finite number > 0"),
        (dict(shift=20, bogus=3), r"parameters are: .*shift"),
    ],
)
def test_invalid_string_parameters(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ropeshift.apply(model, "string", **kwargs)
    assert _untouched(model)


def test_unknown_method_did_you_mean(model):
    with pytest.raises(KeyError, match=r"Did you mean: string"):
        ropeshift.apply(model, "strng")
    assert _untouched(model)


def test_unknown_impl(model):
    with pytest.raises(ValueError, match=r"impl must be one of auto, torch, reference, triton"):
        ropeshift.apply(model, "string", shift=20, impl="cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_triton_without_cuda(model):
    with pytest.raises(ValueError, match=r"impl='triton'.*CUDA"):
        ropeshift.apply(model, "string", shift=20, window=4, impl="triton")
    assert _untouched(model)


@pytest.mark.parametrize(
    "rope",
    [
        {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0},
        {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0] * 8, "long_factor": [2.0] * 8,
         "original_max_position_embeddings": 128},
    ],
)
def test_length_dependent_rope_types_are_rejected(rope):
    model = tiny_model("llama", rope_parameters=rope)
    with pytest.raises(ValueError, match=r"changes its frequencies with the input length"):
        ropeshift.apply(model, "string", shift=20)
    assert _untouched(model)


def test_inputs_longer_than_training_length_warn_once():
    model = tiny_model("llama", max_position_embeddings=64)
    ropeshift.apply(model, "string", shift=20, window=4)
    ids = torch.randint(3, 128, (1, 80))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            model(ids)
            model(ids)
    ours = [w for w in caught if "beyond the training length L=64" in str(w.message)]
    assert len(ours) == 1


def test_methods_lists_rope_and_string():
    names = ropeshift.methods()
    assert names[0] == "rope" and "string" in names


@pytest.mark.parametrize("first", ["import ropeshift", "import ropeshift.methods.string",
                                   "from ropeshift.methods.registry import METHODS", "import ropeshift.api"])
def test_methods_is_the_package_and_lists_names_in_any_import_order(first):
    """``ropeshift.methods`` is the methods package and ``ropeshift.methods()`` the documented name list, whatever
    a program imports first (a subpackage import binds the package onto ``ropeshift``)."""
    import subprocess
    import sys

    code = (f"{first}\nimport ropeshift, ropeshift.methods.dca\nnames = ropeshift.methods()\n"
            "assert names[0] == 'rope' and 'plain' in names and 'string' in names, names\n"
            "assert ropeshift.methods.registry.METHODS['dca'] is ropeshift.methods.dca.DualChunkMethod\n"
            "from ropeshift import methods\nassert methods() == names\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_import_has_no_side_effects():
    import subprocess
    import sys

    code = (
        "import ropeshift, sys; from transformers import AttentionInterface;"
        "assert 'ropeshift' not in AttentionInterface._global_mapping;"
        "assert 'ropeshift.api' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
