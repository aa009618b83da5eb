"""The protocol between a benchmark script and ``python -m benchmarks``.

A benchmark stays a plain script that prints a markdown table. When the runner starts it, the
environment carries ``BENCH_JSON`` (where to write results) and maybe ``BENCH_QUICK=1`` (use the
smaller sizes). The script then calls :func:`record` once per figure it has a target or a ratio
for, and :func:`publish` once at the end with the markdown that goes into docs/benchmarks.md.
Run by hand (no ``BENCH_JSON``) both calls do nothing, so the scripts keep working as before.

The results file is rewritten whole after every call (write to a temp file, then rename), so a
script that crashes half-way leaves a readable file without ``complete``: the runner reports it
as failed instead of trusting partial figures.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

ENV_JSON = "BENCH_JSON"
ENV_QUICK = "BENCH_QUICK"


@dataclass
class Result:
    """One headline figure of a benchmark: the measured value, its baseline, ratio and target."""

    name: str
    value: float
    unit: str = ""
    baseline: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    notes: str = ""


@dataclass
class Report:
    """Everything one benchmark run hands to the runner."""

    results: list[Result] = field(default_factory=list)
    markdown: str = ""
    params: dict = field(default_factory=dict)
    complete: bool = False

    @classmethod
    def load(cls, path: Path) -> "Report":
        """Read a results file; a missing or unreadable one is an empty, incomplete report."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        results = [Result(**r) for r in data.get("results", []) if isinstance(r, dict)]
        return cls(results=results, markdown=str(data.get("markdown", "")),
                   params=dict(data.get("params") or {}), complete=bool(data.get("complete")))


_current = Report()


def quick() -> bool:
    """True when the runner asked for the smaller sizes (``--quick``)."""
    return os.environ.get(ENV_QUICK, "") not in ("", "0")


def size(full: int, small: int) -> int:
    """The default size for an argument: ``small`` under ``--quick``, else ``full``."""
    return small if quick() else full


def _path() -> Path | None:
    raw = os.environ.get(ENV_JSON)
    return Path(raw) if raw else None


def _write() -> None:
    path = _path()
    if path is None:
        return
    data = {"results": [asdict(r) for r in _current.results], "markdown": _current.markdown,
            "params": _current.params, "complete": _current.complete}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def record(name: str, value: float, unit: str = "", baseline: float | None = None, ratio: float | None = None,
           target: str = "", met: bool | None = None, notes: str = "") -> Result:
    """Add one figure (e.g. ``record("backend / raw", 0.97, "x", target="≥ 0.90", met=True)``)."""
    result = Result(name=name, value=float(value), unit=unit,
                    baseline=None if baseline is None else float(baseline),
                    ratio=None if ratio is None else float(ratio), target=target, met=met, notes=notes)
    _current.results.append(result)
    _write()
    return result


def params(**values) -> None:
    """The sizes this run used (rows, requests, ...), shown next to the figures."""
    _current.params.update(values)
    _write()


def publish(markdown: str) -> None:
    """The script's final markdown (its tables and verdict lines); marks the run complete."""
    _current.markdown = markdown.strip()
    _current.complete = True
    _write()


def emit(lines: list[str]) -> None:
    """Print the lines (the script's normal output) and publish the same text."""
    text = "\n".join(lines)
    print(text, flush=True)
    publish(text)
