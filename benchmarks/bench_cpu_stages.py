"""Documents/s per core of tpt's read -> truncate -> write against the bare primitives doing the same work.

    python -m benchmarks.bench_cpu_stages [--documents 2000] [--rounds 3]

Both sides run in this one process on one core (tokenizers' thread pool pinned
to one thread): tpt's `read_file`, `Truncate` and `write_part`, and a tight
loop of json.loads + batched `Tokenizer.encode_batch` + offset cut +
`MDSWriter.write`. The ratio is tpt's overhead over the floor. Each side is
timed by the CPU time this process spends on it, and the two take turns for a
few rounds, each keeping its fastest, so other programs on a shared machine's
cores barely move the figures.
"""

from __future__ import annotations

import os

os.environ["RAYON_NUM_THREADS"] = "1"  # one core: before tokenizers starts its pool

import argparse
import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from tests.corpora import write_corpus
from tpt.assets import tokenizer_file
from tpt.config import OutputConfig, SourceConfig
from tpt.io.output import OutputLayout, write_part
from tpt.io.read import read_file
from tpt.stages.truncate import Truncate

BATCH = 256
MAX_TOKENS = 2048
FIELDS = ["id", "source", "text", "doc_tokens", "kept_tokens", "truncated"]


def run_tpt(corpus: Path, out: Path) -> int:
    truncate = Truncate("embedded", MAX_TOKENS, BATCH)
    truncate.setup()
    source = SourceConfig(name="bench", path=str(corpus))
    records, batch = [], []
    for record in read_file(source, str(corpus), 2**23):
        batch.append(record)
        if len(batch) == BATCH:
            records += truncate.process(batch)
            batch = []
    records += truncate.process(batch) if batch else []
    return write_part(OutputLayout(out), "bench", "part-00000", records, FIELDS, OutputConfig())


def run_bare(corpus: Path, out: Path) -> int:
    # Imported here: streaming imports torch, and bench_engines' datatrove workers re-import this module.
    from streaming import MDSWriter

    encoder = Tokenizer.from_file(str(tokenizer_file("embedded")))
    columns = {"id": "str", "source": "str", "text": "str", "doc_tokens": "int32", "kept_tokens": "int32", "truncated": "uint8"}
    rows = [json.loads(line) for line in corpus.open(encoding="utf-8")]
    written = 0
    with MDSWriter(out=str(out), columns=columns, compression="zstd") as writer:
        for start in range(0, len(rows), BATCH):
            batch = rows[start:start + BATCH]
            for row, encoding in zip(batch, encoder.encode_batch([r["text"] for r in batch], add_special_tokens=False)):
                n = len(encoding)
                text = row["text"][: encoding.token_to_chars(MAX_TOKENS)[0]] if n > MAX_TOKENS else row["text"]
                writer.write({"id": row["id"], "source": "bench", "text": text,
                              "doc_tokens": n, "kept_tokens": min(n, MAX_TOKENS), "truncated": int(n > MAX_TOKENS)})
                written += 1
    return written


def timed(fn, *args, clock=time.perf_counter) -> tuple[int, float]:
    started = clock()
    documents = fn(*args)
    return documents, clock() - started


def fastest(runs: dict[str, tuple[Callable[[Any, Path], int], Any, int]], rounds: int, out: Path,
            clock=time.perf_counter) -> dict[str, float]:
    """The fastest seconds of each `run(inputs, folder)` over `rounds` rounds, the runs taking turns in each, every
    run into a fresh folder: other work on a shared machine only ever slows a run down, and taking turns spreads
    its drift over every figure. Every run must write its expected number of documents."""
    seconds: dict[str, float] = {}
    for turn in range(rounds):
        for number, (name, (run, inputs, expected)) in enumerate(runs.items()):
            documents, took = timed(run, inputs, out / f"run-{number}-{turn}", clock=clock)
            assert documents == expected, f"{name} wrote {documents} of {expected} documents"
            seconds[name] = min(seconds.get(name, math.inf), took)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="turns each side takes; its fastest counts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus.jsonl", args.documents)
        Tokenizer.from_file(str(tokenizer_file("embedded")))  # warm the file cache for both sides
        runs = {"bare": (run_bare, corpus, args.documents), "tpt": (run_tpt, corpus, args.documents)}
        seconds = fastest(runs, args.rounds, Path(tmp), clock=time.process_time)
    bare_rate, tpt_rate = args.documents / seconds["bare"], args.documents / seconds["tpt"]
    print(f"documents: {args.documents:,} of ~2k teacher tokens, one core, CPU time, fastest of {args.rounds} rounds")
    print(f"bare primitives (json + encode_batch + MDSWriter): {bare_rate:8.1f} docs/s")
    print(f"tpt read -> truncate -> write:                     {tpt_rate:8.1f} docs/s")
    print(f"ratio tpt / bare: {tpt_rate / bare_rate:.2f}")


if __name__ == "__main__":
    main()
