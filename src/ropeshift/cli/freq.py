"""``ropeshift freq``: the STRING paper's position-frequency analysis for a length distribution.

Computes f(i) = sum_s max(|s| - i, 0) over sequences of at most L tokens, plots f(i)/f(0) against
i with L/3 and L/2 marked, and prints the share of all position pairs at distance >= L/2 (and L/3).

Run: ropeshift freq --train-length 8192 --dist natural,uniform,concatenated --plot freq.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  ropeshift freq --train-length 8192                                   # the three synthetic distributions
  ropeshift freq --train-length 4096 --lengths-file doc_lengths.txt    # one length per line
  ropeshift freq --train-length 2048 --folder corpus/ --tokenizer smollm2-135m --plot freq.png
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "freq", help="position-frequency analysis f(i) of a length distribution (STRING paper)",
        description=__doc__.split("\n\n")[1], epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--train-length", type=int, default=8192, help="training length L in tokens (default: 8192)")
    p.add_argument("--dist", default="natural,uniform,concatenated",
                   help="synthetic distributions to include: natural, uniform, concatenated ('' for none)")
    p.add_argument("--docs", type=int, default=20000, help="documents per synthetic distribution (default: 20000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lengths-file", default=None, help="file with one document length (tokens) per line")
    p.add_argument("--folder", default=None, help="folder of .txt documents to measure")
    p.add_argument("--tokenizer", default=None,
                   help="model whose tokenizer measures --folder (embedded name or local folder; default: words)")
    p.add_argument("--plot", type=Path, default=None, help="write the plot to this PNG")
    p.set_defaults(func=run)
    return p


def _tokenizer(name: str):
    from transformers import AutoTokenizer

    from ropeshift.loader import resolve_model_path

    folder, gguf = resolve_model_path(name)
    kw = {"gguf_file": gguf} if gguf else {}
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **kw)


def run(args) -> int:
    from ropeshift.eval import freq

    L = args.train_length
    if L < 2:
        raise ValueError(f"--train-length must be >= 2, got {L}")
    if args.docs < 1:
        raise ValueError(f"--docs must be >= 1, got {args.docs}")
    sources = {}
    for kind in [d.strip() for d in args.dist.split(",") if d.strip()]:
        sources[kind] = freq.synthetic_lengths(kind, L, args.docs, args.seed)
    if args.lengths_file:
        sources[Path(args.lengths_file).name] = freq.lengths_from_file(args.lengths_file)
    if args.folder:
        tok = _tokenizer(args.tokenizer) if args.tokenizer else None
        sources[Path(args.folder).name or args.folder] = freq.lengths_from_folder(args.folder, tok)
    if not sources:
        raise ValueError("nothing to analyse: give --dist, --lengths-file or --folder")
    curves = {name: freq.position_frequency(lengths, L) for name, lengths in sources.items()}
    print(f"L = {L}: share of all position pairs at relative distance >= L/3 and >= L/2")
    print(f"{'distribution':<24} {'docs':>8} {'>= L/3':>9} {'>= L/2':>9}")
    for name, f in curves.items():
        print(f"{name:<24} {len(sources[name]):>8} {100 * freq.share_beyond(f, L // 3):>8.2f}% "
              f"{100 * freq.share_beyond(f, L // 2):>8.2f}%")
    if args.plot:
        freq.plot(curves, L, args.plot)
        print(f"plot: {args.plot}")
    return 0
