"""Each model's answer to each prompt of a comparison: generated once, stored, and reused.

Why it looks like this:
- An output is keyed by (comparison, prompt, model), so a re-run (after a crash, a stop or an
  endpoint that went down half-way) generates only what is missing. Its ``cache_key`` hashes the
  model's identity, the exact prompt and the sampling settings, so another comparison asking the
  same model the same prompt with the same settings copies the stored answer instead of paying again
  (endpoints also have the response cache underneath).
- The local backend gets many prompts per call (it pads and batches them); an endpoint gets a chunk
  of prompts at once, which its semaphore runs concurrently. Outputs are written per chunk.
- A prompt longer than the model's context (minus the answer's ``max_tokens``) is cut to fit and the
  output is flagged ``truncated``; a model that cannot load is skipped with the reason; an endpoint
  whose whole chunk fails with a retryable error is given up on for this run (resume later).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipelines.llm.base import Generation, LLMBackend, SamplingParams
from storage import compare as store
from storage.db import Database
from storage.ids import content_hash
from core.errors import BackendError, StudioError

LOCAL_CHUNK = 64
ENDPOINT_CHUNK = 32
MIN_PROMPT_TOKENS = 16


@dataclass
class ModelSlot:
    """One compared model: its target key, what identifies its weights, and an optional context size."""

    target: str
    identity: dict[str, Any]
    context_tokens: int | None = None


@dataclass
class OutputReport:
    generated: int = 0
    reused: int = 0
    already: int = 0
    truncated: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)       # target -> why it failed or stopped
    stopped: bool = False

    @property
    def complete(self) -> bool:
        return not self.failed and not self.errors and not self.stopped

    def to_dict(self) -> dict[str, Any]:
        return {"generated": self.generated, "reused": self.reused, "already": self.already,
                "truncated": self.truncated, "failed": self.failed, "errors": self.errors, "stopped": self.stopped}


def cache_key(slot: ModelSlot, prompt: str, params: SamplingParams) -> str:
    return content_hash("compare-output", slot.target, slot.identity, prompt, params.to_dict())


def context_of(backend: LLMBackend, slot: ModelSlot) -> int | None:
    """The model's context size: the slot's override, else a local model's max_position_embeddings."""
    if slot.context_tokens:
        return slot.context_tokens
    path = getattr(backend, "model_path", None)
    if isinstance(path, Path) and (path / "config.json").is_file():
        config = json.loads((path / "config.json").read_text())
        return config.get("max_position_embeddings") or config.get("n_positions")
    return None


def fit_to_context(backend: LLMBackend, text: str, budget: int | None) -> tuple[str, bool, int]:
    """(text that fits ``budget`` prompt tokens, whether it was cut, its original token count).
    Cuts on word boundaries, by bisection on the number of words kept."""
    def size(candidate: str) -> int:
        messages = [{"role": "user", "content": candidate}]
        shown = backend.format_prompt(messages) if hasattr(backend, "format_prompt") else candidate
        return backend.count_tokens(shown)

    original = size(text)
    if budget is None or original <= budget:
        return text, False, original
    words = text.split(" ")
    low, high = 0, len(words)
    while low < high:
        mid = (low + high + 1) // 2
        if size(" ".join(words[:mid])) <= budget:
            low = mid
        else:
            high = mid - 1
    return " ".join(words[:low]), True, original


