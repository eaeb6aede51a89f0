"""Documents/s per core of the classify stage against bare fastText `predict` on the same ~2k-token texts.

    python -m benchmarks.bench_classify [--documents 2000]

Both sides run in this one process on one core with the three starter models:
the stage (normalisation, three batched predictions, records out) and a tight
loop of the three models' `predict` over the texts with only the newlines
removed (the least fastText accepts). The ratio is the stage's overhead.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import fasttext

from tests.corpora import write_corpus
from tpt.classify.model import model_path
from tpt.classify.taxonomy import AXES
from tpt.config import ClassifyConfig
from tpt.schema import Record
from tpt.stages.classify import Classify


def documents(n: int) -> list[str]:
    """`n` real-text documents of ~2k teacher tokens (the benchmark corpus of tests/corpora.py)."""
    with tempfile.TemporaryDirectory() as work:
        path = write_corpus(Path(work) / "corpus.jsonl", n)
        return [json.loads(line)["text"] for line in path.open(encoding="utf-8")]


def run_stage(texts: list[str]) -> float:
    config = ClassifyConfig()
    stage = Classify(config)
    stage.setup()
    records = [Record(f"doc-{i}", "bench", text) for i, text in enumerate(texts)]
    started = time.perf_counter()
    for start in range(0, len(records), config.batch_size):
        out = stage.process(records[start:start + config.batch_size])
        assert all(isinstance(r, Record) and r.domain for r in out)
    return time.perf_counter() - started


def run_bare(texts: list[str]) -> float:
    models = [fasttext.load_model(str(model_path("starter", axis))) for axis in AXES]
    started = time.perf_counter()
    lines = [" ".join(text.split()) for text in texts]
    for model in models:
        labels, _ = model.predict(lines, k=1)
        assert len(labels) == len(lines)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=2000)
    args = parser.parse_args()
    texts = documents(args.documents)
    run_bare(texts[:50]), run_stage(texts[:50])  # warm caches and model loading
    bare, stage = run_bare(texts), run_stage(texts)
    result = {
        "documents": len(texts),
        "bare_predict_docs_per_s": round(len(texts) / bare, 1),
        "classify_stage_docs_per_s": round(len(texts) / stage, 1),
        "stage_time_over_bare": round(stage / bare, 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
