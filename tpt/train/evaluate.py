"""Evaluation during training: held-out raw documents scored by LM loss and perplexity, downstream tasks, and a
log of every score against the training tokens seen so far (the points of a learning curve).

A model trained on [d; t] is judged on plain documents and tasks, never on thinking:
the `eval_loader` sets are MDS streams of held-out raw documents (`tpt heldout`
writes them), packed into `max_seq_len` sequences like the training data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from composer.core import Callback, Evaluator, State
from composer.loggers import Logger
from composer.metrics.nlp import LanguageCrossEntropy, LanguagePerplexity
from composer.utils import dist
from torchmetrics import Metric

from tpt.train.config import TrainConfig
from tpt.train.data import build_dataloader
from tpt.train.tasks import TASK_METRICS, task_dataloaders

LM_METRICS = [LanguageCrossEntropy, LanguagePerplexity]


def eval_metrics() -> list[Metric]:
    """Every metric an evaluator may name; Composer gives each evaluator its own copy of the ones it names."""
    return [metric() for metric in (*LM_METRICS, *TASK_METRICS)]


def build_evaluators(config: TrainConfig, tokenizer: Any, device_train_batch_size: int) -> list[Evaluator]:
    """One evaluator per eval set (label: metrics/<label>/...), and one or two per downstream task."""
    batch = config.device_eval_batch_size or device_train_batch_size
    evaluators = []
    for loader in config.eval_loaders:
        data = build_dataloader(loader, tokenizer, config.max_seq_len, batch, config.seed)  # checks every stream
        evaluators.append(Evaluator(label=loader.label or "eval", dataloader=data, metric_names=[m.__name__ for m in LM_METRICS],
                                    subset_num_batches=config.eval_subset_num_batches, device_eval_microbatch_size=batch))
    for task in config.eval_tasks:
        for suffix, data in task_dataloaders(task, tokenizer, config.max_seq_len).items():
            metrics = ["ExactMatchStrict", "ExactMatchFlexible"] if suffix else ["AnswerLogLikelihood", "LanguageCrossEntropy"]
            evaluators.append(Evaluator(label=task.label + suffix, dataloader=data, metric_names=metrics,
                                        device_eval_microbatch_size=task.batch_size))
    return evaluators


class EvalLog(Callback):
    """One JSON line per eval set and evaluation: {"label", "batch", "tokens", <metric>: value}, tokens being training tokens.

    Rank 0 writes it; a resumed run appends, so a point evaluated twice has two lines (the last one counts).
    """

    def __init__(self, path: str):
        self.path = Path(path)

    def eval_end(self, state: State, logger: Logger) -> None:
        label = state.dataloader_label
        scores = {name: float(metric.compute()) for name, metric in state.eval_metrics[label].items()}  # every rank: a collective
        if dist.get_global_rank() != 0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps({"label": label, "batch": int(state.timestamp.batch), "tokens": int(state.timestamp.token),
                                     **scores}) + "\n")


def read_eval_log(path: str | Path) -> list[dict[str, Any]]:
    """The log's points, one per (label, batch), the last write winning."""
    points: dict[tuple[str, int], dict[str, Any]] = {}
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            if not line.endswith("\n"):
                break  # torn by a killed run
            row = json.loads(line)
            points[row["label"], row["batch"]] = row
    return sorted(points.values(), key=lambda row: (row["label"], row["batch"]))
