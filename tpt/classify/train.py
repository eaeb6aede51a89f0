"""Distil labelled documents into one fastText classifier per axis, with held-out metrics.

The fastText binding (fasttext-numpy2 0.10.4, like fasttext >= 0.9.3) keeps its
input matrix in an uninitialised aligned buffer and `DenseMatrix::uniform`
fills one tenth of it per training thread: below 11 threads the rest is
whatever the allocator hands back, which ends in "Encountered NaN" as soon as
that memory was used before. `FastTextConfig.threads` is therefore at least 11
(docs/classification.md tells the whole story).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from tpt.classify.labelset import LabelledDoc
from tpt.classify.metrics import classification_metrics
from tpt.classify.model import AxisModel, fasttext_label
from tpt.classify.normalize import EmptyTextError, normalize
from tpt.classify.taxonomy import AXES, DEFAULT, DEFAULT_PATH, Taxonomy
from tpt.config import FastTextConfig
from tpt.io.owned import replacing_folder

log = logging.getLogger(__name__)

PQ_MIN_VECTORS = 256  # fastText's product quantiser needs at least this many input vectors
METRICS_FILE = "metrics.json"


def normalized_texts(docs: list[LabelledDoc]) -> dict[str, str]:
    """Each document's normalised text by id; a document with nothing left is an error naming it."""
    texts = {}
    for doc in docs:
        try:
            texts[doc.id] = normalize(doc.text)
        except EmptyTextError as error:
            raise ValueError(f"labelled document {doc.id}: {error}") from None
    return texts


def split(docs: list[LabelledDoc], validation: float, seed: int) -> tuple[list[LabelledDoc], list[LabelledDoc]]:
    """(train, validation): the `validation` share with the smallest id hashes is held out, at least one document is kept for training."""
    ranked = sorted(docs, key=lambda doc: hashlib.blake2b(f"{seed}:{doc.id}".encode(), digest_size=8).digest())
    held_out = min(round(len(docs) * validation), len(docs) - 1)
    return ranked[held_out:], ranked[:held_out]


def evaluate(model: AxisModel, docs: list[LabelledDoc], texts: dict[str, str], taxonomy: Taxonomy) -> dict[str, Any]:
    predicted = [label for label, _ in model.predict([texts[doc.id] for doc in docs])]
    return classification_metrics([doc.labels[model.axis] for doc in docs], predicted, list(taxonomy[model.axis].labels))


def train_classifiers(docs: list[LabelledDoc], taxonomy: Taxonomy, params: FastTextConfig, out_dir: str | Path) -> dict[str, Any]:
    """Train, save and evaluate the three axis models in `out_dir`, replaced whole once all are written (and only
    an earlier output of this command: tpt.io.owned); returns (and writes) the metrics."""
    with replacing_folder(out_dir, "tpt classifiers train") as staging:
        return _train_into(docs, taxonomy, params, staging)


def _train_into(docs: list[LabelledDoc], taxonomy: Taxonomy, params: FastTextConfig, out_dir: Path) -> dict[str, Any]:
    texts = normalized_texts(docs)
    train, held_out = split(docs, params.validation, params.seed)
    report: dict[str, Any] = {
        "documents": {"train": len(train), "validation": len(held_out)},
        "fasttext": params.model_dump(),
        "taxonomy": DEFAULT if taxonomy.path == str(DEFAULT_PATH) else taxonomy.path,
        "axes": {},
    }
    for axis in AXES:
        path = train_axis(axis, train, texts, params, out_dir)
        model = AxisModel(path, axis, taxonomy)
        report["axes"][axis] = {
            "model": path.name,
            "bytes": path.stat().st_size,
            "train_labels": dict(Counter(doc.labels[axis] for doc in train).most_common()),
            "validation": evaluate(model, held_out, texts, taxonomy) if held_out else None,
        }
    (out_dir / METRICS_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def train_axis(axis: str, docs: list[LabelledDoc], texts: dict[str, str], params: FastTextConfig, out_dir: Path) -> Path:
    """Train and save one axis' model: OUT/AXIS.ftz when quantised, else OUT/AXIS.bin."""
    import fasttext

    train_file = out_dir / f".{axis}.train.txt"
    try:
        with open(train_file, "w", encoding="utf-8") as stream:
            for doc in docs:
                stream.write(f"{fasttext_label(axis, doc.labels[axis])} {texts[doc.id]}\n")
        model = fasttext.train_supervised(
            input=str(train_file), dim=params.dim, epoch=params.epoch, lr=params.lr, wordNgrams=params.word_ngrams,
            minCount=params.min_count, bucket=params.bucket, loss=params.loss, thread=params.threads, seed=params.seed, verbose=0,
        )
        vectors = model.get_input_matrix().shape[0]
        quantize = params.quantize and vectors >= PQ_MIN_VECTORS
        if params.quantize and not quantize:
            log.warning("%s model: %d input vectors, fewer than the %d quantisation needs; writing it unquantised (.bin)",
                        axis, vectors, PQ_MIN_VECTORS)
        if quantize:
            model.quantize(input=str(train_file), qnorm=True, retrain=True, cutoff=params.cutoff, thread=params.threads, verbose=0)
    finally:
        train_file.unlink(missing_ok=True)
    path = out_dir / f"{axis}{'.ftz' if quantize else '.bin'}"
    model.save_model(str(path))
    log.info("%s model: %d documents, %d labels -> %s", axis, len(docs), len(model.labels), path)
    return path
