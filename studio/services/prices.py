"""The editable price table (USD per million tokens) behind the cost ledger."""

from __future__ import annotations

import math

from storage import registry
from storage.db import get_database
from core.errors import BadInput


def list_prices() -> list[dict]:
    return [
        {"model": m, "input_usd_per_mtok": i, "output_usd_per_mtok": o}
        for m, (i, o) in registry.list_prices(get_database()).items()
    ]


def set_price(model: str, input_usd_per_mtok: float, output_usd_per_mtok: float) -> None:
    if not model.strip():
        raise BadInput("The model name is empty.", hint="Give the model name as the endpoint reports it, or * for the default.")
    for field, value in (("input", input_usd_per_mtok), ("output", output_usd_per_mtok)):
        if not math.isfinite(value) or value < 0:
            raise BadInput(f"The {field} price {value} is not valid.", hint="Use a number of dollars per million tokens, 0 or more.")
    registry.set_price(get_database(), model.strip(), input_usd_per_mtok, output_usd_per_mtok)
