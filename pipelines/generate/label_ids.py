"""What the labelling stages share: the ids of judgments (known before the calls, so a resume skips
what exists), the judge's settings and stored templates, and the run's current rows.

Its own module so the pointwise/pairwise stages (``labels``) and the listwise stage
(``labels_listwise``) use the same helpers without importing each other.
"""

from __future__ import annotations

from pipelines.generate import templates as tpl
from pipelines.generate.context import RunContext
from pipelines.generate.stages import response_id
from pipelines.judge.llm import ASPECTS, JudgeConfig, LLMJudge
from storage import generation as store
from storage.ids import content_hash, stable_id


def judge_key(ctx: RunContext) -> str:
    judge = ctx.config.judge
    if judge.kind == "rubric":
        return f"rubric:{judge.rubric.name}:{content_hash(judge.rubric.params)[:8]}"
    return judge.target


def pointwise_id(ctx: RunContext, rid: str) -> str:
    return stable_id("jdg", ctx.run_id, rid, judge_key(ctx), "pointwise")


def pairwise_id(ctx: RunContext, chosen: str, rejected: str, order: str) -> str:
    return stable_id("jdg", ctx.run_id, chosen, rejected, judge_key(ctx), order)


def listwise_id(ctx: RunContext, rid: str, reverse: bool = False) -> str:
    return stable_id("jdg", ctx.run_id, rid, judge_key(ctx), "listwise-reversed" if reverse else "listwise")


def score_id(ctx: RunContext, rid: str) -> str:
    """The id of the judgment that scores a candidate (its first pass, in listwise mode)."""
    listwise = ctx.config.judge.kind == "llm" and ctx.config.judge.mode == "listwise"
    return listwise_id(ctx, rid) if listwise else pointwise_id(ctx, rid)


def judge_config(ctx: RunContext) -> JudgeConfig:
    section = ctx.config.judge
    overrides = {k: v for k, v in (("pointwise_template", section.pointwise_template),
                                   ("pairwise_template", section.pairwise_template),
                                   ("listwise_template", section.listwise_template)) if v}
    return JudgeConfig(mode=section.mode, aspects=tuple(section.aspects or ASPECTS), temperature=section.temperature,
                       max_tokens=section.max_tokens, repair=section.repair, reply_format=section.reply_format,
                       swap_margin=section.swap_margin, **overrides)


def store_judge_templates(ctx: RunContext, config: JudgeConfig) -> dict[str, str]:
    """The prompt each judge mode uses, with its system message (and, compact, its demonstration
    turns are built from it), stored once for lineage; mode -> template id."""
    judge = LLMJudge(None, config)
    ids, rows = {}, []
    for mode in ("pointwise", "pairwise", "listwise"):
        text, system = judge.template(mode), judge.system_text()
        full = f"{system}\n\n{text}" if system else text
        ids[mode] = tpl.template_id(f"judge:{mode}", full)
        rows.append((ids[mode], f"judge {mode}" + (" (compact)" if config.compact else ""), f"judge:{mode}", full))
    store.upsert_templates(ctx.db, rows)
    return ids


def expected_responses(ctx: RunContext, instruction_id: str) -> list[str]:
    return [response_id(ctx, instruction_id, g.target, c) for g in ctx.config.responses.generators
            for c in range(g.candidates)]


def run_state(ctx: RunContext):
    instructions = store.instructions_of(ctx.db, ctx.run_id, ("kept",))
    responses = {r["id"]: r for r in store.responses_of(ctx.db, ctx.run_id, ("pending", "kept", "removed"))}
    judgments = {j["id"]: j for j in store.judgments_of(ctx.db, ctx.run_id)}
    return instructions, responses, judgments
