"""The self-contained report.html: key figures first, then the plots (inlined as base64 PNGs), the per-class
tables, the duplicates per source and a few samples per class. No scripts, no external files: it opens
offline from anywhere, and its Content-Security-Policy lets nothing run or load even if text slipped through
unescaped. Every piece of data (labels, run names, sample text) is HTML-escaped. For several runs, each table
has a column per run and the difference from the first (tpt.analysis.compare).
"""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from typing import Any

from tpt.analysis.compare import difference, side_by_side
from tpt.analysis.plots import AXIS_TITLES, compact
from tpt.classify.taxonomy import AXES

PAPER_RATIO = 1.5  # the paper's advanced-over-no-reasoning thinking length (Figure 4)
WARN_RATE = 0.05  # truncated or flagged thinking above this share is worth a look

CSS = """
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --accent:#4f46e5; --soft:#eef2ff; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; color:var(--ink); background:#f8fafc; }
main { max-width:1360px; margin:0 auto; padding:24px 20px 48px; }
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
section { background:white; border:1px solid var(--line); border-radius:12px; padding:16px 16px; margin:16px 0; overflow-x:auto; }
section h2 { margin:0 0 4px; font-size:17px; }
section p.lead { margin:0 0 12px; color:var(--muted); }
img { max-width:100%; display:block; }
.pair { display:grid; grid-template-columns:1fr 1fr; gap:16px; }
.pair section { margin:0; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; font-size:12.5px; }
th { text-align:right; color:var(--muted); font-weight:600; font-size:11px; text-transform:uppercase; letter-spacing:.02em;
     padding:6px 5px; border-bottom:2px solid var(--line); vertical-align:bottom; }
td { text-align:right; padding:5px 5px; border-bottom:1px solid var(--line); white-space:nowrap; }
th:first-child, td:first-child { text-align:left; white-space:normal; overflow-wrap:anywhere; max-width:190px; }
th.group { text-align:center; border-bottom:1px solid var(--line); }
td.diff { color:var(--muted); }
.grid { display:grid; grid-template-columns:repeat(auto-fill,minmax(400px,1fr)); gap:8px 24px; }
.grid h3 { margin:8px 0 4px; font-size:13px; }
details { border-top:1px solid var(--line); padding:6px 0; }
summary { cursor:pointer; font-weight:600; }
.sample { margin:8px 0 12px; }
.sample .meta { color:var(--muted); font-size:12px; }
.sample blockquote { margin:4px 0; padding:6px 10px; border-left:3px solid var(--line); white-space:pre-wrap;
                    overflow-wrap:anywhere; font-size:12.5px; }
.sample blockquote.thinking { border-left-color:var(--accent); background:var(--soft); }
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


CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"  # nothing runs, nothing loads but the inlined PNGs
COMPARED = (  # the figures each comparison table shows per run, with the difference: (key, heading, format)
    ("samples", "samples", "int"),
    ("thinking_mean", "thinking mean", "num"),
    ("thinking_median", "thinking median", "num"),
    ("thinking_p90", "thinking p90", "num"),
    ("training_share", "% training tokens", "pct"),
    ("upsampling", "up-sampling", "factor"),
    ("thinking_truncated_rate", "thinking truncated", "pct"),
)
KEY_FIGURES = (  # the comparison's first table: (key in totals, heading, format)
    ("training_tokens", "training tokens", "int"),
    ("samples", "samples", "int"),
    ("thinking_samples", "samples with thinking", "int"),
    ("thinking_share", "thinking share of training tokens", "pct"),
    ("thinking_mean", "thinking per sample (mean)", "num"),
    ("thinking_median", "thinking per sample (median)", "num"),
    ("thinking_truncated_rate", "thinking truncated", "pct"),
    ("flagged_rate", "flagged", "pct"),
    ("documents_truncated_rate", "documents truncated", "pct"),
)


def render(result: dict[str, Any], figures: dict[str, bytes]) -> str:
    """The whole report page: one run's, or several side by side."""
    runs = ", ".join(html.escape(run["name"]) for run in result["runs"])
    comparing = "series" in result
    samples = sum(run["samples"] for run in result["runs"])
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>TPT report: {runs}</title><style>{CSS}</style></head><body><main>",
        f"<header><h1>{'Comparing thinking-augmented pre-training data' if comparing else 'Thinking-augmented pre-training data'}</h1>",
        f"<p>{runs} · {samples:,} samples{' in all' if comparing else ''} · "
        f"generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC</p></header>",
        *(_comparison(result, figures) if comparing else _single(result, figures)),
    ]
    definitions = "".join(f"<dt>{html.escape(term)}</dt><dd>{html.escape(text)}</dd>" for term, text in DEFINITIONS)
    parts.append(f"<footer><dl>{definitions}</dl><p>Runs: {_run_list(result['runs'])}</p></footer></main></body></html>")
    return "\n".join(parts)


