"""The classification taxonomy: three axes, each a set of labels with one-line definitions.

The record schema has one field per axis, so every taxonomy defines exactly
the axes in `AXES`; the label ids and definitions are free to change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

AXES = ("domain", "audience", "reasoning")  # the Record fields, in this order
DEFAULT = "default"
DEFAULT_PATH = Path(__file__).with_name("taxonomy.yaml")
_LABEL_ID = re.compile(r"^[a-z0-9_]+$")


class TaxonomyError(ValueError):
    """A taxonomy file that cannot be used, or a label that is not in it."""


@dataclass(frozen=True)
class Axis:
    name: str
    question: str  # what the axis asks of a document (used in the labelling prompt)
    labels: dict[str, str]  # label id -> one-line definition

    def check(self, label: object, where: str = "") -> str:
        """`label` if it is one of this axis' labels, else a TaxonomyError naming `where`."""
        if not isinstance(label, str) or label not in self.labels:
            at = f"{where}: " if where else ""
            raise TaxonomyError(f"{at}{self.name} label {label!r} is not in the taxonomy; expected one of: {', '.join(self.labels)}")
        return label


@dataclass(frozen=True)
class Taxonomy:
    axes: dict[str, Axis]
    path: str

    def __getitem__(self, axis: str) -> Axis:
        return self.axes[axis]


def load_taxonomy(location: str | Path = DEFAULT) -> Taxonomy:
    """The taxonomy at `location` ("default": the packaged taxonomy.yaml), validated."""
    path = DEFAULT_PATH if str(location) == DEFAULT else Path(location).expanduser()
    if not path.is_file():
        raise TaxonomyError(f"{path}: no such taxonomy file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise TaxonomyError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(raw, dict) or sorted(raw) != sorted(AXES):
        found = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise TaxonomyError(f"{path}: expected exactly the axes {', '.join(AXES)}; found {found}")
    return Taxonomy({name: _axis(path, name, raw[name]) for name in AXES}, str(path))


def _axis(path: Path, name: str, raw: object) -> Axis:
    if not isinstance(raw, dict) or set(raw) != {"question", "labels"}:
        raise TaxonomyError(f"{path}: {name}: expected the keys 'question' and 'labels'")
    question, labels = raw["question"], raw["labels"]
    if not isinstance(question, str) or not question.strip():
        raise TaxonomyError(f"{path}: {name}.question: expected a non-empty line of text")
    if not isinstance(labels, dict) or len(labels) < 2:
        raise TaxonomyError(f"{path}: {name}.labels: expected a mapping of at least two label ids to definitions")
    for label, definition in labels.items():
        if not isinstance(label, str) or not _LABEL_ID.match(label):
            raise TaxonomyError(f"{path}: {name}.labels: label id {label!r} must match [a-z0-9_]+")
        if not isinstance(definition, str) or not definition.strip() or "\n" in definition.strip():
            raise TaxonomyError(f"{path}: {name}.labels.{label}: expected a one-line definition")
    return Axis(name, question.strip(), {label: definition.strip() for label, definition in labels.items()})
