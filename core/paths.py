"""Paths built from names people type: they must stay inside STUDIO_HOME.

Why one helper: a page that takes a file name (an export, a run, a snapshot) runs on the server,
so ``../../.bashrc``, ``/etc/cron.d/x`` or a symlink planted inside the home would let a browser
user write anywhere the studio process can. Every place that turns a typed name into a path asks
:func:`safe_child`, which resolves the path the way the OS will (``..`` and symlinks included)
and refuses anything that does not land strictly inside the folder it belongs to.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.errors import BadInput
from core.inputs import MAX_PART_BYTES, quote

_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\- ]{0,127}$")


def _text(name: object, what: str) -> str:
    if not isinstance(name, (str, os.PathLike)):
        raise BadInput(f"The {what} {quote(name)} is not text.", hint=f"Type the {what} as plain text.")
    text = os.fspath(name)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if "\x00" in text:
        raise BadInput(f"The {what} {quote(text)} contains a NUL byte.", hint=f"Remove the NUL character from the {what}.")
    if not text.strip():
        raise BadInput(f"No {what} was given.", hint=f"Type a {what}, e.g. 'my-export.jsonl'.")
    return text.strip()


def safe_child(base: str | os.PathLike, name: str | os.PathLike, *, what: str = "name") -> Path:
    """``base / name`` resolved, refused unless it lies strictly inside ``base``.

    ``name`` may be relative (``exports/a.jsonl``, sub-folders allowed) or an absolute path that is
    already inside ``base`` (the pages prefill one). ``..``, absolute paths elsewhere, ``~``
    expansion, NUL bytes and symlinks that lead out are all refused with a BadInput naming ``what``.
    """
    text = _text(name, what)
    root = Path(base).resolve()
    candidate = Path(text)
    try:
        resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    except (OSError, RuntimeError):  # a link loop: it leads nowhere inside
        resolved = root.parent
    if text.startswith("~") or resolved == root or not resolved.is_relative_to(root):  # '~' means a home elsewhere
        raise BadInput(f"The {what} {quote(text, 120)} points outside {root}.",
                       hint=f"Give a plain name such as 'my-export.jsonl': it is saved under {root}. "
                            "Sub-folders are fine; '..', other absolute paths and links that lead out are not.")
    too_long = [part for part in resolved.relative_to(root).parts if len(part.encode("utf-8")) > MAX_PART_BYTES]
    if too_long:
        raise BadInput(f"The {what} has a part of {len(too_long[0].encode('utf-8'))} bytes.",
                       hint=f"Keep each folder or file name under {MAX_PART_BYTES} bytes.")
    return resolved


def plain_name(name: str, *, what: str = "name") -> str:
    """A name that becomes one file or folder name (a run id, a snapshot name): no separators, no
    leading dot, 1-128 letters, digits, spaces, '.', '_' or '-'."""
    text = _text(name, what)
    if not _PLAIN.match(text) or text in (".", ".."):
        raise BadInput(f"The {what} {quote(text)} is not allowed.",
                       hint="Use 1-128 letters, digits, spaces, '.', '_' or '-', starting with a letter or digit.")
    return text
