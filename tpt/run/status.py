"""Where the run writing a folder stands: running, finished, failed or dead, and why (`tpt progress OUT`).

It is read from what every run leaves in OUT, whatever its engine: the lock
(tpt.io.lock) says who is writing the folder, a live driver or the Slurm jobs
it was handed to; the workers' counts (tpt.progress) say how far it got;
summary.json says a run finished. For Slurm jobs, `squeue` says how each task
stands while the controller remembers it, and each task's completion marker
says whether it finished after that.

- running: a driver that is alive, or Slurm jobs with a task queued or running
- finished: no lock and no staged run, and a summary.json
- failed: a Slurm task that failed, was cancelled or timed out (named, with
  its logs); or a run whose driver stopped with an error before it published
- dead: a driver that is gone (killed) or Slurm jobs that left the queue
  without publishing: no error was reported anywhere, the run just stopped
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from tpt.io.lock import RunLock, describe
from tpt.io.output import OutputLayout
from tpt.io.publish import STAGING
from tpt.io.storage import Folder
from tpt.progress import BEACONS, PLAN, RunProgress
from tpt.slurm import DONE, ENDED_BADLY, RUNNING, WAITING, SlurmJob, SlurmUnavailable, TaskState, task_states

RUNNING_STATE, FINISHED, FAILED, DEAD = "running", "finished", "failed", "dead"
RESUME = "rerun the same command to resume it (finished tasks are skipped, stored thinking is reused)"


@dataclass
class RunStatus:
    state: str  # running, finished, failed or dead
    headline: str
    details: list[str] = field(default_factory=list)

    def render(self) -> str:
        return "\n".join([f"{self.state}: {self.headline}", *self.details])


def run_status(layout: OutputLayout) -> RunStatus | None:
    """The state of the run writing `layout`, or of the last one that did; None if no run ever wrote there."""
    lock = RunLock(layout)
    holder = lock.holder()
    if holder and holder.get("slurm_jobs"):
        return _on_slurm(layout, holder)
    if holder is not None:
        if lock.is_stale(holder):
            return RunStatus(DEAD, f"its driver is gone ({describe(holder)}) and it did not publish; {RESUME}",
                             _counts(layout, live=False))
        return RunStatus(RUNNING_STATE, f"driver {describe(holder)}", _counts(layout, live=True))
    if layout.exists(STAGING):
        return RunStatus(FAILED, "the last run stopped before it published (its `tpt run` printed why); "
                         + (f"{layout.summary} is the previous finished run's" if layout.exists(layout.summary) else RESUME),
                         _counts(layout, live=False))
    if layout.exists(layout.summary):
        return RunStatus(FINISHED, _finished(layout))
    return None


def _finished(layout: OutputLayout) -> str:
    summary = layout.read_json(layout.summary)
    totals, engine = summary["totals"], summary["engine"]
    at = datetime.fromtimestamp(layout.fs.modified(layout.path(layout.summary)).timestamp()).isoformat(sep=" ", timespec="seconds")
    return (f"read {totals['read']:,}, written {totals['written']:,}, rejected {totals['rejected']:,} in "
            f"{summary['wall_seconds']:,.1f} s on {engine.get('name')} ({engine.get('executor') or engine.get('runner')}), "
            f"published {at}; {layout.url_of(layout.summary)}")


def _counts(layout: OutputLayout, live: bool) -> list[str]:
    """The run-wide progress line from the workers' counts; without an ETA for a run that no longer runs."""
    beacons = Folder(layout.url_of(BEACONS))
    if not beacons.exists(PLAN):
        return []
    progress = RunProgress.of_run(beacons.url)
    counts = progress.counts()
    if not counts:
        return []
    line = progress.line(counts, eta=live)
    return [line if live else f"last counts: {line}"]


def _on_slurm(layout: OutputLayout, holder: dict) -> RunStatus:
    """A run handed over to Slurm jobs: each task's state from squeue, or its completion marker once Slurm forgot it."""
    jobs = [SlurmJob(**job) for job in holder["slurm_jobs"]]
    try:
        states = task_states([job_id for job in jobs for job_id in job.ids])
    except SlurmUnavailable as error:
        return RunStatus(RUNNING_STATE, f"handed to {describe(holder)}; Slurm cannot be asked about them here ({error})",
                         _counts(layout, live=True))
    lines, failed, queued, gone = [], [], 0, []
    for job in jobs:
        finished = {int(name) for name in Folder(job.completions).glob("*") if name.isdigit()}
        tally: Counter[str] = Counter()
        for task in _tasks(job, states):
            if task.state in DONE or (not task.state and task.rank in finished):
                tally["done"] += 1
            elif task.state in RUNNING:
                tally[f"running ({task.node})" if task.node else "running"] += 1
                queued += 1
            elif task.state in WAITING:
                tally[_said(task, "pending")] += 1
                queued += 1
            elif task.state in ENDED_BADLY:
                tally[_said(task, task.state.lower())] += 1
                failed.append((job, task))
            else:
                tally["gone from the queue, unfinished"] += 1
                gone.append((job, task))
        lines.append(f"  {job.name:<9} job {':'.join(job.ids)}: " + ", ".join(f"{n} {what}" for what, n in tally.items()))
    if failed:
        causes = [task for task in failed if task[1].reason != "DependencyNeverSatisfied"] or failed
        named = [f"  {job.name} task {task.rank} (Slurm {task.job}_{task.index}{' on ' + task.node if task.node else ''}): "
                 f"{_said(task)}; log {job.task_log(task.rank)}, Slurm's {job.slurm_log(task.job, task.index)}"
                 for job, task in causes]
        return RunStatus(FAILED, f"{len(causes)} Slurm task(s) did not finish; once the cause is fixed, {RESUME}",
                         [*named, *lines, *_counts(layout, live=False)])
    if queued:
        return RunStatus(RUNNING_STATE, f"on Slurm ({describe(holder)})", [*lines, *_counts(layout, live=True)])
    if not gone and layout.exists(layout.summary):  # the finalize job published, and its lock is about to go
        return RunStatus(FINISHED, _finished(layout))
    named = [f"  {job.name} task {task.rank}: log {job.task_log(task.rank)}" for job, task in gone]
    return RunStatus(DEAD, f"its Slurm jobs are gone from the queue and it did not publish; {RESUME}",
                     [*named, *lines, *_counts(layout, live=False)])


def _said(task: TaskState, state: str | None = None) -> str:
    """`FAILED (NonZeroExitCode)`: a task's state as Slurm gives it, with its reason when there is one."""
    state = state or task.state
    return f"{state} ({task.reason})" if task.reason not in ("", "None") else state


def _tasks(job: SlurmJob, states: dict[tuple[str, int], TaskState]) -> list[TaskState]:
    """Every task the job submitted, with Slurm's state where the controller still knows it (else state "")."""
    tasks = []
    for position, rank in enumerate(job.ranks):
        array, index = job.ids[position // job.array_size], position % job.array_size
        known = states.get((array, index))
        tasks.append(TaskState(array, index, known.state if known else "", known.reason if known else "",
                               known.node if known else "", rank))
    return tasks
