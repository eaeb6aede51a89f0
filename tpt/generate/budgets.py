"""The thinking budget of each document: `max_new_tokens` and `samples_per_document` per class (`generate.budgets`).

Thinking already grows with a document's difficulty; budgets make the compute
each class gets a choice: rules over the classify labels give a class more room
to think, or more samples, or less. The first rule a record matches wins; a
record matching none gets the top-level settings.
"""

from __future__ import annotations

from typing import NamedTuple

from tpt.config import BudgetRule, GenerateConfig
from tpt.schema import Record


class Budget(NamedTuple):
    max_new_tokens: int
    samples_per_document: int


class Budgets:
    """The budget rules of a GenerateConfig, resolved once; `of` runs for every document."""

    def __init__(self, config: GenerateConfig):
        self.default = Budget(config.max_new_tokens, config.samples_per_document)
        self._rules = [(_Match(rule), Budget(rule.max_new_tokens or self.default.max_new_tokens,
                                             rule.samples_per_document or self.default.samples_per_document))
                       for rule in config.budgets]

    @property
    def longest(self) -> int:
        """The most new tokens any document is given: what bounds a stored answer."""
        return max(budget.max_new_tokens for budget in [self.default, *(budget for _, budget in self._rules)])

    def of(self, record: Record) -> Budget:
        """The budget of the first rule `record` matches, else the top-level one."""
        return next((budget for match, budget in self._rules if match(record)), self.default)


class _Match:
    """Whether a record meets a rule's `when` (and `min_confidence`, on the score of each axis named)."""

    def __init__(self, rule: BudgetRule):
        self.axes = [(axis, f"{axis}_score", frozenset(labels)) for axis, labels in rule.when.labels().items()]
        self.floor = rule.min_confidence

    def __call__(self, record: Record) -> bool:
        return all(getattr(record, axis) in labels and self._confident(getattr(record, score)) for axis, score, labels in self.axes)

    def _confident(self, score: float | None) -> bool:
        return self.floor is None or (score is not None and score >= self.floor)
