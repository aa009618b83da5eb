"""The generating stages of a run: instructions from seeds, preprocessing, candidate responses.

Ids are deterministic so a resume skips what exists:
* instruction: ``stable_id(run, seed, parent, method, index, sha256(text))``; a call's "unit" is
  (seed, parent, method) and is skipped when any row of it exists (all rows of a unit are written
  in one transaction). Evol-Instruct applies each listed operation at most once per parent.
* response: ``stable_id(run, instruction, target, candidate)``, known before the call.
An instruction answer with no parsable task is stored as a 'failed' row holding the raw output.
Preprocessing only ever changes 'pending' rows; 'kept' rows go first as context, so a resumed
run's new items are deduplicated against what was already kept and nothing kept is undone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from pipelines.generate import templates as tpl
from pipelines.generate.context import RunContext, chunks, drive, give_up_if_all_failed
from pipelines.generate.preprocess import preprocess
from pipelines.llm.base import Generation
from storage import generation as store
from storage.ids import stable_id
from core.errors import BackendError

LIVE = ("pending", "kept")


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Unit:
    """One instruction-writing call: a seed (and for evol rounds > 1 a parent instruction) and a method."""

    seed: dict
    parent: dict | None
    method: str               # 'seed', 'self_instruct', 'evol:<op>'
    source_text: str

    @property
    def key(self) -> tuple:
        return (self.seed["id"], self.parent["id"] if self.parent else None, self.method)


# -- instructions ------------------------------------------------------------------------------------
def _rotated(ops: list[str], start: int) -> list[str]:
    start %= len(ops)
    return ops[start:] + ops[:start]


def round_one_units(ctx: RunContext, seeds: list[dict]) -> list[Unit]:
    cfg = ctx.config.instructions
    if cfg.method == "seeds":
        return [Unit(s, None, "seed", s["text"]) for s in seeds]
    if cfg.method == "self_instruct":
        return [Unit(s, None, "self_instruct", s["text"]) for s in seeds]
    units = []
    for i, seed in enumerate(seeds):  # rotating the list spreads the operations when per_seed < len(ops)
        units += [Unit(seed, None, f"evol:{op}", seed["text"]) for op in _rotated(cfg.evol_operations, i)[: cfg.per_seed]]
    return units


def next_round_units(ctx: RunContext, seeds: dict[str, dict], parents: list[dict]) -> list[Unit]:
    """Round k: each of round k-1's instructions evolves once more, with the next operation."""
    ops = ctx.config.instructions.evol_operations
    units = []
    for parent in parents:
        op = parent["method"].split(":", 1)[1]
        nxt = ops[(ops.index(op) + 1) % len(ops)] if op in ops else ops[0]
        units.append(Unit(seeds[parent["seed_id"]], parent, f"evol:{nxt}", parent["text"]))
    return units


def _template(ctx: RunContext, method: str) -> tuple[str, str]:
    kind = "self_instruct" if method == "self_instruct" else method
    text = tpl.template_for(kind, ctx.config.instructions.templates)
    return tpl.template_id(kind, text), text


def _prompt(ctx: RunContext, unit: Unit) -> list[dict[str, str]]:
    _, text = _template(ctx, unit.method)
    if unit.method == "self_instruct":
        content = tpl.render(text, seed=unit.source_text, n=ctx.config.instructions.per_seed)
    else:
        content = tpl.render(text, instruction=unit.source_text)
    return [{"role": "user", "content": content}]


def _instruction_row(ctx: RunContext, unit: Unit, index: int, text: str, status: str = "pending",
                     gen: Generation | None = None, reason: str | None = None) -> dict[str, Any]:
    template_id = _template(ctx, unit.method)[0] if unit.method != "seed" else None
    parent_id = unit.parent["id"] if unit.parent else None
    hashed = text_hash(text)
    return {"id": stable_id("ins", ctx.run_id, unit.seed["id"], parent_id, unit.method, index, hashed),
            "run_id": ctx.run_id, "seed_id": unit.seed["id"], "parent_instruction_id": parent_id,
            "method": unit.method, "template_id": template_id, "model": gen.model if gen else None,
            "text": text, "content_hash": hashed, "status": status, "removed_reason": reason,
            "llm_call_id": gen.call_id if gen else None}


