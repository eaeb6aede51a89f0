"""A reproducible sample of a config's documents for labelling.

The sample is the N documents with the smallest hash of (seed, id): it does not
depend on file order or engine, and a larger N contains every smaller one, so
growing a labelled sample reuses the labels already paid for.
"""

from __future__ import annotations

import hashlib
import heapq

from tpt.config import PipelineConfig
from tpt.io.read import list_files, read_file
from tpt.schema import Record


def sample_documents(config: PipelineConfig, n: int, seed: int = 0) -> list[Record]:
    """Up to `n` distinct documents of the config's sources, in sample order."""
    if n <= 0:
        raise ValueError(f"--sample must be a positive number of documents, got {n}")

    def rank(record: Record) -> bytes:
        return hashlib.blake2b(f"{seed}:{record.id}".encode(), digest_size=8).digest()

    return heapq.nsmallest(n, _unique_records(config), key=rank)


def _unique_records(config: PipelineConfig):
    """Every readable record of every source, each id once (rejected rows are the pipeline's business, not the sample's)."""
    seen: set[str] = set()
    for source in config.sources:
        for path in list_files(source):
            for item in read_file(source, path, config.truncate.max_doc_bytes):
                if isinstance(item, Record) and item.id not in seen:
                    seen.add(item.id)
                    yield item
