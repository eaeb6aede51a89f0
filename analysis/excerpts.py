"""A few short samples per class for the report: the reader of a number can read what is behind it.

Read from the start of the run's shards (the first shard of each source, then the second, ...) until
`MAX_SAMPLES` are read, so the cost is bounded whatever the run's size: a class rare enough to have no sample
there shows none. Samples with thinking come first; each excerpt is cut to a few hundred characters.
"""

from __future__ import annotations

from itertools import accumulate, zip_longest
from typing import Any

from tpt.analysis.classes import class_of
from tpt.analysis.runs import Run
from tpt.analysis.samples import separator, source_shards, with_documents
from tpt.classify.taxonomy import AXES
from tpt.io.mds import read_shards
from tpt.io.output import sample_columns

PER_CLASS = 2
MAX_SAMPLES = 20_000
DOCUMENT_CHARS = 300
THINKING_CHARS = 400


def excerpts(run: Run, per_class: int = PER_CLASS) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per axis and class, up to `per_class` samples: id, source, thinking tokens, document and thinking excerpts."""
    listed = list(source_shards(run).values())
    shards = [shard for shards in zip_longest(*listed) for shard in shards if shard and shard[1]["samples"]]
    read = accumulate(shard[1]["samples"] for shard in shards)
    shards = shards[:next((i + 1 for i, total in enumerate(read) if total >= MAX_SAMPLES), len(shards))]
    found: dict[str, dict[str, list[dict[str, Any]]]] = {axis: {} for axis in AXES}
    candidates = [sample for table in read_shards(shards) for sample in with_documents(sample_columns(table), separator(run)).to_pylist()]
    candidates.sort(key=lambda sample: sample.get("thinking") is None)  # stable: with thinking first, in shard order
    for sample in candidates:
        excerpt = None
        for axis in AXES:
            chosen = found[axis].setdefault(class_of(sample.get(axis)), [])
            if len(chosen) < per_class:
                excerpt = excerpt or _excerpt(sample)
                chosen.append(excerpt)
    return found


def _excerpt(sample: dict[str, Any]) -> dict[str, Any]:
    thinking = sample.get("thinking")
    return {"id": sample["id"], "source": sample["source"], "thinking_tokens": sample.get("thinking_tokens"),
            "document": _cut(sample["document"], DOCUMENT_CHARS), "thinking": None if thinking is None else _cut(thinking, THINKING_CHARS)}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + "…"
