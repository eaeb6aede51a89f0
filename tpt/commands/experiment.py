"""Vanilla vs TPT on one corpus, model and token budget: `tpt experiment EXPERIMENT.yaml`.

It splits the corpus once (a held-out share of raw documents is the eval set),
runs the pipeline without thinking (vanilla, d) and with it (TPT, [d; t]),
trains the same model on each for the same number of tokens from the same seed,
evaluates both at the same token counts, exports each final model (OUT/<arm>/hf),
and writes OUT/report.md, OUT/report.json and OUT/learning_curves.png.
A rerun reuses what is done: the split, a pipeline output whose config is
unchanged (and the thinking already generated), a finished or interrupted training.
  tpt experiment configs/experiment-cpu.yaml [key=value ...]
See docs/training.md.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="experiment YAML (see configs/experiment-cpu.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="set a key of the YAML (dotted for nested keys)")


def main(args: argparse.Namespace) -> int:
    from tpt.run.experiment import run_experiment
    from tpt.train.experiment import ARMS, load_experiment

    config = load_experiment(args.experiment, args.overrides)
    report = run_experiment(config)
    last = report["checkpoints"][-1]
    losses = ", ".join(f"{arm} {last.get(f'{arm} heldout LanguageCrossEntropy', float('nan')):.4f}" for arm in ARMS)
    print(f"tpt experiment: {config.output}/report.md; held-out loss at {last['tokens']:,} training tokens: {losses}")
    return 0