def _rows_for_answer(ctx: RunContext, unit: Unit, gen: Generation) -> list[dict[str, Any]]:
    if unit.method == "self_instruct":
        tasks = tpl.parse_task_list(gen.text, ctx.config.instructions.per_seed, exclude=unit.source_text)
    else:
        rewrite = tpl.parse_rewrite(gen.text)
        tasks = [rewrite] if rewrite and rewrite.strip() != unit.source_text.strip() else []
    if not tasks:
        why = "no task could be read from the answer" if unit.method == "self_instruct" else \
            "the answer holds no rewritten prompt (empty, or the prompt unchanged)"
        return [_instruction_row(ctx, unit, 0, gen.text, "failed", gen, why)]
    return [_instruction_row(ctx, unit, i, task, "pending", gen) for i, task in enumerate(tasks)]


def store_templates(ctx: RunContext, methods: set[str]) -> None:
    rows = []
    for method in sorted(methods - {"seed"}):
        tid, text = _template(ctx, method)
        rows.append((tid, f"default {method}" if text == tpl.DEFAULTS.get(method) else f"custom {method}",
                     method, text))
    store.upsert_templates(ctx.db, rows)


async def write_instructions(ctx: RunContext, units: list[Unit]) -> None:
    """Answer each unit not answered yet, in batches; one transaction per batch."""
    done_units = store.instruction_units(ctx.db, ctx.run_id)
    todo = [u for u in units if u.key not in done_units]
    store_templates(ctx, {u.method for u in todo})
    literal = [u for u in todo if u.method == "seed"]
    if literal:
        store.write_batch(ctx.db, instructions=[_instruction_row(ctx, u, 0, u.source_text) for u in literal])
    todo = [u for u in todo if u.method != "seed"]
    if not todo:
        return
    params = ctx.config.instructions.sampling.to_params()
    async with ctx.backend(ctx.config.instructions.generator, "instructions") as backend:
        async def call(batch: list[Unit]):
            return await backend.generate([_prompt(ctx, u) for u in batch], params)

        def write(batch: list[Unit], results: list) -> int:
            rows = []
            for unit, result in zip(batch, results):
                if isinstance(result, BackendError):
                    ctx.fail("instructions", result)
                else:
                    rows += _rows_for_answer(ctx, unit, result)
            give_up_if_all_failed(ctx, "instructions", results, backend.target)
            backend.flush()
            store.write_batch(ctx.db, instructions=rows)
            return len(batch)

        await drive(ctx, "instructions", chunks(todo, ctx.config.batch_size), call, write, len(todo), "call")


async def instructions_stage(ctx: RunContext, seeds: list[dict]) -> None:
    await write_instructions(ctx, round_one_units(ctx, seeds))
    cfg = ctx.config.instructions
    if cfg.method != "evol":
        return
    by_id = {s["id"]: s for s in seeds}
    for depth_wanted in range(1, cfg.evol_rounds):
        if ctx.halted():
            return
        rows = store.instructions_of(ctx.db, ctx.run_id, LIVE)
        depth = _depths(rows)
        parents = [r for r in rows if depth[r["id"]] == depth_wanted and r["seed_id"] in by_id]
        await write_instructions(ctx, next_round_units(ctx, by_id, parents))


def _depths(rows: list[dict]) -> dict[str, int]:
    parent = {r["id"]: r["parent_instruction_id"] for r in rows}
    out: dict[str, int] = {}
    for rid in parent:
        depth, cur = 1, parent[rid]
        while cur and depth < 10:
            depth, cur = depth + 1, parent.get(cur)
        out[rid] = depth
    return out


# -- preprocessing ---------------------------------------------------------------------------------------
def preprocess_stage(ctx: RunContext, table: str) -> None:
    """Decide 'kept'/'removed' for the pending rows of ``table`` and store what each step did."""
    rows = (store.instructions_of if table == "instructions" else store.responses_of)(ctx.db, ctx.run_id, LIVE)
    context = [r for r in rows if r["status"] == "kept"]
    pending = [r for r in rows if r["status"] == "pending"]
    if not pending:
        return
    ctx.report(f"preprocess {table}", 0, len(pending), "item")
    group = "instruction_id" if table == "responses" else None
    result = preprocess(context + pending, ctx.config.preprocess, group_key=group)
    pending_ids = {r["id"]: r for r in pending}
    updates = []
    for item in result.removed:
        row = item["item"]
        if row["id"] in pending_ids:
            reason = f"{item['step']}: {item['reason']}"
            if item.get("duplicate_of") is not None:
                reason += f" (duplicate of {item['duplicate_of']})"
            updates.append({"id": row["id"], "status": "removed", "removed_reason": reason[:500]})
    for item in result.kept:
        original = pending_ids.get(item["id"])
        if original is not None:
            changed = item["text"] if item["text"] != original["text"] else None
            updates.append({"id": item["id"], "status": "kept", "removed_reason": None, "text": changed})
    report = merged_report(store.get_run(ctx.db, ctx.run_id)["report"].get("preprocess", {}), table,
                           [r.to_dict() for r in result.reports], len(context))
    store.apply_preprocessing(ctx.db, table, updates, ctx.run_id, {"preprocess": report})
    ctx.report(f"preprocess {table}", len(pending), len(pending), "item",
               f"{sum(u['status'] == 'removed' for u in updates)} removed")


