"""Compare models: what the Compare page and the CLI call.

Why one service: a comparison is created once (its prompt set fixed, its models checked), generated
in a background job (or in the foreground by the CLI), voted on by people in the arena and by
judges, and read back as a leaderboard; every finished training run is compared with its base the
same way (``evaluate_run_against_base``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

from pipelines.compare import prompts as prompt_sets
from pipelines.compare.board import Leaderboard, build_leaderboard
from pipelines.compare.judging import JudgeReport, JudgeSpec, judge_with_llm, judge_with_rubric
from pipelines.compare.leakage import check_leakage
from pipelines.compare.run import RunResult, run_comparison as run_pipeline
from pipelines.compare.spec import ComparisonSpec
from storage import compare as store
from storage.db import get_database
from storage.ids import new_id
from core.errors import BadInput, NotAllowed, NotFound
from studio.services import models as models_svc
from studio import access

JOB_KIND = "comparison"
WINNERS = store.WINNERS


@dataclass
class CreatedComparison:
    comparison_id: str
    job_id: str | None
    prompts: int
    problems: list[str] = field(default_factory=list)     # skipped upload rows, by line
    warnings: list[str] = field(default_factory=list)     # leakage


@dataclass
class ComparisonSummary:
    comparison_id: str
    name: str | None
    status: str
    models: list[str]
    prompt_source: str
    prompt_source_id: str | None
    counts: dict[str, int]
    report: dict[str, Any]
    spec: dict[str, Any]
    training_run_id: str | None = None
    job_id: str | None = None
    created_at: Any = None


@dataclass
class Answer:
    output_id: str
    model: str
    text: str
    words: int
    truncated: bool                 # the prompt was shortened to fit the model's context
    reward_score: float | None
    cut_off: bool = False           # the answer stopped at max_tokens, not where the model ended it


@dataclass
class SideBySideRow:
    prompt_id: str
    prompt: str
    reference: str | None
    metadata: dict[str, Any]
    answers: list[Answer]           # in the comparison's model order; a missing answer is left out


@dataclass
class SideBySidePage:
    rows: list[SideBySideRow]
    total: int
    models: list[str]


@dataclass
class ArenaPair:
    """Two anonymous answers; the models stay hidden until the vote is cast."""

    comparison_id: str
    prompt_id: str
    prompt: str
    output_a_id: str
    text_a: str
    output_b_id: str
    text_b: str


@dataclass
class VoteResult:
    model_a: str
    model_b: str
    winner: str


def _db():
    return get_database()


def _require(comparison_id: str) -> store.ComparisonRow:
    row = store.get_comparison(_db(), comparison_id)
    if row is None:
        raise NotFound(f"There is no comparison {comparison_id!r}.", hint="`python -m studio comparisons list` lists them.")
    return row


def _check_targets(models: tuple[str, ...]) -> None:
    known = {t.key for t in models_svc.list_targets()}
    for target in models:
        if target not in known:
            raise NotFound(f"{target!r} is not a model or endpoint the studio knows.",
                           hint=f"Pick from: {', '.join(sorted(known)) or 'none yet (add one on the Models page)'}.")


def identity_for(target: str) -> dict[str, Any]:
    """What makes two answers of ``target`` interchangeable: its weights or its endpoint and model."""
    kind, _, name = target.partition(":")
    if kind == "local":
        m = models_svc.get_model(name)
        return {"id": m.id, "hf_path": m.hf_path, "adapter_path": m.adapter_path}
    e = models_svc.get_endpoint(name)
    return {"base_url": e.base_url, "model": e.model}


def _reward_path(name: str) -> str:
    model = models_svc.get_model(name)
    if not model.hf_path:
        raise BadInput(f"The reward model {name!r} has no transformers folder.", hint="Register its folder.")
    return model.hf_path


def build_spec(**fields_: Any) -> ComparisonSpec:
    """A validated ComparisonSpec from the page's fields (the same checks as a YAML config)."""
    return ComparisonSpec(**fields_)


def list_rubrics() -> list:
    from pipelines.judge.rubrics import list_rubrics as rubrics

    return rubrics()


