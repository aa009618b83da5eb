"""Text normalisation for preprocessing: whitespace, invisible characters, NFC, optional emoji stripping."""

from __future__ import annotations

import re
import unicodedata

from core.errors import StudioError

_INVISIBLE = dict.fromkeys([0x200B, 0x2060, 0xFEFF, 0x00AD, 0x180E, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])
_INVISIBLE.update({c: None for c in (*range(0x00, 0x20), *range(0x7F, 0xA0)) if chr(c) not in "\t\n"})
_LINE_BREAKS = {0x2028: "\n", 0x2029: "\n\n", 0x0085: "\n"}
_SPACE_RUN = re.compile(r"[^\S\n]{2,}|[^\S\n ]")
_FENCE = re.compile(r"^\s*(```|~~~)")
_KEEP_SYMBOLS = frozenset("\u00a9\u00ae\u2122")  # (c), (R), TM are typography, not pictographs


def _strip_emoji(text: str) -> str:
    try:
        import emoji
    except ModuleNotFoundError as err:
        raise StudioError("Emoji stripping needs the 'emoji' package.", hint="pip install emoji, or turn strip_emoji off.") from err
    return emoji.replace_emoji(text, replace=lambda chars, _data: chars if chars in _KEEP_SYMBOLS else "")


def _tidy_lines(text: str) -> str:
    """Collapse space runs inside lines, keep indentation, leave fenced code alone, keep one blank line."""
    out: list[str] = []
    in_fence = False
    for line in text.split("\n"):
        line = line.rstrip()
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            body = line.lstrip()
            line = line[: len(line) - len(body)] + _SPACE_RUN.sub(" ", body)
            if not line and out and not out[-1]:
                continue
        out.append(line)
    return "\n".join(out).strip()


def normalize_text(text: str, *, whitespace: bool = True, emoji: bool = False) -> tuple[str, list[str]]:
    """Return the normalized text and what changed (the causes a report counts)."""
    causes: list[str] = []

    def stage(cause: str, new: str) -> None:
        nonlocal text
        if new != text:
            causes.append(cause)
            text = new

    if emoji:
        stage("emoji removed", _strip_emoji(text))
    if whitespace:
        stage("unicode composed (NFC)", unicodedata.normalize("NFC", text))
        stage("line endings normalised", text.replace("\r\n", "\n").replace("\r", "\n").translate(_LINE_BREAKS))
        stage("invisible or control characters removed", text.translate(_INVISIBLE))
        stage("whitespace normalised", _tidy_lines(text))
    return text, causes


# --- near duplicates -------------------------------------------------------------------------------
