"""What a finished stage leaves behind: a merged model where the next stage needs one, a model card,
and an entry in the model registry that the local transformers backend can load.

Registration rules: a LoRA/prompt adapter that is a run's final output is registered as an adapter
pointing at the model it was trained on (so it stays small and generation loads base + adapter);
an adapter handed on to another stage, and every reward model, is merged into full weights first
(the next trainer and PPO's reward/value models need plain folders).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipelines.models.adapters import is_reft_folder
from pipelines.models.inspect import inspect_folder
from storage import registry
from storage.db import Database
from storage.registry import ModelRecord
from core.errors import TrainingError

_NAME_CHARS = re.compile(r"[^A-Za-z0-9._\-]+")
REFT_NOTE = ("- **ReFT**: a LoReFT intervention (`reft_config.json`, `reft_model.safetensors`) applied by forward "
             "hooks on the base model; the studio's local backend and Compare load it on that base "
             "(`pipelines.models.reft.apply_adapter`).\n")


@dataclass
class CardInfo:
    """The facts a model card states."""

    name: str
    run_id: str
    stage: str
    recipe: str
    base_model: str
    snapshot: dict[str, Any]
    hyperparameters: dict[str, Any]
    peft: dict[str, Any]
    final_metrics: dict[str, float]
    lineage: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def merge_adapter(adapter_dir: Path, base_path: Path, out_dir: Path, model_kind: str = "causal_lm") -> Path:
    """Merge a LoRA adapter into its base weights and save a plain transformers folder."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    if is_reft_folder(adapter_dir):
        raise TrainingError(f"{adapter_dir} holds a ReFT intervention, which edits hidden states and cannot be "
                            "merged into weights.", hint="Start the run from the intervention's base model instead; "
                                                         "a ReFT output is served on its base as it is.")
    if model_kind == "reward":
        base = AutoModelForSequenceClassification.from_pretrained(str(base_path), num_labels=1, trust_remote_code=False)
    else:
        base = AutoModelForCausalLM.from_pretrained(str(base_path), trust_remote_code=False)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir if (adapter_dir / "tokenizer_config.json").is_file()
                                                  else base_path))
    if model_kind == "reward" and tokenizer.pad_token_id is not None:
        merged.config.pad_token_id = tokenizer.pad_token_id
    merged.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return out_dir


def card_markdown(info: CardInfo) -> str:
    """A model card: YAML front matter (what the hub reads) and the run's facts."""
    method = info.peft.get("method")
    front = {"base_model": info.base_model, "library_name": "transformers" if method in ("full", "reft") else "peft",
             "tags": ["trl", info.stage, "studio", *(["reft"] if method == "reft" else [])],
             "datasets": [info.snapshot.get("id")]}
    metrics = "\n".join(f"| {k} | {v:.6g} |" for k, v in sorted(info.final_metrics.items())) or "| (none) | |"
    hyper = "\n".join(f"| {k} | {v} |" for k, v in info.hyperparameters.items())
    lineage = "\n".join(f"- {step['stage']}: run `{step['run_id']}` → `{step.get('output')}`" for step in info.lineage)
    warnings = "\n".join(f"- {w}" for w in info.warnings) or "- none"
    return (
        "---\n" + "\n".join(f"{k}: {json.dumps(v)}" for k, v in front.items()) + "\n---\n\n"
        f"# {info.name}\n\nTrained by the studio, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.\n\n"
        f"- **Recipe**: {info.recipe} (this stage: {info.stage})\n- **Base model**: {info.base_model}\n"
        f"- **Training run**: `{info.run_id}`\n"
        f"- **Data snapshot**: `{info.snapshot.get('id')}` (content hash `{info.snapshot.get('content_hash')}`, "
        f"{info.snapshot.get('record_kind')}, {info.snapshot.get('n_train')} train / {info.snapshot.get('n_eval')} eval)\n"
        f"- **PEFT**: {json.dumps(info.peft)}\n{REFT_NOTE if method == 'reft' else ''}\n"
        f"## Hyperparameters\n\n| name | value |\n|---|---|\n{hyper}\n\n"
        f"## Final metrics\n\n| metric | value |\n|---|---|\n{metrics}\n\n"
        f"## Lineage\n\n{lineage}\n\n## Warnings\n\n{warnings}\n"
    )


def write_card(folder: Path, info: CardInfo) -> Path:
    path = folder / "README.md"
    path.write_text(card_markdown(info), encoding="utf-8")
    return path


def output_name(db: Database, wanted: str, run_id: str) -> str:
    """A registry name for a run's output: ``wanted`` (slugged) unless another run's model has it."""
    name = _NAME_CHARS.sub("-", wanted).strip("-._")[:56] or "trained"
    existing = registry.get_model(db, name)
    if existing is None or existing.training_run_id == run_id:
        return name
    return f"{name}-{run_id[-6:]}"


def register_output(db: Database, *, name: str, run_id: str, folder: Path, is_adapter: bool,
                    base_record: ModelRecord | None, model_kind: str, card: dict) -> ModelRecord:
    """Insert (or, on a re-run of the same stage, replace) the registry entry for a stage's output."""
    info = inspect_folder(folder)
    details: dict[str, Any] = {"task": model_kind}
    if is_adapter:
        details["base_model_name_or_path"] = info.base_model_name_or_path
    record = ModelRecord(
        name=name, kind="adapter" if is_adapter else "hf", source="training",
        hf_path=None if is_adapter else str(folder.absolute()),
        adapter_path=str(folder.absolute()) if is_adapter else None,
        base_model_id=base_record.id if base_record else None, training_run_id=run_id,
        architecture=info.architecture, parameters=info.parameters, has_chat_template=info.has_chat_template,
        card=card, details=details,
    )
    existing = registry.get_model(db, name)
    if existing is not None:
        record.id = existing.id
    return registry.insert_model(db, record, replace=existing is not None)
