"""The self-contained report.html: key figures first, then the plots (inlined as base64 PNGs),
then the per-class tables. No scripts, no external files: it opens offline from anywhere.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from typing import Any

from tpt.analysis.plots import AXIS_TITLES, compact
from tpt.classify.taxonomy import AXES

PAPER_RATIO = 1.5  # the paper's advanced-over-no-reasoning thinking length (Figure 4)
WARN_RATE = 0.05  # truncated or flagged thinking above this share is worth a look

CSS = """
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --accent:#4f46e5; --soft:#eef2ff; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; color:var(--ink); background:#f8fafc; }
main { max-width:1240px; margin:0 auto; padding:28px 32px 48px; }
header h1 { margin:0; font-size:26px; letter-spacing:-.01em; }
header p { margin:4px 0 0; color:var(--muted); }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(136px,1fr)); gap:12px; margin:22px 0; }
.card { background:white; border:1px solid var(--line); border-radius:12px; padding:14px 16px; }
.card .value { font-size:22px; font-weight:700; font-variant-numeric:tabular-nums; }
.card .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .note { color:var(--muted); font-size:12px; }
.card.hero { background:var(--accent); color:white; border:none; }
.card.hero .label, .card.hero .note { color:#e0e7ff; }
.card.warn { background:#fffbeb; border-color:#fcd34d; } .card.warn .value { color:#b45309; }
section { background:white; border:1px solid var(--line); border-radius:12px; padding:18px 20px; margin:16px 0; overflow-x:auto; }
section h2 { margin:0 0 4px; font-size:17px; }
section p.lead { margin:0 0 12px; color:var(--muted); }
img { max-width:100%; display:block; }
.pair { display:grid; grid-template-columns:1fr 1fr; gap:16px; }
.pair section { margin:0; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; font-size:13px; }
th { text-align:right; color:var(--muted); font-weight:600; font-size:11.5px; text-transform:uppercase; letter-spacing:.03em;
     padding:6px 8px; border-bottom:2px solid var(--line); }
td { text-align:right; padding:5px 8px; border-bottom:1px solid var(--line); white-space:nowrap; }
th:first-child, td:first-child { text-align:left; }
td.bar { background-image:linear-gradient(90deg,var(--soft),var(--soft)); background-repeat:no-repeat; }
td.up { color:var(--accent); font-weight:600; }
.notice { background:#fffbeb; border:1px solid #fde68a; color:#92400e; border-radius:12px; padding:12px 16px; margin:16px 0; }
footer { color:var(--muted); font-size:12px; margin-top:24px; }
footer dt { font-weight:600; color:var(--ink); } footer dd { margin:0 0 6px; }
@media (max-width: 900px) { .pair { grid-template-columns:1fr; } }
"""

COLUMNS = (  # (key, heading, format)
    ("samples", "samples", "int"),
    ("document_share", "% docs", "pct"),
    ("label_confidence", "confidence", "score"),
    ("low_confidence_rate", "low conf.", "pct"),
    ("thinking_mean", "thinking mean", "bar"),
    ("thinking_p10", "p10", "num"),
    ("thinking_median", "median", "num"),
    ("thinking_p90", "p90", "num"),
    ("thinking_max", "max", "int"),
    ("budget_min", "budget", "budget"),  # budget_min to budget_max
    ("doc_tokens_mean", "doc mean", "num"),
    ("sample_tokens_mean", "sample mean", "num"),
    ("training_share", "% training tokens", "pct"),
    ("upsampling", "up-sampling", "factor"),
    ("thinking_truncated_rate", "thinking truncated", "pct"),
    ("flagged_rate", "flagged", "pct"),
)
LABEL_COLUMNS = {"label_confidence", "low_confidence_rate"}  # shown only where a row has them (not per source, not without a threshold)

DEFINITIONS = (
    ("Training tokens", "Tokens of the sample [d; t] (sample_tokens); where a run has no think stage yet, the kept document tokens."),
    ("Percentiles", "DuckDB quantile_cont: linear interpolation between closest ranks (numpy method='linear'), rounded to 0.01 token."),
    ("Up-sampling factor", "A class's share of training tokens over its share of documents: "
                           "above 1, TPT trains on it more than its document count says."),
    ("Whiskers", "In the bar charts the whiskers span p10 to p90 of thinking tokens."),
    ("Budget", "The max_new_tokens the class's samples were generated with: generate.max_new_tokens, or that of the "
               "generate.budgets rule they matched; a range when they differ."),
    ("Thinking truncated", "Share of samples with thinking whose generation hit the token limit (finish_reason = length)."),
    ("Flagged", "Share of samples with thinking that carry at least one thinking flag."),
    ("unknown", "Samples without a label on that axis (no classify stage, or an empty label)."),
    ("Confidence", "Mean probability the classifier gave the class's label (the manifest's domain_score, audience_score, "
                   "reasoning_score). Low conf.: the class's share scored under `tpt report --min-confidence` on that axis."),
)


def render(result: dict[str, Any], figures: dict[str, bytes]) -> str:
    """The whole report page."""
    totals = result["totals"]
    runs = ", ".join(html.escape(run["name"]) for run in result["runs"])
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>TPT report: {runs}</title><style>{CSS}</style></head><body><main>",
        "<header><h1>Thinking-augmented pre-training data</h1>",
        f"<p>{runs} · {totals['samples']:,} samples · generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC</p></header>",
        _cards(result),
    ]
    if not totals["thinking_samples"]:
        parts.append("<div class='notice'>These runs have no thinking yet (no think stage ran): thinking statistics are empty "
                     "and training tokens count the documents only.</div>")
    if result.get("confidence"):
        parts.append(_confidence_notice(result["confidence"]))
    parts.append(_figure(figures, "thinking_by_class.png", "Thinking length by class",
                         "Like the paper's Figure 4: harder domains, expert audiences and more reasoning should get longer thinking."))
    parts.append("<div class='pair'>")
    parts.append(_figure(figures, "upsampling.png", "Implicit up-sampling",
                         "Longer thinking gives a class more training tokens than its document count."))
    parts.append(_figure(figures, "tokens_by_source.png", "Tokens per source", "Document and thinking tokens of every source."))
    parts.append("</div>")
    parts.append(_figure(figures, "thinking_histogram.png", "Thinking length distribution",
                         "Per reasoning level, each normalised to its own count."))
    for axis in AXES:
        parts.append(_table(AXIS_TITLES[axis], result["axes"][axis]))
    parts.append(_table("Source", result["sources"]))
    if result["thinking_flags"]:
        rows = "".join(f"<tr><td>{html.escape(r['flag'])}</td><td>{r['samples']:,}</td></tr>" for r in result["thinking_flags"])
        parts.append(f"<section><h2>Thinking flags</h2><table><tr><th>flag</th><th>samples</th></tr>{rows}</table></section>")
    definitions = "".join(f"<dt>{html.escape(term)}</dt><dd>{html.escape(text)}</dd>" for term, text in DEFINITIONS)
    parts.append(f"<footer><dl>{definitions}</dl><p>Runs: {_run_list(result['runs'])}</p></footer></main></body></html>")
    return "\n".join(parts)


def _cards(result: dict[str, Any]) -> str:
    totals = result["totals"]
    ratio = result["reasoning_top_over_none"]
    cards = [
        ("hero", "Training tokens", compact(totals["training_tokens"]),
         f"{_pct(totals['thinking_share'])} of them thinking" if totals["thinking_samples"] else "documents only"),
        ("", "Samples", f"{totals['samples']:,}", f"{totals['thinking_samples']:,} with thinking"),
        ("", "Thinking per sample", _num(totals["thinking_mean"]),
         f"median {_num(totals['thinking_median'])}, max {_int(totals['thinking_max'])}"),
        ("", "Reasoning: top vs none",
         f"{ratio['ratio']:.2f}×" if ratio else "–",
         f"{html.escape(ratio['top'])} over {html.escape(ratio['none'])}; paper ≈{PAPER_RATIO}×" if ratio
         else "needs reasoning labels and thinking"),
        (_warn(totals["thinking_truncated_rate"]), "Thinking truncated", _pct(totals["thinking_truncated_rate"]), "hit the length limit"),
        (_warn(totals["flagged_rate"]), "Flagged", _pct(totals["flagged_rate"]), "thinking with a quality flag"),
        ("", "Documents truncated", _pct(totals["documents_truncated_rate"]),
         f"{compact(totals['doc_tokens'])} → {compact(totals['kept_tokens'])} tokens"),
    ]
    body = "".join(
        f"<div class='card {kind}'><div class='label'>{label}</div><div class='value'>{value}</div><div class='note'>{note}</div></div>"
        for kind, label, value, note in cards
    )
    return f"<div class='cards'>{body}</div>"


def _confidence_notice(confidence: dict[str, Any]) -> str:
    low, total, threshold = confidence["below"], confidence["samples"], confidence["min_confidence"]
    action = "left out of this report" if confidence["left_out"] else "counted per class in the tables' <i>low conf.</i> column"
    return (f"<div class='notice'>{low:,} of {total:,} samples ({_pct(low / total if total else None)}) have a label confidence "
            f"below {threshold:g} on at least one axis: {action}.</div>")


def _warn(rate: float | None) -> str:
    """Rates a person should look at get an amber card."""
    return "warn" if rate is not None and rate > WARN_RATE else ""


def _figure(figures: dict[str, bytes], name: str, title: str, lead: str) -> str:
    png = figures.get(name)
    content = (f"<img alt='{html.escape(title)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>" if png
               else "<p class='lead'>Nothing to plot yet.</p>")
    return f"<section id='{name.removesuffix('.png')}'><h2>{title}</h2><p class='lead'>{lead}</p>{content}</section>"


def _table(title: str, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return f"<section><h2>{title}</h2><p class='lead'>No samples.</p></section>"
    longest = max((r["thinking_mean"] or 0) for r in rows) or 1
    columns = [c for c in COLUMNS if c[0] not in LABEL_COLUMNS or any(r[c[0]] is not None for r in rows)]
    head = f"<tr><th>{title.lower()}</th>" + "".join(f"<th>{heading}</th>" for _, heading, _ in columns) + "</tr>"
    body = []
    for row in rows:
        cells = [f"<td>{html.escape(row['class'])}</td>"]
        for key, _, kind in columns:
            value = row[key]
            if kind == "bar":
                size = 100 * (value or 0) / longest
                cells.append(f"<td class='bar' style='background-size:{size:.1f}% 100%'>{_num(value)}</td>")
            elif kind == "budget":
                cells.append(f"<td>{_budget(value, row['budget_max'])}</td>")
            elif kind == "factor":
                cells.append(f"<td class='{'up' if value and value > 1 else ''}'>{'–' if value is None else f'×{value:.2f}'}</td>")
            else:
                cells.append(f"<td>{FORMATS[kind](value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<section><h2>By {title.lower()}</h2><table>{head}{''.join(body)}</table></section>"


def _run_list(runs: list[dict[str, Any]]) -> str:
    return "; ".join(f"{html.escape(r['name'])} ({html.escape(r['path'])}, {r['samples']:,} samples"
                     + ("" if r["rejected"] is None else f", {r['rejected']:,} documents set aside as rejects") + ")" for r in runs)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def _int(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _budget(low: int | None, high: int | None) -> str:
    return _int(low) if low == high else f"{low:,}–{high:,}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


FORMATS = {"int": _int, "num": _num, "pct": _pct, "score": _score}
