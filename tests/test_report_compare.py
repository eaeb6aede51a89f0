"""`tpt report A B`: two real runs of the same corpus with different thinking budgets (the session's `full_run`,
64 tokens, and `short_budget_run`, 16), each its own series in every figure and table, nothing pooled, and the
pairwise figures on the shared ids against a computation straight on the two manifests."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from matplotlib.image import imread

from tpt.analysis import plots
from tpt.analysis.duplicates import duplicates
from tpt.analysis.report import build
from tpt.analysis.runs import Run, load_runs
from tpt.cli import main

LABELS = ["budget 64", "budget 16"]


@pytest.fixture(scope="module")
def compared(full_run, short_budget_run, tmp_path_factory):
    output = tmp_path_factory.mktemp("compare") / "report"
    runs = [full_run[0].output.dir, short_budget_run[0].output.dir]
    assert main(["report", *runs, "--label", LABELS[0], "--label", LABELS[1], "--output", str(output)]) == 0
    return runs, output, json.loads((output / "summary.json").read_text())


@pytest.fixture(scope="module")
def single(full_run) -> dict:
    """The report of `full_run` alone."""
    return build(load_runs([full_run[0].output.dir]))


def colored(png, color: str, alpha: float = 1.0) -> int:
    """Pixels of `color` (#rrggbb), drawn with `alpha` on white, in a PNG file."""
    pixels = (imread(png)[:, :, :3] * 255).round().astype(int)
    target = [alpha * int(color[i:i + 2], 16) + (1 - alpha) * 255 for i in (1, 3, 5)]
    return int(np.all(np.abs(pixels - target) <= 3, axis=-1).sum())


def test_each_run_is_its_own_series_nothing_pooled(compared):
    runs, output, summary = compared
    assert list(summary["series"]) == LABELS and "totals" not in summary
    for label, run in zip(LABELS, runs):
        rows = pq.read_metadata(f"{run}/manifest.parquet").num_rows
        assert summary["series"][label]["totals"]["samples"] == rows  # the same ids in both runs are not counted twice
        alone = build(load_runs([run]))  # the run's figures are what its own report says
        assert summary["series"][label]["axes"] == alone["axes"] and summary["series"][label]["sources"] == alone["sources"]
    short, long_ = (summary["series"][label]["totals"]["thinking_mean"] for label in reversed(LABELS))
    assert short < long_  # a quarter of the budget thinks less
    for name in ("thinking_by_class.png", "thinking_histogram.png", "upsampling.png", "tokens_by_source.png"):
        for color in plots.RUN_COLORS[:2]:
            assert colored(output / name, color) > 200, (name, color)


def test_tables_have_a_column_per_run_and_the_difference(compared):
    _, output, summary = compared
    table = pacsv.read_csv(output / "domain.csv").to_pylist()
    first, second = (summary["series"][label]["axes"]["domain"] for label in LABELS)
    for row in table:
        a = next(r for r in first if r["class"] == row["class"])
        b = next(r for r in second if r["class"] == row["class"])
        assert row[f"thinking_mean:{LABELS[0]}"] == pytest.approx(a["thinking_mean"])
        assert row[f"thinking_mean:{LABELS[1]}"] == pytest.approx(b["thinking_mean"])
        assert row[f"thinking_mean:{LABELS[1]}-{LABELS[0]}"] == pytest.approx(b["thinking_mean"] - a["thinking_mean"])
        assert row[f"samples:{LABELS[1]}-{LABELS[0]}"] == 0  # the same documents
    page = (output / "report.html").read_text()
    assert page.count(f"<th>Δ {LABELS[1]}</th>") >= 4 * 7 and f"<th>{LABELS[1]} − {LABELS[0]}</th>" in page


def test_pairwise_figures_match_the_manifests(compared):
    runs, output, summary = compared
    a, b = (pq.read_table(f"{run}/manifest.parquet").to_pylist() for run in runs)
    thinking_b = {row["id"]: row["thinking_tokens"] for row in b}
    shared = [(row["thinking_tokens"], thinking_b[row["id"]]) for row in a if row["id"] in thinking_b]
    both = np.array([(x, y) for x, y in shared if x is not None and y is not None], float)
    pair = summary["pairs"][0]
    assert (pair["a"], pair["b"], pair["shared"], pair["both_thinking"]) == (LABELS[0], LABELS[1], len(shared), len(both))
    assert pair["thinking_mean_a"] == pytest.approx(both[:, 0].mean()) and pair["thinking_mean_b"] == pytest.approx(both[:, 1].mean())
    assert pair["difference_mean"] == pytest.approx((both[:, 1] - both[:, 0]).mean())
    assert pair["difference_median"] == round(float(np.median(both[:, 1] - both[:, 0])), 2)
    assert pair["longer_in_b"] == pytest.approx((both[:, 1] > both[:, 0]).mean())
    assert pair["shorter_in_b"] == pytest.approx((both[:, 1] < both[:, 0]).mean()) and pair["shorter_in_b"] > 0.5
    assert pair["correlation"] == pytest.approx(np.corrcoef(both[:, 0], both[:, 1])[0, 1])
    assert sorted(map(tuple, pair["points"])) == sorted(map(tuple, both.astype(int).tolist()))
    assert colored(output / "thinking_pairs.png", plots.RUN_COLORS[1], plots.POINT_ALPHA) > len(both)  # the dots drawn


def test_labels_are_checked(full_run, short_budget_run, capsys):
    runs = [full_run[0].output.dir, short_budget_run[0].output.dir]
    assert main(["report", *runs, "--label", "only one"]) == 2
    assert "1 labels for 2 runs" in capsys.readouterr().err
    assert main(["report", *runs, "--label", "same", "--label", "same"]) == 2
    assert "each run needs its own label" in capsys.readouterr().err


def test_bars_say_their_class_count(single):
    figure = plots.thinking_by_class(single)
    for panel, axis in zip(figure.axes, ("domain", "audience", "reasoning")):
        labels = sorted(text.get_text() for text in panel.texts)
        rows = [row for row in single["axes"][axis] if row["thinking_mean"] is not None]
        want = sorted(f"{row['thinking_mean']:,.0f}  n={row['samples']:,}" for row in rows)
        assert labels == want and labels


def test_duplicates_per_source_whatever_the_stage(full_run, single, tmp_path):
    mixed = next(row for row in single["duplicates"] if row["class"] == "mixed")
    assert mixed["reasons"] == {"duplicate_id": 1} and mixed["duplicates"] == 1  # "mixed-ok" appears twice in the input
    assert mixed["duplicate_share"] == 1 / full_run[1]["sources"]["mixed"]["read"]
    summary = {"sources": {"web": {"read": 100, "rejects": {"dedup": {"duplicate_id": 2, "duplicate_text": 5, "near_duplicate": 3},
                                                            "read": {"malformed_json": 4}}},
                           "books": {"read": 0, "rejects": {}}}}
    rows = duplicates(Run("r", tmp_path, summary))
    assert rows == [{"class": "books", "read": 0, "duplicates": 0, "duplicate_share": None, "reasons": {}},
                    {"class": "web", "read": 100, "duplicates": 10, "duplicate_share": 0.1,
                     "reasons": {"duplicate_id": 2, "duplicate_text": 5, "near_duplicate": 3}}]
