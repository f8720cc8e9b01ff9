"""Entry point of the ``ropeshift`` command.

Each subcommand lives in its own module ``ropeshift.cli.<name>`` exposing
``add_parser(subparsers)`` (which sets ``func`` on its parser) and is imported
only when the CLI starts, never at ``import ropeshift``.

Run: ropeshift --help
"""
from __future__ import annotations

import argparse
import importlib
import inspect
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


def _chosen(argv: list[str] | None) -> str | None:
    """The subcommand named in ``argv`` (None: no argv given, or none named)."""
    if argv is None:
        return None
    return next((a for a in argv if a in SUBCOMMANDS), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``argv``, subcommands other than the one named there are built without their
    generated method-parameter flags (which need the method classes, i.e. torch), so ``--help`` stays fast."""
    chosen = _chosen(argv)
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
        if "full" in inspect.signature(mod.add_parser).parameters:
            mod.add_parser(sub, full=argv is None or name == chosen)
        else:
            mod.add_parser(sub)
    return parser


def error_message(e: BaseException) -> str:
    """One line for a user mistake: the exception's message (an OSError's reason and file)."""
    if isinstance(e, OSError) and e.strerror:
        msg = f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    else:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    lines = [line for line in str(msg).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user mistakes print ``ropeshift CMD: error: ...`` (one line, no traceback) and return 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, OSError) as e:
        print(f"ropeshift {args.command}: error: {error_message(e)}", file=sys.stderr)
        return 2


def entry() -> None:
    """The ``ropeshift`` command (and ``python -m ropeshift.cli.main``): ``main``, then the process ends without
    the interpreter's teardown once the subcommand has returned (``ropeshift.process_exit``: ~1 s of a study's
    wall after torch and transformers were imported)."""
    code = main()
    from ropeshift import process_exit

    process_exit.exit_now(code)


if __name__ == "__main__":
    entry()
