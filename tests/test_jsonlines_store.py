"""The one way tpt writes a file (whole or not at all) and the one resumable JSON-lines store, on a local disk,
in memory:// (an fsspec filesystem with no local path at all) and on gs:// (a local Cloud Storage server)."""

from __future__ import annotations

import json
import uuid

import fsspec
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import ROOT
from tpt.cli import main as tpt
from tpt.io.jsonlines import JsonLinesStore
from tpt.io.storage import staged_file


@pytest.fixture(params=["local", "memory", "gcs"])
def folder_url(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "out")
    if request.param == "memory":
        return f"memory://tpt-test-{uuid.uuid4().hex[:8]}"
    return f"{request.getfixturevalue('gcs_bucket')}/store-{uuid.uuid4().hex[:8]}"


def test_a_failed_write_leaves_the_previous_file_as_it_was(folder_url):
    fs, root = fsspec.core.url_to_fs(folder_url)
    with staged_file(f"{folder_url}/a/report.json") as local, open(local, "w") as stream:  # its folder is made as needed
        stream.write('{"run": 1}')
    with pytest.raises(RuntimeError), staged_file(f"{folder_url}/a/report.json") as local:
        with open(local, "w") as stream:
            stream.write('{"ru')
        raise RuntimeError("killed mid-write")
    fs.invalidate_cache()
    assert fs.cat_file(f"{root}/a/report.json") == b'{"run": 1}'
    assert [path.rsplit("/", 1)[1] for path in fs.find(root)] == ["report.json"]  # nothing half-written left behind


def test_a_writer_started_again_appends_after_what_it_wrote_before(folder_url):
    first = JsonLinesStore(folder_url)
    first.start_writing("labels")
    first.append({"id": "a"})
    first.append({"id": "b"})
    first.close()
    other = JsonLinesStore(folder_url)
    other.start_writing("labels-old")  # another writer, whose name starts alike
    other.append({"id": "x"})
    other.close()

    again = JsonLinesStore(folder_url)
    assert [entry["id"] for _, entry in again.scan("labels")] == ["a", "b"]
    again.start_writing("labels")
    location = again.append({"id": "c"})
    again.flush()
    assert again.fetch([location]) == [{"id": "c"}]
    again.close()
    assert [entry["id"] for _, entry in JsonLinesStore(folder_url).scan("labels")] == ["a", "b", "c"]
    assert sorted(entry["id"] for _, entry in JsonLinesStore(folder_url).scan()) == ["a", "b", "c", "x"]


def test_a_line_cut_short_is_dropped_before_the_writer_appends_again(tmp_path):
    store = JsonLinesStore(tmp_path)
    store.start_writing("labels")
    store.append({"id": "a"})
    store.close()
    with open(tmp_path / "labels.jsonl", "a") as stream:
        stream.write('{"id": "b", "te')  # what a SIGKILL mid-write leaves
    again = JsonLinesStore(tmp_path)
    again.start_writing("labels")
    location = again.append({"id": "c"})
    again.close()
    assert (tmp_path / "labels.jsonl").read_text() == '{"id": "a"}\n{"id": "c"}\n'
    assert again.fetch([location]) == [{"id": "c"}]


def test_label_to_a_cloud_storage_url_resumes_there(tmp_path, gcs_bucket, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"sources": [{"name": "demo", "path": str(ROOT / "data" / "demo" / "web.jsonl")}]}))
    url = f"{gcs_bucket}/labels-{uuid.uuid4().hex[:8]}"
    fs, root = fsspec.core.url_to_fs(url)

    def label(sample: int) -> tuple[dict, list[dict]]:
        assert tpt(["label", str(config), "--sample", str(sample), "--labeller", "bootstrap", "--output", url]) == 0
        out = capsys.readouterr().out
        fs.invalidate_cache()
        return json.loads(out[: out.rindex("}") + 1]), pq.read_table(fs.open(f"{root}/labels.parquet", "rb")).to_pylist()

    counts, first = label(4)
    assert counts["labelled_now"] == 4 and [row["status"] for row in first] == ["ok"] * 4
    counts, rows = label(7)  # the sample grows by inclusion: three more documents; the first four are read back
    assert counts["labelled_now"] == 3 and len(rows) == 7 and {r["id"] for r in first} < {r["id"] for r in rows}
    parts = sorted(fs.glob(f"{root}/labels.*.jsonl"))
    assert [path.rsplit("/", 1)[1] for path in parts] == ["labels.000000.jsonl", "labels.000001.jsonl"]  # one per batch
    stored = [json.loads(line)["id"] for part in parts for line in fs.cat_file(part).splitlines()]
    assert sorted(stored) == sorted(row["id"] for row in rows)  # each document stored once
