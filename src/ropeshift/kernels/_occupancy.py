"""How many programs of a compiled Triton kernel one SM holds at once, and a split count that fills whole waves.

A split-KV decode launches b * h_kv * splits equal programs. When that is not a multiple of what the GPU holds
at once (SMs x programs per SM), the last wave runs a few programs on an almost idle, under-fed memory system::

    slots per wave = 264 (132 SMs x 2 programs, 255 registers each)
    576 programs:  [ wave 1: 264 ][ wave 2: 264 ][ wave 3: 48 ]   <- 3 waves for 2.2 waves of work
    256 programs:  [ wave 1: 256 ]                                 <- splits 4 instead of 9 (b = 8, h_kv = 8)

Programs per SM come from the compiled kernel's registers and shared memory and the device's limits (registers
are allocated per warp in units of 256; each block reserves 1 KiB of shared memory on sm_80+). Importing this
module imports nothing from triton.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SmLimits:
    """Per-SM resources of a device (defaults: sm_90, H100 / H200)."""
    regs: int = 65536
    shared: int = 233472  # bytes, per SM
    threads: int = 2048
    blocks: int = 32


_RESERVED_SHARED = 1024  # bytes per block, sm_80+
_REG_UNIT = 256  # registers per warp are allocated in these units


def programs_per_sm(n_regs: int, shared: int, num_warps: int, limits: SmLimits = SmLimits()) -> int:
    """Resident programs (blocks) of num_warps warps, n_regs registers per thread, `shared` bytes each (>= 1)."""
    per_warp = -(-max(n_regs, 1) * 32 // _REG_UNIT) * _REG_UNIT
    by_regs = limits.regs // (per_warp * num_warps)
    by_shared = limits.shared // (shared + _RESERVED_SHARED)
    by_threads = limits.threads // (32 * num_warps)
    return max(1, min(by_regs, by_shared, by_threads, limits.blocks))


def wave_splits(rows: int, max_splits: int, slots: int) -> int:
    """Splits per row so that rows * splits programs fill at most one wave of `slots` (>= 1, <= max_splits);
    rows >= slots: 1 (every program already has a row of its own)."""
    return max(1, min(max_splits, slots // max(rows, 1)))


def device_limits(device) -> SmLimits:
    """The SM limits of a CUDA device from torch's properties (the sm_90 defaults where a field is missing)."""
    import torch

    p = torch.cuda.get_device_properties(device)
    d = SmLimits()
    return SmLimits(regs=getattr(p, "regs_per_multiprocessor", d.regs),
                    shared=getattr(p, "shared_memory_per_multiprocessor", d.shared),
                    threads=getattr(p, "max_threads_per_multi_processor", d.threads))


def compiled_resources(kernel) -> tuple[int, int]:
    """(registers per thread, shared bytes) of a compiled Triton kernel (``JITFunction.warmup``'s result)."""
    if hasattr(kernel, "result"):  # an asynchronous compile
        kernel = kernel.result()
    kernel._init_handles()  # loads the binary: fills n_regs
    return int(kernel.n_regs), int(kernel.metadata.shared)
