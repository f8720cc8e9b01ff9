"""A model built from its config alone (random weights), and its real weights copied into it later.

    model = skeleton("smollm2-135m", dtype=torch.bfloat16, device="cuda")  # seconds: config, no weights
    ...                                                                    # compile it, warm it up (shapes only)
    real, _ = load_model("smollm2-135m", with_tokenizer=False)             # the weights, once they are at hand
    adopt(model, real)                                                     # copied in place; same module objects

Why: ``torch.compile`` needs a model's shapes, dtypes and config, not its weights. The ranks of a multi-process
evaluation (``eval/launch.py``'s ``run_rank``) compile while rank 0 builds the tokenizer and converts the GGUF file
once (``gguf_cache``), then copy the weights from the converted folder (~1 s) instead of each parsing and
de-quantising the GGUF file before they could start compiling (13.7 s of a 35.6-s start-up on the H100 host of
2026-12-07, three processes parsing at once)::

    before   rank 1, 2  [weights from the GGUF file .....][joins, compile ........][barrier]
    now      rank 1, 2  [skeleton][compile ........][rank 0's tokenizer][weights from its folder][barrier]
             rank 0     [tokenizer][prompt workers][weights, converted folder][send the tokenizer]

Copying in place (``load_state_dict`` copies into the existing tensors) keeps every parameter the compiled
graphs read, so nothing compiles again. ``adopt`` refuses a donor of another class or config: the skeleton's
compiled graphs and everything derived from its config (the methods' parameters, the rows that equal the rope
row) would not describe it.
"""
from __future__ import annotations

# config keys that describe where or how the weights were read, not the model
_SOURCE_KEYS = ("_name_or_path", "quantization_config", "transformers_version")


def read_config(name_or_path: str, dtype, trust_remote_code: bool = False):
    """``name_or_path``'s config as ``load_model`` reads it (``loader.text_source``: a GGUF model's from its
    converted folder when ``gguf_cache`` holds one for ``dtype``)."""
    from transformers import AutoConfig

    from . import gguf_cache
    from .loader import text_source

    folder, kw = text_source(name_or_path, (dtype,), trust_remote_code)
    with gguf_cache.one_parse():
        return AutoConfig.from_pretrained(str(folder), **kw)


def _config_while_cuda_starts(name_or_path: str, dtype, device: str, trust_remote_code: bool):
    """``read_config`` in a forked helper process while this one imports transformers' modelling code and
    starts CUDA on ``device``: a GGUF file's metadata parse (its tokenizer's ~150k fields) and those take seconds
    each, on one core each (the H100 host of 2026-12-07: 11 s from a rank's start to its skeleton). Config and
    imports of SmolLM2 on a free 2-core CPU: 5.4-6.1 s this way, 6.9-7.8 s one after the other (CUDA not
    included; not yet timed on a GPU host). A folder's config, or where fork is missing or CUDA already started,
    is read here."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import torch

    from .loader import resolve_model_path

    if resolve_model_path(name_or_path)[1] is None or "fork" not in mp.get_all_start_methods() \
            or torch.cuda.is_initialized():
        return read_config(name_or_path, dtype, trust_remote_code)
    with ProcessPoolExecutor(1, mp_context=mp.get_context("fork")) as pool:
        config = pool.submit(read_config, name_or_path, dtype, trust_remote_code)
        import transformers.generation.utils  # noqa: F401  (most of a decoder's modelling imports)
        import transformers.modeling_utils  # noqa: F401

        if str(device).startswith("cuda"):
            torch.empty(0, device=device)  # the CUDA context
        return config.result()


def skeleton(name_or_path: str, *, device: str | None = None, dtype=None, attn_implementation: str = "sdpa",
             trust_remote_code: bool = False):
    """``name_or_path``'s model (``loader.resolve_model_path``: embedded name, ``.gguf`` file or folder) with
    random weights, built on ``device`` (``load_model``'s default) in ``dtype`` (``loader.default_dtype`` when
    None), in eval mode: the config read as ``load_model`` reads it (``read_config``, a GGUF file's while this
    process starts CUDA); the weights initialised on the device (no host copy)."""
    from .loader import check_device, default_dtype

    device = check_device(device)
    dtype = dtype or default_dtype(device)
    config = _config_while_cuda_starts(name_or_path, dtype, device, trust_remote_code)
    return from_config(config, device, dtype, attn_implementation, trust_remote_code)


def from_config(config, device: str, dtype, attn_implementation: str = "sdpa", trust_remote_code: bool = False):
    """The model of ``config`` with random weights initialised on ``device`` (no host copy), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn_implementation,
                                                 trust_remote_code=trust_remote_code)
    return model.eval()


def config_differences(a, b) -> dict:
    """``{key: (a's value, b's value)}`` for the keys of two configs' ``to_dict`` that differ, but those that name
    the weights' source (path, quantization, transformers version)."""
    x, y = a.to_dict(), b.to_dict()
    return {k: (x.get(k), y.get(k)) for k in sorted(set(x) | set(y))
            if k not in _SOURCE_KEYS and x.get(k) != y.get(k)}


def adopt(model, donor) -> None:
    """Copy ``donor``'s parameters and buffers (non-persistent ones too: RoPE's ``inv_freq``) into ``model`` in
    place, and take its ``generation_config`` and config path; ValueError when the two differ in class, config
    (``config_differences``) or tensor names and shapes. ``donor`` may sit on another device."""
    import copy

    import torch

    if type(model) is not type(donor):
        raise ValueError(f"cannot adopt the weights of a {type(donor).__name__} into a {type(model).__name__}")
    differ = config_differences(model.config, donor.config)
    if differ:
        raise ValueError(f"the weights' model has another config than this one: {differ}")
    mine, theirs = dict(model.named_buffers()), dict(donor.named_buffers())
    shapes = lambda m: {k: tuple(v.shape) for k, v in [*m.state_dict().items(), *m.named_buffers()]}  # noqa: E731
    if shapes(model) != shapes(donor):
        raise ValueError("the weights' model has other tensors than this one")
    with torch.no_grad():
        model.load_state_dict(donor.state_dict())  # copy_ into the existing tensors
        for name, buf in mine.items():
            buf.copy_(theirs[name])
    model.generation_config = copy.deepcopy(donor.generation_config)
    model.config._name_or_path = donor.config._name_or_path
