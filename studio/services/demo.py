"""The built-in alignment demo: one chain that shows the studio measurably improving a model.

Why a recipe and not a notebook: the claim "DPO with LoRA on CPU raises the win rate against the
base" should be re-checkable with one command, and every stage should leave the same records a
person's own work leaves, so the lineage can be followed in the UI. The chain:

    seeds (examples/demo/train_prompts.jsonl) -> generation run (2 answers per prompt, scored by the
    length rubric against the rule each prompt states) -> preference pairs -> snapshot -> DPO run
    (LoRA) -> comparison of the trained model with its base on held-out prompts, judged by the same
    rubric -> leaderboard win rate with a 95% bootstrap interval.

The recipe's three YAML files live in ``examples/demo/``; ``DemoOptions`` only fills in ids, targets
and sizes. The CLI (``python -m studio demo``) and the Home page's button both end up in ``run_demo``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipelines.compare.spec import ComparisonSpec
from pipelines.generate.config import GenerationConfig
from pipelines.models.pull import DEFAULT_MODEL
from pipelines.train.spec import RunSpec
from core.errors import BadInput, StudioError, TrainingError
from core.inputs import read_yaml
from studio import access

RECIPE_DIR = Path(__file__).resolve().parents[2] / "examples" / "demo"
JOB_KIND = "demo"
RULE_MAX_WORDS = 10


@dataclass(frozen=True)
class DemoOptions:
    """What may change between demo runs; everything else is the recipe in ``recipe_dir``."""

    base_model: str = field(default=DEFAULT_MODEL, metadata={"help": "Registry name of the model to align."})
    generator: str | None = field(default=None, metadata={
        "help": "Who writes the candidate answers (default: the recipe's, the embedded endpoint)."})
    train_prompts: int | None = field(default=None, metadata={"help": "Use only the first N training prompts."})
    heldout_prompts: int | None = field(default=None, metadata={"help": "Evaluate on the first N held-out prompts."})
    max_steps: int | None = field(default=None, metadata={"help": "DPO optimizer steps (default: the recipe's)."})
    eval_max_tokens: int | None = field(default=None, metadata={"help": "Most tokens per evaluation answer."})
    recipe_dir: Path = field(default=RECIPE_DIR, metadata={"help": "Folder with generate/train/compare.yaml."})

    def __post_init__(self):
        for name in ("train_prompts", "heldout_prompts", "max_steps", "eval_max_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise BadInput(f"{name}={value!r} is not a positive whole number.", hint="Use e.g. 40, or leave it out.")
        if not isinstance(self.base_model, str) or not self.base_model.strip():
            raise BadInput("base_model is empty.", hint=f"Name a registered model, e.g. {DEFAULT_MODEL}.")
        if not (Path(self.recipe_dir) / "generate.yaml").is_file():
            raise BadInput(f"{self.recipe_dir} holds no demo recipe (generate.yaml).",
                           hint="Point recipe_dir at a folder like examples/demo.")

    @classmethod
    def quick(cls, **overrides: Any) -> "DemoOptions":
        """A smaller chain (minutes less) that checks the wiring; its figures are noisier."""
        return cls(**{"train_prompts": 32, "heldout_prompts": 40, "max_steps": 8, **overrides})


@dataclass
class StageTiming:
    stage: str
    seconds: float
    detail: str


@dataclass
class DemoResult:
    """The chain's ids (its lineage) and the headline figures."""

    generation_run_id: str
    preference_pairs: int
    snapshot_id: str
    training_run_id: str
    trained_model: str
    comparison_id: str
    win_rate: float
    ci_low: float
    ci_high: float
    wins: int
    losses: int
    ties: int
    base_pass_rate: float
    trained_pass_rate: float
    stages: list[StageTiming] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return round(sum(s.seconds for s in self.stages), 1)

    @property
    def significant(self) -> bool:
        return self.ci_low > 0.5

    def headline(self) -> str:
        n = self.wins + self.losses + self.ties
        return (f"trained vs base: win rate {self.win_rate:.1%} (95% CI {self.ci_low:.1%}-{self.ci_high:.1%}; "
                f"{self.wins} wins, {self.losses} losses, {self.ties} ties of {n}); rule followed "
                f"{self.base_pass_rate:.0%} -> {self.trained_pass_rate:.0%}; {self.seconds:.0f} s")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": self.seconds, "significant": self.significant}


Progress = Callable[..., None]


def _read_yaml(path: Path) -> dict:
    data = read_yaml(path, "demo settings file")
    if not isinstance(data, dict):
        raise BadInput(f"{path} is not a mapping of settings.", hint="Restore it from examples/demo.")
    return data


