"""``ropeshift eval``: run tasks x lengths x methods on one model, resumably, into per-sample JSONL.

Prompts are generated once per (task, length, index, seed) and stored; every method runs on the
same prompts. Rerunning the same command skips finished samples. Summaries and plots come from
``ropeshift report RUNDIR``. Data-parallel: ``--workers N`` (N processes, one device each) or
``torchrun --nproc-per-node N -m ropeshift.cli.main eval ...``; samples are dealt over the ranks.

Run: ropeshift eval --model smollm2-135m --methods rope,string --tasks passkey,niah_single_1 --lengths 1k,2k --samples 5
"""
from __future__ import annotations

import argparse
import sys
import warnings

from ropeshift.eval import cli_common as cc

TASKS, SAMPLES = "passkey,niah_single_1,vt,kv_retrieval", 5

EXAMPLES = """examples:
  ropeshift eval --tasks passkey,niah_single_1,vt --lengths 1k,2k --samples 5
  ropeshift eval --tasks niah_single_2,niah4,perplexity --haystack kjv --lengths 2k,4k,8k --samples 50 --batch-size 16
  ropeshift eval --tasks qa:/data/squad_v2_dev.json --lengths 4k --samples 100
  ropeshift eval --tasks passkey --lengths 8k --dry-run
  ropeshift eval --tasks passkey,vt --lengths 4k,8k --samples 50 --workers 4         # cuda:0..3, or 4 CPU processes
  torchrun --nproc-per-node 4 -m ropeshift.cli.main eval --tasks passkey,vt --lengths 4k,8k --samples 50
  ropeshift eval --suite ruler-lite --batch-size 50             # the whole study: 11 tasks, 1k-8k, 13 method rows
  ropeshift eval --suite ruler-lite --methods rope,string,yarn@fair --samples 10
tasks: see `ropeshift ls`; haystacks: noise, pydoc, kjv, essays:PATH, file:PATH
"""


def add_parser(subparsers, full: bool = True) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval", help="run evaluation tasks per method and length (resumable JSONL records)",
        description=__doc__.split("\n\n")[1], epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cc.add_model_args(p)
    cc.add_method_args(p, full=full)
    cc.add_run_args(p, lengths="1k,2k,4k")
    g = p.add_argument_group("tasks")
    g.add_argument("--suite", default=None, metavar="NAME",
                   help="a named study preset (ruler-lite): its tasks, lengths, samples, haystack and method rows; "
                        "--methods then picks rows by label, other flags override")
    g.add_argument("--tasks", default=None,
                   help=f"comma-separated task names (name:ARG for qa:PATH, perplexity:single) (default: {TASKS})")
    g.add_argument("--samples", type=int, default=None, help=f"samples per task and length (default: {SAMPLES})")
    g.add_argument("--depths", type=int, default=None,
                   help="evenly spaced depths for depth-grid tasks (default: each task's own)")
    g.add_argument("--haystack", default=None,
                   help="text haystack for tasks that read one (default: pydoc): pydoc, kjv, noise, essays:PATH, file:PATH")
    g = p.add_argument_group("scaling out")
    g.add_argument("--workers", type=int, default=1,
                   help="evaluation processes, one device each (rank r on cuda:r; with --device cpu or no GPU, "
                        "all on the CPU); samples are dealt over them (default: 1). Under torchrun, leave it out")
    cc.add_threshold_args(p)
    p.set_defaults(func=run, methods=None, lengths=None)  # None: the suite's, else the usual defaults
    return p


