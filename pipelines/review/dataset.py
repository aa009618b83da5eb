"""What a review dataset looks like in Argilla, per kind of record, and making sure it exists.

Why the spec is data: the push builds the dataset from it, the pull checks that the dataset in
Argilla still has these questions (someone may have changed its settings there), and the records
and suggestions are built from the same names, so the three cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipelines.review.client import ArgillaClient
from core.errors import BadInput, ReviewError

KINDS = ("preference", "sft", "instruction", "comparison")
PREFERRED = {"a": "Response A", "b": "Response B", "tie": "Tie", "both_bad": "Both bad"}
VERDICT = {"good": "Good", "bad": "Bad"}
DEFAULT_GUIDELINES = {
    "preference": "Read the prompt and both responses. Pick the better response (or tie / both bad), rate each "
                  "from 1 (poor) to 5 (excellent) for helpfulness, honesty and following the instruction. "
                  "If both are flawed, you may write a corrected response. The order of A and B is random.",
    "sft": "Read the prompt and the response. Say whether it is a good answer to learn from, rate it 1-5, and "
           "optionally write a corrected response.",
    "instruction": "Read the instruction. Say whether it is a clear, useful task, rate it 1-5, and optionally "
                   "rewrite it.",
    "comparison": "Two models answered the same prompt. Their names are hidden and the order of A and B is random. "
                  "Pick the better answer (or tie / both bad) and rate each from 1 (poor) to 5 (excellent). Your "
                  "votes go into the studio's leaderboard.",
}
_AGENT_BAD = re.compile(r"[^a-zA-Z0-9\-_:./\s]")


@dataclass(frozen=True)
class DatasetSpec:
    """Fields, questions and metadata of one kind of review dataset (Argilla API bodies)."""

    kind: str
    fields: list[dict]
    questions: list[dict]
    metadata: list[dict] = field(default_factory=list)
    verdict_question: str = "preferred"     # the question whose answer is the label

    @property
    def question_names(self) -> list[str]:
        return [q["name"] for q in self.questions]


def _text_field(name: str, title: str) -> dict:
    return {"name": name, "title": title, "required": True, "settings": {"type": "text", "use_markdown": True}}


def _chat_field() -> dict:
    return {"name": "prompt", "title": "Prompt", "required": True, "settings": {"type": "chat", "use_markdown": True}}


def _label(name: str, title: str, options: dict[str, str], required: bool = True) -> dict:
    return {"name": name, "title": title, "required": required,
            "settings": {"type": "label_selection", "options": [{"value": v, "text": t} for v, t in options.items()]}}


def _rating(name: str, title: str) -> dict:
    return {"name": name, "title": title, "required": False,
            "settings": {"type": "rating", "options": [{"value": v} for v in range(1, 6)]}}


def _text_question(name: str, title: str, description: str) -> dict:
    return {"name": name, "title": title, "description": description, "required": False,
            "settings": {"type": "text", "use_markdown": False}}


def _meta(name: str, title: str, kind: str, visible: bool = True) -> dict:
    return {"name": name, "title": title, "settings": {"type": kind}, "visible_for_annotators": visible}


def dataset_spec(kind: str) -> DatasetSpec:
    if kind not in KINDS:
        raise BadInput(f"Unknown review kind {kind!r}.", hint=f"Use one of: {', '.join(KINDS)}.")
    corrected = _text_question("corrected", "Corrected response (optional)",
                               "Write the response as it should be; it becomes the chosen response.")
    rationale = _text_question("rationale", "Why? (optional)", "A sentence on your choice helps calibrate the judge.")
    if kind == "preference":
        return DatasetSpec(
            kind, [_chat_field(), _text_field("response_a", "Response A"), _text_field("response_b", "Response B")],
            [_label("preferred", "Which response is better?", PREFERRED), _rating("rating_a", "Rate response A (1-5)"),
             _rating("rating_b", "Rate response B (1-5)"), corrected, rationale],
            [_meta("model_a", "Model of A", "terms"), _meta("model_b", "Model of B", "terms"),
             _meta("judge_score", "Judge confidence", "float"), _meta("swap_agreement", "Judge orders agree", "terms"),
             _meta("length_diff", "Length of A minus B", "integer")],
            verdict_question="preferred")
    if kind == "comparison":  # blind: the model names are metadata annotators do not see
        return DatasetSpec(
            kind, [_chat_field(), _text_field("response_a", "Response A"), _text_field("response_b", "Response B")],
            [_label("preferred", "Which response is better?", PREFERRED), _rating("rating_a", "Rate response A (1-5)"),
             _rating("rating_b", "Rate response B (1-5)"), rationale],
            [_meta("model_a", "Model of A", "terms", visible=False), _meta("model_b", "Model of B", "terms", visible=False),
             _meta("length_diff", "Length of A minus B", "integer")],
            verdict_question="preferred")
    subject = "response" if kind == "sft" else "instruction"
    fields = [_chat_field()] + ([_text_field("response", "Response")] if kind == "sft" else [])
    corrected = _text_question("corrected", f"Corrected {subject} (optional)",
                               f"Write the {subject} as it should be; it replaces the original.")
    return DatasetSpec(
        kind, fields,
        [_label("verdict", f"Is this a good {subject}?", VERDICT), _rating("rating", f"Rate the {subject} (1-5)"),
         corrected, rationale],
        [_meta("model", "Model", "terms"), _meta("judge_score", "Judge confidence", "float")],
        verdict_question="verdict")


def agent_name(model: str | None) -> str:
    """Argilla allows only [a-zA-Z0-9-_:./ ] in a suggestion's agent."""
    cleaned = _AGENT_BAD.sub("_", model or "judge").strip() or "judge"
    return cleaned[:200]


