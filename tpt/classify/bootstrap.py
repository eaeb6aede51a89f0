"""The bootstrap annotator: transparent rules that label documents when no strong LLM labeller is at hand.

`tpt label --labeller bootstrap` uses it for a first, explainable look at a
corpus (the starter models learn from distant labels of real sources instead,
data/classify). Every rule and word list is in bootstrap.yaml, and each
annotation keeps the features that decided it, so a label can always be
explained (and is only as good as these rules).
- domain: the domain whose keywords are most frequent, "other" below a floor;
- audience: technical density (digits, symbols, code-like tokens), Flesch-Kincaid
  grade, and school markers;
- reasoning: the rate of reasoning connectives plus equation lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from tpt.classify.normalize import normalize
from tpt.classify.taxonomy import AXES, Taxonomy

RULES_PATH = Path(__file__).with_name("bootstrap.yaml")
ANNOTATOR = "bootstrap"
_SYMBOLS = frozenset("=+*/^<>[]{}|\\~$#@&")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
_EQUATION_LINE = re.compile(r"^.*(?:=|>>>).*$", re.MULTILINE)


def _matcher(words: list[str]) -> re.Pattern[str]:
    """One regex matching any of `words` as a whole token (a trailing * matches the stem's continuations)."""
    alternatives = [re.escape(w[:-1]) + r"\w*" if w.endswith("*") else re.escape(w) for w in words]
    return re.compile(r"(?<!\S)(?:" + "|".join(alternatives) + r")(?!\S)") if alternatives else re.compile(r"(?!x)x")


@dataclass(frozen=True)
class Annotation:
    labels: dict[str, str]  # axis -> label
    features: dict[str, float]  # the measurements the rules looked at


class BootstrapAnnotator:
    """Labels from bootstrap.yaml's rules; every label it gives is checked against the taxonomy."""

    def __init__(self, taxonomy: Taxonomy, rules_path: Path = RULES_PATH):
        rules = yaml.safe_load(rules_path.read_text(encoding="utf-8"))
        self.taxonomy = taxonomy
        self.domain_rules = rules["domain"]
        self.domains = {domain: _matcher(words) for domain, words in self.domain_rules["keywords"].items()}
        self.audience_rules = rules["audience"]
        self.school_markers = _matcher(self.audience_rules["school"]["markers"])
        self.reasoning_rules = rules["reasoning"]
        self.reasoning_markers = _matcher(self.reasoning_rules["markers"])
        for domain in self.domains:
            taxonomy["domain"].check(domain, where=str(rules_path))

    def annotate(self, text: str) -> Annotation:
        """The three labels of one document (EmptyTextError if it has no words)."""
        tokens = normalize(text)
        words = max(sum(1 for t in tokens.split() if t.isalpha()), 1)
        per_mille = 1000.0 / words
        features: dict[str, float] = {"words": words}
        for domain, matcher in self.domains.items():
            features[f"domain_rate.{domain}"] = round(len(matcher.findall(tokens)) * per_mille, 2)
        features["technical_rate"] = round(_technical_tokens(tokens) * per_mille, 2)
        features["grade"] = round(_grade(text, words), 2)
        features["school_rate"] = round(len(self.school_markers.findall(tokens)) * per_mille, 2)
        features["reasoning_rate"] = round(len(self.reasoning_markers.findall(tokens)) * per_mille, 2)
        features["equation_rate"] = round(len(_EQUATION_LINE.findall(text)) * per_mille, 2)
        labels = {"domain": self._domain(features), "audience": self._audience(features), "reasoning": self._reasoning(features)}
        return Annotation({axis: self.taxonomy[axis].check(labels[axis], where=ANNOTATOR) for axis in AXES}, features)

    def _domain(self, f: dict[str, float]) -> str:
        best = max(self.domains, key=lambda d: f[f"domain_rate.{d}"])
        return best if f[f"domain_rate.{best}"] >= self.domain_rules["min_rate"] else "other"

    def _audience(self, f: dict[str, float]) -> str:
        rules = self.audience_rules
        if f["technical_rate"] >= rules["expert"]["min_technical_rate"]:
            return "expert"
        if f["technical_rate"] >= rules["undergraduate"]["min_technical_rate"] or f["grade"] >= rules["undergraduate"]["min_grade"]:
            return "undergraduate"
        if f["school_rate"] >= rules["school"]["min_marker_rate"]:
            return "school"
        return "general_public"

    def _reasoning(self, f: dict[str, float]) -> str:
        score = f["reasoning_rate"] + self.reasoning_rules["equation_weight"] * f["equation_rate"]
        for label in ("advanced", "intermediate", "basic"):
            if score >= self.reasoning_rules[label]["min_score"]:
                return label
        return "none"


def _technical_tokens(tokens: str) -> int:
    """Tokens that are notation rather than prose: math and code symbols, identifiers with underscores."""
    return sum(1 for t in tokens.split() if t in _SYMBOLS or ("_" in t and len(t) > 1))


def _grade(text: str, words: int) -> float:
    """Flesch-Kincaid grade level, syllables counted as vowel groups."""
    alphabetic = re.findall(r"[a-z]+", text.lower())
    syllables = sum(max(len(_VOWEL_GROUPS.findall(w)), 1) for w in alphabetic)
    sentences = max(len(_SENTENCE_END.findall(text)), 1)
    return 0.39 * words / sentences + 11.8 * syllables / max(len(alphabetic), 1) - 15.59

