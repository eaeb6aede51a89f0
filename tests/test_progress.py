"""The run-wide progress line: workers' beacons summed per stage, totals estimated from the input read, ETAs."""

from __future__ import annotations

from tpt.progress import BEACONS, Progress, RunProgress, StageCounts

STAGES = ["read", "truncate", "classify", "think"]


def test_beacons_of_every_worker_add_up_per_stage(tmp_path):
    beacons = str(tmp_path / "beacons")
    first, second = Progress("read", beacons=beacons), Progress("read", beacons=beacons)
    first.update(100, bytes_read=400)
    second.update(50)
    think = Progress("think", beacons=beacons)
    think.update(30, tokens=3000)
    for progress in (first, second, think):
        progress.write_beacon()  # what each worker process's beacon writer does within BEACON_SECONDS
    counts = RunProgress(beacons, STAGES, input_bytes=1000).counts()
    assert counts.keys() == {"read", "think"}
    assert (counts["read"].docs, counts["read"].bytes) == (150, 400)
    assert (counts["think"].docs, counts["think"].tokens) == (30, 3000)


def test_stage_totals_are_estimated_from_the_share_of_input_read():
    now = 10_000.0
    progress = RunProgress("unused", STAGES, input_bytes=1000, per_document={"think": 2})
    counts = {
        "read": StageCounts(docs=400, bytes=500, started=now - 100, updated=now),  # half the bytes: about 800 documents in all
        "truncate": StageCounts(docs=400, started=now - 100, updated=now),  # 4 docs/s, 400 to go
        "think": StageCounts(docs=100, tokens=5000, started=now - 60, updated=now - 10),  # 2 samples a document: 1,600 to make, 2 a second
    }
    line = progress.line(counts)
    assert line.startswith("run: read 50% of 1.0 KB, 400 docs; ")
    assert "truncate 400 docs, 4.0 docs/s, 50%, ETA 0:01:40" in line
    assert "classify not started" in line and "run ETA" not in line  # unknown until every stage runs
    assert "think 100 docs, 2.0 docs/s, 100 tokens/s, 6%, ETA 0:12:30" in line

    counts["classify"] = StageCounts(docs=800, started=now - 200, updated=now - 100)  # done: its rate is kept, nothing to go
    line = progress.line(counts)
    assert "classify 800 docs, 8.0 docs/s, 100%, ETA 0:00:00" in line and line.endswith(" | run ETA 0:12:30")  # the slowest stage


def test_the_beacon_folder_is_cleared_before_and_after_a_run(tmp_path):
    beacons = tmp_path / "beacons"
    Progress("read", beacons=str(beacons)).write_beacon()  # a beacon left by an earlier run
    with RunProgress(str(beacons), STAGES, input_bytes=1, interval=3600) as progress:
        assert progress.counts() == {}
        reader = Progress("read", beacons=str(beacons))
        reader.update(1, bytes_read=1)
        reader.write_beacon()
        assert progress.counts()["read"].docs == 1
    assert not beacons.exists()


def test_tpt_progress_tells_a_running_run_from_a_killed_a_failed_and_a_finished_one(tmp_path, capsys):
    """The same counts read as a live line (rates and ETA) only while the run's driver is alive."""
    import json
    import socket

    from tests.test_lock import stale_lock
    from tpt.cli import main as cli
    from tpt.io.lock import LOCK, RunLock
    from tpt.io.output import OutputLayout
    from tpt.io.publish import STAGING

    out = tmp_path / "out"
    assert cli(["progress", str(out)]) == 2 and "no tpt run has written there" in capsys.readouterr().err
    RunProgress(str(out / BEACONS), STAGES, input_bytes=2000).start()  # what a run leaves as it starts
    for stage, docs in (("read", 10), ("truncate", 4), ("classify", 4), ("think", 2)):
        worker = Progress(stage, beacons=str(out / BEACONS))
        worker.update(docs, bytes_read=1000 if stage == "read" else 0)
        worker.write_beacon()

    with RunLock(OutputLayout(out)):  # a driver alive: this process
        assert cli(["progress", str(out)]) == 0
        shown = capsys.readouterr().out
    assert shown.startswith(f"running: driver host {socket.gethostname()}, pid ")
    assert "\nrun: read 50% of 2.0 KB, 10 docs; truncate 4 docs, " in shown and "| run ETA " in shown

    killed = stale_lock(OutputLayout(out))
    assert cli(["progress", str(out)]) == 1
    shown = capsys.readouterr().out
    assert shown.startswith(f"dead: its driver is gone (host {socket.gethostname()}, pid {killed}, ")
    assert "last counts: run: read 50% of 2.0 KB, 10 docs; truncate 4 docs" in shown and "ETA" not in shown

    (out / LOCK).unlink()  # a driver that stopped on an error releases the lock, and its staged run stays unpublished
    (out / STAGING).mkdir()
    assert cli(["progress", str(out)]) == 1
    assert capsys.readouterr().out.startswith("failed: the last run stopped before it published")

    (out / STAGING).rmdir()
    (out / "summary.json").write_text(json.dumps({"totals": {"read": 12, "written": 9, "rejected": 3}, "wall_seconds": 4.25,
                                                  "engine": {"name": "datatrove", "executor": "slurm"}}))
    assert cli(["progress", str(out)]) == 0
    assert capsys.readouterr().out.startswith("finished: read 12, written 9, rejected 3 in 4.2 s on datatrove (slurm), published ")


READ_TASK_THEN_EXIT = """
import os, sys
from tpt.config import SourceConfig
from tpt.engines.datatrove.read import ReadSources
step = ReadSources([("a", sys.argv[1])], [SourceConfig(name="a", path=sys.argv[1])], 2**20, sys.argv[2])
documents = sum(1 for _ in step.run(rank=0, world_size=1))
print(documents, flush=True)
os._exit(0)  # as a datatrove pool worker's process ends: no exit handlers run
"""


def test_a_datatrove_read_task_reports_its_counts_before_its_process_ends(tmp_path):
    """The run-wide line reads the read tasks' beacons: a task that ends before the beacon thread's round must
    still have written its counts (else the line says `read 0%` while later stages have counted hundreds)."""
    import subprocess
    import sys

    from tests.conftest import ROOT, write_jsonl

    corpus = write_jsonl(tmp_path / "a.jsonl", [{"id": f"d{i}", "text": f"Document number {i}."} for i in range(25)])
    beacons = tmp_path / BEACONS
    done = subprocess.run([sys.executable, "-c", READ_TASK_THEN_EXIT, str(corpus), str(beacons)], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["25"]
    read = RunProgress(str(beacons), ["read"], corpus.stat().st_size).counts()["read"]
    assert (read.docs, read.bytes) == (25, corpus.stat().st_size)