# -- create and run ------------------------------------------------------------------------------------
def create_comparison(spec: ComparisonSpec, background: bool = True) -> CreatedComparison:
    """Check the models, fix the prompt set, warn about leakage, and start generating (as a job)."""
    _check_targets(spec.models)
    if spec.judge_spec() and spec.judge_spec().kind == "llm":
        _check_targets((spec.judge_spec().target,))
    db = _db()
    items, problems = prompt_sets.load_prompts(
        db, spec.prompt_source, spec.prompt_source_id, **({"text_column": spec.text_column,
                                                           "reference_column": spec.reference_column,
                                                           "metadata_columns": spec.metadata_columns}
                                                          if spec.prompt_source == "upload" else {}))
    items = items[: spec.limit] if spec.limit else items
    comparison_id = new_id("cmp")
    rows = [store.PromptRow(store.prompt_id(comparison_id, i, it.prompt), comparison_id, it.prompt, it.reference,
                            it.source_record_id, {**it.metadata, "_position": i}) for i, it in enumerate(items)]
    warnings = leakage_warnings(list(spec.models), [it.prompt for it in items])
    row = store.ComparisonRow(comparison_id, spec.name or f"{' vs '.join(spec.models)}", None, spec.prompt_source,
                              spec.prompt_source_id, list(spec.models),
                              {"spec": spec.to_dict(), "warnings": warnings, "problems": problems[:20]},
                              spec.training_run_id, "created")
    store.create_comparison(db, row, rows)
    job_id = start_comparison_job(comparison_id) if background else None
    return CreatedComparison(comparison_id, job_id, len(rows), problems, warnings)


def start_comparison_job(comparison_id: str) -> str:
    from studio.jobs import start_job

    row = _require(comparison_id)
    job_id = start_job(JOB_KIND, ["compare", "--comparison-id", comparison_id], f"compare {row.name}")
    store.set_job(_db(), comparison_id, job_id)
    return job_id


