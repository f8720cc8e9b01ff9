"""CLI flags generated from the methods' parameter metadata (``ropeshift.params.Param``).

Every parameter of every registered method becomes one flag (``target_length`` -> ``--target-length``). A flag
shared by several methods (``--window``: string, rerope, self_extend; ``--factor``: every RoPE-scaling method)
sets that parameter of each method in ``--methods`` that takes it; per-method values go in ``--method-config``.

    add_method_flags(parser)                            # needle, eval, matrix
    flag_values(args)                                   # {"factor": 2.0, "window": 64} (flags given)
    split_flags(("rope", "yarn"), {"factor": 2.0})      # {"yarn": {"factor": 2.0}}
"""
from __future__ import annotations

import argparse


def method_params() -> dict[str, list[tuple[str, object]]]:
    """parameter name -> [(method name, Param)] over every registered method, in registry order."""
    from ..methods.registry import METHODS

    out: dict[str, list] = {}
    for name, cls in METHODS.items():
        for p in cls.PARAMS:
            out.setdefault(p.name, []).append((name, p))
    return out


def method_takes(method: str) -> list[str]:
    """The parameter names ``method`` takes ("rope" takes none)."""
    from ..methods.registry import METHODS

    return [] if method == "rope" else [p.name for p in METHODS[method].PARAMS]


def _number(text: str):
    """An int if the text is one, else a float (ratios, factors); argparse reports other text."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None


def _numbers(text: str) -> list:
    """Comma-separated numbers: "1,1.5,2" -> [1, 1.5, 2]."""
    parts = [t.strip() for t in text.split(",") if t.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected comma-separated numbers, got nothing")
    return [_number(t) for t in parts]


def _parser_for(kinds: set[str]):
    if "floats" in kinds:
        return _numbers, "N,N,..."
    if kinds == {"int"}:
        return _integer, "INT"
    return _number, "NUM"


def _help(owners: list[tuple[str, object]]) -> str:
    groups: dict[tuple, list[str]] = {}
    for method, p in owners:
        groups.setdefault((p.help, p.default_text()), []).append(method)
    parts = [f"{', '.join(ms)}: {help_} (default: {default})" for (help_, default), ms in groups.items()]
    return "; ".join(parts).replace("%", "%%")


def add_method_flags(parser, *, title: str = "method parameters (generated from each method's metadata)"):
    """One flag per parameter name; ``dest`` is the parameter name, default None (= the method's default)."""
    g = parser.add_argument_group(title)
    for name, owners in method_params().items():
        kind, metavar = _parser_for({p.kind for _, p in owners})
        g.add_argument(owners[0][1].flag, dest=name, type=kind, default=None, metavar=metavar, help=_help(owners))
    return g


def flag_values(args) -> dict:
    """The method-parameter flags the user gave: {parameter name: value}."""
    return {name: getattr(args, name) for name in method_params() if getattr(args, name, None) is not None}


def split_flags(methods: tuple[str, ...], values: dict) -> dict[str, dict]:
    """{method: {param: value}}: each flag goes to every method in ``methods`` that takes it; a flag that no
    listed method takes is an error naming the methods that do."""
    out: dict[str, dict] = {m: {} for m in methods}
    owners = method_params()
    for name, value in values.items():
        takers = [m for m in methods if name in method_takes(m)]
        if not takers:
            flag = "--" + name.replace("_", "-")
            who = [m for m, _ in owners.get(name, [])]
            quoted = ", ".join(repr(m) for m in who)
            verb = "is" if len(who) == 1 else "are"
            raise ValueError(f"{flag} sets a parameter of {quoted}, but {quoted} {verb} not in --methods "
                             f"({', '.join(methods)})")
        for m in takers:
            out[m][name] = value
    return out
