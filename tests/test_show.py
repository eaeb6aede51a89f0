"""`tpt show` through the real command line on a real run (the session's `full_run`, thinking from the simulated
teacher): filters on manifest columns, order, limits, random samples, both formats, a bad --where, hostile text,
and a run at a gs:// URL."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.synthetic_run import write_records
from tpt.cli import main
from tpt.config import GenerateConfig, PipelineConfig, SourceConfig
from tpt.io.mds import index_shards, read_shards
from tpt.io.storage import Folder
from tpt.schema import Record

WHERE = "reasoning = 'none' AND thinking_tokens > 10"


def shown(capsys, *args: str) -> list[dict]:
    assert main(["show", *args, "--format", "jsonl"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def shard_order(out: str) -> list[str]:
    """Every sample id in the order of the run's shards: sources in the config's order, each source's index in order."""
    sources = json.loads(Folder(out).read_text("summary.json"))["sources"]
    return [id_ for source in sources if Folder(out).exists(f"mds/{source}/index.json")
            for table in read_shards(index_shards(Folder(f"{out}/mds/{source}"))) for id_ in table.column("id").to_pylist()]


def matching(out: str, where_rows) -> set[str]:
    manifest = pq.read_table(f"{out}/manifest.parquet")
    return set(manifest.filter(where_rows(manifest)).column("id").to_pylist())


def test_filters_orders_and_limits_as_asked(full_run, capsys):
    out = full_run[0].output.dir
    wanted = matching(out, lambda m: pc.and_(pc.equal(m.column("reasoning"), "none"), pc.greater(m.column("thinking_tokens"), 10)))
    assert len(wanted) > 5
    everything = shown(capsys, out, "--where", WHERE, "-n", "0")
    assert {s["id"] for s in everything} == wanted and len(everything) == len(wanted)  # all of them, each once
    assert [s["id"] for s in everything] == [i for i in shard_order(out) if i in wanted]  # in the shards' order
    first = shown(capsys, out, "--where", WHERE, "-n", "3")
    assert first == everything[:3]
    for sample in everything:
        assert sample["reasoning"] == "none" and sample["thinking_tokens"] > 10
    assert len(shown(capsys, out, "-n", "4")) == 4
    assert [s["id"] for s in shown(capsys, out)] == shard_order(out)[:10]  # the default: the first 10


def test_document_and_thinking_are_the_sample_split(full_run, capsys):
    """document + separator + thinking is the shards' text, byte for byte, for every sample."""
    out, separator = full_run[0].output.dir, full_run[0].generate.separator
    texts = {row["id"]: row["text"] for table in read_shards([s for name in Folder(out).glob("mds/*/index.json")
                                                               for s in index_shards(Folder(f"{out}/{name[:-11]}"))])
             for row in table.to_pylist()}
    samples = shown(capsys, out, "-n", "0")
    assert len(samples) == len(texts) == pq.read_metadata(f"{out}/manifest.parquet").num_rows
    assert all("text" not in s and s["document"] + separator + s["thinking"] == texts[s["id"]] for s in samples)
    assert all(s["document"] and s["thinking"] is not None for s in samples)


def test_random_samples_are_seeded_spread_and_filtered(full_run, capsys):
    out = full_run[0].output.dir
    wanted = matching(out, lambda m: pc.and_(pc.equal(m.column("reasoning"), "none"), pc.greater(m.column("thinking_tokens"), 10)))
    picked = shown(capsys, out, "--random", "--seed", "3", "-n", "6", "--where", WHERE)
    assert len(picked) == 6 and len({s["id"] for s in picked}) == 6 and {s["id"] for s in picked} <= wanted
    assert picked == shown(capsys, out, "--random", "--seed", "3", "-n", "6", "--where", WHERE)  # the seed decides
    assert picked != shown(capsys, out, "--random", "--seed", "4", "-n", "6", "--where", WHERE)
    assert len({s["source"] for s in picked}) > 1  # spread over the run, not the first shard's
    order = [i for i in shard_order(out) if i in wanted]
    assert [s["id"] for s in picked] != order[:6]
    every = shown(capsys, out, "--random", "--seed", "3", "-n", "0", "--where", WHERE)
    assert sorted(s["id"] for s in every) == sorted(wanted)  # without -n: every match once, in a random order
    assert len(shown(capsys, out, "--random", "-n", str(len(wanted) + 50), "--where", WHERE)) == len(wanted)


