"""llama.cpp's own server, compiled for this machine's CPU: the embedded endpoint's engine.

Why compile: the server wheels on the package index (xllamacpp) are built for AVX2 so they run on
any x86 CPU. This server's batches are matrix products, and those are where AVX-512 and its
bfloat16 instructions count: on the 2-core AVX-512 machine of docs/benchmarks.md the AVX2 wheel
decodes 8 requests at once at 1.2-1.9x one request, the native build at 4.2x (endpoint_batching).

Where the source comes from: llama.cpp as vendored in the ``llama-cpp-python`` sdist on PyPI (the
machines reach the package index, not GitHub), pinned in ``SOURCE``. ``build`` compiles only the
``llama-server`` target, once per (source version, CPU) into the download cache, so every studio
checkout on the machine shares it; ``install`` copies it into the virtual environment, where
``studio.llm_serve`` looks for it. Without a compiler the studio keeps serving with the xllamacpp
wheel, and ``setup.sh`` says so.

``bf16_copy`` writes the GGUF the native server serves: the pulled 4-bit weights expanded to
bfloat16 once (lossless for 4-bit values up to bfloat16's rounding). A batch of 8 costs about 2x one
token in bfloat16 on AVX-512, against about 6x for the 4-bit kernels, whose unpacking is the work.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from core.errors import StudioError
from pipelines.models.pull import PullSpec, Progress, download_sdist

SOURCE = PullSpec(
    package="llama-cpp-python",
    version="0.3.36",
    member="vendor/llama.cpp",
    description="llama.cpp's source, as vendored in llama-cpp-python's sdist",
)
BINARY = "studio-llama-server"
CMAKE_OPTIONS = ("-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF",
                 "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                 "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_TOOLS=ON")
BUILD_STEP = re.compile(r"^\[\s*(\d+)\s*(?:/\s*(\d+)|%)\]")  # ninja's "[12/206]", make's "[ 12%]"
EXPANDED_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")


def cpu_tag() -> str:
    """Which CPU a native build is for: the architecture and a hash of the CPU's feature flags."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}-{hashlib.sha256(flags.encode()).hexdigest()[:12]}"


def cached_binary(cache_dir: Path) -> Path:
    return Path(cache_dir) / "llama-server" / f"{SOURCE.version}-{cpu_tag()}" / BINARY


def installed_binary() -> Path:
    """Where ``studio.llm_serve`` looks: next to this environment's python."""
    return Path(sys.prefix) / "bin" / BINARY


def native_server() -> Path | None:
    found = installed_binary()
    return found if found.is_file() and os.access(found, os.X_OK) else None


def missing_tools() -> list[str]:
    return [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]


def build(cache_dir: Path, progress: Progress | None = None, jobs: int | None = None) -> Path:
    """The native ``llama-server`` for this CPU, compiled now unless the cache has it (minutes)."""
    target = cached_binary(cache_dir)
    if target.is_file():
        return target
    missing = missing_tools()
    if missing:
        raise StudioError(f"Compiling llama.cpp's server needs {' and '.join(missing)}, which this machine lacks.",
                          hint="Install them (Debian: apt-get install cmake g++) and run setup again; until then "
                               "the studio serves with the xllamacpp wheel, which batches less well.")
    sdist = download_sdist(SOURCE, Path(cache_dir) / "dl", progress)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llama-build-", dir=target.parent) as tmp:
        source = _extract_source(sdist, Path(tmp))
        build_dir = Path(tmp) / "build"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        if progress is not None:
            progress(f"compiling llama.cpp's server for this CPU ({SOURCE.package} {SOURCE.version}; a few minutes)", None)
        _run(["cmake", "-S", str(source), "-B", str(build_dir), *generator, *CMAKE_OPTIONS], "configuring")
        _run(["cmake", "--build", str(build_dir), "--target", "llama-server", "-j", str(jobs or os.cpu_count() or 2)],
             "compiling", progress)
        built = build_dir / "bin" / "llama-server"
        if not built.is_file():
            raise StudioError(f"The build finished without {built}.", hint=f"Delete {target.parent} and run setup again.")
        partial = target.with_name(target.name + f".partial-{os.getpid()}")
        shutil.copy2(built, partial)
        os.replace(partial, target)
    return target


