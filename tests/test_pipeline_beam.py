"""The Beam pipeline end to end on the local runner with 2 worker processes, read back through StreamingDataset."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
from streaming import Stream, StreamingDataset
from streaming.base.util import clean_stale_shared_memory
from tokenizers import Tokenizer

from tests.conftest import ROOT, write_jsonl
from tpt.assets import tokenizer_file
from tpt.config import load_config
from tpt.io.output import OutputLayout
from tpt.train.streams import parse_streams


def demo_ids() -> dict[str, set[str]]:
    ids = {}
    for name in ("reference", "books", "web"):
        with open(ROOT / "data" / "demo" / f"{name}.jsonl", encoding="utf-8") as stream:
            ids[name] = {json.loads(line)["id"] for line in stream}
    return ids


def read_streams(out) -> tuple[dict, list[dict]]:
    """Every sample of a run, through StreamingDataset over the streams in its streams.yaml (`local` relative to OUT)."""
    layout = OutputLayout(out)
    streams = parse_streams(layout.read_text(layout.streams), layout.streams, folder=layout.root if layout.is_local else None)
    return streams, read_samples([Stream(**s) for s in streams.values()])


def read_shards(out, sources) -> list[dict]:
    """Every sample under OUT/mds/<source> of a local output folder (or a local copy of a URL output)."""
    return read_samples([Stream(local=f"{out}/mds/{name}") for name in sources])


def read_samples(streams: list[Stream]) -> list[dict]:
    clean_stale_shared_memory()
    dataset = StreamingDataset(streams=streams, shuffle=False, batch_size=1)
    return [dataset[i] for i in range(dataset.num_samples)]


def test_demo_run_writes_every_document_once_with_weights(demo_run):
    config, summary = demo_run
    expected = demo_ids()
    streams, samples = read_streams(config.output.dir)

    by_source: dict[str, list[str]] = {}
    for sample in samples:
        by_source.setdefault(sample["source"], []).append(sample["id"])
    assert {s: sorted(ids) for s, ids in by_source.items()} == {s: sorted(ids) for s, ids in expected.items()}
    assert summary["totals"]["rejected"] == 0
    assert {s: v["written"] for s, v in summary["sources"].items()} == {s: len(ids) for s, ids in expected.items()}

    weights = {s.name: s.weight for s in config.sources}
    assert {name: s["proportion"] for name, s in streams.items()} == pytest.approx(
        {n: w / sum(weights.values()) for n, w in weights.items()})
    assert all(s["local"].endswith(f"/mds/{name}") for name, s in streams.items())

    encoder = Tokenizer.from_file(str(tokenizer_file("embedded")))
    lengths = [len(e.ids) for e in encoder.encode_batch([s["text"] for s in samples], add_special_tokens=False)]
    assert max(lengths) <= config.truncate.max_doc_tokens
    assert [s["kept_tokens"] for s in samples] == lengths
    assert sum(int(s["truncated"]) for s in samples) == summary["totals"]["truncated"] > 0  # int: uint8 sums wrap


def test_demo_manifest_matches_the_shards(demo_run):
    config, summary = demo_run
    manifest = OutputLayout(config.output.dir).read_parquet(OutputLayout.manifest)
    assert "text" not in manifest.column_names
    assert manifest.schema.metadata[b"tpt_schema_version"] == b"1"
    _, samples = read_streams(config.output.dir)
    assert sorted(manifest.column("id").to_pylist()) == sorted(s["id"] for s in samples)
    # token counts against the shard texts encoded again with the real tokenizer, not the manifest they came from
    encoder = Tokenizer.from_file(str(tokenizer_file("embedded")))
    lengths = [len(e.ids) for e in encoder.encode_batch([s["text"] for s in samples], add_special_tokens=False)]
    kept = dict(zip(manifest.column("id").to_pylist(), manifest.column("kept_tokens").to_pylist()))
    assert [kept[s["id"]] for s in samples] == lengths
    assert summary["totals"]["kept_tokens"] == sum(lengths) > 0


def test_streams_block_loads_in_streaming_with_proportions(demo_run):
    """Sample counts per source over an epoch follow the proportions of streams.yaml."""
    config, _ = demo_run
    streams, _ = read_streams(config.output.dir)
    clean_stale_shared_memory()
    dataset = StreamingDataset(streams=[Stream(**s) for s in streams.values()], shuffle=True, shuffle_seed=1, batch_size=1, epoch_size=1000)
    counts = Counter(sample["source"] for sample in dataset)
    for name, stream in streams.items():
        assert counts[name] == pytest.approx(1000 * stream["proportion"], abs=2)


BAD_LINES = [
    '{"id": "m", "text": "unterminated',
    json.dumps({"id": "n", "body": "no text field"}),
    json.dumps({"id": "e", "text": "   "}),
    json.dumps({"id": "z", "text": "nul\u0000inside"}),
    json.dumps({"id": "s", "text": "lone \ud800 surrogate"}),
]


def test_bad_input_is_set_aside_counted_and_nothing_valid_is_lost(tmp_path):
    good_a = [{"id": f"a{i}", "text": f"Document {i} of source a. " * (i + 1)} for i in range(30)]
    good_b = [{"id": f"b{i}", "text": f"Document {i} of source b. " * (i + 1)} for i in range(20)]
    write_jsonl(tmp_path / "a.jsonl", good_a[:15] + BAD_LINES + good_a[15:] + [{"id": "a3", "text": "a duplicate id"}])
    write_jsonl(tmp_path / "b.jsonl", good_b + [{"id": "a4", "text": "an id of source a again"}])
    (tmp_path / "bytes.jsonl").write_bytes(b'{"id": "u", "text": "caf\xe9"}\n')
    (tmp_path / "config.yaml").write_text(
        "sources:\n  - {name: a, path: 'a.jsonl', weight: 3}\n  - {name: b, path: 'b*.jsonl', weight: 1}\n"
        "truncate: {max_doc_tokens: 32}\noutput: {parts: 3, weighting: repeat}\n"
    )
    from tpt.run import execute

    config = load_config(tmp_path / "config.yaml").with_output_dir(str(tmp_path / "out"))
    for _ in range(2):  # a rerun into the same folder gives the same output, nothing twice
        summary = execute(config, workers=2)
        streams, samples = read_streams(tmp_path / "out")
        ids = Counter(s["id"] for s in samples)
        assert set(ids) == {r["id"] for r in good_a + good_b} and max(ids.values()) == 1
        assert all(s["text"] == next(r["text"] for r in good_a + good_b if r["id"] == s["id"])[: len(s["text"])] for s in samples)
        assert summary["stages"]["read"]["rejected"] == {"empty_text": 1, "invalid_utf8": 2, "malformed_json": 1,
                                                         "missing_text": 1, "nul_bytes": 1}
        assert summary["stages"]["deduplicate"]["rejected"] == {"duplicate_id": 2}
        assert summary["totals"] == summary["totals"] | {"read": 58, "written": 50, "rejected": 8}
        assert {name: s["repeat"] for name, s in streams.items()} == {"a": 3.0, "b": 1.0}
    rejects = [json.loads(line) for p in sorted((tmp_path / "out" / "rejects").glob("*/*.jsonl")) for line in p.open()]
    assert len(rejects) == 8 and all(r["reason"] and r["detail"] for r in rejects)
    assert {r["id"] for r in rejects if r["reason"] == "duplicate_id"} == {"a3", "a4"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tpt.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_refuses_an_unknown_config_key_before_running(tmp_path):
    (tmp_path / "c.yaml").write_text("sources: [{name: a, path: a.jsonl}]\noutput: {dir: x, shard_size: 1}\n")
    result = run_cli("run", str(tmp_path / "c.yaml"))
    assert result.returncode == 2
    assert "output.shard_size: unknown key; allowed keys here: dir, parts, size_limit" in result.stderr


def test_cli_refuses_a_missing_input_file(tmp_path):
    (tmp_path / "c.yaml").write_text("sources: [{name: a, path: nothing.jsonl}]\n")
    result = run_cli("run", str(tmp_path / "c.yaml"), "--output", str(tmp_path / "out"))
    assert result.returncode == 2 and "source 'a': no files match" in result.stderr
    assert not (tmp_path / "out" / "mds").exists()


def test_core_imports_no_engine():
    code = "import sys, pkgutil, importlib, tpt\n" \
           "[importlib.import_module(m.name) for m in pkgutil.walk_packages(tpt.__path__, 'tpt.')]\n" \
           "print(sorted(m for m in sys.modules if m.split('.')[0] in ('apache_beam', 'datatrove')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


def test_finalize_is_safe_to_repeat(demo_run, tmp_path):
    """A finalize cut short after its merges (the run still staged, its indexes and manifest merged) merges again,
    and publishes, without losing or repeating a sample."""
    import shutil

    from tpt.io.finalize import finalize
    from tpt.io.publish import staged
    from tpt.stages import build_stages

    config, summary = demo_run
    copy = config.with_output_dir(str(tmp_path / "out"))
    staging = staged(OutputLayout(copy.output.dir)).path()
    shutil.copytree(f"{config.output.dir}/{OutputLayout.mds}", f"{staging}/{OutputLayout.mds}")  # the demo has no rejects
    shutil.copy(f"{config.output.dir}/{OutputLayout.manifest}", staging)
    again = finalize(OutputLayout(copy.output.dir), copy, build_stages(copy), 1.0, summary["engine"])
    assert again["totals"] == summary["totals"] and again["sources"] == summary["sources"]
    _, samples = read_streams(copy.output.dir)
    assert len(samples) == len({s["id"] for s in samples}) == summary["totals"]["written"]



def test_the_local_runner_never_tries_prism(tmp_path, caplog):
    """Beam's DirectRunner first tries to fetch and start Prism on every run (offline: a failed download); tpt's
    local runner is the FnApiRunner the DirectRunner falls back to, with the same options."""
    import logging

    from tpt.run import execute

    write_jsonl(tmp_path / "a.jsonl", [{"id": f"a{i}", "text": f"Document {i}."} for i in range(4)])
    (tmp_path / "config.yaml").write_text("sources: [{name: a, path: a.jsonl}]\n")
    config = load_config(tmp_path / "config.yaml").with_output_dir(str(tmp_path / "out"))
    caplog.set_level(logging.INFO, logger="apache_beam")
    assert execute(config, workers=1)["totals"]["written"] == 4
    assert any(record.name.startswith("apache_beam.runners") for record in caplog.records)  # the run logs are seen
    assert not [record.getMessage() for record in caplog.records if "prism" in record.getMessage().lower()]


def test_a_beam_worker_freezes_what_it_has_loaded_and_a_caller_is_left_alone(monkeypatch):
    """This process stands in for a Beam worker process once its `__main__` is named as Beam's worker module."""
    import gc
    import importlib.machinery
    import types

    from tpt.engines.beam.transforms import BEAM_WORKER, freeze_in_worker

    gc.unfreeze()
    freeze_in_worker()
    assert gc.get_freeze_count() == 0
    worker_main = types.ModuleType("__main__")
    worker_main.__spec__ = importlib.machinery.ModuleSpec(BEAM_WORKER, None)
    monkeypatch.setitem(sys.modules, "__main__", worker_main)
    try:
        freeze_in_worker()
        assert gc.get_freeze_count() > 10_000  # the modules loaded by now, at least
    finally:
        gc.unfreeze()
