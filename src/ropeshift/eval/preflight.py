"""Checks that run before any model weights load (``needle``/``eval``, also under ``--dry-run``).

    check_device("cuda")                      # ValueError when CUDA is absent or the name is not a device
    check_out(Path("runs"))                   # ValueError when --out is a file or not writable
    check_task_files(("qa:/data/squad.json",))  # FileNotFoundError when a task's file is missing
    info = model_facts("smollm2-135m")        # config only (HF config.json or GGUF metadata), no weights
    check_methods(info, specs, impl, device)  # every method resolved and validated on a weightless copy
    length_note(info, lengths)                # "beyond the training length ..." or None
    estimate_seconds(info, tokens, device)    # the documented time model below

Method settings are validated exactly as ``ropeshift.apply`` does, by applying each method to the model built
from its config on the ``meta`` device (no memory, no weights) and removing it again.

Time model (rough, +-3x): one forward pass costs about 2 x P FLOPs per token for a model of P parameters, and
generation adds a few tokens per sample, so a run takes ``tokens x 2P / F`` seconds with ``tokens`` the sum of
the pending samples' lengths and F the sustained throughput: ``CPU_FLOPS_PER_CORE`` x cores on CPU (measured:
the README's needle command, 30 samples of 1k-4k tokens on SmolLM2-135M, took 3 min on 2 idle cores), and
``CUDA_FLOPS`` on a GPU (bf16 prefill well below peak), plus ``CUDA_SAMPLE_OVERHEAD`` seconds per sample for the
generate loop.
"""
from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..loader import check_device  # noqa: F401  (re-exported: the CLI's --device check)

CPU_FLOPS_PER_CORE = 5e10
CUDA_FLOPS = 1e14
CUDA_SAMPLE_OVERHEAD = 0.3


def check_out(out: Path) -> None:
    """ValueError unless ``out`` is (or can be created as) a writable folder; creates nothing."""
    out = Path(out)
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        what = "is a file" if probe == out else f"is under {probe}, which is a file"
        raise ValueError(f"--out {out} {what}; give a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: {probe} is not writable; give a writable folder")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write in {probe} ({e.strerror}); give a writable folder") from None


def check_task_files(tasks) -> None:
    """Tasks that read a user file (``qa:PATH``) name it in their ``path``; it must exist before any model work."""
    from .tasks import resolve_task

    for spec in tasks:
        path = getattr(resolve_task(spec), "path", None)
        if path and not Path(path).expanduser().is_file():
            raise FileNotFoundError(f"--tasks {spec}: file not found: {path}")


@dataclass(frozen=True)
class ModelFacts:
    """What the pre-flight checks need: the config, a weightless copy of the model, its parameter count."""

    config: object
    meta_model: object
    n_params: int

    @property
    def train_length(self) -> int | None:
        return getattr(self.config, "max_position_embeddings", None)


@functools.lru_cache(maxsize=4)
def model_facts(name_or_path: str) -> ModelFacts:
    """Read the model's config (no weights) and build it on the meta device (cached per process: a GGUF's
    metadata takes seconds to parse; ``check_methods`` leaves the meta model as it found it)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from .. import gguf_cache
    from ..loader import check_model_folder, resolve_model_path

    folder, gguf = resolve_model_path(name_or_path)
    check_model_folder(folder, gguf)
    kw = {"gguf_file": gguf} if gguf else {}
    try:
        with gguf_cache.one_parse():  # the faster GGUF reader
            config = AutoConfig.from_pretrained(str(folder), local_files_only=True, **kw)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"cannot read the model config of {name_or_path}: {str(e).splitlines()[0]}") from None
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return ModelFacts(config, model, sum(p.numel() for p in model.parameters()))


def check_methods(facts: ModelFacts, specs, impl: str | None, device: str) -> None:
    """Resolve every method spec against the model exactly as ``apply`` will; errors name the method."""
    from ..api import remove
    from .generation import activate

    if impl == "triton" and not device.startswith("cuda"):
        raise ValueError(f"--impl triton needs a CUDA device, got --device {device}")
    for spec in specs:
        if spec.name == "rope":
            continue
        try:  # the same steps as the run (compositions, "2/3L" values), on a meta-device copy
            activate(facts.meta_model, spec, None if impl == "triton" else impl)
        finally:
            remove(facts.meta_model)


def length_note(facts: ModelFacts, lengths) -> str | None:
    """A plan line for lengths beyond the training length L, else None."""
    from .options import format_length

    L = facts.train_length
    beyond = [n for n in lengths if L is not None and n > L]
    if not beyond:
        return None
    return (f"note: {', '.join(format_length(n) for n in beyond)} > L={L}: beyond the training length; only "
            "length-extrapolating methods are meaningful here")


def estimate_seconds(facts: ModelFacts, tokens: int, samples: int, device: str) -> float:
    """Seconds for ``samples`` pending samples of ``tokens`` tokens in all (the module's time model)."""
    flops = 2.0 * facts.n_params * tokens
    if device.startswith("cuda"):
        return flops / CUDA_FLOPS + CUDA_SAMPLE_OVERHEAD * samples
    return flops / (CPU_FLOPS_PER_CORE * (os.cpu_count() or 1))


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
