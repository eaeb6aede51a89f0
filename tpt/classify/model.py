"""One axis' fastText classifier: where it lives, loading it safely, predicting.

Every label inside a model is written `__label__AXIS.LABEL`, so the axis is
part of the model file itself: a domain model cannot be loaded as the audience
model by mistake, and its labels are checked against the taxonomy on load.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from tpt.classify.taxonomy import Taxonomy, load_taxonomy

PREFIX = "__label__"
STARTER = "starter"
STARTER_DIR = Path(__file__).with_name("models")
SUFFIXES = (".ftz", ".bin")  # quantised, full


class ModelAxisError(ValueError):
    """A model file that does not classify the axis it was loaded for."""


def fasttext_label(axis: str, label: str) -> str:
    return f"{PREFIX}{axis}.{label}"


def model_path(spec: str, axis: str) -> Path:
    """The model file of `axis` named by a config: "starter", a model file, or a folder holding AXIS.ftz or AXIS.bin."""
    folder = STARTER_DIR if spec == STARTER else Path(spec).expanduser()
    if not folder.is_dir():
        return folder
    for suffix in SUFFIXES:
        if (folder / f"{axis}{suffix}").is_file():
            return folder / f"{axis}{suffix}"
    raise FileNotFoundError(f"{axis} classifier: no {axis}.ftz or {axis}.bin in {folder}")


class AxisModel:
    """A loaded fastText model for one axis; `predict` takes normalised texts."""

    def __init__(self, path: str | Path, axis: str, taxonomy: Taxonomy):
        import fasttext

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{axis} classifier: no model file at {path}")
        try:
            self._model = fasttext.load_model(str(path))
        except ValueError as error:
            raise ModelAxisError(f"{path}: not a fastText model ({error})") from None
        prefix = f"{PREFIX}{axis}."
        found = list(self._model.labels)
        foreign = [label for label in found if not label.startswith(prefix)]
        if not found or foreign:
            axes = sorted({label.removeprefix(PREFIX).split(".")[0] for label in foreign}) or ["none"]
            raise ModelAxisError(f"{path}: expected a {axis} classifier (labels {prefix}*); its labels are for axis {', '.join(axes)}")
        self.labels = [taxonomy[axis].check(label.removeprefix(prefix), where=str(path)) for label in found]
        self.axis, self.path = axis, path
        self._cut = len(prefix)

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        """The most probable label and its probability for each text."""
        labels, probabilities = self._model.predict(texts, k=1)
        # fastText's softmax adds 1e-5 before normalising, so a sure prediction can read 1.00001
        return [(label[0][self._cut:], min(float(p[0]), 1.0)) for label, p in zip(labels, probabilities)]


def load_model(path: str, axis: str, taxonomy: str) -> AxisModel:
    """The model at `path`, loaded once per process however many stage instances ask for it (again if the file changed)."""
    stamp = os.stat(path).st_mtime_ns if os.path.isfile(path) else None
    return _load_model(path, axis, taxonomy, stamp)


@functools.cache
def _load_model(path: str, axis: str, taxonomy: str, stamp: int | None) -> AxisModel:
    return AxisModel(path, axis, load_taxonomy(taxonomy))
