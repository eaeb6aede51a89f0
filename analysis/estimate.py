"""Project a sample run onto the full corpus: output (thinking) tokens, training tokens and GPU-hours.

The sample run is any `tpt run` over part of the corpus (`tpt estimate --sample N`
makes one from the first N documents of each source). Per source, its manifest
gives the thinking and training tokens of each sample and the share of read
documents that became samples; the corpus size is counted from the config's
source files. The config's thinking budgets (`generate.budgets`) apply to every
sample of the sample run: its thinking is capped at its class's max_new_tokens
and counts samples_per_document times. Projection per source = documents × kept
share × mean per document, with a 95% interval from the standard error of the
mean (normal approximation).

Deduplication: copies that reuse a kept document's thinking (`dedup.duplicates:
reuse`) count as training tokens but generate none. The duplicates the sample
run found (set aside or reused) are what deduplication saves: per source, their
share of the documents read × the corpus's documents × the source's mean
thinking and prompt tokens. A sample drawn from the start of each source sees
the copies that fall inside it only, so on a large corpus the saving is a lower bound.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow.parquet as pq

from tpt.analysis.runs import AnalysisError, Run, connect
from tpt.config import GenerateConfig, PipelineConfig, SourceConfig
from tpt.dedup import DUPLICATE_TEXT, NEAR_DUPLICATE, STAGE
from tpt.generate.budgets import Budgets
from tpt.generate.cost import gpu_hours
from tpt.io.read import file_format, list_files
from tpt.progress import Progress
from tpt.schema import Record

Z95 = 1.959964  # two-sided 95% normal quantile
CHUNK = 8 * 2**20

_SAMPLES = """
SELECT source, domain, domain_score, audience, audience_score, reasoning, reasoning_score,
       coalesce(thinking_tokens, 0) AS thinking,
       coalesce(sample_tokens, coalesce(kept_tokens, 0) + coalesce(thinking_tokens, 0)) AS training,
       CASE WHEN finish_reason = 'length' THEN thinking_budget END AS cut_at,
       coalesce(kept_tokens, 0) AS prompt, duplicate_of IS NOT NULL AS copy
FROM samples
"""
LABELS = ("domain", "domain_score", "audience", "audience_score", "reasoning", "reasoning_score")


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
    """The full-corpus projection of `run` under `config`'s thinking budgets, per source, per budget and in total.

    `read_rejects`: rows the reader set aside while the sample was drawn, which the sample run never saw.
    """
    measured = budgeted(config.generate, connect([run]).sql(_SAMPLES).to_arrow_table().to_pydict())
    sources, totals = {}, {"documents": 0, "samples": 0.0, "thinking_tokens": [0.0, 0.0, 0.0], "training_tokens": [0.0, 0.0, 0.0]}
    saved = {"duplicates": 0.0, "thinking_tokens": [0.0, 0.0, 0.0], "prompt_tokens": [0.0, 0.0, 0.0]}
    scale = np.zeros(len(measured["source"]))  # corpus documents each sample stands for
    for source in config.sources:
        read = run.summary.get("sources", {}).get(source.name, {}).get("read", 0) + (read_rejects or {}).get(source.name, 0)
        entry = sources[source.name] = _project_source(run, source.name, corpus[source.name], read, measured, scale)
        _add(totals, entry, ("documents", "samples", "thinking_tokens", "training_tokens"))
        if "saved" in entry:
            _add(saved, entry["saved"], ("duplicates", "thinking_tokens", "prompt_tokens"))
    rate, rate_origin = tokens_per_second, "given"
    if rate is None:
        rate, rate_origin = _measured_rate(run), "measured: thinking tokens / wall seconds of the sample run"
    result = {"sample_run": str(run.root), "sources": sources, "totals": totals,
              "interval": "95% normal interval of the mean per source (low, estimate, high), summed over sources",
              "generation": _gpu_hours(totals["thinking_tokens"], rate, rate_origin)}
    if saved["duplicates"]:
        result["deduplication"] = saved | {"generation": _gpu_hours(saved["thinking_tokens"], rate, rate_origin)}
    if config.generate is not None:
        result["budgets"] = _per_budget(measured, scale)
    if train_tokens_per_second:
        result["training"] = _gpu_hours(totals["training_tokens"], train_tokens_per_second, "given")
    return result


def _project_source(run: Run, name: str, corpus: dict[str, int], read: int, measured: dict[str, np.ndarray],
                    scale: np.ndarray) -> dict[str, Any]:
    """One source's projection from its `read` documents in the sample run; fills its samples' share of `scale`."""
    documents, mine = corpus["documents"], measured["source"] == name
    if not mine.any() or not read:
        raise AnalysisError(f"source {name!r}: the sample run {run.root} has no samples of it; "
                            "run the sample over every source of the config")
    samples = int(mine.sum())
    kept = samples / read
    scale[mine] = documents * kept / samples
    entry = {
        "documents": documents, "bytes": corpus["bytes"], "sample_documents_read": read, "sample_samples": samples,
        "kept_share": kept, "samples": documents * kept * float(measured["samples"][mine].mean()),
        "thinking_tokens": _interval(documents * kept, measured["generated"][mine]),
        "training_tokens": _interval(documents * kept, measured["training"][mine]),
    }
    copies = _duplicates(run, name)
    if copies:
        asked, share = mine & ~measured["copy"], copies / read
        entry["duplicate_share"] = share
        entry["saved"] = {"duplicates": documents * share,
                          "thinking_tokens": _interval(documents * share, measured["generated"][asked]),
                          "prompt_tokens": _interval(documents * share, measured["prompt"][asked])}
    return entry


def _add(totals: dict[str, Any], entry: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Sum `entry`'s `keys` into `totals`: numbers, and (low, estimate, high) intervals element by element."""
    for key in keys:
        totals[key] = [a + b for a, b in zip(totals[key], entry[key])] if isinstance(totals[key], list) else totals[key] + entry[key]


