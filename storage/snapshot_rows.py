"""Pure-Python parts of snapshots: final labels applied to pairs, TRL payloads, lengths, the seeded
split and the pre-training checks. No SQL here; ``storage.snapshots`` reads and writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from storage.ids import content_hash

if TYPE_CHECKING:
    from storage.snapshot_spec import SnapshotSpec

CHARS_PER_TOKEN = 4  # rough estimate used when no tokenizer is given
LENGTH_BIAS_WARN = 0.8  # chosen longer (or shorter) in more than this share of pairs: the model may learn length


@dataclass
class Row:
    record_id: str
    payload: dict
    prompt_len: int
    response_lens: tuple[int, ...]
    source: dict
    hash: str = ""


TokenCounter = Callable[[str], int]


def is_human(label: dict | None) -> bool:
    return bool(label) and label.get("source") == "human" and bool(label.get("reviewed"))


def apply_label(kind: str, row: dict, label: dict | None) -> dict | None:
    """The pair as its human final label says (chosen/rejected resolved after any A/B swap, a corrected
    text as chosen or completion); None when reviewers found nothing to learn (tie, both bad, bad)."""
    if not is_human(label):
        return row
    if not label.get("usable"):
        return None
    if kind == "preference":
        return {**row, "chosen": label.get("chosen") or row["chosen"], "rejected": label.get("rejected") or row["rejected"]}
    return {**row, "completion": label.get("chosen") or row["completion"]}


def kto_examples(table: str, row: dict, label: dict | None) -> list[tuple[str, str, bool]]:
    """The unpaired (suffix, text, desirable) examples KTO learns from one pair, given its human final
    label (None: nobody reviewed it, or the rule ignores reviews).

    Preference pairs: chosen -> good, rejected -> bad, after the reviewers' verdict; 'both bad' makes
    both bad; a reviewer's corrected text is good. SFT pairs count only when a person reviewed them
    (the judge accepted every one, so alone they would teach KTO nothing undesirable): 'good' -> good,
    'bad' -> bad, and a correction of a bad completion is good. A tie or an undecided record gives
    nothing."""
    human = is_human(label)
    if table == "preference":
        if not human:
            return [("good", row["chosen"], True), ("bad", row["rejected"], False)]
        if label["label"] in ("chosen", "rejected"):
            return [("good", label.get("chosen") or row["chosen"], True),
                    ("bad", label.get("rejected") or row["rejected"], False)]
        out = [("bad", row["chosen"], False), ("bad-2", row["rejected"], False)] if label["label"] == "both_bad" else []
        return out + ([("corrected", label["chosen"], True)] if label.get("corrected") and label.get("chosen") else [])
    if not human or label["label"] not in ("good", "bad"):
        return []
    if label["label"] == "good":
        return [("good", label.get("chosen") or row["completion"], True)]
    fixed = [("corrected", label["chosen"], True)] if label.get("corrected") and label.get("chosen") else []
    return [("bad", row["completion"], False), *fixed]


def user_msg(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def assistant_msg(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


class Steps:
    """Applies filters in order and records how many rows each one left."""

    def __init__(self) -> None:
        self.counts: list[dict] = []

    def start(self, name: str, rows: list) -> list:
        self.counts.append({"step": name, "remaining": len(rows), "removed": 0})
        return rows

    def keep(self, name: str, rows: list, predicate: Callable[[Any], bool]) -> list:
        kept = [r for r in rows if predicate(r)]
        self.counts.append({"step": name, "remaining": len(kept), "removed": len(rows) - len(kept)})
        return kept


def row_length(row: Row, spec: SnapshotSpec, count_tokens: TokenCounter | None) -> int:
    if spec.max_length_unit == "chars":
        return row.prompt_len + max(row.response_lens, default=0)
    return row_tokens(row, count_tokens)


def row_tokens(row: Row, count_tokens: TokenCounter | None) -> int:
    """Prompt + longest response in tokens (exact with a tokenizer, else about 4 characters a token)."""
    texts = row_texts(row.payload)
    if count_tokens is None:
        return math.ceil((row.prompt_len + max(row.response_lens, default=0)) / CHARS_PER_TOKEN)
    prompt = count_tokens(texts[0])
    return prompt + max((count_tokens(t) for t in texts[1:]), default=0)


def row_texts(payload: dict) -> list[str]:
    return [m["content"] for key in ("prompt", "chosen", "rejected", "completion") for m in payload.get(key, [])]


def to_rows(kind: str, pairs: list[dict]) -> list[Row]:
    """Pairs -> the TRL payloads of the snapshot's kind (KTO: a row per example of ``kto_examples``)."""
    rows: list[Row] = []
    for item in pairs:
        r = item["row"]
        src = {"pair_id": item["id"], "run_id": r.get("run_id"), "instruction_id": r.get("instruction_id")}
        plen = len(r["prompt"])
        if kind == "preference":
            payload = {"prompt": user_msg(r["prompt"]), "chosen": assistant_msg(r["chosen"]),
                       "rejected": assistant_msg(r["rejected"])}
            rows.append(Row(item["id"], payload, plen, (len(r["chosen"]), len(r["rejected"])), src))
        elif kind == "kto":
            for suffix, text, good in r["kto"]:
                payload = {"prompt": user_msg(r["prompt"]), "completion": assistant_msg(text), "label": good}
                rows.append(Row(f"{item['id']}#{suffix}", payload, plen, (len(text),), src))
        elif kind == "sft":
            payload = {"prompt": user_msg(r["prompt"]), "completion": assistant_msg(r["completion"])}
            rows.append(Row(item["id"], payload, plen, (len(r["completion"]),), src))
        else:
            record_id = "prompt_" + content_hash(r["prompt"])[:24]  # one row per distinct prompt text
            rows.append(Row(record_id, {"prompt": user_msg(r["prompt"])}, plen, (), src))
    for row in rows:
        row.hash = content_hash(row.payload)
    return rows


