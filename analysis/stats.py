"""The per-class statistics of Figure 4 and the token accounting, in columnar DuckDB passes over `samples`.

Definitions (docs/analysis.md repeats them):
- training tokens of a sample: `sample_tokens` ([d; t] as the think stage counted
  it), or kept document tokens + thinking tokens where sample_tokens is unset (no think stage yet);
- percentiles: DuckDB `quantile_cont`, linear interpolation between closest ranks
  (numpy's method="linear", Hyndman & Fan type 7), rounded to 0.01 token;
- share of documents / of training tokens: the class's count / tokens over all samples';
- up-sampling factor: share of training tokens / share of documents (1.0 = no up-sampling);
- budget: the smallest and largest max_new_tokens the class's samples were generated with
  (thinking_budget; null in manifests older than generate.budgets);
- truncated-thinking rate: finish_reason "length" among samples with thinking (the budget ran out);
  flagged rate: samples with thinking that carry any thinking flag.
- label confidence: the mean score of the class's own axis (domain_score for a domain) over its samples;
  low-confidence rate: its samples scored below `tpt report --min-confidence` on that axis, over its samples.
A figure with nothing to measure (no thinking yet, no samples) is null, never NaN.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from tpt.analysis.classes import label_sql, order_classes, top_over_none
from tpt.classify.taxonomy import AXES

GROUPS = (*AXES, "source")
PERCENTILES = (0.1, 0.5, 0.9)
HISTOGRAM_BINS = 40

# Label confidence: per axis, the sum and count of its scores and the samples scored below the report's
# `min_confidence` (a DuckDB variable, see confidence.py: unset, the counts are null); a class row uses its own axis' figures (_CONFIDENCE).
_SCORES = ", ".join(f"sum({a}_score) AS {a}_score_sum, count({a}_score) AS {a}_scored, "
                    f"count_if({a}_score < getvariable('min_confidence')) AS {a}_low" for a in AXES)

# Phase 1 reads every sample once, grouped by the raw labels of all axes (hundreds of groups);
# phase 2 rolls that small table up per axis. Only percentiles need the samples themselves.
_FINE = f"""
    SELECT domain, audience, reasoning, source,
           count(*) AS samples,
           count(thinking_tokens) AS thinking_samples,
           sum(thinking_tokens) AS thinking_tokens,
           max(thinking_tokens) AS thinking_max,
           min(thinking_budget) AS budget_min,
           max(thinking_budget) AS budget_max,
           count(doc_tokens) AS doc_samples,
           sum(doc_tokens) AS doc_tokens,
           sum(kept_tokens) AS kept_tokens,
           sum(coalesce(sample_tokens, coalesce(kept_tokens, 0) + coalesce(thinking_tokens, 0))) AS training_tokens,
           count_if(truncated) AS documents_truncated,
           count_if(thinking_tokens IS NOT NULL AND finish_reason = 'length') AS thinking_truncated,
           count_if(thinking_tokens IS NOT NULL AND len(thinking_flags) > 0) AS flagged,
           {_SCORES}
    FROM samples GROUP BY ALL
