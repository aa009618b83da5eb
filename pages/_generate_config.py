"""Generate page, Configure: widgets that edit a ``GenerationConfig``, plus its YAML and templates.

How the two editors agree: the config lives in session state as a plain dict (the "base"). The
widgets start from the base and the page builds the config from base + widget values, so keys
the form does not show (top_p, system_prompt, batch_size, ...) survive. "Apply YAML" replaces the
base and bumps a version that is part of every widget key, so each widget restarts from it.
"""

from __future__ import annotations

import copy
import hashlib

import streamlit as st
import yaml

from pages._ui import attempt, flash
from pages._widgets import choice, params_form
from studio.services import generate as gen_svc
# The typed config the generate service takes, and the default prompt texts shown for editing.
from studio.services.generate_form import (ASPECTS, DEFAULT_LISTWISE_TEMPLATE, DEFAULT_PAIRWISE_TEMPLATE,
                                           DEFAULT_POINTWISE_TEMPLATE, EVOL_OPERATIONS, INSTRUCTION_TEMPLATES,
                                           SMALL_JUDGE_EXPECTATION, GenerationConfig, check_rubric_params,
                                           list_rubrics, rubric_form)

BASE_KEY, VERSION_KEY = "gen_base", "gen_version"
METHODS = {"self_instruct": "Self-Instruct: an LLM writes new tasks from each seed",
           "evol": "Evol-Instruct: an LLM rewrites each seed to be harder", "seeds": "Use the seeds as they are"}
TEXTS, FILE = "__texts__", "__file__"
JUDGE_MODES = {"listwise": "Listwise: rate all candidates in one call (shuffled; close calls re-judged reversed)",
               "pointwise": "Pointwise: rate each candidate in its own call",
               "pairwise": "Pairwise: rate each, then compare best and worst in both orders"}
REPLY_FORMATS = {"json": "JSON: a score per aspect and a rationale (capable judges)",
                 "compact": "Compact: one digit or letter (small judges such as the embedded 135M model)"}
JUDGE_TEMPLATES = {"pointwise": DEFAULT_POINTWISE_TEMPLATE, "pairwise": DEFAULT_PAIRWISE_TEMPLATE,
                   "listwise": DEFAULT_LISTWISE_TEMPLATE}


def _key(name: str) -> str:
    return f"gen{st.session_state.get(VERSION_KEY, 0)}_{name}"


def base_config() -> dict:
    if BASE_KEY not in st.session_state:
        st.session_state[BASE_KEY] = gen_svc.default_config().to_dict()
        st.session_state["gen_base_is_default"] = True
    return copy.deepcopy(st.session_state[BASE_KEY])


def seeds_section(data: dict, sets: list) -> None:
    seeds = data["seeds"]
    options = {s.id: f"{s.name} ({s.id})" for s in sets}  # no counts: a label that changes goes stale
    if seeds.get("texts"):
        options[TEXTS] = f"{len(seeds['texts'])} seeds written in the config (edit them in YAML)"
    if seeds.get("file"):
        options[FILE] = f"the file {seeds['file']} (from the config)"
    if not options:
        st.info("There are no seeds yet: add some in the **Seeds** tab.")
        return
    fresh = st.session_state.get("gen_base_is_default") and sets
    default = sets[0].id if fresh else (seeds.get("seed_set") or (TEXTS if seeds.get("texts") else FILE))
    found = next((s.id for s in sets if seeds.get("seed_set") in (s.id, s.name)), default)
    left, right = st.columns([3, 1])
    with left:
        picked = choice("Seeds", options, found, key=_key("seeds"))
    limit = right.number_input("Use at most (0 = all)", 0, 10_000_000, int(seeds.get("limit") or 0), key=_key("limit"))
    chosen = next((s for s in sets if s.id == picked), None)
    if chosen is not None:
        where = f" · {chosen.source_path}" if chosen.source_path else ""
        left.caption(f"{chosen.seeds:,} seeds · {chosen.source}{where}")
    source = {TEXTS: {"texts": seeds.get("texts")}, FILE: {"file": seeds.get("file"), "mapping": seeds.get("mapping")}}
    data["seeds"] = {**source.get(picked, {"seed_set": picked}), "limit": int(limit) or None}


