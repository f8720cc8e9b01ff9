"""The needle runner on the embedded SmolLM2-135M-Instruct (slow: loads the 93 MB model once per session).

Run: pytest tests/eval/test_real_model.py -v -m slow
"""
from __future__ import annotations

import pytest

from ropeshift.eval.options import MethodSpec
from ropeshift.eval.prompts import count_tokens
from ropeshift.eval.records import read_cell
from ropeshift.eval.runner import RunConfig, run
from ropeshift.eval.tasks import TASKS, TaskOptions

pytestmark = pytest.mark.slow


def test_needle_prompts_with_the_real_chat_template(smollm2):
    _, tok = smollm2
    for s in TASKS["needle"].make_samples(tok, 1024, 2, 0, TaskOptions(depths=2)):
        assert s.prompt.startswith("<|im_start|>system") and not s.add_special_tokens
        assert s.prompt.endswith("mentioned in the provided text is")
        assert s.n_tokens == count_tokens(tok, s.prompt, False) <= 1024 - TASKS["needle"].max_new_tokens


def test_string_below_its_shift_matches_rope(smollm2, tmp_path):
    """Below S every relative distance is unchanged, so STRING must give RoPE's predictions."""
    model, tok = smollm2
    cfg = RunConfig(model="smollm2-135m", tasks=("needle",), lengths=(512,),
                    methods=(MethodSpec("rope"), MethodSpec("string")), samples=2, out=tmp_path, batch_size=2,
                    options=TaskOptions(depths=2))
    assert run(cfg, model, tok, progress=False) == 4
    rope = read_cell(tmp_path, "smollm2-135m", "needle", "rope", 512)
    string = read_cell(tmp_path, "smollm2-135m", "needle", "string", 512)
    assert string[0]["params"]["shift"] > 512 and string[0]["method_name"] == "string"
    assert sorted((r["index"], r["prediction"]) for r in rope) == sorted((r["index"], r["prediction"]) for r in string)


def test_batched_prompt_ids_equal_one_by_one_with_the_real_tokenizer(smollm2):
    """``generation.batch_prompt_ids`` (the runner's: one tokenizer call a batch) gives the ids that the prompts
    were sized with, one by one, for the GGUF tokenizer's real prompts."""
    from ropeshift.eval.generation import _IDS, batch_prompt_ids
    from ropeshift.eval.prompts import encode

    _, tok = smollm2
    samples = [s for task in ("niah_single_1", "vt", "passkey")
               for s in TASKS[task].make_samples(tok, 1024, 2, 0, TaskOptions())]
    _IDS.clear()
    got = batch_prompt_ids(tok, [s.prompt for s in samples], [s.add_special_tokens for s in samples])
    for s, ids in zip(samples, got):
        assert ids.tolist() == encode(tok, s.prompt, s.add_special_tokens) and len(ids) == s.n_tokens
