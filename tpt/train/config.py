"""The training YAML: llm-foundry's sections, validated on load, with `key.sub=value` overrides.

Free-form blocks (the model's architecture, optimizer and scheduler arguments,
fsdp_config, loggers, callbacks) stay mappings and are checked where they are
used; every other key is typed, and a typo fails with the keys allowed there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from tpt.config import Section
from tpt.config_file import load_yaml_config


class ModelConfig(Section):
    """An HF causal LM: `config` builds it from scratch, `pretrained_model_name_or_path` loads a local checkpoint."""

    name: Literal["hf_causal_lm"] = "hf_causal_lm"
    config: dict[str, Any] | None = None  # the architecture inline, with `model_type` (e.g. llama)
    pretrained_model_name_or_path: str | None = None  # a local HF directory (mid-training); no hub downloads
    config_overrides: dict[str, Any] = {}  # applied to either, e.g. {max_position_embeddings: 8192}
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    # cpu: every rank builds the model; mixed: rank 0 builds it, the others on the meta device and
    # FSDP copies rank 0's weights (needs fsdp_config.sync_module_states), as llm-foundry does for big models.
    init_device: Literal["cpu", "mixed"] = "cpu"

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if (self.config is None) == (self.pretrained_model_name_or_path is None):
            raise ValueError("give exactly one of model.config (from scratch) and model.pretrained_model_name_or_path (mid-training)")
        if self.config is not None and "model_type" not in self.config:
            raise ValueError("model.config needs a model_type (e.g. llama, qwen2)")
        return self


class TokenizerConfig(Section):
    name: str  # "embedded" (SmolLM2's tokenizer) or a local HF tokenizer directory
    kwargs: dict[str, Any] = {}  # passed to AutoTokenizer.from_pretrained, e.g. {eos_token: "<|endoftext|>"}


class DatasetConfig(Section):
    """`StreamingDataset` arguments; `streams` is the block tpt writes to OUT/streams.yaml, or that file's path."""

    streams: dict[str, dict[str, Any]] | str
    shuffle: bool = True
    shuffle_seed: int | None = None  # None: the run's seed
    shuffle_algo: str = "py1e"
    shuffle_block_size: int | None = None
    # Packed sequences shuffled in blocks this big (0: in order), so a batch is not mostly consecutive
    # pieces of one long document; a resume re-reads one block per loader worker.
    shuffle_buffer: int = Field(default=0, ge=0)
    num_canonical_nodes: int | None = None
    epoch_size: int | str | None = None  # samples per epoch when the streams are weighted by proportion
    predownload: int | None = None
    cache_limit: int | str | None = None
    download_timeout: float = 60


class LoaderConfig(Section):
    name: Literal["text"] = "text"
    dataset: DatasetConfig
    num_workers: int = Field(default=8, ge=0)
    drop_last: bool = True
    pin_memory: bool = True
    prefetch_factor: int | None = None
    persistent_workers: bool = True
    timeout: float = 0


class EvalDatasetConfig(DatasetConfig):
    shuffle: bool = False  # the same sequences at every evaluation, so the scores compare along the run


class EvalLoaderConfig(LoaderConfig):
    """One eval set: MDS streams of held-out raw documents d, packed like the training data, scored by LM loss and perplexity."""

    label: str | None = None  # names its metrics (metrics/<label>/LanguageCrossEntropy); needed when there are several
    dataset: EvalDatasetConfig
    num_workers: int = Field(default=0, ge=0)
    drop_last: bool = False


class EvalTaskConfig(Section):
    """A downstream task scored offline, during and after training, the way lm-eval-harness scores it (tpt/train/tasks.py)."""

    label: str
    task: Literal["gsm8k"] = "gsm8k"
    path: str  # the evaluation split, JSONL (data/gsm8k/test.jsonl)
    fewshot_path: str | None = None  # where the few-shot examples come from (data/gsm8k/train.jsonl)
    num_fewshot: int = Field(default=0, ge=0)
    fewshot_seed: int = 1234  # drawn per question as lm-eval draws them; 1234 is its default (the last value of --seed)
    limit: int | None = Field(default=None, gt=0)  # the first N problems only
    generate: bool = False  # also greedy answers and their exact match (worth it once the model can do arithmetic)
    max_new_tokens: int = Field(default=256, gt=0)
    batch_size: int = Field(default=8, gt=0)


