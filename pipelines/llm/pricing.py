"""Cost of a call from the editable ``prices`` table (USD per million tokens).

Why a table and not constants: prices change and local models cost nothing, so the user edits
them on the Models page. Lookup: the exact model name, else the ``'*'`` default row, else free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from storage.db import Database
from storage.registry import list_prices

DEFAULT_ROW = "*"
PER = 1_000_000


@dataclass(frozen=True)
class PriceTable:
    """``prices`` maps a model name (or ``'*'``) to (input, output) USD per million tokens."""

    prices: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def load(cls, db: Database) -> "PriceTable":
        return cls(dict(list_prices(db)))

    def rates(self, model: str) -> tuple[float, float]:
        if model in self.prices:
            return self.prices[model]
        return self.prices.get(DEFAULT_ROW, (0.0, 0.0))

    def cost_usd(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        input_rate, output_rate = self.rates(model)
        return (max(prompt_tokens, 0) * input_rate + max(completion_tokens, 0) * output_rate) / PER