def run(args) -> int:
    from ropeshift.eval.suites import run_settings
    from ropeshift.eval.records import model_dir
    from ropeshift.eval.report_headline import cli_headline, rope_equal_lengths
    from ropeshift.eval.run_meta import run_recorded
    from ropeshift.eval.report_tables import perplexities, perplexity_table, ruler_table, summarise
    from ropeshift.eval.parallel import Ranks, allocator_defaults
    from ropeshift.eval.record_follower import RecordFollower
    from ropeshift.eval.runner import RunConfig, model_label
    from ropeshift.eval.tasks import TaskOptions

    s = run_settings(args, tasks=TASKS, lengths="1k,2k,4k", samples=SAMPLES, methods="rope,string")
    cfg = RunConfig(
        model=model_label(args.model), tasks=s.tasks, lengths=s.lengths, methods=s.methods, samples=s.samples,
        seed=args.seed, options=TaskOptions(haystack=s.haystack, depths=args.depths, chat=cc.chat_from(args)),
        batch_size=args.batch_size, batch_tokens=args.batch_tokens, out=args.out, impl=args.impl,
        plain_attention=args.plain_attention, share_rope=not args.compute_rope_equal,
        compile=args.compile,
    )
    threshold = cc.threshold_from(args)
    allocator_defaults()  # expandable segments for this process's CUDA memory (and the ranks it spawns)
    ranks = Ranks.from_env()
    root = model_dir(cfg.out, cfg.model)
    follower = None
    if args.workers != 1 or ranks.world > 1:
        if ranks.world == 1:  # the launcher of --workers: reads the records while its ranks write them
            follower = RecordFollower(root)
        code = run_recorded(cfg, args, plan=lambda c, a: _run_parallel(c, a, ranks, follower), record=ranks.main)
    else:
        code = run_recorded(cfg, args)
    if code is not None:
        return code
    recs = cc.run_records(cfg, root, follower)
    summary = summarise(recs)
    if summary:
        print()
        print(cli_headline(recs, root))
        print(f"\nmean over generation tasks (%, 95% CI); effective length: {threshold.describe()}")
        print(ruler_table(summary, threshold, rope_equal=rope_equal_lengths(recs)))
    ppl = perplexities(recs)
    for task in sorted({k[2] for k in ppl}):
        print(f"\n{task}")
        print(perplexity_table(ppl, task))
    print(f"\nrecords: {root}   full report: ropeshift report {root}")
    return 0


def _load_on(args, device, **kw):
    """``cc.load`` on one rank's device (module level, so spawned workers can unpickle it); ``kw`` as there
    (``launch.run_rank``: the ranks share rank 0's tokenizer, and compile on a model without weights first)."""
    return cc.load(argparse.Namespace(**{**vars(args), "device": device}), **kw)


def _tokenizer_of(args):
    """The tokenizer of ``args.model`` alone (module level, so spawned workers can unpickle it)."""
    from ropeshift.loader import load_tokenizer

    return load_tokenizer(args.model)


def _while_running(cfg, follower):
    """The launcher's work while its ranks run (``parallel.spawn``'s ``idle``): ``follower`` reads the records
    written since its last call, and the RoPE-equality checks of their methods are made (the summary's, before it
    needs them: ``report_headline.prefetch_rope_lengths``)."""
    from ropeshift.eval.report_headline import prefetch_rope_lengths

    failed = []

    def idle():
        new = follower.poll()  # never raises
        if failed:
            return
        try:
            prefetch_rope_lengths(new, cfg.lengths)
        except Exception as e:  # noqa: BLE001 - the summary makes the checks itself (and raises there)
            failed.append(e)
            warnings.warn(f"ropeshift: the summary's RoPE-equality checks failed during the run ({e}); they are "
                          "made again at the end", stacklevel=2)

    return idle


def _run_parallel(cfg, args, ranks, follower=None) -> int | None:
    """``--workers N`` or a torchrun rank: rank 0 prints the plan; None when rank 0 should print the summary.
    ``follower``: the launcher's ``RecordFollower`` of the run folder, polled while the workers run."""
    from functools import partial

    from ropeshift.eval.launch import run_rank, run_workers
    from ropeshift.eval.runner import format_plan

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if ranks.world > 1 and args.workers != 1:
        raise ValueError("--workers spawns its own ranks: leave it out under torchrun (WORLD_SIZE is set)")
    if ranks.main:
        print(format_plan(cfg))

    def check():  # every check cli_common.run_plan makes before loading; rank 0 prints its extra lines
        for line in cc.preflight(cfg, args):
            if ranks.main:
                print(line)

    if args.dry_run:
        check()
        return 0
    load, tokenizer = partial(_load_on, args), partial(_tokenizer_of, args)
    try:
        if ranks.world > 1:  # torchrun: each rank checks before it starts
            check()
            run_rank(cfg, load, args.device, not args.no_progress, args.model, tokenizer)
        else:  # the launcher checks while its workers start (their start-up is the study's critical path)
            run_workers(cfg, load, args.workers, args.device, not args.no_progress, args.model, tokenizer,
                        check=check, dtype=args.dtype,
                        idle=_while_running(cfg, follower) if follower is not None else None)
    except KeyboardInterrupt:
        print("\ninterrupted: finished samples are saved; rerun to resume (with any --workers)", file=sys.stderr)
        return 130
    except Exception as e:
        if type(e).__module__.startswith("torch.multiprocessing"):  # a worker died or raised
            lines = [line for line in str(e).splitlines() if line.strip()]
            why = lines[-1] if "Traceback" in str(e) else lines[0]  # a worker's exception, or its exit signal
            print(f"a worker stopped: {why}\nfinished samples are saved; rerun the same command to resume "
                  "(with any --workers)", file=sys.stderr)
            return 1
        raise
    return None if ranks.main else 0
