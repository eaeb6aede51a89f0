"""`tpt report` and label confidence: per-class mean scores, samples below a threshold marked or left out, against numpy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_analysis_stats import write_run
from tpt.classify.taxonomy import AXES
from tpt.cli import main

LABELS = {"domain": ["mathematics", "history", None], "audience": ["school", "expert"], "reasoning": ["none", "advanced"]}
COUNT = 400
THRESHOLD = 0.6


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(3)
    rows = {"id": [f"d{i}" for i in range(COUNT)], "source": ["web"] * COUNT, "doc_tokens": [100] * COUNT, "kept_tokens": [100] * COUNT,
            "truncated": [False] * COUNT, "thinking_tokens": rng.integers(1, 500, COUNT).tolist()}
    for axis, labels in LABELS.items():
        rows[axis] = list(rng.choice(np.array(labels, dtype=object), COUNT))
        scores = rng.uniform(0.2, 1.0, COUNT).astype(np.float32)
        rows[f"{axis}_score"] = [None if label is None else float(s) for label, s in zip(rows[axis], scores)]
    return rows


def report(tmp_path, rows, *flags):
    run = write_run(tmp_path / "run", rows)
    out = tmp_path / "report"
    assert main(["report", str(run), "--output", str(out), *flags]) == 0
    return json.loads((out / "summary.json").read_text()), (out / "report.html").read_text()


def below(rows) -> np.ndarray:
    """Per sample: is any axis' score below the threshold (a missing score never is)."""
    return np.array([any(rows[f"{axis}_score"][i] is not None and rows[f"{axis}_score"][i] < THRESHOLD for axis in AXES)
                     for i in range(COUNT)])


def test_each_class_shows_its_mean_label_confidence_and_share_below(tmp_path, rows, capsys):
    summary, page = report(tmp_path, rows, "--min-confidence", str(THRESHOLD))
    for axis in AXES:
        for row in summary["axes"][axis]:
            members = [i for i in range(COUNT) if (rows[axis][i] or "unknown") == row["class"]]
            scores = np.array([rows[f"{axis}_score"][i] for i in members if rows[f"{axis}_score"][i] is not None], dtype=np.float64)
            if row["class"] == "unknown":
                assert row["label_confidence"] is None and row["low_confidence_rate"] is None
                continue
            assert row["label_confidence"] == pytest.approx(scores.mean(), abs=1e-9)
            assert row["low_confidence_rate"] == pytest.approx((scores < THRESHOLD).sum() / len(members), abs=1e-12)
    assert summary["confidence"] == {"min_confidence": THRESHOLD, "samples": COUNT, "below": int(below(rows).sum()), "left_out": False}
    assert f"{int(below(rows).sum()):,} of {COUNT:,} samples" in page and "low conf." in page
    assert "marked per class" in capsys.readouterr().out


def test_samples_below_the_threshold_can_be_left_out(tmp_path, rows):
    summary, page = report(tmp_path, rows, "--min-confidence", str(THRESHOLD), "--leave-out-low-confidence")
    kept = ~below(rows)
    assert summary["totals"]["samples"] == int(kept.sum()) < COUNT
    assert summary["totals"]["thinking_tokens"] == int(np.array(rows["thinking_tokens"])[kept].sum())
    for axis in AXES:
        for row in summary["axes"][axis]:
            assert row["samples"] == sum(1 for i in np.flatnonzero(kept) if (rows[axis][i] or "unknown") == row["class"])
            assert row["low_confidence_rate"] in (0, None)
    assert summary["confidence"]["left_out"] and "left out of this report" in page


def test_without_a_threshold_only_the_mean_confidence_is_shown(tmp_path, rows):
    summary, page = report(tmp_path, rows)
    assert summary["confidence"] is None and summary["totals"]["samples"] == COUNT
    assert all(row["low_confidence_rate"] is None and row["label_confidence"] for row in summary["axes"]["audience"])
    assert "<th>confidence</th>" in page and "<th>low conf.</th>" not in page and "samples have a label confidence" not in page


@pytest.mark.parametrize("flags, message", [
    (["--leave-out-low-confidence"], "needs --min-confidence"),
    (["--min-confidence", "1.5"], "expected a probability in (0, 1]"),
])
def test_bad_confidence_options_are_one_line_errors(tmp_path, rows, capsys, flags, message):
    run = write_run(tmp_path / "run", rows)
    assert main(["report", str(run), "--output", str(tmp_path / "report"), *flags]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "report").exists()
