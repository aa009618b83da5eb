"""Small generic widgets the Generate page parts share: a labelled choice, a pager, short text.

Why here and not in ``_ui.py``: these are input helpers (selectboxes keyed by value, page
navigation), while ``_ui.py`` renders results and job progress. Nothing here calls a service.
"""

from __future__ import annotations

from typing import Any, Mapping

import streamlit as st

PAGE_SIZES = (25, 50, 100)


def short(text: Any, width: int = 80) -> str:
    """One line of at most ``width`` characters, for tables and option labels."""
    line = " ".join(str(text or "").split())
    return line if len(line) <= width else line[: width - 1] + "…"


def choice(label: str, options: Mapping[Any, str], default: Any = None, key: str | None = None, **kwargs) -> Any:
    """A selectbox over ``options`` (value -> label) that returns the value; starts on ``default``
    when it is one of the options, else on the first one."""
    values = list(options)
    index = values.index(default) if default in options else 0
    return st.selectbox(label, values, index=index, format_func=lambda v: options[v], key=key, **kwargs)


def reasons_text(reasons: Mapping[str, Any] | None) -> str:
    """{'near duplicate': 3, 'too short': 1} -> 'near duplicate: 3 · too short: 1'."""
    return " · ".join(f"{reason}: {count}" for reason, count in (reasons or {}).items()) or "—"


def pager(total: int, key: str) -> tuple[int, int]:
    """Page-size choice, Previous/Next and 'page x of y'; returns (limit, offset).

    The page number lives in session state under ``key``; it is clamped when filters shrink the
    listing, so a page past the end never shows an empty table."""
    size_col, prev_col, info_col, next_col = st.columns([1, 1, 2, 1], vertical_alignment="bottom")
    size = size_col.selectbox("Rows per page", PAGE_SIZES, index=0, key=f"{key}_size")
    pages = max(1, -(-total // size))
    page = min(max(int(st.session_state.get(key, 0)), 0), pages - 1)
    if prev_col.button("Previous page", key=f"{key}_prev", disabled=page == 0, width="stretch"):
        page -= 1
    if next_col.button("Next page", key=f"{key}_next", disabled=page >= pages - 1, width="stretch"):
        page += 1
    st.session_state[key] = page
    info_col.markdown(f"Page **{page + 1}** of **{pages}** · {total:,} in all")
    return size, page * size


def field_input(info: Any, value: Any, key: str) -> Any:
    """One widget for a documented spec field (``core.specs.FieldDoc``: name, kind, help, choices):
    a selectbox for choices, a checkbox, a number (empty allowed where the field may be None), or
    text; a list is one item per line."""
    label, optional = info.name.replace("_", " "), "None" in getattr(info, "type", "")
    if info.choices:
        return st.selectbox(label, info.choices, index=list(info.choices).index(value), help=info.help, key=key)
    if info.kind == "bool":
        return st.checkbox(label, bool(value), help=info.help, key=key)
    if info.kind in ("int", "float"):
        cast = int if info.kind == "int" else float
        number = st.number_input(label, value=None if value is None else cast(value), step=1 if cast is int else None,
                                 format=None if cast is int else "%g", help=info.help, key=key,
                                 placeholder="empty = no limit" if optional else None)
        return None if number is None else cast(number)
    if info.kind == "list":
        text = st.text_area(label, "\n".join(str(v) for v in value or ()), help=f"{info.help} One per line.",
                            key=key, height=68)
        return [line.strip() for line in text.splitlines() if line.strip()]
    return st.text_input(label, "" if value is None else str(value), help=info.help, key=key)


def params_form(form: Any, values: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A rubric's parameters (``generate_form.RubricForm``) as widgets; returns the values that differ
    from the defaults (a config stays short) or from the form's start (a cleared example value is kept
    as cleared)."""
    defaults = {f.name: f.default for f in form.fields}
    out = {}
    columns = st.columns(2) if form.fields else []
    for i, info in enumerate(form.fields):
        with columns[i % 2]:
            value = field_input(info, values.get(info.name, form.start.get(info.name)), f"{key}_{info.name}")
        if value != defaults.get(info.name) or value != form.start.get(info.name):
            out[info.name] = value
    return out
