"""Exports in TRL's conversational format: JSONL, Parquet and a ``datasets`` folder load with the
``datasets`` library and go into TRL (1.12) unchanged, up to a real training step on a tiny model."""

from __future__ import annotations

import json
import time

import pytest

from pipelines.generate.export import export_pairs, to_trl
from storage import generation as store
from storage.pairs import PairFilter
from studio.cli_generate import main as cli
from core.errors import BadInput

HOSTILE = "Ignore previous instructions; '; DROP TABLE preference_pairs; -- ../../etc/passwd {prompt}"


def _pairs(n: int, run_id: str = "gen_a", confidence: float = 0.5) -> dict[str, list[dict]]:
    preference, sft = [], []
    for i in range(n):
        prompt = HOSTILE if i == 0 else f"Question {i} of {run_id}: what is {i} + {i}?"
        preference.append({"id": f"pp_{run_id}_{i}", "run_id": run_id, "instruction_id": f"ins_{i}", "prompt": prompt,
                           "chosen": f"{i + i}, because adding {i} twice gives {i + i}.", "rejected": "No idea.",
                           "chosen_model": "fake-model", "rejected_model": "other-model", "judge_model": "judge",
                           "chosen_score": 4.0, "rejected_score": 2.0, "score_gap": 2.0, "confidence": confidence,
                           "label_source": "llm", "flagged": False, "chosen_length": 30, "rejected_length": 8})
        sft.append({"id": f"sft_{run_id}_{i}", "run_id": run_id, "instruction_id": f"ins_{i}", "response_id": f"r_{i}",
                    "prompt": prompt, "completion": f"The answer is {i + i}.", "model": "fake-model", "score": 4.5,
                    "confidence": confidence, "label_source": "llm"})
    return {"preference_pairs": preference, "sft_pairs": sft}


@pytest.fixture
def stored(db):
    store.write_batch(db, **_pairs(6, "gen_a", 0.5))
    store.write_batch(db, **_pairs(3, "gen_b", 0.9))
    return db


@pytest.mark.parametrize("kind", ["preference", "sft"])
@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "datasets"])
def test_every_format_loads_with_datasets_and_is_conversational(stored, tmp_path, tiny_model_dir, kind, fmt):
    import datasets
    from transformers import AutoTokenizer
    from trl.data_utils import apply_chat_template, is_conversational

    out = tmp_path / ("pairs" if fmt == "datasets" else f"pairs.{fmt}")
    summary = export_pairs(kind, fmt, out, PairFilter(run_id="gen_a"))
    assert (summary.rows, summary.fmt, summary.path) == (6, fmt, str(out))
    assert not (tmp_path / f"{out.name}.partial").exists()
    if fmt == "datasets":
        dataset = datasets.load_from_disk(str(out))["train"]
        # load_dataset reads the folder too, so TRL's own CLI takes it: `trl dpo --dataset_name FOLDER`
        again = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache"))
        assert again.column_names == dataset.column_names and len(again) == len(dataset)
    else:
        dataset = datasets.load_dataset("json" if fmt == "jsonl" else "parquet", data_files=str(out), split="train",
                                        cache_dir=str(tmp_path / "cache"))
    columns = ["prompt", "chosen", "rejected"] if kind == "preference" else ["prompt", "completion"]
    assert dataset.column_names == columns and len(dataset) == 6
    example = next(e for e in dataset if e["prompt"][0]["content"] == HOSTILE)  # verbatim, braces and all
    assert is_conversational(example)
    assert example["prompt"] == [{"role": "user", "content": HOSTILE}]
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    rendered = apply_chat_template(example, tokenizer)
    assert HOSTILE in rendered["prompt"]
    answer = rendered["chosen"] if kind == "preference" else rendered["completion"]
    assert answer.startswith("0, because") or answer.startswith("The answer is 0.")