def merged_report(previous: dict, table: str, steps: list[dict], context: int) -> dict:
    """Add one pass's step reports to what earlier passes (before a resume) reported. Kept rows fed
    as dedup context are not counted as inputs again."""
    out = dict(previous)
    merged = {s["step"]: s for s in out.get(table, [])}
    for step in steps:
        step = dict(step, input_count=max(0, step["input_count"] - context))
        old = merged.get(step["step"])
        if old is not None:
            reasons = dict(old.get("reasons", {}))
            for key, value in step["reasons"].items():
                reasons[key] = reasons.get(key, 0) + value
            step = {"step": step["step"], "input_count": old["input_count"] + step["input_count"],
                    "removed": old["removed"] + step["removed"], "changed": old["changed"] + step["changed"],
                    "reasons": reasons, "examples": (old.get("examples", []) + step["examples"])[:5]}
        merged[step["step"]] = step
    out[table] = list(merged.values())
    return out


# -- responses ------------------------------------------------------------------------------------------
def response_id(ctx: RunContext, instruction_id: str, target: str, candidate: int) -> str:
    return stable_id("resp", ctx.run_id, instruction_id, target, candidate)


def system_template(ctx: RunContext) -> tuple[str, str] | None:
    text = ctx.config.responses.system_prompt
    return (tpl.template_id("response:system", text), text) if text else None


def _messages(ctx: RunContext, instruction: dict) -> list[dict[str, str]]:
    system = ctx.config.responses.system_prompt
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": instruction["text"]}]


async def responses_stage(ctx: RunContext) -> None:
    instructions = store.instructions_of(ctx.db, ctx.run_id, ("kept",))
    existing = store.existing_ids(ctx.db, "responses", ctx.run_id)
    system = system_template(ctx)
    if system:
        store.upsert_templates(ctx.db, [(system[0], "response system prompt", "response:system", system[1])])
    for generator in ctx.config.responses.generators:
        if ctx.halted():
            return
        jobs = []
        for c in range(generator.candidates):
            todo = [i for i in instructions if response_id(ctx, i["id"], generator.target, c) not in existing]
            jobs += [(c, batch) for batch in chunks(todo, ctx.config.batch_size)]
        if jobs:
            await _generate_responses(ctx, generator, jobs, system[0] if system else None)


async def _generate_responses(ctx: RunContext, generator, jobs: list, system_id: str | None) -> None:
    total = sum(len(batch) for _, batch in jobs)
    stage = f"responses ({generator.target})"
    async with ctx.backend(generator.target, "responses") as backend:
        async def call(job):
            candidate, batch = job
            params = generator.sampling.to_params(candidate, generator.candidates)
            return params, await backend.generate([_messages(ctx, i) for i in batch], params)

        def write(job, outcome) -> int:
            (candidate, batch), (params, results) = job, outcome
            rows = []
            for instruction, result in zip(batch, results):
                if isinstance(result, BackendError):
                    ctx.fail("responses", result)
                    continue
                rows.append(_response_row(ctx, backend, generator.target, instruction, candidate, params, result,
                                          system_id))
            give_up_if_all_failed(ctx, "responses", results, generator.target)
            backend.flush()
            store.write_batch(ctx.db, responses=rows)
            return len(batch)

        await drive(ctx, stage, jobs, call, write, total, "response")


def _response_row(ctx: RunContext, backend, target: str, instruction: dict, candidate: int, params,
                  gen: Generation, system_id: str | None) -> dict[str, Any]:
    return {"id": response_id(ctx, instruction["id"], target, candidate), "run_id": ctx.run_id,
            "instruction_id": instruction["id"], "model": gen.model, "backend": backend.kind,
            "endpoint_id": backend.endpoint_id, "template_id": system_id,
            "sampling_params": {**params.to_dict(), "target": target}, "candidate_index": candidate,
            "text": gen.text, "finish_reason": gen.finish_reason, "prompt_tokens": gen.prompt_tokens,
            "completion_tokens": gen.completion_tokens, "latency_ms": round(gen.latency_s * 1000, 3),
            "cost_usd": gen.cost_usd, "cache_key": gen.cache_key, "status": "pending", "removed_reason": None}