def instructions_section(data: dict, targets: dict) -> None:
    ins = data["instructions"]
    ins["method"] = st.radio("Instructions", list(METHODS), list(METHODS).index(ins["method"]),
                             format_func=METHODS.get, key=_key("method"))
    if ins["method"] == "seeds":
        return
    c1, c2, c3 = st.columns([2, 1, 1])
    with c1:
        ins["generator"] = choice("Instruction writer", targets, ins["generator"], key=_key("writer"))
    ins["per_seed"] = c2.number_input("Instructions per seed", 1, 50, ins["per_seed"], key=_key("per_seed"))
    ins["sampling"]["temperature"] = c3.slider("Writer temperature", 0.0, 2.0, float(ins["sampling"]["temperature"]),
                                               0.05, key=_key("writer_temp"))
    if ins["method"] == "evol":
        ins["evol_operations"] = st.multiselect("Evol-Instruct operations", EVOL_OPERATIONS, ins["evol_operations"],
                                                key=_key("evol_ops"))


def responses_section(data: dict, targets: dict) -> None:
    by_target = {g["target"]: g for g in data["responses"]["generators"]}
    chosen = [t for t in by_target if t in targets] or list(targets)[:1]
    picked = st.multiselect("Response models", list(targets), chosen, format_func=targets.get, key=_key("generators"))
    generators = []
    for target in picked:
        g = copy.deepcopy(by_target.get(target) or {"target": target, "candidates": 2, "sampling": {}})
        sampling = g.setdefault("sampling", {})
        c0, c1, c2, c3 = st.columns([2, 1, 1, 1], vertical_alignment="bottom")
        c0.markdown(f"**`{targets[target]}`**")  # code style: the label's URL must not become a link
        sampling["temperature"] = c1.slider("Temperature", 0.0, 2.0, float(sampling.get("temperature", 0.7)), 0.05,
                                            key=_key(f"temp_{target}"))
        sampling["max_tokens"] = c2.number_input("Max tokens", 1, 32768, int(sampling.get("max_tokens", 256)),
                                                 key=_key(f"max_{target}"))
        g["candidates"] = c3.number_input("Candidates", 1, 16, int(g.get("candidates", 2)), key=_key(f"cand_{target}"))
        generators.append(g)
    data["responses"]["generators"] = generators


def judge_section(data: dict, targets: dict) -> None:
    judge = data["judge"]
    kinds = {"llm": "An LLM judge", "rubric": "A programmatic rubric"}
    judge["kind"] = st.radio("Judge", list(kinds), list(kinds).index(judge["kind"]), format_func=kinds.get,
                             horizontal=True, key=_key("judge_kind"))
    c1, c2 = st.columns(2)
    if judge["kind"] == "llm":
        with c1:
            judge["target"] = choice("Judge model", targets, judge["target"], key=_key("judge_target"))
        with c2:
            judge["mode"] = choice("Mode", JUDGE_MODES, judge["mode"], key=_key("judge_mode"))
        llm_judge_options(judge)
    else:
        judge["mode"] = "pointwise"
        rubric = judge["rubric"]
        names, configured = [r.name for r in list_rubrics()], rubric["name"]
        with c1:
            rubric["name"] = choice("Rubric", {name: name for name in names}, configured, key=_key("rubric"))
        form = rubric_form(rubric["name"])
        c2.caption(form.description)
        # the configured params belong to the configured rubric; another one starts from its own valid values
        values = {**form.start, **(rubric.get("params") or {})} if rubric["name"] == configured else form.start
        rubric["params"] = params_form(form, values, key=_key(f"rubric_{rubric['name']}"))
    c1, c2 = st.columns(2, vertical_alignment="center")
    sft = c1.checkbox("Also make SFT pairs from each instruction's best candidate",
                      judge.get("min_sft_score") is not None, key=_key("sft"))
    judge["min_sft_score"] = c2.slider("…when its score is at least", 1.0, 5.0,
                                       float(judge.get("min_sft_score") or 4.0), 0.5, key=_key("min_sft")) if sft else None


def llm_judge_options(judge: dict) -> None:
    """Reply format, the listwise swap margin, the aspects; and what to expect from a small judge."""
    c1, c2 = st.columns(2)
    with c1:
        judge["reply_format"] = choice("Judge replies with", REPLY_FORMATS, judge.get("reply_format", "json"),
                                       key=_key("reply_format"))
    if judge["mode"] == "listwise":
        margin = judge.get("swap_margin")
        check = c2.checkbox("Re-judge close calls in reversed order", margin is not None, key=_key("swap"),
                            help="Checks position bias where it matters: a second call only when the best and "
                                 "the worst candidate are within the margin.")
        judge["swap_margin"] = c2.slider("…when within (points)", 0.0, 4.0, float(1.0 if margin is None else margin),
                                         0.25, key=_key("swap_margin")) if check else None
    if warning := gen_svc.judge_warning(judge["target"]):
        st.warning(warning, icon=":material/warning:")
        st.caption(SMALL_JUDGE_EXPECTATION)
    if judge["reply_format"] == "compact":
        judge["aspects"] = None
        st.caption("A compact judge gives one overall score per candidate (1–5), or one letter per comparison.")
        return
    aspects = judge.get("aspects") or list(ASPECTS)
    judge["aspects"] = st.multiselect("Aspects, each rated 1–5 (type to add your own)",
                                      sorted({*ASPECTS, *aspects}), aspects, accept_new_options=True,
                                      key=_key("aspects")) or None


