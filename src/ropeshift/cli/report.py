"""``ropeshift report RUNDIR``: tables, plots and one self-contained HTML page from stored records.

Writes report.md, summary.csv, PNGs (length curve with 95 % bands, depth x length heatmaps per method,
score-by-depth curves, perplexity vs length) and report.html (images embedded) into ``--out`` (default
RUNDIR/report), and prints the markdown: first the headline (per method, effective length by RULER's absolute
rule and by the relative rule, mean over [L/2, L] and its paired gain over rope, then one sentence), the run
details, then the tables (Wilson intervals, paired differences from rope per length).

Run: ropeshift report runs/smollm2-135m --threshold 85.6
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ropeshift.eval import cli_common as cc

EXAMPLES = """examples:
  ropeshift report runs/smollm2-135m                      # effective length at 0.85 x shortest-length score
  ropeshift report runs/smollm2-135m --threshold 85.6     # RULER's absolute pass mark
  ropeshift report runs/ --out /tmp/report --no-plots
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report", help="tables, heatmaps and an HTML page from stored results",
        description=__doc__.split("\n\n")[1], epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("rundir", type=Path, help="a results folder (runs/, or runs/<model>)")
    p.add_argument("--out", type=Path, default=None, help="where to write the report (default: RUNDIR/report)")
    p.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib needed)")
    cc.add_threshold_args(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ropeshift.eval.report_build import build_report

    if not args.rundir.is_dir():
        raise FileNotFoundError(f"no results folder {args.rundir}")
    cc.check_stored(args.rundir)
    out = args.out or args.rundir / "report"
    rep = build_report(args.rundir, out, cc.threshold_from(args), plots=not args.no_plots)
    print(rep.markdown)
    print(f"\nwrote {len(rep.files)} files to {out}; open {out / 'report.html'}")
    return 0
