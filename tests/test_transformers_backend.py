"""The local transformers backend on a real tiny Llama (built offline once per session)."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading

import pytest

from pipelines.llm.base import Generation, SamplingParams
from pipelines.llm.transformers_local import TransformersBackend
from storage.registry import ModelRecord
from core.errors import BackendError, ModelLoadError

GREEDY = SamplingParams(temperature=0, max_tokens=24)
PROMPTS = [
    "Hi",
    "The cat sat on the mat.",
    "Please write a short answer to the question below about the long summer and the river.",
    "Numbers like one, two and three are easy to count. Birds sing in the trees when the morning is warm. "
    "The teacher asked the class to read the story again.",
    "What is water?",
]


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def backend(tiny_model_dir) -> TransformersBackend:
    llm = TransformersBackend(tiny_model_dir, name="tiny", batch_size=8)
    llm.load()
    return llm


def test_single_generate_returns_text_and_token_counts(backend):
    gen = backend.generate(chat("The cat sat on the mat."), GREEDY)
    assert isinstance(gen, Generation)
    assert gen.text.strip() and gen.backend == "transformers" and gen.model == "tiny"
    assert gen.prompt_tokens == backend.count_tokens(backend.format_prompt(chat("The cat sat on the mat.")))
    assert 0 < gen.completion_tokens <= GREEDY.max_tokens
    assert gen.finish_reason in ("stop", "length") and gen.latency_s > 0
    assert not backend.used_default_template


def test_batch_with_left_padding_matches_one_at_a_time(backend):
    batch = [chat(p) for p in PROMPTS]
    lengths = {backend.count_tokens(backend.format_prompt(m)) for m in batch}
    assert len(lengths) == len(PROMPTS), "prompts must differ in length so padding is exercised"
    together = backend.generate_batch(batch, GREEDY)
    alone = [backend.generate(m, GREEDY) for m in batch]
    assert [g.text for g in together] == [g.text for g in alone]
    assert [g.completion_tokens for g in together] == [g.completion_tokens for g in alone]
    assert [g.prompt_tokens for g in together] == [g.prompt_tokens for g in alone]  # padding not counted
    assert len({g.text for g in together}) > 1


def test_micro_batches_cover_every_prompt_in_order(tiny_model_dir, backend):
    small = TransformersBackend(tiny_model_dir, batch_size=2)
    batch = [chat(p) for p in PROMPTS]
    expected = [g.text for g in backend.generate_batch(batch, GREEDY)]
    assert [g.text for g in small.generate_batch(batch, GREEDY)] == expected


def test_seed_makes_sampling_reproducible(backend):
    messages = chat("Tell me about the garden.")
    hot = SamplingParams(temperature=1.5, max_tokens=24, seed=7)
    first, again = backend.generate(messages, hot), backend.generate(messages, hot)
    assert first.text == again.text
    others = {backend.generate(messages, SamplingParams(temperature=1.5, max_tokens=24, seed=s)).text for s in (1, 2)}
    assert len(others | {first.text}) > 1


def test_stop_string_truncates_and_reports_stop(backend):
    messages = chat("The teacher asked the class.")
    unstopped = backend.generate(messages, SamplingParams(temperature=0, max_tokens=32))
    full = unstopped.text
    stop = full[4:7]
    assert len(stop) == 3 and full.find(stop) >= 0
    gen = backend.generate(messages, SamplingParams(temperature=0, max_tokens=32, stop=(stop, "zzzz")))
    assert gen.text == full[: full.find(stop)]
    assert gen.finish_reason == "stop"
    assert gen.completion_tokens < unstopped.completion_tokens


def test_max_tokens_is_honoured(backend):
    gen = backend.generate(chat("Rain fell on the roof"), SamplingParams(temperature=0, max_tokens=3))
    assert gen.completion_tokens == 3
    assert gen.finish_reason == "length"


def test_adapter_loads_and_changes_greedy_output(tiny_model_dir, tiny_adapter_dir, backend):
    base = ModelRecord(name="tiny", kind="hf", source="folder", hf_path=str(tiny_model_dir))
    adapter = ModelRecord(name="tiny-lora", kind="adapter", source="training", adapter_path=str(tiny_adapter_dir))
    tuned = TransformersBackend.from_record(adapter, base)
    assert tuned.model == "tiny-lora" and tuned.adapter_path == tiny_adapter_dir
    batch = [chat(p) for p in PROMPTS[:3]]
    tuned_texts = [g.text for g in tuned.generate_batch(batch, GREEDY)]
    base_texts = [g.text for g in backend.generate_batch(batch, GREEDY)]
    assert tuned_texts != base_texts


def test_from_record_of_gguf_only_model_is_refused():
    record = ModelRecord(name="smol-gguf", kind="gguf", source="gguf", gguf_path="/models/smol.gguf")
    with pytest.raises(ModelLoadError, match="'smol-gguf' has no transformers folder"):
        TransformersBackend.from_record(record)


def test_adapter_without_base_is_refused(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/not-here"}))
    record = ModelRecord(name="lonely", kind="adapter", source="training", adapter_path=str(tmp_path))
    with pytest.raises(ModelLoadError, match="Adapter 'lonely' has no base model"):
        TransformersBackend.from_record(record)


def _broken_copy(src, dst, remove=(), config=None):
    shutil.copytree(src, dst)
    for name in remove:
        (dst / name).unlink()
    if config is not None:
        (dst / "config.json").write_text(json.dumps(config))
    return dst


@pytest.mark.parametrize(
    ("breakage", "match"),
    [
        ("missing", r"does not exist or is not a folder"),
        ("empty", r"is not a transformers model folder: no config\.json"),
        ("gguf", r"no config\.json; it holds a GGUF file"),
        ("no_model_type", r"config\.json has no model_type"),
        ("bad_json", r"config\.json is not a valid JSON object"),
        ("no_weights", r"has no weights \(model\.safetensors"),
        ("no_tokenizer", r"has no tokenizer \(tokenizer\.json"),
    ],
)
def test_folder_that_is_not_a_model_is_a_model_load_error(tiny_model_dir, tmp_path, breakage, match):
    folder = tmp_path / "model"
    if breakage == "empty":
        folder.mkdir()
    elif breakage == "gguf":
        folder.mkdir()
        (folder / "smol.gguf").write_bytes(b"GGUF")
    elif breakage == "no_model_type":
        _broken_copy(tiny_model_dir, folder, config={"hidden_size": 64})
    elif breakage == "bad_json":
        _broken_copy(tiny_model_dir, folder)
        (folder / "config.json").write_text("{not json")
    elif breakage == "no_weights":
        _broken_copy(tiny_model_dir, folder, remove=["model.safetensors"])
    elif breakage == "no_tokenizer":
        _broken_copy(tiny_model_dir, folder, remove=["tokenizer.json"])
    with pytest.raises(ModelLoadError, match=match):
        TransformersBackend(folder).generate(chat("hi"), GREEDY)


def test_corrupt_weights_are_a_model_load_error(tiny_model_dir, tmp_path):
    folder = _broken_copy(tiny_model_dir, tmp_path / "model")
    (folder / "model.safetensors").write_bytes(b"definitely not safetensors")
    with pytest.raises(ModelLoadError, match=r"Could not load .*model"):
        TransformersBackend(folder).load()


def test_adapter_folder_without_config_is_a_model_load_error(tiny_model_dir, tmp_path):
    with pytest.raises(ModelLoadError, match=r"not a PEFT adapter folder: no adapter_config\.json"):
        TransformersBackend(tiny_model_dir, adapter_path=tmp_path).load()


def test_tokenizer_without_chat_template_uses_default_and_flags_it(tiny_model_no_template_dir):
    plain = TransformersBackend(tiny_model_no_template_dir)
    prompt = plain.format_prompt([{"role": "system", "content": "Be brief."}, *chat("Hi there")])
    assert plain.used_default_template
    assert prompt == "### System:\nBe brief.\n\n### User:\nHi there\n\n### Assistant:\n"
    assert plain._tokenizer.pad_token == plain._tokenizer.eos_token  # no pad token: eos pads
    messages = [chat("Hi"), chat("The sun rises in the east and sets in the west.")]
    batch = plain.generate_batch(messages, GREEDY)
    assert all(g.text.strip() for g in batch)
    assert [g.text for g in batch] == [plain.generate(m, GREEDY).text for m in messages]  # eos as pad works


def test_stream_pieces_join_to_the_full_text(backend):
    messages = chat("She opened the book.")
    params = SamplingParams(temperature=0, max_tokens=32)
    pieces = list(backend.stream(messages, params))
    assert len(pieces) > 1
    assert "".join(pieces) == backend.generate(messages, params).text


def test_stream_stops_before_a_stop_string(backend):
    messages = chat("She opened the book.")
    full = backend.generate(messages, SamplingParams(temperature=0, max_tokens=32)).text
    stop = full[6:10]
    pieces = list(backend.stream(messages, SamplingParams(temperature=0, max_tokens=32, stop=(stop,))))
    assert "".join(pieces) == full[: full.find(stop)]


def test_generate_batch_inside_a_running_event_loop(backend):
    async def inside_loop():
        return backend.generate_batch([chat(p) for p in PROMPTS[:2]], GREEDY)

    results = asyncio.run(inside_loop())
    assert [g.text for g in results] == [backend.generate(chat(p), GREEDY).text for p in PROMPTS[:2]]


def test_agenerate_batch_leaves_the_event_loop_free(backend):
    async def main():
        ticks = 0
        params = SamplingParams(temperature=0, max_tokens=48)
        task = asyncio.create_task(backend.agenerate_batch([chat(p) for p in PROMPTS], params))
        while not task.done():
            ticks += 1
            await asyncio.sleep(0.001)
        return ticks, task.result()

    ticks, results = asyncio.run(main())
    assert len(results) == len(PROMPTS) and ticks > 5


def test_two_threads_share_one_model_safely(backend):
    """Seeding and sampling must be atomic per call: without the lock, two threads' draws from
    torch's global generator interleave and seeded outputs stop being reproducible."""
    prompts = [chat(p) for p in PROMPTS[:2]]
    params = [SamplingParams(temperature=1.5, max_tokens=24, seed=s) for s in (11, 12)]
    expected = [backend.generate(m, p).text for m, p in zip(prompts, params)]
    got: list[list[str]] = [[], []]

    def worker(i: int):
        for _ in range(4):
            got[i].append(backend.generate(prompts[i], params[i]).text)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [[expected[0]] * 4, [expected[1]] * 4]


