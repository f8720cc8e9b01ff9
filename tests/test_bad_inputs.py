"""A table of bad inputs (API and CLI): each gives a one-line message naming the parameter and the allowed values,
before any model work, and never a traceback (issue 8).

API rows: ``(call, error types, regex)`` on a tiny Llama (L = 256); the model must be untouched afterwards.
CLI rows: ``argv`` for ``ropeshift.cli.main.main`` (run in-process) with a regex on stderr; the exit code is 2
and stderr is one ``error:`` line (argparse type errors: its usage line plus one ``error:`` line).

Run: pytest tests/test_bad_inputs.py -q
"""
from __future__ import annotations

import json
import math
import os

import pytest
import torch

import ropeshift
from ropeshift.cli.main import main

from .tiny_models import tiny_model

INF, NAN = math.inf, math.nan
LS_ALLOWED = r"logit_scale must be a finite number > 0 and <= 100"
SHIFT_ALLOWED = r"string: shift must be an int number of tokens >= 1, or a finite float ratio of L"
FACTOR_ALLOWED = r"factor must be a finite number >= 1 and <= 10000"

# (method, params, regex); L = 256
PARAMS = [
    ("string", dict(logit_scale=INF), LS_ALLOWED + ", got inf"),
    ("string", dict(logit_scale=NAN), LS_ALLOWED + ", got nan"),
    ("string", dict(logit_scale="2"), LS_ALLOWED + ", got '2'"),
    ("string", dict(logit_scale=True), LS_ALLOWED + ", got True"),
    ("string", dict(logit_scale=-1), LS_ALLOWED),
    ("string", dict(logit_scale=0), LS_ALLOWED),
    ("string", dict(logit_scale=1e9), LS_ALLOWED),
    ("string", dict(logit_scale=[1.0]), LS_ALLOWED),
    ("string", dict(shift=INF), SHIFT_ALLOWED + ", got inf"),
    ("string", dict(shift=NAN), SHIFT_ALLOWED + ", got nan"),
    ("string", dict(shift=True), SHIFT_ALLOWED + ", got True"),
    ("string", dict(shift="10"), SHIFT_ALLOWED + ", got '10'"),
    ("string", dict(shift=[10]), SHIFT_ALLOWED),
    ("string", dict(shift=0), SHIFT_ALLOWED + ", got 0"),
    ("string", dict(shift=-3), SHIFT_ALLOWED),
    ("string", dict(shift=10**30), SHIFT_ALLOWED),
    ("string", dict(shift=1.5), r"string: a float shift is a ratio of L and must be in \(0, 1\), got 1.5"),
    ("string", dict(shift=-0.5), r"string: a float shift is a ratio of L and must be in \(0, 1\)"),
    ("string", dict(shift=256), r"string: shift S must be < the training length L=256 \(0 < S < L\)"),
    ("string", dict(shift=20, window=-1), r"string: window must be an int >= 0, got -1"),
    ("string", dict(shift=20, window=2.5), r"string: window must be an int >= 0, got 2.5"),
    ("string", dict(shift=20, window=True), r"string: window must be an int >= 0, got True"),
    ("string", dict(shift=20, window=INF), r"string: window must be an int >= 0, got inf"),
    ("string", dict(shift=10, window=20), r"string: window W must be < shift S \(0 <= W < S\)"),
    ("string", dict(train_length=0), r"string: train_length must be an int >= 1, got 0"),
    ("string", dict(train_length=1.5), r"string: train_length must be an int >= 1, got 1.5"),
    ("string", dict(train_length=True), r"string: train_length must be an int >= 1, got True"),
    ("string", dict(train_length=1), r"string: the training length L=1 is too short: 0 < S < L needs L >= 2"),
    ("string", dict(bogus=1), r"string: unknown parameter\(s\) bogus; parameters are: shift, window, train_length, "
                              r"logit_scale"),
    ("string", dict(shft=10), r"string: unknown parameter\(s\) shft \(did you mean shift\?\); parameters are: shift"),
    ("string", dict(factor=2), r"string: unknown parameter\(s\) factor; parameters are: shift, window"),
    ("rerope", dict(window=0), r"rerope: window must be an int number of tokens >= 1, or a finite float ratio of L"),
    ("rerope", dict(window=INF), r"rerope: window must be an int number of tokens >= 1, or a finite float ratio"),
    ("rerope", dict(window=NAN), r"rerope: window must be an int number of tokens >= 1, or a finite float ratio"),
    ("rerope", dict(window=256), r"rerope: window w must be < the training length L=256 \(1 <= w < L\)"),
    ("rerope", dict(window=1.5), r"rerope: a float window is a ratio of L and must be in \(0, 1\]"),
    ("rerope", dict(window="8"), r"rerope: window must be an int number of tokens >= 1"),
    ("rerope", dict(window=8, leaky=1), r"rerope: leaky must be a finite number > 1, got 1"),
    ("rerope", dict(window=8, leaky=INF), r"rerope: leaky must be a finite number > 1, got inf"),
    ("rerope", dict(window=8, leaky=NAN), r"rerope: leaky must be a finite number > 1, got nan"),
    ("rerope", dict(window=8, leaky="16"), r"rerope: leaky must be a finite number > 1, got '16'"),
    ("rerope", dict(window=8, leaky=True), r"rerope: leaky must be a finite number > 1, got True"),
    ("rerope", dict(window=8, logit_scale=INF), "rerope: " + LS_ALLOWED),
    ("rerope", dict(shift=3), r"rerope: unknown parameter\(s\) shift; parameters are: window, leaky, train_length"),
    ("self_extend", dict(group_size=0), r"self_extend: group_size must be an int >= 1, got 0"),
    ("self_extend", dict(group_size=2.0), r"self_extend: group_size must be an int >= 1, got 2.0"),
    ("self_extend", dict(group_size=True), r"self_extend: group_size must be an int >= 1, got True"),
    ("self_extend", dict(group_size=3, window=10), r"self_extend: neighbour window w_n must be a multiple of "
                                                  r"group_size G, got w_n=10, G=3"),
    ("self_extend", dict(window=INF), r"self_extend: window must be an int >= 1, got inf"),
    ("self_extend", dict(window=0), r"self_extend: window must be an int >= 1, got 0"),
    ("self_extend", dict(group_size=4, window=256), r"self_extend: neighbour window w_n must be < the training "
                                                   r"length L=256"),
    ("self_extend", dict(logit_scale=NAN), "self_extend: " + LS_ALLOWED),
    ("dca", dict(chunk_size=1), r"dca: chunk_size must be an int number of tokens >= 2, or a finite float ratio"),
    ("dca", dict(chunk_size=INF), r"dca: chunk_size must be an int number of tokens >= 2"),
    ("dca", dict(chunk_size=256), r"dca: chunk_size C must be < the training length L=256"),
    ("dca", dict(chunk_size=1.5), r"dca: a float chunk_size is a ratio of L and must be in \(0, 1\]"),
    ("dca", dict(local_window=-1), r"dca: local_window must be an int number of tokens >= 0"),
    ("dca", dict(local_window=NAN), r"dca: local_window must be an int number of tokens >= 0"),
    ("dca", dict(chunk_size=8, local_window=8), r"dca: local_window w must be < chunk_size C \(0 <= w < C\)"),
    ("dca", dict(logit_scale="1"), "dca: " + LS_ALLOWED),
    ("lm_infinite", dict(n_global=-1), r"lm_infinite: n_global must be an int >= 0, got -1"),
    ("lm_infinite", dict(n_global=1.5), r"lm_infinite: n_global must be an int >= 0, got 1.5"),
    ("lm_infinite", dict(n_local=0), r"lm_infinite: n_local must be an int >= 1, got 0"),
    ("lm_infinite", dict(n_local=INF), r"lm_infinite: n_local must be an int >= 1, got inf"),
    ("lm_infinite", dict(distance_limit=0), r"lm_infinite: distance_limit must be an int >= 1, got 0"),
    ("lm_infinite", dict(distance_limit=257), r"lm_infinite: distance_limit must be <= the training length L=256"),
    ("lm_infinite", dict(distance_limit=True), r"lm_infinite: distance_limit must be an int >= 1, got True"),
    ("yarn", dict(), r"yarn: pass exactly one of factor= \(>= 1\) or target_length= \(>= L=256\)"),
    ("yarn", dict(factor=INF), "yarn: " + FACTOR_ALLOWED + ", got inf"),
    ("yarn", dict(factor=NAN), "yarn: " + FACTOR_ALLOWED + ", got nan"),
    ("yarn", dict(factor=0.5), "yarn: " + FACTOR_ALLOWED + ", got 0.5"),
    ("yarn", dict(factor="2"), "yarn: " + FACTOR_ALLOWED + ", got '2'"),
    ("yarn", dict(factor=True), "yarn: " + FACTOR_ALLOWED + ", got True"),
    ("yarn", dict(factor=1e308), "yarn: " + FACTOR_ALLOWED),
    ("yarn", dict(factor=10**400), "yarn: " + FACTOR_ALLOWED),
    ("yarn", dict(factor=2, target_length=512), r"yarn: pass exactly one of factor= \(>= 1\) or target_length="),
    ("yarn", dict(target_length=100), r"yarn: target_length must be an int >= L=256, got 100"),
    ("yarn", dict(target_length=10**30), r"yarn: target_length must be an int in \[L, L x 10000\]"),
    ("yarn", dict(target_length=2.5), r"yarn: target_length must be an int >= 1, got 2.5"),
    ("yarn", dict(factor=2, beta_fast=NAN), r"yarn: beta_fast must be a finite number > 0 and <= 10000, got nan"),
    ("yarn", dict(factor=2, beta_fast=INF), r"yarn: beta_fast must be a finite number > 0 and <= 10000, got inf"),
    ("yarn", dict(factor=2, beta_fast=0), r"yarn: beta_fast must be a finite number > 0"),
    ("yarn", dict(factor=2, beta_slow=-1), r"yarn: beta_slow must be a finite number > 0"),
    ("yarn", dict(factor=2, beta_fast=1, beta_slow=2), r"yarn: beta_fast must be >= beta_slow"),
    ("yarn", dict(factor=2, attention_factor=INF), r"yarn: attention_factor must be a finite number > 0 and <= 100"),
    ("yarn", dict(factor=2, attention_factor=0), r"yarn: attention_factor must be a finite number > 0"),
    ("yarn", dict(factor=2, attention_factor="1"), r"yarn: attention_factor must be a finite number > 0"),
    ("yarn", dict(factor=2, beta=3), r"yarn: unknown parameter\(s\) beta \(did you mean beta_\w+\?\); parameters "
                                     r"are: factor, target_length, train_length, beta_fast, beta_slow"),
    ("ntk", dict(factor=1e308), "ntk: " + FACTOR_ALLOWED),
    ("ntk", dict(factor=INF), "ntk: " + FACTOR_ALLOWED),
    ("ntk", dict(factor=-2), "ntk: " + FACTOR_ALLOWED),
    ("pi", dict(factor=NAN), "pi: " + FACTOR_ALLOWED),
    ("pi", dict(factor=2, train_length=0), r"pi: train_length must be an int >= 1, got 0"),
    ("dynamic_ntk", dict(factor=0), "dynamic_ntk: " + FACTOR_ALLOWED),
    ("llama3", dict(factor=2, low_freq_factor=0), r"llama3: low_freq_factor must be a finite number > 0"),
    ("llama3", dict(factor=2, high_freq_factor=INF), r"llama3: high_freq_factor must be a finite number > 0"),
    ("llama3", dict(factor=2, low_freq_factor=4, high_freq_factor=1), r"llama3: need 0 < low_freq_factor < "
                                                                      r"high_freq_factor"),
    ("llama3", dict(factor=2, low_freq_factor="1"), r"llama3: low_freq_factor must be a finite number > 0"),
    ("longrope", dict(factor=2, short_factor=[INF] * 8, long_factor=[1.0] * 8),
     r"longrope: short_factor must be a non-empty list of finite numbers, each > 0 and <= 10000"),
    ("longrope", dict(factor=2, short_factor=[1.0] * 8, long_factor=[NAN] * 8),
     r"longrope: long_factor must be a non-empty list of finite numbers, each > 0"),
    ("longrope", dict(factor=2, short_factor=[], long_factor=[1.0] * 8),
     r"longrope: short_factor must be a non-empty list of finite numbers"),
    ("longrope", dict(factor=2, short_factor="1,2", long_factor=[1.0] * 8),
     r"longrope: short_factor must be a non-empty list of finite numbers"),
    ("longrope", dict(factor=2, long_factor=[1.0] * 8), r"longrope: short_factor= and long_factor= \(lists, one "
                                                        r"number per rotary frequency\) are required"),
    ("longrope", dict(factor=2, short_factor=[1.0] * 3, long_factor=[1.0] * 3),
     r"longrope: short_factor and long_factor need 8 numbers each \(one per rotary frequency\), got 3 and 3"),
    ("longrope", dict(factor=2, short_factor=[True] * 8, long_factor=[1.0] * 8),
     r"longrope: short_factor must be a non-empty list of finite numbers"),
    ("longrope", dict(factor=2, short_factor=[0] * 8, long_factor=[1.0] * 8),
     r"longrope: short_factor must be a non-empty list of finite numbers, each > 0"),
]


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama")  # L = 256, head_dim 16 -> 8 rotary frequencies


