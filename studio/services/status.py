"""The studio's health and counts: what Home shows and `python -m studio status --json` prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from storage import stats
from storage.db import get_database
from core import settings as settings_mod
from studio import access


@dataclass(frozen=True)
class NextStep:
    """One thing to do next: what, the page that does it (``pages/<page>.py``) and the command."""

    text: str
    page: str | None = None
    command: str | None = None

    def __str__(self) -> str:
        return f"{self.text} (`{self.command}`)" if self.command else self.text


@dataclass
class StudioStatus:
    home: str
    database: str
    schema_version: int
    services: list = field(default_factory=list)   # list[studio.lifecycle.ServiceHealth]
    counts: dict[str, int] = field(default_factory=dict)
    next_steps: list[NextStep] = field(default_factory=list)
    argilla: object = None                          # studio.services.argilla_admin.ArgillaInfo (no password)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["services"] = [asdict(s) for s in self.services]
        out["argilla"] = self.argilla.to_dict() if self.argilla is not None else None
        out["next_steps"] = [str(step) for step in self.next_steps]
        return out


def get_status() -> StudioStatus:
    from studio.lifecycle import service_health
    from studio.services.argilla_admin import get_argilla_info

    cfg = settings_mod.current()
    db = get_database()
    counts = stats.stage_counts(db)
    services = service_health()
    return StudioStatus(
        home=str(cfg.home), database=str(cfg.db_path), schema_version=stats.schema_version(db),
        services=services, counts=counts, next_steps=suggest_next_steps(counts, services),
        argilla=get_argilla_info(),
    )


def suggest_next_steps(counts: dict[str, int], services: list) -> list[NextStep]:
    """The next things to do, in lifecycle order, from the counts as they are now."""
    steps: list[NextStep] = []
    llm = next((s for s in services if s.name == "llm"), None)
    if counts.get("models", 0) == 0:
        steps.append(NextStep("Pull the embedded model", "models", "python -m studio models pull smollm2-135m-instruct"))
    if llm is not None and llm.state != "running":
        steps.append(NextStep("Start the embedded LLM endpoint", None, "python -m studio up"))
    pairs = counts.get("preference_pairs", 0) + counts.get("sft_pairs", 0)
    if counts.get("seeds", 0) == 0:
        steps.append(NextStep("Add a few seed tasks, then generate instructions and pairs", "generate"))
    elif pairs == 0:
        steps.append(NextStep("Generate responses and judge them into SFT and preference pairs", "generate"))
    elif counts.get("training_runs", 0) == 0:
        if counts.get("reviewed", 0) == 0:
            steps.append(NextStep("Optionally, send the pairs to Argilla for a human second pass", "review"))
        steps.append(NextStep("Freeze the pairs into a snapshot and train on it", "train"))
    elif counts.get("comparisons", 0) == 0:
        steps.append(NextStep("Compare the trained model with its base", "compare"))
    elif counts.get("votes", 0) == 0:
        steps.append(NextStep("Vote in the arena, or let a judge vote, to rank the models", "compare"))
    else:
        steps.append(NextStep("Generate more data, review it, or train again on a new snapshot", "generate"))
    return steps


# Who may call what (team mode): changes need an admin, reads any signed-in person (studio/access.py).
access.guard_module(globals())