def test_failure_during_generation_is_a_backend_error(tiny_model_dir, monkeypatch):
    llm = TransformersBackend(tiny_model_dir)
    llm.load()

    def out_of_memory(*args, **kwargs):  # injected fault: what torch raises when memory runs out
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(llm._model, "generate", out_of_memory)
    results = llm.generate_batch([chat("a"), chat("b")], GREEDY)
    assert all(isinstance(r, BackendError) for r in results)
    with pytest.raises(BackendError, match=r"Local generation with .* failed: RuntimeError: CUDA out of memory"):
        llm.generate(chat("a"), GREEDY)


def test_failed_micro_batch_falls_back_to_one_prompt_at_a_time(tiny_model_dir, backend, monkeypatch):
    """Injected faults: batches of more than one row run out of memory, and one long prompt fails
    even alone. Every other prompt still gets its generation."""
    llm = TransformersBackend(tiny_model_dir, batch_size=8)
    llm.load()
    real_generate = llm._model.generate
    calls: list[int] = []

    def flaky(**kwargs):
        rows, longest = kwargs["input_ids"].shape[0], int(kwargs["attention_mask"].sum(dim=1).max())
        calls.append(rows)
        if rows > 1 or longest > 40:
            raise RuntimeError("out of memory")
        return real_generate(**kwargs)

    monkeypatch.setattr(llm._model, "generate", flaky)
    results = llm.generate_batch([chat(p) for p in PROMPTS], GREEDY)
    expected = [g.text for g in backend.generate_batch([chat(p) for p in PROMPTS], GREEDY)]
    assert calls[0] == len(PROMPTS) and calls[1:] == [1] * len(PROMPTS)
    assert isinstance(results[3], BackendError)  # the 40+ token prompt
    assert [r.text for i, r in enumerate(results) if i != 3] == [t for i, t in enumerate(expected) if i != 3]