def _untouched(model):
    return model.config._attn_implementation == "sdpa" and not hasattr(model.config, "ropeshift")


def _one_line(e: BaseException) -> str:
    msg = e.args[0] if isinstance(e, KeyError) else str(e)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


@pytest.mark.parametrize("method, params, match", PARAMS, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(PARAMS)])
def test_bad_method_parameters(model, method, params, match):
    with pytest.raises(ValueError, match=match) as info:
        ropeshift.apply(model, method, **params)
    _one_line(info.value)
    assert _untouched(model)


@pytest.mark.parametrize("call, errors, match", [
    (lambda m: ropeshift.apply(m, 123), TypeError, r"method must be a method name \(str\), one of rope, string"),
    (lambda m: ropeshift.apply(m, None), TypeError, r"method must be a method name \(str\), one of rope, string"),
    (lambda m: ropeshift.apply(m, ["string"]), TypeError, r"method must be a method name \(str\)"),
    (lambda m: ropeshift.apply(m, "strng"), KeyError, r"unknown method 'strng'. Did you mean: string\?"),
    (lambda m: ropeshift.apply(m, "YaRN", factor=2), KeyError, r"unknown method 'YaRN'.*Available: string"),
    (lambda m: ropeshift.apply("not a model", "string"), TypeError,
     r"model must be a transformers PreTrainedModel .*got str"),
    (lambda m: ropeshift.apply(None, "string"), TypeError, r"model must be a transformers PreTrainedModel"),
    (lambda m: ropeshift.apply(m.state_dict(), "string"), TypeError, r"model must be a transformers Pre.*got OrderedDict"),
    (lambda m: ropeshift.apply(m, "string", impl="cuda"), ValueError, r"impl must be one of auto, torch"),
    (lambda m: ropeshift.apply(m, "string", impl=None), ValueError, r"impl must be one of auto, torch"),
    (lambda m: ropeshift.describe(object()), TypeError, r"model must be a transformers PreTrainedModel"),
    (lambda m: ropeshift.remove(42), TypeError, r"model must be a transformers PreTrainedModel.*got int"),
], ids=lambda x: "" if callable(x) else None)
def test_bad_api_calls(model, call, errors, match):
    with pytest.raises(errors, match=match) as info:
        call(model)
    _one_line(info.value)
    assert _untouched(model)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A tiny Llama saved as a Hugging Face folder (config.json, safetensors, a word-level tokenizer)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny-llama")
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, **{f"w{i}": i for i in range(1, 128)}}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[UNK]").save_pretrained(path)
    tiny_model("llama").save_pretrained(path)
    return path


