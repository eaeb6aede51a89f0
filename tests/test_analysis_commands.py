"""`tpt report`, `tpt stats` and `tpt estimate` through the real command line: outputs, bad input,
nothing half-written, the report rendered by headless Chromium, an estimate from a real Beam sample run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import write_jsonl
from tests.test_analysis_stats import random_rows, write_run
from tpt.analysis.estimate import count_documents
from tpt.cli import main
from tpt.config import SourceConfig
from tpt.schema import MANIFEST_SCHEMA

AUDIENCE_TEAL = (0x0D, 0x94, 0x88)  # the audience panel's bar color: present only when Figure 4 is drawn


@pytest.fixture
def run(tmp_path):
    return write_run(tmp_path / "run", random_rows(7, 500))


def test_stats_sql_prints_and_writes(run, tmp_path, capsys):
    sql = "SELECT source, count(*) AS n, sum(thinking_tokens) AS t FROM samples GROUP BY source ORDER BY source"
    assert main(["stats", str(run), "--sql", sql]) == 0
    printed = capsys.readouterr().out
    manifest = pq.read_table(run / "manifest.parquet")
    sources = manifest.column("source").to_pylist()
    for name in ("books", "reference", "web"):
        assert re.search(rf"^{name}\s+{sources.count(name)}\s", printed, re.M)
    assert "(3 rows)" in printed
    for suffix, read in ((".csv", pacsv.read_csv), (".parquet", pq.read_table)):
        target = tmp_path / f"result{suffix}"
        assert main(["stats", str(run), "--sql", sql, "--output", str(target)]) == 0
        table = read(target)
        assert table.column("n").to_pylist() == [sources.count(n) for n in ("books", "reference", "web")]


def test_stats_overview(run, capsys):
    assert main(["stats", str(run)]) == 0
    printed = capsys.readouterr().out
    for heading in ("by source", "by domain", "by audience", "by reasoning"):
        assert heading in printed
    assert re.search(r"^mathematics\s+\d+", printed, re.M) and re.search(r"^unknown\s+\d+", printed, re.M)


def test_bad_input_is_refused_and_nothing_written(run, tmp_path, capsys):
    target = tmp_path / "out.csv"
    assert main(["stats", str(run), "--sql", "SELECT nope FROM samples", "--output", str(target)]) == 2
    error = capsys.readouterr().err
    assert "SQL error" in error and "nope" in error and "thinking_tokens" in error
    assert not target.exists() and not list(tmp_path.glob(".out.csv*"))

    not_output = tmp_path / "just-a-folder"
    not_output.mkdir()
    assert main(["report", str(not_output), "--output", str(tmp_path / "r1")]) == 2
    assert "is not a tpt run output: no manifest.parquet" in capsys.readouterr().err
    assert not (tmp_path / "r1").exists()

    other = tmp_path / "v2"
    other.mkdir()
    pq.write_table(MANIFEST_SCHEMA.empty_table().replace_schema_metadata({"tpt_schema_version": "2"}), other / "manifest.parquet")
    (other / "summary.json").write_text("{}")
    assert main(["report", str(other), "--output", str(tmp_path / "r2")]) == 2
    assert "tpt schema version 2, but this tpt reads version 1" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(run / "manifest.parquet", unfinished)
    assert main(["stats", str(unfinished)]) == 2
    assert "no summary.json; the run did not finish" in capsys.readouterr().err

    narrow = tmp_path / "narrow"
    narrow.mkdir()
    pq.write_table(pa.table({"id": ["a"]}).replace_schema_metadata({"tpt_schema_version": "1"}), narrow / "manifest.parquet")
    (narrow / "summary.json").write_text("{}")
    assert main(["stats", str(narrow), "--sql", "SELECT 1"]) == 2
    assert "missing manifest columns ['source'" in capsys.readouterr().err

    assert main(["report", str(run), "--output", str(run)]) == 2  # would replace the run itself
    assert "is not a folder `tpt report` wrote" in capsys.readouterr().err
    assert (run / "manifest.parquet").is_file()


def test_report_folder_is_replaced_whole(run, tmp_path, capsys):
    output = tmp_path / "report"
    assert main(["report", str(run), "--output", str(output)]) == 0
    (output / "stale.txt").write_text("from an earlier report")
    assert main(["report", str(run), "--output", str(output)]) == 0
    assert "advanced over none" in capsys.readouterr().out
    names = sorted(p.name for p in output.iterdir())
    assert names == sorted([".tpt-owner", "summary.json", "report.html", "domain.csv", "audience.csv", "reasoning.csv", "sources.csv",
                            "duplicates.csv",
                            "thinking_by_class.png", "thinking_histogram.png", "upsampling.png", "tokens_by_source.png"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    page = (output / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == 4
    assert not re.search(r"(src|href)=['\"]?(https?:|//|[\w./-]+\.(png|css|js))", page)  # self-contained
    assert len(pacsv.read_csv(output / "domain.csv")) == len(json.loads((output / "summary.json").read_text())["axes"]["domain"])


def chromium() -> str:
    """Debian's chromium. CI installs it (.ci/run), so there a missing one fails the test instead of hiding it."""
    path = shutil.which("chromium")
    if path is None and os.environ.get("CI"):
        pytest.fail("chromium is not installed, yet CI is set: .ci/run installs it (apt-get install chromium)")
    if path is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium); CI installs it")
    return path


