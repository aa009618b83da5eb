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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.train.params import REPORT_TO, PeftSpec, TrainingParams, bad_setting, field_names
from pipelines.train.registry import ALGORITHMS, PARAMS, RECIPE_SFT_FIRST, RECIPES, build_params
from core.errors import BadInput, StudioError, TrainingError
from core.specs import check_fields, load_spec
from core.inputs import MAX_CONFIG_BYTES, load_yaml, read_text

MAX_PROCESSES = 64  # data-parallel processes on one machine
# Read from the registry (pipelines/train/registry.py), where each algorithm is one line.
SFT_PREFIXABLE = tuple(r for r, first in RECIPE_SFT_FIRST.items() if first)
STAGES = tuple(ALGORITHMS)
ONLINE_STAGES = tuple(a.name for a in ALGORITHMS.values() if a.online)
REFT_STAGES = tuple(a.name for a in ALGORITHMS.values() if a.reft)  # trainers that take a ReFT intervention
REWARD_MODEL_FUNC = "reward_model"
# Which snapshot kinds each stage can learn from (the runner converts where a kind is listed second).
STAGE_DATA: dict[str, tuple[str, ...]] = {a.name: a.data for a in ALGORITHMS.values()}

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
    """Everything one training run needs; types and bounds are checked on construction, then ``validate()``."""

    name: str = field(metadata={"help": "A name for the run; also the default registry name of its output.",
                                "max_len": 200})
    recipe: str = field(metadata={"help": "Which stages run, in order: " + ", ".join(RECIPES) + ".",
                                  "choices": tuple(RECIPES)})
    base_model: str = field(metadata={"help": "A model-registry name, or a local transformers folder."})
    snapshot_id: str = field(metadata={"help": "The dataset snapshot the main stage trains on.", "max_len": 200})
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
    hyper: TrainingParams = field(default_factory=dict, metadata={
        "help": "Optimisation settings, flat: the ones every trainer shares and the recipe's own (beta for dpo, "
                "kl_coef for ppo...); the class is the recipe's last stage's (PARAMS in params.py).",
        "deferred": True})
    stage_hyper: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={
        "help": "Per-stage overrides of hyper, e.g. {reward: {learning_rate: 1e-4}}."})
    report_to: list[str] = field(default_factory=list, metadata={
        "help": "Also log the curves to these (tensorboard, wandb, mlflow): under STUDIO_HOME/runs/<run>/, unless "
                "WANDB_MODE=online or MLFLOW_TRACKING_URI points at a team server; one not installed is skipped with "
                "a warning (bash scripts/setup.sh --monitoring).", "choices": REPORT_TO})
    merge_adapter: bool = field(default=False, metadata={
        "help": "After training, also save the LoRA adapter merged into the base weights as a full model."})
    output_name: str | None = field(default=None, metadata={"help": "Registry name of the output (default: name)."})
    processes: int = field(default=1, metadata={
        "help": "Training processes on this machine (data parallel, one per GPU; on a CPU, gloo). Above 1 the run's "
                "job starts them with `accelerate launch`; only the main one records the run.",
        "min": 1, "max": MAX_PROCESSES})
    evaluation: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_EVALUATION), metadata={
        "help": "The closed loop: when the run succeeds, compare its model with the base on the snapshot's "
                "held-out prompts. Keys: enabled (default true), judge (a Compare judge, e.g. {kind: rubric, "
                "rubric: length, params: {max_words: 40}} or {kind: llm, target: endpoint:NAME}; default the "
                "answer_quality rubric; null = outputs only, for human votes), limit (prompts, default 50), "
                "max_tokens (default 128)."})

    def __post_init__(self) -> None:
        check_fields(self, error=TrainingError)
        self.hyper = self._recipe_params()
        self.validate()

    def _recipe_params(self) -> TrainingParams:
        """``hyper`` as the class of the recipe's last stage, whose fields cover every stage of the recipe."""
        main = RECIPES[self.recipe][-1]
        if isinstance(self.hyper, PARAMS[main]):
            return self.hyper
        values = self.hyper.to_dict() if isinstance(self.hyper, TrainingParams) else self.hyper
        return build_params(main, values, path="hyper",
                            context=f"this run's recipe is {self.recipe} (stages: {', '.join(self.stages)})")

    # -- validation (the rules between fields; types and bounds are the loader's) ------------------------
    def validate(self) -> None:
        for name in ("name", "base_model", "snapshot_id"):
            if not getattr(self, name).strip():
                raise bad_setting(name, getattr(self, name), "is empty", f"Give the run's {name}.")
        if self.include_sft and self.recipe not in SFT_PREFIXABLE:
            raise bad_setting("include_sft", True, f"does not fit recipe {self.recipe!r}",
                              f"Use false: an SFT stage comes first only in {', '.join(SFT_PREFIXABLE)}.")
        for stage in self.stage_hyper:
            if stage not in self.stages:
                raise bad_setting("stage_hyper", stage, "is not a stage of this recipe",
                                  f"Use one of this run's stages: {', '.join(self.stages)}.")
            self.hyper_for(stage)
        if self.merge_adapter and self.peft.method not in ("lora", "qlora"):
            raise bad_setting("merge_adapter", True, f"does not fit peft.method={self.peft.method!r}",
                              "Use false: only LoRA adapters merge into the base.")
        self._validate_reft()
        self._validate_rewards()
        self._validate_evaluation()

    def _validate_reft(self) -> None:
        """A ReFT intervention edits hidden states, so it cannot be merged into weights and handed on."""
        if self.peft.method != "reft":
            return
        if self.include_sft or len(self.stages) > 1 or self.stages[0] not in REFT_STAGES:
            raise bad_setting("peft.method", "reft", f"does not fit recipe {self.recipe!r}"
                              + (" with include_sft" if self.include_sft else ""),
                              f"ReFT trains one stage of {' or '.join(REFT_STAGES)}: use recipe sft or dpo without "
                              "include_sft, or peft.method: lora.")
        if self.processes > 1:
            raise bad_setting("processes", self.processes, "does not fit peft.method='reft'",
                              "Use processes: 1: a ReFT run trains in one process (several are not supported yet).")

    def _validate_evaluation(self) -> None:
        settings = load_spec(EvaluationSettings, self.evaluation, error=TrainingError, label="the run spec",
                             path="evaluation")
        if settings.judge:
            from pipelines.compare.judging import JudgeSpec

            try:
                JudgeSpec.from_dict(settings.judge, path="evaluation.judge")
            except StudioError as exc:  # the judge's own BadInput / NotFound: a run spec raises TrainingError
                raise TrainingError(exc.message, hint=exc.hint) from None
        self.evaluation = asdict(settings)

    def _validate_rewards(self) -> None:
        if self.recipe == "ppo" and not self.reward_model:
            raise TrainingError("PPO needs a trained reward model, and spec.reward_model is empty.",
                                hint="Set reward_model to a registered reward model, or use the 'rlhf' recipe, "
                                     "which trains one first.")
        if self.recipe in ("grpo", "rloo"):
            if not self.reward_funcs:
                raise bad_setting("reward_funcs", [], "is empty", "List at least one rubric name or 'reward_model'.")
            if REWARD_MODEL_FUNC in self.reward_funcs and not self.reward_model:
                raise bad_setting("reward_model", self.reward_model, "is empty", "Name a reward model (registry name "
                                  "or folder): reward_funcs lists 'reward_model'.")
            for i, func in enumerate(self.reward_funcs):
                if func != REWARD_MODEL_FUNC:
                    name, params = rubric_entry(func)
                    try:
                        _rubric(name).check_params(params)
                    except StudioError as exc:
                        raise TrainingError(f"reward_funcs[{i}]: {exc.message}", hint=exc.hint) from None
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

    def hyper_for(self, stage: str) -> TrainingParams:
        """The stage's parameters: the fields of ``hyper`` its class has, with its ``stage_hyper`` overrides."""
        shared = {k: v for k, v in self.hyper.to_dict().items() if k in field_names(PARAMS[stage])}
        return build_params(stage, {**shared, **self.stage_hyper.get(stage, {})}, path=f"stage_hyper.{stage}",
                            context=f"the {stage} stage does not use it")

    def to_dict(self) -> dict:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict) -> RunSpec:
        """Build from a mapping; a ``preset`` fills peft and hyper first (the hyper fields this recipe has),
        explicit values override it."""
        if isinstance(data, dict) and "preset" in data:
            data = _with_preset(data)
        return load_spec(cls, data, error=TrainingError, label="the run spec")

    @classmethod
    def from_stored(cls, data: dict) -> RunSpec:
        """A spec as stored with a run. Specs stored before the per-algorithm parameter classes carry
        every algorithm's hyperparameters (a DPO run's kl_coef): the ones its recipe's classes lack
        are dropped here, not refused, so older runs still show, resume and evaluate."""
        data = dict(data)
        recipe = data.get("recipe")
        if recipe in RECIPES and isinstance(data.get("hyper"), dict):
            known = field_names(params_class(recipe))
            data["hyper"] = {k: v for k, v in data["hyper"].items() if k in known}
        if recipe in RECIPES and isinstance(data.get("stage_hyper"), dict):
            data["stage_hyper"] = {stage: {k: v for k, v in values.items() if k in field_names(PARAMS[stage])}
                                   for stage, values in data["stage_hyper"].items()
                                   if stage in PARAMS and isinstance(values, dict)}
        return cls.from_dict(data)

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> RunSpec:
        """Read a spec from YAML text or from a .yaml file."""
        text = str(text_or_path)
        try:  # the one input boundary: size cap, UTF-8, YAML with alias and depth caps
            if isinstance(text_or_path, Path) or ("\n" not in text and text.endswith((".yaml", ".yml"))):
                text = read_text(text, "run spec file", MAX_CONFIG_BYTES)
            data = load_yaml(text, "run spec")
        except BadInput as exc:
            raise TrainingError(exc.message, hint=exc.hint) from None
        return cls.from_dict(data)


