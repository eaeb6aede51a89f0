"""Outputs at an fsspec URL (as gs:// on Dataflow): every file goes through fsspec, none through a local path.

fsspec's `memory://` filesystem has no local path at all, so a run that writes
there and reads back the same shards, manifest and rejects as a local run
proves the writers, finalize and the thinking store use only the URL. The
same run to gs:// on a local Cloud Storage server shows worker processes
writing one output folder through gcsfs.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import write_jsonl
from tests.test_pipeline_beam import BAD_LINES, read_shards, read_streams
from tpt.analysis.runs import load_run
from tpt.classify.evaluation import read_sources
from tpt.classify.labelset import LabelledDoc, label_row, read_labels, write_labels
from tpt.classify.taxonomy import load_taxonomy
from tpt.config import PipelineConfig
from tpt.generate.store import ThinkingStore, read_entries
from tpt.io.output import OutputLayout, merge_manifest, read_rejects
from tpt.schema import MANIFEST_SCHEMA, Record


def memory_url() -> str:
    return f"memory://tpt-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["memory", "gcs"])
def output_url(request) -> tuple[str, int]:
    """An output URL and how many Beam workers write it: memory:// lives in one process, so one in-process
    worker; gs:// (a local Cloud Storage server) is reached by 2 worker processes, as on Dataflow."""
    if request.param == "memory":
        return memory_url(), 1
    return f"{request.getfixturevalue('gcs_bucket')}/run-{uuid.uuid4().hex[:8]}", 2


def test_beam_run_to_a_url_writes_what_a_local_run_writes(full_run, output_url, tmp_path):
    """The demo with bad input (so there are rejects) and thinking (so the thinking store is used)."""
    from tpt.run import execute

    local_config, local_summary = full_run
    url, workers = output_url
    summary = execute(local_config.with_output_dir(url), workers=workers)
    layout, local = OutputLayout(url), OutputLayout(local_config.output.dir)
    assert summary["output"] == url and summary["totals"] == local_summary["totals"] and summary["sources"] == local_summary["sources"]
    assert summary["stages"]["think"]["requests_generated"] == summary["totals"]["written"]  # into the URL's store
    assert layout.read_parquet(layout.manifest) == local.read_parquet(local.manifest)
    assert layout.glob(f"{layout.rejects}/*/*.jsonl") == local.glob(f"{local.rejects}/*/*.jsonl")
    rejects = sorted(read_rejects(layout), key=lambda r: json.dumps(r, sort_keys=True))
    assert rejects and rejects == sorted(read_rejects(local), key=lambda r: json.dumps(r, sort_keys=True))
    assert layout.glob(".manifest*") == []  # merged and cleaned up
    assert load_run(url).summary == summary  # what `tpt report URL` and `tpt stats URL` read

    # streams.yaml points at the URL, with no local path; the shards read back once copied down
    streams = yaml.safe_load(layout.read_text(layout.streams))["streams"]
    assert streams == {name: {"remote": f"{url}/mds/{name}", "proportion": s["proportion"]}
                       for name, s in yaml.safe_load(local.read_text(local.streams))["streams"].items()}
    layout.fs.get(layout.path(layout.mds), str(tmp_path / "mds"), recursive=True)
    _, local_samples = read_streams(local_config.output.dir)
    assert sorted(s["id"] for s in read_shards(tmp_path, streams)) == sorted(s["id"] for s in local_samples)


def test_manifest_merge_cut_short_at_any_point_loses_and_repeats_nothing():
    layout = OutputLayout(memory_url())
    tables = {f"{source}/part-{i:05d}": manifest_rows(source, i) for source in ("a", "b") for i in range(3)}
    expected = pa.concat_tables(tables.values()).sort_by([("source", "ascending"), ("id", "ascending")])

    def write_parts() -> None:
        for name, table in tables.items():
            layout.write_parquet(f"{layout.manifest_parts}/{name}.parquet", table)

    write_parts()
    assert merge_manifest(layout) == expected and merge_manifest(layout) == expected  # done, then read back

    # cut after the manifest and its marker were written, while the parts were being removed
    write_parts()
    layout.write_text(layout.manifest_merged, "")
    layout.remove(f"{layout.manifest_parts}/a")
    assert merge_manifest(layout) == expected and not layout.glob(".manifest*")

    # cut after the manifest was written, before the marker: every part is still there, merged again
    write_parts()
    assert merge_manifest(layout) == expected


