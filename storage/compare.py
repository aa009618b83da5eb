"""Comparisons: the prompt set, each model's cached output per prompt, and votes (human, LLM, rubric).

Ids are stable hashes, so re-running is idempotent: a prompt's id is (comparison, position, text),
an output's is (comparison, prompt, model), and a vote's is (comparison, prompt, the unordered
model pair, voter) — which is what makes "one vote per voter per pair" a primary key.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Sequence

from storage import compare_queries as q
from storage.db import Database
from storage.ids import stable_id

WINNERS = ("a", "b", "tie", "both_bad")
VOTER_KINDS = ("human", "llm", "rubric")


@dataclass
class ComparisonRow:
    id: str
    name: str | None
    job_id: str | None
    prompt_source: str
    prompt_source_id: str | None
    model_ids: list[str]
    spec: dict[str, Any]            # stored in the JSON column sampling_params: sampling, judge, report
    training_run_id: str | None
    status: str
    created_at: datetime | None = None


@dataclass
class PromptRow:
    id: str
    comparison_id: str
    prompt: str
    reference: str | None
    source_record_id: str | None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class OutputRow:
    id: str
    comparison_id: str
    prompt_id: str
    model_id: str
    text: str
    truncated: bool = False
    completion_tokens: int | None = None
    reward_score: float | None = None
    cache_key: str | None = None
    sampling_params: dict[str, Any] = field(default_factory=dict)


@dataclass
class VoteRow:
    comparison_id: str
    prompt_id: str
    model_a: str
    model_b: str
    winner: str
    voter_kind: str
    voter: str
    output_a_id: str | None = None
    output_b_id: str | None = None
    order_swapped: bool | None = None
    rationale: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return vote_id(self.comparison_id, self.prompt_id, self.model_a, self.model_b, self.voter_kind, self.voter)


def prompt_id(comparison_id: str, position: int, text: str) -> str:
    return stable_id("cprompt", comparison_id, position, text)


def output_id(comparison_id: str, prompt_id_: str, model: str) -> str:
    return stable_id("cout", comparison_id, prompt_id_, model)


def vote_id(comparison_id: str, prompt_id_: str, model_a: str, model_b: str, voter_kind: str, voter: str) -> str:
    return stable_id("vote", comparison_id, prompt_id_, sorted([model_a, model_b]), voter_kind, voter)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, ensure_ascii=False)


def _loads(value: Any, default: Any = None) -> Any:
    if value is None:
        return default
    return json.loads(value) if isinstance(value, str) else value


def _comparison(row) -> ComparisonRow:
    values = dict(zip(q.COMPARISON_COLUMNS, row))
    return ComparisonRow(
        id=values["id"], name=values["name"], job_id=values["job_id"], prompt_source=values["prompt_source"],
        prompt_source_id=values["prompt_source_id"], model_ids=_loads(values["model_ids"], []),
        spec=_loads(values["sampling_params"], {}), training_run_id=values["training_run_id"],
        status=values["status"], created_at=values["created_at"])


def _prompt(row) -> PromptRow:
    values = dict(zip(q.PROMPT_COLUMNS, row))
    values["metadata"] = _loads(values["metadata"], {})
    return PromptRow(**values)


def _output(row) -> OutputRow:
    values = dict(zip(q.OUTPUT_COLUMNS, row))
    values["sampling_params"] = _loads(values["sampling_params"], {})
    return OutputRow(**values)


# -- comparisons ----------------------------------------------------------------------------------
def create_comparison(db: Database, row: ComparisonRow, prompts: Sequence[PromptRow]) -> None:
    """The comparison and its fixed prompt set, in one transaction."""
    with db.session(transaction=True) as cur:
        cur.execute(q.INSERT_COMPARISON, [row.id, row.name, row.job_id, row.prompt_source, row.prompt_source_id,
                                          _json(row.model_ids), _json(row.spec), row.training_run_id, row.status])
        if prompts:
            cur.execute(q.INSERT_PROMPTS, [[p.id for p in prompts], [row.id] * len(prompts),
                                           [p.prompt for p in prompts], [p.reference for p in prompts],
                                           [p.source_record_id for p in prompts],
                                           [_json(p.metadata) for p in prompts]])


def get_comparison(db: Database, comparison_id: str) -> ComparisonRow | None:
    with db.session() as cur:
        row = cur.execute(q.SELECT_COMPARISON, [comparison_id]).fetchone()
    return _comparison(row) if row else None


def list_comparisons(db: Database, limit: int = 200) -> list[ComparisonRow]:
    with db.session() as cur:
        return [_comparison(r) for r in cur.execute(q.SELECT_COMPARISONS, [limit]).fetchall()]


def comparison_of_run(db: Database, training_run_id: str) -> ComparisonRow | None:
    with db.session() as cur:
        row = cur.execute(q.SELECT_RUN_COMPARISON, [training_run_id]).fetchone()
    return _comparison(row) if row else None


def set_status(db: Database, comparison_id: str, status: str) -> None:
    with db.session() as cur:
        cur.execute(q.SET_STATUS, [status, comparison_id])


def set_job(db: Database, comparison_id: str, job_id: str | None) -> None:
    with db.session() as cur:
        cur.execute(q.SET_JOB, [job_id, comparison_id])


def update_spec(db: Database, comparison_id: str, patch: dict[str, Any]) -> dict[str, Any]:
    """Merge ``patch`` into the comparison's JSON (report, judge settings) in one transaction."""
    with db.session(transaction=True) as cur:
        row = cur.execute(q.SELECT_COMPARISON, [comparison_id]).fetchone()
        spec = {**_comparison(row).spec, **patch} if row else dict(patch)
        cur.execute(q.SET_SPEC, [_json(spec), comparison_id])
    return spec


