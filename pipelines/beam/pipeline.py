"""The tpt pipeline on Apache Beam: locally on the DirectRunner's worker processes, or on Dataflow.

    Read -> Deduplicate -> <stages: Truncate, ...> -> Write
      \\________________________\\______________________-> WriteRejects
"""

from __future__ import annotations

import os
import time
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from tpt.pipelines.beam.transforms import REJECTS, ApplyStage, Deduplicate, ReadFiles, WriteParts
from tpt.run.engines import LOCAL_WORKERS
from tpt.run.failures import worker_failures
from tpt.run.plan import RunPlan

LOCAL_RUNNER = "DirectRunner"


def build(pipeline: beam.Pipeline, plan: RunPlan) -> None:
    config = plan.config
    read = (
        pipeline
        | "ListFiles" >> beam.Create(plan.files)
        | "SpreadFiles" >> beam.Reshuffle()
        | "Read" >> beam.ParDo(ReadFiles(config.sources, config.truncate.max_doc_bytes, plan.beacons)).with_outputs(REJECTS, main="records")
    )
    unique = read.records | "Deduplicate" >> Deduplicate()
    records, rejects = unique.records, [read[REJECTS], unique[REJECTS]]
    for stage in plan.stages:
        outputs = records | stage.name.title() >> ApplyStage(stage, plan.beacons)
        records = outputs.records
        rejects.append(outputs[REJECTS])
    records | "Write" >> WriteParts(plan)
    rejects | "FlattenRejects" >> beam.Flatten() | "WriteRejects" >> WriteParts(plan, rejects=True)


def pipeline_options(runner: str, workers: int, beam_args: list[str]) -> PipelineOptions:
    """Beam options; the local runner is named with its mode so no default switches to Prism."""
    args = [f"--runner={runner}"]
    if runner == LOCAL_RUNNER:  # one worker runs in this process: no worker start-up, no data plane
        mode = "multi_processing" if workers > 1 else "in_memory"
        args += [f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]
    # Workers print tpt's progress lines; the harness's own INFO chatter stays quiet.
    args.append('--sdk_harness_log_level_overrides={"apache_beam": "WARNING", "streaming": "WARNING"}')
    return PipelineOptions(args + list(beam_args))


def run(plan: RunPlan, workers: int | None = None, runner: str | None = None, beam_args: list[str] = ()) -> dict[str, Any]:
    """Run the whole plan and publish its output; returns the run summary."""
    runner, workers = runner or LOCAL_RUNNER, workers or LOCAL_WORKERS
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")  # local workers inherit it: no dependency notices
    with plan.lock():
        plan.start_afresh()
        started = time.monotonic()
        with worker_failures(), plan.progress(), beam.Pipeline(options=pipeline_options(runner, workers, beam_args)) as pipeline:
            build(pipeline, plan)
        return plan.finalize(time.monotonic() - started, {"name": "beam", "runner": runner, "workers": workers})
