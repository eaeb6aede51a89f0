"""The jobs of a run on datatrove's executors: local worker processes, Slurm job arrays, or Ray tasks.

Each job depends on the one before it (datatrove's `depends`: the local and Ray
executors run it first, Slurm submits with `--dependency=afterok`), and each task
drops a completion marker in its job's logging folder, so a rerun skips finished tasks.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import multiprocess
from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor
from datatrove.executor.ray import RayPipelineExecutor  # imports ray only when a job runs
from datatrove.pipeline.base import PipelineStep

from tpt import slurm
from tpt.config import RayConfig, SlurmConfig
from tpt.io.storage import Folder
from tpt.slurm import SlurmJob

# Each job's name is also its logging folder's; only the stages job's tasks take GPUs (the think stage).
# prepare, buckets and clusters run only with text deduplication (engines/datatrove/dedup.py).
JOBS = READ_JOB, PREPARE_JOB, BUCKETS_JOB, CLUSTERS_JOB, STAGES_JOB, FINALIZE_JOB = (
    "read", "prepare", "buckets", "clusters", "stages", "finalize")


@dataclass
class Job:
    name: str  # one of JOBS; also its logging folder
    steps: list[PipelineStep]
    tasks: int


def local_executors(jobs: list[Job], logs: Folder, workers: int, preload: tuple[str, ...] = ()) -> list[LocalPipelineExecutor]:
    """Worker processes forked from a fork server that imported the engine (and torch, and `preload`) once.

    Forking the driver itself is unsafe once it runs threads (a worker can inherit a held
    lock and hang); a plain fork server would re-import torch in every worker of every job.
    """
    multiprocess.get_context("forkserver").set_forkserver_preload(["tpt.engines.datatrove.pipeline", *preload])
    executors: list[LocalPipelineExecutor] = []
    for job in jobs:
        executors.append(LocalPipelineExecutor(
            job.steps, tasks=job.tasks, workers=min(workers, job.tasks), logging_dir=logs.url_of(job.name),
            depends=executors[-1] if executors else None, start_method="forkserver",
        ))
    return executors


class SlurmJobArray(SlurmPipelineExecutor):
    """datatrove's Slurm executor, keeping the id of every array it submits, and no job after a failed one left waiting.

    A job of more than `max_array_size` tasks is several arrays: the next job waits for all of them (datatrove's
    dependency names only the last). Every job is submitted with `--kill-on-invalid-dep=yes`, so when a task fails
    the jobs after it end at once, cancelled, instead of waiting forever on a dependency that can never be met.
    """

    def __init__(self, job: str, *args, **kwargs):
        super().__init__(*args, job_id_retriever=self._keep_id, **kwargs)
        self.job, self.submitted, self.ranks = job, [], []

    def _keep_id(self, sbatch_output: str) -> str:
        job_id = sbatch_output.split()[-1]  # "Submitted batch job 123"
        self.submitted.append(job_id)
        return job_id

    def launch_job(self) -> None:
        self.ranks = self.get_incomplete_ranks()  # what datatrove submits, in array order
        super().launch_job()
        if self.submitted:
            self.job_id = ":".join(self.submitted)  # what the next job's afterok waits for

    def get_sbatch_args(self, max_array: int = 1) -> dict:
        """datatrove's, with Slurm's log paths quoted: the output folder's path may hold spaces."""
        args = super().get_sbatch_args(max_array)
        return args | {key: shlex.quote(args[key]) for key in ("output", "error")}

    def get_launch_file_contents(self, sbatch_args: dict, run_script: str) -> str:
        """datatrove's script, with the pickled job's path quoted (datatrove writes it bare)."""
        pickled = self.logging_dir.resolve_paths("executor.pik")
        return super().get_launch_file_contents(sbatch_args, run_script.replace(f" {pickled}", f" {shlex.quote(pickled)}"))

    def launch_merge_stats(self) -> None:
        """None: the run's summary comes from its finalize job, and datatrove's merged stats would be a job more per job."""

    def record(self) -> SlurmJob:
        """What `tpt progress` and the run lock need to find this job's tasks and their logs later."""
        return SlurmJob(self.job, list(self.submitted), list(self.ranks),
                        self.max_array_size if self.max_array_size != -1 else max(len(self.ranks), 1),
                        completions=self.logging_dir.resolve_paths("completions"), logs=self.logging_dir.resolve_paths("logs"),
                        slurm_logs=self.slurm_logs_folder)


def slurm_executors(jobs: list[Job], logs: Folder, slurm: SlurmConfig, workers: int) -> list[SlurmJobArray]:
    """One job array per job; `workers` caps the tasks running at once (-1: no cap).

    Slurm writes its own logs to a local path: beside the logging dir, or ./slurm_logs/ when that is a URL.
    """
    executors: list[SlurmJobArray] = []
    for job in jobs:
        executors.append(SlurmJobArray(
            job.name, job.steps, tasks=job.tasks, workers=workers,
            time=slurm.time, partition=slurm.partition, qos=slurm.qos,
            cpus_per_task=slurm.cpus_per_task, mem_per_cpu_gb=slurm.mem_per_cpu_gb,
            gpus_per_task=slurm.gpus_per_task if job.name == STAGES_JOB else 0,
            job_name=f"{slurm.job_name}-{job.name}", max_array_size=slurm.max_array_size,
            sbatch_args={"kill-on-invalid-dep": "yes", **({"account": slurm.account} if slurm.account else {}), **slurm.sbatch_args},
            env_command=slurm.env_command or f"source {shlex.quote(str(Path(sys.prefix) / 'bin' / 'activate'))}",
            logging_dir=logs.url_of(job.name),
            slurm_logs_folder=logs.path(f"{job.name}/slurm_logs") if logs.is_local else str(Path("slurm_logs", job.name).resolve()),
            depends=executors[-1] if executors else None,
        ))
    return executors


