"""A synthetic stored run (records written directly, no model): fast fixtures for report tests.

    root = write_run(tmp_path)        # runs/tiny/<task>/<method>/<length>.jsonl, run.json, run_meta.json

Scores are deterministic: rope's sample i at length n scores 1 when ``(i * 7 + n // 64) % 10 < k(n)``; string
equals rope at lengths <= its shift (as it must, it is rope there) and gains samples beyond it; ``pi`` is a
RoPE-scaling method (never equal to rope).
"""
from __future__ import annotations

import json
from pathlib import Path

from ropeshift.eval.records import record_path, model_dir

LENGTHS = (256, 512, 768, 1024)
TRAIN = 1024
SHIFT = 400
STRING_PARAMS = {"shift": SHIFT, "window": 16, "train_length": TRAIN, "logit_scale": 1.0}


def rope_score(i: int, n: int) -> float:
    k = {256: 10, 512: 9, 768: 6, 1024: 4}[n]
    return float((i * 7 + n // 64) % 10 < k)


def scores(method: str, i: int, n: int) -> float:
    base = rope_score(i, n)
    if method == "string" and n > SHIFT:
        return 1.0 if i % 3 else base        # gains on two samples in three
    if method == "pi":
        return base if i % 5 else 0.0        # loses one in five
    return base


def write_run(out: Path, samples: int = 20, tasks=("needle", "passkey"), depths=(0.0, 50.0, 100.0)) -> Path:
    params = {"rope": ({}, "rope"), "string": (STRING_PARAMS, "string"),
              "pi": ({"factor": 1.5, "train_length": TRAIN}, "pi")}
    for task in tasks:
        for method, (p, name) in params.items():
            for n in LENGTHS:
                path = record_path(out, "tiny", task, method, n)
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "w") as f:
                    for i in range(samples):
                        s = scores(method, i + (task == "passkey"), n)
                        f.write(json.dumps({
                            "model": "tiny", "task": task, "length": n, "depth": depths[i % len(depths)],
                            "index": i, "seed": 0, "method": method, "method_name": name, "params": p,
                            "impl": "torch", "haystack": "noise", "prompt_hash": f"{task}-{n}-{i}", "n_tokens": n,
                            "prediction": "x", "references": ["x"], "score": s}) + "\n")
    root = model_dir(out, "tiny")
    (root / "run.json").write_text(json.dumps({"model": "tiny", "path": "tiny", "train_length": TRAIN,
                                               "model_type": "llama", "dtype": "torch.float32"}))
    (root / "run_meta.json").write_text(json.dumps([{
        "command": "ropeshift eval --model tiny", "model": "tiny", "tasks": list(tasks), "lengths": list(LENGTHS),
        "samples": samples, "seed": 0, "batch_size": 4, "impl": None, "methods": {},
        "started": "2026-11-25T04:00:00+00:00", "wall_s": 12.5, "status": "complete",
        "versions": {"python": "3.12", "torch": "2.13"}}]))
    return out
