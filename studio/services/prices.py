"""The editable price table (USD per million tokens) behind the cost ledger."""

from __future__ import annotations

import math

from storage import registry
from storage.db import get_database
from core.errors import BadInput
from core.inputs import MAX_MODEL_NAME_CHARS, check_name, quote
from studio import access

MAX_PRICE = 10_000.0   # USD per million tokens: far above any model's price, far below a typo's 1e308


def list_prices() -> list[dict]:
    return [
        {"model": m, "input_usd_per_mtok": i, "output_usd_per_mtok": o}
        for m, (i, o) in registry.list_prices(get_database()).items()
    ]


def set_price(model: str, input_usd_per_mtok: float, output_usd_per_mtok: float) -> None:
    if not isinstance(model, str) or not model.strip():
        raise BadInput("The model name is empty.", hint="Give the model name as the endpoint reports it, or * for the default.")
    model = check_name(model, "model name", MAX_MODEL_NAME_CHARS)
    for field, value in (("input", input_usd_per_mtok), ("output", output_usd_per_mtok)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0 <= value <= MAX_PRICE:
            raise BadInput(f"The {field} price {quote(value)} is not valid.",
                           hint=f"Use a number of dollars per million tokens, from 0 to {MAX_PRICE:,.0f}.")
    registry.set_price(get_database(), model, float(input_usd_per_mtok), float(output_usd_per_mtok))


# Who may call what (team mode): changes need an admin, reads any signed-in person (studio/access.py).
access.guard_module(globals(), manage={
    "set_price": "set a model's price",
})
