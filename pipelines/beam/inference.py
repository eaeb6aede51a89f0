"""The think stage through Beam's RunInference: one teacher per worker process, shared by its threads and bundles."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, RunInference

from pipelines.beam.transforms import REJECTS, route
from tpt.schema import Record, Reject
from tpt.stages.think import Think


class ThinkModelHandler(ModelHandler[Record, Record | Reject, Think]):
    """The model RunInference shares is the set-up think stage: backend, prompts and the resumable store."""

    def __init__(self, stage: Think):
        super().__init__()
        self.stage = stage

    def load_model(self) -> Think:
        self.stage.setup()
        return self.stage

    def run_inference(self, batch: Sequence[Record], model: Think, inference_args: dict[str, Any] | None = None) -> Iterable[Record | Reject]:
        return model.process(list(batch))

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self.stage.batch_size}

    def get_metrics_namespace(self) -> str:
        return "tpt_think"


class Generate(beam.PTransform):
    """Records -> records with thinking; outputs `records` and `rejects` like ApplyStage."""

    def __init__(self, stage: Think):
        super().__init__()
        self.stage = stage

    def expand(self, records):
        return (
            records
            | "RunInference" >> RunInference(ThinkModelHandler(self.stage))
            | "Route" >> beam.Map(route).with_outputs(REJECTS, main="records")
        )
