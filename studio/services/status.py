"""The studio's health and counts: what Home shows and `python -m studio status --json` prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from storage import stats
from storage.db import get_database
from core import settings as settings_mod


@dataclass
class StudioStatus:
    home: str
    database: str
    schema_version: int
    services: list = field(default_factory=list)   # list[studio.lifecycle.ServiceHealth]
    counts: dict[str, int] = field(default_factory=dict)
    next_steps: list[str] = field(default_factory=list)
    argilla: object = None                          # studio.services.argilla_admin.ArgillaInfo (no password)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["services"] = [asdict(s) for s in self.services]
        out["argilla"] = self.argilla.to_dict() if self.argilla is not None else None
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


def suggest_next_steps(counts: dict[str, int], services: list) -> list[str]:
    """Plain sentences: the first things a user should do, in lifecycle order."""
    steps: list[str] = []
    llm = next((s for s in services if s.name == "llm"), None)
    if counts.get("models", 0) == 0:
        steps.append("Pull the embedded model: `python -m studio models pull smollm2-135m-instruct` "
                     "(or the button on the Models page).")
    if llm is not None and llm.state != "running":
        steps.append("Start the embedded LLM endpoint with `python -m studio up`.")
    if counts.get("seeds", 0) == 0:
        steps.append("Add a few seed tasks and generate instructions and pairs (Generate).")
    elif counts.get("preference_pairs", 0) + counts.get("sft_pairs", 0) == 0:
        steps.append("Generate responses and judge them into SFT and preference pairs (Generate).")
    elif counts.get("reviewed", 0) == 0:
        steps.append("Send the pairs to Argilla for a human second pass (Review).")
    elif counts.get("training_runs", 0) == 0:
        steps.append("Train on a snapshot of the reviewed pairs (Train).")
    else:
        steps.append("Compare the trained models with their base (Compare).")
    return steps
