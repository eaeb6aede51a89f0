"""The report's figures as PNG bytes (matplotlib, Agg, no pyplot state): Figure 4's thinking length
per domain / audience / reasoning level, the length histogram per reasoning level, the
implicit up-sampling per domain, and tokens per source.

Each function takes the report's result (tpt.analysis.report.build) and returns its Figure, or None when
there is nothing to draw; `render_all` makes them PNGs. With several runs every figure has a series per
run, in the run's color, and the thinking length of the samples two runs share is drawn run against run.
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
RUN_COLORS = ("#4f46e5", "#f59e0b", "#0d9488", "#db2777", "#64748b", "#84cc16", "#0ea5e9", "#b91c1c")
POINT_ALPHA = 0.45  # scatter dots, so that overlapping ones show as darker
AXIS_TITLES = {"domain": "Domain", "audience": "Audience", "reasoning": "Reasoning intensity"}

matplotlib.rcParams.update({
    "text.parse_math": False,  # class labels are data: "$" must not start mathtext
    "font.size": 10, "axes.edgecolor": GRID, "axes.labelcolor": MUTED, "xtick.color": MUTED, "ytick.color": INK,
    "axes.spines.top": False, "axes.spines.right": False, "axes.titleweight": "bold", "axes.titlesize": 12,
    "axes.titlecolor": INK, "axes.titlelocation": "left", "figure.facecolor": "white",
})


def series(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(run name, its figures) of each run of a report."""
    if "series" in result:
        return list(result["series"].items())
    return [(result["runs"][0]["name"] if result.get("runs") else "run", result)]


def run_color(index: int) -> str:
    return RUN_COLORS[index % len(RUN_COLORS)]


def thinking_by_class(result: dict[str, Any]) -> Figure | None:
    """Figure 4: mean thinking tokens per class of each axis, each run's bar side by side; whiskers span p10 to p90,
    and each bar is labelled with its mean and its class's sample count."""
    runs = series(result)
    axes_rows = {axis: [{r["class"]: r for r in s["axes"][axis] if r["thinking_mean"] is not None} for _, s in runs] for axis in AXES}
    classes = {axis: list(dict.fromkeys(label for rows in axes_rows[axis] for label in rows)) for axis in AXES}
    if not any(classes.values()):
        return None
    tallest = max(len(labels) for labels in classes.values()) * (1 if len(runs) == 1 else 0.55 * len(runs) + 0.2)
    figure = Figure(figsize=(15, 1.2 + 0.42 * max(tallest, 3) + 0.3 * (len(runs) > 1)), layout="constrained")
    height = 0.66 if len(runs) == 1 else 0.8 / len(runs)
    for panel, axis in zip(figure.subplots(1, len(AXES)), AXES):
        labels = list(reversed(classes[axis]))  # first class on top
        panel.set_title(AXIS_TITLES[axis])
        if not labels:
            panel.text(0.5, 0.5, "no thinking yet", ha="center", va="center", color=MUTED, transform=panel.transAxes)
            panel.set_axis_off()
            continue
        for index, ((name, _), rows) in enumerate(zip(runs, axes_rows[axis])):
            shown = [(y, rows[label]) for y, label in enumerate(labels) if label in rows]
            positions = [y + (len(runs) - 1 - 2 * index) * height / 2 for y, _ in shown]  # first run on top
            means = [r["thinking_mean"] for _, r in shown]
            colors = (([_level_color(r["class"]) for _, r in shown] if axis == "reasoning" else AXIS_COLORS[axis])
                      if len(runs) == 1 else run_color(index))
            panel.barh(positions, means, color=colors, height=height * 0.92, zorder=2, label=name)
            low = [max(r["thinking_mean"] - r["thinking_p10"], 0) for _, r in shown]
            high = [max(r["thinking_p90"] - r["thinking_mean"], 0) for _, r in shown]
            panel.errorbar(means, positions, xerr=[low, high], fmt="none", ecolor=INK, elinewidth=1, capsize=2, alpha=0.55, zorder=3)
            for y, (_, row) in zip(positions, shown):
                panel.annotate(f"{row['thinking_mean']:,.0f}  n={row['samples']:,}", (max(row["thinking_p90"], row["thinking_mean"]), y),
                               xytext=(5, 0), textcoords="offset points", va="center", fontsize=8 if len(runs) > 1 else 8.5,
                               color=INK, zorder=4)
        panel.set_yticks(list(range(len(labels))), [_short(label) for label in labels])
        panel.margins(x=0.3)
        panel.set_xlabel("thinking tokens (mean; whiskers p10–p90)")
        panel.grid(axis="x", color=GRID, zorder=0)
        panel.tick_params(axis="y", length=0)
    if len(runs) > 1:
        figure.legend(*figure.axes[0].get_legend_handles_labels(), loc="outside upper left", ncol=len(runs), frameon=False, fontsize=9)
    return figure


