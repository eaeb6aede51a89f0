"""Run the tpt pipeline on datatrove: plan the three jobs, start or resume the run, hand it to an executor.

A run resumes only with the same config (its `datatrove` section aside), input
files and task count; anything else starts over (earlier outputs, markers and
shuffle files removed, the thinking store kept), so completion markers never
skip work of another run.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from pipelines.datatrove.executors import FINALIZE_JOB, JOBS, READ_JOB, STAGES_JOB, Job, local_executors, sbatch_scripts, slurm_executors
from pipelines.datatrove.finalize import Finalize
from pipelines.datatrove.read import ReadSources
from pipelines.datatrove.shuffle import GatherById, ScatterById
from pipelines.datatrove.stage import ApplyStage
from pipelines.datatrove.write import WriteParts
from tpt.config import PipelineConfig
from tpt.io.output import OutputLayout
from tpt.io.publish import STAGING, UNPUBLISHED, RunLock, recover, staged
from tpt.io.read import list_inputs
from tpt.io.storage import Folder
from tpt.progress import BEACONS, track_run
from tpt.stages import build_stages, output_fields

log = logging.getLogger(__name__)

WORK = ".datatrove"  # OUT/.datatrove/: run.json, shuffle/, logs/ (unless datatrove.logging_dir)
STAMP, SHUFFLE = "run.json", "shuffle"
EXECUTORS = ("local", "slurm")


class DatatroveRun:
    """One run's plan: its files, folders and jobs."""

    def __init__(self, config: PipelineConfig, executor: str, tasks: int | None, workers: int):
        if executor not in EXECUTORS:
            raise ValueError(f"unknown executor {executor!r}; expected one of {', '.join(EXECUTORS)}")
        if tasks is not None and tasks < 1:
            raise ValueError(f"--tasks must be at least 1, got {tasks}")
        if executor == "slurm" and config.datatrove.slurm is None:
            raise ValueError("--executor slurm needs a `datatrove.slurm` section in the config (at least `partition`)")
        self.layout = OutputLayout(config.output.dir)
        self.config = config.with_output_dir(self.layout.url)  # absolute: Slurm tasks start elsewhere
        self.executor, self.workers = executor, workers
        # Locally, one task per worker process: a task's generation window drains at its end, so a worker
        # that ran several tasks in turn would leave the teacher servers idle at each of them.
        self.tasks = tasks or (workers if executor == "local" else config.output.parts)
        self.files = list_inputs(config.sources)
        self.stages = build_stages(self.config)
        self.work = Folder(self.layout.url_of(WORK))
        self.shuffle = self.work.url_of(SHUFFLE)
        self.logs = Folder(config.datatrove.logging_dir or self.work.url_of("logs"))
        self.engine = {"name": "datatrove", "executor": executor, "tasks": self.tasks, "workers": workers}

    def jobs(self, started: float) -> list[Job]:
        config, stages = self.config, self.stages
        separator = config.generate.separator if config.generate else None
        beacons = self.layout.url_of(BEACONS)  # each task's counts, for the run's progress line
        return [
            Job(READ_JOB, [ReadSources(self.files, config.sources, config.truncate.max_doc_bytes, beacons),
                         ScatterById(self.shuffle, self.tasks)], min(len(self.files), self.tasks)),
            Job(STAGES_JOB, [GatherById(self.shuffle), *(ApplyStage(stage, beacons) for stage in stages),
                             WriteParts(staged(self.layout).url, output_fields(config, stages), config.output, separator)], self.tasks),
            Job(FINALIZE_JOB, [Finalize(config, stages, self.shuffle, started, self.engine)], 1),
        ]

    def executors(self, started: float) -> list:
        jobs = self.jobs(started)
        if self.executor == "slurm":
            return slurm_executors(jobs, self.logs, self.config.datatrove.slurm, self.workers)
        return local_executors(jobs, self.logs, self.workers)

    def start_or_resume(self) -> bool:
        """True if an earlier attempt of this very run is resumed; else clear what other runs left unfinished
        (the previous run's published outputs stay until this run publishes its own)."""
        recover(self.layout)  # a publish an earlier run was killed in
        config = self.config.model_dump(mode="json", exclude={"datatrove"})  # new Slurm limits still resume
        state = json.loads(json.dumps({"config": config, "files": self.files, "tasks": self.tasks}))
        if self.work.exists(STAMP) and self.work.read_json(STAMP) == state:
            return True
        self.layout.remove(STAGING)
        self.logs.remove(*JOBS)
        self.work.remove(SHUFFLE)
        self.work.write_text(STAMP, json.dumps(state, indent=1))
        staged(self.layout).write_text(UNPUBLISHED, "")  # until finalize publishes the run
        return False


def run(config: PipelineConfig, executor: str = "local", tasks: int | None = None, workers: int = 2) -> dict[str, Any] | None:
    """Run (local) or submit (Slurm) the pipeline; returns the run summary, or None once Slurm jobs are submitted."""
    plan = DatatroveRun(config, executor, tasks, workers)
    for stage in plan.stages:
        stage.check()  # before anything is written
    with RunLock(plan.layout):  # on Slurm, while the jobs are submitted
        if plan.start_or_resume():
            log.info("resuming the datatrove run in %s: tasks with a completion marker are skipped", plan.layout.url)
        *_, last = plan.executors(time.time())
        progress = track_run(plan.config, plan.stages, plan.files)
        if executor == "slurm":
            progress.start()  # for `tpt progress OUT`, from the tasks' beacons
            last.run()  # submits the jobs it depends on first
            return None
        with progress:
            last.run()  # runs the jobs it depends on first
    return plan.layout.read_json(plan.layout.summary)


def dry_run(config: PipelineConfig, executor: str = "slurm", tasks: int | None = None, workers: int = -1) -> str:
    """What `run` would submit, as sbatch scripts; nothing is submitted or cleared, only the Slurm log folders made."""
    plan = DatatroveRun(config, executor, tasks, workers)
    if executor != "slurm":
        raise ValueError("--dry-run renders the Slurm jobs' sbatch scripts; use it with --executor slurm")
    return sbatch_scripts(plan.executors(time.time()))
