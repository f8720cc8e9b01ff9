"""Query/key positions for one attention call, from ``position_ids`` and the 2D key-valid mask.

Shapes: b batch, lq queries, lk keys (cache + new). Returns qpos [b, lq], kpos [b, lk] (int64), kvalid [b, lk].

Valid keys are numbered consecutively and end at the last query's position::

    kpos[j] = qpos[-1] - (number of valid keys after j)

so a left-padded row gets exactly the positions it would have alone, and a decode step over the KV cache
recovers the positions of cached keys without storing them. Without ``position_ids`` the HF convention
(cumulative count of valid keys, starting at 0) is used. Right padding is not supported (as in generation).
"""
from __future__ import annotations

import torch


def positions_from(position_ids, key_valid, batch: int, lq: int, lk: int, device) -> tuple[torch.Tensor, ...]:
    if key_valid is None:
        kvalid = torch.ones(batch, lk, dtype=torch.bool, device=device)
    else:
        if key_valid.dim() != 2:
            raise ValueError(f"expected a 2D key mask [batch, keys], got shape {tuple(key_valid.shape)}")
        kvalid = key_valid.to(device=device, dtype=torch.bool)
        if kvalid.shape[1] > lk:
            kvalid = kvalid[:, -lk:]
        elif kvalid.shape[1] < lk:  # e.g. a static cache longer than the mask: the extra slots are empty
            pad = torch.zeros(batch, lk - kvalid.shape[1], dtype=torch.bool, device=device)
            kvalid = torch.cat((kvalid, pad), dim=1)
        if kvalid.shape[0] != batch:
            kvalid = kvalid.expand(batch, -1)
    counts = kvalid.to(torch.int64).cumsum(-1)
    if position_ids is None:
        kpos = counts - 1
        qpos = kpos[:, lk - lq :]
    else:
        qpos = position_ids.to(device=device, dtype=torch.int64)
        if qpos.dim() == 1:
            qpos = qpos.unsqueeze(0)
        qpos = qpos.expand(batch, lq)
        after = counts[:, -1:] - counts  # valid keys strictly after j
        kpos = qpos[:, -1:] - after
    return qpos, kpos, kvalid
