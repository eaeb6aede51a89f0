"""What a worker holds to resume from the thinking store, and how fast it reads back what it reuses.

    python -m benchmarks.bench_store [--results 20000] [--thinking-chars 16000]

Writes `--results` stored generations of real text (the benchmark corpus,
~4k tokens of thinking each by default) to a local store, then measures, in
this one process: the memory a worker keeps after reading the store (the
index of where each result is) against the memory of holding every stored
entry, and the time to read back results a batch of 256 at a time against
reading the part files whole.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

from tests.corpora import write_corpus
from tpt.generate.store import ThinkingStore, read_entries

BATCH = 256


def held(build) -> tuple[object, int]:
    """What `build()` returns and the bytes it keeps allocated."""
    gc.collect()
    tracemalloc.start()
    value = build()
    gc.collect()
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return value, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=20000)
    parser.add_argument("--thinking-chars", type=int, default=16000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        corpus = write_corpus(Path(work) / "corpus.jsonl", 64)
        texts = [json.loads(line)["text"] for line in corpus.open(encoding="utf-8")]
        store = ThinkingStore(Path(work) / "thinking", "bench", flush_every_docs=4096)
        store.open(backend="bench")
        for i in range(args.results):
            text = texts[i % len(texts)]
            raw = (text * (args.thinking_chars // len(text) + 1))[:args.thinking_chars]
            store.append({"id": f"doc{i}", "key": "k", "raw": raw, "finish_reason": "length", "t": 0.0})
        store.close()
        size = sum(p.stat().st_size for p in (Path(work) / "thinking").iterdir())

        started = time.perf_counter()
        index, index_bytes = held(ThinkingStore(Path(work) / "thinking", "reader").index)
        index_seconds = time.perf_counter() - started
        started = time.perf_counter()
        _, entries_bytes = held(lambda: {(e["id"], e["key"]): e for _, e in read_entries(Path(work) / "thinking") if "raw" in e})
        entries_seconds = time.perf_counter() - started

        reader, locations = ThinkingStore(Path(work) / "thinking", "reader"), list(index.values())
        started = time.perf_counter()
        fetched = sum(len(reader.fetch(locations[i:i + BATCH])) for i in range(0, len(locations), BATCH))
        fetch_seconds = time.perf_counter() - started
        assert fetched == args.results

    print(f"store: {args.results:,} results, {size / 2**20:,.0f} MiB on disk")
    print(f"held after reading the store: index {index_bytes / 2**20:,.1f} MiB ({index_seconds:.2f} s), "
          f"every entry {entries_bytes / 2**20:,.1f} MiB ({entries_seconds:.2f} s)")
    print(f"ratio held index / entries: {index_bytes / entries_bytes:.4f}")
    print(f"read back in batches of {BATCH}: {args.results / fetch_seconds:,.0f} results/s "
          f"({size / 2**20 / fetch_seconds:,.0f} MiB/s)")


if __name__ == "__main__":
    main()
