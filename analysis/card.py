"""The dataset card `tpt publish` writes: README.md, the Hub's YAML metadata and then the tables a person reads.

The metadata holds the Hub's own keys (license, configs, tags, size category) and, under `tpt`, what made the
data: the teacher and its sampling settings, samples and tokens per source and per class, the thinking length
per class (the paper's Figure 4) and the whole pipeline config. A source whose config names no `license` is
"unknown": tpt never guesses one.
"""

from __future__ import annotations

import html
import json
from typing import Any

import yaml

import tpt
from tpt.analysis.runs import Run
from tpt.classify.taxonomy import AXES
from tpt.config import PipelineConfig
from tpt.io.storage import Folder
from tpt.schema import SCHEMA_VERSION

CARD = "README.md"
TAG = "tpt"
UNKNOWN_LICENSE = "unknown"
TOKEN_COLUMNS = ("doc_tokens", "kept_tokens", "thinking_tokens", "sample_tokens")
FIGURE4_COLUMNS = ("samples", "thinking_tokens", "training_tokens", "thinking_mean", "thinking_p10", "thinking_median", "thinking_p90")
SIZE_CATEGORIES = ((1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"), (1e6, "100K<n<1M"), (1e7, "1M<n<10M"),
                   (1e8, "10M<n<100M"), (1e9, "100M<n<1B"), (1e10, "1B<n<10B"))
COLUMNS = (
    ("text", "the training sample [d; t]: the document, the separator, the thinking"),
    ("document", "the document d, truncated to the teacher's budget"),
    ("thinking", "the teacher's thinking t (null where none was generated)"),
    ("id, source", "the document's id (`#k` for its k-th sample) and the source (config) it came from"),
    ("domain, audience, reasoning (+ _score)", "the classifier's labels and their probabilities"),
    ("doc_tokens, kept_tokens, truncated", "teacher tokens of the document before and after truncation"),
    ("thinking_tokens, sample_tokens, finish_reason, thinking_flags, thinking_budget",
     "tokens of t and of [d; t], why generation stopped, quality flags, the max_new_tokens it was given"),
)


def is_card(folder: Folder) -> bool:
    """Whether `folder` holds a card tpt wrote (so an earlier publish may be replaced)."""
    if not folder.exists(CARD):
        return False
    metadata = front_matter(folder.read_text(CARD))
    return isinstance(metadata, dict) and TAG in (metadata.get("tags") or []) and isinstance(metadata.get(TAG), dict)


def front_matter(card: str) -> Any:
    """The YAML metadata at the top of a card, or None."""
    if not card.startswith("---\n"):
        return None
    end = card.find("\n---\n", 4)
    try:
        return yaml.safe_load(card[4:end]) if end > 0 else None
    except yaml.YAMLError:
        return None


def licenses(config: PipelineConfig, sources: list[str]) -> dict[str, str]:
    """Each published source's license as its config names it, or "unknown"."""
    named = {source.name: source.license for source in config.sources}
    return {source: named.get(source) or UNKNOWN_LICENSE for source in sources}


def render_card(run: Run, config: PipelineConfig, statistics: dict[str, Any], tokens: dict[str, dict[str, int]],
                written: dict[str, dict[str, Any]]) -> str:
    """The whole README.md: metadata, then the tables."""
    metadata = _metadata(run, config, statistics, tokens, written)
    header = "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True, width=120) + "---\n"
    return header + "\n" + _body(metadata, config, tokens, written)


def _metadata(run: Run, config: PipelineConfig, statistics: dict[str, Any], tokens: dict[str, dict[str, int]],
              written: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The card's YAML header: what the Hub reads (license, configs, size), and tpt's own section."""
    sources = list(written)
    source_licenses = licenses(config, sources)
    total = sum(w["samples"] for w in written.values())
    distinct = sorted(set(source_licenses.values()))
    classes = {axis: [{key: row[key] for key in ("class", *FIGURE4_COLUMNS)} for row in statistics["axes"][axis]] for axis in AXES}
    return {
        "license": distinct[0] if len(distinct) == 1 else distinct,
        "pretty_name": f"{run.name}: thinking-augmented pre-training data",
        "tags": [TAG, "thinking-augmented-pretraining", "synthetic"],
        "task_categories": ["text-generation"],
        "size_categories": [next((name for limit, name in SIZE_CATEGORIES if total < limit), "n>10B")],
        "configs": [{"config_name": source, "data_files": [{"split": "train", "path": f"data/{source}/*.parquet"}],
                     **({"default": True} if index == 0 else {})} for index, source in enumerate(sources)],
        TAG: {
            "version": tpt.__version__,
            "schema_version": SCHEMA_VERSION,
            "teacher": _teacher(config, run.summary),
            "sampling": _sampling(config),
            "sources": {source: {"license": source_licenses[source], "samples": written[source]["samples"],
                                 **{key: tokens[source][key] for key in TOKEN_COLUMNS}, "files": written[source]["files"]}
                        for source in sources},
            "classes": classes,
            "config": run.summary.get("config") or config.model_dump(mode="json"),
        },
    }


def _body(metadata: dict[str, Any], config: PipelineConfig, tokens: dict[str, dict[str, int]],
          written: dict[str, dict[str, Any]]) -> str:
    """The card's Markdown: how to load it, its columns, sources, teacher and Figure 4 tables, and the config."""
    sources, tpt_section = list(written), metadata[TAG]
    source_licenses = {source: tpt_section["sources"][source]["license"] for source in sources}
    classes = tpt_section["classes"]
    first = sources[0] if sources else "SOURCE"
    parts = [
        f"# {_cell(metadata['pretty_name'])}\n",
        "Thinking-augmented pre-training data ([TPT, arXiv 2509.20186](https://arxiv.org/abs/2509.20186)): every sample "
        "is a document *d* followed by a teacher LLM's step-by-step thinking *t*, and `text` is the training sample "
        f"[d; t]. Made with tpt {tpt.__version__}; one config per source, split `train`.\n",
        "## Load\n",
        "```python\nfrom datasets import load_dataset\n\n"
        f'ds = load_dataset("ORG/NAME", "{first}", split="train")  # from the Hub\n'
        f'ds = load_dataset("parquet", data_files="data/{first}/*.parquet", split="train")  # from a copy of this folder\n```\n',
        "## Columns\n",
        _table(("column", "what"), COLUMNS),
        "## Sources\n",
        _table(("config", "license", "samples", "document tokens", "kept tokens", "thinking tokens", "sample tokens"),
               [(source, source_licenses[source], f"{written[source]['samples']:,}",
                 *(f"{tokens[source][key]:,}" for key in TOKEN_COLUMNS)) for source in sources]),
        "## Teacher and sampling\n",
        _settings({**(tpt_section["teacher"] or {}), **(tpt_section["sampling"] or {})}) if config.generate
        else "No thinking was generated: `text` is the document.\n",
        "## Thinking length by class (the paper's Figure 4)\n",
    ]
    for axis in AXES:
        rows = [(row["class"], f"{row['samples']:,}", f"{row['thinking_tokens']:,}", f"{row['training_tokens']:,}",
                 *(_number(row[key]) for key in FIGURE4_COLUMNS[3:])) for row in classes[axis]]
        head = (axis, "samples", "thinking tokens", "training tokens", "thinking mean", "p10", "median", "p90")
        parts += [f"### {axis}\n", _table(head, rows)]
    parts += [
        "## Pipeline config\n",
        "```yaml\n" + yaml.safe_dump(tpt_section["config"], sort_keys=False, allow_unicode=True) + "```\n",
    ]
    return "\n".join(parts)


def _teacher(config: PipelineConfig, summary: dict[str, Any]) -> dict[str, Any] | None:
    generate = config.generate
    if generate is None:
        return None
    think = (summary.get("stages") or {}).get("think") or {}
    return {"backend": generate.backend, "model": think.get("model", generate.model), "prompt": generate.prompt}


def _sampling(config: PipelineConfig) -> dict[str, Any] | None:
    generate = config.generate
    if generate is None:
        return None
    keys = ("temperature", "top_p", "max_new_tokens", "stop", "seed", "samples_per_document", "budgets", "separator")
    return {key: value for key, value in generate.model_dump(mode="json").items() if key in keys}


def _settings(settings: dict[str, Any]) -> str:
    return _table(("setting", "value"), [(key, json.dumps(value, ensure_ascii=False)) for key, value in settings.items()])


def _table(head: tuple[str, ...], rows) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(str(value)) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Text that stays inside one Markdown table cell and renders as text, not HTML."""
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"
