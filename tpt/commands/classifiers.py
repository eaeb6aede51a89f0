"""Train and evaluate the fastText classifiers (one per axis) on labelled documents.

  tpt classifiers train LABELS --output DIR [--config CONFIG]   # DIR/{domain,audience,reasoning}.ftz + metrics.json
  tpt classifiers eval LABELS [--models DIR] [--config CONFIG]  # held-out metrics, confusion matrices, per-source shares

LABELS is a labels file written by `tpt label` (Parquet) or any Parquet/JSONL
file with the columns id, text, domain, audience, reasoning.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = actions.add_parser("train", help="train one model per axis; writes the models and metrics.json")
    train.add_argument("labels", help="labels file (Parquet or JSONL), a path or URL (gs://...)")
    train.add_argument("--output", required=True, metavar="DIR", help="folder for the models and metrics.json")
    evaluate = actions.add_parser("eval", help="precision / recall / F1 and confusion matrix of models on held-out labels")
    evaluate.add_argument("labels", help="held-out labels file (Parquet or JSONL), a path or URL (gs://...)")
    evaluate.add_argument("--models", metavar="DIR",
                          help="folder of AXIS.ftz/.bin models (default: the config's classify.models, else the starters)")
    evaluate.add_argument("--output", metavar="FILE", help="also write the metrics as JSON here")
    for sub in (train, evaluate):
        sub.add_argument("--config", help="pipeline config whose classify: section gives taxonomy, models and hyper-parameters")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tpt.classify.labelset import read_labels
    from tpt.classify.taxonomy import AXES, load_taxonomy
    from tpt.config import ClassifyConfig, load_config

    classify = (load_config(args.config).classify if args.config else None) or ClassifyConfig()
    taxonomy = load_taxonomy(classify.taxonomy)
    docs, failed = read_labels(args.labels, taxonomy)
    print(f"{len(docs)} labelled documents ({failed} failed labellings left out)")
    if args.action == "train":
        from tpt.classify.train import METRICS_FILE, train_classifiers

        report = train_classifiers(docs, taxonomy, classify.fasttext, args.output)
        for axis in AXES:
            metrics = report["axes"][axis]["validation"]
            score = f"accuracy {metrics['accuracy']}, macro F1 {metrics['macro_f1']}" if metrics else "no validation documents"
            print(f"  {axis:<10} {args.output}/{report['axes'][axis]['model']}  {score}")
        print(f"metrics: {Path(args.output) / METRICS_FILE}")
        return 0

    from tpt.classify.evaluation import evaluate_models, read_sources
    from tpt.classify.model import AxisModel, model_path

    models = {axis: AxisModel(model_path(args.models or getattr(classify.models, axis), axis), axis, taxonomy) for axis in AXES}
    report = evaluate_models(docs, read_sources(args.labels), models, taxonomy)
    print(format_evaluation(report, AXES))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def format_evaluation(report: dict, axes: tuple[str, ...]) -> str:
    """Per axis: accuracy, macro F1 and the confusion matrix; then one line per source."""
    lines = []
    for axis in axes:
        metrics = report[axis]
        lines.append(f"{axis}: {metrics['model']}  accuracy {metrics['accuracy']}, macro F1 {metrics['macro_f1']}")
        labels, matrix = metrics["confusion"]["labels"], metrics["confusion"]["matrix"]
        width = max(6, *(len(str(n)) for row in matrix for n in row))
        lines.append("  confusion (rows: labelled, columns: predicted)")
        lines.append(" " * 27 + " ".join(f"{i:>{width}}" for i in range(len(labels))))
        lines.extend(f"  {i:>2} {label:<22}" + " ".join(f"{n:>{width}}" for n in row) for i, (label, row) in enumerate(zip(labels, matrix)))
    if report["sources"]:
        lines.append(f"{'source':<22}{'documents':>10}" + "".join(f"{axis:>11}" for axis in axes) + f"{'reasoning level':>17}")
        for source, figures in report["sources"].items():
            shares = "".join(f"{figures['expected'][axis]:>11.1%}" for axis in axes)
            level = f"{figures['reasoning_level']:.2f} ({figures['labelled_reasoning_level']:.2f})" if "reasoning_level" in figures else ""
            lines.append(f"{source or '(none)':<22}{figures['documents']:>10}{shares}{level:>17}")
        lines.append("(share of each source given its expected label; mean reasoning level predicted, labelled in brackets: 0 = "
                     "the taxonomy's first reasoning label)")
    return "\n".join(lines)
