"""Vanilla against TPT on one corpus, model and token budget: the experiment `tpt experiment` runs.

The corpus is split once (a held-out share of raw documents is the eval set);
the pipeline runs on the rest without thinking (vanilla, d) and with it (TPT,
[d; t]) through `tpt.run.execute`; the same model trains on each arm's shards
for the same tokens from the same seed, evaluated at the same token counts;
each final model is exported (OUT/<arm>/hf); the report is written
(tpt.train.experiment). A rerun reuses what is done: the split, an arm's
pipeline output whose config is unchanged (and the thinking already
generated), a finished or interrupted training.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from pathlib import Path
from typing import Any

import yaml

from tpt.config import PipelineConfig, load_config, resolve_paths
from tpt.run import execute
from tpt.train.config import EvalDatasetConfig, EvalLoaderConfig, load_train_config
from tpt.train.experiment import ARMS, ExperimentConfig, split_corpus, write_report

log = logging.getLogger("tpt.experiment")


def run_experiment(config: ExperimentConfig) -> dict[str, Any]:
    """Split, run both arms' pipelines, train both, and write the report; returns it."""
    out = Path(config.output)
    pipeline = load_config(config.pipeline)  # checks the pipeline config before anything is written
    if not (config.generate or pipeline.generate):
        raise ValueError(f"{config.pipeline}: the TPT arm needs a generate section (in the pipeline config or the experiment's)")
    split(config, pipeline, out)
    for arm in ARMS:
        run_pipeline(config, arm, out)
    for arm in ARMS:
        train_arm(config, arm, out)
    return write_report(out, config)


def split(config: ExperimentConfig, pipeline: PipelineConfig, out: Path) -> None:
    """The corpus split, once: redone only when the sources or the held-out share change."""
    key = {"sources": [source.model_dump() for source in pipeline.sources], "heldout_fraction": config.heldout_fraction}
    record = out / "split.json"
    if record.is_file() and json.loads(record.read_text())["key"] == key and (out / "heldout" / "index.json").is_file():
        log.info("corpus split: reusing %s", record)
        return
    counts = split_corpus(pipeline.sources, config.heldout_fraction, out)
    record.write_text(json.dumps({"key": key, "counts": counts}, indent=2) + "\n")
    log.info("corpus split: %d documents to train on, %d held out", counts["train"], counts["heldout_written"])


def run_pipeline(config: ExperimentConfig, arm: str, out: Path) -> None:
    """The pipeline on the training split, without generate (vanilla) or with it (TPT); skipped when its output is up
    to date. The arm's config is written beside its output (OUT/<arm>/pipeline.yaml), its paths absolute."""
    raw = yaml.safe_load(Path(config.pipeline).read_text())
    resolve_paths(raw, Path(config.pipeline))
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
    log.info("%s pipeline: %s on %s", arm, path, config.engine)
    execute(load_config(path), config.engine, workers=config.workers)


def train_arm(config: ExperimentConfig, arm: str, out: Path) -> None:
    """The model YAML on this arm's shards for the experiment's tokens, evaluated on the held-out documents at equal steps."""
    from tpt.train.export import export
    from tpt.train.trainer import train

    base = load_train_config(config.model, config.train_overrides)
    per_batch = base.global_train_batch_size * base.max_seq_len
    every = config.tokens // per_batch // config.eval_points
    if every == 0:
        raise ValueError(f"tokens {config.tokens:,}: fewer than eval_points {config.eval_points} batches of {per_batch:,} tokens")
    folder, heldout = (out / arm).resolve(), str((out / "heldout").resolve())
    overrides = [*config.train_overrides, f"run_name={arm}", f"seed={config.seed}",
                 f"train_loader.dataset.streams={folder}/data/streams.yaml",
                 f"max_duration={every * config.eval_points}ba", f"eval_interval={every}ba", "eval_first=true",
                 f"save_folder={folder}/checkpoints", f"save_interval={every}ba", "autoresume=true",
                 f"callbacks.eval_log.path={folder}/eval.jsonl"]
    if "sample_log" in base.callbacks:
        overrides.append(f"callbacks.sample_log.path={folder}/samples.jsonl")
    record = folder / "train.json"
    if record.is_file():
        previous = json.loads(record.read_text())
        if (previous.get("overrides"), previous.get("heldout")) != (overrides, heldout):
            raise ValueError(f"{folder}: trained with other settings; give the experiment a new output folder")
        log.info("%s training: done before (%s)", arm, record)
        return
    log.info("%s training: %d batches of %d tokens, evaluated every %d", arm, every * config.eval_points, per_batch, every)
    evaluation = EvalLoaderConfig(label="heldout", dataset=EvalDatasetConfig(streams={"heldout": {"local": heldout}}))
    start = time.monotonic()
    trainer = train(load_train_config(config.model, overrides).model_copy(update={"eval_loader": evaluation}))
    tokens = int(trainer.state.timestamp.token)
    del trainer
    gc.collect()  # streaming allows one live dataset per local folder: the other arm reads the same held-out set
    seconds = time.monotonic() - start
    export(folder / "checkpoints" / "latest-rank0.pt", folder / "hf")
    record.write_text(json.dumps({"overrides": overrides, "heldout": heldout, "tokens": tokens, "seconds": seconds}, indent=2) + "\n")
