"""The whole command line under hostile input: every command of ``python -m studio``, found by
walking the argparse parser, gets generated arguments and YAML documents. For each call:

* it returns an exit code (no exception escapes ``studio.cli.main``);
* when it fails, stderr holds exactly one ``error:`` line of at most 600 characters, and never a
  traceback;
* nothing outside STUDIO_HOME changed, except the export target the command named (a folder of
  "victims" sits next to it: a user's files, a FIFO, a fake $HOME, the folder above STUDIO_HOME);
* the database still opens and still holds the pairs it started with.

Calls run in-process (``main(argv)``) against one STUDIO_HOME for the module, seeded with pairs so
that ``export`` really writes. Skipped, because they start servers or long jobs, or reach the
network: ``up`` and ``down`` (they start and stop the embedded services), ``demo`` (minutes of
generation and training), ``models pull`` (downloads a package). The flags ``--detach`` and
``--background`` are never generated: they start a background process (every run they could
start is refused in the foreground path anyway); nor is ``--ask-key``, which reads the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import stat
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import tests.fixtures.fuzz  # noqa: F401  (the hypothesis profiles)
from storage import generation as store
from storage.db import get_database
from studio.cli import build_parser, main
from tests.fixtures.core import free_port
from tests.test_export import _pairs
from tests.test_fuzz_configs import NASTY_YAML, mutated

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = {"up": "starts the embedded services", "down": "stops the embedded services",
           "demo": "runs generation and training for minutes", "models pull": "downloads a model package"}
NEVER_FLAGS = {"--detach", "--background", "--ask-key", "--help", "-h"}
PATH_DESTS = {"config", "spec", "file", "out", "source", "guidelines", "tokenizer"}
EXAMPLES = {"generate": "generate.yaml", "train": "train.yaml", "compare": "compare.yaml"}
BOMB = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(9))
NUMBERS = st.sampled_from(["0", "1", "-1", "0.5", "1.5", "99999", "1e40", "1e308", "nan", "inf", "-inf", "2147483648",
                           "1000000000", "9" * 50, "0x10", "", " 7 "]) | st.integers().map(str) | st.floats().map(str)
TEXTS = st.text(max_size=30) | st.sampled_from([
    "x" * 12_000, "../../etc/passwd", "endpoint:embedded", "local:tiny", "a\tb", " ", "-", "--", "%s%n",
    "http://user:pw@127.0.0.1:9/v1", "http://127.0.0.1:99999/v1", "http://[::1/v1", "http://ho st/v1",
    "https://example.test/v1?api_key=sk-fuzz-0123456789", "{", '{"max_words": [[[[1]]]]}', '{"a": NaN}'])


def _commands(parser: argparse.ArgumentParser, prefix=()):
    """(command words, parser) for every leaf command."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for name, child in subs[0].choices.items():
        yield from _commands(child, prefix + (name,))


COMMANDS = {" ".join(words): p for words, p in _commands(build_parser()) if " ".join(words) not in SKIPPED
            and words[0] not in SKIPPED}