def eval_size(n: int, fraction: float) -> int:
    return 0 if fraction <= 0 or n == 0 else max(1, round(n * fraction))


def rows_needed(fraction: float) -> int:
    """The fewest rows that leave at least one to train on (and one to evaluate when fraction > 0)."""
    n = 1
    while n - eval_size(n, fraction) < 1:
        n += 1
    return n


def split_rows(rows: list[Row], spec: SnapshotSpec) -> list[tuple[Row, str, int]]:
    """Seeded split by source pair (KTO's two rows of a pair stay together); order by a seeded hash."""
    key = {r.record_id: content_hash(spec.split_seed, r.source["pair_id"], r.record_id) for r in rows}
    group_key = {}
    for r in rows:
        group_key.setdefault(r.source["pair_id"], content_hash(spec.split_seed, r.source["pair_id"]))
    target = eval_size(len(rows), spec.eval_fraction)
    eval_groups: set[str] = set()
    taken = 0
    by_group: dict[str, int] = {}
    for r in rows:
        by_group[r.source["pair_id"]] = by_group.get(r.source["pair_id"], 0) + 1
    for group in sorted(by_group, key=group_key.__getitem__):
        if taken >= target:
            break
        eval_groups.add(group)
        taken += by_group[group]
    ordered = sorted(rows, key=lambda r: (key[r.record_id], r.record_id))
    out, positions = [], {"train": 0, "eval": 0}
    for r in ordered:
        split = "eval" if r.source["pair_id"] in eval_groups else "train"
        out.append((r, split, positions[split]))
        positions[split] += 1
    return out


def check(name: str, severity: str, message: str, **details: Any) -> dict:
    return {"name": name, "severity": severity, "message": message, **details}


def build_checks(spec: SnapshotSpec, rows: list[Row], found: dict, n_train: int, n_eval: int,
            count_tokens: TokenCounter | None) -> list[dict]:
    kind, out = spec.record_kind, []
    needed = rows_needed(spec.eval_fraction)
    if n_train < 1 or (spec.eval_fraction > 0 and n_eval < 1) or len(rows) < needed:
        eval_note = f" (1 to train, {needed - 1} to evaluate at eval_fraction {spec.eval_fraction})" \
            if spec.eval_fraction > 0 else ""
        out.append(check("too_little_data", "blocking",
                          f"{len(rows)} {kind} rows remain after the filters; training needs at least {needed}"
                          f"{eval_note}.", rows=len(rows), needed=needed))
    else:
        out.append(check("rows", "info", f"{len(rows)} {kind} rows: {n_train} to train, {n_eval} to evaluate.",
                          rows=len(rows), n_train=n_train, n_eval=n_eval))
    if "identical" in found:
        n = found["identical"]
        dropped = spec.drop_identical and n
        out.append(check("chosen_equals_rejected", "info" if dropped or not n else "warning",
                          f"{n} pairs have the same chosen and rejected text" + (" (removed)." if dropped else "."),
                          count=n))
    n = found["duplicates"]
    dropped = spec.drop_duplicates and n
    out.append(check("duplicates", "info" if dropped or not n else "warning",
                      f"{n} rows are exact duplicates of another row" + (" (removed)." if dropped else "."), count=n))
    if kind in ("preference", "kto"):
        out.append(length_bias(rows))
    if kind != "prompts":
        over = sum(1 for r in rows if row_tokens(r, count_tokens) > spec.check_max_length)
        how = "" if count_tokens else f" (estimated at {CHARS_PER_TOKEN} characters a token; pick a model to count)"
        out.append(check("over_max_length", "warning" if over else "info",
                          f"{over} of {len(rows)} rows are longer than {spec.check_max_length} tokens and will be "
                          f"truncated{how}.", count=over, max_length=spec.check_max_length,
                          exact=count_tokens is not None))
    return out


def length_bias(rows: list[Row]) -> dict:
    """How often the chosen response is longer: judges (and people) favour length; a model can learn it."""
    pairs: dict[str, dict[str, int]] = {}
    for r in rows:
        side = ("chosen" if r.payload.get("label") else "rejected") if "label" in r.payload else None
        if side is None:
            pairs[r.record_id] = {"chosen": r.response_lens[0], "rejected": r.response_lens[1]}
        else:
            pairs.setdefault(r.source["pair_id"], {})[side] = r.response_lens[0]
    complete = [p for p in pairs.values() if len(p) == 2]
    longer = sum(1 for p in complete if p["chosen"] > p["rejected"])
    share = longer / len(complete) if complete else 0.0
    biased = len(complete) >= 5 and (share > LENGTH_BIAS_WARN or share < 1 - LENGTH_BIAS_WARN)
    return check("length_bias", "warning" if biased else "info",
                  f"The chosen response is the longer one in {share:.0%} of {len(complete)} pairs"
                  + (": the model may learn to prefer length." if biased else "."),
                  share_chosen_longer=round(share, 4), pairs=len(complete))
