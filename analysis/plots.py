"""The report's figures as PNG bytes (matplotlib, Agg, no pyplot state): Figure 4's thinking length
per domain / audience / reasoning level, the length histogram per reasoning level, the
implicit up-sampling per domain, and tokens per source.

Each function takes the `analyse()` result and returns None when there is nothing to draw.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from tpt.analysis.classes import reasoning_level  # noqa: E402
from tpt.classify.taxonomy import AXES  # noqa: E402

INK, MUTED, GRID = "#1f2937", "#6b7280", "#e5e7eb"
DOCUMENT, THINKING = "#94a3b8", "#4f46e5"
AXIS_COLORS = {"domain": "#4f46e5", "audience": "#0d9488", "reasoning": "#db2777"}
LEVEL_COLORS = ("#f9a8d4", "#ec4899", "#be185d", "#6b0f3a")  # reasoning none .. advanced
AXIS_TITLES = {"domain": "Domain", "audience": "Audience", "reasoning": "Reasoning intensity"}

matplotlib.rcParams.update({
    "text.parse_math": False,  # class labels are data: "$" must not start mathtext
    "font.size": 10, "axes.edgecolor": GRID, "axes.labelcolor": MUTED, "xtick.color": MUTED, "ytick.color": INK,
    "axes.spines.top": False, "axes.spines.right": False, "axes.titleweight": "bold", "axes.titlesize": 12,
    "axes.titlecolor": INK, "axes.titlelocation": "left", "figure.facecolor": "white",
})


def thinking_by_class(analysis: dict[str, Any]) -> bytes | None:
    """Figure 4: mean thinking tokens per class of each axis; whiskers span p10 to p90."""
    axes_rows = {axis: [r for r in analysis["axes"][axis] if r["thinking_mean"] is not None] for axis in AXES}
    if not any(axes_rows.values()):
        return None
    tallest = max(len(rows) for rows in axes_rows.values())
    figure = Figure(figsize=(15, 1.2 + 0.42 * max(tallest, 3)), layout="constrained")
    for panel, axis in zip(figure.subplots(1, len(AXES)), AXES):
        rows = list(reversed(axes_rows[axis]))  # first class on top
        panel.set_title(AXIS_TITLES[axis])
        if not rows:
            panel.text(0.5, 0.5, "no thinking yet", ha="center", va="center", color=MUTED, transform=panel.transAxes)
            panel.set_axis_off()
            continue
        means = [r["thinking_mean"] for r in rows]
        low = [r["thinking_mean"] - r["thinking_p10"] for r in rows]
        high = [r["thinking_p90"] - r["thinking_mean"] for r in rows]
        colors = [_level_color(r["class"]) for r in rows] if axis == "reasoning" else AXIS_COLORS[axis]
        positions = range(len(rows))
        panel.barh(positions, means, color=colors, height=0.66, zorder=2)
        panel.errorbar(means, positions, xerr=[[max(v, 0) for v in low], [max(v, 0) for v in high]],
                       fmt="none", ecolor=INK, elinewidth=1, capsize=3, alpha=0.55, zorder=3)
        panel.set_yticks(list(positions), [_short(r["class"]) for r in rows])
        for y, row in zip(positions, rows):
            panel.annotate(f"{row['thinking_mean']:,.0f}", (max(row["thinking_p90"], row["thinking_mean"]), y), xytext=(5, 0),
                           textcoords="offset points", va="center", fontsize=8.5, color=INK, zorder=4)
        panel.margins(x=0.16)
        panel.set_xlabel("thinking tokens (mean; whiskers p10–p90)")
        panel.grid(axis="x", color=GRID, zorder=0)
        panel.tick_params(axis="y", length=0)
    return _png(figure)


def thinking_histogram(analysis: dict[str, Any]) -> bytes | None:
    """The distribution of thinking length per reasoning level, each normalised to its own sample count."""
    histogram = analysis["histogram"]
    if not histogram:
        return None
    order = [r["class"] for r in analysis["axes"]["reasoning"]]
    width = histogram[0]["width"]
    figure = Figure(figsize=(15, 3.6), layout="constrained")
    panel = figure.subplots()
    for level in order:
        bins = [r for r in histogram if r["class"] == level]
        if not bins:
            continue
        total = sum(r["samples"] for r in bins)
        counts = [0.0] * (max(r["bin"] for r in histogram) + 1)
        for r in bins:
            counts[r["bin"]] = r["samples"] / total
        edges = [i * width for i in range(len(counts) + 1)]
        panel.stairs(counts, edges, color=_level_color(level), linewidth=2, label=f"{level} (n={total:,})", fill=False)
        panel.stairs(counts, edges, color=_level_color(level), alpha=0.1, fill=True)
    panel.set_xlabel("thinking tokens")
    panel.set_ylabel("share of the level's samples")
    panel.grid(axis="y", color=GRID)
    _legend_on_top(panel, columns=4)
    return _png(figure)


def upsampling(analysis: dict[str, Any]) -> bytes | None:
    """Per domain, share of documents vs share of training tokens: the up-sampling TPT does by itself."""
    rows = [r for r in analysis["axes"]["domain"] if r["training_share"] is not None]
    if not rows or not analysis["totals"]["thinking_samples"]:  # without thinking every factor is 1
        return None
    rows = list(reversed(rows))
    figure = Figure(figsize=(7.4, 1.4 + 0.4 * max(len(rows), 3)), layout="constrained")
    panel = figure.subplots()
    positions = range(len(rows))
    for y, row in zip(positions, rows):
        panel.plot([100 * row["document_share"], 100 * row["training_share"]], [y, y], color=GRID, linewidth=3, zorder=1)
        panel.annotate(f"×{row['upsampling']:.2f}", (max(100 * row["document_share"], 100 * row["training_share"]), y),
                       xytext=(8, 0), textcoords="offset points", va="center", fontsize=8.5,
                       color=THINKING if row["upsampling"] >= 1 else MUTED)
    panel.scatter([100 * r["document_share"] for r in rows], positions, color=DOCUMENT, s=42, zorder=2, label="share of documents")
    panel.scatter([100 * r["training_share"] for r in rows], positions, color=THINKING, s=42, zorder=2, label="share of training tokens")
    panel.set_yticks(list(positions), [_short(r["class"]) for r in rows])
    panel.set_xlabel("% of the corpus")
    panel.grid(axis="x", color=GRID, zorder=0)
    panel.tick_params(axis="y", length=0)
    _legend_on_top(panel)
    panel.margins(x=0.18)
    return _png(figure)


def tokens_by_source(analysis: dict[str, Any]) -> bytes | None:
    """Training tokens per source, split into document (kept) and thinking tokens."""
    rows = list(reversed(analysis["sources"]))
    if not rows:
        return None
    figure = Figure(figsize=(7.4, 1.4 + 0.4 * max(len(rows), 3)), layout="constrained")
    panel = figure.subplots()
    positions = list(range(len(rows)))
    documents = [r["training_tokens"] - r["thinking_tokens"] for r in rows]
    thinking = [r["thinking_tokens"] for r in rows]
    panel.barh(positions, documents, color=DOCUMENT, height=0.6, label="document tokens", zorder=2)
    panel.barh(positions, thinking, left=documents, color=THINKING, height=0.6, label="thinking tokens", zorder=2)
    panel.set_yticks(positions, [_short(r["class"]) for r in rows])
    panel.set_xlabel("training tokens")
    panel.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: compact(v)))
    panel.grid(axis="x", color=GRID, zorder=0)
    panel.tick_params(axis="y", length=0)
    _legend_on_top(panel)
    return _png(figure)


FIGURES = {
    "thinking_by_class.png": thinking_by_class,
    "thinking_histogram.png": thinking_histogram,
    "upsampling.png": upsampling,
    "tokens_by_source.png": tokens_by_source,
}


def render_all(analysis: dict[str, Any]) -> dict[str, bytes]:
    """File name -> PNG bytes, for every figure that has something to show."""
    rendered = {name: draw(analysis) for name, draw in FIGURES.items()}
    return {name: png for name, png in rendered.items() if png is not None}


def _legend_on_top(panel, columns: int = 2) -> None:
    panel.legend(frameon=False, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=columns, fontsize=9, borderaxespad=0.2)


def _level_color(label: str) -> str:
    rank = reasoning_level(label)
    return MUTED if rank is None else LEVEL_COLORS[rank]


def _short(label: str, limit: int = 28) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def compact(value: float) -> str:
    """A token count for people: 1.23M, 45.6k, 512."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:,.0f}"


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