class TrainConfig(Section):
    run_name: str | None = None  # autoresume needs one: it names the run's checkpoints
    seed: int = 17
    max_seq_len: int = Field(gt=0)
    model: ModelConfig
    tokenizer: TokenizerConfig  # omitted: the pretrained checkpoint's own tokenizer
    train_loader: LoaderConfig
    optimizer: dict[str, Any]  # {name: decoupled_adamw | adamw, lr: ..., ...}
    scheduler: dict[str, Any]  # {name: cosine_with_warmup | linear_decay_with_warmup | constant_with_warmup, ...}
    max_duration: str | int  # Composer time: 100ba, 1ep, 100000000000tok
    global_train_batch_size: int = Field(gt=0)
    device_train_microbatch_size: int | Literal["auto"] = "auto"
    precision: Literal["fp32", "amp_fp16", "amp_bf16", "amp_fp8"] = "amp_bf16"
    fsdp_config: dict[str, Any] | None = None
    compile_config: dict[str, Any] | None = None  # torch.compile arguments; None: eager
    eval_loader: EvalLoaderConfig | list[EvalLoaderConfig] | None = None
    eval_tasks: list[EvalTaskConfig] = []
    eval_interval: str | int = 1  # Composer time (500ba, 1ep); an int counts epochs
    eval_first: bool = False  # evaluate the untrained (or loaded) model before the first batch
    eval_subset_num_batches: int = -1  # batches per eval set at each evaluation; -1: all
    device_eval_batch_size: int | None = Field(default=None, gt=0)  # None: the train device batch size
    save_folder: str | None = None
    save_interval: str | int = "1000ba"
    save_num_checkpoints_to_keep: int = -1
    save_overwrite: bool = False
    autoresume: bool = False
    load_path: str | None = None  # start from this checkpoint (e.g. another run's), unless autoresume finds one
    loggers: dict[str, dict[str, Any] | None] = {}
    callbacks: dict[str, dict[str, Any] | None] = {}
    console_log_interval: str | int = "10ba"
    log_to_console: bool = True
    progress_bar: bool = False
    python_log_level: str | None = "info"
    device: Literal["cpu", "gpu"] | None = None  # None: the GPU when there is one
    dist_timeout: float = 600

    @model_validator(mode="before")
    @classmethod
    def _checkpoint_tokenizer(cls, raw: Any) -> Any:
        model = raw.get("model") if isinstance(raw, dict) else None
        if isinstance(model, dict) and model.get("pretrained_model_name_or_path") and "tokenizer" not in raw:
            return {**raw, "tokenizer": {"name": model["pretrained_model_name_or_path"]}}
        return raw

    @property
    def eval_loaders(self) -> list[EvalLoaderConfig]:
        return self.eval_loader if isinstance(self.eval_loader, list) else [self.eval_loader] if self.eval_loader else []

    @model_validator(mode="after")
    def _labelled_evals(self) -> TrainConfig:
        if isinstance(self.eval_loader, list) and any(loader.label is None for loader in self.eval_loader):
            raise ValueError("eval_loader: each of several eval sets needs a label")
        labels = [loader.label or "eval" for loader in self.eval_loaders] + [task.label for task in self.eval_tasks]
        if len(set(labels)) < len(labels):
            raise ValueError(f"eval_loader and eval_tasks labels must differ; got {labels}")
        return self

    @model_validator(mode="after")
    def _resumable(self) -> TrainConfig:
        if self.autoresume and not (self.run_name and self.save_folder):
            raise ValueError("autoresume needs run_name and save_folder (it looks for the run's latest checkpoint there)")
        return self


def load_train_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """A training YAML with the command line's `key=value` overrides (tpt.config_file.load_yaml_config)."""
    return load_yaml_config(path, TrainConfig, overrides, kind="training")