def _single(result: dict[str, Any], figures: dict[str, bytes]) -> list[str]:
    totals = result["totals"]
    parts = [_cards(result)]
    if not totals["thinking_samples"]:
        parts.append("<div class='notice'>These runs have no thinking yet (no think stage ran): thinking statistics are empty "
                     "and training tokens count the documents only.</div>")
    if result.get("confidence"):
        parts.append(_confidence_notice(result["confidence"]))
    parts.append(_figure(figures, "thinking_by_class.png", "Thinking length by class",
                         "Like the paper's Figure 4: harder domains, expert audiences and more reasoning should get longer thinking. "
                         "Each bar says its mean and its class's sample count (n)."))
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
    parts.append(_duplicates(result["duplicates"]))
    parts.append(_samples({result["runs"][0]["name"]: result["samples"]}))
    return parts


def _comparison(result: dict[str, Any], figures: dict[str, bytes]) -> list[str]:
    series = result["series"]
    names = list(series)
    parts = [_key_figures(series)]
    for name, confidence in (result.get("confidence") or {}).items():
        if confidence:
            parts.append(_confidence_notice(confidence, owner=name))
    parts.append(_figure(figures, "thinking_by_class.png", "Thinking length by class",
                         "Figure 4 per run, the runs' bars side by side: mean thinking tokens and the class's sample count (n)."))
    parts.append(_figure(figures, "thinking_histogram.png", "Thinking length distribution",
                         "Each run's samples with thinking, on common bins, each normalised to its own count."))
    parts.append(_pairs(result["pairs"], figures))
    parts.append("<div class='pair'>")
    parts.append(_figure(figures, "upsampling.png", "Implicit up-sampling",
                         "Per domain and run: share of documents and of training tokens."))
    parts.append(_figure(figures, "tokens_by_source.png", "Tokens per source", "Document and thinking tokens of every source, per run."))
    parts.append("</div>")
    groups = [(AXIS_TITLES[axis], {name: s["axes"][axis] for name, s in series.items()}) for axis in AXES]
    for title, by_run in [*groups, ("Source", {name: s["sources"] for name, s in series.items()})]:
        rows = side_by_side(by_run, [key for key, _, _ in COMPARED])
        tables = "".join(f"<div><h3>{heading}</h3>{_compared(rows, key, kind, names, title.lower())}</div>"
                         for key, heading, kind in COMPARED)
        parts.append(f"<section><h2>By {title.lower()}</h2><p class='lead'>Each run's figure, and the difference "
                     f"from {html.escape(names[0])}.</p><div class='grid'>{tables}</div></section>")
    duplicated = side_by_side({name: s["duplicates"] for name, s in series.items()}, ["read", "duplicates", "duplicate_share"])
    tables = "".join(f"<div><h3>{heading}</h3>{_compared(duplicated, key, kind, names, 'source')}</div>"
                     for key, heading, kind in (("duplicates", "duplicates", "int"), ("duplicate_share", "% of documents read", "pct")))
    parts.append("<section><h2>Duplicates per source</h2><p class='lead'>Documents set aside as duplicates (every reject "
                 f"reason naming a duplicate), per run.</p><div class='grid'>{tables}</div></section>")
    parts.append(_samples({name: s["samples"] for name, s in series.items()}))
    return parts


def _key_figures(series: dict[str, dict[str, Any]]) -> str:
    """The first table of a comparison: a row per overall figure, a column per run and one per difference."""
    names = list(series)
    head = (f"<tr><th>figure</th>{_run_heads(names)}"
            + "".join(f"<th>{html.escape(name)} − {html.escape(names[0])}</th>" for name in names[1:]) + "</tr>")
    body = []
    for key, heading, kind in KEY_FIGURES:
        values = [series[name]["totals"][key] for name in names]
        body.append(f"<tr><td>{heading}</td>" + "".join(f"<td>{FORMATS[kind](value)}</td>" for value in values)
                    + "".join(f"<td class='diff'>{_signed(difference(values[0], value), kind)}</td>" for value in values[1:]) + "</tr>")
    return f"<section><h2>Key figures</h2><table>{head}{''.join(body)}</table></section>"


def _run_heads(names: list[str]) -> str:
    return "".join(f"<th>{html.escape(name)}</th>" for name in names)


def _compared(rows: list[dict[str, Any]], key: str, kind: str, names: list[str], first: str) -> str:
    """One figure of a side-by-side table: class, each run's value, each difference from the first run."""
    head = (f"<tr><th>{html.escape(first)}</th>{_run_heads(names)}"
            + "".join(f"<th>Δ {html.escape(name)}</th>" for name in names[1:]) + "</tr>")
    body = "".join(
        f"<tr><td>{html.escape(row['class'])}</td>" + "".join(f"<td>{FORMATS[kind](row[key][name])}</td>" for name in names)
        + "".join(f"<td class='diff'>{_signed(row[f'{key}_difference'][name], kind)}</td>" for name in names[1:]) + "</tr>"
        for row in rows)
    return f"<table>{head}{body}</table>"