def submit(executors: list[SlurmJobArray]) -> list[SlurmJob]:
    """Submit every job with unfinished tasks, each after the one before it; returns those submitted.

    If a submission fails, the jobs already submitted are cancelled: a run is submitted whole or not at all.
    """
    try:
        executors[-1].run()  # submits the jobs it depends on first
    except BaseException as error:
        slurm.cancel([job_id for executor in executors for job_id in executor.submitted])
        if isinstance(error, subprocess.CalledProcessError):  # sbatch printed why, above
            raise OSError(f"sbatch refused a job of the run (exit status {error.returncode}; its error is above); "
                          "nothing was left submitted") from None
        raise
    return [executor.record() for executor in executors if executor.submitted]


def describe_submission(jobs: list[SlurmJob], out: str) -> str:
    """What `tpt run` prints once a run is submitted: the jobs, and how to follow and cancel them."""
    ids = [job_id for job in jobs for job_id in job.ids]
    lines = ["tpt run: submitted to Slurm; the run goes on in these jobs:"]
    after = None
    for job in jobs:
        waits = f", after {after}" if after else ""
        lines.append(f"  {job.name:<9} job {':'.join(job.ids)}: {len(job.ranks)} task(s){waits}; logs in {job.logs}/")
        after = ":".join(job.ids)
    lines += [f"follow: tpt progress {shlex.quote(out)}   (or: squeue --jobs={','.join(ids)})",
              f"cancel: scancel {' '.join(ids)}",
              f"once finished: {out}/summary.json"]
    return "\n".join(lines)


class RayJob(RayPipelineExecutor):
    """datatrove's Ray executor, connected for the run, and failing loudly.

    The job run first (the last one: it runs those it depends on) connects to the cluster at `address`, else
    RAY_ADDRESS, else starts a local one for the run, and disconnects (stopping that one) at its end. A job that
    leaves a task unfinished (an error, or its node lost more often than datatrove resubmits it) raises: datatrove
    would only log it, and the job after it would wait for that task forever.
    """

    def __init__(self, job: str, *args, address: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.job, self.address = job, address

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        """A rank runs in a process datatrove forks from its Ray actor, with Ray's SIGTERM handler, which raises
        SystemExit wherever the process is: inside a finalizer it is swallowed, the process outlives the terminate
        that ends its pool, and the actor waits for it forever, holding its CPUs. Here SIGTERM just ends it."""
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        return super()._run_for_rank(rank, local_rank, node_rank)

    def run(self) -> None:
        import ray

        if ray.is_initialized():
            super().run()
        else:
            ray.init(address=self.address or os.environ.get("RAY_ADDRESS") or "local")
            try:
                super().run()
            finally:
                ray.shutdown()
        if unfinished := self.get_incomplete_ranks(skip_completed=True):
            raise RuntimeError(f"{len(unfinished)} of {self.world_size} Ray task(s) of the {self.job} job did not finish "
                               f"(ranks {unfinished[:10]}); their logs: {self.logging_dir.resolve_paths('logs')}/")


def ray_executors(jobs: list[Job], logs: Folder, ray: RayConfig, workers: int, address: str | None = None) -> list[RayJob]:
    """One Ray job per job, each task an actor reserving the config's CPUs and memory (GPUs: stage tasks only);
    `workers` caps the tasks running at once (-1: no cap). Ray resubmits a task whose node died (up to 3 times)."""
    executors: list[RayJob] = []
    for job in jobs:
        executors.append(RayJob(
            job.name, job.steps, tasks=job.tasks, workers=workers, logging_dir=logs.url_of(job.name),
            cpus_per_task=ray.cpus_per_task, mem_per_cpu_gb=ray.mem_per_cpu_gb,
            gpus_per_task=ray.gpus_per_task if job.name == STAGES_JOB else 0,
            depends=executors[-1] if executors else None, address=address,
        ))
    return executors


def sbatch_scripts(executors: list[SlurmJobArray]) -> str:
    """The sbatch script of each job, as `launch_job` would submit it, without submitting anything."""
    scripts = []
    for previous, executor in zip([None, *executors], executors):
        array = min(executor.tasks, executor.max_array_size) if executor.max_array_size != -1 else executor.tasks
        command = f"srun -l -n {executor.nodes_per_task} launch_pickled_pipeline {executor.logging_dir.resolve_paths('executor.pik')}"
        header = f"# job {executor.job_name}: {executor.tasks} task(s)"
        if previous is not None:
            header += f", submitted with --dependency=afterok:<job id of {previous.job_name}>"
        scripts.append(header + "\n" + executor.get_launch_file_contents(executor.get_sbatch_args(array), command))
    return "\n".join(scripts)
