"""Shared parameter checks for methods: messages name the method, the parameter and the allowed range."""
from __future__ import annotations


def check_int(method: str, field: str, value, *, low: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{method}: {field} must be an int number of tokens, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{method}: {field} must be >= {low}, got {value}")


def check_logit_scale(method: str, value) -> None:
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and value > 0):
        raise ValueError(f"{method}: logit_scale must be a positive number, got {value!r}")


def resolve_length(method: str, info, train_length):
    """L: the explicit ``train_length`` if given (validated), else the model's."""
    if train_length is not None:
        check_int(method, "train_length", train_length, low=1)
        return train_length
    return info.train_length


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
