"""Invalid parameters of the attention-level baselines raise clear errors before any model work.

Run: pytest tests/methods/test_errors.py -v
"""
import pytest
import torch

import ropeshift

from ..tiny_models import tiny_model

INVALID = [  # method, params, message fragment (L = 64)
    ("rerope", dict(window=0), "rerope: window must be an int number of tokens >= 1"),
    ("rerope", dict(window=64), r"window w must be < the training length L=64 \(1 <= w < L\)"),
    ("rerope", dict(window=2.5), "ratio of L and must be in"),
    ("rerope", dict(window="8"), "window must be an int"),
    ("rerope", dict(window=8, leaky=1), "rerope: leaky must be a finite number > 1, got 1"),
    ("rerope", dict(shift=3), "parameters are: window, leaky, train_length, logit_scale"),
    ("self_extend", dict(group_size=3, window=10), "w_n must be a multiple of group_size G, got w_n=10, G=3"),
    ("self_extend", dict(group_size=0, window=8), "group_size must be an int >= 1"),
    ("self_extend", dict(group_size=4, window=64), "w_n must be < the training length L=64"),
    ("dca", dict(chunk_size=8, local_window=8), r"local_window w must be < chunk_size C \(0 <= w < C\)"),
    ("dca", dict(chunk_size=64, local_window=2), "chunk_size C must be < the training length L=64"),
    ("dca", dict(chunk_size=16, local_window=-1), "local_window must be an int number of tokens >= 0"),
    ("lm_infinite", dict(n_local=0), "n_local must be an int >= 1"),
    ("lm_infinite", dict(n_global=-1), "n_global must be an int >= 0"),
    ("lm_infinite", dict(distance_limit=65), r"distance_limit must be <= the training length L=64"),
    ("lm_infinite", dict(window=4), "parameters are: n_global, n_local, distance_limit"),
    ("dca", dict(logit_scale=0), "dca: logit_scale must be a finite number > 0"),
    ("self_extend", dict(train_length=0), "self_extend: train_length must be an int >= 1"),
]


@pytest.mark.parametrize("method, params, match", INVALID)
def test_invalid_parameters_raise_before_model_work(method, params, match):
    model = tiny_model("llama", max_position_embeddings=64)
    with pytest.raises(ValueError, match=match):
        ropeshift.apply(model, method, **params)
    assert model.config._attn_implementation == "sdpa" and not hasattr(model.config, "ropeshift")


def test_unknown_method_suggests_names():
    model = tiny_model("llama", max_position_embeddings=64)
    with pytest.raises(KeyError, match="Did you mean: self_extend"):
        ropeshift.apply(model, "self-extend")


def test_sliding_window_model_raises_before_model_work():
    model = tiny_model("mistral", max_position_embeddings=64, sliding_window=16)
    with pytest.raises(ValueError, match="sliding-window attention"):
        ropeshift.apply(model, "dca")
    assert model.config._attn_implementation == "sdpa"


def test_model_without_rope_raises():
    model = tiny_model("gpt2")
    with pytest.raises(ValueError, match="no rotary position embedding"):
        ropeshift.apply(model, "rerope", window=8, train_length=64)
    with pytest.raises(ValueError, match="no rotary position embedding"):
        ropeshift.apply(model, "yarn", factor=2.0, train_length=64)
