"""Query/key positions for one attention call, from the 2D key-valid mask and ``position_ids``.

Shapes: b batch, lq queries, lk keys (cache + new). ``key_valid`` [b, n] covers the key slots written so far
(n <= lk; slots n..lk-1 of a static cache are empty and never valid); the queries are the last lq written
slots n-lq..n-1. Returns qpos [b, lq], kpos [b, lk] (int64) and kvalid [b, lk] (bool).

Positions come from the mask: the valid keys of a row are numbered 0, 1, 2, ... in slot order, so a row
gets the positions it would have alone whatever its padding (left, right, or none)::

    mask  0 0 1 1 1      ->  kpos  . . 0 1 2        (left padding)
    mask  1 1 1 0 0      ->  kpos  0 1 2 . .        (right padding)

A decode step over the KV cache recovers the positions of cached keys the same way, without storing them.

``position_ids`` shift a row's numbering only when they are not transformers' own default (the slot index,
``arange`` from the cache length, which counts padding): then every position is offset so that the last
valid query gets exactly its ``position_ids`` value, e.g. a row continuing at position 40. The model's RoPE
saw ``position_ids``; it must agree with this numbering up to a constant per row, which
``inconsistent_rows`` checks (it fails for a mask with holes under default positions, or packed sequences).
"""
from __future__ import annotations

import torch


def _written_mask(key_valid, batch: int, lk: int, device) -> torch.Tensor:
    """key_valid as bool [batch, n] with n <= lk (a longer mask keeps its last lk columns)."""
    if key_valid is None:
        return torch.ones(batch, lk, dtype=torch.bool, device=device)
    if key_valid.dim() != 2:
        raise ValueError(f"expected a 2D key mask [batch, keys], got shape {tuple(key_valid.shape)}")
    kvalid = key_valid.to(device=device, dtype=torch.bool)
    if kvalid.shape[1] > lk:
        kvalid = kvalid[:, -lk:]
    if kvalid.shape[0] != batch:
        kvalid = kvalid.expand(batch, -1)
    return kvalid


def positions_from(position_ids, key_valid, batch: int, lq: int, lk: int, device) -> tuple[torch.Tensor, ...]:
    """(qpos [b, lq], kpos [b, lk], kvalid [b, lk]); see the module docstring. No host synchronisation."""
    written = _written_mask(key_valid, batch, lk, device)
    n = written.shape[1]
    if n < lq:
        raise ValueError(f"ropeshift: the key mask covers {n} keys, fewer than the {lq} queries")
    mpos = written.to(torch.int64).cumsum(-1) - 1  # [b, n]: valid keys numbered from 0 (padding: previous)
    q_mpos, q_valid = mpos[:, n - lq :], written[:, n - lq :]
    if position_ids is not None:
        pid = _expand_ids(position_ids, batch, lq, device)
        slots = torch.arange(n - lq, n, device=device)
        default = (pid == slots).all(-1)  # transformers' own index positions: use the mask's numbering
        last = torch.where(q_valid, torch.arange(lq, device=device), -1).amax(-1)  # last valid query, -1: none
        base = (pid - q_mpos).gather(1, last.clamp(min=0)[:, None]).squeeze(1)
        base = torch.where(default | (last < 0), torch.zeros_like(base), base)
        mpos = mpos + base[:, None]
        q_mpos = q_mpos + base[:, None]
    if n < lk:  # empty static-cache slots: never valid
        written = torch.cat((written, written.new_zeros(batch, lk - n)), dim=1)
        mpos = torch.cat((mpos, mpos[:, -1:].expand(batch, lk - n)), dim=1)
    return q_mpos, mpos, written


def inconsistent_rows(position_ids, key_valid, batch: int, lq: int, lk: int, device) -> list[int]:
    """Rows whose RoPE positions cannot agree with the mask's numbering (host sync; returns row indices).

    Under transformers' default index positions (or none) the valid keys must be contiguous: a mask with
    holes (e.g. decoding after right padding) numbers keys differently from the slot indices RoPE used.
    Under explicit ``position_ids`` the valid queries must follow the numbering up to one constant (packed
    sequences restarting at 0 do not)."""
    written = _written_mask(key_valid, batch, lk, device)
    n = written.shape[1]
    idx = torch.arange(n, device=device)
    big = torch.iinfo(torch.int64).max
    first = torch.where(written, idx, big).amin(-1)
    last = torch.where(written, idx, -1).amax(-1)
    holes = written.any(-1) & (last - first + 1 != written.sum(-1))
    if position_ids is None:
        return holes.nonzero().flatten().tolist()
    pid = _expand_ids(position_ids, batch, lq, device)
    default = (pid == idx[n - lq :]).all(-1)
    q_valid = written[:, n - lq :]
    diff = pid - written.to(torch.int64).cumsum(-1)[:, n - lq :]
    jumps = q_valid.any(-1) & (torch.where(q_valid, diff, -big).amax(-1) != torch.where(q_valid, diff, big).amin(-1))
    return torch.where(default, holes, jumps).nonzero().flatten().tolist()


def _expand_ids(position_ids, batch: int, lq: int, device) -> torch.Tensor:
    pid = position_ids.to(device=device, dtype=torch.int64)
    if pid.dim() == 1:
        pid = pid.unsqueeze(0)
    if pid.dim() != 2 or pid.shape[-1] != lq:
        raise ValueError(f"ropeshift: position_ids must have shape [batch, {lq}], got {tuple(position_ids.shape)}")
    return pid.expand(batch, lq)
