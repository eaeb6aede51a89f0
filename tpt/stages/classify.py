"""Label each document with its domain, audience and reasoning intensity (the paper's section 4 axes).

Runs after truncate, on the text the teacher will see, and before think, so
thinking budgets can depend on the class. The three fastText models load once
per worker process; each batch is normalised once and predicted per axis.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tpt.classify.model import AxisModel, load_model, model_path
from tpt.classify.normalize import EmptyTextError, normalize
from tpt.classify.taxonomy import AXES
from tpt.config import ClassifyConfig
from tpt.io.output import OutputLayout, RejectCounts, value_counts
from tpt.schema import Record, Reject
from tpt.stages.base import BatchStage


class Classify(BatchStage):
    name: ClassVar[str] = "classify"
    worker_state = ("_loaded",)

    def __init__(self, config: ClassifyConfig):
        self.taxonomy = config.taxonomy
        self.models = {axis: getattr(config.models, axis) for axis in AXES}  # specs: resolved where the stage runs
        self.batch_size = config.batch_size
        self._loaded: dict[str, AxisModel] | None = None  # by `setup`, in each worker (fastText models do not pickle)

    def check(self) -> None:
        """Every model loads and labels with the taxonomy's labels: a missing or wrong model fails before the run."""
        self._load()

    def setup(self) -> None:
        if self._loaded is None:
            self._loaded = self._load()

    def _load(self) -> dict[str, AxisModel]:
        return {axis: load_model(str(model_path(spec, axis)), axis, self.taxonomy) for axis, spec in self.models.items()}

    def process(self, batch: list[Record]) -> list[Record | Reject]:
        out: list[Record | Reject] = []
        texts, kept = [], []
        for record in batch:
            try:
                texts.append(normalize(record.text))
                kept.append(len(out))
                out.append(record)
            except EmptyTextError as error:
                out.append(Reject.of(record, self.name, "empty_text", f"text: {error}"))
        if texts:
            predictions = {axis: model.predict(texts) for axis, model in self._loaded.items()}
            for i, at in enumerate(kept):
                fields = {}
                for axis in AXES:
                    fields[axis], fields[f"{axis}_score"] = predictions[axis][i]
                out[at] = out[at].replace(**fields)
        return out

    def report(self, layout: OutputLayout, rejects: RejectCounts) -> dict[str, Any]:
        """For the run summary: how many written samples got each label, per axis."""
        manifest = layout.read_parquet(layout.manifest, columns=list(AXES))
        return {"labels": {axis: dict(value_counts(manifest.column(axis)).most_common()) for axis in AXES}}
