"""Search spaces for ``ropeshift tune``: a grid per method over the parameters of its ``resolve()``.

    space = space_for("string", grid="shift=0.25,0.5;window=64,128", logit_scales=(1.0, 1.1434))
    cands, dropped = candidates("string", space, info)   # concrete, validated, de-duplicated settings

A grid axis over a length (``length=True``) takes floats in (0, 1] as ratios of the training length L and ints
as tokens; every candidate is turned into tokens before it runs, so the saved settings are exact. The
method's default point (the paper's settings, or the fair protocol for RoPE-scaling methods: factor 3/2 with
L' = 2L/3) is always one of the candidates, labelled ``default``. A candidate that the method refuses (e.g.
STRING's W >= S) is dropped with the method's own message. Each space is data keyed by the method's name.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field, fields, is_dataclass
from itertools import product

from ..registry import Registry
from .options import MethodSpec


@dataclass(frozen=True)
class Axis:
    """One searched parameter; ``length``: floats in (0, 1] are ratios of L, ints are tokens; None: the default."""

    name: str
    values: tuple
    length: bool = False


@dataclass(frozen=True)
class Space:
    """A grid (product of axes) plus the default point; ``fair``: each point also sets train_length = L/factor."""

    axes: tuple[Axis, ...]
    default: dict = field(default_factory=dict, hash=False)
    fair: bool = False

    def size(self) -> int:
        n = 1
        for a in self.axes:
            n *= len(a.values)
        return n


_SCALING = Space((Axis("factor", (1.25, 1.5, 2.0, 3.0)),), default={"factor": 1.5}, fair=True)
SPACES: Registry[Space] = Registry("search space")
SPACES.register("string", Space((Axis("shift", (0.2, 0.25, 0.33, 0.4, 0.5), length=True),
                                 Axis("window", (32, 64, 128, 256), length=True))))
SPACES.register("rerope", Space((Axis("window", (0.125, 0.25, 0.375, 0.5), length=True), Axis("leaky", (None, 16.0)))))
SPACES.register("self_extend", Space((Axis("group_size", (2, 4, 8, 16)),
                                      Axis("window", (1 / 32, 1 / 16, 1 / 8, 1 / 4), length=True))))
SPACES.register("dca", Space((Axis("chunk_size", (0.5, 0.625, 0.75, 0.875), length=True),
                              Axis("local_window", (1 / 32, 1 / 16, 1 / 8), length=True))))
SPACES.register("lm_infinite", Space((Axis("n_local", (0.25, 0.5, 0.75, 1.0), length=True),
                                      Axis("distance_limit", (0.25, 0.5, 0.75, 1.0), length=True))))
for _name in ("pi", "ntk", "dynamic_ntk", "yarn", "llama3", "longrope"):
    SPACES.register(_name, _SCALING)


def method_class(method: str):
    from ..methods.registry import METHODS

    return METHODS[method]


def allowed_params(method: str) -> list[str]:
    """The keyword parameters ``apply(model, method, ...)`` takes: ``resolve()``'s, plus the dataclass fields
    a ``**extra`` collects (RoPE-scaling methods)."""
    cls = method_class(method)
    sig = inspect.signature(cls.resolve).parameters
    names = [p.name for p in sig.values() if p.name not in ("info", "cls") and p.kind is not p.VAR_KEYWORD]
    if any(p.kind is p.VAR_KEYWORD for p in sig.values()) and is_dataclass(cls):
        names += [f.name for f in fields(cls) if f.name not in names]
    return names


def parse_value(text: str):
    """``64`` -> 64, ``0.25`` -> 0.25, ``none`` -> None, JSON (lists) as JSON, anything else as text."""
    t = text.strip()
    if t.lower() in ("none", "null"):
        return None
    try:
        return json.loads(t)
    except ValueError:
        return t


def parse_grid(text: str) -> dict[str, tuple]:
    """``"shift=0.25,0.5;window=64,128"`` -> ``{"shift": (0.25, 0.5), "window": (64, 128)}``."""
    out: dict[str, tuple] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, eq, values = part.partition("=")
        if not eq or not values.strip():
            raise ValueError(f"--grid: bad axis {part!r}: use name=v1,v2;name2=v3")
        out[name.strip()] = tuple(parse_value(v) for v in values.split(","))
    return out


def parse_fixed(items: list[str] | None) -> dict:
    """``["leaky=16", "short_factor=[1,1]"]`` -> fixed parameters for every candidate."""
    out = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"--set: bad parameter {item!r}: use name=value")
        out[name.strip()] = parse_value(value)
    return out


def _check_names(method: str, names, flag: str) -> None:
    allowed = allowed_params(method)
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ValueError(f"{flag}: {method} has no parameter {', '.join(bad)}; parameters are: {', '.join(allowed)}")


def space_for(method: str, grid: str | dict | None = None, logit_scales: tuple[float, ...] | None = None) -> Space:
    """The method's built-in space, with axes replaced or added from ``grid`` and a ``logit_scale`` axis."""
    method_class(method)  # unknown method -> "did you mean"
    base = SPACES[method] if method in SPACES else Space(())
    axes = {a.name: a for a in base.axes}
    if grid:
        spec = parse_grid(grid) if isinstance(grid, str) else dict(grid)
        _check_names(method, spec, "--grid")
        for name, values in spec.items():
            axes[name] = Axis(name, tuple(values), axes[name].length if name in axes else False)
    if logit_scales:
        _check_names(method, ["logit_scale"], "--logit-scale")
        axes["logit_scale"] = Axis("logit_scale", tuple(float(x) for x in logit_scales))
    if not axes:
        raise ValueError(f"{method}: no built-in search space; give one with --grid name=v1,v2")
    return Space(tuple(axes.values()), base.default, base.fair)


