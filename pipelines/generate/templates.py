"""Prompt templates for instruction writing (Self-Instruct, Evol-Instruct) and their output parsers.

Why editable and stored: the prompt decides what data comes out, so users tune it, and every
instruction row names the exact template text that produced it (``template_id`` = a content hash of
kind + text, stored in ``prompt_templates``). Placeholders use ``{name}``; a literal brace is ``{{``
or ``}}``. Values are substituted once and never re-read as templates, so hostile seed text
("ignore previous instructions {n}") reaches the model verbatim and cannot break the prompt.

Small models answer list prompts in many shapes (numbered, bulleted, JSON, with chatter before and
after), so ``parse_task_list`` accepts all of them; an answer with no task at all is reported as
``[]`` and the caller keeps the raw output on a row flagged 'failed'.
"""

from __future__ import annotations

import json
import re
import string

from storage.ids import content_hash
from core.errors import BadInput

SELF_INSTRUCT = """You are helping to build a varied set of tasks for training an AI assistant.

Here is an example task:
<task>
{seed}
</task>

Write {n} new tasks inspired by the example but different from it and from each other: vary the topic,
the skill and the form (a question, an instruction, a request to write, explain, classify, plan or
calculate). Each task must be self-contained and answerable in text.

Answer with a numbered list only, one task per item, and nothing else:
1. ..."""

_EVOL_HEAD = """You are a prompt rewriter. Rewrite the given prompt into a new version that {goal}
The new prompt must stay reasonable, be understandable and answerable by a human, and must not
mention that it was rewritten. Add at most 10 to 20 words; keep any code or table it contains.

Given prompt:
<prompt>
{{instruction}}
</prompt>

Answer with the rewritten prompt only."""

EVOL_GOALS = {
    "deepen": "asks about the same subject in more depth: where it asks about an issue, widen and deepen the "
              "inquiry.",
    "constraints": "adds one more constraint or requirement the answer must meet.",
    "concretize": "replaces general concepts with more specific, concrete ones.",
    "reasoning": "explicitly needs several steps of reasoning to answer, where the original could be solved "
                 "with a few simple steps.",
    "breadth": "is a brand-new prompt in the same domain as the given one but about a rarer, more specific "
               "topic, of similar length and difficulty.",
}
DEFAULTS: dict[str, str] = {"self_instruct": SELF_INSTRUCT}
DEFAULTS.update({f"evol:{op}": _EVOL_HEAD.format(goal=goal) for op, goal in EVOL_GOALS.items()})
PLACEHOLDERS = {"self_instruct": ({"seed", "n"}, {"seed"})}   # kind -> (allowed, required)
PLACEHOLDERS.update({f"evol:{op}": ({"instruction"}, {"instruction"}) for op in EVOL_GOALS})
TEMPLATE_PREFIX = "tpl"


def check_template(kind: str, text: object, name: str = "template") -> None:
    """Refuse unknown kinds, bad brace syntax and unknown or missing placeholders."""
    if kind not in PLACEHOLDERS:
        raise BadInput(f"{name}: there is no template kind {kind!r}.", hint=f"Use one of: {', '.join(PLACEHOLDERS)}.")
    if not isinstance(text, str) or not text.strip():
        raise BadInput(f"{name} is empty.", hint="Write the prompt text, or remove the override to use the default.")
    allowed, required = PLACEHOLDERS[kind]
    try:
        used = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        raise BadInput(f"{name} has a stray brace ({exc}).", hint="Write a literal { or } as {{ or }}.") from None
    unknown = sorted(used - allowed)
    if unknown:
        raise BadInput(f"{name} uses unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}.",
                       hint=f"Use {', '.join('{' + a + '}' for a in sorted(allowed))}; write a literal brace as {{{{.")
    missing = sorted(required - used)
    if missing:
        raise BadInput(f"{name} lacks the placeholder(s) {', '.join('{' + m + '}' for m in missing)}.",
                       hint="Put it where the text should go, e.g. <task>{seed}</task>.")


def template_for(kind: str, overrides: dict[str, str] | None = None) -> str:
    return (overrides or {}).get(kind) or DEFAULTS[kind]


def template_id(kind: str, text: str) -> str:
    """Content hash of (kind, text): the same text is one row however many runs use it."""
    return f"{TEMPLATE_PREFIX}_{content_hash(kind, text)[:24]}"


def render(text: str, **values: object) -> str:
    """Fill placeholders; values are inserted verbatim (never re-parsed)."""
    return text.format_map({k: str(v) for k, v in values.items()})