# The default judge works with what runs here (the embedded model cannot judge): a rubric for any prose answer.
DEFAULT_JUDGE: dict[str, Any] = {"kind": "rubric", "rubric": "answer_quality", "params": {}}


@dataclass
class EvaluationSettings:
    """The closed loop after a run succeeds (``RunSpec.evaluation``, stored as a plain mapping)."""

    enabled: bool = field(default=True, metadata={"help": "Compare the trained model with its base when the run "
                                                          "succeeds."})
    judge: dict[str, Any] | None = field(default_factory=lambda: {**DEFAULT_JUDGE, "params": {}}, metadata={
        "help": "A Compare judge (see pipelines/compare/judging.py); null = outputs only, for human votes."})
    limit: int = field(default=50, metadata={"help": "Held-out prompts to compare on.", "min": 1, "max": 100_000})
    max_tokens: int = field(default=128, metadata={"help": "Most new tokens per answer.", "min": 1, "max": 8192})


DEFAULT_EVALUATION: dict[str, Any] = asdict(EvaluationSettings())


def _with_preset(data: dict) -> dict:
    """``data`` with its preset's peft and hyper values under the explicit ones; a preset's hyper values the
    recipe's class lacks (max_prompt_length for dpo) are left out, not refused."""
    data = dict(data)
    name = data.pop("preset")
    if name is None:
        return data
    base = preset_values(name)
    recipe = data.get("recipe")
    known = field_names(params_class(recipe)) if isinstance(recipe, str) and recipe in RECIPES else None
    for section in ("peft", "hyper"):
        given = data.get(section)
        if given is None or isinstance(given, dict):
            preset = {k: v for k, v in base[section].items() if section == "peft" or known is None or k in known}
            data[section] = {**preset, **(given or {})}
    return data