def thinking_histogram(result: dict[str, Any]) -> Figure | None:
    """The distribution of thinking length, each curve normalised to its own sample count: per reasoning level for
    one run, per run (on common bins) for several."""
    if "series" in result:
        histogram, order = result["run_histogram"], list(result["series"])
        colors = {name: run_color(index) for index, name in enumerate(order)}
    else:
        histogram, order = result["histogram"], [r["class"] for r in result["axes"]["reasoning"]]
        colors = {level: _level_color(level) for level in order}
    if not histogram:
        return None
    width = histogram[0]["width"]
    figure = Figure(figsize=(15, 3.6), layout="constrained")
    panel = figure.subplots()
    for group in order:
        bins = [r for r in histogram if r["class"] == group]
        if not bins:
            continue
        total = sum(r["samples"] for r in bins)
        counts = [0.0] * (max(r["bin"] for r in histogram) + 1)
        for r in bins:
            counts[r["bin"]] = r["samples"] / total
        edges = [i * width for i in range(len(counts) + 1)]
        panel.stairs(counts, edges, color=colors[group], linewidth=2, label=f"{group} (n={total:,})", fill=False)
        panel.stairs(counts, edges, color=colors[group], alpha=0.1, fill=True)
    panel.set_xlabel("thinking tokens")
    panel.set_ylabel("share of the run's samples" if "series" in result else "share of the level's samples")
    panel.grid(axis="y", color=GRID)
    _legend_on_top(panel, columns=4)
    return figure


def thinking_pairs(result: dict[str, Any]) -> Figure | None:
    """Thinking tokens of the same documents in the first run (x) and each other run (y), one panel per pair."""
    pairs = [pair for pair in result.get("pairs", []) if pair["points"]]
    if not pairs:
        return None
    figure = Figure(figsize=(min(15, 5.6 * len(pairs)), 4.8), layout="constrained")
    panels = figure.subplots(1, len(pairs), squeeze=False)[0]
    names = list(result["series"])
    for panel, pair in zip(panels, pairs):
        xs, ys = [p[0] for p in pair["points"]], [p[1] for p in pair["points"]]
        top = max(max(xs), max(ys), 1)
        panel.plot([0, top], [0, top], color=MUTED, linewidth=1, linestyle="--", zorder=1, label="same length")
        drawn = f" ({len(xs):,} drawn)" if len(xs) < pair["both_thinking"] else ""
        panel.scatter(xs, ys, s=9, alpha=POINT_ALPHA, color=run_color(names.index(pair["b"])), linewidths=0, zorder=2,
                      label=f"{pair['both_thinking']:,} shared samples with thinking{drawn}")
        panel.set_xlabel(f"thinking tokens in {_short(pair['a'])}")
        panel.set_ylabel(f"thinking tokens in {_short(pair['b'])}")
        panel.grid(color=GRID, zorder=0)
        _legend_on_top(panel, columns=1)
    return figure