class OutputGenerator:
    """Fills in the missing outputs of one comparison, model by model."""

    def __init__(self, db: Database, comparison_id: str, slots: list[ModelSlot], params: SamplingParams,
                 backend_for: Callable[[str], LLMBackend], progress: Callable[..., None] | None = None,
                 should_stop: Callable[[], bool] | None = None):
        self.db, self.comparison_id, self.slots, self.params = db, comparison_id, slots, params
        self.backend_for = backend_for
        self.progress = progress or (lambda **kw: None)
        self.should_stop = should_stop or (lambda: False)
        self.report = OutputReport()

    def run(self) -> OutputReport:
        prompts = store.prompts_of(self.db, self.comparison_id)
        have = {(o.prompt_id, o.model_id) for o in store.outputs_of(self.db, self.comparison_id)}
        total = len(prompts) * len(self.slots)
        self.report.already = len(have)
        done = len(have)
        self.progress(stage="outputs", done=done, total=total, unit="outputs")
        for slot in self.slots:
            todo = [p for p in prompts if (p.id, slot.target) not in have]
            if not todo or self.report.stopped:
                continue
            done = self._run_model(slot, todo, done, total)
        return self.report

    def _open(self, slot: ModelSlot) -> LLMBackend | None:
        try:
            backend = self.backend_for(slot.target)
            backend.load()
            return backend
        except StudioError as err:
            self.report.errors[slot.target] = f"{slot.target} could not be loaded: {err}"
            return None

    def _run_model(self, slot: ModelSlot, todo: list, done: int, total: int) -> int:
        backend = self._open(slot)
        if backend is None:
            return done
        local = getattr(backend, "backend", "") == "transformers"
        context = context_of(backend, slot)
        budget = max(MIN_PROMPT_TOKENS, context - self.params.max_tokens) if context else None
        chunk = LOCAL_CHUNK if local else ENDPOINT_CHUNK
        try:
            for start in range(0, len(todo), chunk):
                if self.should_stop():
                    self.report.stopped = True
                    break
                items = todo[start:start + chunk]
                keep_going = self._run_chunk(slot, backend, items, budget)
                done += len(items)
                self.progress(stage="outputs", done=done, total=total, unit="outputs", message=slot.target)
                if not keep_going:
                    break
        finally:
            if not local:
                backend.close()
        return done

    def _run_chunk(self, slot: ModelSlot, backend: LLMBackend, items: list, budget: int | None) -> bool:
        """Generate (or reuse) one chunk; False when the endpoint is down and this model should stop."""
        fitted = [fit_to_context(backend, p.prompt, budget) for p in items]
        keys = [cache_key(slot, text, self.params) for text, _, _ in fitted]
        cached = store.cached_outputs(self.db, keys)
        rows: list[store.OutputRow] = []
        missing = [i for i, key in enumerate(keys) if key not in cached]
        for i, key in enumerate(keys):
            if key in cached:
                text, truncated, tokens = cached[key]
                rows.append(self._row(slot, items[i], key, text, fitted[i], tokens, {"reused": True}))
                self.report.reused += 1
        results = backend.generate_batch([[{"role": "user", "content": fitted[i][0]}] for i in missing], self.params) \
            if missing else []
        errors: list[BackendError] = []
        for i, result in zip(missing, results):
            if isinstance(result, BackendError):
                errors.append(result)
                continue
            rows.append(self._row(slot, items[i], keys[i], result.text, fitted[i], result.completion_tokens,
                                  _call_facts(result)))
            self.report.generated += 1
        store.write_outputs(self.db, rows)
        self.report.truncated += sum(1 for r in rows if r.truncated)
        if errors:
            self.report.failed[slot.target] = self.report.failed.get(slot.target, 0) + len(errors)
            self.report.errors[slot.target] = f"{slot.target}: {len(errors)} answers failed ({errors[0]})"
            if len(errors) == len(missing) and all(e.retryable for e in errors):
                self.report.errors[slot.target] += " — gave up on it for now; resume the comparison to fill the gaps."
                return False
        return True

    def _row(self, slot: ModelSlot, prompt, key: str, text: str, fitted: tuple[str, bool, int],
             tokens: int | None, facts: dict[str, Any]) -> store.OutputRow:
        params = {**self.params.to_dict(), **facts}
        if fitted[1]:
            params["prompt_tokens_before_truncation"] = fitted[2]
        return store.OutputRow(
            id=store.output_id(self.comparison_id, prompt.id, slot.target), comparison_id=self.comparison_id,
            prompt_id=prompt.id, model_id=slot.target, text=text, truncated=fitted[1], completion_tokens=tokens,
            cache_key=key, sampling_params=params)


def _call_facts(gen: Generation) -> dict[str, Any]:
    return {"backend": gen.backend, "model": gen.model, "latency_s": round(gen.latency_s, 4),
            "prompt_tokens": gen.prompt_tokens, "finish_reason": gen.finish_reason, "cached": gen.cached,
            "call_id": gen.call_id}

