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
# one marker, line style and size per method: lines that coincide (a method equal to rope) stay visible
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p"]
LINESTYLES = ["-", "--", "-.", ":"]


def line_style(i: int) -> dict:
    """Matplotlib keywords for the i-th line: hollow markers, shrinking so a smaller one shows inside."""
    return {"marker": MARKERS[i % len(MARKERS)], "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "markersize": max(4.0, 10.0 - 0.6 * (i % 10)), "markerfacecolor": "none", "markeredgewidth": 1.4}


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
    ncols = min(4, len(grids))
    nrows = -(-len(grids) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols + 1, 4.0 * nrows + 0.4), squeeze=False,
                             sharey=True, constrained_layout=True)
    flat = [ax for row in axes for ax in row]
    im = None
    for ax, (method, (labels, lengths, matrix)) in zip(flat, grids.items()):
        data = [[float("nan") if v is None else 100 * v for v in row] for row in matrix]
        im = ax.imshow(data, cmap=cmap, vmin=0, vmax=100, aspect="auto", origin="upper")
        ax.set_xticks(range(len(lengths)), [format_length(n) for n in lengths])
        ax.set_yticks(range(len(labels)), labels)
        for i, row in enumerate(data):
            for j, v in enumerate(row):
                if v == v:
                    ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=8)
        cells = [v for row in data for v in row if v == v]
        ax.set_title(f"{method} (mean {sum(cells) / len(cells):.1f})", fontsize=10)
        ax.set_xlabel("context length (tokens)")
        if ax in (row[0] for row in axes):
            ax.set_ylabel("needle depth (%)")
    for ax in flat[len(grids):]:
        ax.set_visible(False)
    fig.colorbar(im, ax=flat, label="score (%)", shrink=0.9)
    fig.suptitle(f"{task}: score (%) by needle depth x context length")
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
        for k, (method, (labels, ls, matrix)) in enumerate(grids.items()):
            if n not in ls:
                continue
            j = ls.index(n)
            pts = [(i, 100 * row[j]) for i, row in enumerate(matrix) if row[j] is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=method, **line_style(k))
            ax.set_xticks(range(len(labels)), labels, rotation=45, fontsize=7)
        ax.set_title(format_length(n))
        ax.set_ylim(-5, 105)
        ax.set_xlabel("depth (%)")
    axes[0][0].set_ylabel("score (%)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"{task}: score by depth", y=1.06)
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
    for k, method in enumerate(sorted({m for m, _ in sub})):
        pts = sorted((n, v) for (m, n), v in sub.items() if m == method)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=method, **line_style(k))
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
    """Mean task score against length, one line per method with its Wilson 95 % band
    (``method_length_scores`` output); distinct hollow markers and line styles keep equal lines visible."""
    if not scores:
        return False
    plt = _plt()
    multi = len({m for m, _ in scores}) > 1
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for k, ((model, method), per_len) in enumerate(sorted(scores.items())):
        pts = sorted((n, v[0], 100 * v[1].lo, 100 * v[1].hi) for n, v in per_len.items())
        xs = [p[0] for p in pts]
        line, = ax.plot(xs, [p[1] for p in pts], label=f"{model}/{method}" if multi else method, **line_style(k))
        ax.fill_between(xs, [p[2] for p in pts], [p[3] for p in pts], color=line.get_color(), alpha=0.12, lw=0)
    if train_length:
        ax.axvline(train_length, ls="--", color="grey", label=f"training length {format_length(train_length)}")
    lengths = sorted({n for v in scores.values() for n in v})
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [format_length(n) for n in lengths])
    ax.minorticks_off()
    ax.set_ylim(-5, 105)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("mean score over tasks (%)")
    ax.set_title("mean score vs length (bands: 95 % CI)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True
