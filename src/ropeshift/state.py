"""Runtime state of a patched model, keyed by its config object.

``model.config.ropeshift`` holds the serialisable record (method name, parameters, impl); this module keeps the
live objects the attention function needs (the frozen method, fp32 ``inv_freq`` per device, a warn-once flag).
Configs are unhashable, so the table is keyed by ``id(config)`` and guarded by a weak reference.
"""
from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass, field

import torch

_STATES: dict[int, tuple[weakref.ref, "RuntimeState"]] = {}


@dataclass
class RuntimeState:
    method: object
    impl: str
    inv_freq: torch.Tensor  # [r/2] fp32 on CPU
    train_length: int | None
    _on_device: dict = field(default_factory=dict)
    _warned: bool = False
    # every row's valid keys contiguous at the end (left padding or none), measured at layer 0 of the last
    # prefill and kept for its decode steps (which only append valid keys): the kernels' layout
    left_padded: bool | None = None
    # every key valid, measured with left_padded: a prefill with an all-ones mask then runs as one without a mask
    # (the fresh-prefill kernels: the Hopper kernel, the composed route), never a decode step
    unpadded: bool = False
    # the last attention call's positions, reused by the next layers of the same forward (same mask and
    # position_ids objects, same shapes): (position_ids, mask, shape key, (qpos, kpos, kvalid, memo dict))
    last_positions: tuple | None = None
    # one-query forwards get a mask over a static cache's whole buffer and run without host syncs or
    # data-dependent shapes (CUDA-graph decode, ``ropeshift.eval.graph_decode``): set by the decode loop
    static_decode: bool = False
    # layer -> (key buffer signature, K1): static decode's far keys pre-rotated (``attention.far_cache``); empty
    # outside static decode (``static_decode_mode`` clears it on exit)
    far_keys: dict = field(default_factory=dict)

    def inv_freq_on(self, device) -> torch.Tensor:
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = self.inv_freq.to(device)
        return self._on_device[key]

    def check_length(self, qpos: torch.Tensor) -> None:
        """Warn once when positions reach beyond the training length L."""
        if self._warned or self.train_length is None or torch.compiler.is_compiling():
            return
        if int(qpos.max()) >= self.train_length:
            self._warned = True
            warnings.warn(
                f"ropeshift: input positions reach {int(qpos.max()) + 1} tokens, beyond the training length "
                f"L={self.train_length}; {getattr(self.method, 'name', 'the method')} was not designed for this",
                stacklevel=3,
            )


def set_state(config, state: RuntimeState) -> None:
    _STATES[id(config)] = (weakref.ref(config), state)


def drop_state(config) -> None:
    _STATES.pop(id(config), None)


def get_state(config) -> RuntimeState:
    entry = _STATES.get(id(config))
    if entry is None or entry[0]() is not config:
        raise RuntimeError(
            "ropeshift: this model's attention is set to 'ropeshift' but it was not patched in this process; "
            "call ropeshift.apply(model, ...) again"
        )
    return entry[1]
