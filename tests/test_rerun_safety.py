"""A rerun refused before it starts leaves the finished run in the folder exactly as it was, on both engines.

What can be checked before a run is checked before anything is deleted or written: the format of every
input file, and that the teacher's servers answer. The refusal is one line naming the cause, exit code 2.
"""

from __future__ import annotations

import errno
import json
import random
import resource
import signal
import socket
import subprocess
import sys

import pytest

from tests.conftest import write_jsonl
from tests.test_pipeline_beam import read_streams
from tpt.cli import main as tpt
from tpt.io.lock import LOCK
from tpt.io.output import OutputLayout
from tpt.io.publish import OUTPUTS, STAGING

FINISHED = ("streams.yaml", "manifest.parquet", "summary.json")


def snapshot(out) -> dict[str, bytes]:
    """Every file of a run's outputs, by path, with its bytes."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and ".progress" not in p.parts}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A small finished run (read, truncate, write) in OUT, and the config that made it."""
    tmp = tmp_path_factory.mktemp("rerun")
    write_jsonl(tmp / "docs.jsonl", [{"id": f"d{i}", "text": f"Document number {i} is about tides and the moon."} for i in range(20)])
    (tmp / "notes.txt").write_text("a note, not a corpus\n")
    config = tmp / "good.yaml"
    config.write_text("sources: [{name: web, path: docs.jsonl}]\ntruncate: {max_doc_tokens: 16}\noutput: {parts: 2}\n")
    out = tmp / "out"
    assert tpt(["run", str(config), "--output", str(out), "--workers", "1"]) == 0
    return tmp, out


@pytest.mark.parametrize("engine", ["beam", "datatrove"])
@pytest.mark.parametrize("mistake", ["unreadable format", "unreachable server"])
def test_a_refused_rerun_leaves_the_finished_run_whole(finished_run, engine, mistake, capsys):
    tmp, out = finished_run
    before = snapshot(out)
    assert all(name in before for name in FINISHED) and any(name.startswith("mds/") for name in before)
    config = tmp / f"bad-{engine}.yaml"
    if mistake == "unreadable format":
        config.write_text("sources: [{name: web, path: notes.txt}]\n")
        expected = "cannot tell the format of"
    else:
        config.write_text(f"sources: [{{name: web, path: docs.jsonl}}]\ngenerate: {{backend: openai, model: teacher, "
                          f"base_urls: ['http://127.0.0.1:{closed_port()}/v1']}}\n")
        expected = "no OpenAI-compatible server answers at"
    capsys.readouterr()
    assert tpt(["run", str(config), "--output", str(out), "--engine", engine, "--workers", "1"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("tpt run: error:") and expected in error[0]
    assert snapshot(out) == before  # not one file touched
    _, samples = read_streams(out)
    assert sorted(s["id"] for s in samples) == sorted(f"d{i}" for i in range(20))


FULL_DISK = 64_000  # bytes a file may grow to in the run below: every file of the run but the big document's


@pytest.mark.parametrize("engine", ["beam", "datatrove"])
def test_a_worker_that_finds_the_disk_full_fails_the_run_in_one_line_and_the_finished_run_stays(finished_run, engine):
    """A full disk, injected as a file-size limit on every process of the run (the worker's write fails with
    EFBIG as it would with ENOSPC): the run ends with one line naming what could not be written, exit code 2."""
    tmp, out = finished_run
    before = published(out)
    letters = random.Random(0).choices("abcdefghijklmnopqrstuvwxyz      ", k=300_000)
    big = {"id": "big", "text": "".join(letters)}  # its shard, compressed, outgrows the limit
    write_jsonl(tmp / "with-big.jsonl", [*(json.loads(line) for line in (tmp / "docs.jsonl").read_text().splitlines()), big])
    config = tmp / f"full-disk-{engine}.yaml"
    config.write_text("sources: [{name: web, path: with-big.jsonl}]\ntruncate: {max_doc_tokens: 1000000}\noutput: {parts: 2}\n")

    def full_disk():  # in the child, before exec: inherited by every worker process of the run
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (FULL_DISK, FULL_DISK))

    run = subprocess.run([sys.executable, "-m", "tpt.cli", "run", str(config), "--output", str(out), "--engine", engine,
                          "--workers", "2"], preexec_fn=full_disk, capture_output=True, text=True, timeout=600)
    last = run.stderr.strip().splitlines()[-1]
    assert run.returncode == 2, run.stderr[-3000:]
    assert last.startswith(f"tpt run: error: [Errno {errno.EFBIG}] writing {out}/") and last.endswith(": File too large")
    assert published(out) == before  # the finished run, untouched
    _, samples = read_streams(out)
    assert sorted(s["id"] for s in samples) == sorted(f"d{i}" for i in range(20))


def published(out) -> dict[str, bytes]:
    """The files of the run published in OUT: shards, rejects, manifest, streams.yaml, summary.json."""
    return {name: data for name, data in snapshot(out).items() if name.split("/")[0] in OUTPUTS}


@pytest.mark.parametrize("engine", ["beam", "datatrove"])
def test_a_rerun_killed_at_any_point_leaves_the_previous_run_whole(engine, tmp_path):
    """Kill a rerun as it starts, mid-generation and once its parts are written (the merge); each time the previous
    run's outputs are byte for byte as they were and read back whole. A rerun left alone then replaces them."""
    from tests.simulator import SimulatedServer
    from tests.test_think_resume import results, tpt_run

    write_jsonl(tmp_path / "docs.jsonl", [{"id": f"d{i:02d}", "text": f"Document {i}: the tides follow the moon. " * 4} for i in range(40)])
    out = tmp_path / "out"
    with SimulatedServer(slots=8, rate=300, mean_tokens=200) as server:  # about 5 s of generation a run
        def config(budget: int) -> str:
            path = tmp_path / f"config-{budget}.yaml"
            path.write_text("sources: [{name: web, path: docs.jsonl}]\ntruncate: {max_doc_tokens: 32}\noutput: {parts: 2}\n"
                            f"generate: {{backend: openai, model: teacher, base_urls: [{server.url}], chat: true, "
                            f"max_new_tokens: {budget}, max_in_flight: 8, flush_every_docs: 1}}\n")
            return str(path)

        tpt_run(config(400), out, engine=engine)
        read_streams(out)  # streaming unpacks compressed shards beside them: do it before taking the snapshot
        before = published(out)
        first = sum(results(out).values())
        kills = {
            "as it starts": lambda: (out / LOCK).exists(),
            "mid-generation": lambda: first + 5 <= sum(results(out).values()) < first + 35,
            "parts written": lambda: any((out / STAGING / OutputLayout.manifest_parts).glob("*/*.parquet")),
        }
        for moment, kill_when in kills.items():
            tpt_run(config(300), out, kill_when=kill_when, engine=engine)  # another budget: every thinking afresh
            assert published(out) == before, f"killed {moment}"
            _, samples = read_streams(out)
            assert sorted(s["id"] for s in samples) == [f"d{i:02d}" for i in range(40)]
        tpt_run(config(300), out, engine=engine)
    after = published(out)
    assert after != before and json.loads(after[OutputLayout.summary])["totals"]["written"] == 40
