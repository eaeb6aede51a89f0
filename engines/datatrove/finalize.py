"""Finalize step: the one task that runs after every stage task, merging the run's output (tpt.io.finalize).

It runs to the end once: a retry after a kill redoes the merge (tpt.io.finalize
is safe to repeat) or completes the publish, and does nothing once the run is
published. Then it releases the run's lock, which a run on Slurm hands over to
its jobs when its driver exits.
"""

from __future__ import annotations

import time
from typing import Any

from datatrove.pipeline.base import PipelineStep

from tpt.io.lock import release
from tpt.io.publish import UNPUBLISHED
from tpt.io.storage import Folder
from tpt.progress import BEACONS
from tpt.run.plan import RunPlan


class Finalize(PipelineStep):
    name = "finalize"
    type = "tpt writer"

    def __init__(self, plan: RunPlan, shuffle: str, started: float, engine: dict[str, Any], lock: str):
        super().__init__()
        self.plan, self.shuffle, self.started, self.engine = plan, shuffle, started, engine
        self.lock = lock  # the token of the run's lock

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> None:
        plan = self.plan
        plan.recover()  # a publish an earlier attempt was killed in
        if plan.staging.exists(UNPUBLISHED):  # gone once an earlier attempt published the run
            summary = plan.finalize(time.time() - self.started, self.engine)
            self.stat_update("written", value=summary["totals"]["written"])
        Folder(self.shuffle).remove("")  # the shuffle files are spent once the run is merged
        plan.layout.remove(BEACONS)  # and the run's progress counts (a local driver clears them too)
        release(plan.layout, self.lock)

