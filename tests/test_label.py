"""`tpt label`: the sample, answer parsing, the retry, the resumable store, and label -> train -> predict
with the embedded SmolLM2 teacher as labeller, killed and resumed."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import ROOT, write_jsonl
from tpt.classify.labelling import BootstrapLabeller, label_sample
from tpt.classify.llm import LLMLabeller, parse_answer
from tpt.classify.sample import sample_documents
from tpt.classify.taxonomy import AXES, load_taxonomy
from tpt.cli import main as tpt
from tpt.config import ClassifyConfig, GenerateConfig, load_config
from tpt.generate.backend import Backend
from tpt.generate.types import Completion, Request
from tpt.schema import Record
from tpt.stages.classify import Classify

DEMO = ROOT / "data" / "demo"
TINY_TAXONOMY = """\
domain:
  question: What is the document about?
  labels: {science: Mathematics physics biology computing., history: Past events., everyday: Daily life and sayings.}
audience:
  question: Who is it written for?
  labels: {public: Anyone., expert: Specialists.}
reasoning:
  question: How much reasoning does it demand?
  labels: {low: Little or none., high: Much.}
"""


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy()


def demo_rows(per_file: int) -> list[dict]:
    rows = []
    for name in ("reference", "books", "web"):
        with open(DEMO / f"{name}.jsonl", encoding="utf-8") as stream:
            rows += [json.loads(line) for _, line in zip(range(per_file), stream)]
    return rows


def answer(text: str, finish_reason: str = "stop") -> Completion:
    return Completion("x", text, finish_reason, error="server said 500" if finish_reason == "error" else None)


def test_parse_answer_accepts_json_in_prose_and_refuses_everything_else(taxonomy):
    assert parse_answer(answer('Sure! ```json\n{"domain": "Medicine & Health", "audience": "expert", "reasoning": "basic"}\n```'),
                        taxonomy) == {"domain": "medicine_health", "audience": "expert", "reasoning": "basic"}
    for text, problem in [
        ("mathematics, expert, advanced", "no JSON object"),
        ('{"domain": "physics", "audience": "expert"}', "lacks reasoning"),
        ('{"domain": "astrology", "audience": "expert", "reasoning": "none"}', "domain 'astrology' is not one of"),
        ('{"domain": "physics", "audience": ["expert"], "reasoning": "none"}', "audience \\['expert'\\] is not one of"),
    ]:
        with pytest.raises(ValueError, match=problem):
            parse_answer(answer(text), taxonomy)
    with pytest.raises(ValueError, match="generation failed: server said 500"):
        parse_answer(answer("", "error"), taxonomy)


class ScriptedFaultBackend(Backend):
    """A fault injector: answers each request id from a script the moment it is submitted, to drive invalid
    answers into the labeller; it records the order requests reach it."""

    def __init__(self, script: dict[str, str]):
        self.script, self.sent = script, []

    def submit(self, requests: list[Request], on_done) -> None:
        for r in requests:
            self.sent.append(r.id)
            on_done(Completion(r.id, self.script[r.id], "stop", prompt_tokens=100, output_tokens=10))


def test_an_invalid_answer_is_retried_once_in_the_window_then_recorded_as_failed(taxonomy):
    """Labels stream: a retry goes out as soon as its bad first answer is back, beside the next documents'
    requests, instead of waiting for a second round after every first answer. What a user relies on: every
    document gets exactly one row, at most one retry each, and both attempts' tokens are counted."""
    good = '{"domain": "history", "audience": "general_public", "reasoning": "none"}'
    backend = ScriptedFaultBackend({"a": good, "b": "I think it is history.", "b#retry": good, "c": "no idea", "c#retry": "still no idea"})
    records = [Record(i, "web", f"document {i}") for i in "abc"]
    rows = list(LLMLabeller(backend, taxonomy, GenerateConfig(model="m", max_in_flight=2), 100).label(records))
    assert backend.sent == ["a", "b", "b#retry", "c", "c#retry"]  # rounds would send a, b, c, b#retry, c#retry
    by_id = {r["id"]: r for r in rows}
    assert len(rows) == len(by_id) == 3
    assert [(by_id[i]["status"], by_id[i]["domain"]) for i in "abc"] == [("ok", "history"), ("ok", "history"), ("failed", None)]
    assert "answer: no JSON object" in by_id["c"]["error"] and "retry: no JSON object" in by_id["c"]["error"]
    assert by_id["c"]["answer"] == "still no idea" and by_id["a"]["annotator"] == "llm:m"
    assert [(by_id[i]["prompt_tokens"], by_id[i]["output_tokens"]) for i in "abc"] == [(100, 10), (200, 20), (200, 20)]


