"""`tpt experiment`: both arms made, trained and evaluated alike, every figure of the report computed, nothing redone on a rerun.

The corpus is a slice of the demo's, the teacher the simulated OpenAI-compatible server
(tests/simulator.py: it stands in for GPU generation), the model the tiny YAML's.
Nothing here asserts which arm wins.
"""

from __future__ import annotations

import json
import math

import pytest
import yaml

from tpt import cli
from tpt.train.experiment import ARMS, load_experiment

from .conftest import ROOT, write_jsonl

BATCHES, EVERY = 8, 4
TOKENS = BATCHES * 4 * 256


@pytest.fixture(scope="module")
def experiment(teacher, tmp_path_factory):
    folder = tmp_path_factory.mktemp("experiment")
    sources = []
    for name in ("reference", "web"):
        rows = [json.loads(line) for line in (ROOT / "data" / "demo" / f"{name}.jsonl").read_text().splitlines()[:70]]
        sources.append({"name": name, "path": str(write_jsonl(folder / f"{name}.jsonl", rows)), "weight": 1.0})
    pipeline = {"sources": sources, "tokenizer": "embedded", "truncate": {"max_doc_tokens": 128}, "output": {"dir": "unused"}}
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    spec = {
        "output": str(folder / "out"), "pipeline": str(folder / "pipeline.yaml"), "model": str(ROOT / "composer_yamls" / "tiny-cpu.yaml"),
        "tokens": TOKENS, "eval_points": BATCHES // EVERY, "heldout_fraction": 0.2, "workers": 2, "teacher_gpus": 1,
        "generate": {"backend": "openai", "model": "teacher", "openai": {"base_urls": [teacher.url]}, "temperature": 0.0,
                     "max_new_tokens": 64},
        "train_overrides": ["python_log_level=warning", "eval_subset_num_batches=2",
                            f"eval_tasks=[{{label: gsm8k, path: {ROOT}/data/gsm8k/test.jsonl, limit: 4, batch_size: 4}}]"],
    }
    (folder / "experiment.yaml").write_text(yaml.safe_dump(spec))
    assert cli.main(["experiment", str(folder / "experiment.yaml")]) == 0
    return folder / "experiment.yaml", folder / "out"


@pytest.mark.slow
def test_report_has_both_curves_at_the_same_token_counts(experiment):
    _, out = experiment
    report = json.loads((out / "report.json").read_text())
    rows = report["checkpoints"]
    assert [row["tokens"] for row in rows] == [0, EVERY * 1024, BATCHES * 1024]
    for row in rows:
        for arm in ARMS:
            for metric in ("heldout LanguageCrossEntropy", "heldout LanguagePerplexity", "gsm8k AnswerLogLikelihood"):
                assert math.isfinite(row[f"{arm} {metric}"]), (row, arm, metric)
    # The same seed gives the same untrained model, scored on the same held-out documents.
    assert rows[0]["vanilla heldout LanguageCrossEntropy"] == rows[0]["tpt heldout LanguageCrossEntropy"]
    assert rows[-1]["vanilla heldout LanguageCrossEntropy"] != rows[-1]["tpt heldout LanguageCrossEntropy"]  # different data
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "report.md").read_text()
    assert f"| {BATCHES * 1024:,} |" in markdown and "generation tokens" in markdown


@pytest.mark.slow
def test_data_cost_is_counted_per_arm(experiment):
    _, out = experiment
    cost = json.loads((out / "report.json").read_text())["data_cost"]
    assert all(math.isfinite(value) for arm in ARMS for value in cost[arm].values())
    assert cost["vanilla"]["generation_tokens"] == 0 and cost["tpt"]["generation_tokens"] > 0
    assert cost["tpt"]["data_tokens"] > cost["vanilla"]["data_tokens"]  # [d; t] is longer than d
    assert cost["vanilla"]["documents"] == cost["tpt"]["documents"]  # the same training split
    assert cost["vanilla"]["training_tokens"] == cost["tpt"]["training_tokens"] == TOKENS
    assert cost["tpt"]["teacher_gpu_hours"] == pytest.approx(cost["tpt"]["pipeline_seconds"] / 3600)
    split = json.loads((out / "split.json").read_text())["counts"]
    assert split["train"] == cost["vanilla"]["documents"] and split["heldout_written"] > 0
    assert split["train"] + split["heldout_written"] == 140


@pytest.mark.slow
def test_rerun_reuses_everything_and_exports_load(experiment):
    from transformers import AutoModelForCausalLM

    spec, out = experiment
    done = {path: path.stat().st_mtime_ns for arm in ARMS for path in (out / arm / "data" / "summary.json", out / arm / "train.json")}
    assert cli.main(["experiment", str(spec)]) == 0
    assert {path: path.stat().st_mtime_ns for path in done} == done
    for arm in ARMS:
        assert AutoModelForCausalLM.from_pretrained(out / arm / "hf", local_files_only=True).num_parameters() > 0


def test_experiment_config_errors_name_the_key(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("output: x\npipeline: p.yaml\nmodel: m.yaml\ntokens: 0\n")
    assert cli.main(["experiment", str(tmp_path / "bad.yaml")]) == 2
    assert "tokens" in capsys.readouterr().err
    (tmp_path / "pipeline.yaml").write_text(f"sources: [{{name: web, path: {ROOT}/data/demo/web.jsonl}}]\n")
    (tmp_path / "plain.yaml").write_text(f"output: {tmp_path}/out\npipeline: {tmp_path}/pipeline.yaml\nmodel: m.yaml\ntokens: 1000\n")
    assert cli.main(["experiment", str(tmp_path / "plain.yaml")]) == 2
    assert "the TPT arm needs a generate section" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything was written
    config = load_experiment(ROOT / "configs" / "experiment-cpu.yaml")  # the shipped CPU config is valid
    assert config.tokens % (4 * 256 * config.eval_points) == 0
