"""Word-level difference of two answers for the side-by-side view (difflib's matcher on words).

The result is a list of (word run, tag) segments per side, tag 'same' or 'changed'; the page turns
it into HTML with every word escaped, so an answer can never inject markup.
"""

from __future__ import annotations

import difflib
import html


def word_diff(left: str, right: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    a, b = left.split(), right.split()
    out_a: list[tuple[str, str]] = []
    out_b: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        kind = "same" if tag == "equal" else "changed"
        if i2 > i1:
            out_a.append((" ".join(a[i1:i2]), kind))
        if j2 > j1:
            out_b.append((" ".join(b[j1:j2]), kind))
    return out_a, out_b


def to_html(segments: list[tuple[str, str]], color: str = "#fde68a") -> str:
    parts = [html.escape(text) if kind == "same" else f'<mark style="background:{color}">{html.escape(text)}</mark>'
             for text, kind in segments]
    return '<div style="white-space:pre-wrap">' + " ".join(parts) + "</div>"


def similarity(left: str, right: str) -> float:
    return difflib.SequenceMatcher(a=left.split(), b=right.split(), autojunk=False).ratio()
