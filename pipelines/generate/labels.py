"""The labelling stages of a run: judge every kept candidate (one call each, or all of an instruction's
candidates in one listwise call: ``labels_listwise``), compare the chosen and rejected ones in both
orders (pairwise mode), and turn the verdicts into SFT and preference pairs.

Ids are known before the calls, so a resume skips what exists:
* pointwise judgment: ``stable_id(run, response, judge, 'pointwise')``;
* listwise judgment: ``stable_id(run, response, judge, 'listwise' | 'listwise-reversed')``, one row
  per candidate per pass, every row of an instruction in one transaction;
* pairwise judgment: ``stable_id(run, chosen, rejected, judge, order)``, one row per order (both
  rows in one transaction; the row for order 'ba' shows the rejected response as A);
* pairs: ``stable_id(run, instruction)`` per kind, built only once every candidate of the
  instruction exists and is judged, so a pair never freezes an incomplete picture.
A reply that cannot be read (even after the repair prompt) is stored with parse_status 'failed' and
its raw output, and is left out of pairs. A call that failed outright stores nothing (counted as
failed), so a resume retries it; the response cache returns what a killed run already paid for.
"""

from __future__ import annotations

from typing import Any

from pipelines.generate.context import RunContext, chunks, drive
from pipelines.generate.label_ids import (expected_responses, judge_config, listwise_id, pairwise_id, pointwise_id,
                                          run_state, score_id, store_judge_templates)
from pipelines.generate.labels_listwise import listwise_pair_facts, listwise_stage
from pipelines.judge.llm import LLMJudge, choose_pair, combine_orders, pair_confidence
from storage import generation as store
from storage.ids import stable_id

_UNSWAP = {"a": "b", "b": "a", "tie": "tie"}


def _pointwise_row(ctx: RunContext, j, template_id: str | None) -> dict[str, Any]:
    return {"id": pointwise_id(ctx, j.response_id), "run_id": ctx.run_id, "mode": "pointwise",
            "judge_kind": j.judge_kind, "judge_model": j.judge_model, "template_id": template_id,
            "response_id": j.response_id, "aspect_scores": j.aspect_scores or None, "overall_score": j.overall,
            "rationale": j.rationale, "raw_output": j.raw_output, "parse_status": j.parse_status,
            "prompt_tokens": j.prompt_tokens, "completion_tokens": j.completion_tokens, "cost_usd": j.cost_usd,
            "llm_call_id": j.call_id}


def _call_failed(j) -> bool:
    """No reply at all (the call itself failed): store nothing, so a resume asks again."""
    return j.parse_status == "failed" and not j.raw_output


# -- pointwise -------------------------------------------------------------------------------------------
async def judge_stage(ctx: RunContext) -> None:
    if ctx.config.judge.kind == "llm" and ctx.config.judge.mode == "listwise":
        await listwise_stage(ctx)
        return
    instructions = {i["id"]: i for i in store.instructions_of(ctx.db, ctx.run_id, ("kept",))}
    existing = store.existing_ids(ctx.db, "judgments", ctx.run_id)
    todo = [r for r in store.responses_of(ctx.db, ctx.run_id, ("kept",))
            if r["instruction_id"] in instructions and pointwise_id(ctx, r["id"]) not in existing]
    if not todo:
        return
    batches = chunks(todo, ctx.config.batch_size)
    if ctx.config.judge.kind == "rubric":
        await _rubric_judge(ctx, instructions, batches, len(todo))
        return
    config = judge_config(ctx)
    template_id = store_judge_templates(ctx, config)["pointwise"]
    async with ctx.backend(ctx.config.judge.target, "judge") as backend:
        judge = LLMJudge(backend, config)

        async def call(batch):
            return await judge.ajudge_pointwise([(r["id"], instructions[r["instruction_id"]]["text"], r["text"])
                                                 for r in batch])

        def write(batch, judgments) -> int:
            rows = []
            for j in judgments:
                if _call_failed(j):
                    ctx.fail("judge", j.error or "the judge call failed")
                else:
                    rows.append(_pointwise_row(ctx, j, template_id))
            if judgments and not rows and ctx.aborted is None:
                ctx.aborted = f"{backend.target} failed every call of a judge batch: {judgments[0].error}"
            backend.flush()
            store.write_batch(ctx.db, judgments=rows)
            return len(batch)

        await drive(ctx, "judge", batches, call, write, len(todo), "judgment")


