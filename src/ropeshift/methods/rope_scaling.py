"""RoPE-scaling baselines through transformers' own ``config.rope_parameters`` (no RoPE maths of our own).

    ropeshift.apply(model, "yarn", factor=2)             # or target_length=2 * L
    ropeshift.apply(model, "string")                     # composes: STRING shift on top of YaRN frequencies
    ropeshift.remove(model)                              # original rope_parameters and rotary modules again

| name          | rope_type | what changes                                                          |
|---------------|-----------|-----------------------------------------------------------------------|
| `pi`          | linear    | positions interpolated: inv_freq / factor                             |
| `ntk`         | default   | static NTK-aware: rope_theta * factor^(r / (r - 2)), r = rotary dims  |
| `dynamic_ntk` | dynamic   | NTK base recomputed from the input length once it exceeds L           |
| `yarn`        | yarn      | per-frequency ramp between interpolation and extrapolation, mscale    |
| `llama3`      | llama3    | wavelength-piecewise remap (Llama 3.1)                                |
| `longrope`    | longrope  | user-given per-frequency short/long factors                           |

``factor`` (>= 1) or ``target_length`` (factor = target_length / L, L = ``config.max_position_embeddings`` or
``train_length``) is required. ``apply_rope_scaling`` resolves and validates everything before touching the
model, stores the original ``rope_parameters`` in ``model.config.ropeshift["rope"]``, writes the new parameters
and rebuilds every rotary embedding module from the config (a new instance of the model's own rotary class,
placed on the old one's device and dtype, swapped in on its parent). ``remove_rope_scaling`` restores both.
Scaling only from the model's own unscaled ("default") RoPE: transformers cannot stack two rope types.
"""
from __future__ import annotations

import copy
import inspect
import math
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

from ..params import TRAIN_LENGTH, Param

RECORD = "ropeshift"
MAX_FACTOR = 1e4  # context x 10 000: far beyond any published use, and rope_theta stays finite

FACTOR = Param("factor", "float", "context extension factor (>= 1); or give target_length",
               default="target_length / L (one of the two is required)", low=1, high=MAX_FACTOR)
TARGET_LENGTH = Param("target_length", "int", "target context length in tokens (>= L): factor = target_length / L",
                      default="L x factor", low=1)
_BASE_PARAMS = (FACTOR, TARGET_LENGTH, TRAIN_LENGTH)


def _check_factor(name, factor):
    FACTOR.check(name, factor)


def _check_own_fields(method) -> None:
    """Type, finiteness and range of every declared parameter that is a dataclass field."""
    for p in type(method).PARAMS:
        if p.name in ("factor", "train_length"):
            continue
        if hasattr(method, p.name):
            p.check(method.name, getattr(method, p.name))


@dataclass(frozen=True)
class RopeScaling:
    """A RoPE-scaling method with a concrete factor; subclasses build the new ``rope_parameters``."""

    factor: float
    train_length: int

    kind: ClassVar[str] = "rope_scaling"
    name: ClassVar[str]
    rope_type: ClassVar[str]
    summary: ClassVar[str] = ""
    PARAMS: ClassVar[tuple[Param, ...]] = _BASE_PARAMS

    def __post_init__(self):
        _check_factor(self.name, self.factor)
        if isinstance(self.train_length, bool) or not isinstance(self.train_length, int) or self.train_length < 1:
            raise ValueError(f"{self.name}: train_length must be a positive int, got {self.train_length!r}")
        _check_own_fields(self)

    @classmethod
    def resolve(cls, info, *, factor=None, target_length=None, train_length=None, **extra):
        """``factor`` or ``target_length`` (exactly one); ``extra`` are the subclass's own fields."""
        own = [f.name for f in fields(cls) if f.name not in ("factor", "train_length")]
        unknown = sorted(set(extra) - set(own))
        if unknown:
            allowed = ", ".join(["factor", "target_length", "train_length", *own])
            raise ValueError(f"{cls.name}: unknown parameter(s) {', '.join(unknown)}; parameters are: {allowed}")
        length = train_length if train_length is not None else info.train_length
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"{cls.name}: needs the training length L (config.max_position_embeddings or train_length=)")
        if (factor is None) == (target_length is None):
            raise ValueError(f"{cls.name}: pass exactly one of factor= (>= 1) or target_length= (>= L={length})")
        if target_length is not None:
            if isinstance(target_length, bool) or not isinstance(target_length, int) or target_length < length:
                raise ValueError(f"{cls.name}: target_length must be an int >= L={length}, got {target_length!r}")
            factor = target_length / length
            if factor > MAX_FACTOR:
                raise ValueError(f"{cls.name}: target_length must be an int in [L, L x {MAX_FACTOR:g}] with "
                                 f"L={length}, got {target_length}")
        _check_factor(cls.name, factor)
        return cls(factor=float(factor), train_length=length, **extra)

    def params(self) -> dict:
        return asdict(self)

    def rope_parameters(self, original: dict, rotary_dim: int) -> dict:
        """The new ``config.rope_parameters`` (a ``transformers`` ``RopeParameters``)."""
        from transformers.modeling_rope_utils import RopeParameters

        return RopeParameters(**self._fields(original, rotary_dim))

    def _fields(self, original: dict, rotary_dim: int) -> dict:
        keep = {k: original[k] for k in ("rope_theta", "partial_rotary_factor") if k in original}
        return {**keep, "rope_type": self.rope_type, "factor": self.factor}


