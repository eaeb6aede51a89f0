"""A Composer checkpoint as a Hugging Face model directory with its tokenizer, for transformers, `vllm serve` and lm-eval.

Both checkpoint layouts Composer writes are read: one `.pt` file (a single
device, or FSDP with full state dicts), and a folder of sharded `.distcp` files
with its `.metadata` (FSDP with `state_dict_type: sharded`), which is
consolidated in memory first. The architecture and the tokenizer come from the
checkpoint itself (Composer stores them under integrations.huggingface), so no
training YAML is needed. The directory is written whole or not at all, and
replaces only an earlier export (tpt.io.owned).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from tpt.io.owned import replacing_folder

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's `state` (model weights, integrations, ...), from a `.pt` file or a sharded folder."""
    path = Path(path)
    if path.is_dir():
        if not (path / ".metadata").is_file():
            raise FileNotFoundError(f"{path}: a folder but not a sharded checkpoint (no .metadata; expected Composer's *.distcp shards)")
        from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

        with tempfile.TemporaryDirectory() as scratch:
            consolidated = Path(scratch) / "checkpoint.pt"
            dcp_to_torch_save(str(path), str(consolidated))
            checkpoint = torch.load(consolidated, map_location="cpu", weights_only=False)
    elif path.is_file():
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    else:
        raise FileNotFoundError(f"{path}: no such checkpoint")
    state = checkpoint.get("state") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: not a Composer checkpoint (expected a `state` with the model's weights)")
    if "huggingface" not in state.get("integrations", {}):
        raise ValueError(f"{path}: the checkpoint has no integrations.huggingface (its model was not a Composer HuggingFaceModel)")
    return state


def export(checkpoint: str | Path, out_dir: str | Path, dtype: str | None = None) -> Path:
    """Write the checkpoint's model (safetensors, config.json) and tokenizer to `out_dir`, replacing what is there only once
    done, and only an earlier export (tpt.io.owned)."""
    with replacing_folder(out_dir, "tpt export") as staging:
        model = _model(checkpoint, dtype, staging)
    log.info("exported %s (%s, %.1fM parameters) to %s", checkpoint, type(model).__name__, model.num_parameters() / 1e6, out_dir)
    return Path(out_dir)


def _model(checkpoint: str | Path, dtype: str | None, staging: Path) -> Any:
    """The checkpoint's model and tokenizer, saved to `staging`; returns the model."""
    from composer.models.huggingface import HuggingFaceModel, get_hf_config_from_composer_state_dict
    from transformers import AutoModelForCausalLM

    state = read_checkpoint(checkpoint)
    config = get_hf_config_from_composer_state_dict({"state": state})
    model = AutoModelForCausalLM.from_config(config)
    weights = {name.removeprefix("model."): tensor for name, tensor in state["model"].items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = {name for name in missing if model.config.tie_word_embeddings and name == "lm_head.weight"}
    if unexpected or set(missing) - tied:
        raise ValueError(f"{checkpoint}: weights do not fit {type(model).__name__}: missing {sorted(set(missing) - tied)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")
    if tied:
        model.tie_weights()
    if dtype:
        model = model.to(DTYPES[dtype])
    with tempfile.TemporaryDirectory() as scratch:
        saved = state["integrations"]["huggingface"]
        tokenizer = HuggingFaceModel.load_huggingface_tokenizer_from_saved_state(saved, tokenizer_save_dir=scratch)
        if tokenizer is None:
            raise ValueError(f"{checkpoint}: the checkpoint holds no tokenizer")
        tokenizer.save_pretrained(staging)
    # the tokenizer's special tokens, not the architecture's defaults: generate() stops where training ended documents
    for settings in (model.config, model.generation_config):
        settings.eos_token_id, settings.bos_token_id = tokenizer.eos_token_id, tokenizer.bos_token_id
        settings.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(staging, safe_serialization=True)
    return model