# -- making sure the dataset exists ----------------------------------------------------------------------
def ensure_dataset(client: ArgillaClient, name: str, workspace: str, spec: DatasetSpec, guidelines: str,
                   min_submitted: int) -> dict:
    """The published dataset ``name`` with ``spec``: found, finished (a draft left by an interrupted
    push), or created. Raises ReviewError when a dataset of that name has other questions."""
    workspace_id = client.workspace_id(workspace)
    dataset = client.find_dataset(name, workspace_id)
    if dataset is None:
        dataset = client.create_dataset({"name": name, "guidelines": guidelines or None, "workspace_id": workspace_id,
                                         "allow_extra_metadata": True,
                                         "distribution": {"strategy": "overlap", "min_submitted": min_submitted}})
    if dataset["status"] == "ready":
        check_settings(client, dataset, spec)
        return dataset
    for kind, wanted in (("fields", spec.fields), ("questions", spec.questions), ("metadata-properties", spec.metadata)):
        have = {item["name"] for item in client.items(dataset["id"], kind)}
        for body in wanted:
            if body["name"] not in have:
                client.add(dataset["id"], kind, body)
    return client.publish(dataset["id"])


def check_settings(client: ArgillaClient, dataset: dict, spec: DatasetSpec) -> None:
    """The dataset must still have the questions and fields the studio reads and writes."""
    questions = {q["name"]: q["settings"]["type"] for q in client.items(dataset["id"], "questions")}
    fields = {f["name"] for f in client.items(dataset["id"], "fields")}
    missing = [q["name"] for q in spec.questions if questions.get(q["name"]) != q["settings"]["type"]]
    missing += [f["name"] for f in spec.fields if f["name"] not in fields]
    if missing:
        raise ReviewError(f"The Argilla dataset {dataset['name']!r} does not have the studio's "
                          f"{spec.kind} review settings (missing or changed: {', '.join(missing)}).",
                          hint="Its settings were changed in Argilla. Push to a new dataset name, or delete that "
                               "dataset in Argilla and push again.")
