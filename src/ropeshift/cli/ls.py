"""``ropeshift ls``: the registered methods (one line each, with the defaults declared in their parameter
metadata, ``ropeshift.params.Param``) and, when the eval harness is
installed, the registered tasks.

Run: ropeshift ls
"""
from __future__ import annotations

def _method_rows() -> list[tuple[str, str, str, str]]:
    from ..params import describe_defaults
    from ..methods.registry import METHODS

    rows = [("rope", "-", "the unpatched model (same as ropeshift.remove)", "")]
    for name, cls in METHODS.items():
        kind = getattr(cls, "kind", "attention")
        defaults = describe_defaults(tuple(p for p in cls.PARAMS if p.name != "train_length"))
        rows.append((name, kind, cls.summary, defaults))
    return rows


def _task_rows() -> list[tuple[str, str]] | None:
    try:
        from ..eval.tasks import DESCRIPTIONS, TASKS
    except ImportError:  # the eval harness is optional
        return None
    return [(name, DESCRIPTIONS.get(name, "")) for name in TASKS.names()]


def run(args) -> int:
    rows = _method_rows()
    width = max(len(r[0]) for r in rows)
    kind_width = max(len(r[1]) for r in rows)
    print("methods (L = training length, config.max_position_embeddings unless train_length= is given):")
    for name, kind, summary, defaults in rows:
        print(f"  {name:<{width}}  {kind:<{kind_width}}  {summary}")
        if defaults:
            print(f"  {'':<{width}}  {'':<{kind_width}}  defaults: {defaults}")
    tasks = _task_rows()
    if tasks:
        tw = max(len(t[0]) for t in tasks)
        print("\ntasks:")
        for name, desc in tasks:
            print(f"  {name:<{tw}}  {desc}")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("ls", help="list methods (with defaults) and tasks",
                              description="List the registered context methods with their defaults, and the eval tasks.")
    p.set_defaults(func=run)