@dataclass(frozen=True)
class PositionInterpolation(RopeScaling):
    name: ClassVar[str] = "pi"
    rope_type: ClassVar[str] = "linear"
    summary: ClassVar[str] = "position interpolation (transformers rope_type linear): inv_freq / factor"


@dataclass(frozen=True)
class StaticNTK(RopeScaling):
    name: ClassVar[str] = "ntk"
    rope_type: ClassVar[str] = "default"
    summary: ClassVar[str] = "static NTK-aware: rope_theta * factor^(r/(r-2)) (transformers rope_type default)"

    def _fields(self, original, rotary_dim):
        fields = super()._fields(original, rotary_dim)
        del fields["factor"]
        fields["rope_theta"] = float(original["rope_theta"]) * self.factor ** (rotary_dim / (rotary_dim - 2))
        return fields


@dataclass(frozen=True)
class DynamicNTK(RopeScaling):
    name: ClassVar[str] = "dynamic_ntk"
    rope_type: ClassVar[str] = "dynamic"
    summary: ClassVar[str] = "dynamic NTK: base rescaled from the input length beyond L (transformers rope_type dynamic)"


@dataclass(frozen=True)
class YaRN(RopeScaling):
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    attention_factor: float | None = None  # None: transformers' default 0.1 ln(factor) + 1

    name: ClassVar[str] = "yarn"
    rope_type: ClassVar[str] = "yarn"
    summary: ClassVar[str] = "YaRN: per-frequency interpolation ramp + attention temperature (transformers rope_type yarn)"
    PARAMS: ClassVar[tuple[Param, ...]] = (
        *_BASE_PARAMS,
        Param("beta_fast", "float", "YaRN ramp: frequencies with more than beta_fast turns in L extrapolate",
              default=32.0, low=0, low_open=True, high=1e4),
        Param("beta_slow", "float", "YaRN ramp: frequencies with fewer than beta_slow turns in L interpolate",
              default=1.0, low=0, low_open=True, high=1e4),
        Param("attention_factor", "float", "attention temperature (mscale) on cos/sin", default="0.1 ln(factor) + 1",
              low=0, low_open=True, high=100),
    )

    def __post_init__(self):
        super().__post_init__()
        for field in ("beta_fast", "beta_slow"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"yarn: {field} must be a positive number, got {value!r}")
        if self.beta_fast < self.beta_slow:
            raise ValueError(f"yarn: beta_fast must be >= beta_slow, got {self.beta_fast} < {self.beta_slow}")
        if self.attention_factor is not None and not (
            isinstance(self.attention_factor, (int, float)) and self.attention_factor > 0
        ):
            raise ValueError(f"yarn: attention_factor must be a positive number or None, got {self.attention_factor!r}")

    def _fields(self, original, rotary_dim):
        fields = super()._fields(original, rotary_dim)
        fields.update(original_max_position_embeddings=self.train_length, beta_fast=float(self.beta_fast),
                      beta_slow=float(self.beta_slow))
        if self.attention_factor is not None:
            fields["attention_factor"] = float(self.attention_factor)
        return fields


