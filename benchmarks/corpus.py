"""A benchmark corpus of ~2k-token real-text documents, made by joining demo documents."""

from __future__ import annotations

import json
import random
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"


def demo_texts() -> list[str]:
    return [json.loads(line)["text"] for path in sorted(DEMO.glob("*.jsonl")) for line in path.open(encoding="utf-8")]


def write_corpus(path: Path, documents: int, chars: int = 9000, seed: int = 0) -> Path:
    """`documents` JSONL rows of about `chars` characters (~2k teacher tokens) each, joined from random demo texts."""
    rng = random.Random(seed)
    texts = demo_texts()
    with open(path, "w", encoding="utf-8") as stream:
        for number in range(documents):
            parts, size = [], 0
            while size < chars:
                parts.append(rng.choice(texts))
                size += len(parts[-1])
            stream.write(json.dumps({"id": f"doc-{number}", "text": "\n\n".join(parts)[:chars]}) + "\n")
    return path
