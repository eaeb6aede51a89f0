"""The report's statistics against an independent numpy computation, figure by figure, exactly.

Manifests are built with known thinking lengths per class; numpy computes every
figure with the documented definitions (percentiles: method="linear", rounded to
0.01 token) and each must equal what `tpt report` wrote to summary.json.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tpt.analysis.classes import order_classes, reasoning_level, top_over_none
from tpt.analysis.report import write_report
from tpt.analysis.runs import connect, load_runs
from tpt.schema import MANIFEST_SCHEMA

LEVELS = ["none", "basic", "intermediate", "advanced"]


def write_run(folder: Path, rows: dict[str, list], summary: dict | None = None) -> Path:
    """A run output folder with a manifest of `rows` (missing columns are null) and a summary."""
    folder.mkdir(parents=True, exist_ok=True)
    count = len(next(iter(rows.values())))
    columns = {name: rows.get(name, [[] if name == "thinking_flags" else None] * count) for name in MANIFEST_SCHEMA.names}
    pq.write_table(pa.table(columns, schema=MANIFEST_SCHEMA), folder / "manifest.parquet")
    (folder / "summary.json").write_text(json.dumps(summary or {"schema_version": 1}))
    return folder


def random_rows(seed: int, count: int) -> dict[str, list]:
    """A manifest with every awkward case: null and blank labels, missing thinking, missing sample_tokens."""
    rng = np.random.default_rng(seed)
    domains = np.array(["mathematics", "physics", "history", "", None, "economics $ <finance> & law"], dtype=object)
    audiences = np.array(["general public", "graduate / expert", None], dtype=object)
    reasoning = np.array([*LEVELS, None, " "], dtype=object)
    doc = rng.integers(5, 6000, count)
    kept = np.minimum(doc, 2048)
    thinking = rng.integers(0, 8193, count).astype(object)
    thinking[rng.random(count) < 0.15] = None
    sample = np.array([k + t + 3 if t is not None else None for k, t in zip(kept, thinking)], dtype=object)
    sample[rng.random(count) < 0.2] = None
    finish = np.where(thinking == None, None, np.where(rng.random(count) < 0.1, "length", "stop"))  # noqa: E711
    budget = np.where(thinking == None, None, rng.choice([1024, 4096, 8192], count))  # noqa: E711
    flags = [["repetition"] if r < 0.1 else (["short", "no_end"] if r < 0.15 else []) for r in rng.random(count)]
    return {
        "id": [f"d{i}" for i in range(count)],
        "source": list(rng.choice(["web", "books", "reference"], count)),
        "doc_tokens": doc.tolist(), "kept_tokens": kept.tolist(), "truncated": (doc > 2048).tolist(),
        "domain": list(rng.choice(domains, count)), "audience": list(rng.choice(audiences, count)),
        "reasoning": list(rng.choice(reasoning, count)),
        "thinking_tokens": thinking.tolist(), "finish_reason": finish.tolist(), "thinking_flags": flags, "sample_tokens": sample.tolist(),
        "thinking_budget": budget.tolist(),
    }


def expected(rows: dict[str, list]) -> dict[str, dict[str, dict]]:
    """Every figure per axis and class, computed with numpy from the documented definitions."""
    n = len(rows["id"])
    thinking = np.array([np.nan if t is None else t for t in rows["thinking_tokens"]], dtype=float)
    has = ~np.isnan(thinking)
    kept = np.array(rows["kept_tokens"], dtype=float)
    sample = np.array([np.nan if s is None else s for s in rows["sample_tokens"]], dtype=float)
    training = np.where(np.isnan(sample), kept + np.where(has, thinking, 0), sample)
    doc = np.array(rows["doc_tokens"], dtype=float)
    length = np.array([f == "length" for f in rows["finish_reason"]])
    flagged = np.array([len(f) > 0 for f in rows["thinking_flags"]])
    truncated = np.array(rows["truncated"])
    budget = np.array([np.nan if b is None else b for b in rows["thinking_budget"]], dtype=float)

    def figures(mask: np.ndarray) -> dict:
        t = thinking[mask & has]
        count, with_thinking = int(mask.sum()), int((mask & has).sum())
        document_share = count / n
        training_share = float(training[mask].sum()) / float(training.sum())
        return {
            "samples": count, "thinking_samples": with_thinking,
            "thinking_mean": float(t.mean()) if t.size else None,
            **{key: (round(float(np.quantile(t, q, method="linear")), 2) if t.size else None)
               for key, q in (("thinking_p10", 0.1), ("thinking_median", 0.5), ("thinking_p90", 0.9))},
            "thinking_max": int(t.max()) if t.size else None,
            **{key: (int(pick(budget[mask & has])) if t.size else None) for key, pick in (("budget_min", np.min), ("budget_max", np.max))},
            "doc_tokens_mean": float(doc[mask].mean()), "sample_tokens_mean": float(training[mask].mean()),
            "doc_tokens": int(doc[mask].sum()), "kept_tokens": int(kept[mask].sum()),
            "thinking_tokens": int(t.sum()), "training_tokens": int(training[mask].sum()),
            "document_share": document_share, "training_share": training_share,
            "upsampling": training_share / document_share,
            "thinking_share": float(t.sum()) / float(training[mask].sum()),
            "documents_truncated_rate": int(truncated[mask].sum()) / count,
            "thinking_truncated_rate": int((length & mask & has).sum()) / with_thinking if with_thinking else None,
            "flagged_rate": int((flagged & mask & has).sum()) / with_thinking if with_thinking else None,
        }

    result = {}
    for axis in ("domain", "audience", "reasoning", "source"):
        labels = np.array([(v.strip() if v else "") or "unknown" for v in rows[axis]], dtype=object)
        result[axis] = {label: figures(labels == label) for label in sorted(set(labels))}
    result["all"] = {"all": figures(np.ones(n, bool))}
    return result


def report_of(tmp_path: Path, rows: dict[str, list]) -> dict:
    run = write_run(tmp_path / "run", rows)
    write_report(load_runs([run]), tmp_path / "report", threads=2)
    return json.loads((tmp_path / "report" / "summary.json").read_text())


def reported(summary: dict) -> dict[str, dict[str, dict]]:
    by_axis = {axis: {r["class"]: r for r in rows} for axis, rows in summary["axes"].items()}
    by_axis["source"] = {r["class"]: r for r in summary["sources"]}
    by_axis["all"] = {"all": summary["totals"]}
    return by_axis


def assert_no_nan(value) -> None:
    if isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, dict):
        for item in value.values():
            assert_no_nan(item)
    elif isinstance(value, list):
        for item in value:
            assert_no_nan(item)


@pytest.mark.parametrize("seed,count", [(0, 1), (1, 7), (2, 400), (3, 3000)])
def test_every_figure_equals_numpy(tmp_path, seed, count):
    rows = random_rows(seed, count)
    summary = report_of(tmp_path, rows)
    want, got = expected(rows), reported(summary)
    assert set(got) == set(want)
    for axis in want:
        assert set(got[axis]) == set(want[axis]), axis
        for label, figures in want[axis].items():
            for key, value in figures.items():
                assert got[axis][label][key] == value, (axis, label, key)
    assert_no_nan(summary)
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<finance>" not in page and ("&lt;finance&gt; &amp; law" in page) == ("economics $ <finance> & law" in got["domain"])
    for level in summary["axes"]["reasoning"]:  # the histogram bins every sample with thinking once
        binned = sum(b["samples"] for b in summary["histogram"] if b["class"] == level["class"])
        assert binned == level["thinking_samples"]


def test_known_lengths_per_class(tmp_path):
    """Hand-checkable: the figures a reader would compute on paper."""
    rows = {
        "id": ["a", "b", "c", "d", "e", "f"], "source": ["web"] * 6,
        "doc_tokens": [100] * 6, "kept_tokens": [100] * 6, "truncated": [False] * 6,
        "domain": ["mathematics", "mathematics", "mathematics", "history", None, ""],
        "reasoning": ["advanced", "advanced", "intermediate", "none", "none", None],
        "thinking_tokens": [300, 500, 400, 200, 100, None],
        "sample_tokens": [400, 600, 500, 300, 200, None],
        "finish_reason": ["length", "stop", "stop", "stop", "stop", None],
        "thinking_flags": [["repetition"], [], [], [], [], []],
    }
    summary = report_of(tmp_path, rows)
    math_row = next(r for r in summary["axes"]["domain"] if r["class"] == "mathematics")
    assert (math_row["samples"], math_row["thinking_mean"], math_row["thinking_median"], math_row["thinking_max"]) == (3, 400.0, 400.0, 500)
    assert math_row["thinking_p10"] == 320.0 and math_row["thinking_p90"] == 480.0
    assert math_row["training_tokens"] == 1500 and math_row["training_share"] == 1500 / 2100  # 400+600+500+300+200+100
    assert math_row["upsampling"] == (1500 / 2100) / (3 / 6)
    assert math_row["thinking_truncated_rate"] == 1 / 3 and math_row["flagged_rate"] == 1 / 3
    unknown = next(r for r in summary["axes"]["domain"] if r["class"] == "unknown")
    assert unknown["samples"] == 2 and unknown["thinking_samples"] == 1  # None and "" are both unknown
    assert [r["class"] for r in summary["axes"]["reasoning"]] == ["none", "intermediate", "advanced", "unknown"]
    assert summary["reasoning_top_over_none"] == {"top": "advanced", "none": "none", "ratio": 400.0 / 150.0}
    assert summary["thinking_flags"] == [{"flag": "repetition", "samples": 1}]


def test_class_without_thinking_and_empty_manifest(tmp_path):
    rows = {"id": ["a", "b"], "source": ["web", "web"], "doc_tokens": [10, 20], "kept_tokens": [10, 20], "truncated": [False, False]}
    summary = report_of(tmp_path / "no-thinking", rows)
    totals = summary["totals"]
    assert totals["training_tokens"] == 30 and totals["thinking_samples"] == 0
    assert totals["thinking_mean"] is None and totals["thinking_truncated_rate"] is None and summary["histogram"] == []
    assert [r["class"] for r in summary["axes"]["domain"]] == ["unknown"]
    assert summary["reasoning_top_over_none"] is None

    empty = report_of(tmp_path / "empty", {name: [] for name in MANIFEST_SCHEMA.names})
    assert empty["totals"]["samples"] == 0 and empty["axes"] == {"domain": [], "audience": [], "reasoning": []}
    assert empty["totals"]["document_share"] is None and empty["totals"]["upsampling"] is None
    for name in ("domain.csv", "sources.csv", "report.html"):
        assert (tmp_path / "empty" / "report" / name).is_file()


def test_reasoning_order_and_top_level_present():
    rows = [{"class": c, "thinking_mean": m} for c, m in
            [("unknown", 9.0), ("Intermediate", 30.0), ("zebra", 99.0), ("none", 20.0), ("basic", 10.0)]]
    assert [r["class"] for r in order_classes("reasoning", rows)] == ["none", "basic", "Intermediate", "zebra", "unknown"]
    assert top_over_none(rows) == {"top": "Intermediate", "none": "none", "ratio": 1.5}  # no "advanced": the highest present
    assert reasoning_level("Advanced reasoning") == 3 and reasoning_level("") is None
    assert top_over_none([{"class": "advanced", "thinking_mean": 5.0}]) is None  # no level none to compare with
    domains = [{"class": c, "thinking_mean": m} for c, m in [("unknown", 900.0), ("history", 100.0), ("physics", 800.0)]]
    assert [r["class"] for r in order_classes("domain", domains)] == ["physics", "history", "unknown"]


def test_samples_view_spans_runs_and_sources(tmp_path):
    first = write_run(tmp_path / "a" / "run", random_rows(4, 30))
    second = write_run(tmp_path / "b" / "run", random_rows(5, 20))
    runs = load_runs([first, second])
    assert [r.name for r in runs] == ["run", "run-2"]
    con = connect(runs)
    assert dict(con.sql("SELECT run, count(*) FROM samples GROUP BY run").fetchall()) == {"run": 30, "run-2": 20}
    assert con.sql("SELECT count(DISTINCT source) FROM samples").fetchall() == [(3,)]
