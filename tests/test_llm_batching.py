"""The embedded endpoint decodes concurrent requests together (llama.cpp's own server, parallel slots)."""

from __future__ import annotations

import threading

import httpx

from core.settings import EMBEDDED_MODEL, Settings
from studio.llm_serve import CTX_PER_SLOT


def _busy_slots(root: str) -> int:
    return sum(1 for slot in httpx.get(f"{root}/slots", timeout=5).json() if slot.get("is_processing"))


def test_the_embedded_server_answers_concurrent_requests_together(llama_server):
    root = llama_server.url.removesuffix("/v1")
    slots = httpx.get(f"{root}/slots", timeout=5).json()
    assert len(slots) == Settings.llm_parallel and {s["n_ctx"] for s in slots} == {CTX_PER_SLOT}
    answers, seen_busy, done = [], [0], threading.Event()

    def ask(i: int) -> None:
        reply = httpx.post(f"{llama_server.url}/chat/completions", timeout=120, json={
            "model": EMBEDDED_MODEL, "messages": [{"role": "user", "content": f"Count from {i} upwards."}],
            "max_tokens": 48, "temperature": 0, "ignore_eos": True})
        reply.raise_for_status()
        answers.append(reply.json()["usage"]["completion_tokens"])

    def watch() -> None:
        while not done.is_set():
            seen_busy[0] = max(seen_busy[0], _busy_slots(root))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    watcher = threading.Thread(target=watch)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    done.set()
    watcher.join(10)
    assert sorted(answers) == [48] * 4
    assert seen_busy[0] >= 2, "the requests were served one at a time"
