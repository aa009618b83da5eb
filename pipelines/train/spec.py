"""A training run as one self-contained spec: recipe, base model, data snapshot, PEFT and hyperparameters.

Why a spec: ``python -m studio train RUN.yaml`` and the Train page's button must do the same thing,
and a run must be re-runnable and resumable from what the database holds. So the whole run is this
dataclass, stored as JSON in ``training_runs.spec`` and readable from YAML.

Recipes chain stages (each stage's output is the next one's base or reward model):

========== =====================================================================
recipe     stages
========== =====================================================================
sft        sft
reward     reward (a sequence-classification reward model, one label)
ppo        ppo (needs ``reward_model``: a trained reward model)
rlhf       [sft →] reward → ppo
dpo        [sft →] dpo
orpo, cpo  orpo / cpo (reference-free preference optimisation)
kto        [sft →] kto (unpaired good/bad labels; preference rows are split)
grpo, rloo [sft →] grpo / rloo with ``reward_funcs``: rubric names and/or "reward_model"
========== =====================================================================

``include_sft`` prepends an SFT stage (not for sft/reward, nor orpo/cpo, which include an SFT term).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from pipelines.train.params import (
    REPORT_TO, HyperParams, PeftSpec, bad_field, build, check_range,
)
from core.errors import StudioError, TrainingError

RECIPES: dict[str, tuple[str, ...]] = {
    "sft": ("sft",), "reward": ("reward",), "ppo": ("ppo",), "rlhf": ("reward", "ppo"), "dpo": ("dpo",),
    "orpo": ("orpo",), "cpo": ("cpo",), "kto": ("kto",), "grpo": ("grpo",), "rloo": ("rloo",),
}
SFT_PREFIXABLE = ("ppo", "rlhf", "dpo", "kto", "grpo", "rloo")
STAGES = ("sft", "reward", "ppo", "dpo", "orpo", "cpo", "kto", "grpo", "rloo")
ONLINE_STAGES = ("ppo", "grpo", "rloo")
REWARD_MODEL_FUNC = "reward_model"
# Which snapshot kinds each stage can learn from (the runner converts where a kind is listed second).
STAGE_DATA: dict[str, tuple[str, ...]] = {
    "sft": ("sft", "preference"), "reward": ("preference",), "dpo": ("preference",), "orpo": ("preference",),
    "cpo": ("preference",), "kto": ("kto", "preference"), "ppo": ("prompts", "sft", "preference", "kto"),
    "grpo": ("prompts", "sft", "preference", "kto"), "rloo": ("prompts", "sft", "preference", "kto"),
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "cpu_smoke_test": {
        "peft": {"method": "lora", "r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]},
        "hyper": {"max_steps": 8, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
                  "learning_rate": 1e-4, "max_length": 256, "max_prompt_length": 128, "precision": "fp32",
                  "save_steps": 4, "logging_steps": 1},
    },
    "lora_one_gpu": {
        "peft": {"method": "lora", "r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["all-linear"]},
        "hyper": {"num_train_epochs": 1.0, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 4,
                  "learning_rate": 2e-4, "warmup_ratio": 0.05, "lr_scheduler_type": "cosine",
                  "gradient_checkpointing": True, "max_length": 1024, "max_prompt_length": 512,
                  "precision": "auto", "save_steps": 100, "logging_steps": 5},
    },
    "full_finetune_multi_gpu": {
        "peft": {"method": "full"},
        "hyper": {"num_train_epochs": 2.0, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 8,
                  "learning_rate": 1e-5, "warmup_ratio": 0.03, "lr_scheduler_type": "cosine", "weight_decay": 0.01,
                  "gradient_checkpointing": True, "max_length": 2048, "max_prompt_length": 1024,
                  "precision": "bf16", "save_steps": 200, "logging_steps": 10},
    },
}


@dataclass
class RunSpec:
    """Everything one training run needs; ``validate()`` runs on construction."""

    name: str = field(metadata={"help": "A name for the run; also the default registry name of its output."})
    recipe: str = field(metadata={"help": "Which stages run, in order: " + ", ".join(RECIPES) + "."})
    base_model: str = field(metadata={"help": "A model-registry name, or a local transformers folder."})
    snapshot_id: str = field(metadata={"help": "The dataset snapshot the main stage trains on."})
    include_sft: bool = field(default=False, metadata={"help": "Run an SFT stage first and train the next stages "
                                                               "on its output."})
    sft_snapshot_id: str | None = field(default=None, metadata={
        "help": "Snapshot for the SFT stage (default: the main snapshot; preference rows train on 'chosen')."})
    prompt_snapshot_id: str | None = field(default=None, metadata={
        "help": "Snapshot whose prompts PPO/GRPO/RLOO roll out (default: the main snapshot's prompts)."})
    reward_model: str | None = field(default=None, metadata={
        "help": "A trained reward model (registry name or folder) for ppo/grpo/rloo when the recipe does not train one."})
    reward_funcs: list[str | dict] = field(default_factory=list, metadata={
        "help": "GRPO/RLOO rewards: 'reward_model' and/or rubric judges, as a name or {rubric: NAME, params: {...}} "
                "(e.g. {rubric: length, params: {max_words: 30}})."})
    peft: PeftSpec = field(default_factory=PeftSpec, metadata={"help": "How weights are adapted (LoRA, QLoRA, "
                                                                        "prompt tuning, p-tuning, full)."})
    hyper: HyperParams = field(default_factory=HyperParams, metadata={"help": "Optimisation settings."})
    stage_hyper: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={
        "help": "Per-stage overrides of hyper, e.g. {reward: {learning_rate: 1e-4}}."})
    report_to: list[str] = field(default_factory=list, metadata={
        "help": "Extra loggers (tensorboard, wandb, mlflow), used only when installed."})
    merge_adapter: bool = field(default=False, metadata={
        "help": "After training, also save the LoRA adapter merged into the base weights as a full model."})
    output_name: str | None = field(default=None, metadata={"help": "Registry name of the output (default: name)."})
    evaluation: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_EVALUATION), metadata={
        "help": "The closed loop: when the run succeeds, compare its model with the base on the snapshot's "
                "held-out prompts. Keys: enabled (default true), judge (a Compare judge, e.g. {kind: rubric, "
                "rubric: length, params: {max_words: 40}} or {kind: llm, target: endpoint:NAME}; empty = outputs "
                "only, for human votes), limit (prompts, default 50), max_tokens (default 128)."})

    def __post_init__(self) -> None:
        if isinstance(self.peft, dict):
            self.peft = build(PeftSpec, self.peft, "peft")
        if isinstance(self.hyper, dict):
            self.hyper = build(HyperParams, self.hyper, "hyper")
        self.validate()

    # -- validation --------------------------------------------------------------------------
    def validate(self) -> None:
        for name in ("name", "base_model", "snapshot_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise bad_field("spec", name, value, "a non-empty string")
        if self.recipe not in RECIPES:
            raise bad_field("spec", "recipe", self.recipe, "one of " + ", ".join(RECIPES))
        if self.include_sft and self.recipe not in SFT_PREFIXABLE:
            raise bad_field("spec", "include_sft", self.include_sft,
                            f"false for recipe {self.recipe!r} (an SFT stage comes first only in "
                            + ", ".join(SFT_PREFIXABLE) + ")")
        for stage, overrides in self.stage_hyper.items():
            if stage not in self.stages:
                raise bad_field("spec", "stage_hyper", stage, "a stage of this recipe: " + ", ".join(self.stages))
            build(HyperParams, {**self.hyper.to_dict(), **overrides}, f"stage_hyper.{stage}")
        for logger in self.report_to:
            if logger not in REPORT_TO:
                raise bad_field("spec", "report_to", logger, "any of " + ", ".join(REPORT_TO))
        if self.merge_adapter and self.peft.method not in ("lora", "qlora"):
            raise bad_field("spec", "merge_adapter", True, f"false with peft.method={self.peft.method!r} "
                            "(only LoRA adapters merge into the base)")
        self._validate_rewards()
        self._validate_evaluation()

    def _validate_evaluation(self) -> None:
        unknown = sorted(set(self.evaluation) - set(DEFAULT_EVALUATION))
        if unknown:
            raise bad_field("spec", "evaluation", unknown[0], "keys among " + ", ".join(DEFAULT_EVALUATION))
        merged = {**DEFAULT_EVALUATION, **self.evaluation}
        if not isinstance(merged["enabled"], bool):
            raise bad_field("spec", "evaluation.enabled", merged["enabled"], "true or false")
        for key, low, high in (("limit", 1, 100_000), ("max_tokens", 1, 8192)):
            value = merged[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise bad_field("spec", f"evaluation.{key}", value, f"a whole number from {low} to {high}")
        if merged["judge"] is not None and not isinstance(merged["judge"], dict):
            raise bad_field("spec", "evaluation.judge", merged["judge"], "a judge mapping or empty")
        if merged["judge"]:
            from pipelines.compare.judging import JudgeSpec

            try:
                JudgeSpec.from_dict(merged["judge"])
            except StudioError as exc:
                raise TrainingError(f"spec.evaluation.{exc.message}", hint=exc.hint) from None
        self.evaluation = merged

    def _validate_rewards(self) -> None:
        if self.recipe == "ppo" and not self.reward_model:
            raise TrainingError("PPO needs a trained reward model, and spec.reward_model is empty.",
                                hint="Set reward_model to a registered reward model, or use the 'rlhf' recipe, "
                                     "which trains one first.")
        if self.recipe in ("grpo", "rloo"):
            if not self.reward_funcs:
                raise bad_field("spec", "reward_funcs", [], "at least one rubric name or 'reward_model'")
            if REWARD_MODEL_FUNC in self.reward_funcs and not self.reward_model:
                raise bad_field("spec", "reward_model", None, "a reward model name or folder when reward_funcs "
                                "lists 'reward_model'")
            for func in self.reward_funcs:
                if func != REWARD_MODEL_FUNC:
                    name, params = rubric_entry(func)
                    try:
                        _rubric(name).check_params(params)
                    except StudioError as exc:
                        raise TrainingError(f"spec.reward_funcs: {exc.message}", hint=exc.hint) from None
            batch = self.hyper.per_device_train_batch_size * self.hyper.gradient_accumulation_steps
            if batch % self.hyper.num_generations:
                raise TrainingError(
                    f"hyper.per_device_train_batch_size x gradient_accumulation_steps = {batch} is not a multiple "
                    f"of hyper.num_generations = {self.hyper.num_generations}.",
                    hint="GRPO/RLOO compare whole groups of completions: make the batch a multiple of num_generations.")

    # -- derived -----------------------------------------------------------------------------
    @property
    def stages(self) -> tuple[str, ...]:
        return (("sft",) if self.include_sft else ()) + RECIPES[self.recipe]

    def hyper_for(self, stage: str) -> HyperParams:
        return build(HyperParams, {**self.hyper.to_dict(), **self.stage_hyper.get(stage, {})}, f"stage_hyper.{stage}")

    def to_dict(self) -> dict:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict) -> RunSpec:
        """Build from a mapping; a ``preset`` key fills peft/hyper first, explicit values override it."""
        if not isinstance(data, dict):
            raise TrainingError(f"A run spec must be a mapping of settings, not {type(data).__name__}.",
                                hint="Write it as YAML `key: value` lines (see examples/train.yaml).")
        data = dict(data)
        _check_top_level_types(data)
        preset = data.pop("preset", None)
        if preset is not None:
            base = preset_values(preset)
            data["peft"] = {**base["peft"], **(data.get("peft") or {})}
            data["hyper"] = {**base["hyper"], **(data.get("hyper") or {})}
        known = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.name in ("name", "recipe", "base_model", "snapshot_id")
                   and f.name not in data]
        if missing:
            raise TrainingError(f"The run spec has no {missing[0]!r}.", hint=f"Add `{missing[0]}: ...` to it.")
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainingError(f"The run spec has no setting {unknown[0]!r}.",
                                hint=f"Known settings: preset, {', '.join(sorted(known))}.")
        return cls(**data)

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> RunSpec:
        """Read a spec from YAML text or from a .yaml file."""
        text = str(text_or_path)
        if isinstance(text_or_path, Path) or ("\n" not in text and text.endswith((".yaml", ".yml"))):
            path = Path(text).expanduser()
            if not path.is_file():
                raise TrainingError(f"The run spec file {path} does not exist.", hint="Give the path of a YAML file.")
            text = path.read_text(encoding="utf-8")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise TrainingError(f"The run spec is not valid YAML ({str(exc).splitlines()[0]}).",
                                hint="Fix the YAML syntax (indentation, colons).") from None
        return cls.from_dict(data)


DEFAULT_EVALUATION: dict[str, Any] = {"enabled": True, "judge": None, "limit": 50, "max_tokens": 128}

# What each top-level setting must be in YAML (None allowed where the field is optional).
_TOP_LEVEL_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    # None for the required ones is left to validate(), which names the field and what it needs.
    "name": ((str, type(None)), "text"), "recipe": ((str, type(None)), "text"),
    "base_model": ((str, type(None)), "text"), "snapshot_id": ((str, type(None)), "text"), "preset": ((str, type(None)), "a preset name"),
    "include_sft": ((bool,), "true or false"), "merge_adapter": ((bool,), "true or false"),
    "sft_snapshot_id": ((str, type(None)), "text"), "prompt_snapshot_id": ((str, type(None)), "text"),
    "reward_model": ((str, type(None)), "text"), "output_name": ((str, type(None)), "text"),
    "reward_funcs": ((list,), "a list"), "report_to": ((list,), "a list"),
    "peft": ((dict, type(None)), "a mapping of PEFT settings"), "hyper": ((dict, type(None)), "a mapping of hyperparameters"),
    "stage_hyper": ((dict,), "a mapping of stage name to hyperparameters"),
    "evaluation": ((dict,), "a mapping (enabled, judge, limit, max_tokens)"),
}


def _check_top_level_types(data: dict) -> None:
    """A YAML value of the wrong shape (``recipe: [dpo]``, ``hyper: 5``) is named, not a crash."""
    for key, value in data.items():
        allowed, what = _TOP_LEVEL_TYPES.get(key, ((object,), ""))
        if not isinstance(value, allowed):
            raise TrainingError(f"spec.{key} must be {what}, not {type(value).__name__} ({value!r:.60}).",
                                hint=f"Write `{key}:` as {what} in the run spec.")
    for stage, values in (data.get("stage_hyper") or {}).items():
        if not isinstance(values, dict):
            raise TrainingError(f"spec.stage_hyper.{stage} must be a mapping of hyperparameters, not "
                                f"{type(values).__name__}.", hint=f"Write `{stage}: {{learning_rate: ...}}`.")


def rubric_entry(entry: str | dict) -> tuple[str, dict]:
    """(rubric name, params) from a reward_funcs entry: a name or {rubric: NAME, params: {...}}."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and isinstance(entry.get("rubric"), str) and set(entry) <= {"rubric", "params"} \
            and isinstance(entry.get("params", {}), dict):
        return entry["rubric"], dict(entry.get("params") or {})
    raise bad_field("spec", "reward_funcs", entry, "'reward_model', a rubric name, or {rubric: NAME, params: {...}}")