def _recipe_path(options: DemoOptions, value: str) -> str:
    """Recipe files name their data relative to the repository root; resolve them from the recipe."""
    path = Path(value)
    if path.is_absolute():
        return str(path)
    local = Path(options.recipe_dir) / path.name
    return str(local if local.is_file() else path.resolve())


def generation_config(options: DemoOptions) -> GenerationConfig:
    data = _read_yaml(Path(options.recipe_dir) / "generate.yaml")
    data["seeds"] = {**data["seeds"], "file": _recipe_path(options, data["seeds"]["file"]),
                     "limit": options.train_prompts or data["seeds"].get("limit")}
    if options.generator:
        data["responses"]["generators"] = [{**g, "target": options.generator} for g in data["responses"]["generators"]]
    return GenerationConfig.from_dict(data)


def train_spec(options: DemoOptions, snapshot_id: str, suffix: str) -> RunSpec:
    data = _read_yaml(Path(options.recipe_dir) / "train.yaml")
    data.update(base_model=options.base_model, snapshot_id=snapshot_id, name=f"{data['name']}-{suffix}")
    if options.max_steps:
        data["hyper"] = {**data.get("hyper", {}), "max_steps": options.max_steps}
    return RunSpec.from_dict(data)


def comparison_spec(options: DemoOptions, trained: str, training_run_id: str) -> ComparisonSpec:
    data = _read_yaml(Path(options.recipe_dir) / "compare.yaml")
    prompts = dict(data.pop("prompts"))
    prompts["path"] = _recipe_path(options, prompts["path"])
    if options.heldout_prompts:
        prompts["limit"] = options.heldout_prompts
    data.update(models=[f"local:{trained}", f"local:{options.base_model}"], prompts=prompts,
                training_run_id=training_run_id, name=f"demo: {trained} vs {options.base_model}")
    if options.eval_max_tokens:
        data["sampling"] = {**data.get("sampling", {}), "max_tokens": options.eval_max_tokens}
    return ComparisonSpec.from_dict(data)


# -- the stages --------------------------------------------------------------------------------------
def _check_base(options: DemoOptions) -> None:
    from studio.services import models as models_svc

    try:
        record = models_svc.get_model(options.base_model)
    except StudioError:
        raise BadInput(f"The demo's base model {options.base_model!r} is not registered.",
                       hint="Run `python -m studio models pull` first (it fetches SmolLM2-135M-Instruct).") from None
    if not record.hf_path:
        raise BadInput(f"The model {options.base_model!r} has no trainable transformers folder.",
                       hint="Pull it with `python -m studio models pull` (it saves a safetensors copy).")


def generate_pairs(options: DemoOptions, progress: Any = None) -> tuple[str, int, str]:
    """Seeds -> candidates -> rubric scores -> preference pairs. Returns (run id, pairs, detail)."""
    from studio.services.generate import run_generation
    from studio.services import generate as generate_svc

    summary = run_generation(generation_config(options), progress=progress)
    pairs = generate_svc.count_pairs("preference", {"run_id": summary.run_id})
    if summary.status not in ("succeeded", "warnings", "partial") or pairs < 2:
        raise TrainingError(f"The demo's generation run {summary.run_id} ended {summary.status} with {pairs} "
                            "preference pairs.", hint=f"See `python -m studio generations show {summary.run_id}`.")
    return summary.run_id, pairs, f"{pairs} preference pairs from run {summary.run_id} ({summary.status})"


def freeze_snapshot(run_id: str) -> tuple[str, str]:
    """The pairs of this generation run, frozen; all of them train (evaluation uses held-out prompts)."""
    from studio.services import snapshots

    spec = snapshots.SnapshotSpec(record_kind="preference", name=f"demo pairs {run_id}", generation_run_ids=(run_id,),
                                  eval_fraction=0.0, check_max_length=96)
    summary = snapshots.create_snapshot(spec)
    return summary.id, f"snapshot {summary.id}: {summary.n_train} rows to train"


def train_dpo(options: DemoOptions, snapshot_id: str, suffix: str) -> tuple[str, str, str]:
    """The DPO run, in this process (a demo job is already a background process)."""
    from studio.services import training

    run = training.start_run(train_spec(options, snapshot_id, suffix), detach=False)
    run = training.execute_run(run.id, run.job_id, show_bar=False)
    if run.status != "succeeded" or not run.output_model:
        raise TrainingError(f"The demo's DPO run {run.id} ended {run.status}: {run.error or 'no output model'}.",
                            hint=f"See `python -m studio runs show {run.id}`.")
    return run.id, run.output_model, f"run {run.id} -> model {run.output_model}"