def counts(db: Database, comparison_id: str) -> dict[str, int]:
    with db.session() as cur:
        result = cur.execute(q.COUNTS, {"id": comparison_id})
        names = [d[0] for d in result.description]
        return dict(zip(names, result.fetchone()))


# -- prompts and outputs -------------------------------------------------------------------------------
def prompts_of(db: Database, comparison_id: str) -> list[PromptRow]:
    with db.session() as cur:
        return [_prompt(r) for r in cur.execute(q.SELECT_PROMPTS, [comparison_id]).fetchall()]


def prompt_page(db: Database, comparison_id: str, *, search: str | None = None, truncated_only: bool = False,
                slice_key: str | None = None, slice_value: str | None = None, limit: int = 25,
                offset: int = 0) -> tuple[list[PromptRow], int]:
    """One page of prompts (filtered by text in the prompt or any answer, truncation, a metadata value)
    and the total that match."""
    params = {"id": comparison_id, "search": f"%{search}%" if search else None, "truncated_only": truncated_only,
              "slice_path": f"$.{slice_key}" if slice_key else None, "slice_value": slice_value}
    with db.session() as cur:
        rows = cur.execute(q.SELECT_PROMPT_PAGE, {**params, "limit": limit, "offset": offset}).fetchall()
        total = cur.execute(q.COUNT_PROMPT_PAGE, params).fetchone()[0]
    return [_prompt(r) for r in rows], total


def write_outputs(db: Database, outputs: Sequence[OutputRow]) -> None:
    """A batch of outputs in one transaction; ids already stored are kept (generated once)."""
    unique = list({o.id: o for o in outputs}.values())
    if not unique:
        return
    columns = [[getattr(o, c) for o in unique] for c in q.OUTPUT_COLUMNS]
    columns[-1] = [_json(v) for v in columns[-1]]
    with db.session(transaction=True) as cur:
        cur.execute(q.INSERT_OUTPUTS, columns)


def outputs_of(db: Database, comparison_id: str) -> list[OutputRow]:
    with db.session() as cur:
        return [_output(r) for r in cur.execute(q.SELECT_OUTPUTS, [comparison_id]).fetchall()]


def outputs_of_prompts(db: Database, prompt_ids: Sequence[str]) -> list[OutputRow]:
    with db.session() as cur:
        return [_output(r) for r in cur.execute(q.SELECT_OUTPUTS_OF_PROMPTS, [list(prompt_ids)]).fetchall()]


def get_output(db: Database, output_id_: str) -> OutputRow | None:
    with db.session() as cur:
        row = cur.execute(q.SELECT_OUTPUT, [output_id_]).fetchone()
    return _output(row) if row else None


def cached_outputs(db: Database, cache_keys: Iterable[str]) -> dict[str, tuple[str, bool, int | None]]:
    """Outputs any comparison already generated for these cache keys: key -> (text, truncated, tokens)."""
    keys = list(dict.fromkeys(cache_keys))
    if not keys:
        return {}
    with db.session() as cur:
        return {r[0]: (r[1], bool(r[2]), r[3]) for r in cur.execute(q.SELECT_CACHED, [keys]).fetchall()}


def set_reward_scores(db: Database, scores: dict[str, float]) -> None:
    with db.session(transaction=True) as cur:
        cur.executemany(q.SET_REWARD, [[float(score), oid] for oid, score in scores.items()])


