"""The model and tokenizer: an HF causal LM wrapped for Composer, checked against the tokenizer and max_seq_len.

The checks read only the architecture, so a tokenizer that does not fit the
model or a context longer than its position limit fails before any weight is
built or loaded.
"""

from __future__ import annotations

from typing import Any

import torch
from composer.models import HuggingFaceModel
from composer.utils import dist

from tpt.assets import resolve_model_path
from tpt.train.config import ModelConfig, TokenizerConfig


def build_tokenizer(config: TokenizerConfig) -> Any:
    """A local fast tokenizer ("embedded": SmolLM2's) that ends every document with its EOS token."""
    from transformers import AutoTokenizer

    path = resolve_model_path(config.name)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, **config.kwargs)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer {config.name}: it has no EOS token to end documents with; set tokenizer.kwargs.eos_token")
    return tokenizer


def model_config(config: ModelConfig) -> Any:
    """The HF architecture: inline (from scratch) or a local checkpoint's config.json, with the overrides applied."""
    from transformers import AutoConfig

    if config.config is not None:
        hf_config = AutoConfig.for_model(**config.config)
    else:
        hf_config = AutoConfig.from_pretrained(resolve_model_path(config.pretrained_model_name_or_path), local_files_only=True)
    for key, value in config.config_overrides.items():
        if not hasattr(hf_config, key):
            raise ValueError(f"model.config_overrides.{key}: {type(hf_config).__name__} has no such field")
        setattr(hf_config, key, value)
    return hf_config


def check_fits(hf_config: Any, tokenizer: Any, max_seq_len: int) -> None:
    """Fail before training when the tokenizer's ids or the sequence length do not fit the model."""
    if len(tokenizer) > hf_config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer):,} tokens but the model's vocab_size is {hf_config.vocab_size:,}: "
                         "token ids past the embedding table would crash training; use the model's own tokenizer or a larger vocab_size")
    limit = getattr(hf_config, "max_position_embeddings", None)
    if limit is not None and max_seq_len > limit:
        raise ValueError(f"max_seq_len {max_seq_len:,} is over the model's max_position_embeddings {limit:,}; "
                         "lower max_seq_len or raise it with model.config_overrides.max_position_embeddings")


class CausalLM(HuggingFaceModel):
    """An HF causal LM whose loss is the mean next-token loss over every token of [d; t], with FLOPs for MFU."""

    def __init__(self, model: Any, tokenizer: Any, eval_metrics: list[Any] | None = None):
        super().__init__(model, tokenizer=tokenizer, use_logits=True, shift_labels=True, eval_metrics=eval_metrics)
        config = model.config
        self.n_layers, self.d_model = config.num_hidden_layers, config.hidden_size
        embeddings = model.get_input_embeddings().weight.numel()
        tied = getattr(config, "tie_word_embeddings", False)
        # Parameters that do a matmul per token: all but the input embedding lookup (when the LM head has its own weights).
        self.n_flop_params = sum(p.numel() for p in model.parameters()) - (0 if tied else embeddings)

    def flops_per_batch(self, batch: dict[str, torch.Tensor]) -> int:
        """Training FLOPs of a batch: 6·N per token, plus 12·layers·d_model·seq for attention (llm-foundry's count)."""
        batch_size, seq_len = batch["input_ids"].shape
        per_token = 6 * self.n_flop_params + 12 * self.n_layers * self.d_model * seq_len
        return per_token * batch_size * seq_len


def build_model(config: ModelConfig, hf_config: Any, tokenizer: Any, eval_metrics: list[Any] | None = None) -> CausalLM:
    """The Composer model, with the FSDP wrapping and activation checkpointing unit set to one decoder layer."""
    from transformers import AutoModelForCausalLM

    on_meta = config.init_device == "mixed" and dist.get_global_rank() != 0
    if on_meta or config.config is not None:
        with torch.device("meta" if on_meta else "cpu"):
            model = AutoModelForCausalLM.from_config(hf_config, attn_implementation=config.attn_implementation)
    else:
        model = AutoModelForCausalLM.from_pretrained(resolve_model_path(config.pretrained_model_name_or_path), config=hf_config,
                                                     local_files_only=True, attn_implementation=config.attn_implementation)
    layers = tuple({type(m) for m in model.modules() if type(m).__name__ in set(model._no_split_modules or ())})
    model.fsdp_wrap_fn = lambda module: isinstance(module, layers)
    model.activation_checkpointing_fn = lambda module: isinstance(module, layers)
    model.param_init_fn = model._init_weights  # meta modules get initialized; FSDP then syncs rank 0's weights
    return CausalLM(model, tokenizer, eval_metrics)
