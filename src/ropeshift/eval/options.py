"""Parsing of user-facing run options: context lengths ("4k"), name lists, method specs.

    parse_lengths("1k,2k,6000")      -> (1024, 2048, 6000)
    parse_names("rope,string")       -> ("rope", "string")
    method_specs(["rope", "string"], shift=2048, window=128, config_path=None)   # flags: any method parameter

A method spec is a method name plus the parameters passed to ``ropeshift.apply``; its ``label``
names the results folder, so two settings of one method never share a file.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

_LENGTH_RE = re.compile(r"^(\d+(?:\.\d+)?)([kKmM]?)$")


def parse_length(text: str) -> int:
    """Parse "4k" (= 4096), "1.5k" (= 1536), "1m" (= 1048576) or a plain token count."""
    m = _LENGTH_RE.match(text.strip())
    if not m:
        raise ValueError(f"bad length {text!r}: use a token count such as 4096, 4k or 1.5k")
    value = float(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2}[m.group(2).lower()]
    if value != int(value) or value <= 0:
        raise ValueError(f"bad length {text!r}: must be a positive whole number of tokens")
    return int(value)


def parse_lengths(text: str) -> tuple[int, ...]:
    lengths = tuple(parse_length(t) for t in text.split(",") if t.strip())
    if not lengths:
        raise ValueError("--lengths is empty: give e.g. 1k,2k,4k")
    if len(set(lengths)) != len(lengths):
        raise ValueError(f"--lengths has duplicates: {text}")
    return tuple(sorted(lengths))


def parse_names(text: str, what: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    if not names:
        raise ValueError(f"--{what} is empty")
    if len(set(names)) != len(names):
        raise ValueError(f"--{what} has duplicates: {text}")
    return names


def format_length(n: int) -> str:
    """4096 -> "4k", 6144 -> "6k", 1536 -> "1.5k", 1000 -> "1000"."""
    if n % 1024 == 0:
        return f"{n // 1024}k"
    if (n * 2) % 1024 == 0:
        return f"{n / 1024:g}k"
    return str(n)


@dataclass(frozen=True)
class MethodSpec:
    """A method name and the keyword parameters given to ``ropeshift.apply``."""

    name: str
    params: dict = field(default_factory=dict, hash=False)
    alias: str | None = None  # a preset's row name (e.g. "yarn@fair"); overrides the derived label

    @property
    def label(self) -> str:
        """Folder/table name: the alias if any, else the method name plus the user-set parameters if any."""
        if self.alias:
            return self.alias
        if not self.params:
            return self.name
        parts = [f"{k}{v}" for k, v in sorted(self.params.items())]
        return re.sub(r"[^A-Za-z0-9._=+-]", "_", "-".join([self.name, *parts]))


def check_method_names(names) -> None:
    """Unknown method names raise (with "did you mean") before anything else runs."""
    from ..registry import UnknownNameError
    from ..methods.registry import METHODS

    for name in names:
        if name != "rope" and name not in METHODS:
            raise UnknownNameError(METHODS.unknown_message(name).replace("Available: ", "Available: rope, "))


def method_specs(names: tuple[str, ...], *, config_path: str | None = None, **flags) -> tuple[MethodSpec, ...]:
    """Build method specs. ``flags`` are method-parameter flags by parameter name (None: not given); each goes
    to every method in ``names`` that takes it (an error when none does). ``config_path`` is a JSON object
    {method: {param: value}} for any method; flags win over it. Values are validated later, against the model's
    config (``ropeshift.eval.cli_common.preflight``)."""
    from ..cli.method_flags import split_flags

    check_method_names(names)
    config: dict = {}
    if config_path:
        try:
            config = json.loads(Path(config_path).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"--method-config file not found: {config_path}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"--method-config {config_path} is not valid JSON: {e}") from None
        if not isinstance(config, dict) or not all(isinstance(v, dict) for v in config.values()):
            raise ValueError(f"--method-config {config_path} must map method names to parameter objects")
        unused = set(config) - set(names)
        if unused:
            raise ValueError(f"--method-config names methods not in --methods: {', '.join(sorted(unused))}")
    by_method = split_flags(tuple(names), {k: v for k, v in flags.items() if v is not None})
    return tuple(MethodSpec(name, {**config.get(name, {}), **by_method[name]}) for name in names)
