"""The peer: the same work as a distilabel 1.5 pipeline (runs in .venv-distilabel, not the studio's venv).

Instructions -> TextGeneration (2 generations each) -> UltraFeedback (overall rating of both, one call)
-> preference pairs, against the same loopback endpoint at the same concurrency. Prints one JSON line:
{"seconds": ..., "pairs": ..., "calls": ...}.
    .venv-distilabel/bin/python benchmarks/peers/distilabel_pipeline.py BASE_URL N CONCURRENCY
"""

import json
import sys
import time

from distilabel.models import OpenAILLM
from distilabel.pipeline import Pipeline
from distilabel.steps import LoadDataFromDicts
from distilabel.steps.tasks import TextGeneration, UltraFeedback


def main() -> None:
    base_url, count, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    data = [{"instruction": f"Benchmark task {i}: explain topic number {i} in two sentences."} for i in range(count)]

    def llm(temperature: float) -> OpenAILLM:
        return OpenAILLM(model="fake-model", base_url=base_url, api_key="not-needed", max_retries=0,
                         generation_kwargs={"temperature": temperature, "max_new_tokens": 64})

    with Pipeline(name="studio-peer-benchmark") as pipeline:
        load = LoadDataFromDicts(data=data, batch_size=concurrency)
        generate = TextGeneration(llm=llm(0.9), num_generations=2, group_generations=True,
                                  input_batch_size=concurrency)
        rate = UltraFeedback(llm=llm(0.0), aspect="overall-rating", input_batch_size=concurrency,
                             input_mappings={"generations": "generation"})
        load >> generate >> rate
    start = time.perf_counter()
    distiset = pipeline.run(use_cache=False)
    seconds = time.perf_counter() - start
    rows = distiset["default"]["train"]
    pairs = sum(1 for r in rows if r["ratings"] and len([x for x in r["ratings"] if x is not None]) == 2
                and r["ratings"][0] != r["ratings"][1])
    print(json.dumps({"seconds": seconds, "pairs": pairs, "calls": count * 3}))


if __name__ == "__main__":
    main()
