"""``ropeshift matrix METHOD``: print a method's relative-position matrix rel(m, n) for positions 0..length-1.

Rows are queries m, columns keys n; '.' marks keys the method does not attend. The training length L defaults
to ``--length``, so ratio defaults (STRING's 0.33 L, ReRoPE's L/4, ...) resolve against the drawn size.

    ropeshift matrix string --length 9 --shift 3 --window 1      # the STRING paper's Figure 5
    ropeshift matrix dca --length 12 --chunk-size 5 --local-window 1
    ropeshift matrix lm_infinite --length 12 --n-global 2 --n-local 4 --distance-limit 6
"""
from __future__ import annotations

import argparse


def format_matrix(method, length: int) -> str:
    """The lower triangle of ``ropeshift.methods.base.draw_matrix`` (fractional distances included)."""
    from ..methods.base import draw_matrix

    return draw_matrix(method, length, full=False)


def build_method(name: str, length: int, params: dict):
    """The method ``name`` resolved with ``params`` and L = ``params["train_length"]`` or ``length``."""
    from ..api import method_class
    from ..params import resolve_method
    from ..methods.base import ModelInfo
    from ..methods.registry import is_rope_scaling
    from .method_flags import method_takes

    if name == "rope":
        if params:
            raise ValueError(f"rope (the unpatched model) takes no parameters, got {', '.join(sorted(params))}")
        from ..methods.plain import PlainMethod

        return PlainMethod()  # rel = d
    cls = method_class(name)
    if is_rope_scaling(cls):
        raise ValueError(
            f"{name} is a RoPE-scaling method: it changes RoPE frequencies, not positions, so its matrix is plain "
            "rel = d (see `ropeshift matrix rope`)"
        )
    takes = method_takes(name)
    unknown = ["--" + p.replace("_", "-") for p in params if p not in takes]
    if unknown:
        flags = ", ".join("--" + p.replace("_", "-") for p in takes)
        raise ValueError(f"{name} does not take {', '.join(unknown)}; its flags: {flags}")
    params = dict(params)
    train_length = params.pop("train_length", length)
    info = ModelInfo(model_type="matrix", train_length=train_length, rope_type="default", head_dim=0, rotary_dim=0)
    return resolve_method(cls, info, {**params, "train_length": train_length})


def run(args) -> int:
    from .method_flags import flag_values

    if args.length < 1:
        raise ValueError(f"--length must be an int >= 1, got {args.length}")
    method = build_method(args.method, args.length, flag_values(args))
    if args.method != "rope":
        shown = {k: v for k, v in method.params().items() if k != "logit_scale" or v != 1.0}
        print(f"{args.method}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    print(format_matrix(method, args.length))
    return 0


def add_parser(subparsers, full: bool = True) -> None:
    p = subparsers.add_parser(
        "matrix", help="print a method's relative-position matrix",
        description="Print rel(m, n), the relative distance RoPE sees for query m and key n ('.' = not attended).",
        epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("method", help="method name (see `ropeshift ls`)")
    p.add_argument("--length", type=int, default=12, help="number of positions to draw (default 12); also L "
                   "unless --train-length is given")
    if full:
        from .method_flags import add_method_flags

        add_method_flags(p)
    p.set_defaults(func=run)