def preprocess_section(data: dict) -> None:
    pre = data["preprocess"]
    c1, c2, c3, c4 = st.columns(4)
    pre["normalize_whitespace"] = c1.checkbox("Normalize whitespace", pre["normalize_whitespace"], key=_key("norm"))
    pre["strip_emoji"] = c1.checkbox("Strip emoji", pre["strip_emoji"], key=_key("emoji"))
    pre["dedup_exact"] = c2.checkbox("Drop exact duplicates", pre["dedup_exact"], key=_key("exact"))
    pre["dedup_near"] = c2.checkbox("Drop near-duplicates", pre["dedup_near"], key=_key("near"))
    pre["near_threshold"] = c2.slider("Near-duplicate similarity", 0.05, 1.0, float(pre["near_threshold"]), 0.05,
                                      key=_key("near_t"), disabled=not pre["dedup_near"])
    pre["scrub_pii"] = c3.checkbox("Scrub PII", pre["scrub_pii"], key=_key("pii"),
                                   help="Emails, phone and card numbers, IP addresses, IBANs, SSNs, URL credentials.")
    actions = {"redact": "Redact it", "drop": "Drop the item"}
    with c3:
        pre["pii_action"] = choice("When PII is found", actions, pre["pii_action"], key=_key("pii_action"),
                                   disabled=not pre["scrub_pii"])
    pre["min_chars"] = c4.number_input("Min characters", 0, 1_000_000, int(pre["min_chars"]), key=_key("min_chars"))
    pre["max_chars"] = c4.number_input("Max characters", 1, 10_000_000, int(pre["max_chars"]), key=_key("max_chars"))


def templates_section(data: dict) -> None:
    """Text areas prefilled with the prompt each stage will use; only edits become overrides."""
    ins, judge = data["instructions"], data["judge"]
    kinds = {"self_instruct": ["self_instruct"], "evol": [f"evol:{op}" for op in ins["evol_operations"]]}
    overrides = {}
    for kind in kinds.get(ins["method"], []):
        text = st.text_area(f"Instruction prompt: {kind}", ins["templates"].get(kind) or INSTRUCTION_TEMPLATES[kind],
                            height=220, key=_key(f"tpl_{kind}"))
        if text != INSTRUCTION_TEMPLATES[kind]:
            overrides[kind] = text
    ins["templates"] = overrides
    if judge["kind"] == "llm" and judge.get("reply_format") != "compact":
        field = f"{judge['mode']}_template"
        default = JUDGE_TEMPLATES[judge["mode"]]
        text = st.text_area(f"Judge prompt: {judge['mode']}", judge.get(field) or default, height=260,
                            key=_key(f"tpl_{field}"))
        judge[field] = text if text != default else None


def yaml_section(config: GenerationConfig | None, data: dict) -> None:
    text = gen_svc.config_to_yaml(config) if config is not None else _dump(data)
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    edited = st.text_area("Config (YAML)", text, height=420, key=f"gen_yaml_{digest}")
    if st.button("Apply YAML", key="gen_apply_yaml"):
        ok, applied = attempt(gen_svc.config_from_yaml, edited)
        if ok:
            st.session_state[BASE_KEY] = applied.to_dict()
            st.session_state["gen_base_is_default"] = False
            st.session_state[VERSION_KEY] = st.session_state.get(VERSION_KEY, 0) + 1
            flash("Applied the YAML config.")
            st.rerun()


def config_editor(targets: dict, sets: list) -> GenerationConfig | None:
    """All the widgets; returns the valid config they describe, or None after showing why not."""
    data = base_config()
    data["name"] = st.text_input("Run name", data["name"], key=_key("name"))
    seeds_section(data, sets)
    with st.container(border=True):
        instructions_section(data, targets)
    with st.container(border=True):
        responses_section(data, targets)
    with st.container(border=True):
        judge_section(data, targets)
    with st.expander("Preprocessing"):
        preprocess_section(data)
    with st.expander("Prompt templates"):
        templates_section(data)
    ok, config = attempt(GenerationConfig.from_dict, data)
    if ok and config.judge.kind == "rubric":  # say now, not when the run reaches the judge, that params do not fit
        ok = attempt(check_rubric_params, config.judge.rubric.name, config.judge.rubric.params)[0]
    with st.expander("Advanced: edit as YAML"):
        yaml_section(config if ok else None, data)
    return config if ok else None


def _dump(value) -> str:
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True)