def to_tokens(value, length: int | None, name: str):
    """A ratio of L (float in (0, 1]) as int tokens; anything else unchanged."""
    if isinstance(value, float) and 0.0 < value <= 1.0:
        if length is None:
            raise ValueError(f"{name}: a ratio needs the training length; pass --train-length")
        return max(1, int(round(value * length)))
    return value


@dataclass(frozen=True)
class Candidate:
    """One setting: ``params`` as passed to ``apply`` (tokens), ``resolved`` the method's full parameters."""

    method: str
    params: dict = field(hash=False)
    resolved: dict = field(hash=False)
    default: bool = False

    @property
    def spec(self) -> MethodSpec:
        return MethodSpec(self.method, self.params)

    @property
    def label(self) -> str:
        return self.spec.label

    def describe(self, length: int | None) -> str:
        """``shift=2048 (0.25 L) window=64`` (lengths also as a ratio of L), ``default`` marked."""
        shown = self.params or {k: v for k, v in self.resolved.items() if k != "train_length"}
        parts = []
        for k, v in shown.items():
            big = length and isinstance(v, int) and k in _LENGTH_NAMES and v >= 0.05 * length
            parts.append(f"{k}={v}" + (f" ({v / length:.3g} L)" if big else ""))
        text = " ".join(parts)
        return f"{text}  [default]" if self.default else text


_LENGTH_NAMES = {a.name for _, sp in SPACES.items() for a in sp.axes if a.length} | {"train_length"}


def _point_params(space: Space, point: dict, length: int | None, fixed: dict) -> dict:
    params = {k: to_tokens(v, length, k) if _is_length(space, k) else v for k, v in point.items() if v is not None}
    if space.fair and "factor" in params and "train_length" not in fixed:
        if length is None:
            raise ValueError("the fair protocol (train_length = L / factor) needs the training length")
        params["train_length"] = max(1, int(round(length / params["factor"])))
    return {**params, **fixed}


def _is_length(space: Space, name: str) -> bool:
    return any(a.name == name and a.length for a in space.axes)


def candidates(method: str, space: Space, info, fixed: dict | None = None) -> tuple[list[Candidate], list[tuple[dict, str]]]:
    """The default point first, then the grid in order; invalid or duplicate settings dropped.

    ``info`` is the model's ``ModelInfo`` (its ``train_length`` is L). Returns ``(candidates, dropped)`` where
    ``dropped`` holds ``(params, reason)`` for each setting the method refused."""
    fixed = dict(fixed or {})
    _check_names(method, fixed, "--set")
    cls, length = method_class(method), fixed.get("train_length", info.train_length)
    if space.fair:
        length = info.train_length
    points = [(True, dict(space.default))]
    points += [(False, dict(zip([a.name for a in space.axes], combo))) for combo in product(*(a.values for a in space.axes))]
    out, dropped, seen = [], [], set()
    for is_default, point in points:
        try:
            params = _point_params(space, point, length, fixed)
            resolved = cls.resolve(info, **params).params()
        except (ValueError, TypeError) as e:
            if is_default and not point:
                raise ValueError(f"{method}: its default settings do not resolve: {e}") from None
            dropped.append((point, str(e)))
            continue
        key = json.dumps(resolved, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        out.append(Candidate(method, params, _jsonable(resolved), is_default))
    return out, dropped


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