async def _rubric_judge(ctx: RunContext, instructions: dict, batches: list, total: int) -> None:
    from pipelines.judge.rubrics import RubricJudge
    from storage.seeds import get_seed

    rubric = ctx.config.judge.rubric
    judge = RubricJudge(rubric.name, rubric.params)
    references: dict[str, str | None] = {}

    def reference(instruction: dict) -> str | None:
        if instruction["method"] != "seed":  # a reference answers the seed, not a task written from it
            return None
        if instruction["seed_id"] not in references:
            seed = get_seed(ctx.db, instruction["seed_id"])
            references[instruction["seed_id"]] = seed.get("reference") if seed else None
        return references[instruction["seed_id"]]

    async def call(batch):
        return [judge.judge(r["id"], instructions[r["instruction_id"]]["text"], r["text"],
                            reference(instructions[r["instruction_id"]])) for r in batch]

    def write(batch, judgments) -> int:
        store.write_batch(ctx.db, judgments=[_pointwise_row(ctx, j, None) for j in judgments])
        return len(batch)

    await drive(ctx, "judge", batches, call, write, total, "judgment")


# -- pairwise ------------------------------------------------------------------------------------------------
def _candidates(ctx: RunContext, instruction_id: str, responses: dict, judgments: dict) -> list[tuple] | None:
    """(response, scoring judgment) of every kept candidate, or None while any is missing. In
    listwise mode the judgment's score is the mean over its passes (first and, if run, reversed)."""
    out = []
    for rid in expected_responses(ctx, instruction_id):
        row = responses.get(rid)
        if row is None or row["status"] == "pending":
            return None
        if row["status"] != "kept":
            continue
        judgment = judgments.get(score_id(ctx, rid))
        if judgment is None:
            return None
        if judgment["mode"] == "listwise":
            judgment = _listwise_combined(judgment, judgments.get(listwise_id(ctx, rid, reverse=True)))
        out.append((row, judgment))
    return out


def _listwise_combined(first: dict, second: dict | None) -> dict:
    passes = [j for j in (first, second) if j is not None and j["parse_status"] != "failed"
              and j["overall_score"] is not None]
    overall = round(sum(j["overall_score"] for j in passes) / len(passes), 4) if passes else None
    return {**first, "overall_score": overall, "parse_status": first["parse_status"] if passes else "failed",
            "first_pass_score": first["overall_score"] if first["parse_status"] != "failed" else None,
            "reversed_pass_score": (second["overall_score"] if second and second["parse_status"] != "failed"
                                    else None), "reversed_pass_id": second["id"] if second else None}


def _scored(candidates: list[tuple]) -> list[tuple[str, float | None]]:
    return [(row["id"], j["overall_score"] if j["parse_status"] != "failed" else None) for row, j in candidates]


async def pairwise_stage(ctx: RunContext) -> None:
    instructions, responses, judgments = run_state(ctx)
    items = []
    for ins in instructions:
        candidates = _candidates(ctx, ins["id"], responses, judgments)
        choice = choose_pair(_scored(candidates)) if candidates else None
        if choice and pairwise_id(ctx, choice[0], choice[1], "ab") not in judgments:
            items.append((ins["text"], (choice[0], responses[choice[0]]["text"]),
                          (choice[1], responses[choice[1]]["text"])))
    if not items:
        return
    config = judge_config(ctx)
    template_id = store_judge_templates(ctx, config)["pairwise"]
    async with ctx.backend(ctx.config.judge.target, "judge") as backend:
        judge = LLMJudge(backend, config)

        async def call(batch):
            return await judge.ajudge_pairwise(batch)

        def write(batch, verdicts) -> int:
            rows = []
            for v in verdicts:
                if any(r["parse_status"] == "failed" and not r["raw_output"] for r in v.order_results):
                    ctx.fail("judge", v.error or "a pairwise judge call failed")
                    continue
                rows += [_pairwise_row(ctx, v, r, template_id) for r in v.order_results]
            if verdicts and not rows and ctx.aborted is None:
                ctx.aborted = f"{backend.target} failed every call of a pairwise judge batch: {verdicts[0].error}"
            backend.flush()
            store.write_batch(ctx.db, judgments=rows)
            return len(batch)

        await drive(ctx, "judge pairwise", chunks(items, ctx.config.batch_size), call, write, len(items), "pair")


def _pairwise_row(ctx: RunContext, verdict, order: dict, template_id: str) -> dict[str, Any]:
    swapped = order["order"] == "ba"
    a, b = verdict.response_a_id, verdict.response_b_id
    return {"id": pairwise_id(ctx, a, b, order["order"]), "run_id": ctx.run_id, "mode": "pairwise",
            "judge_kind": "llm", "judge_model": verdict.judge_model, "template_id": template_id,
            "response_a_id": b if swapped else a, "response_b_id": a if swapped else b, "order_swapped": swapped,
            "preferred": order["preferred_shown"], "swap_agreement": verdict.swap_agreement,
            "rationale": order["rationale"], "raw_output": order["raw_output"], "parse_status": order["parse_status"],
            "prompt_tokens": order["prompt_tokens"], "completion_tokens": order["completion_tokens"],
            "cost_usd": order["cost_usd"], "llm_call_id": order["call_id"]}