def params_class(recipe: str) -> type[TrainingParams]:
    """The hyperparameter class of a recipe: its last stage's (which has every earlier stage's fields)."""
    return PARAMS[RECIPES[recipe][-1]]


def rubric_entry(entry: str | dict) -> tuple[str, dict]:
    """(rubric name, params) from a reward_funcs entry: a name or {rubric: NAME, params: {...}}."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and isinstance(entry.get("rubric"), str) and set(entry) <= {"rubric", "params"} \
            and isinstance(entry.get("params", {}), dict):
        return entry["rubric"], dict(entry.get("params") or {})
    raise bad_setting("reward_funcs", entry, "is not a reward function",
                      "Use 'reward_model', a rubric name, or {rubric: NAME, params: {...}}.")


def _rubric(name: str):
    from pipelines.judge.rubrics import get_rubric

    return get_rubric(name)


def preset_values(name: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(name, str) or name not in PRESETS:
        raise bad_setting("preset", name, "is not one of the presets", f"Use one of: {', '.join(PRESETS)}.")
    return {"peft": dict(PRESETS[name]["peft"]), "hyper": dict(PRESETS[name]["hyper"])}


def effective_batch(spec: RunSpec, n_devices: int = 1, stage: str | None = None) -> int:
    """Examples per optimizer step: batch size x gradient accumulation x devices."""
    hyper = spec.hyper_for(stage) if stage else spec.hyper
    return hyper.per_device_train_batch_size * hyper.gradient_accumulation_steps * max(1, n_devices)


def estimate_steps(spec: RunSpec, n_train: int, n_devices: int = 1, stage: str | None = None) -> int:
    """Optimizer steps the (main) stage will take on ``n_train`` examples, as the trainers count them."""
    if isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 0:
        raise bad_setting("n_train", n_train, "is not a count of examples", "Use a whole number of 0 or more.")
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
