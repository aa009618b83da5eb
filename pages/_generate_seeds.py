"""Generate page, Seeds tab: type seeds, or upload / point at a file, map its columns, import.

Why a preview before import: a seed file's columns are rarely named ``text``; the user sees the
first rows and picks which column is the task, the reference answer and the metadata, and only
then is the (possibly huge) file streamed into DuckDB by the seeds service.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pages._ui import attempt, show_error
from pages._widgets import choice, short
from core.errors import StudioError
from studio.services import seeds as seeds_svc

UPLOAD_TYPES = ["csv", "tsv", "jsonl", "ndjson", "json", "parquet"]
TEXT_COLUMN_GUESSES = ("text", "prompt", "instruction", "question", "input", "query", "task", "seed")
SUMMARY_KEY = "gen_seed_summary"
SOURCE_KEY = "gen_seed_source"


def seed_sets_table(sets: list) -> None:
    if not sets:
        st.info("No seeds yet. Add a few seed tasks below: type them, upload a CSV, JSONL or Parquet file, or give "
                "the path of a file or a `datasets` folder on this machine. Then open **Configure & run**.")
        return
    rows = [{"name": s.name, "seeds": s.seeds, "source": s.source, "file": s.source_path or "—",
             "created": s.created_at.strftime("%Y-%m-%d %H:%M"), "id": s.id} for s in sets]
    st.dataframe(rows, hide_index=True, width="stretch")


def show_summary() -> None:
    """The last import's summary (kept across the rerun that refreshes the seed-set list)."""
    summary = st.session_state.get(SUMMARY_KEY)
    if summary is None:
        return
    added = f"Imported **{summary.imported:,}** seeds into **{summary.name}**"
    extra = [f"{summary.duplicates:,} were already there" if summary.duplicates else "",
             f"skipped {summary.skipped:,}" if summary.skipped else "",
             f"encoding {summary.encoding}" if summary.encoding else "",
             f"format {summary.format}" if summary.format not in (None, "typed") else ""]
    (st.success if summary.imported or summary.duplicates else st.warning)(
        added + "".join(f" · {e}" for e in extra if e) + ".", icon=":material/check_circle:")
    for warning in summary.warnings:
        st.warning(warning)
    if summary.problems:
        with st.expander(f"Skipped rows and why ({summary.skipped:,})", expanded=True):
            st.dataframe([{"line": p.line, "reason": p.reason} for p in summary.problems], hide_index=True,
                         width="stretch")
            if summary.skipped > len(summary.problems):
                st.caption(f"The first {len(summary.problems)} are listed.")


CLEAR_TYPED_KEY = "typed_seeds_clear"


def imported(ok: bool, summary) -> None:
    if ok:
        st.session_state[SUMMARY_KEY] = summary
        st.session_state.pop(SOURCE_KEY, None)
        st.rerun()


def typed_seeds_form() -> None:
    # the text stays until it is stored: a refused one is there to fix, and a double click (whose first
    # run Streamlit interrupts) still sends it; it is cleared once the seeds are in
    if st.session_state.pop(CLEAR_TYPED_KEY, False):
        st.session_state["typed_seed_text"] = st.session_state["typed_seed_name"] = ""
    with st.form("typed_seeds"):
        text = st.text_area("Seed tasks", height=150, key="typed_seed_text", placeholder="Explain what a hash map "
                            "is.\nWrite a haiku about autumn.\n\n(one per line; or separate multi-line seeds with a "
                            "blank line)")
        name = st.text_input("Seed set name (optional)", key="typed_seed_name", placeholder="typed <date and time>")
        if st.form_submit_button("Add seeds", type="primary"):
            ok, summary = attempt(seeds_svc.add_typed_seeds, text, name.strip() or None)
            st.session_state[CLEAR_TYPED_KEY] = ok
            imported(ok, summary)


def file_source() -> None:
    """Upload, or a server-side path; either way the chosen path goes to session state."""
    upload_col, path_col = st.columns(2, gap="large")
    with upload_col:
        uploaded = st.file_uploader("Upload a seed file", type=UPLOAD_TYPES, key="seed_upload",
                                    help="CSV/TSV, JSON Lines, JSON or Parquet. Large files: give a path instead.")
        if uploaded is not None and st.session_state.get("gen_seed_upload_id") != uploaded.file_id:
            ok, path = attempt(seeds_svc.save_upload, uploaded.name, uploaded)
            if ok:
                st.session_state["gen_seed_upload_id"] = uploaded.file_id
                st.session_state[SOURCE_KEY] = str(path)
    with path_col, st.form("seed_path"):
        path = st.text_input("…or a file or `datasets` folder on this machine",
                             placeholder="/data/prompts.parquet or /data/my_dataset")
        if st.form_submit_button("Preview") and path.strip():
            st.session_state[SOURCE_KEY] = path.strip()


def mapping_form(path: str) -> None:
    ok, preview = attempt(seeds_svc.preview_file, path)
    if not ok:
        return
    st.markdown(f"**{Path(path).name}** · {preview.format}" + (f" · {preview.encoding}" if preview.encoding else ""))
    for warning in preview.warnings:
        st.warning(warning)
    if preview.rows:
        st.dataframe([{k: short(v, 120) for k, v in row.items()} for row in preview.rows], hide_index=True,
                     width="stretch", height=min(400, 38 + 35 * len(preview.rows)))
    if not preview.columns:
        return
    guess = next((c for c in preview.columns if c.lower() in TEXT_COLUMN_GUESSES), preview.columns[0])
    with st.form("seed_mapping"):
        text_col, ref_col, meta_col = st.columns(3)
        with text_col:
            text = choice("Text column (the seed task)", {c: c for c in preview.columns}, guess)
        with ref_col:
            reference = choice("Reference answer column", {None: "— none —", **{c: c for c in preview.columns}})
        metadata = meta_col.multiselect("Metadata columns", preview.columns)
        name = st.text_input("Seed set name", value=Path(path).stem)
        if st.form_submit_button("Import", type="primary"):
            with st.spinner(f"Importing {Path(path).name}…"):
                ok, mapping = attempt(seeds_svc.ColumnMapping, text, reference, tuple(metadata))
                if ok:
                    imported(*attempt(seeds_svc.import_seeds, path, mapping, name.strip() or None))


def seeds_tab() -> None:
    try:
        sets = seeds_svc.list_seed_sets()
    except StudioError as err:
        show_error(err)
        return
    st.subheader("Seed sets")
    seed_sets_table(sets)
    show_summary()
    st.subheader("Add seeds")
    how = st.radio("How", ["Type them", "From a file"], horizontal=True, label_visibility="collapsed",
                   key="seed_input_kind")
    if how == "Type them":
        typed_seeds_form()
        return
    file_source()
    if st.session_state.get(SOURCE_KEY):
        mapping_form(st.session_state[SOURCE_KEY])
