"""``ropeshift matrix METHOD``: print a method's relative-position matrix rel(m, n) for positions 0..length-1.

Rows are queries m, columns keys n; '.' marks keys the method does not attend. The training length L defaults
to ``--length``, so ratio defaults (STRING's 0.33 L, ReRoPE's L/4, ...) resolve against the drawn size.

    ropeshift matrix string --length 9 --shift 3 --window 1      # the STRING paper's Figure 5
    ropeshift matrix dca --length 12 --chunk-size 5 --local-window 1
    ropeshift matrix lm_infinite --length 12 --n-global 2 --n-local 4 --distance-limit 6
"""
from __future__ import annotations

import argparse

# flag -> (parameter name, type, help)
_PARAMS = {
    "--shift": ("shift", "num", "STRING shift S: tokens, or a ratio of L in (0, 1)"),
    "--window": ("window", "num", "STRING W / ReRoPE w / Self-Extend w_n: tokens (ReRoPE also a ratio of L)"),
    "--train-length": ("train_length", int, "training length L (default: --length)"),
    "--group-size": ("group_size", int, "Self-Extend group size G"),
    "--chunk-size": ("chunk_size", "num", "DCA chunk size C: tokens or ratio of L"),
    "--local-window": ("local_window", "num", "DCA local window w: tokens or ratio of L"),
    "--n-global": ("n_global", int, "LM-Infinite: number of leading tokens always attended"),
    "--n-local": ("n_local", int, "LM-Infinite: number of recent tokens attended"),
    "--distance-limit": ("distance_limit", int, "LM-Infinite: largest relative distance"),
    "--leaky": ("leaky", float, "leaky ReRoPE factor k > 1"),
    "--factor": ("factor", float, "RoPE scaling factor (frequency methods have no position matrix)"),
    "--target-length": ("target_length", int, "RoPE scaling target length"),
}


def _num(text: str):
    """An int token count, or a float ratio."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of tokens or a ratio, got {text!r}") from None


def format_matrix(method, length: int) -> str:
    """The lower triangle of ``ropeshift.remaps.base.draw_matrix`` (fractional distances included)."""
    from ..remaps.base import draw_matrix

    return draw_matrix(method, length, full=False)


class _Plain:
    """The unpatched model: rel = d."""

    def rel(self, d, qpos=None, kpos=None):
        return d

    def visible(self, d, qpos=None, kpos=None):
        return None


def build_method(name: str, length: int, params: dict):
    from ..api import _resolve
    from ..remaps.base import ModelInfo
    from ..remaps.registry import METHODS

    if name == "rope":
        if params:
            raise ValueError(f"rope (the unpatched model) takes no parameters, got {', '.join(sorted(params))}")
        return _Plain()
    cls = METHODS[name]
    if getattr(cls, "kind", "attention") == "rope_scaling":
        raise ValueError(
            f"{name} is a RoPE-scaling method: it changes RoPE frequencies, not positions, so its matrix is plain "
            "rel = d (see `ropeshift matrix rope`)"
        )
    import inspect

    accepted = set(inspect.signature(cls.resolve).parameters)
    flag = {name: f for f, (name, _, _) in _PARAMS.items()}
    unknown = [flag[p] for p in params if p not in accepted]
    if unknown:
        takes = [f for f, (name, _, _) in _PARAMS.items() if name in accepted]
        raise ValueError(f"{name} does not take {', '.join(unknown)}; its flags: {', '.join(takes)}")
    train_length = params.pop("train_length", length)
    info = ModelInfo(model_type="matrix", train_length=train_length, rope_type="default", head_dim=0, rotary_dim=0)
    return _resolve(cls, info, {**params, "train_length": train_length})


def run(args) -> int:
    if args.length < 1:
        raise ValueError(f"--length must be >= 1, got {args.length}")
    params = {name: getattr(args, name) for name, _, _ in _PARAMS.values() if getattr(args, name) is not None}
    method = build_method(args.method, args.length, params)
    if args.method != "rope":
        shown = {k: v for k, v in method.params().items() if k != "logit_scale" or v != 1.0}
        print(f"{args.method}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    print(format_matrix(method, args.length))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "matrix", help="print a method's relative-position matrix",
        description="Print rel(m, n), the relative distance RoPE sees for query m and key n ('.' = not attended).",
        epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("method", help="method name (see `ropeshift ls`)")
    p.add_argument("--length", type=int, default=12, help="number of positions to draw (default 12)")
    for flag, (name, typ, help_) in _PARAMS.items():
        p.add_argument(flag, dest=name, type=_num if typ == "num" else typ, default=None, help=help_)
    p.set_defaults(func=run)