def run_comparison(comparison_id: str, progress: Callable[..., None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> RunResult:
    """Generate what is missing, score, judge (foreground: the CLI and the job call this)."""
    _require(comparison_id)
    return run_pipeline(_db(), comparison_id, backend_for=models_svc.backend_for, identity_for=identity_for,
                        reward_model_path=_reward_path, progress=progress, should_stop=should_stop)


def resume_comparison(comparison_id: str) -> str:
    row = _require(comparison_id)
    if row.status in ("generating", "judging") and row.job_id:
        from studio.jobs import get_job

        if get_job(row.job_id).active:
            raise BadInput(f"Comparison {comparison_id} is still running.", hint="Wait for it, or cancel its job first.")
    return start_comparison_job(comparison_id)


def _summary(row: store.ComparisonRow) -> ComparisonSummary:
    return ComparisonSummary(row.id, row.name, row.status, row.model_ids, row.prompt_source, row.prompt_source_id,
                             store.counts(_db(), row.id), row.spec.get("report") or {}, row.spec.get("spec") or {},
                             row.training_run_id, row.job_id, row.created_at)


def list_comparisons() -> list[ComparisonSummary]:
    return [_summary(r) for r in store.list_comparisons(_db())]


def get_comparison(comparison_id: str) -> ComparisonSummary:
    return _summary(_require(comparison_id))


# -- side by side ---------------------------------------------------------------------------------------
def get_side_by_side(comparison_id: str, page: int = 0, page_size: int = 10, search: str | None = None,
                     truncated_only: bool = False, slice_key: str | None = None,
                     slice_value: str | None = None) -> SideBySidePage:
    row = _require(comparison_id)
    if page < 0 or page_size < 1:
        raise BadInput(f"page={page}, page_size={page_size} is not a page.", hint="Use page >= 0 and page_size >= 1.")
    prompts, total = store.prompt_page(_db(), comparison_id, search=(search or "").strip() or None,
                                       truncated_only=truncated_only, slice_key=slice_key, slice_value=slice_value,
                                       limit=page_size, offset=page * page_size)
    by_prompt: dict[str, dict[str, store.OutputRow]] = {}
    for out in store.outputs_of_prompts(_db(), [p.id for p in prompts]):
        by_prompt.setdefault(out.prompt_id, {})[out.model_id] = out
    rows = []
    for p in prompts:
        answers = [Answer(o.id, m, o.text, len(o.text.split()), o.truncated, o.reward_score,
                          (o.sampling_params or {}).get("finish_reason") == "length")
                   for m in row.model_ids if (o := by_prompt.get(p.id, {}).get(m))]
        meta = {k: v for k, v in p.metadata.items() if not k.startswith("_")}
        rows.append(SideBySideRow(p.id, p.prompt, p.reference, meta, answers))
    return SideBySidePage(rows, total, row.model_ids)


def answer_diff(left: str, right: str) -> tuple[str, str]:
    """Both answers as escaped HTML with the words that differ highlighted."""
    from pipelines.compare.diff import to_html, word_diff

    a, b = word_diff(left, right)
    return to_html(a), to_html(b)


# -- arena ----------------------------------------------------------------------------------------------
def _check_voter(voter: str | None) -> str:
    """The voter: in team mode the signed-in person (voting under another name is refused), else the
    typed name."""
    if access.team_mode():
        actor = access.current()
        if voter not in (None, "", actor.name):
            raise NotAllowed(f"{actor.name} cannot vote as {voter!r}.", hint="Your votes count under your own name.")
        return actor.name
    if not isinstance(voter, str) or not voter.strip():
        raise BadInput("The voter name is empty.", hint="Type your name, so each person votes once per pair.")
    return voter.strip()


def next_arena_pair(comparison_id: str, voter: str, rng: random.Random | None = None) -> ArenaPair | None:
    """A prompt and two answers this voter has not judged, fewest human votes first, random order.
    None when the voter has judged every pair."""
    voter = _check_voter(voter)
    row = _require(comparison_id)
    db = _db()
    rng = rng or random.Random()
    done = store.voted_pairs(db, comparison_id, voter)
    counts = store.human_vote_counts(db, comparison_id)
    prompts = {p.id: p for p in store.prompts_of(db, comparison_id)}
    by_prompt: dict[str, dict[str, store.OutputRow]] = {}
    for out in store.outputs_of(db, comparison_id):
        by_prompt.setdefault(out.prompt_id, {})[out.model_id] = out
    options = []
    for prompt_id, answers in by_prompt.items():
        present = [m for m in row.model_ids if m in answers]
        for i, first in enumerate(present):
            for second in present[i + 1:]:
                key = (prompt_id, *sorted([first, second]))
                if key not in done:
                    options.append((counts.get(key, 0), rng.random(), prompt_id, first, second))
    if not options:
        return None
    _, _, prompt_id, first, second = min(options)
    a, b = by_prompt[prompt_id][first], by_prompt[prompt_id][second]
    if rng.random() < 0.5:
        a, b = b, a
    return ArenaPair(comparison_id, prompt_id, prompts[prompt_id].prompt, a.id, a.text, b.id, b.text)


def cast_vote(comparison_id: str, prompt_id: str, output_a_id: str, output_b_id: str, winner: str,
              voter: str) -> VoteResult:
    """Record a person's vote (A, B, tie or both bad) and reveal the two models."""
    voter = _check_voter(voter)
    if winner not in WINNERS:
        raise BadInput(f"winner={winner!r} is not a vote.", hint=f"Use one of {list(WINNERS)}.")
    db = _db()
    _require(comparison_id)
    a, b = store.get_output(db, output_a_id), store.get_output(db, output_b_id)
    if a is None or b is None or {a.prompt_id, b.prompt_id} != {prompt_id} or a.comparison_id != comparison_id \
            or a.model_id == b.model_id:
        raise BadInput("Those two answers are not a pair of this comparison's prompt.",
                       hint="Vote on the pair the arena shows.")
    vote = store.VoteRow(comparison_id, prompt_id, a.model_id, b.model_id, winner, "human", voter, a.id, b.id)
    if store.vote_exists(db, vote.id):
        raise BadInput(f"{voter} has already voted on this pair.", hint="Each person votes once per pair: take the next one.")
    store.write_votes(db, [vote], replace=False)
    return VoteResult(a.model_id, b.model_id, winner)


# -- judges and the leaderboard ----------------------------------------------------------------------------
def judge_comparison(comparison_id: str, judge: JudgeSpec | dict, progress: Callable[..., None] | None = None
                     ) -> JudgeReport:
    """Let an LLM or a rubric vote on every pair it has not judged yet (foreground)."""
    row = _require(comparison_id)
    spec = judge if isinstance(judge, JudgeSpec) else JudgeSpec.from_dict(judge)
    if spec is None:
        raise BadInput("No judge given.", hint="Give kind 'llm' with a target, or kind 'rubric' with a rubric name.")
    if spec.kind == "rubric":
        return judge_with_rubric(_db(), comparison_id, row.model_ids, spec, progress)
    _check_targets((spec.target,))
    backend = models_svc.backend_for(spec.target)
    try:
        return judge_with_llm(_db(), comparison_id, row.model_ids, spec, backend, progress)
    finally:
        if spec.target.startswith("endpoint:"):
            backend.close()


def leaderboard(comparison_id: str | None = None, voter_kind: str | None = None, slice_key: str | None = None,
                n_boot: int = 200, length_controlled: bool = False) -> Leaderboard:
    """Ratings and win rates over all comparisons (or one), all voters (or one kind), optionally sliced."""
    if voter_kind is not None and voter_kind not in store.VOTER_KINDS:
        raise BadInput(f"voter_kind={voter_kind!r} is not known.", hint=f"Use one of {list(store.VOTER_KINDS)}.")
    if slice_key is not None and not slice_key.replace("_", "").isalnum():
        raise BadInput(f"slice_key={slice_key!r} is not a metadata field name.", hint="Use e.g. topic or source.")
    if comparison_id:
        _require(comparison_id)
    return build_leaderboard(_db(), comparison_id=comparison_id, voter_kind=voter_kind, slice_key=slice_key,
                             n_boot=n_boot, length_controlled=length_controlled)


# -- reference metrics ---------------------------------------------------------------------------------------
@dataclass
class ModelMetrics:
    """Per model, beside the votes: BLEU / ROUGE-L against reference answers where prompts carry one,
    held-out perplexity (local causal models, on prompt + reference), and the reward model's accuracy
    on the held-out pairs of a preference snapshot (the comparison's reward model, when it has one)."""

    model: str
    answers: int
    with_reference: int
    bleu: float | None = None
    rouge_l: float | None = None
    perplexity: float | None = None
    notes: list[str] = field(default_factory=list)


def compute_metrics(comparison_id: str, with_perplexity: bool = True, max_texts: int = 64) -> dict[str, Any]:
    """Compute the reference metrics and keep them with the comparison (the page shows the stored ones)."""
    from pipelines.compare import metrics

    row = _require(comparison_id)
    db = _db()
    prompts = {p.id: p for p in store.prompts_of(db, comparison_id)}
    by_model: dict[str, list] = {}
    for out in store.outputs_of(db, comparison_id):
        by_model.setdefault(out.model_id, []).append(out)
    result = []
    for model in row.model_ids:
        outs = by_model.get(model, [])
        ref = [(o.text, prompts[o.prompt_id].reference) for o in outs if prompts[o.prompt_id].reference]
        m = ModelMetrics(model, len(outs), len(ref))
        if ref:
            m.bleu = round(metrics.bleu([h for h, _ in ref], [r for _, r in ref]), 2)
            m.rouge_l = round(metrics.rouge_l([h for h, _ in ref], [r for _, r in ref]), 4)
        if with_perplexity:
            _perplexity_into(m, model, [p for p in prompts.values() if p.reference][:max_texts])
        result.append(m)
    report = {"models": [m.__dict__ for m in result], "reward_accuracy": _reward_accuracy(row, max_texts)}
    store.update_spec(db, comparison_id, {"metrics": report})
    return report


def _perplexity_into(m: ModelMetrics, target: str, held_out: list) -> None:
    from pipelines.compare import metrics

    kind, _, name = target.partition(":")
    if kind != "local":
        m.notes.append("perplexity needs the model's weights (an endpoint gives none)")
        return
    if not held_out:
        m.notes.append("perplexity needs prompts with reference answers")
        return
    record = models_svc.get_model(name)
    base = models_svc.base_of(record)
    model_path = (base.hf_path if base and record.adapter_path else record.hf_path)
    if not model_path:
        m.notes.append("no transformers folder to measure perplexity with")
        return
    texts = [f"{p.prompt}\n{p.reference}" for p in held_out]
    m.perplexity = round(metrics.perplexity(model_path, texts, adapter_path=record.adapter_path), 3)


def _reward_accuracy(row: store.ComparisonRow, max_texts: int) -> dict[str, Any] | None:
    """The comparison's reward model on the snapshot's held-out preference pairs, when both exist."""
    from pipelines.compare.metrics import RewardScorer

    reward_model = (row.spec.get("spec") or {}).get("reward_model")
    if not reward_model or row.prompt_source != "snapshot_eval" or not row.prompt_source_id:
        return None
    triples = []
    for _, payload in store.snapshot_payloads(_db(), row.prompt_source_id, "eval")[:max_texts]:
        if isinstance(payload, dict) and payload.get("chosen") and payload.get("rejected"):
            text = prompt_sets.prompt_text(payload)
            triples.append((text, prompt_sets.reference_text({"chosen": payload["chosen"]}),
                            prompt_sets.reference_text({"chosen": payload["rejected"]})))
    if not triples:
        return None
    return {"reward_model": reward_model, "pairs": len(triples),
            "accuracy": round(RewardScorer(_reward_path(reward_model)).accuracy(triples), 4)}


def stored_metrics(comparison_id: str) -> dict[str, Any] | None:
    return (_require(comparison_id).spec or {}).get("metrics")


# -- training runs and guards -------------------------------------------------------------------------------
def leakage_warnings(models: list[str], prompts: list[str]) -> list[str]:
    """One line per compared model whose training prompts overlap these evaluation prompts."""
    db, out = _db(), []
    for target in models:
        kind, _, name = target.partition(":")
        run_id = store.model_training_run(db, name) if kind == "local" else None
        run = store.training_run(db, run_id) if run_id else None
        if not run or not run.get("snapshot_id"):
            continue
        train = [t for _, payload in store.snapshot_payloads(db, run["snapshot_id"], "train")
                 if (t := prompt_sets.prompt_text(payload))]
        message = check_leakage(target, prompts, train).message(len(prompts))
        if message:
            out.append(message)
    return out


def evaluate_run_against_base(run_id: str, judge: JudgeSpec | dict | None = None, background: bool = True,
                              sampling: dict | None = None, limit: int | None = None) -> CreatedComparison:
    """Compare a finished run's output model with its base on the snapshot's held-out prompts.

    Training jobs call this when a run succeeds (``background=False`` runs it in that process)."""
    db = _db()
    run = store.training_run(db, run_id)
    if run is None:
        raise NotFound(f"There is no training run {run_id!r}.", hint="Pick a run from the Train page.")
    base, tuned = store.model_name_by_id(db, run["base_model_id"]), store.model_name_by_id(db, run["output_model_id"])
    if not base or not tuned:
        raise BadInput(f"Training run {run_id} has no registered {'base' if not base else 'output'} model.",
                       hint="Evaluate once the run has finished and registered its model.")
    if not run.get("snapshot_id"):
        raise BadInput(f"Training run {run_id} has no dataset snapshot.", hint="Only runs on a snapshot can be evaluated.")
    spec = ComparisonSpec(models=(f"local:{tuned}", f"local:{base}"), prompt_source="snapshot_eval",
                          prompt_source_id=run["snapshot_id"], name=f"{run.get('name') or run_id} vs base",
                          judge=(judge.to_dict() if isinstance(judge, JudgeSpec) else judge),
                          sampling=sampling or {}, limit=limit, training_run_id=run_id)
    created = create_comparison(spec, background=background)
    if not background:
        run_comparison(created.comparison_id)
    return created


def run_evaluation(run_id: str) -> tuple[ComparisonSummary, Leaderboard] | None:
    """The latest evaluation of a training run (for the run's page), or None."""
    row = store.comparison_of_run(_db(), run_id)
    if row is None:
        return None
    return _summary(row), leaderboard(comparison_id=row.id, n_boot=100)


# Who may call what (team mode): changes need an admin, reads any signed-in person (studio/access.py).
access.guard_module(globals(), manage={
    "create_comparison": "create a comparison",
    "start_comparison_job": "start a comparison",
    "run_comparison": "run a comparison",
    "resume_comparison": "resume a comparison",
    "judge_comparison": "let a judge vote on a comparison",
    "compute_metrics": "compute a comparison's metrics",
    "evaluate_run_against_base": "evaluate a training run against its base",
}, review={
    "cast_vote": "vote in the arena",
})
