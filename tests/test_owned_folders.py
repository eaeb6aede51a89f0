"""tpt deletes nothing it did not write: every command that writes a folder whole refuses, in one line naming it,
a path that holds a user's files, a regular file or another command's output, and leaves it as it was."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_jsonl
from tests.test_rerun_safety import snapshot
from tpt.cli import main as tpt

DOCS = [{"id": f"d{i}", "text": f"Held-out document {i}."} for i in range(5)]


def users_folder(path):
    """A folder of someone's own files, named as tpt's outputs are."""
    (path / "mds").mkdir(parents=True)
    (path / "mds" / "thesis.tex").write_text("four years of work")
    (path / "rejects").mkdir()
    (path / "rejects" / "letters.txt").write_text("not a tpt reject")
    (path / "summary.json").write_text(json.dumps({"chapter": 1}))
    return path


def refused(capsys, argv: list[str], path) -> str:
    capsys.readouterr()
    assert tpt(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"tpt {argv[0]}: error: {path}")
    return error[0]


@pytest.mark.parametrize("engine", ["beam", "datatrove"])
def test_run_refuses_a_folder_no_run_wrote_and_reruns_into_its_own(tmp_path, capsys, engine):
    write_jsonl(tmp_path / "docs.jsonl", DOCS)
    config = tmp_path / "config.yaml"
    config.write_text("sources: [{name: web, path: docs.jsonl}]\n")
    mine = users_folder(tmp_path / "mine")
    before = snapshot(mine)
    line = refused(capsys, ["run", str(config), "--output", str(mine), "--engine", engine, "--workers", "1"], mine)
    assert "holds files tpt did not write" in line
    assert snapshot(mine) == before
    notes = tmp_path / "notes.txt"
    notes.write_text("a file")
    assert "is a file" in refused(capsys, ["run", str(config), "--output", str(notes), "--engine", engine], notes)
    out = tmp_path / "out"
    for _ in range(2):
        assert tpt(["run", str(config), "--output", str(out), "--engine", engine, "--workers", "1"]) == 0
        assert json.loads((out / "summary.json").read_text())["totals"]["written"] == len(DOCS)


def test_a_run_folder_from_before_markers_is_still_rerun(tmp_path):
    write_jsonl(tmp_path / "docs.jsonl", DOCS)
    config = tmp_path / "config.yaml"
    config.write_text("sources: [{name: web, path: docs.jsonl}]\n")
    out = tmp_path / "out"
    assert tpt(["run", str(config), "--output", str(out), "--workers", "1"]) == 0
    (out / ".tpt-owner").unlink()  # as an older tpt left it
    assert tpt(["run", str(config), "--output", str(out), "--workers", "1"]) == 0
    assert (out / ".tpt-owner").read_text() == "tpt run\n"


def test_heldout_refuses_what_it_did_not_write_and_replaces_its_own(tmp_path, capsys):
    docs = write_jsonl(tmp_path / "docs.jsonl", DOCS)
    mine = users_folder(tmp_path / "mine")
    before = snapshot(mine)
    assert "holds files tpt did not write" in refused(capsys, ["heldout", str(mine), str(docs)], mine)
    assert snapshot(mine) == before
    (tmp_path / "file").write_text("a file of that name")
    assert "is a file" in refused(capsys, ["heldout", str(tmp_path / "file"), str(docs)], tmp_path / "file")
    assert (tmp_path / "file").read_text() == "a file of that name"
    out = tmp_path / "heldout"
    assert tpt(["heldout", str(out), str(docs)]) == 0
    assert tpt(["heldout", str(out), str(docs), "--limit", "2"]) == 0  # its own: replaced
    assert json.loads((out / "index.json").read_text())["shards"][0]["samples"] == 2
    run = tmp_path / "run"  # another command's output
    (run / "mds").mkdir(parents=True)
    (run / ".tpt-owner").write_text("tpt run\n")
    assert "`tpt run` wrote it" in refused(capsys, ["heldout", str(run), str(docs)], run)
    assert (run / "mds").is_dir()


def test_the_teacher_conversion_refuses_a_cache_folder_it_did_not_write(tmp_path, monkeypatch):
    from tpt.assets import EMBEDDED_NAME, embedded_teacher_dir
    from tpt.io.owned import NotOwned

    monkeypatch.setenv("TPT_CACHE", str(tmp_path))
    mine = users_folder(tmp_path / EMBEDDED_NAME)
    before = snapshot(mine)
    with pytest.raises(NotOwned, match="holds files tpt did not write"):
        embedded_teacher_dir()
    assert snapshot(mine) == before


def test_classifier_training_refuses_a_folder_it_did_not_write_and_retrains_into_its_own(tmp_path):
    from tpt.classify.labelset import LabelledDoc
    from tpt.classify.taxonomy import load_taxonomy
    from tpt.classify.train import train_classifiers
    from tpt.config import FastTextConfig
    from tpt.io.owned import NotOwned

    pairs = [("The cat sat on the mat.", "everyday_life"), ("Prove that x + 1 > x.", "mathematics")] * 3
    docs = [LabelledDoc(f"d{i}", text, {"domain": domain, "audience": "school", "reasoning": "basic"})
            for i, (text, domain) in enumerate(pairs)]
    params = FastTextConfig(bucket=0, word_ngrams=1, min_count=1, validation=0)
    mine = users_folder(tmp_path / "mine")
    (mine / "domain.bin").write_text("my own model")
    before = snapshot(mine)
    with pytest.raises(NotOwned, match="holds files tpt did not write"):
        train_classifiers(docs, load_taxonomy(), params, mine)
    assert snapshot(mine) == before
    models = tmp_path / "models"
    for _ in range(2):
        report = train_classifiers(docs, load_taxonomy(), params, models)
        written = [".tpt-owner", "metrics.json", *(axis["model"] for axis in report["axes"].values())]
        assert sorted(p.name for p in models.iterdir()) == sorted(written)
