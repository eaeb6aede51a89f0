"""The tpt pipeline on HuggingFace datatrove: the same core stages as datatrove steps, on the local, Slurm or Ray executor.

    job read     (tasks over files):    ReadSources -> ScatterById        (each id to the one task that owns it)
    job prepare  (tasks over ids):      GatherById (one per id) -> ApplyStage(truncate) -> Sign
    job buckets  (tasks over buckets):  VerifyBuckets                     (LSH buckets -> verified duplicate pairs)
    job clusters (one task):            Cluster                           (union-find -> each task's duplicates)
    job stages   (tasks over ids):      ApplyDedup -> ApplyStage(classify) -> ApplyStage(think) -> WriteParts
    job finalize (one task):            Finalize (merged indexes, manifest, streams.yaml, summary.json)

Without text deduplication (`dedup.exact` and `dedup.near` off), the stages job
gathers by id and truncates itself, and prepare, buckets and clusters do not run.
"""
