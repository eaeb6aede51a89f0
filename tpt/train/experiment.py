"""The vanilla-vs-TPT experiment's parts that need no engine: its config, the corpus split, and the report.

One corpus is split once by a stable hash of each document's id: the held-out
share becomes the eval set of raw documents d (MDS), the rest the input of both
arms' pipelines. After both arms trained, `write_report` puts their eval logs on
one token axis (the paper's Figure 2), a table per evaluation, and each arm's
data cost from its pipeline summary.
"""

from __future__ import annotations

import glob
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from tpt.config import Section
from tpt.config_file import load_yaml_config
from tpt.train.evaluate import read_eval_log
from tpt.train.heldout import is_heldout, read_documents, write_heldout

ARMS = ("vanilla", "tpt")  # vanilla trains on d, TPT on [d; t]
SHOWN = {"vanilla": "vanilla (d)", "tpt": "TPT ([d; t])"}


class ExperimentConfig(Section):
    """`tpt experiment` YAML; paths are relative to where it runs (the repository root), like the training YAMLs'."""

    output: str  # the experiment's folder: corpus split, each arm's data, checkpoints, eval logs, the report
    pipeline: str  # the pipeline config: its sources are the corpus; its generate section makes the TPT arm's thinking
    model: str  # the training YAML both arms train with
    tokens: int = Field(gt=0)  # training tokens per arm
    eval_points: int = Field(default=4, gt=0)  # evaluations at equal token intervals, plus one before training
    heldout_fraction: float = Field(default=0.1, gt=0, lt=1)  # documents held out, raw, as the eval set
    seed: int = 17
    generate: dict[str, Any] | None = None  # replaces the pipeline's generate section (e.g. the teacher's server)
    train_overrides: list[str] = []  # key=value for both arms' training YAML
    engine: str = "beam"
    workers: int | None = None
    teacher_gpus: float = Field(default=0, ge=0)  # GPUs serving the teacher while the TPT arm's pipeline runs
    train_devices: int = Field(default=1, gt=0)  # devices each arm trains on


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """An experiment YAML with the command line's `key=value` overrides (tpt.config_file.load_yaml_config)."""
    return load_yaml_config(path, ExperimentConfig, overrides, kind="experiment")


def split_corpus(sources: list[Any], fraction: float, out: Path) -> dict[str, Any]:
    """Each source's JSONL rows into out/corpus/<source>.jsonl ({id, text}) and the held-out share into out/heldout (MDS)."""
    corpus, heldout, counts = out / "corpus", [], Counter()
    corpus.mkdir(parents=True, exist_ok=True)
    for source in sources:
        files = sorted(glob.glob(source.path)) or [source.path]
        if source.format == "parquet" or any(not f.endswith(".jsonl") for f in files):
            raise ValueError(f"source {source.name}: the experiment splits plain local JSONL files; got {source.path}")
        with open(corpus / f"{source.name}.jsonl", "w", encoding="utf-8") as train:
            for document in read_documents(files, [source.text_field], source.id_field or "id", counts):
                if is_heldout(f"{source.name}/{document['id']}", fraction):
                    heldout.append({"id": f"{source.name}/{document['id']}", "text": document["text"]})
                else:
                    train.write(json.dumps(document) + "\n")
                    counts["train"] += 1
    counts.update({f"heldout_{k}": v for k, v in write_heldout(heldout, out / "heldout").items()})
    return dict(counts)