# -- the sandbox -----------------------------------------------------------------------------------
def _make_victims(root: Path) -> dict[str, Path]:
    victims = root / "victims"
    (victims / "data").mkdir(parents=True)
    (victims / "precious.txt").write_text("my thesis\n")
    (victims / "data" / "precious.jsonl").write_text('{"mine": true}\n')
    (victims / "existing.jsonl").write_text('{"prompt": "not the studio\'s"}\n')
    os.mkfifo(victims / "fifo")
    fake_home = root / "fakehome"
    fake_home.mkdir()
    (fake_home / "notes.txt").write_text("do not delete\n")
    inputs = root / "inputs"
    inputs.mkdir()
    (inputs / "bad.yaml").write_bytes(b"name: \xff\xfe caf\xe9\n")
    (inputs / "deep.yaml").write_text("[" * 20_000 + "]" * 20_000)
    (inputs / "bomb.yaml").write_text(BOMB)
    (inputs / "seeds.csv").write_text("prompt\nWrite a haiku.\n")
    (inputs / "guide.md").write_text("Prefer the correct answer.\n")
    (inputs / "big.yaml").write_text("name: " + "x" * (3 * 1024 * 1024) + "\n")
    return {"victims": victims, "fake_home": fake_home, "inputs": inputs, "out": root / "out", "cwd": root / "cwd"}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-cli")
    places = _make_victims(root)
    places["out"].mkdir()
    places["cwd"].mkdir()
    home = root / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_HOME", str(home))
        patch.setenv("STUDIO_CACHE", str(root / "cache"))
        patch.setenv("HOME", str(places["fake_home"]))
        patch.setenv("HF_HOME", str(root / "scratch" / "hf"))
        patch.setenv("XDG_CACHE_HOME", str(root / "scratch"))
        for name in ("STUDIO_APP_PORT", "STUDIO_LLM_PORT", "STUDIO_ARGILLA_PORT", "STUDIO_REDIS_PORT",
                     "STUDIO_SEARCH_PORT"):
            patch.setenv(name, str(free_port()))
        for name in ("STUDIO_ARGILLA_URL", "ARGILLA_API_KEY", "STUDIO_SEARCH_URL"):
            patch.delenv(name, raising=False)
        patch.chdir(places["cwd"])
        store.write_batch(get_database(), **_pairs(4, "gen_fuzz", 0.6))
        yield {**places, "root": root, "home": home}
        get_database().close()


def _tree(root: Path, skip: set[Path]) -> dict[str, tuple]:
    """Every path under ``root`` (not following links) with what identifies its content."""
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(folder, d) not in skip]
        for name in dirs + files:
            path = Path(folder, name)
            if path in skip:
                continue
            info = os.lstat(path)
            kind = stat.S_IFMT(info.st_mode)
            out[str(path)] = (kind, info.st_size if kind == stat.S_IFREG else 0,
                              info.st_mtime_ns if kind == stat.S_IFREG else 0)
    return out


# -- arguments -------------------------------------------------------------------------------------
def _paths(box: dict, command: str) -> st.SearchStrategy[str]:
    home, victims, inputs = box["home"], box["victims"], box["inputs"]
    fixed = [home, home / "studio.duckdb", home / "models", home / "exports" / "mine.jsonl", victims,
             victims / "precious.txt", victims / "existing.jsonl", victims / "fifo", victims / "data",
             box["fake_home"], box["root"], inputs / "bad.yaml", inputs / "deep.yaml", inputs / "bomb.yaml",
             inputs / "big.yaml", inputs / "seeds.csv", inputs / "guide.md", "~", "rel.jsonl", "a" * 600 + ".yaml",
             "/nonexistent/dir/x.yaml", str(ROOT / "examples" / EXAMPLES.get(command, "generate.yaml"))]
    fresh = st.integers(0, 10**9).map(lambda n: str(box["out"] / f"new-{n}.jsonl"))
    return st.sampled_from([str(p) for p in fixed]) | fresh


@st.composite
def yaml_document(draw, command: str) -> str:
    example = yaml.safe_load((ROOT / "examples" / EXAMPLES[command]).read_text())
    kind = draw(st.sampled_from(["mutated", "nasty", "text"]))
    if kind == "mutated":
        return yaml.safe_dump(draw(mutated(example)), allow_unicode=True)
    if kind == "nasty":
        return draw(st.sampled_from([*NASTY_YAML, BOMB, "[" * 5000 + "]" * 5000, "name: " + "y" * 100_000]))
    return draw(st.text(max_size=200))


def _value(draw, action: argparse.Action, box: dict, command: str) -> str:
    if action.choices:
        return draw(st.sampled_from(list(action.choices)) | TEXTS)
    if getattr(action.type, "__name__", "") in ("int", "float"):
        return draw(NUMBERS)
    if action.dest in PATH_DESTS:
        if action.dest in ("config", "spec") and command in EXAMPLES and draw(st.booleans()):
            doc = box["inputs"] / f"doc-{draw(st.integers(0, 10**9))}.yaml"
            doc.write_text(draw(yaml_document(command)), encoding="utf-8")
            return str(doc)
        return draw(_paths(box, command))
    return draw(TEXTS)