def test_report_renders_in_headless_chromium(run, tmp_path):
    browser = chromium()
    output = tmp_path / "report"
    assert main(["report", str(run), "--output", str(output)]) == 0
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                    "--window-size=1280,1400", f"--screenshot={shot}", (output / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    from matplotlib.image import imread

    pixels = (imread(shot)[:, :, :3] * 255).round().astype(int)
    teal = np.all(np.abs(pixels - AUDIENCE_TEAL) <= 3, axis=-1).sum()
    assert teal > 5000, "Figure 4's audience bars are not on the rendered page"


def test_count_documents(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_bytes(b'{"text": "a"}\n\n{"text": "b"}\n\n\n{"text": "c"}')  # blank lines, no final newline
    parquet = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": ["x"] * 5}), parquet)
    assert count_documents(SourceConfig(name="j", path=str(path))) == {"files": 1, "documents": 3, "bytes": path.stat().st_size}
    assert count_documents(SourceConfig(name="p", path=str(parquet)))["documents"] == 5


def test_estimate_from_a_sample_run(tmp_path, capsys):
    """Projection = corpus documents × kept share × mean tokens of the sample, with GPU-hours at the given rate."""
    write_jsonl(tmp_path / "web.jsonl", [{"id": str(i), "text": f"document {i}"} for i in range(40)])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"sources": [{"name": "web", "path": str(tmp_path / "web.jsonl")}]}))
    rows = {"id": ["1", "2", "3", "4"], "source": ["web"] * 4, "kept_tokens": [10, 20, 30, 40],
            "thinking_tokens": [100, 200, 300, 400], "sample_tokens": [111, 222, 333, 444]}
    sample = write_run(tmp_path / "sample", rows, {"sources": {"web": {"read": 5}}})  # 4 of 5 documents kept
    out = tmp_path / "estimate.json"
    assert main(["estimate", str(config), "--from", str(sample), "--tokens-per-second", "1000",
                 "--train-tokens-per-second", "2000", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    web = result["sources"]["web"]
    assert web["documents"] == 40 and web["kept_share"] == 0.8 and web["samples"] == 32.0
    assert web["thinking_tokens"][1] == 32 * 250.0 and web["training_tokens"][1] == 32 * 277.5
    half = 1.959964 * float(np.std([100, 200, 300, 400], ddof=1)) / 2
    assert web["thinking_tokens"][0] == pytest.approx(32 * (250 - half)) and web["thinking_tokens"][2] == pytest.approx(32 * (250 + half))
    assert result["generation"]["gpu_hours"][1] == 32 * 250.0 / 1000 / 3600
    assert result["training"]["gpu_hours"][1] == 32 * 277.5 / 2000 / 3600
    assert "generation GPU-hours at 1,000 tokens/s per GPU" in capsys.readouterr().out


@pytest.mark.slow
def test_estimate_sample_runs_the_pipeline_and_reports_on_it(tmp_path, capsys):
    """--sample N: a real Beam run over the first N documents of each source, then `tpt report` on that run."""
    for name, count in (("web", 12), ("books", 5)):
        write_jsonl(tmp_path / f"{name}.jsonl", [{"text": f"{name} document number {i}. " * (i + 1)} for i in range(count)] + ["{broken"])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"sources": [{"name": n, "path": str(tmp_path / f"{n}.jsonl")} for n in ("web", "books")]}))
    workdir = tmp_path / "work"
    assert main(["estimate", str(config), "--sample", "3", "--tokens-per-second", "100", "--workdir", str(workdir),
                 "--json", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert {name: s["documents"] for name, s in result["sources"].items()} == {"web": 13, "books": 6}  # the broken lines count as documents
    assert result["sources"]["web"]["sample_samples"] == 3 and result["sources"]["web"]["kept_share"] == 1.0
    manifest = pq.read_table(workdir / "run" / "manifest.parquet")
    web_kept = [k for s, k in zip(manifest.column("source").to_pylist(), manifest.column("kept_tokens").to_pylist()) if s == "web"]
    assert result["sources"]["web"]["training_tokens"][1] == 13 * (sum(web_kept) / 3)
    assert "no thinking" in capsys.readouterr().out or result["totals"]["thinking_tokens"][1] > 0

    assert main(["report", str(workdir / "run")]) == 0
    summary = json.loads((workdir / "run" / "report" / "summary.json").read_text())
    assert summary["totals"]["samples"] == 6 and {r["class"] for r in summary["sources"]} == {"web", "books"}
