"""Property-based tests (hypothesis) over architecture x method x parameters x length x batch x padding side x
cache type x dtype, on tiny random-init models (``tests/tiny_models.py``).

Properties, each checked on drawn scenarios:
  * ``torch`` impl == ``reference`` impl (the fp64 oracle), and ``ropeshift.remove`` restores the model exactly;
  * a padded batch (left, right, or none) == each row alone: batched == alone, padded == unpadded;
  * prefill == decode: logits of a prefill followed by decode steps (1 or 2 tokens each) over a dynamic or a
    static KV cache equal the logits of one prefill, and the static cache equals the dynamic one.

Lengths are drawn near each method's region edges (STRING's S and W, ReRoPE's w, Self-Extend's w_n and G,
DCA's chunk stride s, C and 2s, LM-Infinite's n_local, L_d and n_global; each -1, 0, +1) or anywhere up to 40.
Tolerances: fp32 absolute 1e-4; bf16 calibrated per architecture as 4 x the unpatched model's own bf16 error
(max |logits_bf16 - logits_fp32|) + 1e-3.

Budget: every test draws up to ``ROPESHIFT_PROPERTY_EXAMPLES`` examples (default 20) and all of them share a
wall-clock budget of ``ROPESHIFT_PROPERTY_BUDGET_S`` seconds (default 150); examples past the budget return
at once. With the environment variable CI set the examples are derandomized (a fixed seed); locally each run
draws new ones (a failure prints the ``@reproduce_failure`` blob).

Run: pytest tests/test_properties.py -q   (ROPESHIFT_PROPERTY_EXAMPLES=200 ROPESHIFT_PROPERTY_BUDGET_S=3600 for a
long local search)
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field

import pytest
import torch

import ropeshift

from .tiny_models import ARCHS, pad_rows, tiny_model, with_cache

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("ROPESHIFT_PROPERTY_EXAMPLES", "20"))
BUDGET_S = float(os.environ.get("ROPESHIFT_PROPERTY_BUDGET_S", "150"))
MAX_LEN = 40
FP32_ATOL = 1e-4
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_START = time.monotonic()
_FAILING: set[str] = set()  # tests that have failed once: their replays (shrinking) ignore the budget


def budgeted(test):
    """Run an example only while the module's wall-clock budget lasts (a failing test keeps running, so
    hypothesis can replay and shrink its failure)."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        if test.__name__ not in _FAILING and time.monotonic() - _START > BUDGET_S:
            event("skipped: time budget spent")
            return
        try:
            test(*args, **kwargs)
        except Exception:
            _FAILING.add(test.__name__)
            raise

    return run


# ---- scenarios -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    arch: str
    dtype: torch.dtype
    method: str
    params: dict = field(hash=False)
    lengths: tuple[int, ...]  # one per batch row
    side: str  # "left" | "right" | "none"
    cache: str  # "dynamic" | "static"
    position_ids: str | None  # None | "arange" | "cumsum": what the padded forward passes
    decode: int  # tokens (columns) decoded after the prefill
    step: int  # tokens per decode step


@st.composite
def method_params(draw):
    """(registry name, apply params, region edges in tokens)."""
    kind = draw(st.sampled_from(["string", "rerope", "rerope_leaky", "self_extend", "dca", "lm_infinite"]))
    if kind == "string":
        s = draw(st.integers(2, 16))
        w = draw(st.integers(0, s - 1))
        return "string", dict(shift=s, window=w), (s, w)
    if kind.startswith("rerope"):
        w = draw(st.integers(1, 16))
        params = dict(window=w)
        if kind == "rerope_leaky":
            params["leaky"] = draw(st.sampled_from([1.5, 2.0, 4.0, 16.0]))
        return "rerope", params, (w,)
    if kind == "self_extend":
        g = draw(st.integers(1, 4))
        w = g * draw(st.integers(1, 4))
        return "self_extend", dict(group_size=g, window=w), (w, g, 2 * w)
    if kind == "dca":
        c = draw(st.integers(2, 14))
        w = draw(st.integers(0, c - 1))
        s = c - w
        return "dca", dict(chunk_size=c, local_window=w), (s, c, 2 * s, s + w + 1)
    g = draw(st.integers(0, 4))
    loc = draw(st.integers(1, 16))
    lim = draw(st.integers(1, 16))
    return "lm_infinite", dict(n_global=g, n_local=loc, distance_limit=lim), (loc, lim, g, loc + g)


def lengths_near(edges):
    near = sorted({e + o for e in edges for o in (-1, 0, 1) if 1 <= e + o <= MAX_LEN})
    anywhere = st.integers(1, MAX_LEN)
    return st.one_of(st.sampled_from(near), anywhere) if near else anywhere


@st.composite
def scenarios(draw, dtypes=(torch.float32, torch.bfloat16)):
    method, params, edges = draw(method_params())
    side = draw(st.sampled_from(["none", "left", "right"]))
    batch = draw(st.integers(1, 3))
    first = draw(lengths_near(edges))
    if side == "none":
        lengths = (first,) * batch
    else:
        lengths = (first, *(draw(st.integers(1, MAX_LEN)) for _ in range(batch - 1)))
    decode = draw(st.integers(1, min(4, max(lengths) - 1))) if max(lengths) > 1 else 0
    return Scenario(
        arch=draw(st.sampled_from(ARCHS)),
        dtype=draw(st.sampled_from(dtypes)),
        method=method,
        params=params,
        lengths=lengths,
        side=side,
        cache=draw(st.sampled_from(["dynamic", "static"])),
        position_ids=draw(st.sampled_from([None, "arange", "cumsum"])),
        decode=decode,
        step=draw(st.integers(1, 2)),
    )


