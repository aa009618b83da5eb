"""Local generation with transformers: any registered model folder, optionally plus a LoRA adapter.

Why batches: on CPU one prompt at a time leaves most of the matrix hardware idle; padding prompts
to a common length (on the left, so every row's next token sits in the last column) and generating
them together multiplies throughput. Generation runs in a worker thread so an event loop (the job
runner, Streamlit) stays responsive, and a lock keeps two threads off the same weights at once.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.llm.base import Generation, LLMBackend, Messages, SamplingParams
from pipelines.models.adapters import adapter_base, adapter_config
from core.errors import BackendError, ModelLoadError

if TYPE_CHECKING:
    from storage.registry import ModelRecord

INSTALL_HINT = "Install the local backend's libraries: pip install torch transformers peft."
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin")


def default_chat_prompt(messages: Messages) -> str:
    """Plain role-tagged turns for tokenizers without a chat template (base models)."""
    turns = [f"### {m['role'].capitalize()}:\n{m['content']}\n\n" for m in messages]
    return "".join(turns) + "### Assistant:\n"


def check_model_folder(path: Path) -> None:
    """Fail with a ModelLoadError that names the folder and what is missing, before any import."""
    hint = "Pick a folder saved with transformers' save_pretrained (config.json, weights, tokenizer)."
    if not path.is_dir():
        raise ModelLoadError(f"Model folder {path} does not exist or is not a folder.", hint=hint)
    config = path / "config.json"
    if not config.is_file():
        gguf = "; it holds a GGUF file, which the llama.cpp server serves instead" if any(path.glob("*.gguf")) else ""
        raise ModelLoadError(f"{path} is not a transformers model folder: no config.json{gguf}.", hint=hint)
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (ValueError, AttributeError):
        raise ModelLoadError(f"{config} is not a valid JSON object.", hint=hint) from None
    if not model_type:
        raise ModelLoadError(f"{config} has no model_type, so transformers cannot tell the architecture.", hint=hint)
    if not any(any(path.glob(pattern)) for pattern in WEIGHT_GLOBS):
        raise ModelLoadError(f"{path} has no weights (model.safetensors or pytorch_model.bin).", hint=hint)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(f"{path} has no tokenizer (tokenizer.json, tokenizer.model or vocab.json).", hint=hint)


def check_adapter_folder(path: Path) -> None:
    if adapter_config(path) is None:
        raise ModelLoadError(
            f"{path} is not a PEFT adapter folder: no adapter_config.json (nor a ReFT run's reft_config.json).",
            hint="Pick the folder a training run saved its adapter into.",
        )


class TransformersBackend(LLMBackend):
    """One local model (plus optional adapter); batches prompts with left padding."""

    backend = "transformers"

    def __init__(
        self, model_path: str | Path, *, adapter_path: str | Path | None = None, name: str | None = None,
        batch_size: int = 8, device: str | None = None,
    ):
        super().__init__(name or Path(model_path).name)
        self.model_path = Path(model_path)
        self.adapter_path = Path(adapter_path) if adapter_path else None
        self.batch_size = max(1, int(batch_size))
        self.device = device
        self.used_default_template = False
        self._model: Any = None
        self._tokenizer: Any = None
        self._torch: Any = None
        self._lock = threading.Lock()       # one generate at a time on these weights
        self._load_lock = threading.Lock()

    @classmethod
    def from_record(cls, model: ModelRecord, base: ModelRecord | None = None, **kwargs) -> TransformersBackend:
        """Backend for a registry entry; an adapter entry needs its base model's entry (or a local
        base recorded in adapter_config.json)."""
        if model.adapter_path:
            base_path = base.hf_path if base else _adapter_base_from_config(Path(model.adapter_path))
            if not base_path:
                raise ModelLoadError(
                    f"Adapter {model.name!r} has no base model with a transformers folder.",
                    hint="Register its base model (with a transformers folder) and pass it as base.",
                )
            return cls(base_path, adapter_path=model.adapter_path, name=model.name, **kwargs)
        if not model.hf_path:
            raise ModelLoadError(
                f"Model {model.name!r} has no transformers folder (only {model.gguf_path or 'nothing'}).",
                hint="Use the llama.cpp endpoint for GGUF models, or register a transformers folder.",
            )
        return cls(model.hf_path, name=model.name, **kwargs)

    def load(self) -> None:
        with self._load_lock:
            if self._model is None:
                self._load()

    def _load(self) -> None:
        check_model_folder(self.model_path)
        if self.adapter_path:
            check_adapter_folder(self.adapter_path)
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise ModelLoadError(f"The transformers backend cannot start ({exc}).", hint=INSTALL_HINT) from None
        cuda = torch.cuda.is_available() and self.device in (None, "cuda")
        self.device = "cuda" if cuda else (self.device or "cpu")
        dtype = torch.bfloat16 if cuda else torch.float32
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(self.model_path), trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(str(self.model_path), dtype=dtype, trust_remote_code=False)
            if self.adapter_path:  # a PEFT adapter, or a ReFT intervention's hooks on the base
                from pipelines.models.reft import apply_adapter

                model = apply_adapter(model, self.adapter_path)
        except ImportError as exc:
            raise ModelLoadError(f"The transformers backend cannot load adapters ({exc}).", hint=INSTALL_HINT) from None
        except Exception as exc:  # a damaged folder fails in many library-specific ways
            what = f"{self.model_path}" + (f" with adapter {self.adapter_path}" if self.adapter_path else "")
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelLoadError(f"Could not load {what}: {first_line}", hint="Check the folder is complete.") from exc
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.used_default_template = not getattr(tokenizer, "chat_template", None)
        self._model, self._tokenizer, self._torch = model.to(self.device).eval(), tokenizer, torch

    def format_prompt(self, messages: Messages) -> str:
        """The exact text the model sees: its chat template, or the default one (flagged)."""
        self.load()
        if self.used_default_template:
            return default_chat_prompt(messages)
        return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _encode(self, prompts: list[str]):
        # A template already contains its special tokens; the default template gets the usual ones.
        return self._tokenizer(
            prompts, return_tensors="pt", padding=True, add_special_tokens=self.used_default_template,
        ).to(self.device)

    def _stop_ids(self) -> list[int]:
        ids = {self._tokenizer.eos_token_id}
        eos = getattr(self._model.generation_config, "eos_token_id", None)
        ids.update(eos if isinstance(eos, list) else [eos])
        return sorted(i for i in ids if i is not None)

    def _generate_kwargs(self, params: SamplingParams) -> dict[str, Any]:
        from transformers import GenerationConfig

        sample = params.temperature > 0
        config = GenerationConfig(
            max_new_tokens=params.max_tokens, do_sample=sample, eos_token_id=self._stop_ids(),
            pad_token_id=self._tokenizer.pad_token_id, stop_strings=list(params.stop) if params.stop else None,
            **({"temperature": params.temperature, "top_p": params.top_p, "top_k": 0} if sample else {}),
        )
        # stop_strings needs the tokenizer to map strings onto token boundaries.
        return {"generation_config": config, "tokenizer": self._tokenizer}

    def _generate_chunk(self, prompts: list[str], params: SamplingParams) -> list[Generation]:
        """One padded micro-batch of formatted prompts, run synchronously (in a worker thread)."""
        torch = self._torch
        started = time.perf_counter()
        try:
            with self._lock, torch.inference_mode():
                inputs = self._encode(prompts)
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                output = self._model.generate(**inputs, **self._generate_kwargs(params))
        except Exception as exc:  # torch/transformers raise many types; callers get one
            raise BackendError(
                f"Local generation with {self.model} failed: {type(exc).__name__}: {exc}",
                hint="Try shorter prompts, fewer max_tokens or a smaller batch_size.",
            ) from exc
        latency = time.perf_counter() - started
        width = inputs["input_ids"].shape[1]
        prompt_counts = inputs["attention_mask"].sum(dim=1).tolist()
        return [
            self._to_generation(new_ids, int(prompt_counts[row]), latency, params)
            for row, new_ids in enumerate(output[:, width:].tolist())
        ]

    def _to_generation(
        self, new_ids: list[int], prompt_tokens: int, latency: float, params: SamplingParams
    ) -> Generation:
        """Tokens up to the first eos/pad are the completion; the text ends before any stop string."""
        done_ids = set(self._stop_ids()) | {self._tokenizer.pad_token_id}
        kept = next((new_ids[:i] for i, tok in enumerate(new_ids) if tok in done_ids), new_ids)
        text, stopped = _cut_at_stop(self._tokenizer.decode(kept, skip_special_tokens=True), params.stop)
        return Generation(
            text=text, model=self.model, backend=self.backend, prompt_tokens=prompt_tokens,
            completion_tokens=len(kept), latency_s=latency,
            finish_reason="stop" if stopped or len(kept) < params.max_tokens else "length",
        )

    def _generate_or_split(self, prompts: list[str], params: SamplingParams) -> list[Generation | BackendError]:
        """A micro-batch; when it fails as a whole (e.g. out of memory), each prompt alone, so one
        bad item never fails its neighbours."""
        try:
            return list(self._generate_chunk(prompts, params))
        except BackendError as exc:
            if len(prompts) == 1:
                return [exc]
        out: list[Generation | BackendError] = []
        for prompt in prompts:
            out.extend(self._generate_or_split([prompt], params))
        return out

    async def agenerate_batch(
        self, batch: list[Messages], params: SamplingParams | None = None
    ) -> list[Generation | BackendError]:
        """Micro-batches of ``batch_size`` in a worker thread, in the caller's order. Prompts are
        grouped by length first so each micro-batch carries little padding."""
        params = params or SamplingParams()
        await asyncio.to_thread(self.load)
        prompts = [self.format_prompt(m) for m in batch]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Generation | BackendError | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            done = await asyncio.to_thread(self._generate_or_split, [prompts[i] for i in chunk], params)
            for i, result in zip(chunk, done):
                results[i] = self._report(result)
        return results  # type: ignore[return-value]

    async def agenerate(self, messages: Messages, params: SamplingParams | None = None) -> Generation:
        result = (await self.agenerate_batch([messages], params))[0]
        if isinstance(result, BackendError):
            raise result
        return result

    def stream(self, messages: Messages, params: SamplingParams | None = None) -> Iterator[str]:
        """Pieces as they are decoded; generation runs in a thread that stops when the consumer does."""
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        params = params or SamplingParams()
        self.load()
        prompt = self.format_prompt(messages)
        cancel, torch = threading.Event(), self._torch

        class _Cancelled(StoppingCriteria):
            """Ends generation once the consumer stops reading (stop string, closed generator)."""

            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with self._lock, torch.inference_mode():
                    if params.seed is not None:
                        torch.manual_seed(params.seed)
                    self._model.generate(
                        **self._encode([prompt]), streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Cancelled()]), **self._generate_kwargs(params),
                    )
            except Exception as exc:
                failure.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True, name=f"stream-{self.model}")
        worker.start()
        try:
            yield from _pieces_until_stop(streamer, params.stop)
        finally:
            cancel.set()
        worker.join()
        if failure:
            raise BackendError(f"Local streaming with {self.model} failed: {failure[0]}") from failure[0]

    def count_tokens(self, text: str) -> int:
        self.load()
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def close(self) -> None:
        with self._load_lock:
            self._model = self._tokenizer = None


def _cut_at_stop(text: str, stop: tuple[str, ...] | None) -> tuple[str, bool]:
    """Text up to the earliest stop string (excluded), and whether one was found."""
    hits = [i for i in (text.find(s) for s in stop or ()) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


def _pieces_until_stop(pieces: Iterator[str], stop: tuple[str, ...] | None) -> Iterator[str]:
    """Re-chunk streamed text so no stop string (even split across pieces) is ever yielded."""
    hold = max((len(s) for s in stop or ()), default=1) - 1
    text, sent = "", 0
    for piece in pieces:
        text += piece
        cut, stopped = _cut_at_stop(text, stop)
        if stopped:
            if len(cut) > sent:
                yield cut[sent:]
            return
        safe = len(text) - hold
        if safe > sent:
            yield text[sent:safe]
            sent = safe
    if len(text) > sent:
        yield text[sent:]


def _adapter_base_from_config(adapter_path: Path) -> str | None:
    """The base recorded by PEFT or ReFT, when it is a local folder (never a hub name: tests run offline)."""
    base = adapter_base(adapter_path)
    return base if base and Path(base).is_dir() else None
