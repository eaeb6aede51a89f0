"""Benchmark corpora of real text: ~2k-token documents joined from the demo's paragraphs, and one with planted duplicates."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from tpt.config import PipelineConfig, SourceConfig
from tpt.dedup.signature import shingles

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"
PLANTED_WEIGHTS = {"web": 1.0, "mirror": 2.0, "crawl": 1.0, "portal": 1.0}  # the planted sources' weights: mirror's copies win


def demo_texts() -> list[str]:
    return [json.loads(line)["text"] for path in sorted(DEMO.glob("*.jsonl")) for line in path.open(encoding="utf-8")]


def write_corpus(path: Path, documents: int, chars: int = 9000, seed: int = 0) -> Path:
    """`documents` JSONL rows of about `chars` characters (~2k teacher tokens) each, joined from random paragraphs of
    the demo texts: no two alike, even cut to the teacher's budget, so deduplication sets none aside."""
    rng = random.Random(seed)
    paragraphs = [paragraph for text in demo_texts() for paragraph in text.split("\n\n") if 80 <= len(paragraph) <= 1500]
    with open(path, "w", encoding="utf-8") as stream:
        for number in range(documents):
            parts, size = [], 0
            while size < chars:
                parts.append(rng.choice(paragraphs))
                size += len(parts[-1])
            stream.write(json.dumps({"id": f"doc-{number}", "text": "\n\n".join(parts)[:chars]}) + "\n")
    return path


COOKIES = "We use cookies to improve your experience on this site. By continuing to browse you accept our use of cookies."
HEADER = ("Welcome to the Community Library portal. Home | Catalogue | Events | Opening hours | Contact us. "
          "Search the catalogue by title, author or subject, renew your loans online, and book a study room. ") * 3
FOOTER = ("Community Library, 12 High Street. Open Monday to Saturday, 9am to 6pm. Follow us for news about "
          "events, new arrivals and reading groups. Terms of use | Privacy | Accessibility | Sitemap. ") * 3


@dataclass
class Planted:
    """A corpus with known duplicates: rows per source, and what was planted where."""

    sources: dict[str, list[dict]] = field(default_factory=dict)
    exact: list[tuple[str, str]] = field(default_factory=list)  # (original id, copy id)
    near: list[tuple[str, str]] = field(default_factory=list)  # (original id, near copy id)
    controls: list[str] = field(default_factory=list)  # distinct documents sharing a long template

    def write(self, folder: Path) -> dict[str, Path]:
        """One JSONL file per source in `folder`."""
        paths = {}
        for name, rows in self.sources.items():
            paths[name] = folder / f"{name}.jsonl"
            paths[name].write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        return paths


def plant_duplicates(originals: int, seed: int = 0, max_words: int = 600) -> Planted:
    """Real demo texts (the first `max_words` words of each) in source `web`, and, planted:
    - source `mirror`: exact copies of some under new ids, with CRLF line ends and whitespace around them;
    - source `crawl`: near copies of others (of some, three), 0.2-4% of their words replaced and a cookie banner
      or a date line added or removed;
    - source `portal`: negative controls, different texts between the same long header and footer."""
    rng = random.Random(seed)
    texts = [" ".join(text.split()[:max_words]) for text in demo_texts() if len(text.split()) >= 150]
    rng.shuffle(texts)
    vocabulary = sorted({word for text in texts for word in text.split()})
    planted = Planted({"web": [], "mirror": [], "crawl": [], "portal": []})
    for number, text in enumerate(texts[:originals]):
        original = f"web-{number}"
        if rng.random() < 0.3:
            text = f"{COOKIES}\n{text}"
        planted.sources["web"].append({"id": original, "text": text})
        kind = number % 3
        if kind == 0:
            copy = f"mirror-{number}"
            planted.sources["mirror"].append({"id": copy, "text": " \n" + text.replace("\n", "\r\n") + "  "})
            planted.exact.append((original, copy))
        elif kind == 1:  # one near copy; every fourth original three, less like each other than like it
            for suffix in ("", "b", "c") if number % 4 == 1 else ("",):
                copy = f"crawl-{number}{suffix}"
                planted.sources["crawl"].append({"id": copy, "text": near_copy(text, rng, vocabulary)})
                planted.near.append((original, copy))
    for number, body in enumerate(texts[originals:originals + originals // 2]):
        control = f"portal-{number}"
        planted.sources["portal"].append({"id": control, "text": f"{HEADER}\n{' '.join(body.split()[:250])}\n{FOOTER}"})
        planted.controls.append(control)
    return planted


def near_copy(text: str, rng: random.Random, vocabulary: list[str]) -> str:
    """`text` with 0.2-4% of its words replaced, and its cookie banner removed or a date line added."""
    words = text.split(" ")
    for position in rng.sample(range(len(words)), max(1, int(len(words) * rng.uniform(0.002, 0.04)))):
        words[position] = rng.choice(vocabulary)
    near = " ".join(words)
    if near.startswith(COOKIES):
        return near.removeprefix(f"{COOKIES}\n")
    return f"Posted on 2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}\n{near}"


def jaccard(a: str, b: str) -> float:
    """The true Jaccard similarity of two texts' shingles (the word 5-grams near-duplicate detection compares)."""
    left, right = set(shingles(a, 5)), set(shingles(b, 5))
    return len(left & right) / len(left | right)


def planted_config(folder: Path, originals: int = 24, **updates) -> PipelineConfig:
    """A run over a corpus of planted duplicates (`plant_duplicates`, up to 400 words a document) written to `folder`."""
    paths = plant_duplicates(originals, max_words=400).write(folder)
    sources = [SourceConfig(name=name, path=str(path), weight=PLANTED_WEIGHTS[name]) for name, path in paths.items()]
    return PipelineConfig(sources=sources, output={"parts": 3}, **updates)
