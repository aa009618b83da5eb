"""A loopback OpenAI-compatible endpoint with a fixed latency and capacity that answers the studio's
generation prompts (and distilabel's UltraFeedback prompt) with scripted, parseable replies.

Run in its own process so it never shares the measured process's GIL:
    python -m benchmarks.scripted_endpoint --latency 0.2 --capacity 16
It prints ``READY <port>``; closing its standard input stops it; a line ``stats`` prints counters.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict

from tests.fake_openai_server import Behavior, FakeOpenAIServer
from tests.generate_script import scripted_reply

ULTRAFEEDBACK = re.compile(r"<text (\d+)> ")


def bench_reply(request: dict) -> str:
    """distilabel's UltraFeedback prompt gets ratings in its format; everything else as the tests script it."""
    user = request["messages"][-1].get("content", "")
    if "#### Output for Text 1" in user:
        texts = ULTRAFEEDBACK.findall(user)
        return "\n\n".join(f"#### Output for Text {n}\nRating: {5 - i}\nRationale: scripted." for i, n in enumerate(texts))
    return scripted_reply(request)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--capacity", type=int, default=16)
    args = parser.parse_args()
    server = FakeOpenAIServer(0, Behavior(latency_s=args.latency, capacity=args.capacity, reply=bench_reply)).start()
    print(f"READY {server.port}", flush=True)
    for line in sys.stdin:
        if line.strip() == "stats":
            print(json.dumps(asdict(server.stats)), flush=True)
    server.stop()


if __name__ == "__main__":
    main()
