"""Parameter metadata: each method declares its user-facing parameters once; validation, ``ropeshift ls`` and
the CLI flags of ``needle``/``eval``/``matrix`` are generated from these declarations.

    PARAMS = (
        Param("shift", "tokens", "shift S: int tokens, or a ratio of L in (0, 1)", default="0.33 L", low=1),
        Param("logit_scale", "float", "constant logit multiplier", default=1.0, low=0, low_open=True),
    )
    check_params("string", PARAMS, {"shift": 2048})   # -> None, or ValueError naming parameter and range

Kinds (the type a value must have; ``bool`` is never a number):
  * ``int``:    an int;
  * ``float``:  a finite int or float;
  * ``tokens``: an int number of tokens, or a finite float ratio of L (the method checks the ratio's range);
  * ``floats``: a non-empty list/tuple of finite numbers (e.g. LongRoPE's per-frequency factors).
``low``/``high`` bound the value (ints and floats; a ``tokens`` ratio is checked by the method itself),
``low_open``/``high_open`` make a bound strict. ``default`` is a value, or a text for derived defaults
("0.33 L", "min(128, S // 4)"); ``required`` parameters have none. ``None`` is always accepted (= default).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

KINDS = ("int", "float", "tokens", "floats")
_KIND_TEXT = {
    "int": "an int",
    "float": "a finite number",
    "tokens": "an int number of tokens or a finite float ratio of L",
    "floats": "a non-empty list of finite numbers",
}


@dataclass(frozen=True)
class Param:
    """One user-facing parameter of a method (a keyword of its ``resolve``)."""

    name: str
    kind: str
    help: str
    default: object = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    required: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Param {self.name}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    @property
    def flag(self) -> str:
        """The CLI flag: ``--target-length`` for ``target_length``."""
        return "--" + self.name.replace("_", "-")

    def allowed(self) -> str:
        """The allowed values in words, e.g. "an int >= 1" or "a finite number > 0"."""
        text = _KIND_TEXT[self.kind]
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {_num_text(self.low)}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {_num_text(self.high)}")
        if bounds and self.kind == "tokens":
            return f"an int number of tokens {' and '.join(bounds)}, or a finite float ratio of L"
        if bounds and self.kind == "floats":
            return f"a non-empty list of finite numbers, each {' and '.join(bounds)}"
        return f"{text} {' and '.join(bounds)}".strip()

    def default_text(self) -> str:
        if self.required:
            return "required"
        if self.default is None:
            return "off"
        return self.default if isinstance(self.default, str) else _num_text(self.default)

    def check(self, method: str, value) -> None:
        """Raise ValueError "<method>: <name> must be <allowed>, got <value>" unless ``value`` fits."""
        if value is None:
            return
        if not self._fits(value):
            raise ValueError(f"{method}: {self.name} must be {self.allowed()}, got {_value_text(value)}")

    def _fits(self, value) -> bool:
        if self.kind == "floats":
            return (isinstance(value, (list, tuple)) and len(value) > 0
                    and all(_is_number(x) and self._in_range(x) for x in value))
        if self.kind == "int" and not _is_int(value):
            return False
        if self.kind in ("float", "tokens") and not _is_number(value):
            return False
        if self.kind == "tokens" and isinstance(value, float):
            return True  # a ratio: the method checks its range against L
        return self._in_range(value)

    def _in_range(self, x) -> bool:
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        if self.high is not None and (x >= self.high if self.high_open else x > self.high):
            return False
        return True


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return (_is_int(x) and abs(x) < 2**63) or (isinstance(x, float) and math.isfinite(x))


def _num_text(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _value_text(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def names(params: Iterable[Param]) -> list[str]:
    return [p.name for p in params]


def check_params(method: str, params: tuple[Param, ...], values: dict) -> None:
    """Reject unknown names, and values of the wrong type, non-finite or out of range, naming the parameter."""
    by_name = {p.name: p for p in params}
    unknown = sorted(k for k in values if k not in by_name)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(by_name), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"{method}: unknown parameter(s) {', '.join(unknown)}{hint}; parameters are: "
                         f"{', '.join(by_name)}")
    for name, value in values.items():
        by_name[name].check(method, value)


def resolve_method(cls, info, params: dict):
    """``cls.resolve(info, **params)`` after checking ``params`` against ``cls.PARAMS`` (one-line ValueErrors)."""
    check_params(cls.name, cls.PARAMS, params)
    return cls.resolve(info, **params)


def describe_defaults(params: tuple[Param, ...]) -> str:
    """One line "name=default, ..." (``ropeshift ls``)."""
    return ", ".join(f"{p.name}={p.default_text()}" for p in params)


# parameters every method shares
TRAIN_LENGTH = Param("train_length", "int", "training length L in tokens", default="config.max_position_embeddings",
                     low=1)
LOGIT_SCALE = Param("logit_scale", "float", "constant multiplier of q.k before the softmax", default=1.0,
                    low=0, low_open=True, high=100)
