"""Entry point of the ``ropeshift`` command.

Each subcommand lives in its own module ``ropeshift.cli.<name>`` exposing
``add_parser(subparsers)`` (which sets ``func`` on its parser) and is imported
only when the CLI starts, never at ``import ropeshift``.

Run: ropeshift --help
"""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand name -> module under ropeshift.cli
SUBCOMMANDS = {
    "needle": "needle",
    "eval": "eval_cmd",
    "report": "report",
    "freq": "freq",
    "ls": "ls",
    "matrix": "matrix",
    "tune": "tune",
}

EPILOG = """examples:
  ropeshift needle --model smollm2-135m --methods rope,string --lengths 1k,2k,4k --depths 5
  ropeshift eval --model smollm2-135m --methods rope,string --tasks passkey,niah_single_1 --lengths 1k,2k --samples 5
  ropeshift report runs/smollm2-135m
  ropeshift tune --model smollm2-135m --method string --budget 600 --batch-size 16
  ropeshift matrix string --length 9 --shift 3 --window 1
  ropeshift ls
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ropeshift",
        description="Measure and extend the effective context length of RoPE language models (STRING and baselines).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        try:
            mod = importlib.import_module(f"ropeshift.cli.{module}")
        except ModuleNotFoundError as e:
            if e.name == f"ropeshift.cli.{module}":
                continue  # subcommand not built yet
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"ropeshift {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
