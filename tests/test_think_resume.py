"""The think stage in the Beam pipeline: [d; t] samples in the shards, and exactly-once resume after SIGKILL at several points."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from tokenizers import Tokenizer

from tests.conftest import ROOT, stage_report, think_all, write_jsonl
from tests.test_pipeline_beam import read_streams
from tpt.assets import tokenizer_file
from tpt.config import GenerateConfig, load_config
from tpt.generate.store import read_entries
from tpt.io.output import OutputLayout
from tpt.schema import Record, Reject
from tpt.stages.think import Think

DOCS = 12
SEPARATOR = "\n\n### Thinking\n"


def write_docs(folder, count: int, chars: int = 300) -> list[str]:
    """`count` documents of real text (demo web text, cut to `chars`) in folder/docs.jsonl; their ids."""
    with open(ROOT / "data" / "demo" / "web.jsonl", encoding="utf-8") as stream:
        texts = [json.loads(line)["text"][:chars] for line in stream]
    ids = [f"doc{i:02d}" for i in range(count)]
    write_jsonl(folder / "docs.jsonl", [{"id": i, "text": texts[n % len(texts)]} for n, i in enumerate(ids)])
    return ids


def corpus(tmp_path, generate: str) -> str:
    """A config over DOCS real documents with the embedded teacher and a tiny budget."""
    write_docs(tmp_path, DOCS)
    config = tmp_path / "config.yaml"
    config.write_text(f"sources: [{{name: web, path: docs.jsonl}}]\ntruncate: {{max_doc_tokens: 48}}\n"
                      f"generate: {{{generate}}}\noutput: {{parts: 2}}\n")
    return str(config)


def results(out, ids: list[str] | None = None) -> Counter:
    """How many finished results the store holds per request id (of `ids` only, if given), over every run."""
    found = Counter(e["id"] for _, e in read_entries(f"{out}/thinking") if "raw" in e)
    return Counter({i: n for i, n in found.items() if ids is None or i in ids})


def tpt_run(config: str, out, kill_when=None, engine: str = "beam") -> subprocess.CompletedProcess | None:
    """`tpt run` in its own process group; SIGKILL the whole group the moment `kill_when()` holds."""
    command = [sys.executable, "-m", "tpt.cli", "run", config, "--output", str(out), "--workers", "2", "--engine", engine]
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if kill_when is None:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output
        return None
    deadline = time.monotonic() + 300
    while not kill_when():
        assert process.poll() is None, f"the run ended before the kill point:\n{process.stdout.read()[-2000:]}"
        assert time.monotonic() < deadline, "the kill point was never reached"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return None


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """Killed once while loading, once mid-generation, once after the last result; then run to the end."""
    tmp = tmp_path_factory.mktemp("think-resume")
    config = corpus(tmp, "max_new_tokens: 8, micro_batch_size: 2, batch_size: 2, flush_every_docs: 1, "
                         f"separator: {json.dumps(SEPARATOR)}")
    out = tmp / "out"
    store = out / "thinking"
    kills = [
        lambda: store.is_dir() and any(store.iterdir()),  # a worker has set up: a store part exists
        lambda: sum(results(out).values()) >= 5,  # mid-generation
        lambda: sum(results(out).values()) >= DOCS,  # every result stored, the shards not yet finished
    ]
    stored, finished = [], []  # after each kill: results in the store, and whether the run had finished
    for kill_when in kills:
        tpt_run(config, out, kill_when)
        stored.append(sum(results(out).values()))
        finished.append((out / OutputLayout.summary).exists())
    tpt_run(config, out)
    return load_config(config).with_output_dir(str(out)), stored, finished


def test_killed_runs_lose_no_id_and_repeat_none(resumed_run):
    config, stored, finished = resumed_run
    assert 0 < stored[1] < DOCS  # the second kill landed mid-generation
    assert finished == [False, False, False]  # every kill landed before the run could finish, the third included
    assert stored == sorted(stored) and stored[-1] == DOCS  # every kill kept what was finished
    assert results(config.output.dir) == Counter({f"doc{i:02d}": 1 for i in range(DOCS)})  # no document generated twice
    _, samples = read_streams(config.output.dir)
    assert sorted(s["id"] for s in samples) == [f"doc{i:02d}" for i in range(DOCS)]  # every id once in the shards
    summary = OutputLayout(config.output.dir).read_json(OutputLayout.summary)
    assert summary["stages"]["think"]["requests_resumed"] == DOCS and summary["stages"]["think"]["requests_generated"] == 0


def test_shards_hold_document_separator_thinking(resumed_run):
    config, _, _ = resumed_run
    encoder = Tokenizer.from_file(str(tokenizer_file("embedded")))
    _, samples = read_streams(config.output.dir)
    for sample in samples:
        document, thinking = sample["text"].split(SEPARATOR)
        assert thinking == sample["thinking"] and thinking.strip() and document
        assert sample["finish_reason"] in ("stop", "length")
        assert sample["thinking_tokens"] == len(encoder.encode(thinking, add_special_tokens=False).ids) <= 8 + 1
        assert sample["sample_tokens"] == len(encoder.encode(sample["text"], add_special_tokens=False).ids)
        assert ("truncated" in sample["thinking_flags"].split(",")) == (sample["finish_reason"] == "length")


def test_a_run_writing_to_cloud_storage_killed_mid_generation_resumes_without_repeats(gcs_bucket, tmp_path):
    """On an object store each flush of the store is its own object; with a flush per result, a kill loses only
    the requests in flight, and the rerun generates exactly what the store lacks."""
    config = corpus(tmp_path, "max_new_tokens: 8, micro_batch_size: 2, batch_size: 2, flush_every_docs: 1, "
                              f"separator: {json.dumps(SEPARATOR)}")
    out = f"{gcs_bucket}/think-{tmp_path.name}"
    tpt_run(config, out, kill_when=lambda: sum(results(out).values()) >= 4)
    stored = sum(results(out).values())
    assert stored < DOCS
    tpt_run(config, out)
    assert results(out) == Counter({f"doc{i:02d}": 1 for i in range(DOCS)})
    think = OutputLayout(out).read_json(OutputLayout.summary)["stages"]["think"]
    assert think["requests_resumed"] == stored and think["requests_generated"] == DOCS - stored


def test_flagged_thinking_is_set_aside_with_its_reason(tmp_path):
    stage = Think(GenerateConfig(max_new_tokens=2, flagged="reject", temperature=0.0), "embedded", str(tmp_path))
    records = [Record("a", "web", "The sky is blue because air scatters short wavelengths."), Record("b", "web", "Two plus two is four.")]
    out = think_all(stage, records)
    assert all(isinstance(r, Reject) and r.stage == "think" and r.reason == "thinking_truncated" for r in out)
    assert [r.id for r in out] == ["a", "b"]
    report = stage_report(stage, tmp_path)
    assert report["requests_generated"] == 2 and report["output_tokens"] == 4 and report["requests_failed"] == 0


def test_a_changed_document_is_generated_afresh_not_served_stale(tmp_path):
    config = GenerateConfig(max_new_tokens=2, temperature=0.0)

    def run(text: str) -> dict:
        stage = Think(config, "embedded", str(tmp_path))
        think_all(stage, [Record("a", "web", text)])
        return stage_report(stage, tmp_path)

    assert run("Salt dissolves in water.")["requests_generated"] == 1
    assert run("Salt dissolves in water.")["requests_generated"] == 0  # the same request: resumed
    assert run("Sugar dissolves in tea.")["requests_generated"] == 1  # same id, another document


def test_a_corrupt_line_in_the_store_is_asked_again_never_a_stopped_run(tmp_path, caplog):
    """A line of the thinking store that is not JSON (a disk fault, a hand edit) costs its one request, not the run."""
    config = GenerateConfig(max_new_tokens=2, temperature=0.0)
    records = [Record(name, "web", f"{name.title()} dissolves in water.") for name in ("salt", "sugar", "chalk")]

    def run() -> tuple[list, dict]:
        stage = Think(config, "embedded", str(tmp_path))
        return think_all(stage, records), stage_report(stage, tmp_path)

    first, report = run()
    assert report["requests_generated"] == 3
    part = next((tmp_path / "thinking").glob("*.jsonl"))
    header, *answers = part.read_text(encoding="utf-8").splitlines(keepends=True)
    part.write_text(header + answers[0] + '{"id": "sugar", "raw": \x00\n' + "".join(answers[2:]), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        again, report = run()
    assert "corrupt line, not JSON" in caplog.text and "its request is generated again" in caplog.text
    assert report["requests_generated"] == 1
    assert [(r.id, r.thinking) for r in again] == [(r.id, r.thinking) for r in first]


@pytest.mark.parametrize("engine", ["beam", "datatrove"])
def test_killed_with_the_window_full_and_results_out_of_order_then_rerun(engine, tmp_path):
    """Against a simulated continuous-batching server (long-tailed lengths, so results finish out of order, and
    fewer slots than the window, so requests queue): kill mid-generation, rerun against a fresh server; the
    rerun asks the server for exactly what the store lacked, and every id is stored once and in the shards once."""
    from tests.simulator import SimulatedServer

    docs = 60
    with open(ROOT / "data" / "demo" / "web.jsonl", encoding="utf-8") as stream:
        texts = [json.loads(line)["text"][:400] for line in stream]
    ids = [f"doc{i:02d}" for i in range(docs)]
    write_jsonl(tmp_path / "docs.jsonl", [{"id": i, "text": texts[n % len(texts)]} for n, i in enumerate(ids)])
    out = tmp_path / "out"

    def config(url: str) -> str:
        path = tmp_path / "config.yaml"
        path.write_text("sources: [{name: web, path: docs.jsonl}]\ntruncate: {max_doc_tokens: 64}\n"
                        f"generate: {{backend: openai, model: teacher, base_urls: [{url}], chat: true, max_new_tokens: 1000, "
                        "max_in_flight: 16, flush_every_docs: 1}\n")
        return str(path)

    with SimulatedServer(slots=8, rate=4000, mean_tokens=300) as first:
        tpt_run(config(first.url), out, kill_when=lambda: sum(results(out).values()) >= 20, engine=engine)
        assert first.stats()["max_queue"] > 0  # the windows held more requests than the server's slots
    stored = results(out)
    assert 20 <= len(stored) < docs and max(stored.values()) == 1
    with SimulatedServer(slots=8, rate=4000, mean_tokens=300) as second:
        tpt_run(config(second.url), out, engine=engine)
        asked_again = second.stats()["requests"]
    assert asked_again == docs - len(stored)  # only what the store lacked
    assert results(out) == Counter(ids)
    _, samples = read_streams(str(out))
    assert sorted(s["id"] for s in samples) == ids
