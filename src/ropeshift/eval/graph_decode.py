"""Greedy decoding over a static KV cache, one captured CUDA graph replayed per step (``generation.generate``'s
CUDA path).

    tokens = static_generate(model, ids, mask, stopper, max_new=64, graphs=True)   # [b, <= 64] int64, CPU

Why: ``model.generate`` spends 17-28 ms of host time per decode step of a 30-layer model (~1,150 kernel launches,
~250 us per attention call) while the GPU works a few ms (benchmarks/RESULTS.md, issue 10). Here the prompt is
prefilled once eagerly into transformers' ``StaticCache``; one decode step (forward, argmax, next inputs) is
captured as a CUDA graph over fixed buffers and replayed::

    ids  [k, 1]         the step's input token          (written by the previous replay)
    pos  [k, 1]         its position: valid tokens of the row before it (+1 per replay)
    mask [k, cache]     prompt mask, then ones: every later slot is the row's own token
    tok  [k]            the step's argmax               (copied to the history after each replay)

The cache's own offset tensor advances inside the graph (``StaticLayer.update``); ropeshift's attention runs in
static decode mode (``ropeshift.attention.interface``: the whole buffer, a device-side written length), so no
step needs the host. The caller's stopper sees the new tokens every ``check_every`` steps (one small
device-to-host copy) and cuts each row at its end. Rows that have ended keep decoding (fixed shapes) to the
batch's end, but stop reading their keys: at the check that ends a row its mask is zeroed below the slot the
next step writes (``retire``), so from then on the row attends to its own new keys only, and the kernels skip
the tiles below each row's first valid key (its KV cache is no longer read; no shape changes, no capture)::

    slot       0 1 2 3 4 5 6 7 8 9        prompt 0..5, row ended at the check after slot 6 was written
    mask       1 1 1 1 1 1 1 1 1 1        open row: every written slot is read
    retired    0 0 0 0 0 0 0 1 1 1        key_start = 7: tiles below it are never loaded

Off with ROPESHIFT_RETIRE_ROWS=0 (the ended rows' tokens after their ends change, nothing before them). With row
compaction on (``row_compaction``: off by default, ROPESHIFT_COMPACT_ROWS=1), once at
most half of the batch is open at a check, the loop goes on with the k open rows only (the cache's rows
selected, the buffers cut, the step captured again).

``graphs=False`` runs the same steps eagerly (CPU tests: its texts equal ``model.generate``'s). Greedy argmax
like ``generate`` with no logits processors; ties go to the lowest token id in both.

K1 cache (on by default; ROPESHIFT_K1_CACHE=0 turns it off): for the re-rotating methods (a far key map that is
not the identity) each layer keeps a second key buffer of pre-rotated keys during the loop
(``ropeshift.attention.far_cache``; +1 K buffer per layer, built at the first, eager decode step, dropped when
``static_decode_mode`` exits).

Memory: the warm-up steps and the capture run on one side stream per device, and PyTorch's cached cuBLAS
workspaces are dropped around both (``blas_workspaces_dropped``, as torch.compile's CUDA-graph trees do), so a
call leaves no allocation behind: PyTorch keeps a workspace per (cuBLAS handle, stream) for the life of the
process, 32 MiB each on Hopper, and a new stream per call (as before) added one per call.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import os
import time
from dataclasses import dataclass

import torch

from . import shared_prefill
from .row_compaction import COMPACT_ENV, Compaction, default_compaction, select_cache_rows

GRAPHS_ENV = "ROPESHIFT_CUDA_GRAPHS"  # "0": model.generate on CUDA too (the escape hatch)
RETIRE_ENV = "ROPESHIFT_RETIRE_ROWS"  # "0": ended rows keep reading their whole KV cache (module docstring)
WARMUP_STEPS = 2  # eager steps on a side stream before capture (PyTorch's CUDA-graph recipe); real steps
REWARM_STEPS = 1  # eager steps before the capture that follows a row compaction (new shapes: Triton, cuBLAS)


def graphs_enabled() -> bool:
    return os.environ.get(GRAPHS_ENV, "1") != "0"


def retire_enabled() -> bool:
    return os.environ.get(RETIRE_ENV, "1") != "0"


def retire_possible(model) -> bool:
    """Whether the evaluation's decode can retire ended rows on this model's device (CUDA, the graph loop and
    retire on): the runner then orders its work by length with every generation task in one bucket
    (``batching.decode_bucket``), and merges them for each method whose rows are retired (``ended_rows_free``)."""
    return next(model.parameters()).device.type == "cuda" and graphs_enabled() and retire_enabled()


def ended_rows_free(model) -> bool:
    """Whether the decode loop retires ended rows with the method now active: an ended row then costs a step its
    projections only (no KV reads), so answers of every budget can share a batch (``batching.cut_batches``)."""
    return retire_enabled() and graph_decode_reason(model) is None


def graph_decode_reason(model) -> str | None:
    """Why the CUDA-graph loop does not serve this model (None when it does): it needs CUDA, ropeshift's
    attention active (a method or ``plain``; the model's own SDPA attention is not captured here) and the
    Triton kernels serving the method's decode (the tiled fallback syncs with the host)."""
    from ropeshift.attention.dispatch import triton_unsupported_reason
    from ropeshift.attention.interface import ATTN_NAME
    from ropeshift.state import get_state

    if not graphs_enabled():
        return f"{GRAPHS_ENV}=0"
    param = next(model.parameters())
    if param.device.type != "cuda":
        return "the model is not on CUDA"
    if getattr(model.config, "_attn_implementation", None) != ATTN_NAME:
        return "no ropeshift attention on this model (its own attention is not captured)"
    state = get_state(model.config)
    if state.impl not in ("auto", "triton"):
        return f"impl={state.impl!r} (the graph loop needs the triton kernels)"
    cfg = model.config.get_text_config(decoder=True)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return triton_unsupported_reason(state.method, param.device, param.dtype, head_dim)


@contextlib.contextmanager
def static_decode_mode(model):
    """ropeshift's attention in static decode mode for the duration (no-op on an unpatched model); on exit the
    layers' K1 caches are dropped."""
    from ropeshift.state import get_state

    try:
        state = get_state(model.config)
    except RuntimeError:
        state = None
    if state is None:
        yield
        return
    before = state.static_decode
    state.static_decode = True
    try:
        yield
    finally:
        state.static_decode = before
        state.far_keys.clear()  # the K1 caches (``attention.far_cache``) die with the generation


@contextlib.contextmanager
def blas_workspaces_dropped():
    """Drop PyTorch's cached cuBLAS(Lt) workspaces on entry and on exit (a no-op where torch has no CUDA).

    PyTorch keeps one workspace per (cuBLAS handle, stream) for the life of the process (32 MiB each on Hopper),
    allocated by the first matmul on that stream. Around the eager warm-up, none is left for the side stream;
    around the capture, the captured matmuls get a workspace allocated inside the graph's private pool (released
    with the graph; replays use it safely) instead of one the process keeps; torch.compile's CUDA-graph trees do
    the same (``torch._inductor.cudagraph_trees.clear_cublas_manager``). The stream a later eager matmul runs on
    simply allocates its workspace again."""
    clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear is not None:
        clear()
    try:
        yield
    finally:
        if clear is not None:
            clear()


@functools.cache
def _side_stream(device) -> "torch.cuda.Stream":
    """One side stream per device for the warm-up steps and the capture (a new stream per call would strand its
    cached blocks in the allocator's per-stream free lists)."""
    return torch.cuda.Stream(device)


@functools.cache
def _cache_class():
    """transformers' ``StaticCache`` with its ``update`` left out of ``torch.compile``'s traces: a compiled
    attention forward (``dense_compile`` "layers") would otherwise specialise on each layer's cache entry
    (``cache.layers[layer_idx]``) and recompile per layer until dynamo's limit sends the rest back to eager.
    Without compile it is the same cache."""
    from transformers import StaticCache

    class EagerUpdateStaticCache(StaticCache):
        update = torch.compiler.disable(StaticCache.update)

    return EagerUpdateStaticCache


def cache_kwarg(model) -> str:
    """The forward's cache keyword: ``cache`` (transformers >= 5.2x) or ``past_key_values`` (5.17)."""
    params = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@dataclass(frozen=True)
class _Rows:
    """The fixed buffers of one decode step over the k rows still in the batch (k <= the caller's b)::

        index [k]        int64, CPU: each buffer row's row in the caller's batch
        slot  [k]        the same on the device (where each step's token goes in the history)
        ids   [k, 1]     the step's input token          (written by the previous step)
        pos   [k, 1]     its position: valid tokens of the row before it (+1 per step)
        mask  [k, cache] prompt mask, then ones: every later slot is the row's own token
        tok   [k]        the step's argmax
    """

    index: torch.Tensor
    slot: torch.Tensor
    ids: torch.Tensor
    pos: torch.Tensor
    mask: torch.Tensor
    tok: torch.Tensor

    def select(self, local: torch.Tensor) -> "_Rows":
        """The buffers of rows ``local`` ([k'] int64, CPU: positions in this batch), new tensors."""
        at = local.to(self.ids.device)
        return _Rows(self.index[local], *(x.index_select(0, at) for x in (self.slot, self.ids, self.pos, self.mask,
                                                                            self.tok)))


def _step(model, cache_kw: dict, r: _Rows) -> None:
    """One decode step over the batch's buffers (captured as the CUDA graph): forward, argmax, next inputs."""
    out = model(input_ids=r.ids, attention_mask=r.mask, position_ids=r.pos, use_cache=True, **cache_kw).logits
    r.tok.copy_(out[:, -1].argmax(-1))
    r.ids.copy_(r.tok[:, None])
    r.pos.add_(1)


def static_generate(model, ids, mask, stopper, *, max_new: int, graphs: bool, check_every: int = 1,
                    compaction: Compaction | None | str = "auto", stats: dict | None = None,
                    prefix: "shared_prefill.Plan | None" = None):
    """Greedy continuation of a left-padded batch; returns the new tokens [b, n] int64 on the CPU, n <= max_new
    (the batch stops once ``stopper`` has ended every row; the caller cuts each row at ``stopper.ends``).

    ids, mask [b, n0] (left padding, on the model's device); ``stopper(tokens [b, t] CPU, None)`` is the
    ``_row_stopper`` object: called once per new token with every new token so far, it returns [b] bool (row
    ended); a row it has ended stays ended (later answers are or-ed in). graphs: capture and replay one step
    (CUDA); False: the same steps eagerly. check_every: steps between stopper checks (the batch may run up to
    check_every - 1 steps past its last row's end). compaction: when to drop the ended rows from the batch
    (``row_compaction``; "auto": ``default_compaction()``, None: never); a dropped row's tokens after its end are
    0 here (before its end they are the tokens it would decode in the whole batch). stats: a dict that gets the
    call's wall seconds per phase (``prefill_s``: the prompt's forward and first token; ``capture_s``: eager
    warm-up steps and graph captures; ``decode_s``: the loop's steps, replayed graphs or eager; ``check_s``: the
    stopper, inside the other phases), ``steps`` (forwards, the prefill's included: the tokens each row got),
    ``decode_steps`` (the forwards inside ``decode_s``), ``compactions`` and ``retired`` (rows that stopped reading
    their keys before the batch's end), and ``prefill_queries`` (query slots computed, of b x n0) when the prefill
    shared prefixes; each phase ends at a host sync. prefix: a ``shared_prefill.plan`` of the rows (``generate``
    makes one when ROPESHIFT_SHARE_PREFIX=1): the prompt forward shares their prefixes."""
    clock = time.perf_counter
    t_start = clock()
    spent = {"prefill_s": 0.0, "capture_s": 0.0, "decode_s": 0.0, "check_s": 0.0, "decode_steps": 0,
             "compactions": 0, "retired": 0}
    retiring = retire_enabled()
    policy = default_compaction() if compaction == "auto" else compaction
    b, n0 = ids.shape
    device = ids.device
    cache = _cache_class()(config=model.config, max_cache_len=n0 + max_new)
    cache_kw = {cache_kwarg(model): cache}
    hist = torch.zeros(b, max_new, dtype=torch.long, device=device)
    host = torch.zeros(b, max_new, dtype=torch.long)
    ended = torch.zeros(b, dtype=torch.bool)
    checked = 0

    def check(n: int) -> bool:
        """Feed the stopper tokens [checked, n); True when every row has ended."""
        nonlocal checked
        if n <= checked:
            return False
        host[:, checked:n] = hist[:, checked:n].cpu()
        t0 = clock()
        for t in range(checked + 1, n + 1):
            ended.logical_or_(torch.as_tensor(stopper(host[:, :t], None)).cpu().bool())
            if ended.all():
                n = t
                break
        checked = n
        spent["check_s"] += clock() - t0
        return bool(ended.all())

    def compact(r: _Rows, t: int) -> _Rows:
        """``r``, or the buffers of its open rows (and the cache cut to them) when the policy asks for it."""
        if policy is None:
            return r
        is_open = ~ended[r.index]
        local = is_open.nonzero().flatten()
        if not policy.wants(len(local), len(r.index), max_new - t):
            return r
        pad = (~is_open).nonzero().flatten()[:policy.kept(len(local)) - len(local)]  # ended rows, up to min_rows
        local = torch.cat((local, pad)).sort().values
        select_cache_rows(cache, local.to(device))
        spent["compactions"] += 1
        return r.select(local)

    retired = torch.zeros(b, dtype=torch.bool)

    def retire(r: _Rows, t: int) -> None:
        """Rows of ``r`` ended since the last call stop reading their keys: their mask is zeroed below slot
        n0 + t - 1, the one the next step writes (the step that makes token t), in place (graph-safe)."""
        if not retiring:
            return
        newly = (ended & ~retired)[r.index]
        if not bool(newly.any()):
            return
        local = newly.nonzero().flatten()
        retired[r.index[local]] = True
        r.mask[local.to(device), :n0 + t - 1] = 0
        spent["retired"] += len(local)

    def record(r: _Rows, t: int) -> None:
        hist[:, t].index_copy_(0, r.slot, r.tok)

    pos = mask.long().cumsum(-1) - 1
    pos = pos.masked_fill(mask == 0, 0)
    with torch.inference_mode():
        if prefix is None:
            last = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                         **cache_kw).logits[:, -1]
        else:  # rows sharing prompt prefixes: each shared prefix computed once (``shared_prefill``)
            last = shared_prefill.prefill(model, cache_kwarg(model), ids, mask, pos, cache, prefix)
            spent["prefill_queries"] = prefix.tokens(n0)
        hist[:, 0] = last.argmax(-1)
        first = check(1)
        spent["prefill_s"] = clock() - t_start
        if first or max_new == 1:  # the stopper sees the first token even when it is the last
            return _done(host[:, :checked], spent, stats, 1)
        rows = torch.arange(b)
        r = _Rows(rows, rows.to(device), hist[:, :1].clone(), pos[:, -1:] + 1,
                  torch.cat((mask.long(), mask.new_ones(b, max_new).long()), dim=1),
                  torch.empty(b, dtype=torch.long, device=device))
        r = compact(r, 1)
        retire(r, 1)
        with static_decode_mode(model):
            t, warm, done = 1, WARMUP_STEPS, False
            while not done and t < max_new:  # one pass per batch size
                graph = None
                t_phase = clock()
                if graphs:
                    side = _side_stream(device)
                    side.wait_stream(torch.cuda.current_stream(device))
                    with blas_workspaces_dropped(), torch.cuda.stream(side):
                        for _ in range(min(warm, max_new - t)):  # real steps, eager, on the side stream
                            _step(model, cache_kw, r)
                            record(r, t)
                            t += 1
                    torch.cuda.current_stream(device).wait_stream(side)
                    warm = REWARM_STEPS
                    if check(t) or t == max_new:
                        spent["capture_s"] += clock() - t_phase
                        break
                    smaller = compact(r, t)
                    if smaller is not r:
                        r = smaller
                        spent["capture_s"] += clock() - t_phase
                        continue
                    retire(r, t)
                    graph = torch.cuda.CUDAGraph()
                    # recorded, not run: the cache and buffers are untouched
                    with blas_workspaces_dropped(), torch.cuda.graph(graph, stream=side):
                        _step(model, cache_kw, r)
                    spent["capture_s"] += clock() - t_phase
                t_phase = clock()
                while t < max_new:
                    if graph is not None:
                        graph.replay()
                    else:
                        _step(model, cache_kw, r)
                    record(r, t)
                    t += 1
                    spent["decode_steps"] += 1
                    if t - checked >= check_every or t == max_new:
                        if check(t):
                            done = True
                            break
                        smaller = compact(r, t)
                        if smaller is not r:
                            r = smaller
                            break
                        retire(r, t)
                spent["decode_s"] += clock() - t_phase
                if graph is not None:
                    graph.reset()  # its memory pool goes back before the next capture
            check(t)
    return _done(host[:, :checked], spent, stats, t)


def _done(tokens, spent: dict, stats: dict | None, steps: int):
    """``tokens``, after copying the call's phase times and step count into ``stats`` (when given)."""
    if stats is not None:
        stats.update(spent, steps=steps)
    return tokens


__all__ = ["COMPACT_ENV", "GRAPHS_ENV", "blas_workspaces_dropped", "cache_kwarg", "graph_decode_reason",
           "graphs_enabled", "static_decode_mode", "static_generate"]
