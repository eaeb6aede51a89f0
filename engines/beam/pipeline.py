"""The tpt pipeline on Apache Beam: locally on the DirectRunner's worker processes, or on Dataflow.

    Read -> KeepOnePerId -> Truncate -> Deduplicate -> <stages: Classify, Think> -> Write
      \\___________\\____________\\____________\\________________________-> WriteRejects
"""

from __future__ import annotations

import os
import time
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineRunner

from tpt.engines.beam.transforms import REJECTS, ApplyStage, Deduplicate, KeepOnePerId, ReadFiles, WriteParts
from tpt.run.failures import worker_failures
from tpt.run.plan import RunPlan
from tpt.run.registry import LOCAL_WORKERS

LOCAL_RUNNER = "DirectRunner"


def build(pipeline: beam.Pipeline, plan: RunPlan) -> None:
    config = plan.config
    read = (
        pipeline
        | "ListFiles" >> beam.Create(plan.files)
        | "SpreadFiles" >> beam.Reshuffle()
        | "Read" >> beam.ParDo(ReadFiles(config.sources, config.truncate.max_doc_bytes, plan.beacons)).with_outputs(REJECTS, main="records")
    )
    unique = read.records | "KeepOnePerId" >> KeepOnePerId()
    records, rejects = unique.records, [read[REJECTS], unique[REJECTS]]
    steps = [(stage.name.title(), ApplyStage(stage, plan.beacons)) for stage in plan.before_dedup]
    if plan.dedup:
        steps.append(("Deduplicate", Deduplicate(plan.dedup, plan.beacons)))
    steps += [(stage.name.title(), ApplyStage(stage, plan.beacons)) for stage in plan.after_dedup]
    for name, step in steps:
        outputs = records | name >> step
        records = outputs["records"]
        rejects.append(outputs[REJECTS])
    records | "Write" >> WriteParts(plan)
    rejects | "FlattenRejects" >> beam.Flatten() | "WriteRejects" >> WriteParts(plan, rejects=True)


def pipeline_options(runner: str, workers: int, beam_args: list[str]) -> PipelineOptions:
    """Beam options; one local worker runs in this process: no worker start-up, no data plane."""
    args = [f"--runner={runner}"]
    if runner == LOCAL_RUNNER:
        mode = "multi_processing" if workers > 1 else "in_memory"
        args += [f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]
    # Workers print tpt's progress lines; the harness's own INFO chatter stays quiet.
    args.append('--sdk_harness_log_level_overrides={"apache_beam": "WARNING", "streaming": "WARNING"}')
    return PipelineOptions(args + list(beam_args))


def local_runner(options: PipelineOptions) -> PipelineRunner:
    """The FnApiRunner, set up as the DirectRunner sets it up once it has first tried Prism: that try downloads
    Prism on every run (offline, a failed download and half a second), then runs on it where it can."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner.fn_runner import ExtendedProvisionInfo, FnApiRunner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return FnApiRunner(provision_info=ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


def run(plan: RunPlan, workers: int | None = None, runner: str | None = None, beam_args: list[str] = ()) -> dict[str, Any]:
    """Run the whole plan and publish its output; returns the run summary."""
    runner, workers = runner or LOCAL_RUNNER, workers or LOCAL_WORKERS
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")  # local workers inherit it: no dependency notices
    with plan.lock():
        plan.start_afresh()
        started = time.monotonic()
        options = pipeline_options(runner, workers, beam_args)
        local = local_runner(options) if runner == LOCAL_RUNNER else None
        with worker_failures(), plan.progress(), beam.Pipeline(runner=local, options=options) as pipeline:
            build(pipeline, plan)
        return plan.finalize(time.monotonic() - started, {"name": "beam", "runner": runner, "workers": workers})
