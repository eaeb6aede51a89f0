"""The one record schema every stage and both engines share.

A `Record` starts as (id, source, text) from a reader; each stage fills in the
fields it owns. `MANIFEST_SCHEMA` is the matching Arrow schema of every scalar
field (the manifest holds no text), `Reject` is what a stage sets aside.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1


@dataclass
class Record:
    """One document and, once generated, its thinking: the sample [d; t]."""

    id: str
    source: str
    text: str  # what the model trains on: the document d (truncated once the truncate stage ran), [d; t] once thought
    # truncate
    doc_tokens: int | None = None  # teacher tokens before truncation
    kept_tokens: int | None = None  # teacher tokens of `text` after truncation
    truncated: bool | None = None
    # classify
    domain: str | None = None
    domain_score: float | None = None
    audience: str | None = None
    audience_score: float | None = None
    reasoning: str | None = None
    reasoning_score: float | None = None
    # think
    thinking: str | None = None
    thinking_tokens: int | None = None
    finish_reason: str | None = None  # "stop" or "length"
    thinking_flags: list[str] = field(default_factory=list)
    sample_tokens: int | None = None  # teacher tokens of the training sample [d; t]
    thinking_budget: int | None = None  # the max_new_tokens this sample was generated with (generate.budgets)

    def replace(self, **changes: Any) -> Record:
        return dataclasses.replace(self, **changes)

    def with_thinking(self, thinking: str, separator: str, **changes: Any) -> Record:
        """The training sample [d; t]: the one place a document and its thinking are joined."""
        return self.replace(text=self.text + separator + thinking, thinking=thinking, **changes)

    @property
    def key(self) -> str:
        """What the record's output part is hashed from (tpt.io.output.part_of)."""
        return self.id


FIELD_TYPES: dict[str, pa.DataType] = {
    "id": pa.string(),
    "source": pa.string(),
    "text": pa.string(),
    "doc_tokens": pa.int32(),
    "kept_tokens": pa.int32(),
    "truncated": pa.bool_(),
    "domain": pa.string(),
    "domain_score": pa.float32(),
    "audience": pa.string(),
    "audience_score": pa.float32(),
    "reasoning": pa.string(),
    "reasoning_score": pa.float32(),
    "thinking": pa.string(),
    "thinking_tokens": pa.int32(),
    "finish_reason": pa.string(),
    "thinking_flags": pa.list_(pa.string()),
    "sample_tokens": pa.int32(),
    "thinking_budget": pa.int32(),
}
assert list(FIELD_TYPES) == [f.name for f in dataclasses.fields(Record)], "FIELD_TYPES out of sync"

TEXT_FIELDS = ("text", "thinking")
SCALAR_FIELDS = tuple(name for name in FIELD_TYPES if name not in TEXT_FIELDS)
BASE_FIELDS = ("id", "source", "text")

MANIFEST_SCHEMA = pa.schema(
    [pa.field(name, FIELD_TYPES[name]) for name in SCALAR_FIELDS],
    metadata={"tpt_schema_version": str(SCHEMA_VERSION)},
)

# MDS column encodings (mosaicml-streaming names) for the fields written to shards.
MDS_TYPES: dict[str, str] = {
    "id": "str",
    "source": "str",
    "text": "str",
    "doc_tokens": "int32",
    "kept_tokens": "int32",
    "truncated": "uint8",
    "domain": "str",
    "domain_score": "float32",
    "audience": "str",
    "audience_score": "float32",
    "reasoning": "str",
    "reasoning_score": "float32",
    "thinking": "str",
    "thinking_tokens": "int32",
    "finish_reason": "str",
    "thinking_flags": "str",  # comma-separated in shards
    "sample_tokens": "int32",
    "thinking_budget": "int32",
}


def content_id(source: str, text: str) -> str:
    """A stable id for a document that came without one: a hash of source and text."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(source.encode())
    digest.update(b"\0")
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def manifest_table(records: list[Record]) -> pa.Table:
    """The manifest rows (every scalar field, no text) of `records`."""
    columns = {name: [getattr(r, name) for r in records] for name in SCALAR_FIELDS}
    return pa.table(columns, schema=MANIFEST_SCHEMA)


@dataclass
class Reject:
    """A record (or raw input) set aside by a stage, with the reason, never dropped silently."""

    source: str
    stage: str
    reason: str  # a short code, e.g. "malformed_json"; summaries count by it
    detail: str  # what was wrong, for a person
    id: str | None = None
    location: str | None = None  # file:line for inputs that never became records
    excerpt: str = ""  # the start of the offending input

    def __post_init__(self) -> None:
        # The excerpt is for display; the input's own invalid characters must not make the reject unwritable.
        self.excerpt = self.excerpt.encode("utf-8", "replace").decode("utf-8")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def key(self) -> str:
        """What the reject's output part is hashed from: its record's id, or where a raw input was read."""
        return self.id or self.location or ""

    @classmethod
    def of(cls, record: Record, stage: str, reason: str, detail: str) -> Reject:
        return cls(record.source, stage, reason, detail, id=record.id, excerpt=record.text[:200])
