"""Runs side by side: every figure per run with its difference from the first run, and the pairwise comparison
of the samples two runs share (the same id: the same document, thought about twice).

Nothing is pooled: each run's figures come from its own samples (tpt.analysis.stats over that run alone), so a
document in two runs counts once in each. Differences are the other run's figure minus the first run's.
"""

from __future__ import annotations

from typing import Any

from tpt.analysis.runs import Run, sql_string

SCATTER_POINTS = 5000  # the scatter plot draws at most these shared samples (a fixed pseudo-random choice by id)

_PAIR = """
WITH a AS (SELECT id, thinking_tokens AS t FROM samples WHERE run = {a}),
     b AS (SELECT id, thinking_tokens AS t FROM samples WHERE run = {b}),
     shared AS (SELECT a.t AS a, b.t AS b FROM a JOIN b USING (id)),
     both_ AS (SELECT a::DOUBLE AS a, b::DOUBLE AS b FROM shared WHERE a IS NOT NULL AND b IS NOT NULL)
SELECT (SELECT count(*) FROM a) AS samples_a, (SELECT count(*) FROM b) AS samples_b,
       (SELECT count(*) FROM shared) AS shared,
       count(*) AS both_thinking,
       avg(a) AS thinking_mean_a, avg(b) AS thinking_mean_b,
       avg(b - a) AS difference_mean,
       round(quantile_cont(b - a, 0.5), 2) AS difference_median,
       CASE WHEN count(*) > 0 THEN count_if(b > a)::DOUBLE / count(*) END AS longer_in_b,
       CASE WHEN count(*) > 0 THEN count_if(b < a)::DOUBLE / count(*) END AS shorter_in_b,
       corr(a, b) AS correlation
FROM both_
"""

_POINTS = """
SELECT a.thinking_tokens AS a, b.thinking_tokens AS b
FROM (SELECT id, thinking_tokens FROM samples WHERE run = {a}) a
JOIN (SELECT id, thinking_tokens FROM samples WHERE run = {b}) b USING (id)
WHERE a.thinking_tokens IS NOT NULL AND b.thinking_tokens IS NOT NULL
ORDER BY hash(id), id LIMIT {limit}
"""


def pairs(con, runs: list[Run]) -> list[dict[str, Any]]:
    """The first run against each other run, on the ids both hold: counts, mean thinking of each on the shared
    samples with thinking in both, the mean and median of the difference (b − a), the shares where b thought
    longer or shorter, the Pearson correlation, and up to SCATTER_POINTS (a, b) points for the scatter plot."""
    first, result = runs[0], []
    for other in runs[1:]:
        names = {"a": sql_string(first.name), "b": sql_string(other.name)}
        figures = con.sql(_PAIR.format(**names)).to_arrow_table().to_pylist()[0]
        points = con.sql(_POINTS.format(**names, limit=SCATTER_POINTS)).fetchall()
        result.append({"a": first.name, "b": other.name, **_finite(figures), "points": [list(p) for p in points]})
    return result


def _finite(figures: dict[str, Any]) -> dict[str, Any]:
    """NaN (DuckDB's correlation of constant columns) as null, like every figure with nothing to measure."""
    return {key: None if isinstance(value, float) and value != value else value for key, value in figures.items()}


def side_by_side(series: dict[str, list[dict[str, Any]]], keys: list[str]) -> list[dict[str, Any]]:
    """One row per class of the runs' rows (`series`: run -> rows of `class` and figures), in the first run's
    order then the classes only later runs have: each key's value per run, and each other run's difference."""
    names = list(series)
    by_run = {name: {row["class"]: row for row in rows} for name, rows in series.items()}
    order = list(dict.fromkeys(row["class"] for rows in series.values() for row in rows))
    rows = []
    for label in order:
        row: dict[str, Any] = {"class": label}
        for key in keys:
            values = {name: by_run[name].get(label, {}).get(key) for name in names}
            row[key] = values
            row[f"{key}_difference"] = {name: difference(values[names[0]], values[name]) for name in names[1:]}
        rows.append(row)
    return rows


def difference(first: Any, other: Any) -> Any:
    """other − first, or None when either is missing."""
    return None if first is None or other is None else other - first


def flat(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Side-by-side rows as flat columns for a CSV: `key:run` for each run, `key:run-first` for each difference."""
    result = []
    for row in rows:
        flat_row: dict[str, Any] = {"class": row["class"]}
        for key, value in row.items():
            if key == "class" or key.endswith("_difference"):
                continue
            first = next(iter(value))
            flat_row.update({f"{key}:{name}": v for name, v in value.items()})
            flat_row.update({f"{key}:{name}-{first}": v for name, v in row[f"{key}_difference"].items()})
        result.append(flat_row)
    return result