def manifest_rows(source: str, part: int) -> pa.Table:
    ids = [f"{source}-{part}-{k}" for k in range(4)]
    columns = {field.name: [None] * len(ids) for field in MANIFEST_SCHEMA}
    columns.update(id=ids, source=[source] * len(ids))
    return pa.Table.from_pydict(columns, schema=MANIFEST_SCHEMA)


def test_thinking_store_on_an_object_store_uploads_each_flush_as_its_own_object():
    url = memory_url()
    store = ThinkingStore(url, "run1", flush_every_docs=2, flush_every_seconds=3600)
    store.open(backend="test")  # the header is line 1
    written = {doc: store.append({"id": doc, "key": f"k{doc}", "raw": doc, "finish_reason": "stop"}) for doc in "abcd"}
    assert len(fsspec.filesystem("memory").glob(f"{url}/run1.*.jsonl")) == 2  # lines 1-2, 3-4: line 5 not flushed yet
    assert "kd" not in ThinkingStore(url, "run2").index()  # what a kill now would lose
    store.close()
    reader = ThinkingStore(url, "run2")
    index = reader.index()
    assert sorted(index) == [f"k{doc}" for doc in "abcd"]
    assert [entry["raw"] for entry in reader.fetch([index[f"k{doc}"] for doc in "dcba"])] == list("dcba")
    assert [index[f"k{doc}"] for doc in "abcd"] == list(written.values())  # where append said it wrote each
    writers = {writer for writer, _ in read_entries(url, "run1")}
    assert len(writers) == 1  # three objects, one writer


def test_cli_names_the_missing_fsspec_backend_of_a_url_output(tmp_path):
    from tests.test_pipeline_beam import run_cli

    (tmp_path / "c.yaml").write_text("sources: [{name: a, path: a.jsonl}]\n")
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    result = run_cli("run", str(tmp_path / "c.yaml"), "--output", "s3://bucket/run")
    assert result.returncode == 2 and "s3fs" in result.stderr


