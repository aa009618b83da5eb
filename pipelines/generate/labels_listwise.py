"""The listwise judge stage: one call per instruction rates all its kept candidates
(``judge_listwise``), and the facts a preference pair records about it.

Rows: one judgment per candidate per pass (mode 'listwise'; ``order_swapped`` true for the reversed
pass), all rows of an instruction in one transaction, so a kill never leaves half a list. Each row
holds the whole raw reply (the lineage view shows it under every candidate); the call's tokens
and cost sit on the row of the candidate shown first, so sums over judgments count each call once.
The shown order is not a column: it is reproducible (``shuffled_order`` of the run and instruction
ids) and each preference pair stores it in its metadata as ``shown_order``.
An instruction is judged only once every candidate it expects exists and is preprocessed (a failed
response call is retried by a resume first), so its list never changes after it was judged.
"""

from __future__ import annotations

from typing import Any

from pipelines.generate.context import RunContext, chunks, drive
from pipelines.judge.llm import LLMJudge
from pipelines.judge.listwise import ListwiseItem, ListwiseJudge, ListwiseJudgment, shuffled_order, \
    swap_agreement
from pipelines.generate.label_ids import expected_responses, judge_config, listwise_id, run_state, store_judge_templates
from storage import generation as store


def item_key(ctx: RunContext, instruction_id: str) -> str:
    """What seeds an instruction's shuffle: stable across resumes, different per run."""
    return f"{ctx.run_id}:{instruction_id}"


def _items(ctx: RunContext) -> list[ListwiseItem]:
    instructions, responses, judgments = run_state(ctx)
    items = []
    for ins in instructions:
        rows = [responses.get(rid) for rid in expected_responses(ctx, ins["id"])]
        if any(r is None or r["status"] == "pending" for r in rows):
            continue
        kept = [r for r in rows if r["status"] == "kept"]
        if kept and listwise_id(ctx, kept[0]["id"]) not in judgments:
            items.append(ListwiseItem(item_key(ctx, ins["id"]), ins["text"], [(r["id"], r["text"]) for r in kept]))
    return items


def _rows(ctx: RunContext, judgment: ListwiseJudgment, template_id: str) -> list[dict[str, Any]]:
    rows = []
    for p in judgment.passes:
        for shown, rid in enumerate(p.order):
            first = shown == 0
            rows.append({
                "id": listwise_id(ctx, rid, p.reversed), "run_id": ctx.run_id, "mode": "listwise", "judge_kind": "llm",
                "judge_model": judgment.judge_model, "template_id": template_id, "response_id": rid,
                "order_swapped": p.reversed, "aspect_scores": p.scores.get(rid) or None, "overall_score": p.overall(rid),
                "swap_agreement": judgment.swap_agreement, "rationale": p.rationales.get(rid),
                "raw_output": p.raw_output, "parse_status": p.parse_status,
                "prompt_tokens": p.prompt_tokens if first else 0,
                "completion_tokens": p.completion_tokens if first else 0,
                "cost_usd": p.cost_usd if first else 0.0, "llm_call_id": p.call_id})
    return rows


async def listwise_stage(ctx: RunContext) -> None:
    items = _items(ctx)
    if not items:
        return
    config = judge_config(ctx)
    template_id = store_judge_templates(ctx, config)["listwise"]
    async with ctx.backend(ctx.config.judge.target, "judge") as backend:
        judge = ListwiseJudge(LLMJudge(backend, config))

        async def call(batch):
            return await judge.ajudge(batch)

        def write(batch, judgments: list[ListwiseJudgment]) -> int:
            rows = []
            for j in judgments:
                if j.call_failed:  # no reply to keep: store nothing, so a resume asks again
                    ctx.fail("judge", j.error or "a listwise judge call failed")
                else:
                    rows += _rows(ctx, j, template_id)
            if judgments and not rows and ctx.aborted is None:
                ctx.aborted = f"{backend.target} failed every call of a listwise judge batch: {judgments[0].error}"
            backend.flush()
            store.write_batch(ctx.db, judgments=rows)
            return len(batch)

        await drive(ctx, "judge", chunks(items, ctx.config.batch_size), call, write, len(items), "instruction")


def listwise_pair_facts(ctx: RunContext, ins: dict, candidates: list[tuple], chosen: str,
                        rejected: str) -> tuple[bool | None, dict[str, Any]]:
    """(swap_agreement, metadata) for a listwise pair: the order the judge saw, whether the reversed
    pass ran, and each pass's score of the chosen and the rejected candidate."""
    ids = [row["id"] for row, _ in candidates]
    shown = [ids[i] for i in shuffled_order(item_key(ctx, ins["id"]), len(ids))]
    by_id = {row["id"]: j for row, j in candidates}
    checked = any(j.get("reversed_pass_id") for j in by_id.values())
    first = {rid: by_id[rid].get("first_pass_score") for rid in (chosen, rejected)}
    second = {rid: by_id[rid].get("reversed_pass_score") for rid in (chosen, rejected)} if checked else None
    agreement = swap_agreement(first, second, chosen, rejected)
    facts = {"shown_order": shown, "swap_checked": checked, "first_pass_scores": first,
             "reversed_pass_scores": second,
             "reversed_judgment_ids": [j["reversed_pass_id"] for j in by_id.values() if j.get("reversed_pass_id")]}
    return agreement, facts