# -- pairs -------------------------------------------------------------------------------------------------------
def pairs_stage(ctx: RunContext) -> None:
    instructions, responses, judgments = run_state(ctx)
    have_pp = store.existing_ids(ctx.db, "preference_pairs", ctx.run_id)
    have_sft = store.existing_ids(ctx.db, "sft_pairs", ctx.run_id)
    source = "rubric" if ctx.config.judge.kind == "rubric" else "llm"
    preference, sft = [], []
    for ins in instructions:
        candidates = _candidates(ctx, ins["id"], responses, judgments)
        if candidates is None:
            continue
        sft_row = _sft_pair(ctx, ins, candidates, source)
        if sft_row and sft_row["id"] not in have_sft:
            sft.append(sft_row)
        if stable_id("pp", ctx.run_id, ins["id"]) not in have_pp:
            row = _preference_pair(ctx, ins, candidates, judgments, source)
            if row:
                preference.append(row)
    for i in range(0, max(len(preference), len(sft)), ctx.config.batch_size * 8):
        store.write_batch(ctx.db, preference_pairs=preference[i : i + ctx.config.batch_size * 8],
                          sft_pairs=sft[i : i + ctx.config.batch_size * 8])
    ctx.report("pairs", len(instructions), len(instructions), "instruction",
               f"{len(preference)} new preference pairs, {len(sft)} new SFT pairs")


def _sft_pair(ctx: RunContext, ins: dict, candidates: list[tuple], source: str) -> dict | None:
    threshold = ctx.config.judge.min_sft_score
    usable = [(row, j) for row, j in candidates if j["parse_status"] != "failed" and j["overall_score"] is not None]
    if threshold is None or not usable:
        return None
    row, j = max(usable, key=lambda c: c[1]["overall_score"])  # the first listed wins ties
    if j["overall_score"] < threshold:
        return None
    return {"id": stable_id("sft", ctx.run_id, ins["id"]), "run_id": ctx.run_id, "instruction_id": ins["id"],
            "response_id": row["id"], "seed_id": ins["seed_id"], "prompt": ins["text"], "completion": row["text"],
            "model": row["model"], "score": j["overall_score"],
            "confidence": round((j["overall_score"] - 1) / 4, 6), "label_source": source,
            "metadata": {"judge_model": j["judge_model"], "judgment_id": j["id"], "candidates": len(candidates)}}


def _preference_pair(ctx: RunContext, ins: dict, candidates: list[tuple], judgments: dict, source: str) -> dict | None:
    choice = choose_pair(_scored(candidates))
    if choice is None:
        return None
    chosen, rejected, gap = choice
    by_id = {row["id"]: (row, j) for row, j in candidates}
    ids_key = "listwise_judgment_ids" if ctx.config.judge.mode == "listwise" else "pointwise_judgment_ids"
    meta: dict[str, Any] = {"mode": ctx.config.judge.mode, "candidates": len(candidates),
                            ids_key: [j["id"] for _, j in candidates]}
    swap_agreement, flagged = None, False
    if ctx.config.judge.kind == "llm" and ctx.config.judge.mode == "listwise":
        swap_agreement, facts = listwise_pair_facts(ctx, ins, candidates, chosen, rejected)
        meta.update(facts)
    elif ctx.config.judge.mode == "pairwise":
        ab, ba = (judgments.get(pairwise_id(ctx, chosen, rejected, o)) for o in ("ab", "ba"))
        if ab is None or ba is None:
            return None                       # not judged yet: a later pass (or resume) builds it
        preferred, swap_agreement = combine_orders(ab["preferred"], _UNSWAP.get(ba["preferred"]))
        if preferred is None:
            return None                       # both orders unreadable: left out, raw outputs kept
        meta.update(pairwise_judgment_ids=[ab["id"], ba["id"]], pairwise_preferred=preferred)
        if preferred == "b":                  # the direct comparison overrides the scores, with low trust
            chosen, rejected, gap, flagged = rejected, chosen, -gap, True
        elif preferred == "tie":
            swap_agreement = False
    (c_row, c_j), (r_row, r_j) = by_id[chosen], by_id[rejected]
    confidence = pair_confidence(gap, swap_agreement)
    if flagged:
        confidence = round(pair_confidence(None, swap_agreement) / 2, 6)
    return {"id": stable_id("pp", ctx.run_id, ins["id"]), "run_id": ctx.run_id, "instruction_id": ins["id"],
            "seed_id": ins["seed_id"], "prompt": ins["text"], "chosen": c_row["text"], "rejected": r_row["text"],
            "chosen_response_id": chosen, "rejected_response_id": rejected, "chosen_model": c_row["model"],
            "rejected_model": r_row["model"], "judge_model": c_j["judge_model"], "chosen_score": c_j["overall_score"],
            "rejected_score": r_j["overall_score"], "score_gap": gap, "swap_agreement": swap_agreement,
            "confidence": confidence, "label_source": source, "flagged": flagged, "chosen_length": len(c_row["text"]),
            "rejected_length": len(r_row["text"]), "metadata": {**meta, "flagged": flagged}}
