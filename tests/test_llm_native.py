"""llama.cpp's server compiled for this CPU: the build's source, the bfloat16 weights it serves, and
which server ``studio.llm_serve`` runs (the native build by default, the xllamacpp wheel on request)."""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import replace

import gguf
import httpx
import numpy as np
import pytest
from gguf import GGMLQuantizationType as QType, quants

from core.errors import StorageError, StudioError
from core.settings import EMBEDDED_MODEL, Settings
from pipelines.models import llama_server
from tests.fixtures.models import llm_settings


def _tensors(path) -> dict[str, object]:
    return {t.name: t for t in gguf.GGUFReader(path).tensors}


def test_bf16_copy_expands_every_quantized_weight_and_keeps_the_rest(smollm2_gguf, tmp_path):
    source = tmp_path / smollm2_gguf.name
    source.symlink_to(smollm2_gguf)
    served = llama_server.bf16_copy(source)
    assert served.name == "SmolLM2-135M-Instruct.Q4_1.bf16.gguf" and served.parent == tmp_path
    before, after = _tensors(smollm2_gguf), _tensors(served)
    assert list(before) == list(after)
    assert {t.tensor_type for t in after.values()} <= {QType.BF16, QType.F32}
    for name, old in before.items():
        new = after[name]
        assert tuple(new.shape) == tuple(old.shape), name
        if old.tensor_type == QType.F32:
            assert new.tensor_type == QType.F32 and np.array_equal(np.asarray(new.data), np.asarray(old.data))
    name = "blk.0.ffn_down.weight"
    exact = quants.dequantize(before[name].data, before[name].tensor_type)
    expanded = quants.dequantize(after[name].data, QType.BF16)
    assert np.allclose(expanded, exact, rtol=2 ** -8, atol=0)  # bfloat16's rounding, nothing more
    reader_before, reader_after = gguf.GGUFReader(smollm2_gguf), gguf.GGUFReader(served)
    template = gguf.Keys.Tokenizer.CHAT_TEMPLATE
    assert reader_after.fields[template].contents() == reader_before.fields[template].contents()
    assert reader_after.fields[gguf.Keys.General.FILE_TYPE].contents() == gguf.LlamaFileType.MOSTLY_BF16
    made = served.stat().st_mtime_ns
    assert llama_server.bf16_copy(source) == served and served.stat().st_mtime_ns == made  # made once
    assert llama_server.bf16_copy(served) == served  # nothing quantized left: served as it is
    assert not list(tmp_path.glob("*.partial-*"))


def test_a_file_that_is_not_a_gguf_leaves_nothing_behind(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"\x00\x01not a model" * 100)
    with pytest.raises(ValueError):
        llama_server.bf16_copy(bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.gguf"]


def _sdist(path, names: list[str]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            data = f"# {name}\n".encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_only_llama_cpps_own_tree_is_taken_from_the_sdist(tmp_path):
    sdist = tmp_path / "src.tar.gz"
    _sdist(sdist, ["pkg-1/.git/modules/vendor/llama.cpp/config", "pkg-1/vendor/llama.cpp/CMakeLists.txt",
                   "pkg-1/vendor/llama.cpp/tools/server/server.cpp", "pkg-1/llama_cpp/llama.py"])
    root = llama_server._extract_source(sdist, tmp_path / "out")
    assert root == tmp_path / "out" / "pkg-1" / "vendor" / "llama.cpp"
    found = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert found == ["pkg-1/vendor/llama.cpp/CMakeLists.txt", "pkg-1/vendor/llama.cpp/tools/server/server.cpp"]


def test_an_sdist_without_llama_cpp_is_refused_with_what_to_do(tmp_path):
    sdist = tmp_path / "src.tar.gz"
    _sdist(sdist, ["pkg-1/llama_cpp/llama.py"])
    with pytest.raises(StudioError, match=r"does not contain vendor/llama.cpp.*Delete .*src.tar.gz"):
        llama_server._extract_source(sdist, tmp_path / "out")


def test_without_a_compiler_the_build_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(llama_server.shutil, "which", lambda tool: None if tool == "c++" else f"/usr/bin/{tool}")
    with pytest.raises(StudioError, match=r"needs c\+\+.*apt-get install cmake g\+\+.*xllamacpp"):
        llama_server.build(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_the_cached_build_belongs_to_one_source_version_and_cpu(tmp_path):
    where = llama_server.cached_binary(tmp_path)
    assert where.parent.parent == tmp_path / "llama-server"
    assert where.parent.name.startswith(f"{llama_server.SOURCE.version}-") and llama_server.cpu_tag() in where.parent.name


def test_an_unknown_server_choice_is_refused(monkeypatch):
    monkeypatch.setenv("STUDIO_LLM_SERVER", "vllm")
    with pytest.raises(StorageError, match=r"STUDIO_LLM_SERVER='vllm'.*auto .*xllamacpp"):
        Settings.from_env()


def _ask(url: str) -> int:
    reply = httpx.post(f"{url}/chat/completions", timeout=120, json={
        "model": EMBEDDED_MODEL, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8,
        "temperature": 0, "ignore_eos": True})
    reply.raise_for_status()
    return reply.json()["usage"]["completion_tokens"]


@pytest.mark.parametrize("choice", ["auto", "xllamacpp"])
def test_the_embedded_endpoint_runs_the_server_it_was_asked_for(smollm2_gguf, tmp_path, choice):
    from studio.lifecycle import start_llm_server

    if choice == "auto" and llama_server.native_server() is None:
        pytest.skip("setup could not compile llama.cpp's server on this machine")
    gguf_copy = tmp_path / smollm2_gguf.name
    os.link(smollm2_gguf, gguf_copy)  # the server resolves links: a hard link keeps the copy here
    settings = replace(llm_settings(tmp_path / "home"), llm_server=choice)
    handle = start_llm_server(settings, gguf_path=gguf_copy)
    try:
        assert _ask(handle.url) == 8
    finally:
        handle.stop()
    log = (settings.home / "logs" / "llm.log").read_text()
    if choice == "auto":
        assert "llama.cpp's server built for this CPU" in log and "weights SmolLM2-135M-Instruct.Q4_1.bf16.gguf" in log
        assert (tmp_path / "SmolLM2-135M-Instruct.Q4_1.bf16.gguf").is_file()
    else:
        assert "with the xllamacpp wheel" in log and not list(tmp_path.glob("*.bf16.gguf"))


def test_a_build_step_reports_its_progress_and_on_failure_its_last_lines():
    import sys

    seen: list[tuple[str, float]] = []
    script = "import sys\nfor i in range(1, 11): print(f'[{i}/10] Building thing{i}.o')\n"
    llama_server._run([sys.executable, "-c", script], "compiling", lambda m, f: seen.append((m, round(f, 1))))
    assert seen[0] == ("compiling llama.cpp's server", 0.1) and seen[-1][1] == 1.0 and len(seen) == 10
    failing = "print('[ 40%] Building ggml.o'); print('ggml.c:1: error: no AVX'); raise SystemExit(2)"
    with pytest.raises(StudioError, match=r"(?s)Compiling llama.cpp's server failed \(exit 2\):\n.*error: no AVX.*xllamacpp"):
        llama_server._run([sys.executable, "-c", failing], "compiling")