def test_the_sample_is_reproducible_and_grows_by_inclusion(demo_config):
    five = [r.id for r in sample_documents(demo_config, 5, seed=3)]
    assert five == [r.id for r in sample_documents(demo_config, 5, seed=3)]
    assert set(five) < {r.id for r in sample_documents(demo_config, 12, seed=3)}
    assert five != [r.id for r in sample_documents(demo_config, 5, seed=4)]
    with pytest.raises(ValueError, match="positive"):
        sample_documents(demo_config, 0)


def test_a_line_cut_short_by_a_kill_or_corrupted_is_relabelled_never_duplicated(tmp_path, taxonomy, caplog):
    records = [Record(row["id"], "demo", row["text"]) for row in demo_rows(per_file=2)]
    labeller = BootstrapLabeller(taxonomy)
    label_sample(records[:4], labeller, tmp_path)
    store = tmp_path / "labels.jsonl"
    with open(store, "a") as stream:
        stream.write('{"id": "' + records[4].id + '", "sour')  # what a SIGKILL mid-write leaves
    counts = label_sample(records, labeller, tmp_path)
    ids = [json.loads(line)["id"] for line in store.read_text().splitlines()]
    assert counts["labelled_now"] == 2 and counts["ok"] == 6
    assert sorted(ids) == sorted(r.id for r in records)
    lines = store.read_text().splitlines(keepends=True)
    store.write_text("".join(lines[:2]) + "garbage\n" + "".join(lines[3:]))  # a row corrupted in the middle
    with caplog.at_level(logging.WARNING):
        counts = label_sample(records, labeller, tmp_path)
    assert "labels.jsonl:3: corrupt line, not JSON" in caplog.text and "its document is labelled again" in caplog.text
    assert counts["labelled_now"] == 1 and counts["ok"] == 6  # the corrupted row's document, and only it


def test_llm_labeller_needs_a_generate_section(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"sources": [{"name": "demo", "path": str(DEMO / "web.jsonl")}]}))
    assert tpt(["label", str(config), "--sample", "2", "--output", str(tmp_path / "out")]) == 2
    assert "needs a generate: section" in capsys.readouterr().err


