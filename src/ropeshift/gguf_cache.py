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
import functools
import hashlib
import os
import shutil
from pathlib import Path

from .split_gguf import cache_dir

ENV = "ROPESHIFT_GGUF_CACHE"
DONE = "ropeshift_converted.json"  # written last: a folder without it is incomplete


_READERS: dict = {}  # (path, size, mtime, mode, args) -> the parsed reader ``one_parse`` shares, for this process


def forget() -> None:
    """Drop the readers ``one_parse`` keeps (their fields and memory maps)."""
    _READERS.clear()


@contextlib.contextmanager
def one_parse():
    """For the duration: ``gguf.GGUFReader(path)`` gives one shared reader per file, and ``gguf.get_tensor_name_map``
    is memoised; both are restored on exit.

    The readers outlive the context (``_READERS``, until ``forget``; keyed by the file's size and mtime too), so a
    later read through ``gguf.GGUFReader`` in this process, or in a process forked from it, parses nothing: a
    tokenizer loaded after the single-process CLI's pre-flight (``eval/preflight.py``), or in a child forked after
    it, took 0.54 s instead of 2.6 on a 2-core CPU. (The ranks of ``eval --workers`` start before the launcher's
    pre-flight, so they parse as before; transformers 5.25 reads part of a GGUF file with its own reader, which
    this does not cover.)

    transformers' GGUF loader (5.17 and 5.25 alike) imports both from ``gguf`` inside its functions at each call,
    opens a new reader for the config, the tokenizer and the weights (three parses of the file's metadata: 12.6 of
    a 21 s load of SmolLM2-135M here) and builds the same tensor-name map once per tensor (397 times: 5.7 s). The
    readers are read-only memory maps, and the map a pure function of (architecture, blocks), so sharing them
    changes nothing but the time. The shared reader is ``fast_reader_class``'s (same fields and tensors, its parse
    3.5x faster). A no-op without the ``gguf`` package."""
    try:
        import gguf
    except ImportError:
        yield
        return
    base_reader, base_map = gguf.GGUFReader, gguf.get_tensor_name_map
    make = fast_reader_class(base_reader)

    def reader(path, mode="r", *args, **kw):
        real = os.path.realpath(path)
        st = os.stat(real)
        key = (real, st.st_size, st.st_mtime_ns, mode, args, tuple(sorted(kw.items())))
        if key not in _READERS:
            _READERS[key] = make(path, mode, *args, **kw)
        return _READERS[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.lru_cache(maxsize=None)(base_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = base_reader, base_map


_GET_PARAMS = ["self", "offset", "dtype", "count", "override_order"]


def fast_reader_class(base):
    """A subclass of gguf's ``GGUFReader`` ``base`` whose reads slice a plain ndarray view of the file's memory
    map, or ``base`` itself when its ``_get`` is not the one this was written against (gguf 0.1x).

    The reader parses the metadata with one ``_get(offset, dtype, count)`` per value, i.e. ~250k for a tokenizer
    of 49k tokens and 48k merges, each slicing the ``np.memmap`` twice (a memmap slice runs its Python
    ``__array_finalize__``): 4.7 of the 7.1 s that SmolLM2-135M's tokenizer takes to load from its GGUF file on a
    2-core CPU. The same bytes viewed through a plain ndarray, with the byte-ordered dtypes memoised, parse in
    1.35 s. Fields and tensors are equal value for value (dtype, shape, bytes; tests/test_gguf_cache.py); the
    tensors' data are ndarray views of the same map instead of memmap views."""
    import inspect

    import numpy as np

    get = getattr(base, "_get", None)
    try:
        if get is None or list(inspect.signature(get).parameters) != _GET_PARAMS:
            return base
    except (TypeError, ValueError):
        return base

    @functools.lru_cache(maxsize=None)
    def ordered(dtype, order):
        return np.dtype(dtype).newbyteorder(order)

    class FastGGUFReader(base):
        def _get(self, offset, dtype, count=1, override_order=None):
            plain = self.__dict__.get("_plain_data")
            if plain is None:
                plain = self.__dict__["_plain_data"] = self.data.view(np.ndarray)
            dt = ordered(dtype, self.byte_order if override_order is None else override_order)
            count = int(count)
            return plain[offset:offset + dt.itemsize * count].view(dt)[:count]

    FastGGUFReader.__name__ = FastGGUFReader.__qualname__ = f"Fast{base.__name__}"
    return FastGGUFReader


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
