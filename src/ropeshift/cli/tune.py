"""``ropeshift tune``: search a method's parameters on a tuning split; report default vs tuned vs rope on a
held-out split (other seed, other haystack, other tasks); save the chosen settings for ``apply(config=PATH)``.

Run: ropeshift tune --model smollm2-135m --method string --budget 600 --batch-size 16
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ropeshift.eval import cli_common as cc

EXAMPLES = """examples:
  ropeshift tune --method string --budget 600 --batch-size 16
  ropeshift tune --method string --grid "shift=0.25,0.33,0.5;window=64,128" --logit-scale 1,1.1434 --budget 300s
  ropeshift tune --method self_extend --grid "group_size=4,8;window=256,512" --heldout-samples 30
  ropeshift tune --method yarn --budget 200 --dry-run
The search is successive halving over a grid (the method's default settings are one point); --budget bounds the
samples it scores (a number) or its time (300s). Lengths are L/2, 3L/4, L unless --lengths is given.
Use the result: ropeshift.apply(model, config="runs/tune/smollm2-135m-string.json")
            or: ropeshift eval --methods string --method-config runs/tune/smollm2-135m-string.json
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ropeshift.eval.tune import HELDOUT_TASKS, TUNE_TASKS

    p = subparsers.add_parser(
        "tune", help="tune a method's parameters on a tuning split, judge them on a held-out split",
        description=__doc__.split("\n\n")[0].replace("``", ""), epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cc.add_model_args(p)
    g = p.add_argument_group("search")
    g.add_argument("--method", default="string", help="the method to tune (see `ropeshift ls`; default: string)")
    g.add_argument("--grid", default=None, metavar="SPEC",
                   help='axes replacing or adding to the built-in grid: "name=v1,v2;name2=v3" (lengths: floats in '
                        "(0, 1] are ratios of L, ints are tokens)")
    g.add_argument("--logit-scale", default=None, metavar="V1,V2",
                   help="also search logit_scale over these values (e.g. 1,1.1434; attention methods)")
    g.add_argument("--set", action="append", default=None, metavar="NAME=VALUE",
                   help="a parameter fixed for every setting (repeatable; JSON values, e.g. short_factor=[1,1])")
    g.add_argument("--train-length", type=int, default=None, help="L (default: config.max_position_embeddings)")
    g.add_argument("--budget", default="600", help="search budget: samples (600) or seconds (300s) (default: 600)")
    g.add_argument("--eta", type=int, default=3, help="keep the best 1/eta at each rung (default: 3)")
    g.add_argument("--impl", choices=["auto", "torch", "triton", "reference"], default=None,
                   help="attention implementation for patched methods (default: auto)")
    t = p.add_argument_group("tuning split")
    t.add_argument("--tasks", default=",".join(TUNE_TASKS), help=f"default: {','.join(TUNE_TASKS)}")
    t.add_argument("--lengths", default=None, help="context lengths (default: L/2, 3L/4, L)")
    t.add_argument("--haystack", default="pydoc", help="haystack of the tuning tasks (default: pydoc)")
    t.add_argument("--seed", type=int, default=1000, help="seed of the tuning prompts (default: 1000)")
    h = p.add_argument_group("held-out split")
    h.add_argument("--heldout-tasks", default=",".join(HELDOUT_TASKS), help=f"default: {','.join(HELDOUT_TASKS)}")
    h.add_argument("--heldout-lengths", default=None, help="default: the tuning lengths")
    h.add_argument("--heldout-haystack", default="kjv", help="default: kjv (pip install 'ropeshift[kjv]')")
    h.add_argument("--heldout-seed", type=int, default=2000, help="default: 2000")
    h.add_argument("--heldout-samples", type=int, default=20, help="samples per task and length (default: 20)")
    r = p.add_argument_group("run")
    r.add_argument("--batch-size", type=int, default=1, help="samples per generate() call, left-padded")
    r.add_argument("--batch-tokens", type=int, default=None, metavar="N",
                   help="token budget per generate() call instead of --batch-size (rows = N // length)")
    r.add_argument("--out", type=Path, default=Path("runs/tune"), help="results folder (default: runs/tune)")
    r.add_argument("--save", type=Path, default=None,
                   help="settings file to write (default: OUT/MODEL-METHOD.json)")
    r.add_argument("--chat", choices=["auto", "on", "off"], default="auto", help="chat template (auto: per task)")
    r.add_argument("--dry-run", action="store_true", help="load the model, print the settings and the plan, exit")
    r.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)
    return p


def config_from(args, model_name: str):
    from ropeshift.eval.options import parse_lengths, parse_names
    from ropeshift.eval.tune import Split, TuneConfig
    from ropeshift.eval.tune_search import Budget
    from ropeshift.eval.tune_space import parse_fixed

    scales = tuple(float(x) for x in args.logit_scale.split(",") if x.strip()) if args.logit_scale else None
    return TuneConfig(
        model=model_name, method=args.method, budget=Budget.parse(args.budget),
        tuning=Split(parse_names(args.tasks, "tasks"), args.seed, args.haystack,
                     parse_lengths(args.lengths) if args.lengths else None),
        heldout=Split(parse_names(args.heldout_tasks, "heldout-tasks"), args.heldout_seed, args.heldout_haystack,
                      parse_lengths(args.heldout_lengths) if args.heldout_lengths else None, args.heldout_samples),
        grid=args.grid, logit_scales=scales, fixed=parse_fixed(args.set), train_length=args.train_length,
        eta=args.eta, batch_size=args.batch_size, batch_tokens=args.batch_tokens, out=args.out, save=args.save,
        impl=args.impl,
        chat=cc.chat_from(args),
    )


def run(args) -> int:
    from ropeshift.eval.runner import model_label
    from ropeshift.eval.tune import tune

    cfg = config_from(args, model_label(args.model))
    model, tokenizer = cc.load(args)
    if args.dry_run:
        return dry_run(cfg, model)
    try:
        result = tune(cfg, model, tokenizer, progress=not args.no_progress,
                      log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        print("\ninterrupted: finished samples are saved; rerun the same command to resume", file=sys.stderr)
        return 130
    w = result.winner
    print(f"\n{cfg.method} tuned on {', '.join(cfg.tuning.tasks)} (haystack {cfg.tuning.haystack}, seed "
          f"{cfg.tuning.seed}); search cost {result.search.samples} samples, {result.search.seconds:.0f} s "
          f"(budget {cfg.budget})")
    print(f"chosen: {w.describe(result.train_length)}")
    print(f"\nheld-out: {', '.join(cfg.heldout.tasks)} (haystack {cfg.heldout.haystack}, seed {cfg.heldout.seed}); "
          "mean score % [95 % CI], paired gains in percentage points")
    print(result.table)
    print(result.verdict)
    print(f"\nsettings: {result.settings_path}   use: ropeshift.apply(model, config={str(result.settings_path)!r})")
    print(f"trace: {result.trace_path}   held-out records: ropeshift report {Path(cfg.out) / 'heldout'}")
    return 0


def dry_run(cfg, model) -> int:
    from ropeshift.api import model_info
    from ropeshift.eval.tune import default_lengths
    from ropeshift.eval.tune_search import halving_plan
    from ropeshift.eval.tune_space import candidates, space_for

    info = model_info(model, cfg.train_length)
    fixed = {**cfg.fixed, **({"train_length": cfg.train_length} if cfg.train_length else {})}
    cands, dropped = candidates(cfg.method, space_for(cfg.method, cfg.grid, cfg.logit_scales), info, fixed)
    lengths = cfg.tuning.lengths or default_lengths(info.train_length)
    print(f"{cfg.method}: {len(cands)} settings (L = {info.train_length}), {len(dropped)} refused by the method")
    for c in cands:
        print(f"  {c.describe(info.train_length)}")
    cells = len(cfg.tuning.tasks) * len(lengths)
    print(f"tuning lengths {', '.join(map(str, lengths))}; {cells} cells")
    if not cfg.budget.seconds:
        print(halving_plan(len(cands), cells, int(cfg.budget.amount), cfg.eta).describe())
    return 0
