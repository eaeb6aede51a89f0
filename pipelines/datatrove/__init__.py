"""The tpt pipeline on HuggingFace datatrove: the same core stages as datatrove steps, on the local or Slurm executor.

    job read   (tasks over files):  ReadSources -> ScatterById        (each id to the one task that owns it)
    job stages (tasks over ids):    GatherById (deduplicate) -> ApplyStage(truncate) -> ApplyStage(...) -> WriteParts
    job finalize (one task):        Finalize (merged indexes, manifest, streams.yaml, summary.json)
"""
