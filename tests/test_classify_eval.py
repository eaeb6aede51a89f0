"""The labelled evaluation set (data/classify) and `tpt classifiers eval` on it."""

from __future__ import annotations

import json
import re
from collections import Counter

import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tpt.classify.evaluation import evaluate_models, read_sources
from tpt.classify.labelset import read_labels
from tpt.classify.model import STARTER, AxisModel, model_path
from tpt.classify.taxonomy import AXES, load_taxonomy
from tpt.cli import main as tpt

DATA = ROOT / "data" / "classify"


def rows(name: str) -> list[dict]:
    return pq.read_table(DATA / f"{name}.parquet").to_pylist()


def document(row_id: str) -> str:
    """The source document of a passage id SOURCE/DOCUMENT#PASSAGE."""
    return row_id.rsplit("#", 1)[0]


@pytest.fixture(scope="module")
def heldout():
    return rows("heldout")


def test_the_split_is_by_source_document_and_gsm8k_test_is_only_held_out(heldout):
    train = rows("train")
    assert len(train) > 10_000 and len(heldout) > 4_000
    assert not {document(r["id"]) for r in train} & {document(r["id"]) for r in heldout}
    for side in (train, heldout):
        assert len({r["id"] for r in side}) == len(side)
    assert {r["id"].split("/")[2] for r in heldout if r["source"] == "gsm8k"} == {"test"}
    assert {r["id"].split("/")[2] for r in train if r["source"] == "gsm8k"} == {"train"}
    assert sum(r["source"] == "gsm8k" for r in heldout) == 1319  # the whole published test split
    assert set(Counter(r["source"] for r in train)) == set(Counter(r["source"] for r in heldout))


def test_every_source_has_one_label_per_axis_from_the_taxonomy_and_a_readme_row(heldout):
    taxonomy = load_taxonomy()
    readme = (DATA / "README.md").read_text()
    labels: dict[str, set] = {}
    for row in heldout + rows("train"):
        labels.setdefault(row["source"], set()).add(tuple(row[axis] for axis in AXES))
        assert row["text"].strip() and row["origin"]
    for source, combos in labels.items():
        assert len(combos) == 1, f"{source}: one label per axis for the whole source, got {combos}"
        domain, audience, reasoning = next(iter(combos))
        assert domain in taxonomy["domain"].labels and audience in taxonomy["audience"].labels
        assert reasoning in taxonomy["reasoning"].labels
        assert f"| `{source}` |" in readme and f"| {domain} | {audience} | {reasoning} |" in readme


def test_eval_reports_metrics_confusion_and_each_source_share(tmp_path, capsys, heldout):
    out = tmp_path / "eval.json"
    assert tpt(["classifiers", "eval", str(DATA / "heldout.parquet"), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    per_source = Counter(r["source"] for r in heldout)
    assert {source: figures["documents"] for source, figures in report["sources"].items()} == per_source
    for axis in AXES:
        metrics = report[axis]
        matrix, labels = metrics["confusion"]["matrix"], metrics["confusion"]["labels"]
        assert sum(map(sum, matrix)) == len(heldout) and 0 <= metrics["macro_f1"] <= 1
        assert f"{axis}: " in printed and f"macro F1 {metrics['macro_f1']}" in printed
        # each source holds one label per axis: the diagonal of its label's row sums what the sources were given as expected
        diagonal = sum(matrix[i][i] for i in range(len(labels)))
        expected = sum(round(figures["expected"][axis] * figures["documents"]) for figures in report["sources"].values())
        assert diagonal == expected
    gsm8k = report["sources"]["gsm8k"]
    assert re.search(rf"^gsm8k +{gsm8k['documents']} ", printed, re.M) and "reasoning level" in printed
    assert gsm8k["labelled_reasoning_level"] == 2.0  # intermediate, the third reasoning label


def test_eval_of_a_file_without_sources_still_reports_the_axes(tmp_path, heldout):
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({k: r[k] for k in ("id", "text", *AXES)}) + "\n" for r in heldout[:50]))
    out = tmp_path / "eval.json"
    assert tpt(["classifiers", "eval", str(labels), "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["sources"] == {} and report["domain"]["documents"] == 50


def test_rows_without_a_source_are_reported_together(tmp_path, heldout, capsys):
    labels = tmp_path / "labels.jsonl"
    rows = [{**{k: r[k] for k in ("id", "text", *AXES)}, "source": r["source"] if i % 2 else None} for i, r in enumerate(heldout[:40])]
    labels.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "eval.json"
    assert tpt(["classifiers", "eval", str(labels), "--output", str(out)]) == 0
    assert json.loads(out.read_text())["sources"][""]["documents"] == 20
    assert re.search(r"^\(none\) +20 ", capsys.readouterr().out, re.M)


def test_the_starter_models_meet_the_targets_on_the_held_out_set(heldout):
    """The shipped models, never trained on a held-out document: the targets of docs/classification.md."""
    taxonomy = load_taxonomy()
    docs, _ = read_labels(DATA / "heldout.parquet", taxonomy)
    models = {axis: AxisModel(model_path(STARTER, axis), axis, taxonomy) for axis in AXES}
    report = evaluate_models(docs, read_sources(DATA / "heldout.parquet"), models, taxonomy)
    sources = report["sources"]
    assert report["domain"]["macro_f1"] >= 0.8
    assert sources["gsm8k"]["expected"]["domain"] >= 0.9 and sources["gsm8k"]["expected"]["audience"] >= 0.7
    level = {source: figures["reasoning_level"] for source, figures in sources.items()}
    assert level["champ"] > level["gsm8k"] > max(level["wordnet"], level["gcide"])
