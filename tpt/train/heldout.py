"""Held-out raw documents d as MDS shards (`id`, `text`): the eval set a TPT model is judged on, with no thinking.

Documents are read from JSONL files as they are, untruncated; `text_fields`
joins several fields with a newline (GSM8K's `question` and `answer`). A row
that has no text is counted and set aside with its file and line; nothing is
written twice (a repeated id is skipped and counted).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from streaming import MDSWriter

from tpt.io.owned import replacing_folder

log = logging.getLogger(__name__)


def is_heldout(document_id: str, fraction: float) -> bool:
    """A stable draw from the id alone: the same documents are held out in every run and on every machine."""
    draw = int.from_bytes(hashlib.sha256(document_id.encode()).digest()[:8], "big") / 2**64
    return draw < fraction


def read_documents(paths: Iterable[str | Path], text_fields: list[str], id_field: str, counts: Counter) -> Iterator[dict[str, str]]:
    """{id, text} per JSONL row; rows without the text are counted under their reason and logged with file:line."""
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such JSONL file")
        with open(path, encoding="utf-8") as stream:
            for number, line in enumerate(stream, 1):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    row = None
                if not isinstance(row, dict):
                    counts["malformed_json"] += 1
                    log.warning("%s:%d: not a JSON object; set aside", path, number)
                    continue
                parts = [row.get(field) for field in text_fields]
                if not all(isinstance(part, str) for part in parts) or not "".join(parts).strip():
                    counts["missing_text"] += 1
                    log.warning("%s:%d: no text in %s; set aside", path, number, "+".join(text_fields))
                    continue
                yield {"id": str(row.get(id_field) or f"{path.stem}:{number}"), "text": "\n".join(parts)}


def write_heldout(documents: Iterable[dict[str, Any]], out: str | Path, limit: int | None = None) -> Counter:
    """Write the documents as one MDS dataset at `out`, whole or not at all (tpt.io.owned: only over an earlier one)."""
    counts, seen = Counter(), set()
    with replacing_folder(out, "tpt heldout") as staging:
        # Uncompressed: StreamingDataset reads the shards in place, with no decompressed copy written beside them.
        with MDSWriter(out=str(staging), columns={"id": "str", "text": "str"}) as writer:
            for document in documents:
                if document["id"] in seen:
                    counts["duplicate_id"] += 1
                    continue
                seen.add(document["id"])
                writer.write({"id": document["id"], "text": document["text"]})
                counts["written"] += 1
                if counts["written"] == limit:
                    break
        if not counts["written"]:
            raise ValueError(f"{out}: no documents to write")
    return counts
