"""Scripted answers for the fake OpenAI server, so generation runs end to end without a real model.

The fake server calls ``scripted_reply(request)`` for every chat request (``Behavior.reply``). It
recognises the studio's own prompts: a Self-Instruct prompt gets a numbered list of tasks built from
the seed, an Evol-Instruct prompt a rewritten prompt, a pointwise judge prompt JSON scores, a
pairwise judge prompt a verdict, a listwise one scores for every candidate, and anything else (an
instruction) an answer whose text depends on the sampling seed, so candidates differ and the judge
can tell them apart.

Markers let a test steer it: a response containing ``UNJUDGEABLE`` gets a judge reply that is not
JSON (also on the repair prompt); an instruction containing ``NO-TASKS`` gets a self-instruct answer
with no task in it.
"""

from __future__ import annotations

import copy
import json
import re

import pytest

UNJUDGEABLE = "UNJUDGEABLE"
NO_TASKS = "NO-TASKS"


def _last_user(request: dict) -> str:
    return next((m.get("content", "") for m in reversed(request["messages"]) if m.get("role") == "user"), "")


def _between(text: str, start: str, end: str) -> str:
    head, _, rest = text.partition(start)
    return rest.partition(end)[0].strip("\n") if rest else ""


def _score(response: str) -> int:
    """Longer answers score higher: 'variant 0' answers are short, 'variant 1' long."""
    match = re.search(r"variant (\d+)", response)
    return min(5, 2 + 2 * int(match.group(1))) if match else 3


def scripted_reply(request: dict) -> str:
    user = _last_user(request)
    whole = "\n".join(str(m.get("content", "")) for m in request["messages"])
    if "Reply again with only valid JSON" in user:
        return "Still no JSON, sorry." if UNJUDGEABLE in whole else '{"winner": "tie", "rationale": "repaired"}'
    if "new tasks inspired by the example" in user:
        seed = _between(user, "<task>\n", "\n</task>")
        n = int(re.search(r"Write (\d+) new tasks", user).group(1))
        if NO_TASKS in seed:
            return "I would rather not write tasks today."
        return "Here are the tasks:\n" + "\n".join(f"{i + 1}. Task {i + 1} from: {seed}" for i in range(n))
    if user.startswith("You are a prompt rewriter"):
        return "Rewritten prompt: " + _between(user, "<prompt>\n", "\n</prompt>") + " Explain each step."
    if "[CANDIDATE 1]" in user:  # listwise: every candidate scored in one reply
        shown = re.findall(r"\[CANDIDATE (\d+)\]\n(.*?)\n\[END CANDIDATE \1\]", user, re.S)
        if any(UNJUDGEABLE in text for _, text in shown):
            return "These all look fine to me."
        return json.dumps({"ratings": [{"candidate": int(n), **dict.fromkeys(
            ("helpfulness", "honesty", "instruction_following", "truthfulness"), _score(text)),
            "rationale": f"scored {_score(text)}"} for n, text in shown]})
    if "[RESPONSE A]" in user:
        a = _between(user, "[RESPONSE A]\n", "\n[END RESPONSE A]")
        b = _between(user, "[RESPONSE B]\n", "\n[END RESPONSE B]")
        winner = "A" if _score(a) > _score(b) else "B" if _score(b) > _score(a) else "tie"
        return json.dumps({"winner": winner, "rationale": "the longer answer covers more"})
    if "[RESPONSE]" in user:
        response = _between(user, "[RESPONSE]\n", "\n[END RESPONSE]")
        if UNJUDGEABLE in response:
            return "This answer is fine I guess, no JSON from me."
        s = _score(response)
        return "```json\n" + json.dumps({"helpfulness": s, "honesty": s, "instruction_following": s,
                                         "truthfulness": s, "rationale": f"scored {s}"}) + "\n```"
    variant = request.get("seed") or 0
    extra = " It has more detail." * (3 * variant)
    return f"Answer variant {variant} to: {user}.{extra}"


# -- shared test helpers (imported by the generation test modules) -------------------------------------
BASE_CONFIG = {
    "name": "test run",
    "seeds": {"texts": ["Explain recursion to a child.", "Write a haiku about rain.", "List three prime numbers."]},
    "instructions": {"method": "self_instruct", "per_seed": 2, "generator": "endpoint:fake"},
    "responses": {"generators": [{"target": "endpoint:fake", "candidates": 2}]},
    "judge": {"kind": "llm", "target": "endpoint:fake", "mode": "pointwise"},
    "batch_size": 4,
}


def merged(base: dict, changes: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def make_config(**changes):
    from pipelines.generate.config import GenerationConfig

    return GenerationConfig.from_dict(merged(BASE_CONFIG, changes))


@pytest.fixture
def fake_endpoint(db, fake_openai):
    """The fault-injecting loopback server answering with ``scripted_reply``, registered as
    ``endpoint:fake`` (no retries, so injected failures show at once)."""
    from studio.services.models import add_endpoint

    fake_openai.configure(reply=scripted_reply)
    add_endpoint("fake", fake_openai.base_url, "fake-model", concurrency=4, max_retries=0, timeout_s=10)
    return fake_openai


def rows(db, sql: str, params=None) -> list[dict]:
    with db.session() as cur:
        result = cur.execute(sql, params or [])
        names = [d[0] for d in result.description]
        return [dict(zip(names, r)) for r in result.fetchall()]


def assert_consistent(db, run_id: str, candidates: int = 2) -> None:
    """No duplicate work and no dangling reference: what a resumed or killed run must still satisfy."""
    dup = rows(db, "SELECT seed_id, parent_instruction_id, method, content_hash, count(*) AS n FROM instructions "
                   "WHERE run_id = ? GROUP BY ALL HAVING count(*) > 1", [run_id])
    assert dup == []
    kept = rows(db, "SELECT id FROM instructions WHERE run_id = ? AND status = 'kept'", [run_id])
    per_instruction = rows(db, "SELECT instruction_id, count(*) AS n FROM responses WHERE run_id = ? GROUP BY ALL",
                           [run_id])
    assert all(r["n"] <= candidates for r in per_instruction)
    assert {r["instruction_id"] for r in per_instruction} <= {k["id"] for k in kept}
    unjudged = rows(db, "SELECT r.id FROM responses r LEFT JOIN judgments j ON j.response_id = r.id "
                        "WHERE r.run_id = ? AND r.status = 'kept' AND j.id IS NULL", [run_id])
    assert unjudged == []
    dangling = rows(db, """
        SELECT p.id FROM preference_pairs p
        LEFT JOIN responses c ON c.id = p.chosen_response_id LEFT JOIN responses r ON r.id = p.rejected_response_id
        LEFT JOIN judgments jc ON jc.response_id = p.chosen_response_id
        LEFT JOIN judgments jr ON jr.response_id = p.rejected_response_id
        LEFT JOIN instructions i ON i.id = p.instruction_id
        WHERE p.run_id = ? AND (c.id IS NULL OR r.id IS NULL OR jc.id IS NULL OR jr.id IS NULL OR i.id IS NULL)""",
                    [run_id])
    assert dangling == []
    sft_dangling = rows(db, "SELECT s.id FROM sft_pairs s LEFT JOIN responses r ON r.id = s.response_id "
                            "WHERE s.run_id = ? AND r.id IS NULL", [run_id])
    assert sft_dangling == []
