"""Method settings files: the JSON that ``ropeshift tune`` writes and ``apply(model, config=PATH)`` reads.

The format is the one ``ropeshift eval --method-config`` takes: an object mapping method names to the keyword
parameters of ``ropeshift.apply``::

    {"string": {"shift": 2048, "window": 64, "train_length": 8192, "logit_scale": 1.0}}

    write_settings("tuned.json", "string", {"shift": 2048, "window": 64})
    ropeshift.apply(model, config="tuned.json")                    # method and parameters from the file
    ropeshift.apply(model, "string", **read_settings("tuned.json")["string"])   # the same thing
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def read_settings(path) -> dict[str, dict]:
    """The file's ``{method: {param: value}}`` object; a clear one-line error for a missing or malformed file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"config: settings file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"config: {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not data or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f'config: {path} must map method names to parameter objects, e.g. {{"string": {{"shift": 2048}}}}')
    return data


def method_settings(path, method: str | None = None) -> tuple[str, dict]:
    """``(method, params)`` from the file: the only entry, or the one named ``method``."""
    data = read_settings(path)
    if method is None:
        if len(data) != 1:
            raise ValueError(f"config: {path} holds settings for {', '.join(data)}; pass the method name too")
        method = next(iter(data))
    if method not in data:
        raise ValueError(f"config: {path} has no settings for {method!r}; it holds: {', '.join(data)}")
    return method, dict(data[method])


def write_settings(path, method: str, params: dict) -> Path:
    """Write ``{method: params}`` atomically (parameters must be JSON values); return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps({method: params}, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return p