def test_bad_where_is_one_line_naming_the_columns(full_run, capsys):
    out = full_run[0].output.dir
    for where in ("nope > 1", "thinking_tokens >", "domain = 'x'; DROP TABLE samples"):
        assert main(["show", out, "--where", where]) == 2
        error = capsys.readouterr().err
        assert error.startswith("tpt show: error: --where") and error.count("\n") == 1
        assert "columns: id, source, doc_tokens" in error and "thinking_budget" in error
    assert main(["show", out, "--where", "domain = 'no such domain'"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "no sample matches --where" in captured.err
    assert main(["show", out, "-n", "-1"]) == 2 and "-n: expected" in capsys.readouterr().err
    assert main(["show", out, "--seed", "3"]) == 2 and "--seed needs --random" in capsys.readouterr().err


HOSTILE = "\x1b]0;owned\x07\x1b[2J<script>alert(1)</script>\u009b31m end"


def hostile_record(number: int, hostile: str = HOSTILE) -> Record:
    """A sample with every field set, its text, thinking and domain label carrying `hostile`."""
    record = Record(id=f"h{number}", source="web", text=f"document {number} {hostile}", doc_tokens=9, kept_tokens=9, truncated=False,
                    domain=f"math {hostile}", domain_score=0.5, audience="expert", audience_score=0.9, reasoning="advanced",
                    reasoning_score=0.8, thinking_tokens=3, finish_reason="stop", sample_tokens=14, thinking_budget=64)
    return record.with_thinking(f"thinking {number} {hostile}", "\n\n")


@pytest.fixture
def hostile_run(tmp_path):
    """A finished run whose text, thinking and labels carry terminal escapes and markup."""
    config = PipelineConfig(sources=[SourceConfig(name="web", path="web.jsonl")], generate=GenerateConfig(),
                            output={"dir": str(tmp_path / "hostile run")})
    records = [hostile_record(i) for i in range(3)]
    write_records(config.output.dir, records, config)
    return config.output.dir


def test_text_format_delimits_and_never_sends_control_characters(hostile_run, capsys):
    assert main(["show", hostile_run, "-n", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("═══ sample ") == 2 and printed.count("─── document ") == 2 and printed.count("─── thinking ") == 2
    assert "document 0 \\x1b]0;owned\\x07\\x1b[2J<script>" in printed and "\\x9b31m" in printed
    assert not any(ord(c) < 32 and c not in "\n" or 0x7f <= ord(c) <= 0x9f for c in printed)
    lines = shown(capsys, hostile_run, "-n", "1")
    assert lines[0]["document"] == f"document 0 {HOSTILE}" and lines[0]["domain"] == f"math {HOSTILE}"  # JSON keeps them exact


def test_show_reads_a_run_at_a_url(full_run, gcs_bucket, capsys):
    out = full_run[0].output.dir
    url = f"{gcs_bucket}/show/run"
    Folder(gcs_bucket).fs.put(out, url.removeprefix("gs://"), recursive=True)
    local = shown(capsys, out, "--where", WHERE, "-n", "5")
    assert shown(capsys, url, "--where", WHERE, "-n", "5") == local and len(local) == 5


def test_a_run_without_thinking_shows_and_publishes_its_documents(demo_run, tmp_path, capsys):
    out = demo_run[0].output.dir
    samples = shown(capsys, out, "-n", "3")
    assert len(samples) == 3 and all("thinking" not in s and s["document"] for s in samples)
    assert main(["publish", out, str(tmp_path / "dataset")]) == 0
    table = pq.read_table(tmp_path / "dataset" / "data")
    assert table.num_rows == pq.read_metadata(f"{out}/manifest.parquet").num_rows
    assert table.column("thinking").null_count == table.num_rows and table.column("document").equals(table.column("text"))
    assert table.column("thinking_flags").to_pylist() == [[]] * table.num_rows  # as the manifest has them
    assert "No thinking was generated" in (tmp_path / "dataset" / "README.md").read_text()