def upsampling(result: dict[str, Any]) -> Figure | None:
    """Per domain, share of documents vs share of training tokens: the up-sampling TPT does by itself (a row per run)."""
    runs = [(name, s) for name, s in series(result) if s["totals"]["thinking_samples"]]  # without thinking every factor is 1
    by_run = [{r["class"]: r for r in s["axes"]["domain"] if r["training_share"] is not None} for _, s in runs]
    labels = list(reversed(list(dict.fromkeys(label for rows in by_run for label in rows))))
    if not labels:
        return None
    figure = Figure(figsize=(7.4, 1.4 + 0.4 * max(len(labels), 3) * (1 if len(runs) == 1 else 0.6 * len(runs))), layout="constrained")
    panel = figure.subplots()
    step = 0 if len(runs) == 1 else 0.7 / len(runs)
    for index, ((name, _), rows) in enumerate(zip(runs, by_run)):
        color = THINKING if len(runs) == 1 else run_color(index)
        shown = [(y + (len(runs) - 1 - 2 * index) * step / 2, rows[label]) for y, label in enumerate(labels) if label in rows]
        for y, row in shown:
            panel.plot([100 * row["document_share"], 100 * row["training_share"]], [y, y], color=GRID, linewidth=3, zorder=1)
            panel.annotate(f"×{row['upsampling']:.2f}", (max(100 * row["document_share"], 100 * row["training_share"]), y),
                           xytext=(8, 0), textcoords="offset points", va="center", fontsize=8.5,
                           color=color if row["upsampling"] >= 1 else MUTED)
        panel.scatter([100 * r["document_share"] for _, r in shown], [y for y, _ in shown], color=DOCUMENT, s=42, zorder=2,
                      label="share of documents" if index == 0 else None)
        panel.scatter([100 * r["training_share"] for _, r in shown], [y for y, _ in shown], color=color, s=42, zorder=2,
                      label="share of training tokens" + ("" if len(runs) == 1 else f": {name}"))
    panel.set_yticks(list(range(len(labels))), [_short(label) for label in labels])
    panel.set_xlabel("% of the corpus")
    panel.grid(axis="x", color=GRID, zorder=0)
    panel.tick_params(axis="y", length=0)
    _legend_on_top(panel)
    panel.margins(x=0.18)
    return figure


def tokens_by_source(result: dict[str, Any]) -> Figure | None:
    """Training tokens per source, split into document (kept) and thinking tokens; a bar per run."""
    runs = series(result)
    by_run = [{r["class"]: r for r in s["sources"]} for _, s in runs]
    labels = list(reversed(list(dict.fromkeys(label for rows in by_run for label in rows))))
    if not labels:
        return None
    figure = Figure(figsize=(7.4, 1.4 + 0.4 * max(len(labels), 3) * (1 if len(runs) == 1 else 0.6 * len(runs))), layout="constrained")
    panel = figure.subplots()
    height = 0.6 if len(runs) == 1 else 0.8 / len(runs)
    for index, ((name, _), rows) in enumerate(zip(runs, by_run)):
        shown = [(y + (len(runs) - 1 - 2 * index) * height / 2, rows[label]) for y, label in enumerate(labels) if label in rows]
        positions = [y for y, _ in shown]
        documents = [r["training_tokens"] - r["thinking_tokens"] for _, r in shown]
        thinking = [r["thinking_tokens"] for _, r in shown]
        single = len(runs) == 1
        panel.barh(positions, documents, color=DOCUMENT, height=height * 0.92, label="document tokens" if index == 0 else None, zorder=2)
        panel.barh(positions, thinking, left=documents, color=THINKING if single else run_color(index), height=height * 0.92,
                   label="thinking tokens" + ("" if single else f": {name}"), zorder=2)
    panel.set_yticks(list(range(len(labels))), [_short(label) for label in labels])
    panel.set_xlabel("training tokens")
    panel.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: compact(v)))
    panel.grid(axis="x", color=GRID, zorder=0)
    panel.tick_params(axis="y", length=0)
    _legend_on_top(panel)
    return figure


FIGURES = {
    "thinking_by_class.png": thinking_by_class,
    "thinking_histogram.png": thinking_histogram,
    "upsampling.png": upsampling,
    "tokens_by_source.png": tokens_by_source,
    "thinking_pairs.png": thinking_pairs,
}


def render_all(analysis: dict[str, Any]) -> dict[str, bytes]:
    """File name -> PNG bytes, for every figure that has something to show."""
    drawn = {name: draw(analysis) for name, draw in FIGURES.items()}
    return {name: _png(figure) for name, figure in drawn.items() if figure is not None}


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
