"""Check that a user-supplied folder or file really is a model before the registry trusts it.

Why here and not at load time: a bad path registered today fails a training run tomorrow, far
from the mistake. These checks read only small files (config JSON, safetensors headers, the GGUF
header and tensor table), so they take milliseconds even for multi-GB models.
"""

from __future__ import annotations

import json
import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from pipelines.models.adapters import REFT_CONFIG, REFT_WEIGHTS, adapter_config
from core.errors import BadInput, ModelLoadError
from core.inputs import load_json, read_bytes

GGUF_MAGIC = b"GGUF"
_CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
MODEL_JSON_BYTES = 32 * 1024 * 1024   # config.json / tokenizer_config.json (chat templates make the latter big)


@dataclass(frozen=True)
class FolderInfo:
    architecture: str | None
    parameters: int | None
    has_chat_template: bool
    is_adapter: bool
    base_model_name_or_path: str | None = None


@dataclass(frozen=True)
class GGUFInfo:
    architecture: str | None
    parameters: int | None
    context_length: int | None
    name: str | None
    has_chat_template: bool


def _read_json(path: Path) -> dict:
    try:  # a user's file: regular, size-capped, UTF-8, depth-capped JSON
        data = load_json(read_bytes(path, "model file", MODEL_JSON_BYTES), path.name, MODEL_JSON_BYTES)
    except BadInput as exc:
        raise ModelLoadError(f"{path} is not readable JSON ({exc.message})", hint="Fix or replace the file.") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} does not hold a JSON object.", hint="Fix or replace the file.")
    return data


def safetensors_parameters(path: Path) -> int:
    """Parameter count from a safetensors header (8-byte length + JSON), without loading tensors."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100_000_000:
                raise ValueError("header length is implausible")
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError, RecursionError) as exc:
        raise ModelLoadError(f"{path} is not a readable safetensors file ({exc}).",
                             hint="Copy the weights again; the file may be truncated.") from None
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


def _estimate_parameters(config: dict) -> int | None:
    """A rough decoder-only estimate when only .bin weights exist: embeddings + 12·h² per layer."""
    hidden = config.get("hidden_size") or config.get("n_embd") or config.get("d_model")
    layers = config.get("num_hidden_layers") or config.get("n_layer")
    vocab = config.get("vocab_size")
    if not (isinstance(hidden, int) and isinstance(layers, int) and isinstance(vocab, int)):
        return None
    return vocab * hidden + layers * 12 * hidden * hidden


def _has_chat_template(folder: Path) -> bool:
    if any((folder / name).is_file() for name in _CHAT_TEMPLATE_FILES):
        return True
    tok_config = folder / "tokenizer_config.json"
    if tok_config.is_file():
        try:
            return bool(_read_json(tok_config).get("chat_template"))
        except ModelLoadError:
            return False
    return False


def _weights(folder: Path, adapter: bool, prefix: str = "adapter_model") -> tuple[list[Path], list[Path]]:
    prefix = prefix if adapter else ""
    tensors = sorted(p for p in folder.glob(f"{prefix}*.safetensors") if p.is_file())
    bins = sorted(p for p in folder.glob(f"{prefix}*.bin") if p.is_file() and "training_args" not in p.name)
    return tensors, bins


def inspect_folder(path: Path | str) -> FolderInfo:
    """A transformers model folder or a PEFT adapter folder; ModelLoadError says what is missing."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelLoadError(f"{folder} is not a folder.", hint="Give the folder that holds config.json and the weights.")
    if adapter_config(folder) is not None:
        return _inspect_adapter(folder)
    if not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"{folder} is not a model folder: it has no config.json (nor adapter_config.json).",
            hint="Give a folder saved with save_pretrained (config.json + *.safetensors), or a .gguf file.",
        )
    config = _read_json(folder / "config.json")
    tensors, bins = _weights(folder, adapter=False)
    if not tensors and not bins:
        raise ModelLoadError(
            f"{folder} has a config.json but no weights (*.safetensors or *.bin).",
            hint="Copy the weight files into the folder, or save the model again with save_pretrained.",
        )
    parameters = sum(safetensors_parameters(p) for p in tensors) if tensors else _estimate_parameters(config)
    architectures = config.get("architectures") or []
    return FolderInfo(
        architecture=architectures[0] if architectures else config.get("model_type"),
        parameters=parameters,
        has_chat_template=_has_chat_template(folder),
        is_adapter=False,
    )