# ---- helpers ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _model(arch: str, dtype: torch.dtype):
    return tiny_model(arch, dtype=dtype)


@functools.lru_cache(maxsize=None)
def _bf16_noise(arch: str) -> float:
    """max |logits_bf16 - logits_fp32| of the unpatched model on a random batch: bf16's own error here."""
    ids = torch.randint(3, 128, (3, MAX_LEN), generator=torch.Generator().manual_seed(3))
    return (_logits(_model(arch, torch.bfloat16), ids) - _logits(_model(arch, torch.float32), ids)).abs().max().item()


def _atol(sc: Scenario) -> float:
    return FP32_ATOL if sc.dtype == torch.float32 else 4 * _bf16_noise(sc.arch) + 1e-3


def _logits(model, ids, **kw):
    with torch.no_grad():
        return model(ids, **kw).logits.float()


def _rows(sc: Scenario) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(hash(sc.lengths) % 2**31)
    return [torch.randint(3, 128, (n,), generator=gen) for n in sc.lengths]


def _layout(sc: Scenario, rows):
    """ids, mask [b, width] and, per row, the slice of its valid columns."""
    ids, mask = pad_rows(rows, sc.side)
    width = ids.shape[1]
    slices = [slice(width - len(r), width) if sc.side == "left" else slice(0, len(r)) for r in rows]
    return ids, mask, slices


def _position_ids(kind, mask):
    if kind is None:
        return None
    if kind == "arange":
        return torch.arange(mask.shape[1])[None].expand_as(mask)
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _close(actual, expected, atol, what):
    err = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert err <= atol, f"{what}: max |diff| {err:.3g} > {atol:.3g}"


def _valid(x, mask):
    """The valid positions of logits x [b, l, v] under mask [b, l], flattened [n, v]."""
    return x[mask.bool()]


def _applied(model, sc: Scenario, impl: str):
    ropeshift.apply(model, sc.method, impl=impl, **sc.params)
    return model


# ---- properties ------------------------------------------------------------------------------------------


@SETTINGS
@given(sc=scenarios())
@budgeted
def test_impls_agree_and_remove_restores(sc):
    model = _model(sc.arch, sc.dtype)
    ids, mask, _ = _layout(sc, _rows(sc))
    kw = dict(attention_mask=mask, position_ids=_position_ids(sc.position_ids, mask))
    base = _logits(model, ids, **kw)
    try:
        out = _logits(_applied(model, sc, "torch"), ids, **kw)
        ref = _logits(_applied(model, sc, "reference"), ids, **kw)
    finally:
        ropeshift.remove(model)
    _close(_valid(out, mask), _valid(ref, mask), _atol(sc), "torch vs reference")
    assert torch.equal(_logits(model, ids, **kw), base), "remove did not restore the model exactly"
    assert model.config._attn_implementation == "sdpa" and not hasattr(model.config, "ropeshift")


@SETTINGS
@given(sc=scenarios(), impl=st.sampled_from(["torch", "reference"]))
@budgeted
def test_padded_batch_equals_rows_alone(sc, impl):
    model = _model(sc.arch, sc.dtype)
    rows = _rows(sc)
    ids, mask, slices = _layout(sc, rows)
    _applied(model, sc, impl)
    try:
        out = _logits(model, ids, attention_mask=mask, position_ids=_position_ids(sc.position_ids, mask))
        for i, (r, sl) in enumerate(zip(rows, slices)):
            _close(out[i, sl], _logits(model, r[None])[0], _atol(sc), f"row {i} in the batch vs alone")
    finally:
        ropeshift.remove(model)


def _decode(model, sc: Scenario, ids, mask, cache_kind: str):
    """Logits [b, width, v] from a prefill of all but ``sc.decode`` columns then decode steps of ``sc.step``
    columns over a fresh cache. Right padding puts new tokens after padding (a mask with holes), so steps pass
    position_ids = cumsum(mask) - 1 there (and in the prefill when drawn)."""
    from transformers import DynamicCache, StaticCache

    width = ids.shape[1]
    if cache_kind == "static":
        cache = StaticCache(config=model.config, max_cache_len=width + 3)
    else:
        cache = DynamicCache(config=model.config)
    pid_all = (mask.cumsum(-1) - 1).clamp(min=0)
    explicit = sc.side == "right" or sc.position_ids == "cumsum"
    outs, start = [], 0
    for stop in [width - sc.decode, *range(width - sc.decode + sc.step, width, sc.step), width]:
        if stop <= start:
            continue
        kw = dict(attention_mask=mask[:, :stop], **with_cache(model, cache), use_cache=True)
        if explicit:
            kw["position_ids"] = pid_all[:, start:stop]
        outs.append(_logits(model, ids[:, start:stop], **kw))
        start = stop
    return torch.cat(outs, 1)


@SETTINGS
@given(sc=scenarios())
@budgeted
def test_prefill_equals_decode_and_static_equals_dynamic(sc):
    if sc.decode == 0:
        return
    model = _model(sc.arch, sc.dtype)
    ids, mask, _ = _layout(sc, _rows(sc))
    _applied(model, sc, "torch")
    try:
        full = _logits(model, ids, attention_mask=mask)
        stepped = _decode(model, sc, ids, mask, sc.cache)
        _close(_valid(stepped, mask), _valid(full, mask), _atol(sc), f"prefill vs decode ({sc.cache} cache)")
        if sc.cache == "static":
            dynamic = _decode(model, sc, ids, mask, "dynamic")
            _close(_valid(stepped, mask), _valid(dynamic, mask), _atol(sc), "static vs dynamic cache")
    finally:
        ropeshift.remove(model)
