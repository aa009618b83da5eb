"""What the Train page's form needs: the spec's fields with their help text, presets, recipes, a spec
built from the form's values, and the effective batch / step count / time estimate.

Why a service: the page may not import ``pipelines``; the field list comes from the spec dataclasses
themselves (``metadata["help"]``, through ``core.specs.describe_fields``), so the form and the YAML never
disagree, and a recipe's form shows its own parameter class's fields (a DPO form has beta, no kl_coef).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import StudioError
from core.specs import describe_fields
from pipelines.train.params import PEFT_FIELDS, REPORT_TO, PeftSpec
from pipelines.train.registry import ALGORITHMS
from pipelines.train.spec import (ONLINE_STAGES, PRESETS, RECIPES, REWARD_MODEL_FUNC, SFT_PREFIXABLE, STAGE_DATA,
                                  RunSpec, params_class)
from storage import registry
from storage.db import get_database
from studio import access

__all__ = ["FieldInfo", "Estimate", "Monitoring", "form_fields", "monitoring", "presets", "recipes", "recipes_for",
           "build_spec", "estimate", "RunSpec", "REWARD_MODEL_FUNC", "SFT_PREFIXABLE", "ONLINE_STAGES", "rubric_names"]


@dataclass(frozen=True)
class FieldInfo:
    name: str
    kind: str                       # 'bool', 'int', 'float', 'str', 'list'
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    item: str | None = None         # a list's items: 'int' for list[int], else None (text)


SFT_STAGE_FIELDS = ("padding_free",)   # shared settings that only an SFT stage uses


def form_fields(section: str, recipe: str = "sft", method: str | None = None,
                include_sft: bool = False) -> list[FieldInfo]:
    """The fields of ``peft``, or of ``hyper`` for ``recipe`` (its own parameter class), in declaration
    order with defaults and help text; the SFT-only ones when the run has an SFT stage (the recipe's, or
    ``include_sft``). With ``method``, only the fields that PEFT method uses (a ReFT form has layers and
    positions, no target_modules), without ``method`` itself."""
    cls = PeftSpec if section == "peft" else params_class(recipe)
    rows = describe_fields(cls)
    if section == "peft" and method is not None:
        rows = [row for row in rows if row.name in PEFT_FIELDS.get(method, ())]
    if section == "hyper" and not include_sft and "sft" not in RECIPES.get(recipe, ()):
        rows = [row for row in rows if row.name not in SFT_STAGE_FIELDS]
    return [FieldInfo(row.name, row.kind, row.default, row.help, row.choices,
                      "int" if row.type == "list[int]" else None) for row in rows]


@dataclass(frozen=True)
class Monitoring:
    """The loggers a run can report to (``report_to``): those installed, and those that are not."""

    installed: list[str]
    missing: list[str]
    install_hint: str = "bash scripts/setup.sh --monitoring"


def monitoring() -> Monitoring:
    from pipelines.train.monitoring import installed_reporters

    installed = installed_reporters(list(REPORT_TO))
    return Monitoring(installed, [name for name in REPORT_TO if name not in installed])


def presets() -> dict[str, dict[str, dict[str, Any]]]:
    return {name: {"peft": dict(v["peft"]), "hyper": dict(v["hyper"])} for name, v in PRESETS.items()}


def recipes() -> dict[str, tuple[str, ...]]:
    return dict(RECIPES)




def recipes_for(record_kind: str) -> dict[str, tuple[str, ...]]:
    """The recipes whose every stage can learn from a snapshot of ``record_kind``, the usual one first
    (a preference snapshot proposes DPO, not SFT)."""
    return {r: stages for r, stages in RECIPES.items() if all(record_kind in STAGE_DATA[s] for s in stages)}


def rubric_names() -> list[str]:
    from pipelines.judge.rubrics import list_rubrics

    return sorted(r.name for r in list_rubrics())


def build_spec(data: dict[str, Any]) -> RunSpec:
    """A validated RunSpec from the form's values (errors name the field and the allowed range)."""
    return RunSpec.from_dict(data)


# Rough throughput for the time estimate (sustained training FLOP/s); the page labels it as rough.
FLOPS_PER_S = {"cpu": 2e10, "cuda": 1e14}
STAGE_COST = {a.name: a.cost for a in ALGORITHMS.values()}


@dataclass(frozen=True)
class Estimate:
    effective_batch: int
    steps: int
    seconds: float | None          # None when the model's size is unknown
    basis: str                     # how the time was estimated


def estimate(spec: RunSpec, n_train: int, device: str | None = None) -> Estimate:
    """Effective batch, optimizer steps and a duration: 6 x params x tokens FLOPs per example at a
    nominal rate, corrected by how long the last runs on this machine really took against the same
    formula (so a loaded 2-core machine's estimate is not off by 4x)."""
    from pipelines.train.spec import effective_batch, estimate_steps

    batch, steps = effective_batch(spec, spec.processes), estimate_steps(spec, n_train, spec.processes)
    kind = "cuda" if (device or "cpu").startswith("cuda") else "cpu"
    seconds, params = _nominal_seconds(spec, steps, batch, kind)
    if seconds is None:
        return Estimate(batch, steps, None, "unknown model size")
    factor, runs = _calibration(kind)
    if runs:
        basis = f"{kind}, {params / 1e6:.0f}M parameters, calibrated on the last {runs} run(s) on this machine"
    else:
        basis = f"rough, {kind}, {params / 1e6:.0f}M parameters (no run finished here yet to calibrate on)"
    return Estimate(batch, steps, round(seconds * factor, 1), basis)


def _nominal_seconds(spec: RunSpec, steps: int, batch: int, kind: str) -> tuple[float | None, int | None]:
    record = registry.get_model(get_database(), spec.base_model)
    params = record.parameters if record else None
    if not params:
        return None, None
    stage = spec.stages[-1]
    tokens = batch * spec.hyper_for(stage).max_length * 0.5  # examples are rarely at max_length
    seconds = steps * 6 * params * tokens * STAGE_COST.get(stage, 1.0) / FLOPS_PER_S[kind]
    if spec.peft.method in ("lora", "qlora", "prompt_tuning", "p_tuning", "reft"):
        seconds *= 0.7  # no weight gradients for the frozen base
    return seconds, params


CALIBRATION_RUNS = 5


def _calibration(kind: str) -> tuple[float, int]:
    """(median of real / nominal duration, runs used) over the last succeeded runs on this kind of device."""
    from pipelines.train.spec import effective_batch, estimate_steps
    from storage import snapshots as snapshot_store
    from storage import training as run_store

    db = get_database()
    ratios = []
    for run in run_store.list_runs(db, status="succeeded", limit=50):
        if len(ratios) >= CALIBRATION_RUNS or not (run.started_at and run.finished_at and run.snapshot_id):
            continue
        if ("cuda" if (run.device or "cpu").startswith("cuda") else "cpu") != kind:
            continue
        try:
            spec = RunSpec.from_stored(run.spec)
            n_train = snapshot_store.get_snapshot(db, run.snapshot_id).n_train
        except StudioError:  # a spec or snapshot from an older version: not a basis
            continue
        nominal, _ = _nominal_seconds(spec, estimate_steps(spec, n_train, spec.processes),
                                      effective_batch(spec, spec.processes), kind)
        real = (run.finished_at - run.started_at).total_seconds()
        if nominal and real > 0:
            ratios.append(real / nominal)
    if not ratios:
        return 1.0, 0
    ratios.sort()
    return ratios[len(ratios) // 2], len(ratios)


# Who may call what (team mode): changes need an admin, reads any signed-in person (studio/access.py).
access.guard_module(globals())