"""


def _ratio(numerator: str, denominator: str) -> str:
    return f"CASE WHEN {denominator} > 0 THEN {numerator}::DOUBLE / {denominator} END"


_CONFIDENCE = (
    "CASE " + " ".join(f"WHEN grouping({a}) = 0 THEN {_ratio(f'sum({a}_score_sum)', f'sum({a}_scored)')}" for a in AXES)
    + " END AS label_confidence, CASE " + " ".join(f"WHEN grouping({a}) = 0 THEN sum({a}_low)" for a in AXES) + " END AS low_confidence"
)


def _labelled(columns: str) -> str:
    """`columns` of the rows, with each axis label replaced by its class."""
    return f"SELECT {', '.join(f'{label_sql(axis)} AS {axis}' for axis in AXES)}, source, {columns}"


_WHEN = " ".join(f"WHEN grouping({g}) = 0 THEN '{g}'" for g in GROUPS)
_AXIS = f"CASE {_WHEN} ELSE 'all' END AS axis, coalesce({', '.join(GROUPS)}, 'all') AS class"
_SETS = f"GROUPING SETS ({', '.join(f'({g})' for g in GROUPS)}, ())"

_CLASS_STATS = f"""
WITH fine AS ({_FINE}),
grouped AS (
    SELECT {_AXIS},
           coalesce(sum(samples), 0)::BIGINT AS samples,
           coalesce(sum(thinking_samples), 0)::BIGINT AS thinking_samples,
           {_ratio('sum(thinking_tokens)', 'sum(thinking_samples)')} AS thinking_mean,
           max(thinking_max) AS thinking_max,
           min(budget_min) AS budget_min,
           max(budget_max) AS budget_max,
           {_ratio('sum(doc_tokens)', 'sum(doc_samples)')} AS doc_tokens_mean,
           {_ratio('sum(training_tokens)', 'sum(samples)')} AS sample_tokens_mean,
           coalesce(sum(doc_tokens), 0)::BIGINT AS doc_tokens,
           coalesce(sum(kept_tokens), 0)::BIGINT AS kept_tokens,
           coalesce(sum(thinking_tokens), 0)::BIGINT AS thinking_tokens,
           coalesce(sum(training_tokens), 0)::BIGINT AS training_tokens,
           coalesce(sum(documents_truncated), 0)::BIGINT AS documents_truncated,
           coalesce(sum(thinking_truncated), 0)::BIGINT AS thinking_truncated,
           coalesce(sum(flagged), 0)::BIGINT AS flagged,
           {_CONFIDENCE}
    FROM ({_labelled('fine.* EXCLUDE (domain, audience, reasoning, source)')} FROM fine)
    GROUP BY {_SETS}
),
percentiles AS (
    SELECT {_AXIS}, quantile_cont(thinking_tokens, {list(PERCENTILES)}) AS thinking_percentiles
    FROM ({_labelled('thinking_tokens')} FROM samples WHERE thinking_tokens IS NOT NULL)
    GROUP BY {_SETS}
),
total AS (SELECT samples AS n, training_tokens AS t FROM grouped WHERE axis = 'all'),
shares AS (
    SELECT grouped.*, thinking_percentiles,
           {_ratio('samples', 'total.n')} AS document_share, {_ratio('training_tokens', 'total.t')} AS training_share
    FROM grouped CROSS JOIN total LEFT JOIN percentiles USING (axis, class)
)
SELECT axis, class, samples, thinking_samples, thinking_mean,
       round(thinking_percentiles[1], 2) AS thinking_p10,
       round(thinking_percentiles[2], 2) AS thinking_median,
       round(thinking_percentiles[3], 2) AS thinking_p90,
       thinking_max, budget_min, budget_max, doc_tokens_mean, sample_tokens_mean,
       doc_tokens, kept_tokens, thinking_tokens, training_tokens, document_share, training_share,
       {_ratio('training_share', 'document_share')} AS upsampling,
       {_ratio('thinking_tokens', 'training_tokens')} AS thinking_share,
       {_ratio('documents_truncated', 'samples')} AS documents_truncated_rate,
       {_ratio('thinking_truncated', 'thinking_samples')} AS thinking_truncated_rate,
       {_ratio('flagged', 'thinking_samples')} AS flagged_rate,
       label_confidence,
       {_ratio('low_confidence', 'samples')} AS low_confidence_rate
FROM shares ORDER BY axis, class
"""

# Counts are additive: bin by the raw group, then merge the labels of one class in the small result.
def _histogram(group: str, label: str) -> str:
    """Samples per equal-width bin of thinking tokens (0 .. the view's max) per `group`, shown as `label` of it."""
    return f"""
WITH width AS (SELECT greatest(max(thinking_tokens), 1) / {HISTOGRAM_BINS} AS w FROM samples),
binned AS (
    SELECT {group} AS grp, least(floor(thinking_tokens / w), {HISTOGRAM_BINS - 1})::INTEGER AS bin, count(*) AS samples,
           any_value(w) AS width
    FROM samples, width WHERE thinking_tokens IS NOT NULL GROUP BY ALL
)
SELECT {label} AS class, bin, sum(samples)::BIGINT AS samples, any_value(width) AS width
FROM binned GROUP BY ALL ORDER BY class, bin
"""


_FLAGS = """
SELECT flag, count(*) AS samples FROM (SELECT unnest(thinking_flags) AS flag FROM samples WHERE thinking_tokens IS NOT NULL)
GROUP BY flag ORDER BY samples DESC, flag
"""


def class_statistics(con) -> pa.Table:
    """One row per (axis, class) for axes domain, audience, reasoning, source, plus the row axis='all'."""
    return con.sql(_CLASS_STATS).to_arrow_table()


def thinking_histogram(con, by: str = "reasoning") -> pa.Table:
    """Samples per equal-width bin of thinking tokens (0 .. max), per reasoning level, or per run (`by="run"`)."""
    label = label_sql("grp") if by == "reasoning" else "grp"
    return con.sql(_histogram(by, label)).to_arrow_table()


def flag_counts(con) -> pa.Table:
    return con.sql(_FLAGS).to_arrow_table()


def analyse(con) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-ready data."""
    rows = _as_rows(class_statistics(con))
    by_axis: dict[str, list[dict[str, Any]]] = {group: [] for group in (*GROUPS, "all")}
    for row in rows:
        by_axis[row.pop("axis")].append(row)
    totals = by_axis.pop("all")[0]
    totals.pop("class")
    axes = {axis: order_classes(axis, by_axis[axis]) for axis in AXES}
    return {
        "totals": totals,
        "axes": axes,
        "sources": sorted(by_axis["source"], key=lambda row: row["class"]),
        "reasoning_top_over_none": top_over_none(axes["reasoning"]),
        "thinking_flags": _as_rows(flag_counts(con)),
        "histogram": _as_rows(thinking_histogram(con)),
    }


def _as_rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()