def _pairs(pairs: list[dict[str, Any]], figures: dict[str, bytes]) -> str:
    """The samples runs share, run against run: the scatter plot and its figures."""
    if not pairs:
        return ""
    rows = [("shared samples (same id)", "shared", _int), ("... with thinking in both", "both_thinking", _int),
            ("thinking mean, first run", "thinking_mean_a", _num), ("thinking mean, other run", "thinking_mean_b", _num),
            ("difference, mean (other − first)", "difference_mean", _num), ("difference, median", "difference_median", _num),
            ("other run thought longer", "longer_in_b", _pct), ("other run thought shorter", "shorter_in_b", _pct),
            ("correlation (Pearson)", "correlation", _score)]
    head = "<tr><th>on the shared samples</th>" + "".join(
        f"<th>{html.escape(p['b'])} vs {html.escape(p['a'])}</th>" for p in pairs) + "</tr>"
    body = "".join(f"<tr><td>{label}</td>" + "".join(f"<td>{show(p[key])}</td>" for p in pairs) + "</tr>" for label, key, show in rows)
    figure = _figure(figures, "thinking_pairs.png", "The same documents, run against run",
                     "Thinking tokens of each document both runs hold (same id): above the diagonal, the other run thought longer.")
    return figure.replace("</section>", f"<table>{head}{body}</table></section>")


def _duplicates(rows: list[dict[str, Any]]) -> str:
    """Per source: documents read, set aside as duplicates (per reason), and their share."""
    reasons = sorted({reason for row in rows for reason in row["reasons"]})
    if not rows:
        return "<section><h2>Duplicates per source</h2><p class='lead'>The run's summary has no sources.</p></section>"
    head = ("<tr><th>source</th><th>read</th>" + "".join(f"<th>{html.escape(r)}</th>" for r in reasons)
            + "<th>duplicates</th><th>% of read</th></tr>")
    body = "".join(f"<tr><td>{html.escape(row['class'])}</td><td>{_int(row['read'])}</td>"
                   + "".join(f"<td>{_int(row['reasons'].get(r, 0))}</td>" for r in reasons)
                   + f"<td>{_int(row['duplicates'])}</td><td>{_pct(row['duplicate_share'])}</td></tr>" for row in rows)
    return ("<section><h2>Duplicates per source</h2><p class='lead'>Documents set aside as duplicates: every reject reason "
            f"naming a duplicate, whatever stage set it aside.</p><table>{head}{body}</table></section>")


def _samples(by_run: dict[str, dict[str, dict[str, list[dict[str, Any]]]]]) -> str:
    """A few short samples per class (document and thinking excerpts), per run, each class folded."""
    parts = []
    for name, by_axis in by_run.items():
        for axis in AXES:
            for label, samples in (by_axis.get(axis) or {}).items():
                items = "".join(_sample(sample) for sample in samples)
                owner = f"{html.escape(name)} · " if len(by_run) > 1 else ""
                parts.append(f"<details><summary>{owner}{AXIS_TITLES[axis].lower()}: {html.escape(label)} "
                             f"({len(samples)})</summary>{items}</details>")
    if not parts:
        return "<section><h2>Samples</h2><p class='lead'>No shards to read samples from.</p></section>"
    return ("<section id='samples'><h2>Samples</h2><p class='lead'>A few short samples of each class, from the start of the "
            f"shards: the document, then the thinking. <code>tpt show OUT --where ...</code> prints more.</p>{''.join(parts)}</section>")


def _sample(sample: dict[str, Any]) -> str:
    thinking = sample.get("thinking")
    tokens = "" if sample.get("thinking_tokens") is None else f" · {sample['thinking_tokens']:,} thinking tokens"
    return (f"<div class='sample'><div class='meta'>{html.escape(sample['source'])} · {html.escape(sample['id'])}{tokens}</div>"
            f"<blockquote class='document'>{html.escape(sample['document'])}</blockquote>"
            + ("" if thinking is None else f"<blockquote class='thinking'>{html.escape(thinking)}</blockquote>") + "</div>")


def _signed(value: float | None, kind: str) -> str:
    """A difference: signed, percentage points for shares."""
    if value is None:
        return "–"
    if kind == "pct":
        return f"{100 * value:+.1f} pp"
    if kind == "factor":
        return f"{value:+.2f}"
    return f"{value:+,.0f}" if kind == "int" else f"{value:+,.1f}"


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


def _confidence_notice(confidence: dict[str, Any], owner: str = "") -> str:
    low, total, threshold = confidence["below"], confidence["samples"], confidence["min_confidence"]
    action = "left out of this report" if confidence["left_out"] else "counted per class in the tables' <i>low conf.</i> column"
    owner = f"{html.escape(owner)}: " if owner else ""
    return (f"<div class='notice'>{owner}{low:,} of {total:,} samples ({_pct(low / total if total else None)}) have a label confidence "
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


FORMATS = {"int": _int, "num": _num, "pct": _pct, "score": _score, "factor": lambda v: "–" if v is None else f"×{v:.2f}"}