def _extract_source(sdist: Path, into: Path) -> Path:
    """Only llama.cpp's tree out of the sdist; no member may land outside ``into``."""
    try:
        with tarfile.open(sdist, mode="r:gz") as tar:
            wanted = tuple(SOURCE.member.split("/"))  # top folder/vendor/llama.cpp/...
            members = [m for m in tar.getmembers() if tuple(m.name.split("/")[1:1 + len(wanted)]) == wanted]
            if not members:
                raise StudioError(f"{sdist} does not contain {SOURCE.member}.", hint=f"Delete {sdist} and run setup again.")
            tar.extractall(into, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise StudioError(f"Reading {sdist} failed ({exc}).", hint=f"Delete {sdist} and run setup again.") from None
    return into / members[0].name.split("/")[0] / SOURCE.member


def _run(cmd: list[str], what: str, progress: Progress | None = None) -> None:
    """Run a build step; report the build's ``[done/total]`` steps every tenth; its last lines on failure."""
    tail: collections.deque[str] = collections.deque(maxlen=15)
    next_report = 0.1
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        for line in proc.stdout:
            tail.append(line.rstrip())
            step = BUILD_STEP.match(line)
            done = int(step[1]) / int(step[2] or 100) if step else 0.0
            if progress is not None and done >= next_report:
                progress(f"{what} llama.cpp's server", done)
                next_report = done + 0.099
    if proc.returncode != 0:
        raise StudioError(f"{what.capitalize()} llama.cpp's server failed (exit {proc.returncode}):\n" + "\n".join(tail),
                          hint="Fix what the compiler says above and run setup again; until then the studio "
                               "serves with the xllamacpp wheel.")


def install(cache_dir: Path, progress: Progress | None = None) -> Path:
    """Build (or reuse) the native server and put it in this environment; returns where it is."""
    built = build(cache_dir, progress)
    target = installed_binary()
    if target.is_file() and (target.stat().st_size, target.stat().st_mtime_ns) == \
            (built.stat().st_size, built.stat().st_mtime_ns):  # copy2 keeps the build's time: already there
        return target
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.copy2(built, partial)
    os.replace(partial, target)
    return target


def bf16_copy(gguf_path: Path) -> Path:
    """The GGUF with its quantized weights expanded to bfloat16, made once next to it (a temporary
    name, then a rename). A GGUF without quantized weights is served as it is."""
    import gguf
    from gguf import GGMLQuantizationType as QType, quants

    gguf_path = Path(gguf_path)
    target = gguf_path.with_name(f"{gguf_path.stem}.bf16.gguf")
    if target.is_file() and target.stat().st_mtime >= gguf_path.stat().st_mtime:
        return target
    reader = gguf.GGUFReader(gguf_path)
    expand = {getattr(QType, name) for name in EXPANDED_TYPES}
    if not any(t.tensor_type in expand for t in reader.tensors):
        return gguf_path
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    writer = gguf.GGUFWriter(partial, arch)
    try:
        for field in reader.fields.values():
            if field.name in (gguf.Keys.General.ARCHITECTURE, gguf.Keys.General.FILE_TYPE) or field.name.startswith("GGUF."):
                continue
            value_type = field.types[0]
            sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
        for tensor in reader.tensors:
            if tensor.tensor_type in expand:
                weights = quants.dequantize(tensor.data, tensor.tensor_type)
                writer.add_tensor(tensor.name, quants.quantize(weights, QType.BF16), raw_dtype=QType.BF16)
            else:
                writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.models.llama_server``: what ``scripts/setup.sh`` runs."""
    from core.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m pipelines.models.llama_server", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    try:
        where = install(Settings.from_env().cache_dir, lambda message, fraction: print(
            message if fraction is None else f"{message}: {fraction:.0%}", flush=True))
    except StudioError as exc:
        print(f"warning: {exc.message}" + (f"\n  {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 1
    print(f"llama.cpp's server for this CPU: {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