def _duplicates(run: Run, source: str) -> int:
    """The documents of `source` the sample run found to be copies of another: set aside, or written reusing its thinking."""
    counts = run.summary.get("stages", {}).get(STAGE, {}).get("duplicates_per_source", {}).get(source, {})
    return sum(count for kind, count in counts.items() if kind in (DUPLICATE_TEXT, NEAR_DUPLICATE))


def budgeted(generate: GenerateConfig | None, rows: dict[str, list]) -> dict[str, np.ndarray]:
    """The sample run's samples under `generate`'s budgets: per sample, its document's budget (max_new_tokens and
    samples), and its thinking and training tokens per document: thinking capped at max_new_tokens, times the samples."""
    count = len(rows["source"])
    thinking, training = np.array(rows["thinking"], dtype=float), np.array(rows["training"], dtype=float)
    if generate is None:  # no thinking to budget: every document is one sample
        limit, each = np.full(count, np.inf), np.ones(count)
    else:
        of = Budgets(generate).of
        budgets = [of(Record("", rows["source"][i], "", **{name: rows[name][i] for name in LABELS})) for i in range(count)]
        limit = np.array([budget.max_new_tokens for budget in budgets], dtype=float)
        each = np.array([budget.samples_per_document for budget in budgets], dtype=float)
    capped = np.minimum(thinking, limit)
    cut_at = np.array([np.nan if value is None else value for value in rows["cut_at"]], dtype=float)
    copy = np.array(rows["copy"], dtype=bool)
    return {"source": np.array(rows["source"], dtype=object), "max_new_tokens": limit, "samples": each,
            "thinking": each * capped, "training": each * (training - thinking + capped),
            "generated": np.where(copy, 0.0, each * capped),  # a copy's thinking is its kept document's: none generated
            "prompt": np.array(rows["prompt"], dtype=float), "copy": copy,
            "cut_shorter": cut_at < limit}  # the sample run's budget ran out below this one: its thinking may be longer


def _per_budget(measured: dict[str, np.ndarray], scale: np.ndarray) -> list[dict[str, Any]]:
    """Per budget (max_new_tokens, samples per document): its samples in the sample run and its projected thinking."""
    rows = []
    for limit, each in sorted(set(zip(measured["max_new_tokens"], measured["samples"])), reverse=True):
        mine = (measured["max_new_tokens"] == limit) & (measured["samples"] == each)
        rows.append({"max_new_tokens": int(limit), "samples_per_document": int(each), "sample_samples": int(mine.sum()),
                     "cut_shorter": int(measured["cut_shorter"][mine].sum()),
                     "thinking_tokens": float((scale[mine] * measured["thinking"][mine]).sum())})
    return rows


def _interval(count: float, values: np.ndarray) -> list[float]:
    """(low, estimate, high) of count × the mean of `values`, from the standard error of their mean."""
    mean = float(values.mean())
    half = Z95 * float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return [count * max(mean - half, 0.0), count * mean, count * (mean + half)]


def _measured_rate(run: Run) -> float | None:
    totals, wall = run.summary.get("totals", {}), run.summary.get("wall_seconds")
    return totals["thinking_tokens"] / wall if totals.get("thinking_tokens") and wall else None


def _gpu_hours(tokens: list[float], rate: float | None, origin: str) -> dict[str, Any]:
    hours = [gpu_hours(t, rate) for t in tokens] if rate else None
    return {"tokens_per_second_per_gpu": rate, "rate": origin, "gpu_hours": hours}


def write_sample(config: PipelineConfig, documents: int, folder: Path) -> tuple[PipelineConfig, dict[str, int]]:
    """The config over the first `documents` documents of each source (copied to `folder` as JSONL), generating one
    sample per document (the projection counts each class's samples_per_document itself, so more would only cost),
    and how many rows of each source the reader set aside on the way."""
    from tpt.io.read import read_file

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
    return config.model_copy(update={"sources": sources, "generate": _one_sample_each(config.generate)}), rejected


def _one_sample_each(generate: GenerateConfig | None) -> GenerateConfig | None:
    if generate is None:
        return None
    rules = [rule.model_copy(update={"samples_per_document": None}) for rule in generate.budgets]
    return generate.model_copy(update={"samples_per_document": 1, "budgets": rules})
