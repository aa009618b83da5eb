"""Snapshot rows → the dataset each stage trains on, and the "too little data" check.

Rows are TRL's conversational format exactly as ``pipelines/generate/export.py``'s ``to_trl`` writes
them. Conversions: SFT from preference rows learns the chosen answer; KTO from preference rows gets
two unpaired rows (chosen → desirable, rejected → undesirable); online stages (PPO, GRPO, RLOO) only
need the prompts, each once.
"""

from __future__ import annotations

import json

from pipelines.train.params import TrainingParams
from pipelines.train.spec import ONLINE_STAGES, STAGE_DATA
from core.errors import TrainingError

MIN_ROWS = 2


def snapshot_kind(rows: list[dict]) -> str:
    """The record kind of TRL rows, from their keys."""
    if not rows:
        return "empty"
    keys = set(rows[0])
    if {"chosen", "rejected"} <= keys:
        return "preference"
    if "label" in keys:
        return "kto"
    if "completion" in keys:
        return "sft"
    return "prompts"


def rows_for_stage(stage: str, kind: str, rows: list[dict]) -> list[dict]:
    """Convert ``rows`` of record kind ``kind`` into what ``stage`` trains on."""
    if kind not in STAGE_DATA[stage]:
        raise TrainingError(f"The {stage} stage cannot train on a {kind} snapshot.",
                            hint=f"Pick a snapshot of kind {' or '.join(STAGE_DATA[stage])}.")
    if stage == "sft" and kind == "preference":
        return [{"prompt": r["prompt"], "completion": r["chosen"]} for r in rows]
    if stage == "kto" and kind == "preference":
        out = []
        for r in rows:
            out.append({"prompt": r["prompt"], "completion": r["chosen"], "label": True})
            out.append({"prompt": r["prompt"], "completion": r["rejected"], "label": False})
        return out
    if stage in ONLINE_STAGES:
        seen: dict[str, dict] = {}
        for r in rows:
            seen.setdefault(json.dumps(r["prompt"], sort_keys=True), {"prompt": r["prompt"]})
        return list(seen.values())
    return [dict(r) for r in rows]


def minimum_rows(stage: str, hyper: TrainingParams) -> int:
    """Fewest training rows a stage can run on. PPO drops incomplete rollout batches, so it needs a full one."""
    if stage == "ppo":
        return max(MIN_ROWS, hyper.per_device_train_batch_size * hyper.gradient_accumulation_steps)
    return MIN_ROWS


def check_enough(stage: str, rows: list[dict], hyper: TrainingParams, snapshot_id: str) -> None:
    needed = minimum_rows(stage, hyper)
    if len(rows) < needed:
        what = "prompts" if stage in ONLINE_STAGES else "training examples"
        raise TrainingError(
            f"The {stage} stage has {len(rows)} {what} from snapshot {snapshot_id}; it needs at least {needed}.",
            hint="Generate or review more pairs and make a new snapshot, or loosen its filters"
                 + (" (PPO needs one full batch: batch size x gradient accumulation)." if stage == "ppo" else "."))
    if stage == "kto":
        labels = {bool(r["label"]) for r in rows}
        if len(labels) < 2:
            have = "desirable" if True in labels else "undesirable"
            raise TrainingError(f"The kto stage has only {have} examples ({len(rows)}); it needs both labels.",
                                hint="Include records labelled good and bad in the snapshot.")


def to_dataset(rows: list[dict]):
    import datasets

    return datasets.Dataset.from_list(rows)


def tokenize_prompts(rows: list[dict], tokenizer, max_prompt_length: int):
    """PPO's dataset: ``input_ids`` of each prompt rendered with the chat template, left-truncated."""
    ids = []
    for r in rows:
        tokens = tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True,
                                               return_dict=False)
        if isinstance(tokens, dict) or hasattr(tokens, "keys"):
            tokens = tokens["input_ids"]
        ids.append(list(tokens)[-max_prompt_length:])
    return to_dataset([{"input_ids": x} for x in ids])