def curves(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Each arm's eval points (label, batch, tokens, metrics)."""
    return {arm: read_eval_log(out / arm / "eval.jsonl") for arm in ARMS}


def data_cost(out: Path, config: ExperimentConfig) -> dict[str, dict[str, float]]:
    """Per arm: what its data cost to make and to train on (pipeline summary.json, the arm's train.json)."""
    costs = {}
    for arm in ARMS:
        totals = json.loads((out / arm / "data" / "summary.json").read_text())
        trained = json.loads((out / arm / "train.json").read_text())
        pipeline_seconds = totals["wall_seconds"]
        data_tokens = totals["totals"]["sample_tokens"] or totals["totals"]["kept_tokens"]
        costs[arm] = {
            "documents": totals["totals"]["written"],
            "data_tokens": data_tokens,
            "generation_tokens": totals["totals"]["thinking_tokens"],
            "pipeline_seconds": pipeline_seconds,
            "teacher_gpu_hours": pipeline_seconds * config.teacher_gpus / 3600 if arm == "tpt" else 0.0,
            "training_tokens": trained["tokens"],
            "epochs": trained["tokens"] / data_tokens,
            "train_seconds": trained["seconds"],
            "train_device_hours": trained["seconds"] * config.train_devices / 3600,
        }
    return costs


METRICS = [("heldout", "LanguageCrossEntropy", "held-out loss (nats/token)"), ("heldout", "LanguagePerplexity", "held-out perplexity"),
           ("gsm8k", "AnswerLogLikelihood", "GSM8K answer log-likelihood"), ("gsm8k/greedy", "ExactMatchStrict", "GSM8K exact match")]


def table(points: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per evaluation (training tokens): every metric of both arms."""
    rows: dict[int, dict[str, Any]] = {}
    for arm, arm_points in points.items():
        for point in arm_points:
            row = rows.setdefault(point["tokens"], {"tokens": point["tokens"]})
            for label, metric, _ in METRICS:
                if point["label"] == label and metric in point:
                    row[f"{arm} {label} {metric}"] = point[metric]
    return [rows[tokens] for tokens in sorted(rows)]


def write_report(out: Path, config: ExperimentConfig) -> dict[str, Any]:
    """report.json (every figure), report.md (tables) and learning_curves.png (vanilla and TPT per metric, on training tokens)."""
    points, costs = curves(out), data_cost(out, config)
    rows = table(points)
    report = {"tokens": config.tokens, "seed": config.seed, "checkpoints": rows, "data_cost": costs}
    shown = [(label, metric, title) for label, metric, title in METRICS if any(f"vanilla {label} {metric}" in row for row in rows)]
    plot_curves(rows, shown, out / "learning_curves.png")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(render_markdown(report, shown))
    return report


def plot_curves(rows: list[dict[str, Any]], shown: list[tuple[str, str, str]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(shown), figsize=(4.5 * len(shown), 3.6), squeeze=False)
    for axis, (label, metric, title) in zip(axes[0], shown):
        for arm, style in zip(ARMS, ("o--", "s-")):
            xs = [row["tokens"] for row in rows if f"{arm} {label} {metric}" in row]
            axis.plot(xs, [row[f"{arm} {label} {metric}"] for row in rows if f"{arm} {label} {metric}" in row], style, label=SHOWN[arm])
        axis.set(title=title, xlabel="training tokens")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def render_markdown(report: dict[str, Any], shown: list[tuple[str, str, str]]) -> str:
    lines = [f"# Vanilla vs TPT at {report['tokens']:,} training tokens (seed {report['seed']})", "",
             "![learning curves](learning_curves.png)", "", "## At each evaluation", ""]
    header = ["training tokens"] + [f"{title}, {SHOWN[arm]}" for _, _, title in shown for arm in ARMS]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in report["checkpoints"]:
        cells = [f"{row['tokens']:,}"] + [_number(row.get(f"{arm} {label} {metric}")) for label, metric, _ in shown for arm in ARMS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Data cost", "", "| | " + " | ".join(SHOWN[arm] for arm in ARMS) + " |", "|---|---|---|"]
    for key in report["data_cost"]["vanilla"]:
        lines.append(f"| {key.replace('_', ' ')} | " + " | ".join(_number(report["data_cost"][arm][key]) for arm in ARMS) + " |")
    lines += ["", "teacher GPU-hours: the TPT pipeline's wall time times `teacher_gpus` (an upper bound: the wall time "
              "includes reading, classifying and writing); train device-hours: training wall time times `train_devices`.", ""]
    return "\n".join(lines)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 100):
        return f"{int(value):,}"
    return f"{value:.4g}" if math.isfinite(value) else str(value)
