"""Human review in Argilla: push, pull, reconcile, agreement and status, for the Review page and CLI.

Long pushes and pulls run as background jobs (``python -m studio review push|pull ...`` with
``--job-id``), so they survive a page reload and report progress in the one job format. The same
functions run in the foreground from the CLI. Every Argilla problem is a ``ReviewError`` that says
what to do; nothing sent or pulled is lost when Argilla stops half-way.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Iterator

from pipelines.review.agreement import Agreement, compute_agreement
from pipelines.review.client import ArgillaClient, ArgillaNotFound, ArgillaUnavailable
from pipelines.review.pull import RoundPull, pull_round, reconcile_round
from pipelines.review.push import PushRequest, PushResult, dataset_url, push_records
from pipelines.review.reconcile import ReconcileRule, llm_label, majority, vote_label
from storage import review as store
from storage.db import get_database
from storage.review import FinalLabel
from studio import jobs
from studio.argilla_conn import get_connection
from core.errors import NotFound, ReviewError, StudioError
from studio import access

__all__ = ["PushRequest", "PushResult", "ReconcileRule", "FinalLabel", "ArgillaHealth", "PullResult", "RoundStatus",
           "ReviewStatus", "Disagreement", "check_connection", "push_for_review", "start_push", "pull_reviews",
           "start_pull", "reconcile_reviews", "review_status", "round_agreement", "list_disagreements",
           "reviewed_labels", "push_argv"]
PUSH_JOB, PULL_JOB = "review_push", "review_pull"


@dataclass
class ArgillaHealth:
    url: str | None
    embedded: bool
    ok: bool
    username: str | None = None
    role: str | None = None
    error: str | None = None


@dataclass
class PullResult:
    rounds: list[RoundPull] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(r.changed for r in self.rounds)

    def to_dict(self) -> dict:
        return {"rounds": [r.to_dict() for r in self.rounds], "errors": self.errors, "changed": self.changed}


@dataclass
class RoundStatus:
    round_id: str
    name: str
    kind: str
    status: str
    url: str | None
    records: int
    pushed: int
    reviewed: int
    submitted: int
    discarded: int
    drafts: int
    completed: int | None          # Argilla's count of records with min_submitted answers
    pending: int | None
    min_submitted: int
    last_pulled_at: datetime | None
    agreement: dict | None = None


@dataclass
class ReviewStatus:
    connection: ArgillaHealth
    rounds: list[RoundStatus]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Disagreement:
    round_id: str
    record_id: str
    prompt: str
    judge_label: str
    human_label: str
    votes: dict[str, str]
    confidence: float | None
    judge_model: str | None
    rationales: list[str]


def _client() -> ArgillaClient:
    conn = get_connection()
    return ArgillaClient(conn.url, conn.api_key)


@contextlib.contextmanager
def _naming_down_parts() -> Iterator[None]:
    """Argilla failing while the studio runs it embedded: say which of its parts is down (a crashed
    search engine or Redis makes Argilla answer 500, which alone does not tell the user why)."""
    try:
        yield
    except ArgillaUnavailable as err:
        down = _down_parts()
        if not down:
            raise
        raise ArgillaUnavailable(f"{err.message} {down}", hint=(err.hint or "") + " `python -m studio status` "
                                 "shows each part; the supervisor restarts crashed parts.") from None


def _down_parts() -> str:
    """'<part> is down (<why>).' for every embedded Argilla part not running now ('' if none or external)."""
    from studio.argilla_embedded import LABELS, PARTS
    from studio.lifecycle import current, service_health
    from core.procs import read_state

    try:
        if not get_connection().embedded:
            return ""
    except StudioError:
        return ""
    out = []
    for health in service_health():
        if health.name not in PARTS or health.state == "not used":
            continue
        state = read_state(current(), health.name)
        reindexing = health.name == "search" and int(state.get("restarts") or 0) > 0 and \
            str(state.get("recovered_at") or "") < str(state.get("started_at") or "")
        if health.state != "running":
            out.append(f"{LABELS[health.name]} is down ({health.detail}).")
        elif reindexing:
            out.append(f"{LABELS[health.name]} restarted and is being reindexed from Argilla's database.")
    return " ".join(out)


def check_connection() -> ArgillaHealth:
    """Is Argilla reachable, and does it take the key? Never raises."""
    try:
        conn = get_connection()
    except StudioError as err:
        return ArgillaHealth(url=None, embedded=True, ok=False, error=str(err))
    try:
        with ArgillaClient(conn.url, conn.api_key, retries=0, timeout_s=5) as client:
            me = client.me()
    except ReviewError as err:
        return ArgillaHealth(url=conn.url, embedded=conn.embedded, ok=False, error=str(err))
    return ArgillaHealth(url=conn.url, embedded=conn.embedded, ok=True, username=me.username, role=me.role)


# -- push ---------------------------------------------------------------------------------------------
def _check_source(request: PushRequest) -> None:
    """A push filtered by a run or comparison that does not exist is a mistake, not an empty push."""
    if not request.run_id:
        return
    db = get_database()
    if request.kind == "comparison":
        from storage import compare as compare_store

        found, what, listing = compare_store.get_comparison(db, request.run_id), "comparison", "comparisons list"
    else:
        from storage import generation as generation_store
        from storage import generation_queries
        from storage.pairs import PairFilter

        found = generation_store.get_run(db, request.run_id) or any(
            generation_queries.count_pairs(db, kind, PairFilter(run_id=request.run_id)) for kind in ("preference", "sft"))
        what, listing = "generation run", "generations list"
    if not found:
        raise NotFound(f"There is no {what} {str(request.run_id)[:80]!r} to push from.",
                       hint=f"`python -m studio {listing}` lists them; leave the run out to push from all.")


def push_for_review(request: PushRequest, progress=None) -> PushResult:
    """Send records to Argilla now (idempotent; resumes an interrupted push)."""
    _check_source(request)
    with _client() as client, _naming_down_parts():
        return push_records(get_database(), client, request, progress)


def push_argv(request: PushRequest) -> list[str]:
    """The ``python -m studio review push`` command line for a request (what a job runs)."""
    argv = ["review", "push", "--kind", request.kind, "--dataset", request.name, "--workspace", request.workspace,
            "--limit", str(request.limit), "--order", request.order, "--min-submitted", str(request.min_submitted),
            "--seed", str(request.seed), "--batch-size", str(request.batch_size)]
    for flag, value in (("--run", request.run_id), ("--model", request.model),
                        ("--min-confidence", request.min_confidence), ("--max-confidence", request.max_confidence),
                        ("--guidelines-text", request.guidelines)):
        if value is not None:
            argv += [flag, str(value)]
    return argv + (["--swap-disagreement"] if request.swap_disagreement_only else [])


def start_push(request: PushRequest) -> str:
    """Push in a background job; returns its id at once."""
    _check_source(request)
    get_connection()  # fail here, with its hint, rather than in the job
    return jobs.start_job(PUSH_JOB, push_argv(request), f"push {request.name} for review")


# -- pull ---------------------------------------------------------------------------------------------
def _rounds(round_id: str | None) -> list[dict]:
    db = get_database()
    if round_id is None:
        return [r for r in store.list_rounds(db) if r["status"] != "closed"]
    row = store.get_round(db, round_id)
    if row is None:
        raise NotFound(f"There is no review round {round_id!r}.", hint="`python -m studio review status` lists them.")
    return [row]


def pull_reviews(round_id: str | None = None, rule: ReconcileRule | None = None, progress=None,
                 force: bool = False) -> PullResult:
    """Fetch what changed since the last pull (every open round, or one) and reconcile.

    A round whose dataset was deleted in Argilla is reported in ``errors`` and the others go on;
    Argilla being down or refusing the key raises."""
    result = PullResult()
    rounds = _rounds(round_id)
    with _client() as client, _naming_down_parts():
        for row in rounds:
            try:
                result.rounds.append(pull_round(get_database(), client, row, rule, progress, force))
            except ReviewError as err:
                if round_id is not None or not str(err).startswith("The Argilla dataset"):
                    raise
                result.errors.append(str(err))
    return result


def start_pull(round_id: str | None = None) -> str:
    get_connection()
    argv = ["review", "pull"] + (["--round", round_id] if round_id else [])
    return jobs.start_job(PULL_JOB, argv, "pull reviews")


def reconcile_reviews(round_id: str, rule: ReconcileRule) -> int:
    """Apply another rule to what is stored (no pull); it becomes the round's rule. Returns reviewed count."""
    (row,) = _rounds(round_id)
    db = get_database()
    store.merge_round_settings(db, round_id, {"rule": {"rule": rule.rule, "tie_policy": rule.tie_policy}})
    return reconcile_round(db, row, rule)