def test_dataflow_options_pass_through_and_the_job_graph_serializes(demo_config, gcs_bucket):
    """What can be checked of a Dataflow job offline: its options, and the graph it would be sent, to gs:// output."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, SetupOptions, StandardOptions

    from tpt.engines.beam.pipeline import build, pipeline_options
    from tpt.run.plan import RunPlan

    args = ["--project", "p", "--region", "us-central1", "--temp_location", f"{gcs_bucket}/tmp", "--setup_file", "./setup.py"]
    options = pipeline_options("DataflowRunner", 2, args)
    cloud = options.view_as(GoogleCloudOptions)
    assert options.view_as(StandardOptions).runner == "DataflowRunner" and options.view_as(SetupOptions).setup_file == "./setup.py"
    assert (cloud.project, cloud.region, cloud.temp_location) == ("p", "us-central1", f"{gcs_bucket}/tmp")
    direct = options.view_as(DirectOptions)
    assert (direct.direct_running_mode, direct.direct_num_workers) == ("in_memory", 1)  # the defaults: no local runner options

    config = demo_config.with_output_dir(f"{gcs_bucket}/dataflow")
    pipeline = beam.Pipeline()  # Dataflow validates its options against Google Cloud when given them: not offline
    build(pipeline, RunPlan.build(config))
    transforms = pipeline.to_runner_api().components.transforms.values()  # every DoFn pickles, as for submission
    assert {"Read", "Deduplicate", "Truncate", "Classify", "Write", "WriteRejects"} <= {t.unique_name for t in transforms}


def test_bad_input_read_from_urls_is_set_aside_as_from_local_files(gcs_bucket, tmp_path):
    """gs:// sources to a gs:// output, on both engines: the rejects of a local run, each naming its gs:// file:line."""
    from tpt.run import execute

    local_in, url_in = tmp_path / "in", f"{gcs_bucket}/bad-input-{uuid.uuid4().hex[:8]}"
    local_in.mkdir()
    good = [{"id": f"g{i}", "text": f"Good document number {i}."} for i in range(4)]
    write_jsonl(local_in / "a.jsonl", good[:2] + BAD_LINES + good[2:] + [{"id": "g1", "text": "a duplicate id"}])
    with open(local_in / "a.jsonl", "ab") as stream:
        stream.write(b'{"id": "u", "text": "caf\xe9"}\n')  # not UTF-8
    pq.write_table(pa.table({"id": ["p1", "p2", "p3", "g2"], "text": ["A Parquet document.", None, "  ", "an id of source a again"]}),
                   local_in / "b.parquet")
    for path in local_in.iterdir():
        with fsspec.open(f"{url_in}/in/{path.name}", "wb") as stream:
            stream.write(path.read_bytes())

    def config(inputs: str, out: str) -> PipelineConfig:
        sources = [{"name": "a", "path": f"{inputs}/a.jsonl"}, {"name": "b", "path": f"{inputs}/b.parquet"}]
        return PipelineConfig.model_validate({"sources": sources, "output": {"dir": out, "parts": 2}})

    def rejects(out: str, inputs: str) -> list[dict]:
        """The rejects of a run, each location's folder named `IN`, in a stable order."""
        rows = [r | {"location": r["location"] and r["location"].replace(inputs, "IN", 1)} for r in read_rejects(OutputLayout(out))]
        assert all(r["location"] is None or r["location"].startswith("IN/") for r in rows)  # every file:line is one of `inputs`
        return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))

    execute(config(str(local_in), str(tmp_path / "out")), workers=2)
    expected = rejects(str(tmp_path / "out"), str(local_in))
    assert Counter(r["reason"] for r in expected) == {
        "malformed_json": 1, "missing_text": 2, "empty_text": 2, "nul_bytes": 1, "invalid_utf8": 2, "duplicate_id": 2}
    assert {r["location"] for r in expected if r["reason"] == "missing_text"} == {"IN/a.jsonl:4", "IN/b.parquet:row 2"}

    execute(config(f"{url_in}/in", f"{url_in}/beam"), workers=2)
    assert rejects(f"{url_in}/beam", f"{url_in}/in") == expected
    execute(config(f"{url_in}/in", f"{url_in}/datatrove"), "datatrove", tasks=2, workers=2)
    assert rejects(f"{url_in}/datatrove", f"{url_in}/in") == expected


@pytest.mark.parametrize("data", [b"shard bytes\r", b"\r\n", b"\r", b""])
def test_any_file_round_trips_through_the_local_cloud_storage_server(gcs_bucket, tmp_path, data):
    """Compressed shards end in any byte: the server the URL tests run against must store each one exactly."""
    layout = OutputLayout(f"{gcs_bucket}/bytes-{uuid.uuid4().hex[:8]}")
    (tmp_path / "file").write_bytes(data)
    layout.fs.put(str(tmp_path / "file"), layout.path("file"))
    assert layout.fs.cat(layout.path("file")) == data


def test_labels_written_to_a_url_are_read_back_from_it(gcs_bucket):
    """`tpt classifiers train` and `eval` read the labels where `tpt label --output gs://...` wrote them, Parquet or
    JSONL."""
    folder = f"{gcs_bucket}/labels-{uuid.uuid4().hex[:8]}"
    labels = {"domain": "history", "audience": "school", "reasoning": "basic"}
    rows = [label_row(Record("d1", "web", "Some text."), "test", labels),
            label_row(Record("d2", "web", "Other text."), "test", None, error="no JSON object")]
    write_labels(f"{folder}/labels.parquet", rows)
    with fsspec.open(f"{folder}/labels.jsonl", "w") as stream:
        stream.writelines(json.dumps(row) + "\n" for row in rows)
    for name in ("labels.parquet", "labels.jsonl"):
        assert read_labels(f"{folder}/{name}", load_taxonomy()) == ([LabelledDoc("d1", "Some text.", labels)], 1)
        assert read_sources(f"{folder}/{name}") == {"d1": "web", "d2": "web"}


def test_a_missing_labels_file_at_a_url_is_named(gcs_bucket):
    url = f"{gcs_bucket}/labels-{uuid.uuid4().hex[:8]}/labels.parquet"
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(url)}: no such labels file$"):
        read_labels(url, load_taxonomy())
