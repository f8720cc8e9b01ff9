"""PNG plots over stored records (matplotlib, imported lazily, Agg backend).

    heatmaps(records, "needle", ["rope", "string"], "needle_heatmap.png")   # depth x length, side by side
    depth_curves(records, "kv_retrieval", ["rope", "string"], "kv_depth.png")
    perplexity_plot(ppl, "perplexity", 8192, "ppl.png")
    length_plot(scores, "accuracy.png")

Colours follow the NIAH heatmap convention (red -> yellow -> green, 0-100 %), one shared scale.
"""
from __future__ import annotations

from pathlib import Path

from .options import format_length
from .report_tables import depth_grid

NIAH_COLOURS = ["#F0496E", "#EBB839", "#0CD79F"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmaps(records: list[dict], task: str, methods: list[str], path: Path) -> bool:
    """Depth x length mean score, one panel per method, shared colour scale. False if no depth data."""
    grids = {m: depth_grid(records, task, m) for m in methods}
    grids = {m: g for m, g in grids.items() if g[1]}
    if not grids:
        return False
    plt = _plt()
    from matplotlib.colors import LinearSegmentedColormap

    cmap = LinearSegmentedColormap.from_list("niah", NIAH_COLOURS)
    fig, axes = plt.subplots(1, len(grids), figsize=(4.2 * len(grids) + 1, 4.2), squeeze=False, sharey=True)
    im = None
    for ax, (method, (labels, lengths, matrix)) in zip(axes[0], grids.items()):
        data = [[float("nan") if v is None else 100 * v for v in row] for row in matrix]
        im = ax.imshow(data, cmap=cmap, vmin=0, vmax=100, aspect="auto", origin="upper")
        ax.set_xticks(range(len(lengths)), [format_length(n) for n in lengths])
        ax.set_yticks(range(len(labels)), labels)
        for i, row in enumerate(data):
            for j, v in enumerate(row):
                if v == v:
                    ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=8)
        cells = [v for row in data for v in row if v == v]
        ax.set_title(f"{method} (mean {sum(cells) / len(cells):.1f})")
        ax.set_xlabel("context length (tokens)")
    axes[0][0].set_ylabel("needle depth (%)")
    fig.colorbar(im, ax=axes[0].tolist(), label="score (%)")
    fig.suptitle(task)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def depth_curves(records: list[dict], task: str, methods: list[str], path: Path) -> bool:
    """Score against depth (lost-in-the-middle), one panel per length, one line per method."""
    grids = {m: depth_grid(records, task, m) for m in methods}
    grids = {m: g for m, g in grids.items() if g[1]}
    if not grids:
        return False
    plt = _plt()
    lengths = sorted({n for g in grids.values() for n in g[1]})
    fig, axes = plt.subplots(1, len(lengths), figsize=(3.4 * len(lengths) + 0.6, 3.2), squeeze=False, sharey=True)
    for ax, n in zip(axes[0], lengths):
        for method, (labels, ls, matrix) in grids.items():
            if n not in ls:
                continue
            j = ls.index(n)
            pts = [(i, 100 * row[j]) for i, row in enumerate(matrix) if row[j] is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
            ax.set_xticks(range(len(labels)), labels, rotation=45, fontsize=7)
        ax.set_title(format_length(n))
        ax.set_ylim(-5, 105)
        ax.set_xlabel("depth (%)")
    axes[0][0].set_ylabel("score (%)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"{task}: score by depth")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def perplexity_plot(ppl: dict[tuple, tuple[float, int, int]], task: str, train_length: int | None,
                    path: Path) -> bool:
    """Perplexity against evaluation length (log x), one line per method, training length dashed."""
    sub = {(meth, n): v[0] for (_, meth, t, n), v in ppl.items() if t == task}
    if not sub:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for method in sorted({m for m, _ in sub}):
        pts = sorted((n, v) for (m, n), v in sub.items() if m == method)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
    if train_length:
        ax.axvline(train_length, ls="--", color="grey", label=f"training length {format_length(train_length)}")
    ax.set_xscale("log", base=2)
    lengths = sorted({n for _, n in sub})
    ax.set_xticks(lengths, [format_length(n) for n in lengths])
    ax.set_xlabel("evaluation length (tokens)")
    ax.set_ylabel("perplexity")
    ax.set_title(task)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def length_plot(scores: dict[tuple, dict[int, tuple]], train_length: int | None, path: Path) -> bool:
    """Mean task score against length, one line per method (``method_length_scores`` output)."""
    if not scores:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for (model, method), per_len in sorted(scores.items()):
        pts = sorted((n, v[0]) for n, v in per_len.items())
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
    if train_length:
        ax.axvline(train_length, ls="--", color="grey", label=f"training length {format_length(train_length)}")
    lengths = sorted({n for v in scores.values() for n in v})
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [format_length(n) for n in lengths])
    ax.set_ylim(-5, 105)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("mean score over tasks (%)")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True
