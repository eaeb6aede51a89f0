"""Rebuild the starter models shipped in tpt/classify/models from real offline text.

    python -m tpt.classify.starters [--output DIR]

The text: the demo corpus (data/demo) and, where the machine has it, the
license texts of Debian's /usr/share/common-licenses cut into passages (law).
The labels: the bootstrap annotator's. The models are only as good as those
rules; replace them with LLM-labelled models (docs/classification.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from tpt.classify.labelling import BootstrapLabeller, label_sample
from tpt.classify.labelset import read_labels
from tpt.classify.model import STARTER_DIR
from tpt.classify.sample import sample_documents
from tpt.classify.taxonomy import load_taxonomy
from tpt.classify.train import train_classifiers
from tpt.config import ClassifyConfig, PipelineConfig, SourceConfig

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "demo" / "*.jsonl"
LICENSES = Path("/usr/share/common-licenses")
PASSAGE_WORDS = 600


def license_passages(folder: Path = LICENSES) -> list[dict[str, str]]:
    """Each distinct license text as passages of about PASSAGE_WORDS words, cut at paragraph ends."""
    rows, seen = [], set()
    for path in sorted(folder.glob("*")) if folder.is_dir() else ():
        real = path.resolve()
        if real in seen or not real.is_file():
            continue
        seen.add(real)
        passage: list[str] = []
        paragraphs = [p.strip() for p in real.read_text(encoding="utf-8", errors="replace").split("\n\n") if p.strip()]
        for i, paragraph in enumerate(paragraphs):
            passage.append(paragraph)
            if sum(len(p.split()) for p in passage) >= PASSAGE_WORDS or i == len(paragraphs) - 1:
                rows.append({"id": f"common-licenses/{real.name}#{len(rows)}", "text": "\n\n".join(passage)})
                passage = []
    return rows


def build(output: Path) -> dict:
    with tempfile.TemporaryDirectory() as work:
        sources = [SourceConfig(name="demo", path=str(DEMO))]
        passages = license_passages()
        if passages:
            licenses = Path(work) / "licenses.jsonl"
            licenses.write_text("".join(json.dumps(row) + "\n" for row in passages))
            sources.append(SourceConfig(name="licenses", path=str(licenses)))
        config = PipelineConfig(sources=sources)
        taxonomy = load_taxonomy()
        records = sample_documents(config, n=10**9)
        label_sample(records, BootstrapLabeller(taxonomy), work, batch_size=256)
        docs, _ = read_labels(Path(work) / "labels.parquet", taxonomy)
        return train_classifiers(docs, taxonomy, ClassifyConfig().fasttext, output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=STARTER_DIR, help=f"where the models go (default: {STARTER_DIR})")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = build(parser.parse_args().output)
    print(json.dumps({axis: {k: v for k, v in r.items() if k != "validation"} for axis, r in report["axes"].items()}, indent=2))


if __name__ == "__main__":
    main()