def _rubric(name: str):
    from pipelines.judge.rubrics import get_rubric

    return get_rubric(name)


def preset_values(name: str) -> dict[str, dict[str, Any]]:
    if name not in PRESETS:
        raise bad_field("spec", "preset", name, "one of " + ", ".join(PRESETS))
    return {"peft": dict(PRESETS[name]["peft"]), "hyper": dict(PRESETS[name]["hyper"])}


def effective_batch(spec: RunSpec, n_devices: int = 1, stage: str | None = None) -> int:
    """Examples per optimizer step: batch size x gradient accumulation x devices."""
    hyper = spec.hyper_for(stage) if stage else spec.hyper
    return hyper.per_device_train_batch_size * hyper.gradient_accumulation_steps * max(1, n_devices)


def estimate_steps(spec: RunSpec, n_train: int, n_devices: int = 1, stage: str | None = None) -> int:
    """Optimizer steps the (main) stage will take on ``n_train`` examples, as the trainers count them."""
    check_range("estimate", "n_train", n_train, 0, None, integer=True)
    stage = stage or spec.stages[-1]
    hyper = spec.hyper_for(stage)
    if hyper.max_steps > 0:
        return hyper.max_steps
    batch = effective_batch(spec, n_devices, stage)
    if stage in ("grpo", "rloo"):  # each step consumes batch / num_generations prompts
        per_epoch = math.ceil(n_train * hyper.num_generations / batch)
    elif stage == "ppo":
        per_epoch = math.ceil(n_train / batch)
    else:
        per_epoch = math.ceil(math.ceil(n_train / (hyper.per_device_train_batch_size * max(1, n_devices)))
                              / hyper.gradient_accumulation_steps)
    return max(1, math.ceil(per_epoch * hyper.num_train_epochs))


# -- the device ------------------------------------------------------------------------------
def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def check_device(spec: RunSpec, cuda: bool | None = None) -> None:
    """Refuse GPU-only options on a machine without CUDA, with what to change."""
    cuda = cuda_available() if cuda is None else cuda
    if spec.peft.method == "qlora":
        if not cuda:
            raise TrainingError("peft.method = 'qlora' needs a CUDA GPU (4-bit weights), and this machine has none.",
                                hint="Use peft.method: lora on CPU.")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise TrainingError("peft.method = 'qlora' needs the bitsandbytes package.",
                                hint="pip install bitsandbytes, or use peft.method: lora.") from None
    for stage in spec.stages:
        precision = spec.hyper_for(stage).precision
        if precision in ("bf16", "fp16") and not cuda:
            raise TrainingError(f"hyper.precision = {precision!r} needs a GPU, and this machine has none.",
                                hint="Use precision: auto (fp32 on CPU) or fp32.")


def resolve_precision(precision: str, cuda: bool | None = None) -> str:
    """auto → fp32 on CPU, bf16 where the GPU supports it, else fp16."""
    if precision != "auto":
        return precision
    cuda = cuda_available() if cuda is None else cuda
    if not cuda:
        return "fp32"
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