def test_label_train_predict_with_the_embedded_teacher_killed_and_resumed(tmp_path):
    """The whole path with SmolLM2-135M as labeller; label quality is irrelevant, the machinery is not."""
    (tmp_path / "taxonomy.yaml").write_text(TINY_TAXONOMY)
    rows = demo_rows(per_file=2)[:5]
    write_jsonl(tmp_path / "docs.jsonl", rows)
    models = tmp_path / "models"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "sources": [{"name": "demo", "path": "docs.jsonl"}],
        "generate": {"backend": "transformers", "model": "embedded", "temperature": 0, "max_in_flight": 1, "micro_batch_size": 1},
        "classify": {
            "taxonomy": str(tmp_path / "taxonomy.yaml"), "label_max_chars": 300, "label_max_new_tokens": 32,
            "models": {axis: str(models) for axis in AXES},
            "fasttext": {"dim": 8, "epoch": 5, "bucket": 10_000, "cutoff": 1_000, "validation": 0.2},
        },
    }))
    out = tmp_path / "labels"
    command = [sys.executable, "-m", "tpt.cli", "label", str(config), "--sample", "5", "--output", str(out)]
    store = out / "labels.jsonl"

    log = tmp_path / "first.log"
    with open(log, "w") as stderr:
        first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 240
    while not (store.is_file() and store.read_text().count("\n") >= 1):
        assert first.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, "no label written in 240 s"
        time.sleep(0.1)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    before = store.read_text()
    assert 1 <= before.count("\n") < 5, "the run finished before it could be killed"

    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    after = store.read_text()
    assert after.startswith(before), "finished labels were redone"
    ids = [json.loads(line)["id"] for line in after.splitlines()]
    assert sorted(ids) == sorted(row["id"] for row in rows)  # every document once
    counts = json.loads(done.stdout[:done.stdout.rindex("}") + 1])
    assert counts["labelled_now"] == 5 - before.count("\n") and counts["ok"] >= 2, counts

    assert tpt(["classifiers", "train", str(out / "labels.parquet"), "--output", str(models), "--config", str(config)]) == 0
    metrics = json.loads((models / "metrics.json").read_text())
    assert all((models / metrics["axes"][axis]["model"]).is_file() for axis in AXES)

    classify = load_config(config).classify
    stage = Classify(ClassifyConfig.model_validate(classify.model_dump()))
    stage.setup()
    labelled = stage.process([Record(row["id"], "demo", row["text"]) for row in rows])
    taxonomy = load_taxonomy(classify.taxonomy)
    assert all(getattr(r, axis) in taxonomy[axis].labels for r in labelled for axis in AXES)
    assert tpt(["classifiers", "eval", str(out / "labels.parquet"), "--config", str(config), "--output", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["domain"]["documents"] == counts["ok"]


@pytest.mark.slow
def test_label_through_a_real_server_then_distil_into_fasttext(transformers_server, tmp_path):
    """`tpt label` against `transformers serve` (a real OpenAI-compatible server with the embedded teacher) through
    the window, a rerun that labels nothing, then `tpt classifiers train` on its labels and `eval` reading the models back."""
    (tmp_path / "taxonomy.yaml").write_text(TINY_TAXONOMY)
    rows = demo_rows(per_file=2)[:4]
    write_jsonl(tmp_path / "docs.jsonl", rows)
    models = tmp_path / "models"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "sources": [{"name": "demo", "path": "docs.jsonl"}],
        # transformers serve stops generating when given stop strings: none are sent (see test_generate_openai)
        "generate": {"backend": "openai", "openai": {"base_urls": [transformers_server]}, "model": "embedded", "temperature": 0,
                     "stop": [], "chat": True, "max_in_flight": 2},
        "classify": {
            "taxonomy": str(tmp_path / "taxonomy.yaml"), "label_max_chars": 300, "label_max_new_tokens": 32,
            "models": {axis: str(models) for axis in AXES},
            "fasttext": {"dim": 8, "epoch": 5, "bucket": 10_000, "cutoff": 1_000, "validation": 0.2},
        },
    }))
    out = tmp_path / "labels"
    label = ["label", str(config), "--sample", str(len(rows)), "--output", str(out)]
    assert tpt(label) == 0
    stored = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert sorted(row["id"] for row in stored) == sorted(row["id"] for row in rows)  # every document once
    ok = sum(row["status"] == "ok" for row in stored)
    assert ok >= 2, [row["error"] for row in stored]
    assert all(row["annotator"] == "llm:embedded" and row["answer"] for row in stored)
    assert tpt(label) == 0 and (out / "labels.jsonl").read_text().count("\n") == len(rows)  # a rerun asks nothing

    assert tpt(["classifiers", "train", str(out / "labels.parquet"), "--output", str(models), "--config", str(config)]) == 0
    metrics = json.loads((models / "metrics.json").read_text())
    assert all((models / metrics["axes"][axis]["model"]).is_file() for axis in AXES)
    assert tpt(["classifiers", "eval", str(out / "labels.parquet"), "--config", str(config), "--output", str(tmp_path / "eval.json")]) == 0
    evaluation = json.loads((tmp_path / "eval.json").read_text())
    assert all(evaluation[axis]["documents"] == ok for axis in AXES)