@dataclass(frozen=True)
class Llama3(RopeScaling):
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0

    name: ClassVar[str] = "llama3"
    rope_type: ClassVar[str] = "llama3"
    summary: ClassVar[str] = "Llama 3.1 wavelength-piecewise frequency remap (transformers rope_type llama3)"
    PARAMS: ClassVar[tuple[Param, ...]] = (
        *_BASE_PARAMS,
        Param("low_freq_factor", "float", "wavelengths beyond L / low_freq_factor are interpolated", default=1.0,
              low=0, low_open=True, high=1e4),
        Param("high_freq_factor", "float", "wavelengths below L / high_freq_factor are kept (> low_freq_factor)",
              default=4.0, low=0, low_open=True, high=1e4),
    )

    def __post_init__(self):
        super().__post_init__()
        lo, hi = self.low_freq_factor, self.high_freq_factor
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in (lo, hi)) or hi <= lo:
            raise ValueError(f"llama3: need 0 < low_freq_factor < high_freq_factor, got {lo!r}, {hi!r}")

    def _fields(self, original, rotary_dim):
        fields = super()._fields(original, rotary_dim)
        fields.update(original_max_position_embeddings=self.train_length, low_freq_factor=float(self.low_freq_factor),
                      high_freq_factor=float(self.high_freq_factor))
        return fields


@dataclass(frozen=True)
class LongRoPE(RopeScaling):
    short_factor: tuple = ()
    long_factor: tuple = ()
    attention_factor: float | None = None  # None: transformers' default sqrt(1 + ln(factor) / ln(L))

    name: ClassVar[str] = "longrope"
    rope_type: ClassVar[str] = "longrope"
    summary: ClassVar[str] = "LongRoPE with user-given per-frequency short_factor/long_factor (transformers rope_type longrope)"
    PARAMS: ClassVar[tuple[Param, ...]] = (
        *_BASE_PARAMS,
        Param("short_factor", "floats", "per-frequency factors for inputs <= L (rotary_dim / 2 numbers)",
              required=True, low=0, low_open=True, high=MAX_FACTOR),
        Param("long_factor", "floats", "per-frequency factors for inputs > L (rotary_dim / 2 numbers)",
              required=True, low=0, low_open=True, high=MAX_FACTOR),
        Param("attention_factor", "float", "attention temperature on cos/sin", default="sqrt(1 + ln(factor) / ln(L))",
              low=0, low_open=True, high=100),
    )

    def __post_init__(self):
        super().__post_init__()
        for field in ("short_factor", "long_factor"):
            value = getattr(self, field)
            if not value or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in value):
                raise ValueError(f"longrope: {field} must be a non-empty list of positive numbers (one per frequency)")
        if self.attention_factor is not None and not (
            isinstance(self.attention_factor, (int, float)) and self.attention_factor > 0
        ):
            raise ValueError(f"longrope: attention_factor must be a positive number or None, got {self.attention_factor!r}")

    @classmethod
    def resolve(cls, info, *, short_factor=None, long_factor=None, **kw):
        if short_factor is None or long_factor is None:
            raise ValueError("longrope: short_factor= and long_factor= (lists, one number per rotary frequency) are required")
        return super().resolve(info, short_factor=tuple(short_factor), long_factor=tuple(long_factor), **kw)

    def _fields(self, original, rotary_dim):
        if len(self.short_factor) != rotary_dim // 2 or len(self.long_factor) != rotary_dim // 2:
            raise ValueError(
                f"longrope: short_factor and long_factor need {rotary_dim // 2} numbers each (one per rotary "
                f"frequency), got {len(self.short_factor)} and {len(self.long_factor)}"
            )
        fields = super()._fields(original, rotary_dim)
        fields.update(original_max_position_embeddings=self.train_length, short_factor=list(self.short_factor),
                      long_factor=list(self.long_factor))
        if self.attention_factor is not None:
            fields["attention_factor"] = float(self.attention_factor)
        return fields


ROPE_SCALING_METHODS = (PositionInterpolation, StaticNTK, DynamicNTK, YaRN, Llama3, LongRoPE)


