"""Collect the embedded model's replies to the COMPACT judge prompts (see README.md); not part of the
test suite. Same items, pairs and sampling settings as ``collect.py``; the prompts are built by the
studio's own ``LLMJudge`` / ``ListwiseJudge`` with ``reply_format='compact'``, and each unreadable
reply gets the studio's compact repair prompt. Prints the parse rates and, for the pairs whose
better answer is known, how often the verdict was right and survived the position swap.

    python tests/data/judge_outputs/collect_compact.py [--url http://127.0.0.1:PORT/v1]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from pipelines.judge.llm import JudgeConfig, LLMJudge  # noqa: E402
from pipelines.judge.listwise import ListwiseJudge  # noqa: E402
from pipelines.llm.base import SamplingParams  # noqa: E402
from pipelines.llm.openai_compat import OpenAICompatibleBackend  # noqa: E402
from tests.data.judge_outputs.collect import (  # noqa: E402
    ITEMS, PAIRS, SETTINGS, collect_from_embedded_model, write_files)

BETTER = ["a", "b", "a", "a"]   # which of PAIRS' two responses is the better one


async def _judged(judge: LLMJudge, prompts, parsers, shapes, params) -> list[dict]:
    """The studio's own round: first replies, then one compact repair prompt for each unreadable one."""
    judge.params = params
    attempts = await judge.run_prompts(prompts, parsers, shapes)
    return [{"reply": a.raw_output.split("\n\n----- repair reply -----\n")[0],
             **({"repair_reply": a.raw_output.split("\n\n----- repair reply -----\n")[1]}
                if "----- repair reply -----" in a.raw_output else {}),
             "parse_status": a.status} for a in attempts]


async def collect(url: str) -> dict[str, list[dict]]:
    backend = OpenAICompatibleBackend(url, "smollm2-135m-instruct", timeout_s=120, concurrency=1)
    judge = LLMJudge(backend, JudgeConfig(reply_format="compact"))
    listwise = ListwiseJudge(judge)
    out: dict[str, list[dict]] = {"compact_pointwise": [], "compact_pairwise": [], "compact_listwise": []}
    for temperature, seed, tag in SETTINGS:
        params = SamplingParams(temperature=temperature, max_tokens=judge.params.max_tokens, seed=seed)
        prompts = [judge.pointwise_messages(i, r) for i, r in ITEMS]
        replies = await _judged(judge, prompts, [judge.parse_pointwise] * len(prompts),
                                [judge.pointwise_shape()] * len(prompts), params)
        out["compact_pointwise"] += [{"id": f"cpw-{tag}-{n:02d}", "temperature": temperature, "seed": seed,
                                      "instruction": i, "response": r, **rep}
                                     for n, ((i, r), rep) in enumerate(zip(ITEMS, replies))]
        shown = [(k, ins, a, b, o) for k, (ins, a, b) in enumerate(PAIRS) for o in ("ab", "ba")]
        prompts = [judge.pairwise_messages(ins, *((a, b) if o == "ab" else (b, a))) for _, ins, a, b, o in shown]
        replies = await _judged(judge, prompts, [judge.parse_pairwise] * len(prompts),
                                [judge.pairwise_shape()] * len(prompts), params)
        out["compact_pairwise"] += [{"id": f"cpair-{tag}-{n:02d}", "temperature": temperature, "seed": seed,
                                     "instruction": ins, "response_a": a, "response_b": b, "order": o,
                                     "better": BETTER[k], **rep}
                                    for n, ((k, ins, a, b, o), rep) in enumerate(zip(shown, replies))]
        prompts = [listwise.messages(ins, list(texts)) for _, ins, a, b, o in shown
                   for texts in [((a, b) if o == "ab" else (b, a))]]
        replies = await _judged(judge, prompts, [listwise.parser(2)] * len(prompts), [listwise.shape(2)] * len(prompts),
                                params)
        out["compact_listwise"] += [{"id": f"clist-{tag}-{n:02d}", "temperature": temperature, "seed": seed,
                                     "instruction": ins, "candidates": [a, b] if o == "ab" else [b, a], "order": o,
                                     "better": BETTER[k], **rep}
                                    for n, ((k, ins, a, b, o), rep) in enumerate(zip(shown, replies))]
    await backend.aclose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an already running embedded endpoint; default: start one")
    args = parser.parse_args()
    files = asyncio.run(collect(args.url)) if args.url else collect_from_embedded_model(collect)
    write_files(files)
    for name, records in files.items():
        readable = sum(r["parse_status"] != "failed" for r in records)
        first = sum(r["parse_status"] == "ok" for r in records)
        print(f"{name}: {readable}/{len(records)} readable ({first} at the first reply)")


if __name__ == "__main__":
    main()
