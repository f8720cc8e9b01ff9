"""The STRING paper's position-frequency analysis: how often each relative distance is trained.

For sequences of lengths |s| (each at most L; longer documents are chunked into L-token pieces),
the number of (query, key) pairs at relative distance i is

    f(i) = sum_s max(|s| - i, 0),   i = 0 .. L-1

so long distances are rare unless sequences are long. Length distributions:
    natural       document lengths ~ log-normal (median 512 tokens, sigma 1.3), each document its own sequence
    uniform       lengths uniform in [1, L]
    concatenated  documents packed into full L-token sequences (every sequence has length L)
    a file        one document length per line (``--lengths-file``)
    a folder      .txt files measured with a tokenizer (``--folder``, ``--tokenizer``) or in words

    f = position_frequency(lengths, L)
    share_beyond(f, L // 2)        # share of all position pairs at distance >= L/2
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SYNTHETIC = ("natural", "uniform", "concatenated")


def synthetic_lengths(kind: str, train_length: int, n_docs: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "natural":
        return np.clip(rng.lognormal(np.log(512), 1.3, n_docs).round().astype(np.int64), 1, None)
    if kind == "uniform":
        return rng.integers(1, train_length + 1, n_docs)
    if kind == "concatenated":
        return np.full(n_docs, train_length, dtype=np.int64)
    raise ValueError(f"unknown distribution {kind!r}: choose from {', '.join(SYNTHETIC)}")


def chunk(lengths: np.ndarray, train_length: int) -> np.ndarray:
    """Split every length above L into full L pieces plus the remainder."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if (lengths < 0).any():
        raise ValueError("document lengths must be >= 0")
    full, rest = np.divmod(lengths, train_length)
    pieces = np.concatenate([np.full(int(full.sum()), train_length, dtype=np.int64), rest[rest > 0]])
    return pieces


def position_frequency(lengths, train_length: int) -> np.ndarray:
    """``f[i] = sum_s max(|s| - i, 0)`` for i in [0, L) over the chunked lengths (float64)."""
    if train_length < 2:
        raise ValueError(f"training length must be >= 2, got {train_length}")
    pieces = chunk(np.asarray(lengths), train_length)
    counts = np.bincount(pieces, minlength=train_length + 1).astype(np.float64)
    ell = np.arange(train_length + 1, dtype=np.float64)
    # C[i] = #pieces longer than i, S[i] = total length of those; f(i) = S[i] - i * C[i]
    c_gt = np.cumsum(counts[::-1])[::-1]
    s_gt = np.cumsum((counts * ell)[::-1])[::-1]
    c_gt = np.append(c_gt[1:], 0.0)
    s_gt = np.append(s_gt[1:], 0.0)
    i = np.arange(train_length + 1, dtype=np.float64)
    return (s_gt - i * c_gt)[:train_length]


def share_beyond(f: np.ndarray, start: int) -> float:
    """Share of all position pairs at relative distance >= ``start``."""
    total = f.sum()
    return float(f[start:].sum() / total) if total else 0.0


def lengths_from_file(path: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"lengths file not found: {path}")
    try:
        vals = [int(line.split()[0]) for line in p.read_text().splitlines() if line.strip()]
    except ValueError:
        raise ValueError(f"{path}: every line must start with an integer document length") from None
    if not vals:
        raise ValueError(f"{path} holds no lengths")
    return np.array(vals, dtype=np.int64)


def lengths_from_folder(path: str, tokenizer=None) -> np.ndarray:
    """Length of every .txt file under ``path``: tokens with ``tokenizer``, else whitespace words."""
    files = sorted(Path(path).rglob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no .txt files under {path}")
    out = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        out.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]) if tokenizer else len(text.split()))
    return np.array(out, dtype=np.int64)


def plot(curves: dict[str, np.ndarray], train_length: int, path: Path) -> None:
    """f(i) / f(0) against i for each distribution, with L/3 and L/2 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    x = np.arange(train_length)
    for name, f in curves.items():
        ax.plot(x, f / f[0], label=name)
    for frac, label in ((1 / 3, "L/3"), (1 / 2, "L/2")):
        ax.axvline(frac * train_length, ls="--", color="grey")
        ax.text(frac * train_length, 1.02, label, ha="center", va="bottom")
    ax.set_xlabel("relative position i")
    ax.set_ylabel("f(i) / f(0)")
    ax.set_ylim(0, 1.1)
    ax.set_title(f"position frequency, L = {train_length}")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
