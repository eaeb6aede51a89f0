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

from pipelines.beam.transforms import REJECTS, ApplyStage, Deduplicate, ReadFiles, WriteParts, WriteRejects
from tpt.config import PipelineConfig
from tpt.io.finalize import finalize
from tpt.io.output import OutputLayout
from tpt.io.publish import STAGING, RunLock, recover, staged
from tpt.io.read import list_inputs
from tpt.progress import BEACONS, track_run
from tpt.stages import build_stages, output_fields
from tpt.stages.base import Stage

LOCAL_RUNNER = "DirectRunner"


def build(pipeline: beam.Pipeline, config: PipelineConfig, layout: OutputLayout, stages: list[Stage], files: list[tuple[str, str]]) -> None:
    beacons = layout.url_of(BEACONS)  # each worker's counts, for the run's progress line
    read = (
        pipeline
        | "ListFiles" >> beam.Create(files)
        | "SpreadFiles" >> beam.Reshuffle()
        | "Read" >> beam.ParDo(ReadFiles(config.sources, config.truncate.max_doc_bytes, beacons)).with_outputs(REJECTS, main="records")
    )
    unique = read.records | "Deduplicate" >> Deduplicate()
    records, rejects = unique.records, [read[REJECTS], unique[REJECTS]]
    for stage in stages:
        outputs = records | stage.name.title() >> ApplyStage(stage, beacons)
        records = outputs.records
        rejects.append(outputs[REJECTS])
    separator = config.generate.separator if config.generate else None
    staging = staged(layout).url  # published over the previous run's outputs once the run is finished
    records | "Write" >> WriteParts(staging, output_fields(config, stages), config.output, separator)
    rejects | "FlattenRejects" >> beam.Flatten() | "WriteRejects" >> WriteRejects(staging, config.output.parts)


def pipeline_options(runner: str, workers: int, beam_args: list[str]) -> PipelineOptions:
    """Beam options; the local runner is named with its mode so no default switches to Prism."""
    args = [f"--runner={runner}"]
    if runner == LOCAL_RUNNER:  # one worker runs in this process: no worker start-up, no data plane
        mode = "multi_processing" if workers > 1 else "in_memory"
        args += [f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]
    # Workers print tpt's progress lines; the harness's own INFO chatter stays quiet.
    args.append('--sdk_harness_log_level_overrides={"apache_beam": "WARNING", "streaming": "WARNING"}')
    return PipelineOptions(args + list(beam_args))


def run(config: PipelineConfig, runner: str = LOCAL_RUNNER, workers: int = 2, beam_args: list[str] = ()) -> dict[str, Any]:
    """Run the whole pipeline and finish its output; returns the run summary."""
    files = list_inputs(config.sources)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")  # local workers inherit it: no dependency notices
    stages = build_stages(config)
    for stage in stages:
        stage.check()  # before anything is written
    layout = OutputLayout(config.output.dir)
    with RunLock(layout):
        recover(layout)  # a publish an earlier run was killed in
        layout.remove(STAGING)  # what a failed run left: a run starts afresh (OUT/thinking/ keeps its results)
        started = time.monotonic()
        with track_run(config, stages, files), beam.Pipeline(options=pipeline_options(runner, workers, beam_args)) as pipeline:
            build(pipeline, config, layout, stages, files)
        engine = {"name": "beam", "runner": runner, "workers": workers}
        return finalize(layout, config, stages, time.monotonic() - started, engine)