@st.composite
def argv_for(draw, command: str, box: dict) -> list[str]:
    argv = command.split()
    for action in COMMANDS[command]._actions:
        if isinstance(action, argparse._HelpAction) or NEVER_FLAGS & set(action.option_strings):
            continue
        if action.option_strings:
            if not action.required and not draw(st.booleans()):
                continue
            flag = action.option_strings[-1]
            argv += [flag] if action.nargs == 0 else [flag, _value(draw, action, box, command)]
        elif action.nargs not in ("?", "*") or draw(st.booleans()):
            argv.append(_value(draw, action, box, command))
    return argv


def _allowed(argv: list[str], box: dict) -> set[Path]:
    """What a call may write outside STUDIO_HOME: a new export target it names (in the output or the
    working folder) and that target's manifest; never a victim, whatever it names."""
    allowed = {box["home"], box["root"] / "scratch", box["root"] / "cache"}
    if "--out" in argv:
        target = Path(os.path.abspath(Path(argv[argv.index("--out") + 1]).expanduser()))
        if target.parent in (box["out"], box["cwd"]):
            allowed |= {target, target.with_name(f".{target.name}.studio-export.json")}
    return allowed


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


@pytest.mark.parametrize("command", sorted(COMMANDS))
@given(data=st.data())
def test_every_command_survives_hostile_input(sandbox, command, data):
    argv = data.draw(argv_for(command, sandbox), label="argv")
    skip = _allowed(argv, sandbox)
    before = _tree(sandbox["root"], skip)
    code, err = _run(argv)
    shown = [a if len(a) < 80 else a[:80] + "…" for a in argv]
    assert isinstance(code, int), shown
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if errors or code not in (0, 1):  # 1 without an error line: a health check that says NOT OK on stdout
        assert code != 0 and len(errors) == 1 and len(errors[0]) <= 620, (shown, code, err[:1000])
    assert _tree(sandbox["root"], skip) == before, f"{shown} changed files outside STUDIO_HOME"
    _database_still_opens(reopen="--out" in argv)
    _forget_endpoints()


EXPORT_TARGETS = ["home", "home/studio.duckdb", "home/models", "home/secrets.toml", "victims", "victims/precious.txt",
                  "victims/existing.jsonl", "victims/fifo", "victims/data", "fake_home", "root", "out/fresh.jsonl",
                  "out/fresh-folder", "cwd/rel.jsonl"]


@settings(max_examples=60)
@given(target=st.sampled_from(EXPORT_TARGETS), fmt=st.sampled_from(["jsonl", "parquet", "datasets"]),
       overwrite=st.booleans(), kind=st.sampled_from(["preference", "sft"]))
def test_export_writes_over_nothing_it_did_not_write(sandbox, target, fmt, overwrite, kind):
    """Export pointed at every victim, in every format, with and without --overwrite (more examples
    than the generic test gives one command): only the fresh targets change."""
    place, _, rest = target.partition("/")
    path = sandbox[place] / rest if rest else sandbox[place]
    argv = ["export", "--kind", kind, "--format", fmt, "--out", str(path)] + (["--overwrite"] if overwrite else [])
    skip = _allowed(argv, sandbox)
    before = _tree(sandbox["root"], skip)
    code, err = _run(argv)
    assert "Traceback" not in err, err[-3000:]
    assert code == 0 or len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err
    assert _tree(sandbox["root"], skip) == before, f"{argv} changed files outside STUDIO_HOME"
    assert code != 0 or place in ("out", "cwd"), f"{argv} wrote to a victim"
    _database_still_opens(reopen=True)


def _database_still_opens(reopen: bool) -> None:
    """The pairs are still there; with ``reopen``, read through a fresh open of the file (a call
    that replaced the file would pass through the connection this process already holds)."""
    if reopen:
        get_database().close()
    with get_database().session() as cur:
        assert cur.execute("SELECT count(*) FROM preference_pairs").fetchone()[0] >= 4


def _forget_endpoints() -> None:
    """Endpoints a call added would make a later generated config call them (retries take seconds)."""
    from studio.services import models

    for endpoint in models.list_endpoints():
        if not endpoint.embedded:
            models.remove_endpoint(endpoint.name)