def evaluate(options: DemoOptions, trained: str, training_run_id: str, progress: Progress | None = None
             ) -> tuple[str, Any, tuple[float, float]]:
    """Both models answer the held-out prompts; the rubric votes; the leaderboard gives the interval."""
    from studio.services import compare

    spec = comparison_spec(options, trained, training_run_id)
    created = compare.create_comparison(spec, background=False)
    result = compare.run_comparison(created.comparison_id, progress=progress)
    if result.status not in ("ready", "partial"):
        raise TrainingError(f"The demo's comparison {created.comparison_id} ended {result.status}: "
                            f"{'; '.join(result.messages) or 'no answers'}.",
                            hint=f"See `python -m studio comparisons show {created.comparison_id}`.")
    board = compare.leaderboard(comparison_id=created.comparison_id, voter_kind="rubric", n_boot=2000)
    row = next((r for r in board.win_rates if r.model == spec.models[0] and r.opponent == spec.models[1]), None)
    if row is None:
        raise TrainingError(f"The comparison {created.comparison_id} has no rubric votes.",
                            hint="Check the judge settings in examples/demo/compare.yaml.")
    return created.comparison_id, row, pass_rates(created.comparison_id, spec)


def _evaluate_stage(options: DemoOptions, trained: str, train_id: str, update: Progress) -> tuple:
    cmp_id, row, rates = evaluate(options, trained, train_id, update)
    return cmp_id, row, rates, f"comparison {cmp_id}: win rate {row.win_rate:.1%} [{row.ci_low:.1%}, {row.ci_high:.1%}]"


def pass_rates(comparison_id: str, spec: ComparisonSpec) -> tuple[float, float]:
    """Share of held-out answers that follow the rule, for (base, trained)."""
    from pipelines.judge.rubrics import RubricJudge
    from studio.services import compare

    judge_spec = spec.judge_spec()
    rubric = RubricJudge(judge_spec.rubric, judge_spec.params)
    page = compare.get_side_by_side(comparison_id, page_size=10_000)
    passed = {m: [] for m in spec.models}
    for row in page.rows:
        for answer in row.answers:
            passed[answer.model].append(bool(rubric.judge(answer.output_id, row.prompt, answer.text).passed))
    rate = {m: (sum(v) / len(v) if v else 0.0) for m, v in passed.items()}
    return rate[spec.models[1]], rate[spec.models[0]]


def run_demo(options: DemoOptions | None = None, reporter: Any = None) -> DemoResult:
    """The whole chain in the foreground; ``reporter`` is a ProgressReporter (or None)."""
    from storage.ids import new_id

    options = options or DemoOptions()
    _check_base(options)
    update = reporter.update if reporter is not None else (lambda **kw: None)
    stages: list[StageTiming] = []

    def timed(stage: str, fn: Callable[[], tuple]) -> tuple:
        update(stage=f"demo: {stage}", message=f"demo: {stage}")
        started = time.monotonic()
        out = fn()
        stages.append(StageTiming(stage, round(time.monotonic() - started, 1), out[-1] if isinstance(out[-1], str) else ""))
        print(f"demo {stage}: {stages[-1].detail} ({stages[-1].seconds:.0f} s)", file=sys.stderr, flush=True)
        return out

    run_id, pairs, _ = timed("generate", lambda: generate_pairs(options, reporter))
    snapshot_id, _ = timed("snapshot", lambda: freeze_snapshot(run_id))
    train_id, trained, _ = timed("train", lambda: train_dpo(options, snapshot_id, new_id("demo")[-6:]))
    cmp_id, row, (base_rate, trained_rate), _ = timed("evaluate", lambda: _evaluate_stage(options, trained, train_id, update))
    result = DemoResult(run_id, pairs, snapshot_id, train_id, trained, cmp_id, round(row.win_rate, 4),
                        round(row.ci_low, 4), round(row.ci_high, 4), row.wins, row.losses,
                        row.ties + row.both_bad, round(base_rate, 4), round(trained_rate, 4), stages)
    update(stage="demo: done", message=result.headline(), result=result.to_dict())
    return result


def start_demo_job(quick: bool = False) -> str:
    """The demo as a background job (the Home page's button); its progress and result land in the job."""
    from studio.jobs import start_job

    DemoOptions()   # the recipe is there
    return start_job(JOB_KIND, ["demo", *(["--quick"] if quick else [])], "alignment demo" + (" (quick)" if quick else ""))


def latest_demo() -> Any:
    """The most recent demo job (JobInfo) or None: its progress holds the result when it succeeded."""
    from studio.jobs import list_jobs

    found = list_jobs(kind=JOB_KIND)
    return found[0] if found else None


# Who may call what (team mode): changes need an admin, reads any signed-in person (studio/access.py).
access.guard_module(globals(), manage={
    "generate_pairs": "run the demo's generation",
    "freeze_snapshot": "make the demo's snapshot",
    "train_dpo": "train the demo's model",
    "evaluate": "evaluate the demo's model",
    "run_demo": "run the demo",
    "start_demo_job": "start the demo",
})
