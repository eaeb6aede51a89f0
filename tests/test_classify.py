"""Classification: taxonomy, normalisation, fastText train -> save -> load -> predict, the stage, bad input."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tpt.classify.bootstrap import BootstrapAnnotator
from tpt.classify.labelset import FAILED, LabelledDoc, label_row, read_labels, write_labels
from tpt.classify.metrics import classification_metrics
from tpt.classify.model import STARTER, AxisModel, ModelAxisError, model_path
from tpt.classify.normalize import EmptyTextError, normalize
from tpt.classify.taxonomy import AXES, TaxonomyError, load_taxonomy
from tpt.classify.train import train_classifiers
from tpt.config import ClassifyConfig, FastTextConfig, PipelineConfig
from tpt.schema import Record, Reject
from tpt.stages.classify import Classify

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"
# the demo corpus' hand-assigned domain hints, in taxonomy ids; audience and reasoning by file, for a real signal to learn
HINTS = {"everyday": "everyday_life"}
BY_FILE = {"reference": ("expert", "advanced"), "books": ("general_public", "none"), "web": ("general_public", "basic")}
SMALL = FastTextConfig(dim=16, epoch=20, bucket=20_000, cutoff=2_000, validation=0.25)


def demo_docs(per_file: int | None = None) -> list[LabelledDoc]:
    docs = []
    for name, (audience, reasoning) in BY_FILE.items():
        rows = [json.loads(line) for line in (DEMO / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()][:per_file]
        for row in rows:
            labels = {"domain": HINTS.get(row["domain_hint"], row["domain_hint"]), "audience": audience, "reasoning": reasoning}
            docs.append(LabelledDoc(row["id"], row["text"], labels))
    return docs


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, taxonomy):
    """Models trained on 150 real demo documents (small hyper-parameters), and their report."""
    out = tmp_path_factory.mktemp("models")
    return out, train_classifiers(demo_docs(per_file=50), taxonomy, SMALL, out)


def test_default_taxonomy_has_the_issue_labels_each_defined(taxonomy):
    assert list(taxonomy.axes) == list(AXES)
    assert len(taxonomy["domain"].labels) == 16 and {"mathematics", "physics", "medicine_health", "other"} <= set(taxonomy["domain"].labels)
    assert list(taxonomy["audience"].labels) == ["general_public", "school", "undergraduate", "expert"]
    assert list(taxonomy["reasoning"].labels) == ["none", "basic", "intermediate", "advanced"]
    for axis in taxonomy.axes.values():
        assert all(definition and "\n" not in definition for definition in axis.labels.values())


def test_the_docs_show_every_label_with_its_definition(taxonomy):
    docs = (ROOT / "docs" / "classification.md").read_text()
    for axis in taxonomy.axes.values():
        assert all(f"| `{label}` | {definition} |" in docs for label, definition in axis.labels.items())


@pytest.mark.parametrize("text, problem", [
    ("domain: {question: q, labels: {a: x, b: y}}\n", "expected exactly the axes"),
    ("domain: {question: q, labels: {Bad Label: x, b: y}}\naudience: {question: q, labels: {a: x, b: y}}\n"
     "reasoning: {question: q, labels: {a: x, b: y}}\n", "must match [a-z0-9_]+"),
    ("domain: {question: q, labels: {a: x, b: y}}\naudience: {question: q, labels: {a: x}}\n"
     "reasoning: {question: q, labels: {a: x, b: y}}\n", "audience.labels: expected a mapping of at least two"),
    ("domain: {question: q, labels: {a: '', b: y}}\naudience: {question: q, labels: {a: x, b: y}}\n"
     "reasoning: {question: q, labels: {a: x, b: y}}\n", "domain.labels.a: expected a one-line definition"),
])
def test_bad_taxonomy_files_are_refused_with_the_problem(tmp_path, text, problem):
    path = tmp_path / "taxonomy.yaml"
    path.write_text(text)
    with pytest.raises(TaxonomyError, match=problem.replace("[", r"\[").replace("]", r"\]").replace("+", r"\+")):
        load_taxonomy(path)


def test_normalize_gives_one_line_of_tokens_and_refuses_invisible_text():
    assert normalize("Hello, World!\n\nIt's 42\u00a0km.") == "hello , world ! it ' s 00 km ."
    assert "\n" not in normalize((DEMO / "books.jsonl").read_text(encoding="utf-8").splitlines()[0] + "\n")
    with pytest.raises(EmptyTextError):
        normalize("\u200b\u200c\x01 \x02")


def test_train_save_load_predict_round_trip_on_real_text(trained, taxonomy):
    out, report = trained
    docs = demo_docs(per_file=50)
    assert report["documents"] == {"train": 112, "validation": 38}
    metrics = json.loads((out / "metrics.json").read_text())
    for axis in AXES:
        path = out / f"{axis}.ftz"  # quantised: 20k bucket vectors are enough for the product quantiser
        assert path.is_file() and metrics["axes"][axis]["model"] == path.name
        validation = metrics["axes"][axis]["validation"]
        assert validation["documents"] == 38
        assert set(validation["per_class"]) <= set(taxonomy[axis].labels)
        assert all({"precision", "recall", "f1", "support"} == set(c) for c in validation["per_class"].values())
        matrix = validation["confusion"]["matrix"]
        assert sum(map(sum, matrix)) == 38 and len(matrix) == len(validation["confusion"]["labels"])
        model = AxisModel(path, axis, taxonomy)
        predictions = model.predict([normalize(d.text) for d in docs])
        assert all(label in taxonomy[axis].labels and 0 < score <= 1 for label, score in predictions)
        correct = sum(label == d.labels[axis] for (label, _), d in zip(predictions, docs))
        assert correct / len(docs) > 0.7, f"{axis}: the model learned nothing ({correct}/{len(docs)})"


def test_a_model_too_small_to_quantise_is_written_unquantised(tmp_path, taxonomy, caplog):
    docs = [LabelledDoc(f"d{i}", text, {"domain": domain, "audience": "school", "reasoning": "basic"})
            for i, (text, domain) in enumerate([("The cat sat on the mat.", "everyday_life"),
                                                ("Prove that x + 1 > x.", "mathematics")] * 3)]
    report = train_classifiers(docs, taxonomy, FastTextConfig(bucket=0, word_ngrams=1, min_count=1, validation=0), tmp_path)
    assert [report["axes"][axis]["model"] for axis in AXES] == ["domain.bin", "audience.bin", "reasoning.bin"]
    assert "fewer than the 256 quantisation needs" in caplog.text
    assert report["axes"]["domain"]["validation"] is None
    assert AxisModel(tmp_path / "domain.bin", "domain", taxonomy).predict([normalize("the cat")])[0][0] in ("everyday_life", "mathematics")


def test_a_model_loaded_for_the_wrong_axis_or_missing_is_an_error(trained, taxonomy, tmp_path):
    out, _ = trained
    with pytest.raises(ModelAxisError, match="expected a audience classifier.*labels are for axis domain"):
        AxisModel(out / "domain.ftz", "audience", taxonomy)
    with pytest.raises(FileNotFoundError, match="reasoning classifier: no model file"):
        AxisModel(tmp_path / "nowhere.ftz", "reasoning", taxonomy)
    with pytest.raises(FileNotFoundError, match="no domain.ftz or domain.bin"):
        model_path(str(tmp_path), "domain")
    (tmp_path / "domain.ftz").write_text("not a model")
    with pytest.raises(ModelAxisError, match="not a fastText model"):
        AxisModel(tmp_path / "domain.ftz", "domain", taxonomy)


def test_a_model_with_labels_outside_the_taxonomy_is_refused(trained, tmp_path):
    out, _ = trained
    narrow = tmp_path / "taxonomy.yaml"
    narrow.write_text(
        "domain: {question: q, labels: {mathematics: m, physics: p}}\n"
        "audience: {question: q, labels: {expert: e, general_public: g}}\n"
        "reasoning: {question: q, labels: {none: n, basic: b}}\n"
    )
    with pytest.raises(TaxonomyError, match=r"domain.ftz: domain label '\w+' is not in the taxonomy"):
        AxisModel(out / "domain.ftz", "domain", load_taxonomy(narrow))


def test_labels_files_keep_failed_rows_out_and_refuse_foreign_labels(tmp_path, taxonomy):
    record = Record("d1", "web", "Some text.")
    ok = label_row(record, "test", {"domain": "history", "audience": "school", "reasoning": "basic"})
    failed = label_row(Record("d2", "web", "Other text."), "test", None, error="no JSON object")
    write_labels(tmp_path / "labels.parquet", [ok, failed])
    docs, n_failed = read_labels(tmp_path / "labels.parquet", taxonomy)
    assert [d.id for d in docs] == ["d1"] and n_failed == 1 and failed["status"] == FAILED
    write_labels(tmp_path / "bad.parquet", [{**ok, "domain": "astrology"}])
    with pytest.raises(TaxonomyError, match="bad.parquet: id d1: domain label 'astrology'"):
        read_labels(tmp_path / "bad.parquet", taxonomy)


def test_metrics_per_class_and_confusion():
    metrics = classification_metrics(["a", "a", "b", "c"], ["a", "b", "b", "a"], ["a", "b", "c", "d"])
    assert metrics["accuracy"] == 0.5
    assert metrics["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert metrics["per_class"]["c"]["recall"] == 0.0
    assert metrics["confusion"] == {"labels": ["a", "b", "c"], "matrix": [[1, 1, 0], [0, 1, 0], [1, 0, 0]]}


def test_bootstrap_annotator_labels_real_documents_within_the_taxonomy(taxonomy):
    annotator = BootstrapAnnotator(taxonomy)
    docs = demo_docs()
    annotations = [annotator.annotate(d.text) for d in docs]
    for annotation in annotations:
        assert all(annotation.labels[axis] in taxonomy[axis].labels for axis in AXES)
        assert {"technical_rate", "grade", "reasoning_rate", "domain_rate.mathematics"} <= set(annotation.features)
    maths = [a.labels["domain"] for a, d in zip(annotations, docs) if d.labels["domain"] == "mathematics"]
    assert maths.count("mathematics") / len(maths) > 0.8
    fortunes = [a.labels["reasoning"] for a, d in zip(annotations, docs) if d.id.startswith("fortunes")]
    assert set(fortunes) <= {"none", "basic", "intermediate"}, "short sayings read as advanced reasoning"


def test_starter_models_load_and_label_real_documents(taxonomy):
    docs = [d for d in demo_docs() if d.labels["domain"] == "mathematics"]
    for axis in AXES:
        model = AxisModel(model_path(STARTER, axis), axis, taxonomy)
        assert model.path.suffix == ".ftz" and model.path.stat().st_size < 1_000_000
        labels = [label for label, _ in model.predict([normalize(d.text) for d in docs])]
        assert all(label in taxonomy[axis].labels for label in labels)
    assert labels.count("none") < len(labels) / 2, "mpmath reference pages need more than no reasoning"


def test_stage_labels_every_record_and_rejects_invisible_text():
    stage = Classify(ClassifyConfig())
    clone = pickle.loads(pickle.dumps(stage))  # what an engine ships to its workers
    clone.setup()
    batch = [Record(d.id, "demo", d.text) for d in demo_docs(per_file=2)] + [Record("blank", "demo", "\u200b\u200b")]
    out = clone.process(batch)
    assert [r.id for r in out] == [r.id for r in batch]
    rejected = out[-1]
    assert isinstance(rejected, Reject) and rejected.reason == "empty_text" and rejected.stage == "classify"
    for record in out[:-1]:
        assert isinstance(record, Record)
        for axis in AXES:
            assert getattr(record, axis) and 0 < getattr(record, f"{axis}_score") <= 1


def test_classify_config_is_validated():
    config = PipelineConfig.model_validate({"sources": [{"name": "a", "path": "x.jsonl"}], "classify": {"models": {"domain": "m/"}}})
    assert config.classify.models.domain == "m/" and config.classify.models.audience == STARTER
    with pytest.raises(ValueError, match="threads"):
        ClassifyConfig.model_validate({"fasttext": {"threads": 4}})
    with pytest.raises(ValueError, match="Extra inputs"):
        ClassifyConfig.model_validate({"modles": {}})
    with pytest.raises(FileNotFoundError, match="no domain.ftz or domain.bin"):
        Classify(ClassifyConfig.model_validate({"models": {"domain": str(ROOT / "tests")}})).check()


# The NaN trap (docs/classification.md): below 11 threads the binding trains on uninitialised memory.
# MALLOC_PERTURB_ makes glibc hand out non-zero memory, so the failure shows on the first call, every time.
_TRAP = textwrap.dedent("""
    import json, sys, fasttext
    from tests.test_classify import SMALL, demo_docs
    from tpt.classify.taxonomy import load_taxonomy
    from tpt.classify.train import train_classifiers
    docs = demo_docs(per_file=10)
    with open(sys.argv[1] + "/train.txt", "w") as f:
        for d in docs:
            f.write("__label__" + d.labels["domain"] + " " + " ".join(d.text.split()) + "\\n")
    try:
        fasttext.train_supervised(sys.argv[1] + "/train.txt", thread=1, verbose=0)
        raw = "trained"
    except RuntimeError as error:
        raw = str(error)
    reports = [train_classifiers(docs, load_taxonomy(), SMALL, sys.argv[1] + f"/{i}") for i in range(2)]
    print(json.dumps({"raw": raw, "tpt": [r["axes"]["domain"]["model"] for r in reports]}))
""")


def test_fasttext_nan_trap_is_avoided_with_eleven_threads(tmp_path):
    env = {**os.environ, "MALLOC_PERTURB_": "1"}
    done = subprocess.run([sys.executable, "-c", _TRAP, str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["raw"] == "Encountered NaN.", "the binding no longer reads uninitialised memory: the thread floor may go"
    assert result["tpt"] == ["domain.ftz", "domain.ftz"]
