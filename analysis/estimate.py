"""Project a sample run onto the full corpus: output (thinking) tokens, training tokens and GPU-hours.

The sample run is any `tpt run` over part of the corpus (`tpt estimate --sample N`
makes one from the first N documents of each source). Per source, its manifest
gives the mean thinking and training tokens per sample and the share of read
documents that became samples; the corpus size is counted from the config's
source files. Projection per source = documents × kept share × mean, with a 95%
interval from the standard error of the mean (normal approximation).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow.parquet as pq

from analysis.runs import AnalysisError, Run, connect
from tpt.config import PipelineConfig, SourceConfig
from tpt.io.read import file_format, list_files
from tpt.progress import Progress

Z95 = 1.959964  # two-sided 95% normal quantile
CHUNK = 8 * 2**20

_PER_SOURCE = """
SELECT source, count(*) AS samples,
       coalesce(avg(thinking_tokens), 0) AS thinking_mean, coalesce(stddev_samp(thinking_tokens), 0) AS thinking_sd,
       avg(training_tokens) AS training_mean, coalesce(stddev_samp(training_tokens), 0) AS training_sd
FROM (SELECT source, thinking_tokens,
             coalesce(sample_tokens, coalesce(kept_tokens, 0) + coalesce(thinking_tokens, 0)) AS training_tokens FROM samples)
GROUP BY source
"""


def count_documents(source: SourceConfig) -> dict[str, int]:
    """Files, documents (JSONL lines or Parquet rows) and bytes of one source, read in large chunks."""
    files = list_files(source)
    progress = Progress(f"counting {source.name}", total=len(files))
    documents = size = 0
    for path in files:
        fs, local = fsspec.core.url_to_fs(path)
        size += fs.size(local)
        if file_format(source, path) == "parquet":
            with fsspec.open(path, "rb") as stream:
                documents += pq.ParquetFile(stream).metadata.num_rows
        else:
            documents += _count_lines(path)
        progress.update(1)
    return {"files": len(files), "documents": documents, "bytes": size}


def _count_lines(path: str) -> int:
    """Lines with content: line starts that are not themselves a newline, counted with numpy per chunk."""
    lines, after_newline = 0, True
    with fsspec.open(path, "rb", compression="infer") as stream:
        while chunk := stream.read(CHUNK):
            newline = np.frombuffer(chunk, dtype=np.uint8) == 10
            starts = np.concatenate(([after_newline], newline[:-1]))
            lines += int(np.count_nonzero(starts & ~newline))
            after_newline = bool(newline[-1])
    return lines


def project(config: PipelineConfig, run: Run, corpus: dict[str, dict[str, int]], tokens_per_second: float | None,
            train_tokens_per_second: float | None = None, read_rejects: dict[str, int] | None = None) -> dict[str, Any]:
    """The full-corpus projection of `run`, per source and in total.

    `read_rejects`: rows the reader set aside while the sample was drawn, which the sample run never saw.
    """
    measured = dict(((row[0], row[1:]) for row in connect([run]).sql(_PER_SOURCE).fetchall()))
    sources, totals = {}, {"documents": 0, "samples": 0.0, "thinking_tokens": [0.0, 0.0, 0.0], "training_tokens": [0.0, 0.0, 0.0]}
    for source in config.sources:
        documents = corpus[source.name]["documents"]
        read = run.summary.get("sources", {}).get(source.name, {}).get("read", 0) + (read_rejects or {}).get(source.name, 0)
        if source.name not in measured or not read:
            raise AnalysisError(f"source {source.name!r}: the sample run {run.root} has no samples of it; "
                                "run the sample over every source of the config")
        samples, thinking_mean, thinking_sd, training_mean, training_sd = measured[source.name]
        kept = samples / read
        projected = documents * kept
        entry = {
            "documents": documents, "bytes": corpus[source.name]["bytes"], "sample_documents_read": read, "sample_samples": samples,
            "kept_share": kept, "samples": projected,
            "thinking_tokens": _interval(projected, thinking_mean, thinking_sd, samples),
            "training_tokens": _interval(projected, training_mean, training_sd, samples),
        }
        sources[source.name] = entry
        totals["documents"] += documents
        totals["samples"] += projected
        for key in ("thinking_tokens", "training_tokens"):
            totals[key] = [a + b for a, b in zip(totals[key], entry[key])]
    rate, rate_origin = tokens_per_second, "given"
    if rate is None:
        rate, rate_origin = _measured_rate(run), "measured: thinking tokens / wall seconds of the sample run"
    result = {"sample_run": str(run.root), "sources": sources, "totals": totals,
              "interval": "95% normal interval of the mean per source (low, estimate, high), summed over sources",
              "generation": _gpu_hours(totals["thinking_tokens"], rate, rate_origin)}
    if train_tokens_per_second:
        result["training"] = _gpu_hours(totals["training_tokens"], train_tokens_per_second, "given")
    return result


def _interval(count: float, mean: float, sd: float, n: int) -> list[float]:
    """(low, estimate, high) of count × mean, from the standard error of the sample mean."""
    half = Z95 * sd / math.sqrt(n) if n > 1 else 0.0
    return [count * max(mean - half, 0.0), count * mean, count * (mean + half)]


def _measured_rate(run: Run) -> float | None:
    totals, wall = run.summary.get("totals", {}), run.summary.get("wall_seconds")
    return totals["thinking_tokens"] / wall if totals.get("thinking_tokens") and wall else None


def _gpu_hours(tokens: list[float], rate: float | None, origin: str) -> dict[str, Any]:
    hours = [t / rate / 3600 for t in tokens] if rate else None
    return {"tokens_per_second_per_gpu": rate, "rate": origin, "gpu_hours": hours}


def write_sample(config: PipelineConfig, documents: int, folder: Path) -> tuple[PipelineConfig, dict[str, int]]:
    """The config over the first `documents` documents of each source (copied to `folder` as JSONL),
    and how many rows of each source the reader set aside on the way."""
    from tpt.io.read import read_file
    from tpt.schema import Record

    sources, rejected = [], {}
    for source in config.sources:
        path, kept, rejected[source.name] = folder / f"{source.name}.jsonl", 0, 0
        with open(path, "w", encoding="utf-8") as stream:
            for file in list_files(source):
                for item in read_file(source, file, config.truncate.max_doc_bytes):
                    if isinstance(item, Record):
                        stream.write(json.dumps({"id": item.id, "text": item.text}, ensure_ascii=False) + "\n")
                        kept += 1
                    else:
                        rejected[source.name] += 1
                    if kept >= documents:
                        break
                if kept >= documents:
                    break
        sources.append(source.model_copy(update={"path": str(path), "format": "jsonl", "text_field": "text", "id_field": "id"}))
    return config.model_copy(update={"sources": sources}), rejected