# -- parsing list answers ---------------------------------------------------------------------------
_MARKER = re.compile(r"^\s*(?:(?:\d{1,3}|[a-zA-Z])[.)\]:]|[-*•‣·▪]|#{1,4}\s*\d+[.):]?|(?:task|instruction|prompt)"
                     r"\s*#?\s*\d+\s*[:.)-])\s*", re.I)
_PREAMBLE = re.compile(r"^\s*(?:sure|certainly|of course|okay|ok|here (?:are|is)|below (?:are|is)|these are)\b",
                       re.I)
_LABEL = re.compile(r"^\s*(?:\*\*)?(?:new\s+)?(?:task|instruction|prompt|question)\s*(?:\d+)?\s*:\s*(?:\*\*)?\s*",
                    re.I)
_FENCE = re.compile(r"```[a-zA-Z]*\n?(.*?)(?:```|$)", re.S)
_QUOTES = "\"'“”‘’`"


def _clean(item: str) -> str:
    item = _LABEL.sub("", item.strip())
    item = item.strip().strip("*").strip()
    if len(item) >= 2 and item[0] in _QUOTES and item[-1] in _QUOTES:
        item = item[1:-1].strip()
    return item


def _json_items(text: str) -> list[str] | None:
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start : end + 1])
    except (ValueError, RecursionError):  # a model's reply, possibly nested absurdly deep
        return None
    if not isinstance(data, list):
        return None
    items = []
    for entry in data:
        if isinstance(entry, dict):
            entry = next((entry[k] for k in ("instruction", "task", "prompt", "question", "text") if k in entry), None)
        if isinstance(entry, str):
            items.append(entry)
    return items or None


def _marked_items(lines: list[str]) -> list[str]:
    items: list[str] = []
    current: list[str] | None = None
    for line in lines:
        match = _MARKER.match(line)
        if match and line[match.end():].strip():
            if current:
                items.append(" ".join(current))
            current = [line[match.end():].strip()]
        elif current is not None and line.strip():
            current.append(line.strip())
        elif current is not None and not line.strip() and current:
            items.append(" ".join(current))
            current = None
    if current:
        items.append(" ".join(current))
    return items


# Small models echo the template's placeholders back as "tasks": <task>, [explain your method],
# [another_task](https://...). An item that is nothing but such markup is not a task.
_PLACEHOLDER = re.compile(r"^(?:</?[\w\s-]{1,40}>|\[[^\]]{1,80}\](?:\([^)]*\))?)$")


def parse_task_list(text: str, n: int, exclude: str | None = None) -> list[str]:
    """Up to ``n`` distinct tasks from a numbered/bulleted list, a JSON list, or plain lines
    (echoed placeholders such as ``<task>`` are not tasks)."""
    body = "\n".join(m.group(1) for m in _FENCE.finditer(text)) if "```" in text else text
    items = _json_items(body)
    if items is None:
        lines = body.splitlines()
        items = _marked_items(lines)
        if not items:  # no list markers: one task per line, but one lone sentence is no list of n > 1
            items = [line for line in lines if line.strip() and not _PREAMBLE.match(line)
                     and not line.strip().endswith(":")]
            if len(items) < 2 <= n:
                items = []
    out, seen = [], {(exclude or "").strip().lower()}
    for item in items:
        cleaned = _clean(item)
        if cleaned and not _PREAMBLE.match(cleaned) and not _PLACEHOLDER.match(cleaned) and cleaned.lower() not in seen:
            seen.add(cleaned.lower())
            out.append(cleaned)
        if len(out) >= n:
            break
    return out


_REWRITE_LABEL = re.compile(r"^\s*(?:#+\s*)?(?:\*\*)?(?:the\s+)?(?:rewritten|new|evolved|created)\s+(?:prompt|"
                            r"instruction|task)\s*#?(?:\*\*)?\s*:?\s*(?:\*\*)?\s*", re.I)


def parse_rewrite(text: str) -> str:
    """The rewritten prompt from an Evol-Instruct answer ('' when there is none)."""
    body = text.strip()
    fenced = _FENCE.findall(body) if body.startswith("```") else []
    if fenced:
        body = fenced[0].strip()
    body = re.sub(r"</?prompt>", "", body).strip()
    body = _REWRITE_LABEL.sub("", body, count=1).strip()
    lines = body.splitlines()
    if lines and _PREAMBLE.match(lines[0]) and lines[0].rstrip().endswith(":"):
        body = "\n".join(lines[1:]).strip()
        body = _REWRITE_LABEL.sub("", body, count=1).strip()
    return _clean(body) if "\n" not in body else body
