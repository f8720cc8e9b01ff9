"""GGUF models converted once into a Hugging Face folder (safetensors + config + tokenizer), loaded from it after;
and the conversion itself with one parse of the file.

    with one_parse():                                 # transformers' GGUF loads share one reader per file
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    folder = converted_folder(gguf_path, dtype)      # <cache>/converted/<file stem>-<key>, may not exist yet
    with conversion_lock(folder):                     # one process converts, the others wait and then load it
        if not is_complete(folder):
            save_converted(model, tokenizer, folder)  # the model just loaded from the GGUF file

Why: transformers parses a GGUF file three times per load (config, tokenizer, weights) and de-quantises every
tensor on the CPU: ~20 s for SmolLM2-135M's 93 MB file, and 35 s per process when the three evaluation processes
of one GPU load it at once (H200, benchmarks/RESULTS.md, issue 10). A safetensors folder loads in ~1-2 s.
transformers will not ``save_pretrained`` a GGUF-loaded model (its quantizer marks it not serialisable), so the
weights go through ``safetensors.torch.save_model`` (tied tensors stored once) and the config without its
``quantization_config``.

The key covers what the converted weights depend on: the GGUF file (resolved path, size, modification time), the
dtype the weights were de-quantised to, and the transformers version that de-quantised them. The folder is written
under a temporary name and renamed, so a half-written folder never looks complete. ``$ROPESHIFT_CACHE`` picks the
cache (default ``~/.cache/ropeshift``, as for joined split models); ``ROPESHIFT_GGUF_CACHE=0`` turns it off.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path

from .split_gguf import cache_dir

ENV = "ROPESHIFT_GGUF_CACHE"
DONE = "ropeshift_converted.json"  # written last: a folder without it is incomplete


@contextlib.contextmanager
def one_parse():
    """For the duration: ``gguf.GGUFReader(path)`` gives one shared reader per file, and ``gguf.get_tensor_name_map``
    is memoised; both are restored on exit.

    transformers' GGUF loader (5.17 and 5.25 alike) imports both from ``gguf`` inside its functions at each call,
    opens a new reader for the config, the tokenizer and the weights (three parses of the file's metadata: 12.6 of
    a 21 s load of SmolLM2-135M here) and builds the same tensor-name map once per tensor (397 times: 5.7 s). The
    readers are read-only memory maps, and the map a pure function of (architecture, blocks), so sharing them
    changes nothing but the time. A no-op without the ``gguf`` package."""
    import functools

    try:
        import gguf
    except ImportError:
        yield
        return
    base_reader, base_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict = {}

    def reader(path, mode="r", *args, **kw):
        key = (os.path.realpath(path), mode, args, tuple(sorted(kw.items())))
        if key not in readers:
            readers[key] = base_reader(path, mode, *args, **kw)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.lru_cache(maxsize=None)(base_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = base_reader, base_map


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0"


def converted_folder(gguf_path: Path, dtype) -> Path:
    """The cache folder for ``gguf_path`` de-quantised to ``dtype`` by this transformers version."""
    import transformers

    p = Path(gguf_path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}|{dtype}|{transformers.__version__}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "converted" / f"{p.stem}-{digest}"


def is_complete(folder: Path) -> bool:
    return (folder / DONE).is_file()


@contextlib.contextmanager
def conversion_lock(folder: Path):
    """An exclusive lock on ``<folder>.lock`` (fcntl; processes of one machine): the first process converts, the
    others block here and then find the folder complete. Where fcntl is missing it is a no-op."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: at worst two processes convert, and the rename keeps one folder
        yield
        return
    with open(folder.with_name(folder.name + ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def save_converted(model, tokenizer, folder: Path, source: Path) -> None:
    """Write ``model`` (its weights as loaded), its config without ``quantization_config`` and ``tokenizer`` to
    ``folder`` through a temporary folder and a rename."""
    import copy
    import json

    from safetensors.torch import save_model

    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        config = copy.deepcopy(model.config)
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        config.save_pretrained(tmp)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))
        (tmp / DONE).write_text(json.dumps({"source": str(source)}) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
