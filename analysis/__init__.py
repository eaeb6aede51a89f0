"""Analysis of tpt run outputs: the paper's thinking-length statistics (Figure 4), SQL over
the manifests, token and cost accounting, and an offline HTML report.

Everything reads `OUT/manifest.parquet` through DuckDB in columnar form; see docs/analysis.md.
"""