# -- reading ------------------------------------------------------------------------------------------
def round_agreement(round_id: str) -> Agreement:
    (row,) = _rounds(round_id)
    db = get_database()
    aspects = store.aspect_scores(db, round_id) if row["record_kind"] == "preference" else {}
    return compute_agreement(row["record_kind"], store.round_records(db, round_id, row["record_kind"]),
                             store.round_responses(db, round_id), aspects)


def review_status(with_agreement: bool = True) -> ReviewStatus:
    """Connection health, every round with its counts and Argilla's progress, and agreement."""
    health = check_connection()
    db = get_database()
    counts = store.round_counts(db)
    client = _client() if health.ok else None
    rounds = []
    try:
        for row in store.list_rounds(db):
            c = counts.get(row["id"], {})
            progress = _progress(client, row)
            url = dataset_url(row["argilla_url"], row["argilla_dataset_id"]) if row["argilla_dataset_id"] else None
            rounds.append(RoundStatus(
                round_id=row["id"], name=row["name"], kind=row["record_kind"], status=row["status"], url=url,
                records=c.get("records", 0), pushed=c.get("pushed", 0), reviewed=c.get("reviewed", 0),
                submitted=c.get("submitted", 0), discarded=c.get("discarded", 0), drafts=c.get("drafts", 0),
                completed=progress.get("completed"), pending=progress.get("pending"),
                min_submitted=row["min_submitted"], last_pulled_at=row["last_pulled_at"],
                agreement=round_agreement(row["id"]).to_dict() if with_agreement else None))
    finally:
        if client is not None:
            client.close()
    return ReviewStatus(connection=health, rounds=rounds)


