"""Generation backends by name; each module is imported only when its backend is chosen (vllm is optional)."""

from __future__ import annotations

import importlib

from tpt.config import GenerateConfig
from tpt.generate.backend import Backend

BACKENDS = {
    "transformers": "tpt.generate.backends.transformers:TransformersBackend",
    "openai": "tpt.generate.backends.openai:OpenAIBackend",
    "vllm": "tpt.generate.backends.vllm:VLLMBackend",
}


def build_backend(config: GenerateConfig) -> Backend:
    """The backend `config.backend` names, configured but not set up (call `setup()` in the worker)."""
    module, _, name = BACKENDS[config.backend].partition(":")
    return getattr(importlib.import_module(module), name)(config)
