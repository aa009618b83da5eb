"""The files of a trained adaptation on top of a base model: a PEFT adapter (LoRA, prompt tuning, p-tuning)
or a ReFT intervention. One place decides which a folder holds, so the registry, generation and Compare
treat both alike (``pipelines.models.reft.apply_adapter`` loads either); and ReFT's position notation, which
run specs check. Nothing here imports torch: the registry's checks and spec loading stay quick."""

from __future__ import annotations

import json
import re
from pathlib import Path

PEFT_CONFIG = "adapter_config.json"
REFT_CONFIG = "reft_config.json"           # pipelines/models/reft.py: a LoReFT intervention
REFT_WEIGHTS = "reft_model.safetensors"
ADAPTER_CONFIGS = (PEFT_CONFIG, REFT_CONFIG)
MAX_POSITIONS = 512
_POSITION = re.compile(r"([fl])(\d{1,4})")


def parse_positions(text: str) -> tuple[int, int] | None:
    """ReFT's prompt positions in pyreft's notation: ``"f3+l2"`` -> (first, last) = (3, 2); None when ``text``
    is not fN, lN or fN+lN with N from 1 to MAX_POSITIONS."""
    counts: dict[str, int] = {}
    for part in str(text).split("+"):
        match = _POSITION.fullmatch(part.strip())
        if not match or match.group(1) in counts or not 1 <= int(match.group(2)) <= MAX_POSITIONS:
            return None
        counts[match.group(1)] = int(match.group(2))
    return counts.get("f", 0), counts.get("l", 0)


def is_reft_folder(folder: str | Path) -> bool:
    return (Path(folder) / REFT_CONFIG).is_file()


def adapter_config(folder: str | Path) -> Path | None:
    """The folder's adapter config file (PEFT's or ReFT's), or None when it holds neither."""
    return next((Path(folder) / n for n in ADAPTER_CONFIGS if (Path(folder) / n).is_file()), None)


def adapter_base(folder: str | Path) -> str | None:
    """The base model recorded in the folder's adapter config (``base_model_name_or_path``), if any."""
    path = adapter_config(folder)
    try:
        base = json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path") if path else None
    except (OSError, ValueError, AttributeError):
        return None
    return str(base) if base else None