def _inspect_adapter(folder: Path) -> FolderInfo:
    """A PEFT adapter or a ReFT intervention (``pipelines.models.reft``): its base and its weights."""
    config_path = adapter_config(folder)
    config = _read_json(config_path)
    base = config.get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(
            f"{config_path} names no base model (base_model_name_or_path is empty).",
            hint="Set base_model_name_or_path to the base model's folder, or save the adapter again.",
        )
    weights = Path(REFT_WEIGHTS).stem if config_path.name == REFT_CONFIG else "adapter_model"
    tensors, bins = _weights(folder, adapter=True, prefix=weights)
    if not tensors and not bins:
        raise ModelLoadError(
            f"{folder} has {config_path.name} but no adapter weights ({weights}.safetensors or .bin).",
            hint="Copy the adapter weights into the folder.",
        )
    peft_type = "LoReFT" if config_path.name == REFT_CONFIG else config.get("peft_type") or "PEFT"
    return FolderInfo(
        architecture=f"{peft_type} adapter",
        parameters=sum(safetensors_parameters(p) for p in tensors) if tensors else None,
        has_chat_template=_has_chat_template(folder),
        is_adapter=True,
        base_model_name_or_path=str(base),
    )


def inspect_gguf(path: Path | str) -> GGUFInfo:
    """Read a GGUF's header and tensor table; ModelLoadError for a non-GGUF or damaged file.

    The header is parsed here rather than with ``gguf.GGUFReader``, which builds a numpy view for
    every vocabulary string (4-10 s for a 49k-token vocabulary); this skips arrays it does not
    need and takes milliseconds. The ``gguf`` package still supplies the tensor type sizes."""
    file = Path(path)
    if not file.is_file():
        raise ModelLoadError(f"{file} does not exist or is not a file.", hint="Give the path of a .gguf file.")
    size = file.stat().st_size
    with open(file, "rb") as handle:
        magic = handle.read(4)
        if magic != GGUF_MAGIC:
            raise ModelLoadError(
                f"{file} is not a GGUF file (it starts with {magic!r}, not b'GGUF').",
                hint="Give a .gguf model file, e.g. one converted with llama.cpp's convert_hf_to_gguf.py.",
            )
        try:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                fields, tensors, data_start = _GGUFHeader(buf).read()
        except (struct.error, IndexError, ValueError, UnicodeDecodeError, KeyError) as exc:
            raise ModelLoadError(f"{file} is truncated or corrupt: its GGUF header cannot be read ({exc}).",
                                 hint="Download or copy the file again.") from None
    end = max((data_start + offset + nbytes for offset, nbytes, _ in tensors), default=data_start)
    if end > size:
        raise ModelLoadError(f"{file} is truncated: its tensors need {end} bytes but the file has {size}.",
                             hint="Download or copy the file again.")
    arch = fields.get("general.architecture")
    context = fields.get(f"{arch}.context_length") if arch else None
    return GGUFInfo(
        architecture=str(arch) if arch is not None else None,
        parameters=sum(n for _, _, n in tensors) or None,
        context_length=int(context) if context is not None else None,
        name=str(fields["general.name"]) if "general.name" in fields else None,
        has_chat_template="tokenizer.chat_template" in fields,
    )


# GGUF value types -> struct format (0-7, 10-12); 8 is a string, 9 an array.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_SKIPPED = object()


class _GGUFHeader:
    """A sequential reader of a GGUF (v2/v3) header over a memory map."""

    def __init__(self, buf):
        self.buf, self.pos = buf, 4

    def _unpack(self, fmt: str):
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def _string(self, keep: bool = True):
        length = self._unpack("<Q")
        if self.pos + length > len(self.buf):
            raise ValueError("a string runs past the end of the file")
        start, self.pos = self.pos, self.pos + length
        return self.buf[start:self.pos].decode("utf-8") if keep else _SKIPPED

    def _value(self, vtype: int, keep: bool = True):
        if vtype in _SCALARS:
            return self._unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self._string(keep)
        if vtype != _ARRAY:
            raise ValueError(f"unknown value type {vtype}")
        item_type, count = self._unpack("<I"), self._unpack("<Q")
        if count > len(self.buf):
            raise ValueError(f"an array claims {count} items")
        if item_type in _SCALARS:  # fixed-size items: skip them in one step
            self.pos += count * struct.calcsize(_SCALARS[item_type])
        else:
            for _ in range(count):
                self._value(item_type, keep=False)
        return _SKIPPED

    def read(self) -> tuple[dict, list[tuple[int, int, int]], int]:
        """(scalar/string metadata, [(offset, n_bytes, n_elements)], start of tensor data)."""
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

        version = self._unpack("<I")
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} is not supported (2 or 3 expected)")
        n_tensors, n_fields = self._unpack("<Q"), self._unpack("<Q")
        if n_tensors > 1_000_000 or n_fields > 1_000_000:
            raise ValueError(f"implausible counts ({n_tensors} tensors, {n_fields} fields)")
        fields = {}
        for _ in range(n_fields):
            key = self._string()
            value = self._value(self._unpack("<I"))
            if value is not _SKIPPED:
                fields[key] = value
        tensors = []
        for _ in range(n_tensors):
            self._string(keep=False)
            dims = [self._unpack("<Q") for _ in range(self._unpack("<I"))]
            ggml_type, offset = self._unpack("<I"), self._unpack("<Q")
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
            elements = math.prod(dims)
            tensors.append((offset, elements * type_size // block, elements))
        alignment = int(fields.get("general.alignment", 32))
        return fields, tensors, -(-self.pos // alignment) * alignment