@pytest.mark.parametrize("kwargs, errors, match", [
    (dict(name_or_path="/nonexistent/model"), FileNotFoundError, r"model '/nonexistent/model' is neither an embedded"),
    (dict(name_or_path="EMPTY"), FileNotFoundError, r"is not a Hugging Face model folder: it has no config.json"),
    (dict(device="bogus"), ValueError, r"device: unknown device 'bogus'; use cpu, cuda or cuda:N"),
    (dict(device="mps"), ValueError, r"device 'mps': only cpu and cuda devices are supported"),
    pytest.param(dict(device="cuda"), ValueError, r"device 'cuda': CUDA is not available on this machine; use cpu",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")),
])
def test_bad_load_model_calls(model_folder, tmp_path, kwargs, errors, match):
    kwargs = dict(kwargs)
    name = kwargs.pop("name_or_path", str(model_folder))
    if name == "EMPTY":
        name = str(tmp_path)
    with pytest.raises(errors, match=match) as info:
        ropeshift.load_model(name, progress=False, **kwargs)
    _one_line(info.value)


# ---------------------------------------------------------------------------------------------------------------
# CLI: {MODEL} is the tiny model folder, {TMP} a fresh folder, {FILE} a file in it

DRY = ["--dry-run", "--no-progress", "--model", "{MODEL}", "--out", "{TMP}/runs"]
NEEDLE = ["needle", *DRY, "--lengths", "128"]
CLI = [
    (["matrix", "string", "--length", "1"], r"string: the training length L=1 is too short: 0 < S < L needs L >= 2"),
    (["matrix", "string", "--length", "0"], r"--length must be an int >= 1, got 0"),
    (["matrix", "string", "--shift", "inf"], r"string: shift must be an int number of tokens >= 1, or a finite float"),
    (["matrix", "string", "--shift", "nan"], r"string: shift must be an int number of tokens >= 1"),
    (["matrix", "string", "--logit-scale", "nan"], r"string: logit_scale must be a finite number > 0 and <= 100"),
    (["matrix", "string", "--window", "12"], r"string: window W must be < shift S \(0 <= W < S\)"),
    (["matrix", "strng"], r"unknown method 'strng'. Did you mean: string\?"),
    (["matrix", "rerope", "--shift", "3"], r"rerope does not take --shift; its flags: --window, --leaky"),
    (["matrix", "rerope", "--leaky", "1"], r"rerope: leaky must be a finite number > 1, got 1"),
    (["matrix", "dca", "--chunk-size", "1"], r"dca: chunk_size must be an int number of tokens >= 2"),
    (["matrix", "lm_infinite", "--n-global", "-1"], r"lm_infinite: n_global must be an int >= 0, got -1"),
    (["matrix", "yarn", "--factor", "2"], r"yarn is a RoPE-scaling method: it changes RoPE frequencies"),
    (["matrix", "rope", "--window", "2"], r"rope \(the unpatched model\) takes no parameters, got window"),
    (["matrix", "string", "--window", "abc"], r"argument --window: expected a number, got 'abc'"),
    (["matrix", "string", "--shift", "x"], r"argument --shift: expected a number, got 'x'"),
    ([*NEEDLE, "--methods", "rope,strng"], r"unknown method 'strng'. Did you mean: string\? Available: rope, string"),
    ([*NEEDLE, "--methods", "rope,"], None),  # a trailing comma is fine: the plan prints
    ([*NEEDLE, "--methods", ""], r"--methods is empty"),
    ([*NEEDLE, "--methods", "rope,rope"], r"--methods has duplicates"),
    ([*NEEDLE, "--methods", "yarn"], r"yarn: pass exactly one of factor= \(>= 1\) or target_length= \(>= L=256\)"),
    ([*NEEDLE, "--methods", "yarn", "--factor", "inf"], r"yarn: factor must be a finite number >= 1 and <= 10000"),
    ([*NEEDLE, "--methods", "yarn", "--factor", "nan"], r"yarn: factor must be a finite number >= 1"),
    ([*NEEDLE, "--methods", "ntk", "--factor", "1e308"], r"ntk: factor must be a finite number >= 1 and <= 10000"),
    ([*NEEDLE, "--methods", "yarn", "--target-length", "100"], r"yarn: target_length must be an int >= L=256"),
    ([*NEEDLE, "--methods", "yarn", "--factor", "2", "--beta-fast", "nan"], r"yarn: beta_fast must be a finite "
                                                                            r"number > 0"),
    ([*NEEDLE, "--methods", "longrope", "--factor", "2", "--short-factor", "inf", "--long-factor", "1"],
     r"longrope: short_factor must be a non-empty list of finite numbers, each > 0"),
    ([*NEEDLE, "--methods", "longrope", "--factor", "2", "--short-factor", "1,2", "--long-factor", "1,2"],
     r"longrope: short_factor and long_factor need 8 numbers each"),
    ([*NEEDLE, "--methods", "string", "--shift", "0"], r"string: shift must be an int number of tokens >= 1"),
    ([*NEEDLE, "--methods", "string", "--shift", "300"], r"string: shift S must be < the training length L=256"),
    ([*NEEDLE, "--methods", "string", "--logit-scale", "inf"], r"string: logit_scale must be a finite number > 0"),
    ([*NEEDLE, "--methods", "rope", "--shift", "100"], r"--shift sets a parameter of 'string', but 'string' is not "
                                                       r"in --methods \(rope\)"),
    ([*NEEDLE, "--methods", "rope,string", "--factor", "2"], r"--factor sets a parameter of 'pi', 'ntk'.*not in "
                                                             r"--methods \(rope, string\)"),
    ([*NEEDLE, "--methods", "dca", "--method-config", "{TMP}/nope.json"], r"--method-config file not found"),
    ([*NEEDLE, "--methods", "dca", "--method-config", "{BADJSON}"], r"--method-config .* is not valid JSON"),
    ([*NEEDLE, "--methods", "dca", "--method-config", "{CONFIG}"], r"dca: unknown parameter\(s\) chunk \(did you "
                                                                   r"mean chunk_size\?\); parameters are: chunk_size"),
    ([*NEEDLE, "--device", "bogus"], r"device: unknown device 'bogus'; use cpu, cuda or cuda:N"),
    pytest.param([*NEEDLE, "--device", "cuda"], r"device 'cuda': CUDA is not available on this machine",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")),
    pytest.param([*NEEDLE, "--impl", "triton", "--device", "cpu"], r"--impl triton needs a CUDA device"),
    (["needle", *DRY[:-2], "--out", "{FILE}", "--lengths", "128"], r"--out .* is a file; give a folder"),
    (["needle", *DRY[:-2], "--out", "{FILE}/runs", "--lengths", "128"], r"--out .* is under .*, which is a file"),
    pytest.param(["needle", *DRY[:-2], "--out", "{RO}/runs", "--lengths", "128"], r"--out .* is not writable",
                 marks=pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")),
    ([*NEEDLE, "--records", "DIR"], r"is a folder where a JSONL file belongs; remove it or use another --out"),
    ([*NEEDLE, "--records", "{}"], r"a record line lacks task, method, length, index, prompt_hash; delete that line"),
    ([*NEEDLE, "--prompts", "{}"], r"a prompt line lacks task, length, index, seed, haystack, prompt, "
                                   r"add_special_tokens, n_tokens, max_new_tokens, references"),
    (["needle", "--dry-run", "--model", "{TMP}/empty", "--out", "{TMP}/runs"], r"is not a Hugging Face model folder: "
                                                                         r"it has no config.json"),
    (["needle", "--dry-run", "--model", "{TMP}/nope"], r"model '.*nope' is neither an embedded model \(smollm2-135m, "),
    ([*NEEDLE[:-1], "0"], r"bad length '0': must be a positive whole number of tokens"),
    ([*NEEDLE[:-1], "abc"], r"bad length 'abc': use a token count such as 4096, 4k or 1.5k"),
    ([*NEEDLE[:-1], "32"], r"lengths must be >= 64 tokens, got 32"),
    ([*NEEDLE, "--samples", "0"], r"--samples must be >= 1 per depth, got 0"),
    ([*NEEDLE, "--depths", "0"], r"--depths must be >= 1, got 0"),
    ([*NEEDLE, "--haystack", "bogus"], r"unknown haystack 'bogus'"),
    ([*NEEDLE, "--batch-size", "0"], r"--batch-size must be >= 1, got 0"),
    (["eval", *DRY, "--lengths", "128", "--tasks", "qa:{TMP}/missing.json"], r"--tasks qa:.*missing.json: file "
                                                                             r"not found"),
    (["eval", *DRY, "--lengths", "128", "--tasks", "paskey"], r"unknown task 'paskey'. Did you mean: passkey"),
    (["eval", *DRY, "--lengths", "128", "--methods", "self-extend"], r"unknown method 'self-extend'. Did you mean: "
                                                                      r"self_extend"),
    (["report", "{TMP}/nothing"], r"no results folder"),
    (["report", "{TMP}/runs", "--records", "{}"], r"a record line lacks task, method, length, index, prompt_hash"),
    (["freq", "--train-length", "1"], r"--train-length must be >= 2, got 1"),
]


def _prepare(argv, tmp_path, model_folder):
    argv = list(argv)
    plant = None
    for flag in ("--records", "--prompts"):
        if flag in argv:
            i = argv.index(flag)
            plant = (flag, argv[i + 1])
            del argv[i:i + 2]
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "config.json").write_text(json.dumps({"dca": {"chunk": 8}}))
    (tmp_path / "empty").mkdir()
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    subs = {"{MODEL}": str(model_folder), "{TMP}": str(tmp_path), "{FILE}": str(tmp_path / "file.txt"),
            "{CONFIG}": str(tmp_path / "config.json"), "{RO}": str(ro), "{BADJSON}": str(tmp_path / "bad.json")}
    out = []
    for a in argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        out.append(a)
    if plant:
        flag, content = plant
        root = tmp_path / "runs" / model_folder.name
        path = (root / "_prompts" / "needle" / "128.jsonl") if flag == "--prompts" else (
            root / "needle" / "rope" / "128.jsonl")
        if content == "DIR":
            path.mkdir(parents=True)
        else:
            path.parent.mkdir(parents=True)
            path.write_text(content + "\n")
    return out


@pytest.mark.parametrize("argv, match", CLI, ids=[" ".join(getattr(c, "values", c)[0])[:60] for c in CLI])
def test_bad_cli_inputs(capsys, tmp_path, model_folder, argv, match):
    argv = _prepare(argv, tmp_path, model_folder)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: usage line + one error line
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if match is None:
        assert code == 0, err
        return
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    error_lines = [line for line in lines if "error:" in line]
    assert len(error_lines) == 1 and lines[-1] == error_lines[0], err
    assert all(line.startswith("usage:") or line.startswith(" ") for line in lines[:-1]), err
    import re

    assert re.search(match, error_lines[0]), error_lines[0]


def test_the_table_has_at_least_100_rows():
    assert len(PARAMS) + 12 + 5 + len(CLI) >= 100


def test_cli_error_in_a_fresh_process_has_no_traceback(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([sys.executable, "-m", "ropeshift.cli.main", "matrix", "string", "--length", "1"],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "ropeshift matrix: error: string: the training length L=1 is too short: 0 < S < L needs L >= 2"]
