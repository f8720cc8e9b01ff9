"""Argument groups and helpers shared by the ``needle`` and ``eval`` subcommands.

Flags are dashed and typed; methods take typed flags (``--shift``, ``--window`` for string) and a
``--method-config FILE.json`` mapping method names to ``ropeshift.apply`` keyword parameters.
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


def add_method_args(p: argparse.ArgumentParser, default: str = "rope,string") -> None:
    g = p.add_argument_group("methods")
    g.add_argument("--methods", default=default,
                   help=f"comma-separated method names, each run on identical prompts (default: {default})")
    g.add_argument("--shift", type=float, default=None,
                   help="STRING shift S: tokens (int >= 1) or a ratio in (0, 1) of the training length "
                        "(default: 0.33 x training length)")
    g.add_argument("--window", type=int, default=None, help="STRING local window W in tokens (default: 128)")
    g.add_argument("--method-config", default=None, metavar="FILE.json",
                   help='JSON object {"method": {param: value}} of apply() parameters for any method')
    g.add_argument("--impl", choices=["auto", "torch", "triton", "reference"], default=None,
                   help="attention implementation for patched methods (default: the method's auto)")


def add_run_args(p: argparse.ArgumentParser, *, lengths: str) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--lengths", default=lengths,
                   help=f"context lengths in tokens of the model, prompt + answer budget (default: {lengths})")
    g.add_argument("--seed", type=int, default=0, help="base seed; sample i uses (task, length, i, seed)")
    g.add_argument("--batch-size", type=int, default=1, help="samples per generate() call, left-padded")
    g.add_argument("--out", type=Path, default=Path("runs"), help="results folder (default: runs/)")
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
    return method_specs(parse_names(args.methods, "methods"), shift=args.shift, window=args.window,
                        config_path=args.method_config)


def chat_from(args) -> bool | None:
    return {"auto": None, "on": True, "off": False}[args.chat]


def lengths_from(args):
    return parse_lengths(args.lengths)


def load(args):
    """Load ``(model, tokenizer)`` as the flags say."""
    import torch

    from ropeshift.loader import load_model

    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    print(f"loading {args.model} ...", file=sys.stderr)
    return load_model(args.model, dtype=dtype, device=args.device, progress=not args.no_progress)


def run_plan(cfg, args) -> int | None:
    """Print ``cfg``'s plan and, unless ``--dry-run``, load the model and run it.

    Returns an exit code when the command should stop there (dry run: 0, Ctrl-C: 130), else None."""
    from ropeshift.eval.runner import format_plan, run

    print(format_plan(cfg))
    if args.dry_run:
        return 0
    model, tokenizer = load(args)
    try:
        run(cfg, model, tokenizer, progress=not args.no_progress, model_path=args.model)
    except KeyboardInterrupt:
        print("\ninterrupted: finished samples are saved; rerun the same command to resume", file=sys.stderr)
        return 130
    return None


def run_records(cfg, folder: Path) -> list[dict]:
    """The records under ``folder`` that belong to ``cfg`` (its methods, lengths and sample indices)."""
    from ropeshift.eval.records import iter_records

    labels = {m.label for m in cfg.methods}
    return [r for r in iter_records(folder) if r["method"] in labels and r["length"] in cfg.lengths
            and r["index"] < cfg.samples]
