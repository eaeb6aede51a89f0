"""The Composer Trainer of a training YAML, assembled in one place: data, model, optimizer, schedule,
parallelism, checkpoints, loggers and callbacks, each looked up by the name the YAML gives.

Everything that can be checked without training is checked first (streams,
tokenizer against the model, max_seq_len, batch sizes), so a bad YAML fails in
seconds, not after the model is built or the first batch is drawn.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from composer import Trainer
from composer.callbacks import LRMonitor, MemoryMonitor, OptimizerMonitor, RuntimeEstimator, SpeedMonitor
from composer.loggers import FileLogger, InMemoryLogger, MLFlowLogger, TensorboardLogger, WandBLogger
from composer.optim import (
    ConstantWithWarmupScheduler,
    CosineAnnealingWithWarmupScheduler,
    DecoupledAdamW,
    LinearWithWarmupScheduler,
)
from composer.utils import dist, reproducibility
from streaming.base.util import clean_stale_shared_memory

from tpt.train.config import TrainConfig
from tpt.train.data import build_dataloader
from tpt.train.evaluate import EvalLog, build_evaluators, eval_metrics
from tpt.train.model import build_model, build_tokenizer, check_fits, model_config
from tpt.train.sample_log import SampleLog

log = logging.getLogger(__name__)


OPTIMIZERS = {"decoupled_adamw": DecoupledAdamW, "adamw": torch.optim.AdamW}
SCHEDULERS = {
    "cosine_with_warmup": CosineAnnealingWithWarmupScheduler,
    "linear_decay_with_warmup": LinearWithWarmupScheduler,
    "constant_with_warmup": ConstantWithWarmupScheduler,
}
LOGGERS = {"wandb": WandBLogger, "mlflow": MLFlowLogger, "tensorboard": TensorboardLogger, "file": FileLogger, "inmemory": InMemoryLogger}
CALLBACKS = {
    "speed_monitor": SpeedMonitor,  # tokens/s, and MFU from CausalLM.flops_per_batch on a known GPU
    "lr_monitor": LRMonitor,
    "memory_monitor": MemoryMonitor,
    "optimizer_monitor": OptimizerMonitor,
    "runtime_estimator": RuntimeEstimator,
    "sample_log": SampleLog,
    "eval_log": EvalLog,  # every eval score against training tokens, as JSON lines
}


def lookup(kind: str, registry: dict[str, Any], name: str) -> Any:
    if name not in registry:
        raise ValueError(f"{kind} {name!r}: unknown; choose one of {', '.join(registry)}")
    return registry[name]


def build_named(kind: str, registry: dict[str, Any], block: dict[str, dict[str, Any] | None]) -> list[Any]:
    """`{name: kwargs}` blocks (loggers, callbacks) as objects."""
    return [lookup(kind, registry, name)(**(kwargs or {})) for name, kwargs in block.items()]


def named_with_args(kind: str, registry: dict[str, Any], block: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """`{name: ..., **kwargs}` blocks (optimizer, scheduler): the factory and its arguments."""
    kwargs = dict(block)
    if "name" not in kwargs:
        raise ValueError(f"{kind}: needs a name ({', '.join(registry)})")
    return lookup(kind, registry, kwargs.pop("name")), kwargs


def device_batch_size(config: TrainConfig) -> int:
    world = dist.get_world_size()
    if config.global_train_batch_size % world:
        raise ValueError(f"global_train_batch_size {config.global_train_batch_size} does not divide over {world} devices")
    return config.global_train_batch_size // world


def build_trainer(config: TrainConfig) -> Trainer:
    """Check the config against the data and the model, then assemble the Trainer."""
    reproducibility.seed_all(config.seed)
    clean_stale_shared_memory()  # a killed run leaves streaming's shared memory behind
    batch = device_batch_size(config)
    tokenizer = build_tokenizer(config.tokenizer)
    hf_config = model_config(config.model)
    check_fits(hf_config, tokenizer, config.max_seq_len)
    train_data = build_dataloader(config.train_loader, tokenizer, config.max_seq_len, batch, config.seed)  # checks every stream
    evaluators = build_evaluators(config, tokenizer, batch)
    optimizer_factory, optimizer_args = named_with_args("optimizer", OPTIMIZERS, config.optimizer)
    scheduler_factory, scheduler_args = named_with_args("scheduler", SCHEDULERS, config.scheduler)
    loggers = build_named("logger", LOGGERS, config.loggers)
    callbacks = build_named("callback", CALLBACKS, config.callbacks)

    model = build_model(config.model, hf_config, tokenizer, eval_metrics())  # the first costly step: everything above has been checked
    log.info("model: %s, %.1fM parameters; %d sequences of %d tokens per device batch",
             type(model.model).__name__, sum(p.numel() for p in model.parameters()) / 1e6, batch, config.max_seq_len)
    return Trainer(
        run_name=config.run_name,
        seed=config.seed,
        model=model,
        train_dataloader=train_data,
        eval_dataloader=evaluators or None,
        eval_interval=config.eval_interval,
        eval_subset_num_batches=config.eval_subset_num_batches,
        optimizers=optimizer_factory(model.parameters(), **optimizer_args),
        schedulers=scheduler_factory(**scheduler_args),
        max_duration=config.max_duration,
        device_train_microbatch_size=config.device_train_microbatch_size,
        precision=config.precision,
        device=config.device,
        parallelism_config={"fsdp": config.fsdp_config} if config.fsdp_config else None,
        compile_config=config.compile_config,
        save_folder=config.save_folder,
        save_interval=config.save_interval,
        save_num_checkpoints_to_keep=config.save_num_checkpoints_to_keep,
        save_overwrite=config.save_overwrite,
        autoresume=config.autoresume,
        load_path=config.load_path,
        loggers=loggers,
        callbacks=callbacks,
        console_log_interval=config.console_log_interval,
        log_to_console=config.log_to_console,
        progress_bar=config.progress_bar,
        python_log_level=config.python_log_level,
        dist_timeout=config.dist_timeout,
    )


def train(config: TrainConfig) -> Trainer:
    """Train to max_duration (or resume to it), and return the finished Trainer."""
    trainer = build_trainer(config)
    if config.eval_first and trainer.state.evaluators and int(trainer.state.timestamp.batch) == 0:
        trainer.eval(subset_num_batches=config.eval_subset_num_batches)  # llm-foundry's eval_first: the starting point of the curves
    trainer.fit()
    trainer.close()
    return trainer
