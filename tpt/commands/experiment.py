"""Vanilla vs TPT on one corpus, model and token budget: `tpt experiment EXPERIMENT.yaml`.

It splits the corpus once (a held-out share of raw documents is the eval set),
runs the pipeline without thinking (vanilla, d) and with it (TPT, [d; t]),
trains the same model on each for the same number of tokens from the same seed,
evaluates both at the same token counts, exports each final model (OUT/<arm>/hf),
and writes OUT/report.md, OUT/report.json and OUT/learning_curves.png.
A rerun reuses what is done: the split, a pipeline output whose config is
unchanged (and the thinking already generated), a finished or interrupted training.
  tpt experiment configs/experiment-cpu.yaml
See docs/training.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import time
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("tpt.experiment")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="experiment YAML (see configs/experiment-cpu.yaml)")


def main(args: argparse.Namespace) -> int:
    from tpt.config import load_config
    from tpt.train.experiment import ARMS, load_experiment, write_report

    config = load_experiment(args.experiment)
    out = Path(config.output)
    pipeline = load_config(config.pipeline)  # checks the pipeline config before anything is written
    if not (config.generate or pipeline.generate):
        raise ValueError(f"{config.pipeline}: the TPT arm needs a generate section (in the pipeline config or the experiment's)")
    split(config, pipeline, out)
    for arm in ARMS:
        run_pipeline(config, arm, out)
    for arm in ARMS:
        train_arm(config, arm, out)
    report = write_report(out, config)
    last = report["checkpoints"][-1]
    losses = ", ".join(f"{arm} {last.get(f'{arm} heldout LanguageCrossEntropy', float('nan')):.4f}" for arm in ARMS)
    print(f"tpt experiment: {out}/report.md; held-out loss at {last['tokens']:,} training tokens: {losses}")
    return 0


def split(config: Any, pipeline: Any, out: Path) -> None:
    """The corpus split, once: redone only when the sources or the held-out share change."""
    from tpt.train.experiment import split_corpus

    key = {"sources": [source.model_dump() for source in pipeline.sources], "heldout_fraction": config.heldout_fraction}
    record = out / "split.json"
    if record.is_file() and json.loads(record.read_text())["key"] == key and (out / "heldout" / "index.json").is_file():
        log.info("corpus split: reusing %s", record)
        return
    counts = split_corpus(pipeline.sources, config.heldout_fraction, out)
    record.write_text(json.dumps({"key": key, "counts": counts}, indent=2) + "\n")
    log.info("corpus split: %d documents to train on, %d held out", counts["train"], counts["heldout_written"])


def run_pipeline(config: Any, arm: str, out: Path) -> None:
    """`tpt run` on the training split: without generate (vanilla) or with it (TPT); skipped when its output is up to date."""
    from tpt.cli import build_parser
    from tpt.config import resolve_paths

    raw = yaml.safe_load(Path(config.pipeline).read_text())
    resolve_paths(raw, Path(config.pipeline))  # the derived config is written elsewhere: its paths absolute
    raw["sources"] = [{**source, "path": str((out / "corpus" / f"{source['name']}.jsonl").resolve()), "format": "jsonl",
                       "text_field": "text", "id_field": "id"} for source in raw["sources"]]
    generate = raw.pop("generate", None)
    if arm == "tpt":
        raw["generate"] = config.generate or generate
    raw["output"] = {**(raw.get("output") or {}), "dir": str((out / arm / "data").resolve())}
    text = yaml.safe_dump(raw, sort_keys=False)
    path = out / arm / "pipeline.yaml"
    if path.is_file() and path.read_text() == text and (out / arm / "data" / "summary.json").is_file():
        log.info("%s pipeline: reusing %s", arm, out / arm / "data")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    argv = ["run", str(path), "--engine", config.engine] + (["--workers", str(config.workers)] if config.workers else [])
    run_args = build_parser().parse_args(argv)
    run_args.engine_args = []
    log.info("%s pipeline: tpt %s", arm, " ".join(argv))
    run_args.main(run_args)


def train_arm(config: Any, arm: str, out: Path) -> None:
    """The model YAML on this arm's shards for the experiment's tokens, evaluated on the held-out documents at equal steps."""
    from tpt.train.config import load_train_config
    from tpt.train.export import export
    from tpt.train.trainer import train

    base = load_train_config(config.model, config.train_overrides)
    per_batch = base.global_train_batch_size * base.max_seq_len
    every = config.tokens // per_batch // config.eval_points
    if every == 0:
        raise ValueError(f"tokens {config.tokens:,}: fewer than eval_points {config.eval_points} batches of {per_batch:,} tokens")
    folder = (out / arm).resolve()
    overrides = [*config.train_overrides, f"run_name={arm}", f"seed={config.seed}",
                 f"train_loader.dataset.streams={folder}/data/streams.yaml",
                 f"max_duration={every * config.eval_points}ba", f"eval_interval={every}ba", "eval_first=true",
                 f"eval_loader={{label: heldout, dataset: {{streams: {{heldout: {{local: {out.resolve()}/heldout}}}}}}}}",
                 f"save_folder={folder}/checkpoints", f"save_interval={every}ba", "autoresume=true",
                 f"callbacks.eval_log.path={folder}/eval.jsonl"]
    if "sample_log" in base.callbacks:
        overrides.append(f"callbacks.sample_log.path={folder}/samples.jsonl")
    record = folder / "train.json"
    if record.is_file():
        if json.loads(record.read_text())["overrides"] != overrides:
            raise ValueError(f"{folder}: trained with other settings; give the experiment a new output folder")
        log.info("%s training: done before (%s)", arm, record)
        return
    log.info("%s training: %d batches of %d tokens, evaluated every %d", arm, every * config.eval_points, per_batch, every)
    start = time.monotonic()
    trainer = train(load_train_config(config.model, overrides))
    tokens = int(trainer.state.timestamp.token)
    del trainer
    gc.collect()  # streaming allows one live dataset per local folder: the other arm reads the same held-out set
    seconds = time.monotonic() - start
    export(folder / "checkpoints" / "latest-rank0.pt", folder / "hf")
    record.write_text(json.dumps({"overrides": overrides, "tokens": tokens, "seconds": seconds}, indent=2) + "\n")
