"""Greedy decoding over a static KV cache, one captured CUDA graph replayed per step (``generation.generate``'s
CUDA path).

    tokens = static_generate(model, ids, mask, stopper, max_new=64, graphs=True)   # [b, <= 64] int64, CPU

Why: ``model.generate`` spends 17-28 ms of host time per decode step of a 30-layer model (~1,150 kernel launches,
~250 us per attention call) while the GPU works a few ms (benchmarks/RESULTS.md, issue 10). Here the prompt is
prefilled once eagerly into transformers' ``StaticCache``; one decode step (forward, argmax, next inputs) is
captured as a CUDA graph over fixed buffers and replayed::

    ids_buf [b, 1]         the step's input token          (written by the previous replay)
    pos_buf [b, 1]         its position: valid tokens of the row before it (+1 per replay)
    mask    [b, cache]     prompt mask, then ones: every later slot is the row's own token
    tok_buf [b]            the step's argmax               (copied to the history after each replay)

The cache's own offset tensor advances inside the graph (``StaticLayer.update``); ropeshift's attention runs in
static decode mode (``ropeshift.attention.interface``: the whole buffer, a device-side written length), so no
step needs the host. Rows that have ended keep decoding (fixed shapes) and are cut at their end by the caller's
stopper; its checks see the new tokens every ``check_every`` steps (one small device-to-host copy).

``graphs=False`` runs the same steps eagerly (CPU tests: its texts equal ``model.generate``'s). Greedy argmax
like ``generate`` with no logits processors; ties go to the lowest token id in both.
"""
from __future__ import annotations

import contextlib
import inspect
import os

import torch

GRAPHS_ENV = "ROPESHIFT_CUDA_GRAPHS"  # "0": model.generate on CUDA too (the escape hatch)
WARMUP_STEPS = 2  # eager steps on a side stream before capture (PyTorch's CUDA-graph recipe); real steps


def graphs_enabled() -> bool:
    return os.environ.get(GRAPHS_ENV, "1") != "0"


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
    """ropeshift's attention in static decode mode for the duration (no-op on an unpatched model)."""
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


def cache_kwarg(model) -> str:
    """The forward's cache keyword: ``cache`` (transformers >= 5.2x) or ``past_key_values`` (5.17)."""
    params = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def static_generate(model, ids, mask, stopper, *, max_new: int, graphs: bool, check_every: int = 1):
    """Greedy continuation of a left-padded batch; returns the new tokens [b, n] int64 on the CPU, n <= max_new
    (the batch stops once ``stopper`` has ended every row; the caller cuts each row at ``stopper.ends``).

    ids, mask [b, n0] (left padding, on the model's device); ``stopper(tokens [b, t] CPU, None)`` is the
    ``_row_stopper`` object: called once per new token with every new token so far, it returns [b] bool (row
    ended). graphs: capture and replay one step (CUDA); False: the same steps eagerly. check_every: steps between
    stopper checks (the batch may run up to check_every - 1 steps past its last row's end)."""
    from transformers import StaticCache

    b, n0 = ids.shape
    device = ids.device
    cache = StaticCache(config=model.config, max_cache_len=n0 + max_new)
    cache_kw = {cache_kwarg(model): cache}
    hist = torch.empty(b, max_new, dtype=torch.long, device=device)
    host = torch.empty(b, max_new, dtype=torch.long)
    checked = 0

    def check(n: int) -> bool:
        """Feed the stopper tokens [checked, n); True when every row has ended."""
        nonlocal checked
        if n <= checked:
            return False
        host[:, checked:n] = hist[:, checked:n].cpu()
        done = False
        for t in range(checked + 1, n + 1):
            done = bool(stopper(host[:, :t], None).all())
            if done:
                n = t
                break
        checked = n
        return done

    pos = mask.long().cumsum(-1) - 1
    pos = pos.masked_fill(mask == 0, 0)
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                       **cache_kw).logits
        hist[:, 0] = logits[:, -1].argmax(-1)
        if max_new == 1 or check(1):
            return host[:, :checked]
        ids_buf = hist[:, :1].clone()
        pos_buf = pos[:, -1:] + 1
        full_mask = torch.cat((mask.long(), mask.new_ones(b, max_new).long()), dim=1)
        tok_buf = torch.empty(b, dtype=torch.long, device=device)

        def step():
            out = model(input_ids=ids_buf, attention_mask=full_mask, position_ids=pos_buf, use_cache=True,
                        **cache_kw).logits
            tok_buf.copy_(out[:, -1].argmax(-1))
            ids_buf.copy_(tok_buf[:, None])
            pos_buf.add_(1)

        with static_decode_mode(model):
            t = 1
            graph = None
            if graphs:
                side = torch.cuda.Stream(device)
                side.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side):
                    while t < min(max_new, 1 + WARMUP_STEPS):  # real steps, eager, on the side stream
                        step()
                        hist[:, t] = tok_buf
                        t += 1
                torch.cuda.current_stream(device).wait_stream(side)
                if check(t) or t == max_new:
                    return host[:, :checked]
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):  # recorded, not run: the cache and buffers are untouched
                    step()
            while t < max_new:
                if graph is not None:
                    graph.replay()
                else:
                    step()
                hist[:, t] = tok_buf
                t += 1
                if (t - checked >= check_every or t == max_new) and check(t):
                    break
            check(t)
    return host[:, :checked]


__all__ = ["GRAPHS_ENV", "cache_kwarg", "graph_decode_reason", "graphs_enabled", "static_decode_mode",
           "static_generate"]
