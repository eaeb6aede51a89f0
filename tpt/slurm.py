"""What Slurm says about a run's jobs: each array task's state, from `squeue` (no accounting daemon needed).

A run submitted to Slurm is a few job arrays (`SlurmJob`); the submitting
command records them where the run lock is (tpt.io.publish), so that the lock's
staleness and `tpt progress` can ask Slurm about them later, from any machine
of the cluster. `squeue --states=all` lists finished tasks too, for as long as
the controller keeps them (MinJobAge, 300 s by default); after that a task is
simply gone, and its completion marker says whether it finished.
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass, field

# Slurm's job states, grouped by what they mean for a run
WAITING = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD", "SUSPENDED", "STOPPED", "RESIZING",
           "CONFIGURING", "SIGNALING", "STAGE_OUT"}
RUNNING = {"RUNNING", "COMPLETING"}
DONE = {"COMPLETED"}
ENDED_BADLY = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED",
               "REVOKED", "SPECIAL_EXIT"}
QUERY_TIMEOUT = 30.0


class SlurmUnavailable(RuntimeError):
    """Slurm could not be asked: no squeue here, or its controller does not answer."""


@dataclass
class SlurmJob:
    """One job of a run as submitted: its Slurm arrays, and where each of its tasks leaves its traces."""

    name: str  # the run's name for it: read, stages, finalize, ...
    ids: list[str]  # one Slurm job array per `array_size` tasks, in order
    ranks: list[int]  # the run's task (rank) each array element runs, in array order
    array_size: int  # elements per array
    completions: str  # folder of completion markers, one per finished rank, named by the rank on 5 digits
    logs: str  # the task logs: task_NNNNN.log, by rank
    slurm_logs: str  # Slurm's own output of each element: <array job id>_<index>.out

    def task_log(self, rank: int) -> str:
        return f"{self.logs}/task_{rank:05d}.log"

    def slurm_log(self, job_id: str, index: int) -> str:
        return f"{self.slurm_logs}/{job_id}_{index}.out"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TaskState:
    job: str  # the array's job id
    index: int  # the element of the array
    state: str  # Slurm's: PENDING, RUNNING, COMPLETED, FAILED, ...
    reason: str = ""  # why it waits or ended, as squeue says
    node: str = ""
    rank: int = field(default=-1)  # the run's task, once matched with its SlurmJob


def task_states(job_ids: list[str]) -> dict[tuple[str, int], TaskState]:
    """The state of every array element of `job_ids` the controller still knows, by (array job id, index)."""
    if not job_ids:
        return {}
    command = ["squeue", "--noheader", "--array", "--states=all", f"--jobs={','.join(job_ids)}", "--format=%F|%K|%T|%r|%N"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=QUERY_TIMEOUT)
    except FileNotFoundError:
        raise SlurmUnavailable("squeue is not installed here") from None
    except subprocess.TimeoutExpired:
        raise SlurmUnavailable(f"squeue did not answer within {QUERY_TIMEOUT:g} s") from None
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:  # every one of them is gone from the controller
            return {}
        raise SlurmUnavailable(f"squeue failed: {done.stderr.strip() or done.returncode}")
    states = {}
    for line in done.stdout.splitlines():
        job, index, state, reason, node = (line.split("|") + [""] * 5)[:5]
        element = int(index) if index.isdigit() else 0  # a job that is no array: one element
        states[job, element] = TaskState(job, element, state.split()[0] if state else "", reason, node)
    return states


def still_queued(job_ids: list[str]) -> bool:
    """Whether any of `job_ids` still waits or runs (raises SlurmUnavailable if Slurm cannot be asked)."""
    return any(t.state in WAITING | RUNNING for t in task_states(job_ids).values())


def cancel(job_ids: list[str]) -> None:
    """Cancel jobs this command has just submitted (best effort: the error is for the caller's message)."""
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=QUERY_TIMEOUT)