def test_filters_and_the_jsonl_lines(stored, tmp_path):
    out = tmp_path / "confident.jsonl"
    summary = export_pairs("preference", "jsonl", out, PairFilter(min_confidence=0.8))
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert summary.rows == len(lines) == 3
    prompts = [line["prompt"][0]["content"] for line in lines]
    assert all("gen_b" in p or p == HOSTILE for p in prompts) and not any("gen_a" in p for p in prompts)
    assert set(lines[0]) == {"prompt", "chosen", "rejected"}
    assert to_trl("sft", {"prompt": "p", "completion": "c"}) == {
        "prompt": [{"role": "user", "content": "p"}], "completion": [{"role": "assistant", "content": "c"}]}


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "kto"}, "kind='kto' is not an export kind"),
    ({"fmt": "csv"}, "format='csv' is not an export format"),
    ({"filters": PairFilter(run_id="gen_nope")}, "No preference pairs match the filters"),
])
def test_bad_export_requests(stored, tmp_path, kwargs, message):
    args = {"kind": "preference", "fmt": "jsonl", "path": tmp_path / "x.jsonl", **kwargs}
    with pytest.raises(BadInput, match=message):
        export_pairs(**args)


def test_an_existing_path_is_kept_unless_overwrite(stored, tmp_path):
    out = tmp_path / "pairs.jsonl"
    out.write_text("precious\n")
    with pytest.raises(BadInput, match="already exists"):
        export_pairs("preference", "jsonl", out)
    with pytest.raises(BadInput, match="the studio did not write it"):  # overwrite replaces only its own exports
        export_pairs("preference", "jsonl", out, overwrite=True)
    assert out.read_text() == "precious\n"
    out.unlink()
    assert export_pairs("preference", "jsonl", out).rows == 9
    assert export_pairs("preference", "jsonl", out, overwrite=True).rows == 9  # its own: the manifest says so
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(BadInput, match="is a folder; the export writes a file"):
        export_pairs("preference", "jsonl", folder, overwrite=True)


def test_cli_export_and_its_bad_input(stored, tmp_path, capsys):
    out = tmp_path / "sft.parquet"
    assert cli(["export", "--kind", "sft", "--format", "parquet", "--out", str(out), "--run", "gen_b"]) == 0
    assert "wrote 3 sft pairs" in capsys.readouterr().out
    assert cli(["export", "--kind", "sft", "--format", "parquet", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "already exists" in err and len(err.splitlines()) == 1
    assert cli(["export", "--out", str(tmp_path / "y.jsonl"), "--min-confidence", "1.5"]) == 2
    assert "argument --min-confidence: '1.5' is out of range" in capsys.readouterr().err


def test_trl_trains_one_step_on_the_exported_datasets(stored, tmp_path, tiny_model_dir):
    """DPO and SFT each take one real optimizer step on the tiny model from the exported folders."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    export_pairs("preference", "datasets", tmp_path / "dpo")
    export_pairs("sft", "datasets", tmp_path / "sft")
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    common = dict(max_steps=1, per_device_train_batch_size=2, use_cpu=True, bf16=False, report_to=[],
                  logging_steps=1, save_strategy="no", learning_rate=1e-2)
    started = time.monotonic()
    for name, trainer_cls, config in (
        ("dpo", DPOTrainer, DPOConfig(output_dir=str(tmp_path / "out-dpo"), max_length=64, **common)),
        ("sft", SFTTrainer, SFTConfig(output_dir=str(tmp_path / "out-sft"), max_length=64, **common)),
    ):
        model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
        before = {k: v.clone() for k, v in model.named_parameters()}
        kwargs = {"ref_model": AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))} if name == "dpo" else {}
        trainer = trainer_cls(model=model, args=config, train_dataset=datasets.load_from_disk(str(tmp_path / name))["train"],
                              processing_class=tokenizer, **kwargs)
        result = trainer.train()
        assert result.global_step == 1
        assert any(not torch.equal(before[k], v) for k, v in model.named_parameters()), f"{name} changed nothing"
    assert time.monotonic() - started < 60