# ---------------------------------------------------------------------------------------------------------------
# model patching


def rebuild_rotary(sites) -> None:
    """Replace each rotary module by a new instance of its own class built from its (updated) config."""
    for parent, attr, old in sites:
        cls = type(old)
        kwargs = {}
        if "device" in inspect.signature(cls.__init__).parameters:
            kwargs["device"] = old.inv_freq.device
        new = cls(old.config, **kwargs)
        new.to(device=old.inv_freq.device)
        if old.inv_freq.dtype != new.inv_freq.dtype:
            new.to(dtype=old.inv_freq.dtype)
        new.train(old.training)
        setattr(parent, attr, new)


def _nested(rope_parameters: dict) -> bool:
    """True for per-layer-type RoPE (``{"full_attention": {...}, "sliding_attention": {...}}``)."""
    return any(isinstance(v, dict) for v in rope_parameters.values())


def apply_rope_scaling(model, cls, params: dict) -> None:
    """Resolve ``cls`` with ``params``, then rewrite the rope parameters and rebuild the rotary modules."""
    from ..params import resolve_method
    from ..rope import LENGTH_DEPENDENT_ROPE_TYPES, model_info, rotary_dim, rotary_sites

    record = dict(getattr(model.config, RECORD, None) or {})
    sites = rotary_sites(model)
    model_type = getattr(model.config, "model_type", type(model).__name__)
    if not sites:
        raise ValueError(f"unsupported: {model_type!r} has no rotary position embedding; {cls.name} scales RoPE")
    configs = {id(m.config): m.config for _, _, m in sites}
    if len(configs) != 1:
        raise ValueError(f"unsupported: {model_type!r} has rotary embeddings with several configs")
    config = next(iter(configs.values()))
    previous = record.get("rope")
    original = copy.deepcopy(previous["original_rope_parameters"] if previous else config.rope_parameters)
    if not isinstance(original, dict) or "rope_type" not in original or _nested(original):
        raise ValueError(f"unsupported: {model_type!r} uses per-layer-type RoPE; {cls.name} needs a single rotary embedding")
    if original["rope_type"] != "default":
        raise ValueError(
            f"unsupported: {model_type!r} already uses rope_type {original['rope_type']!r}; transformers cannot "
            f"stack {cls.rope_type!r} on it (scaling needs the model's own unscaled RoPE)"
        )
    if previous is None and "train_length" not in params:
        info = model_info(model)
    else:  # L of the unscaled model, as recorded
        info = model_info(model, previous["params"]["train_length"] if previous else None)
    method = resolve_method(cls, info, params)
    new = method.rope_parameters(original, rotary_dim(config))
    if record.get("attention") and new["rope_type"] in LENGTH_DEPENDENT_ROPE_TYPES:
        raise ValueError(
            f"unsupported: {cls.name} (rope_type {new['rope_type']!r}) changes frequencies with the input length; "
            f"it cannot be combined with the attention method {record['attention']['method']!r}"
        )
    probe = copy.deepcopy(config)  # let transformers validate before the model is touched
    probe.rope_parameters = copy.deepcopy(new)
    # transformers' checks compare against the extended length; the real config keeps L (methods read it)
    probe.max_position_embeddings = max(method.train_length, math.ceil(method.train_length * method.factor))
    probe.standardize_rope_params()
    probe.validate_rope()

    config.rope_parameters = new
    rebuild_rotary(sites)
    record["rope"] = {"method": cls.name, "params": method.params(), "original_rope_parameters": original,
                      "rope_parameters": copy.deepcopy(dict(new))}
    setattr(model.config, RECORD, record)


def remove_rope_scaling(model, rope_record: dict) -> None:
    """Restore the recorded original ``rope_parameters`` and rebuild the rotary modules from them."""
    from ..rope import rotary_sites

    sites = rotary_sites(model)
    for config in {id(m.config): m.config for _, _, m in sites}.values():
        config.rope_parameters = copy.deepcopy(rope_record["original_rope_parameters"])
    rebuild_rotary(sites)
    record = dict(getattr(model.config, RECORD, None) or {})
    record.pop("rope", None)
    setattr(model.config, RECORD, record)