def _progress(client: ArgillaClient | None, row: dict) -> dict:
    if client is None or not row["argilla_dataset_id"]:
        return {}
    try:
        return client.progress(row["argilla_dataset_id"])
    except ArgillaNotFound:
        return {}


def list_disagreements(round_id: str, limit: int = 200) -> list[Disagreement]:
    """Records whose human majority differs from the LLM judge's label, least confident first."""
    (row,) = _rounds(round_id)
    db, kind = get_database(), row["record_kind"]
    responses = store.round_responses(db, round_id)
    out = []
    for record in store.round_records(db, round_id, kind):
        submitted = [r for r in responses.get(record["review_record_id"], []) if r["status"] == "submitted"]
        votes = {r["reviewer"]: vote_label(kind, r["answer"], record.get("order_swapped")) for r in submitted}
        votes = {k: v for k, v in votes.items() if v}
        human, _ = majority(list(votes.values()))
        judge = llm_label(kind, record)
        if human is None or judge is None or human == judge:
            continue
        out.append(Disagreement(round_id, record["record_id"], record["prompt"], judge, human, votes,
                                record.get("confidence"), record.get("judge_model"),
                                [r["answer"]["rationale"] for r in submitted if (r["answer"] or {}).get("rationale")]))
    out.sort(key=lambda d: (d.confidence is None, d.confidence or 0.0))
    return out[:limit]


def reviewed_labels(record_kind: str) -> dict[str, FinalLabel]:
    """record id -> final label of every reviewed-round record of this kind (see storage.review)."""
    return store.reviewed_labels(get_database(), record_kind)


def delete_round_dataset(round_id: str) -> None:
    """Delete the round's dataset in Argilla (used by tests and by 'start over'); answers stay in DuckDB."""
    (row,) = _rounds(round_id)
    if row["argilla_dataset_id"]:
        with _client() as client:
            try:
                client.delete_dataset(row["argilla_dataset_id"])
            except ArgillaNotFound:
                pass


# Who may call what (team mode): changes need an admin, reads any signed-in person (studio/access.py).
access.guard_module(globals(), manage={
    "push_for_review": "push pairs for review",
    "start_push": "start a push for review",
    "delete_round_dataset": "delete a review round's dataset",
}, review={
    "pull_reviews": "pull reviews back",
    "start_pull": "start pulling reviews back",
}, internal=("push_argv", "reconcile_reviews",))
