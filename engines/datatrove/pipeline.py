"""Run the tpt pipeline on datatrove: plan the jobs, start or resume the run, hand it to an executor.

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

from tpt.engines.datatrove import executors
from tpt.engines.datatrove.dedup import ApplyDedup, Cluster, Sign, VerifyBuckets
from tpt.engines.datatrove.executors import BUCKETS_JOB, CLUSTERS_JOB, FINALIZE_JOB, JOBS, PREPARE_JOB, READ_JOB, STAGES_JOB, Job
from tpt.engines.datatrove.finalize import Finalize
from tpt.engines.datatrove.read import ReadSources
from tpt.engines.datatrove.shuffle import GatherById, ScatterById
from tpt.engines.datatrove.stage import ApplyStage
from tpt.engines.datatrove.write import WriteParts
from tpt.io.publish import UNPUBLISHED
from tpt.io.storage import Folder
from tpt.redact import redact
from tpt.run.failures import worker_failures
from tpt.run.plan import RunPlan
from tpt.run.registry import LOCAL_WORKERS

log = logging.getLogger(__name__)

WORK = ".datatrove"  # OUT/.datatrove/: run.json, shuffle/, logs/ (unless datatrove.logging_dir)
STAMP, SHUFFLE = "run.json", "shuffle"
EXECUTORS = ("local", "slurm", "ray")


class DatatroveRun:
    """A run plan as datatrove's jobs, and the task count and folders they share."""

    def __init__(self, plan: RunPlan, executor: str, tasks: int | None, workers: int, address: str | None = None):
        if executor not in EXECUTORS:
            raise ValueError(f"unknown executor {executor!r}; expected one of {', '.join(EXECUTORS)}")
        if tasks is not None and tasks < 1:
            raise ValueError(f"--tasks must be at least 1, got {tasks}")
        if executor == "slurm" and plan.config.datatrove.slurm is None:
            raise ValueError("--executor slurm needs a `datatrove.slurm` section in the config (at least `partition`)")
        if address and executor != "ray":
            raise ValueError(f"--address names a Ray cluster: use it with --executor ray, not {executor}")
        self.address = address
        self.plan, self.executor, self.workers = plan, executor, workers
        # Locally, one task per worker process: a task's generation window drains at its end, so a worker
        # that ran several tasks in turn would leave the teacher servers idle at each of them.
        self.tasks = tasks or (workers if executor == "local" else plan.config.output.parts)
        self.work = Folder(plan.layout.url_of(WORK))
        self.shuffle = self.work.url_of(SHUFFLE)
        self.logs = Folder(plan.config.datatrove.logging_dir or self.work.url_of("logs"))
        self.engine = {"name": "datatrove", "executor": executor, "tasks": self.tasks, "workers": workers}
        self.lock = plan.lock()  # held until the finalize job has published (on Slurm, handed over to the jobs)

    def jobs(self, started: float) -> list[Job]:
        """read, stages and finalize; with text deduplication, prepare, buckets and clusters before stages."""
        plan, shuffle, tasks = self.plan, self.shuffle, self.tasks
        read = ReadSources(plan.files, plan.config.sources, plan.config.truncate.max_doc_bytes, plan.beacons)
        gather = [GatherById(shuffle), *(ApplyStage(stage, plan.beacons) for stage in plan.before_dedup)]
        stages = [*(ApplyStage(stage, plan.beacons) for stage in plan.after_dedup), WriteParts(plan)]
        jobs = [Job(READ_JOB, [read, ScatterById(shuffle, tasks)], min(len(plan.files), tasks))]
        if plan.dedup:
            jobs += [Job(PREPARE_JOB, [*gather, Sign(plan.dedup, shuffle, tasks, plan.beacons)], tasks),
                     Job(BUCKETS_JOB, [VerifyBuckets(plan.dedup, shuffle)], tasks),
                     Job(CLUSTERS_JOB, [Cluster(plan.dedup, shuffle, tasks)], 1),
                     Job(STAGES_JOB, [ApplyDedup(plan.dedup, shuffle), *stages], tasks)]
        else:
            jobs.append(Job(STAGES_JOB, [*gather, *stages], tasks))
        return [*jobs, Job(FINALIZE_JOB, [Finalize(plan, shuffle, started, self.engine, self.lock.token)], 1)]

    def executors(self, started: float) -> list:
        jobs = self.jobs(started)
        if self.executor == "ray":
            return executors.ray_executors(jobs, self.logs, self.plan.config.datatrove.ray, self.workers, self.address)
        if self.executor == "slurm":
            return executors.slurm_executors(jobs, self.logs, self.plan.config.datatrove.slurm, self.workers)
        return executors.local_executors(jobs, self.logs, self.workers, self.plan.dedup.worker_modules if self.plan.dedup else ())

    def start_or_resume(self) -> bool:
        """True if an earlier attempt of this very run is resumed; else start afresh, clearing what other runs
        left unfinished (the previous run's published outputs stay until this run publishes its own)."""
        plan = self.plan
        config = plan.config.model_dump(mode="json", exclude={"datatrove"})  # new Slurm limits still resume
        # as JSON gives it back; without the credentials a server URL holds, which no file keeps
        state = json.loads(redact(json.dumps({"config": config, "files": plan.files, "tasks": self.tasks})))
        if self.work.exists(STAMP) and self.work.read_json(STAMP) == state:
            plan.recover()  # a publish an earlier attempt was killed in
            return True
        plan.start_afresh()
        self.logs.remove(*JOBS)
        self.work.remove(SHUFFLE)
        self.work.write_text(STAMP, json.dumps(state, indent=1))
        plan.staging.write_text(UNPUBLISHED, "")  # until finalize publishes the run
        return False


def run(plan: RunPlan, workers: int | None = None, executor: str | None = None, tasks: int | None = None,
        dry_run: bool = False, address: str | None = None) -> dict[str, Any] | None:
    """Run (local, Ray) or submit (Slurm) the plan; returns the run summary, or None once Slurm jobs are submitted.

    With `dry_run`, print the Slurm jobs' sbatch scripts instead, submitting nothing.
    """
    executor = executor or "local"
    workers = workers or (LOCAL_WORKERS if executor == "local" else -1)  # Slurm: no cap on tasks at once
    datatrove = DatatroveRun(plan, executor, tasks, workers, address)
    if dry_run:
        if executor != "slurm":
            raise ValueError("--dry-run renders the Slurm jobs' sbatch scripts; use it with --executor slurm")
        print(executors.sbatch_scripts(datatrove.executors(time.time())))
        return None
    with datatrove.lock as lock:
        if datatrove.start_or_resume():
            log.info("resuming the datatrove run in %s: tasks with a completion marker are skipped", plan.layout.url)
        every = datatrove.executors(time.time())
        progress = plan.progress()
        if executor == "slurm" and every[-1].get_incomplete_ranks():  # else finished already: nothing to submit
            progress.start()  # for `tpt progress OUT`, from the tasks' beacons
            lock.hand_over(jobs := executors.submit(every))  # the finalize job releases it
            print(executors.describe_submission(jobs, plan.layout.url))
            return None
        with worker_failures(), progress:
            every[-1].run()  # runs the jobs it depends on first
    return plan.layout.read_json(plan.layout.summary)
