"""`tpt publish` through the real command line on a real run (the session's `full_run`): the Parquet round-trips
every sample byte for byte against the shards as streaming's StreamingDataset reads them, the card's YAML parses
and its counts are summary.json's, licenses are never guessed, the files are sized as asked, `tpt stats` queries
the text through `texts`, and DEST may be a gs:// URL."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml
from streaming import StreamingDataset

from tpt.analysis.card import front_matter
from tpt.analysis.classes import class_of
from tpt.analysis.publish import PUBLISHED_SCHEMA
from tpt.cli import main
from tpt.io.storage import Folder


@pytest.fixture(scope="module")
def published(full_run, tmp_path_factory):
    dest = tmp_path_factory.mktemp("published") / "dataset"
    assert main(["publish", full_run[0].output.dir, str(dest)]) == 0
    return dest


def card_of(folder) -> dict:
    return front_matter((folder / "README.md").read_text())


def test_parquet_round_trips_every_sample_against_the_shards(full_run, published):
    config, summary = full_run
    out = config.output.dir
    for source in summary["sources"]:
        if not summary["sources"][source]["written"]:
            continue
        shards = [dict(s) for s in StreamingDataset(local=f"{out}/mds/{source}", shuffle=False, batch_size=1)]
        table = pq.read_table(published / "data" / source)
        assert table.schema.equals(PUBLISHED_SCHEMA, check_metadata=False)
        rows = table.to_pylist()
        assert [r["id"] for r in rows] == [s["id"] for s in shards]  # every sample, once, in the shards' order
        for row, shard in zip(rows, shards):
            assert row["text"].encode() == shard["text"].encode()
            assert row["thinking"] == shard["thinking"] and row["document"] + config.generate.separator + row["thinking"] == row["text"]
            for name, value in shard.items():
                if name in ("text", "thinking"):
                    continue
                expected = value.item() if hasattr(value, "item") else value
                if name == "thinking_flags":
                    expected = expected.split(",") if expected else []
                elif name == "truncated":
                    expected = bool(expected)
                assert row[name] == expected, (row["id"], name)
    assert sorted(p.name for p in (published / "data").iterdir()) == sorted(s for s, f in summary["sources"].items() if f["written"])


def test_card_parses_and_its_counts_are_the_summarys(full_run, published):
    summary = full_run[1]
    card = card_of(published)
    assert card["license"] == "unknown" and "tpt" in card["tags"]
    written = {s: f for s, f in summary["sources"].items() if f["written"]}
    assert [c["config_name"] for c in card["configs"]] == list(written)
    assert card["configs"][0]["data_files"] == [{"split": "train", "path": f"data/{next(iter(written))}/*.parquet"}]
    for source, figures in written.items():
        ours = card["tpt"]["sources"][source]
        assert ours["samples"] == figures["written"] and ours["license"] == "unknown"
        for key in ("doc_tokens", "kept_tokens", "thinking_tokens", "sample_tokens"):
            assert ours[key] == figures[key], (source, key)
        assert [f"data/{source}/{p.name}" for p in sorted((published / "data" / source).iterdir())] == ours["files"]
    for axis, labels in summary["stages"]["classify"]["labels"].items():
        classes: dict[str, int] = {}
        for label, count in labels.items():
            classes[class_of(label)] = classes.get(class_of(label), 0) + count
        assert {row["class"]: row["samples"] for row in card["tpt"]["classes"][axis]} == classes
    assert card["tpt"]["config"] == summary["config"]
    assert card["tpt"]["sampling"]["max_new_tokens"] == 64 and card["tpt"]["teacher"]["model"] == "teacher"
    text = (published / "README.md").read_text()
    assert "| reference | unknown |" in text and 'load_dataset("ORG/NAME", "reference", split="train")' in text


def test_license_comes_from_the_config_and_is_never_guessed(full_run, tmp_path):
    config = full_run[0]
    licensed = config.model_copy(update={"sources": [s.model_copy(update={"license": "cc-by-sa-4.0"}) if s.name == "reference" else s
                                                     for s in config.sources]})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(licensed.model_dump(mode="json")))
    assert main(["publish", config.output.dir, str(tmp_path / "dataset"), "--config", str(path)]) == 0
    card = card_of(tmp_path / "dataset")
    assert card["license"] == ["cc-by-sa-4.0", "unknown"]
    assert {s: f["license"] for s, f in card["tpt"]["sources"].items()} == {
        s: "cc-by-sa-4.0" if s == "reference" else "unknown" for s in card["tpt"]["sources"]}


def test_stats_queries_the_text_through_texts(published, capsys):
    table = pq.read_table(published / "data")
    columns = zip(table.column("thinking").to_pylist(), table.column("document").to_pylist())
    expected = sum(1 for thinking, document in columns if "the" in thinking and "of" in document)
    assert 0 < expected < table.num_rows
    sql = "SELECT count(*) AS n FROM texts WHERE thinking LIKE '%the%' AND document LIKE '%of%'"
    assert main(["stats", str(published), "--sql", sql, "--output", str(published.parent / "n.parquet")]) == 0
    assert pq.read_table(published.parent / "n.parquet").column("n").to_pylist() == [expected]
    assert main(["stats", str(published), "--sql", "SELECT count(*) AS n, count(DISTINCT run) AS runs FROM samples"]) == 0
    assert f"{table.num_rows}" in capsys.readouterr().out


def test_files_and_row_groups_are_sized_as_asked(full_run, tmp_path):
    assert main(["publish", full_run[0].output.dir, str(tmp_path / "d"), "--file-size", "40kb", "--row-group-size", "10kb"]) == 0
    files = sorted((tmp_path / "d" / "data" / "reference").iterdir())
    assert len(files) > 2 and [p.name for p in files] == [f"train-{i:05d}.parquet" for i in range(len(files))]
    total = 0
    for path in files:
        metadata = pq.read_metadata(path)
        total += metadata.num_rows
        groups = [metadata.row_group(i) for i in range(metadata.num_row_groups)]
        assert len(groups) >= 2 or path == files[-1]
        assert all(g.num_rows == 1 or g.total_byte_size <= 3 * 10_000 for g in groups)
    assert total == card_of(tmp_path / "d")["tpt"]["sources"]["reference"]["samples"]


def test_destination_is_never_someone_elses(full_run, published, tmp_path, capsys):
    out = full_run[0].output.dir
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["publish", out, str(mine)]) == 2
    assert "is not a folder `tpt publish` wrote" in capsys.readouterr().err and (mine / "notes.txt").read_text() == "keep me"
    readme = tmp_path / "repo"
    readme.mkdir()
    (readme / "README.md").write_text("---\nlicense: mit\n---\n# my project\n")
    assert main(["publish", out, str(readme)]) == 2 and (readme / "README.md").read_text().endswith("# my project\n")
    again = tmp_path / "again"
    assert main(["publish", out, str(again)]) == 0
    (again / "data" / "stale.parquet").write_text("from the earlier publish")
    assert main(["publish", out, str(again)]) == 0  # an earlier publish is replaced whole
    assert not (again / "data" / "stale.parquet").exists() and card_of(again) == card_of(published)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_publish_to_a_bucket_reads_back(full_run, published, gcs_bucket, capsys):
    url = f"{gcs_bucket}/published/dataset"
    assert main(["publish", full_run[0].output.dir, url]) == 0
    folder = Folder(url)
    assert sorted(folder.glob("data/*/*.parquet")) == sorted(str(p.relative_to(published)) for p in published.glob("data/*/*.parquet"))
    with folder.fs.open(folder.path("data/reference/train-00000.parquet"), "rb") as stream:
        assert pq.read_table(stream).equals(pq.read_table(published / "data" / "reference" / "train-00000.parquet"))
    assert front_matter(folder.read_text("README.md"))["tpt"]["sources"] == card_of(published)["tpt"]["sources"]
    assert main(["stats", url, "--sql", "SELECT count(*) AS n FROM texts WHERE source = 'reference'"]) == 0
    assert json.dumps(card_of(published)["tpt"]["sources"]["reference"]["samples"]) in capsys.readouterr().out
    assert main(["publish", full_run[0].output.dir, url]) == 2  # a URL is never overwritten
    assert "is not empty" in capsys.readouterr().err


def test_the_recorded_config_keeps_no_password(full_run):
    """summary.json records the run's config for the card, with the credentials of any URL in it redacted."""
    from tpt.config import PipelineConfig
    from tpt.io.finalize import recorded_config

    config = full_run[0]
    secret = config.model_copy(update={"generate": config.generate.model_copy(update={"openai": config.generate.openai.model_copy(
        update={"base_urls": ["https://alice:s3cr3t@gpu-1:8000/v1", "http://gpu-2:8000/v1?api_key=k3y"]})})})
    recorded = recorded_config(secret)
    assert "s3cr3t" not in json.dumps(recorded) and "alice" not in json.dumps(recorded) and "k3y" not in json.dumps(recorded)
    assert recorded["generate"]["openai"]["base_urls"] == ["https://***@gpu-1:8000/v1", "http://gpu-2:8000/v1?api_key=***"]
    assert PipelineConfig.model_validate(recorded).generate.separator == config.generate.separator
    assert full_run[1]["config"] == recorded_config(config)  # what the run wrote
