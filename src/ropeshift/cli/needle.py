"""``ropeshift needle``: single-needle retrieval per method and length, and the effective length.

A 7-digit number is hidden in real text (default: Python's pydoc topics, no install needed) at
``--depths`` evenly spaced depths; the question asks for it; the model's chat template is used when
it has one. Every method sees the same stored prompts. Prints method x length accuracy and the
effective length (largest length whose accuracy, and every shorter one's, beats the threshold:
default 0.85 x the shortest length's accuracy). Per-sample records go to ``runs/``.

Run: ropeshift needle --model smollm2-135m --methods rope,string --lengths 1k,2k,4k --depths 5
"""
from __future__ import annotations

import argparse

from ropeshift.eval import cli_common as cc

EXAMPLES = """examples:
  ropeshift needle                                          # rope vs string on SmolLM2, 1k/2k/4k, 5 depths
  ropeshift needle --lengths 2k,4k,8k --depths 11 --samples 4 --haystack kjv
  ropeshift needle --methods rope,string --shift 2048 --window 128 --dry-run
  ropeshift needle --methods rope,yarn,string --factor 2 --lengths 8k,16k
"""


def add_parser(subparsers, full: bool = True) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "needle", help="needle-in-a-haystack accuracy per method and length (the main job)",
        description=__doc__.split("\n\n")[1], epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cc.add_model_args(p)
    cc.add_method_args(p, full=full)
    cc.add_run_args(p, lengths="1k,2k,4k")
    g = p.add_argument_group("needle")
    g.add_argument("--depths", type=int, default=5, help="number of evenly spaced needle depths, 0..100%% (default: 5)")
    g.add_argument("--samples", type=int, default=1, help="samples per depth and length (default: 1)")
    g.add_argument("--haystack", default="pydoc", help="pydoc (default), kjv, noise, essays:PATH or file:PATH")
    cc.add_threshold_args(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ropeshift.eval.records import model_dir
    from ropeshift.eval.report_headline import cli_headline, rope_equal_lengths
    from ropeshift.eval.run_meta import run_recorded
    from ropeshift.eval.report_tables import ruler_table, summarise
    from ropeshift.eval.runner import RunConfig, model_label
    from ropeshift.eval.tasks import TaskOptions

    if args.samples < 1:
        raise ValueError(f"--samples must be >= 1 per depth, got {args.samples}")
    if args.depths < 1:
        raise ValueError(f"--depths must be >= 1, got {args.depths}")
    cfg = RunConfig(
        model=model_label(args.model), tasks=("needle",), lengths=cc.lengths_from(args),
        methods=cc.specs_from(args), samples=args.samples * args.depths, seed=args.seed,
        options=TaskOptions(haystack=args.haystack, depths=args.depths, chat=cc.chat_from(args)),
        batch_size=args.batch_size, batch_tokens=args.batch_tokens, out=args.out, impl=args.impl,
        plain_attention=args.plain_attention, share_rope=not args.compute_rope_equal,
        compile=args.compile,
    )
    threshold = cc.threshold_from(args)
    code = run_recorded(cfg, args)
    if code is not None:
        return code
    recs = cc.run_records(cfg, model_dir(cfg.out, cfg.model) / "needle")
    print()
    print(cli_headline(recs, model_dir(cfg.out, cfg.model)))
    print()
    print(f"needle accuracy (%, 95% CI), {args.depths} depths x {args.samples} samples, haystack {args.haystack}; "
          f"effective length: {threshold.describe()}")
    print(ruler_table(summarise(recs), threshold, rope_equal=rope_equal_lengths(recs)))
    print(f"\nrecords: {model_dir(cfg.out, cfg.model) / 'needle'}")
    return 0
