"""Output folders are used literally: glob characters and spaces in `--output` are part of the folder's name,
never a pattern that reaches another folder, on both engines and in the thinking store."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import write_jsonl
from tests.test_pipeline_beam import read_streams
from tests.test_rerun_safety import snapshot
from tpt.cli import main as tpt
from tpt.io.storage import Folder

IDS = [f"d{i}" for i in range(12)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small corpus, its config, and beside them `other/`, which the patterns `o*` and `oth?r` match: a finished run,
    and what a rerun killed before it published left in its staging folder."""
    tmp = tmp_path_factory.mktemp("paths")
    write_jsonl(tmp / "docs.jsonl", [{"id": i, "text": f"Document {i} is about tides and the moon."} for i in IDS])
    config = tmp / "config.yaml"
    config.write_text("sources: [{name: web, path: docs.jsonl}]\ntruncate: {max_doc_tokens: 16}\noutput: {parts: 2}\n")
    assert tpt(["run", str(config), "--output", str(tmp / "other"), "--workers", "1"]) == 0
    shutil.copytree(tmp / "other" / "mds", tmp / "other" / ".staging" / "mds")
    return tmp, config


@pytest.mark.parametrize("engine", ["beam", "datatrove"])
@pytest.mark.parametrize("name", ["out [1]", "o*", "oth?r"])
def test_a_run_into_a_folder_named_with_glob_characters_writes_it_whole_and_touches_no_other(corpus, engine, name):
    tmp, config = corpus
    other = snapshot(tmp / "other")
    out = tmp / name
    for _ in range(2):  # a rerun replaces the run in that folder, and only there
        assert tpt(["run", str(config), "--output", str(out), "--engine", engine, "--workers", "1"]) == 0
        totals = json.loads((out / "summary.json").read_text())["totals"]
        assert (totals["read"], totals["written"], totals["rejected"]) == (len(IDS), len(IDS), 0)
        _, samples = read_streams(out)
        assert sorted(s["id"] for s in samples) == sorted(IDS)
    assert snapshot(tmp / "other") == other
    out.rename(tmp / f"done-{engine}-{len(list(tmp.glob('done-*')))}")  # the next run starts afresh


def test_folder_operations_take_the_folder_path_literally(tmp_path):
    """Each Folder operation on a folder `a*`, beside `ab/` holding the same names: only `a*` is read or changed."""
    for folder in ("a*", "ab"):
        (tmp_path / folder / "parts").mkdir(parents=True)
        (tmp_path / folder / "parts" / "1.json").write_text(json.dumps(folder))
        (tmp_path / folder / "note.txt").write_text(folder)
    literal = Folder(tmp_path / "a*")
    assert literal.glob("parts/*.json") == ["parts/1.json"] and literal.glob("*") == ["note.txt", "parts"]
    assert literal.read_many(["parts/1.json", "note.txt"]) == [b'"a*"', b"a*"]
    literal.copy("parts", literal.path("copied"))
    assert literal.read_json("copied/1.json") == "a*"
    literal.remove("parts", "note.txt")
    assert not literal.exists("parts") and not literal.exists("note.txt")
    assert (tmp_path / "ab" / "parts" / "1.json").read_text() == '"ab"' and (tmp_path / "ab" / "note.txt").read_text() == "ab"


def test_the_thinking_store_of_a_folder_named_with_glob_characters_resumes(corpus, teacher):
    """Rerun with the same teacher settings into `think[1]`: every thinking is read back from the store, none asked again."""
    tmp, _ = corpus
    config = tmp / "think.yaml"
    config.write_text("sources: [{name: web, path: docs.jsonl}]\ntruncate: {max_doc_tokens: 16}\noutput: {parts: 2}\n"
                      f"generate: {{backend: openai, model: teacher, temperature: 0.0, max_new_tokens: 16, "
                      f"openai: {{base_urls: ['{teacher.url}']}}}}\n")
    out = tmp / "think[1]"
    reports = []
    for _ in range(2):
        assert tpt(["run", str(config), "--output", str(out), "--workers", "1"]) == 0
        reports.append(json.loads((out / "summary.json").read_text())["stages"]["think"])
    assert (reports[0]["requests_generated"], reports[1]["requests_generated"], reports[1]["requests_resumed"]) == (12, 0, 12)
