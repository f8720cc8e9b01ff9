"""Argument groups and helpers shared by the ``needle`` and ``eval`` subcommands.

Flags are dashed and typed. Every method parameter is a flag generated from the methods' metadata
(``ropeshift.cli.method_flags``: ``--shift``, ``--window``, ``--factor``, ``--target-length``, ...), applied to
each method in ``--methods`` that takes it; ``--method-config FILE.json`` maps method names to ``ropeshift.apply``
keyword parameters. ``run_plan`` checks everything it can before any weights load (``ropeshift.eval.preflight``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import method_specs, parse_lengths, parse_names


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default="smollm2-135m",
                   help="embedded model name, a .gguf file or a local HF folder (default: smollm2-135m)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    g.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                   help="weight dtype (auto: float32 on CPU, bfloat16 on CUDA)")


def add_method_args(p: argparse.ArgumentParser, default: str = "rope,string", *, full: bool = True) -> None:
    """``--methods``, ``--method-config``, ``--impl`` and (``full``) one flag per method parameter."""
    g = p.add_argument_group("methods")
    g.add_argument("--methods", default=default,
                   help=f"comma-separated method names, each run on identical prompts (default: {default})")
    g.add_argument("--method-config", default=None, metavar="FILE.json",
                   help='JSON object {"method": {param: value}} of apply() parameters for any method')
    g.add_argument("--impl", choices=["auto", "torch", "triton", "reference"], default=None,
                   help="attention implementation for patched methods (default: the method's auto)")
    g.add_argument("--plain-attention", choices=["model", "ropeshift"], default="model",
                   help="attention of rows without an attention method (rope and the RoPE-scaling rows): the "
                        "model's own (default), or ropeshift's ('plain', rel = d: the same maths on the same "
                        "kernels as the methods; on a GPU much faster for left-padded batches)")
    if full:
        from ropeshift.cli.method_flags import add_method_flags

        add_method_flags(p, title="method parameters (each applies to every method in --methods that takes it)")


def add_run_args(p: argparse.ArgumentParser, *, lengths: str) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--lengths", default=lengths,
                   help=f"context lengths in tokens of the model, prompt + answer budget (default: {lengths})")
    g.add_argument("--seed", type=int, default=0, help="base seed; sample i uses (task, length, i, seed)")
    g.add_argument("--batch-size", type=int, default=1, help="samples per generate() call, left-padded")
    g.add_argument("--batch-tokens", type=int, default=None, metavar="N",
                   help="token budget per generate() call instead of --batch-size: rows = N // length, rows of "
                        "tasks with similar answer budgets sharing calls (e.g. 600000 on a GPU; a batch that runs "
                        "out of GPU memory is retried in halves, and the process then keeps later batches to "
                        "3/4 of the tokens of the smallest one that failed)")
    g.add_argument("--out", type=Path, default=Path("runs"), help="results folder (default: runs/)")
    g.add_argument("--compute-rope-equal", action="store_true",
                   help="compute the cells where a method is exactly RoPE or exactly an earlier row (by their "
                        "definitions, e.g. STRING below its shift) instead of copying that row's records of the same "
                        "prompts (the default)")
    g.add_argument("--compile", choices=["auto", "layers", "blocks", "off"], default="auto",
                   help="torch.compile the decoder layers, attention eager (layers), or only their norms and MLPs "
                        "(blocks); auto: layers on CUDA, where the forward's elementwise kernels fuse (the first "
                        "forward compiles, ~10-20 s), off on a CPU")
    g.add_argument("--chat", choices=["auto", "on", "off"], default="auto",
                   help="chat template: auto = the task's choice where the model has one")
    g.add_argument("--dry-run", action="store_true", help="print the plan and exit (loads no model)")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_threshold_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("effective length").add_mutually_exclusive_group()
    g.add_argument("--threshold", type=float, default=None, metavar="PERCENT",
                   help="absolute pass mark in percent (RULER uses 85.6)")
    g.add_argument("--relative-threshold", type=float, default=None, metavar="FRACTION",
                   help="pass mark as a fraction of the shortest length's score (default: 0.85)")


def threshold_from(args):
    from .report_tables import Threshold

    if args.threshold is not None:
        return Threshold(absolute=args.threshold, relative=None)
    return Threshold(relative=args.relative_threshold if args.relative_threshold is not None else 0.85)


def specs_from(args):
    from ropeshift.cli.method_flags import flag_values

    return method_specs(parse_names(args.methods, "methods"), config_path=args.method_config, **flag_values(args))


def chat_from(args) -> bool | None:
    return {"auto": None, "on": True, "off": False}[args.chat]


def lengths_from(args):
    return parse_lengths(args.lengths)


def load(args, with_tokenizer: bool = True, tokenizer=None, weights: bool = True):
    """Load ``(model, tokenizer)`` as the flags say (``loader.load_model``: ``with_tokenizer=False`` gives
    ``(model, None)``; a ``tokenizer`` built already is returned and stored with a GGUF model's conversion);
    ``weights=False``: ``(skeleton.skeleton(...), None)``, the model with random weights, built from its config."""
    import torch

    from ropeshift.loader import load_model

    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    if not weights:
        from ropeshift.skeleton import skeleton

        return skeleton(args.model, device=args.device, dtype=dtype), None
    print(f"loading {args.model} ...", file=sys.stderr)
    return load_model(args.model, dtype=dtype, device=args.device, progress=not args.no_progress,
                      with_tokenizer=with_tokenizer, tokenizer=tokenizer)


def preflight(cfg, args) -> list[str]:
    """Every check that needs no weights (device, --out, stored files, method settings against the model's
    config); returns extra plan lines (lengths beyond L, the time estimate)."""
    from ropeshift.eval import preflight as pf
    from ropeshift.eval.records import model_dir
    from ropeshift.eval.runner import _pending

    device = pf.check_device(args.device)
    pf.check_out(cfg.out)
    pf.check_task_files(cfg.tasks)
    check_stored(model_dir(cfg.out, cfg.model))
    facts = pf.model_facts(args.model)
    pf.check_methods(facts, cfg.methods, cfg.impl, device)
    lines = [line for line in [pf.length_note(facts, cfg.lengths)] if line]
    samples = tokens = 0
    for task in cfg.tasks:
        for method in cfg.methods:
            for n in cfg.lengths:
                k = len(_pending(cfg, task, method, n))
                samples, tokens = samples + k, tokens + k * n
    seconds = pf.estimate_seconds(facts, tokens, samples, device)
    lines.append(f"estimated time: about {pf.format_duration(seconds)} on {device} ({tokens} tokens x 2 x "
                 f"{facts.n_params / 1e6:.3g}M parameters; rough, see ropeshift.eval.preflight)")
    return lines


RECORD_FIELDS = ("task", "method", "length", "index", "prompt_hash")


def _prompt_fields() -> tuple[str, ...]:
    """The fields a stored prompt line must have: ``Sample``'s fields without a default."""
    import dataclasses

    from .tasks import Sample

    return tuple(f.name for f in dataclasses.fields(Sample)
                 if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


def check_stored(root: Path) -> None:
    """Stored records and prompts under ``root`` must be JSONL files of objects with the fields the runner reads;
    a folder where a file belongs, or a line such as ``{}``, is an error naming the file and line."""
    import json

    from .records import BATCH_LOG

    if not root.exists():
        return
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; give another --out")
    for path in sorted(root.rglob("*.jsonl")):
        if BATCH_LOG in path.relative_to(root).parts:
            continue  # the batch log (``batch_log``), not records
        if path.is_dir():
            raise ValueError(f"{path} is a folder where a JSONL file belongs; remove it or use another --out")
        prompts = "_prompts" in path.relative_to(root).parts
        need = _prompt_fields() if prompts else RECORD_FIELDS
        with open(path, "rb") as f:
            for i, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    break  # a torn last line is repaired by the runner
                try:
                    d = json.loads(line)
                except ValueError:
                    continue  # an unparsable line is skipped by the reader
                if prompts and i == 1 and isinstance(d, dict) and "header" in d:
                    continue
                missing = [k for k in need if not isinstance(d, dict) or k not in d]
                if missing:
                    raise ValueError(f"{path}:{i}: a {'prompt' if prompts else 'record'} line lacks "
                                     f"{', '.join(missing)}; delete that line or use another --out")


def run_plan(cfg, args) -> int | None:
    """Check what can be checked without weights, print ``cfg``'s plan and, unless ``--dry-run``, load the model
    and run it.

    Returns an exit code when the command should stop there (dry run: 0, Ctrl-C: 130), else None."""
    from ropeshift.eval.runner import format_plan, run

    extra = preflight(cfg, args)
    print(format_plan(cfg))
    for line in extra:
        print(line)
    if args.dry_run:
        return 0
    model, tokenizer = load(args)
    try:
        run(cfg, model, tokenizer, progress=not args.no_progress, model_path=args.model)
    except KeyboardInterrupt:
        print("\ninterrupted: finished samples are saved; rerun the same command to resume", file=sys.stderr)
        return 130
    return None


def run_records(cfg, folder: Path, follower=None) -> list[dict]:
    """The records under ``folder`` that belong to ``cfg`` (its methods, lengths and sample indices); from
    ``follower`` (a ``record_follower.RecordFollower`` of ``folder``) when one has read them during the run."""
    from ropeshift.eval.records import iter_records

    labels = {m.label for m in cfg.methods}
    found = follower.records() if follower is not None else iter_records(folder)
    return [r for r in found if r["method"] in labels and r["length"] in cfg.lengths and r["index"] < cfg.samples]