# -- votes ------------------------------------------------------------------------------------------------
def write_votes(db: Database, votes: Sequence[VoteRow], replace: bool) -> int:
    """Votes in one transaction. ``replace``: a re-judged pair overwrites the judge's old verdict;
    otherwise an existing vote (a person's) is kept. Returns how many rows were new or changed."""
    unique = list({v.id: v for v in votes}.values())
    if not unique:
        return 0
    columns = [[v.id for v in unique]] + [[getattr(v, c) for v in unique] for c in q.VOTE_COLUMNS[1:]]
    columns[-1] = [_json(v) for v in columns[-1]]
    with db.session(transaction=True) as cur:
        cur.execute(q.INSERT_VOTES_REPLACE if replace else q.INSERT_VOTES_KEEP, columns)
        changed = cur.fetchone()
    return int(changed[0]) if changed else len(unique)


def replace_round_votes(db: Database, round_id: str, votes: Sequence[VoteRow]) -> int:
    """The human votes that came from review round ``round_id`` in Argilla, as they stand now: written
    (replacing a vote of the same voter on the same pair), and the round's earlier votes that are no
    longer there (the answer was deleted or discarded) removed. Returns how many votes the round has."""
    votes = [dataclasses.replace(v, metadata={**v.metadata, "review_round_id": round_id}) for v in votes]
    write_votes(db, votes, replace=True)
    with db.session() as cur:
        cur.execute(q.DELETE_STALE_ROUND_VOTES, [round_id, [v.id for v in votes]])
    return len({v.id for v in votes})


def vote_exists(db: Database, vote_id_: str) -> bool:
    with db.session() as cur:
        return cur.execute(q.SELECT_VOTE, [vote_id_]).fetchone() is not None


def voted_pairs(db: Database, comparison_id: str, voter: str) -> set[tuple[str, str, str]]:
    """(prompt_id, model, model) with the models sorted: pairs this voter has judged."""
    with db.session() as cur:
        rows = cur.execute(q.SELECT_VOTED_PAIRS, [comparison_id, voter]).fetchall()
    return {(p, *sorted([a, b])) for p, a, b in rows}


def human_vote_counts(db: Database, comparison_id: str) -> dict[tuple[str, str, str], int]:
    with db.session() as cur:
        return {(p, a, b): n for p, a, b, n in cur.execute(q.SELECT_PAIR_VOTE_COUNTS, [comparison_id]).fetchall()}


def vote_table(db: Database, *, comparison_id: str | None = None, voter_kind: str | None = None,
               voter: str | None = None, slice_key: str | None = None) -> dict[str, Any]:
    """All matching votes as numpy columns (model_a, model_b, winner, voter_kind, voter, prompt_id, slice)."""
    params = {"comparison_id": comparison_id, "voter_kind": voter_kind, "voter": voter,
              "slice_path": f"$.{slice_key}" if slice_key else "$._none"}
    with db.session() as cur:
        return cur.execute(q.VOTE_TABLE, params).fetchnumpy()


def judge_order_counts(db: Database, comparison_id: str) -> list[tuple[str, int, int, int]]:
    """Per LLM judge: how often it preferred the answer shown first, second, or neither."""
    with db.session() as cur:
        return [tuple(r) for r in cur.execute(q.JUDGE_ORDER_COUNTS, [comparison_id]).fetchall()]


# -- reads from other stages ------------------------------------------------------------------------------
def model_name_by_id(db: Database, model_id: str | None) -> str | None:
    if not model_id:
        return None
    with db.session() as cur:
        row = cur.execute(q.SELECT_MODEL_BY_ID, [model_id]).fetchone()
    return row[0] if row else None


def model_training_run(db: Database, model_name: str) -> str | None:
    with db.session() as cur:
        row = cur.execute(q.SELECT_MODEL_RUN, [model_name]).fetchone()
    return row[0] if row else None


def training_run(db: Database, run_id: str) -> dict[str, Any] | None:
    with db.session() as cur:
        result = cur.execute(q.SELECT_TRAINING_RUN, [run_id])
        row = result.fetchone()
        return dict(zip([d[0] for d in result.description], row)) if row else None


def snapshot_exists(db: Database, snapshot_id: str) -> bool:
    with db.session() as cur:
        return cur.execute(q.SELECT_SNAPSHOT, [snapshot_id]).fetchone() is not None


def snapshot_payloads(db: Database, snapshot_id: str, split: str) -> list[tuple[str, dict[str, Any]]]:
    """(record_id, payload) of one split of a snapshot, in snapshot order."""
    with db.session() as cur:
        rows = cur.execute(q.SELECT_SNAPSHOT_PAYLOADS, [snapshot_id, split]).fetchall()
    return [(rid, _loads(payload, {})) for rid, payload in rows]
