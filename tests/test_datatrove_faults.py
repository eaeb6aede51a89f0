"""A local datatrove run killed mid-way and run again: finished tasks are skipped, nothing is lost or written twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import DEMO_CONFIG, ROOT
from tests.test_datatrove import outputs
from tpt.engines.datatrove.pipeline import WORK
from tpt.io.output import OutputLayout, part_of
from tpt.io.publish import STAGING
from tpt.run import execute
from tpt.schema import Reject

TASKS = 4
HUNG_TASK = 0  # the first task a worker takes; the other worker finishes every other task meanwhile

# The run of configs/demo.yaml, with a fault-injecting stage appended that blocks forever on one document.
KILLED_RUN = """
import sys
from tpt.config import load_config
from tpt.run import execute, plan
from tpt.stages.base import BatchStage

class HangOnDocument(BatchStage):  # fault injection only: holds its task open until the test kills the run
    name, batch_size = "hang", 1
    def __init__(self, doc_id): self.doc_id = doc_id
    def process(self, batch):
        if batch[0].id == self.doc_id:
            __import__("threading").Event().wait()
        return batch

build_stages = plan.build_stages
plan.build_stages = lambda config: [*build_stages(config), HangOnDocument(sys.argv[2])]
config = load_config(sys.argv[1]).model_copy(update={"generate": None})  # as the demo_config fixture
execute(config.with_output_dir(sys.argv[3]), "datatrove", tasks=int(sys.argv[4]), workers=2)
"""


def wait_for(paths: list, process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    """Until every path exists; fails if the run ends first or takes too long."""
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert process.poll() is None, f"the run ended (exit {process.returncode}) first:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{paths} did not appear in {timeout} s"
        time.sleep(0.05)


def test_killed_run_resumes_skipping_finished_tasks(demo_run, demo_config, tmp_path):
    out = tmp_path / "out"
    hung = next(s for s in outputs(demo_run[0].output.dir)["samples"].values() if part_of(s["id"], TASKS) == HUNG_TASK)
    completions = out / WORK / "logs" / "stages" / "completions"
    finished = [completions / f"{rank:05d}" for rank in range(TASKS) if rank != HUNG_TASK]

    log = tmp_path / "killed-run.log"
    with open(log, "w") as stream:
        run = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(DEMO_CONFIG), hung["id"], str(out), str(TASKS)],
                               cwd=ROOT, start_new_session=True, stdout=stream, stderr=subprocess.STDOUT)
    try:
        wait_for(finished, run, log)
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the run's own process group: the driver and its task workers
        run.wait()
    mds = out / STAGING / OutputLayout.mds  # a run's parts stay staged until it is published
    assert not (completions / f"{HUNG_TASK:05d}").exists() and not (out / OutputLayout.summary).exists()
    kept = {p: p.stat().st_mtime_ns for rank in range(TASKS) if rank != HUNG_TASK for p in mds.glob(f"*/part-{rank:05d}/*")}
    assert kept and not list(mds.glob(f"*/part-{HUNG_TASK:05d}"))

    # and what a killed earlier attempt of the hung task could have left: its document set aside (a failed generation)
    stale = out / STAGING / OutputLayout.rejects / hung["source"] / f"part-{HUNG_TASK:05d}.jsonl"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text(json.dumps(Reject(hung["source"], "think", "generation_failed", "injected", id=hung["id"]).to_dict()) + "\n")

    config = demo_config.with_output_dir(str(out))
    summary = execute(config, "datatrove", tasks=TASKS, workers=2)
    kept = {out / p.relative_to(out / STAGING): mtime for p, mtime in kept.items()}  # published by renames
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the finished tasks were not run again
    assert sorted(p.name for p in completions.iterdir()) == [f"{rank:05d}" for rank in range(TASKS)]
    beam, ours = outputs(demo_run[0].output.dir), outputs(config.output.dir)
    assert len(ours["samples"]) == summary["totals"]["written"] == demo_run[1]["totals"]["written"]  # nothing twice
    for key in ("samples", "manifest", "rejects", "streams", "summary"):
        assert ours[key] == beam[key], key
