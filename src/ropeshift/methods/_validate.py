"""Shared parameter checks for methods: messages name the method, the parameter and the allowed range."""
from __future__ import annotations

from ..params import LOGIT_SCALE


def check_int(method: str, field: str, value, *, low: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{method}: {field} must be an int number of tokens, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{method}: {field} must be >= {low}, got {value}")


def check_logit_scale(method: str, value) -> None:
    LOGIT_SCALE.check(method, value)


def check_fields(method) -> None:
    """Check every dataclass field of ``method`` that is also a declared ``Param`` (type, finiteness, range)."""
    for p in type(method).PARAMS:
        if hasattr(method, p.name):
            p.check(method.name, getattr(method, p.name))


def resolve_length(method: str, info, train_length):
    """L: the explicit ``train_length`` if given (validated), else the model's."""
    if train_length is not None:
        check_int(method, "train_length", train_length, low=1)
        return train_length
    return info.train_length


def check_length_at_least(method: str, length, minimum: int, why: str) -> None:
    """A one-line error when L is too short for the method's defaults to exist at all."""
    if length is not None and length < minimum:
        raise ValueError(f"{method}: the training length L={length} is too short: {why} needs L >= {minimum}")


def ratio_or_tokens(method: str, field: str, value, length, default_ratio: float) -> int:
    """An int token count as is, or a float ratio of L in (0, 1] turned into tokens (at least 1)."""
    if value is None:
        value = default_ratio
    if isinstance(value, float):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{method}: a float {field} is a ratio of L and must be in (0, 1], got {value}")
        if length is None:
            raise ValueError(f"{method}: a {field} ratio needs the training length; pass train_length= or an int {field}")
        return max(1, int(value * length))
    return value
