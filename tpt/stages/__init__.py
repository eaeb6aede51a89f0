"""The pipeline's stages, in order, built from the config.

A new stage is one module and one line in `build_stages`.
"""

from __future__ import annotations

from tpt.config import PipelineConfig
from tpt.schema import BASE_FIELDS
from tpt.stages.base import Stage
from tpt.stages.classify import Classify
from tpt.stages.think import Think
from tpt.stages.truncate import Truncate


def build_stages(config: PipelineConfig) -> list[Stage]:
    """The stages between read and write that this config asks for."""
    stages: list[Stage] = [Truncate(config.tokenizer, config.truncate.max_doc_tokens, config.truncate.batch_size)]
    if config.classify is not None:
        stages.append(Classify(config.classify))
    if config.generate is not None:
        same_text = config.dedup.normalize if config.dedup.exact else None
        stages.append(Think(config.generate, config.tokenizer, config.output.dir, same_text))
    return stages


def output_fields(config: PipelineConfig, stages: list[Stage]) -> list[str]:
    """The record fields the writer stores: the base fields and what the stages add, as configured."""
    added = [name for stage in stages for name in stage.adds]
    if config.output.columns is not None:
        added = [name for name in added if name in config.output.columns]
    return [*BASE_FIELDS, *added]
