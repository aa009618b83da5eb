"""The one input boundary (core/inputs.py) and the hostile inputs that once went wrong on the command
line: each is a ``pytest.raises(..., match=...)`` on the boundary or a CLI exit code with one line."""

from __future__ import annotations

import argparse
import os
import time

import pytest

from core.errors import BadInput
from core.inputs import (MAX_SEED, bounded_float, bounded_int, check_name, check_number, check_path, load_json,
                         load_mapping, load_yaml, one_line, quote, read_text)
from studio.cli import main

# 10 levels of 10 aliases: 10^9 list items once expanded ("billion laughs")
BOMB = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(9))
DEEP_YAML = "[" * 20_000 + "]" * 20_000
DEEP_JSON = '{"a": ' * 20_000 + "1" + "}" * 20_000


# -- YAML and JSON ----------------------------------------------------------------------------------
def test_an_alias_bomb_is_refused_at_once():
    started = time.monotonic()
    with pytest.raises(BadInput, match="aliases expand to more than 200,000 values"):
        load_yaml(BOMB, "generation config")
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("text, message", [
    ("seeds: &a [*a]", "an alias refers to the value that contains it"),
    (DEEP_YAML, "nested more than 64 levels deep"),
    ("a: &a " + "[" * 40 + "x" + "]" * 40 + "\nb: " + "[" * 40 + "*a" + "]" * 40, "aliases nest it more than 64 levels"),
    ("x: " + "1" * 5000, "holds a value YAML cannot read"),
    ("a: 1\n---\nb: 2", "not valid YAML at line 2, column 1"),
    ("!!python/object/apply:os.system ['echo pwned']", "not valid YAML"),
    ("? [a]: 1", "found unhashable key"),
])
def test_hostile_yaml(text, message):
    with pytest.raises(BadInput, match=message):
        load_yaml(text)


def test_yaml_size_cap_and_encoding():
    with pytest.raises(BadInput, match="characters long"):
        load_yaml("name: " + "x" * (3 * 1024 * 1024))
    with pytest.raises(BadInput, match=r"is not UTF-8 text \(byte 6"):
        load_yaml(b"name: \xff\xfe")
    assert load_yaml("\ufeffa: &a {x: 1}\nb: {<<: *a, y: 2}") == {"a": {"x": 1}, "b": {"x": 1, "y": 2}}


@pytest.mark.parametrize("text, message", [
    (DEEP_JSON, "nested more than 64 levels deep"),
    ("[" * 100 + "]" * 100, "nested more than 64 levels deep"),
    ('{"a": NaN}', "NaN is not a number JSON allows"),
    ("1" * 5000, "not valid JSON"),
    ("{", "not valid JSON: Expecting property name"),
])
def test_hostile_json(text, message):
    with pytest.raises(BadInput, match=message):
        load_json(text, "--params JSON")


def test_mappings():
    assert load_mapping("", "rubric parameters") == {}
    assert load_mapping("min_words: 20", "rubric parameters") == {"min_words": 20}
    assert load_mapping('{"max_words": 5}', "--params JSON", fmt="json") == {"max_words": 5}
    with pytest.raises(BadInput, match="must be a mapping, not list"):
        load_mapping("[1, 2]", "rubric parameters")


# -- files ------------------------------------------------------------------------------------------
def test_files_are_regular_capped_and_utf8(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(BadInput, match="is a FIFO"):  # refused before any read: reading it would block
        read_text(fifo, "config file")
    with pytest.raises(BadInput, match="is a folder"):
        read_text(tmp_path, "config file")
    big = tmp_path / "big.md"
    big.write_bytes(b"x" * 2048)
    with pytest.raises(BadInput, match="is 2,048 bytes"):
        read_text(big, "guidelines file", max_bytes=1024)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: café".encode("latin-1"))
    with pytest.raises(BadInput, match="guidelines file is not UTF-8 text"):
        read_text(latin, "guidelines file")
    with pytest.raises(BadInput, match="does not exist"):
        read_text(tmp_path / "missing.yaml")


def test_paths_and_names_are_length_checked():
    with pytest.raises(BadInput, match="has a part of 600 bytes"):
        check_path("/tmp/" + "a" * 600)
    with pytest.raises(BadInput, match="is too long"):
        check_path("a/" * 3000)
    with pytest.raises(BadInput, match="contains a NUL byte"):
        check_path("a\x00b")
    with pytest.raises(BadInput, match=r"The model name 'mmmm.*… \(12,000 characters\) is too long"):
        check_name("m" * 12_000, "model name", 256)
    with pytest.raises(BadInput, match="contains a control character"):
        check_name("a\nb", "name")


# -- numbers and messages ------------------------------------------------------------------------------
@pytest.mark.parametrize("value, message", [
    (float("nan"), "is not a whole number"), (float("inf"), "is not a whole number"), (10**40, "out of range"),
    (-1, "out of range"), (True, "is not a whole number"), ("5", "is not a whole number"), (2.5, "is not a whole"),
])
def test_numbers_are_bounded(value, message):
    with pytest.raises(BadInput, match=message):
        check_number(value, "seed", 0, MAX_SEED, integer=True)
    with pytest.raises(BadInput, match=r"price=nan is out of range. Use a number from 0 to 10,000"):
        check_number(float("nan"), "price", 0, 10_000)


def test_argparse_types():
    assert bounded_int(0, 10)("7") == 7 and bounded_float(0, 1)("0.25") == 0.25
    for convert, text, message in [(bounded_int(0, 10), "11", "'11' is out of range; use a whole number from 0 to 10"),
                                   (bounded_int(0, 10), "x", "invalid int value: 'x'"),
                                   (bounded_float(0, 1), "nan", "out of range"),
                                   (bounded_float(0, 10_000), "1e308", "use a number from 0 to 10,000")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            convert(text)


def test_messages_quote_a_short_prefix():
    assert quote("x" * 50_000_000).endswith("… (50,000,000 characters)") and len(quote("x" * 50_000_000)) < 80
    assert one_line("a\nb\n" + "c" * 5000).startswith("a b c") and len(one_line("c" * 5000)) == 600


# -- the command line --------------------------------------------------------------------------------
def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and len(err) <= 620, err[:2000]
    assert "Traceback" not in err
    return code, err


@pytest.fixture
def files(tmp_path):
    (tmp_path / "latin.yaml").write_bytes("name: café\n".encode("latin-1"))
    (tmp_path / "deep.yaml").write_text(DEEP_YAML)
    (tmp_path / "deep.json.yaml").write_text(DEEP_JSON)
    (tmp_path / "bomb.yaml").write_text(BOMB)
    (tmp_path / "huge-name.yaml").write_text("name: " + "n" * 1_500_000 + "\n")
    (tmp_path / "fifo.yaml").unlink(missing_ok=True)
    os.mkfifo(tmp_path / "fifo.yaml")
    return tmp_path


@pytest.mark.parametrize("command", ["generate", "train", "compare"])
@pytest.mark.parametrize("name, message", [
    ("latin.yaml", "is not UTF-8 text"), ("deep.yaml", "nested more than 64 levels deep"),
    ("deep.json.yaml", "nested more than 64 levels deep"), ("bomb.yaml", "aliases expand to more than"),
    ("fifo.yaml", "is a FIFO"),
])
def test_hostile_config_files(studio_home, files, capsys, command, name, message):
    code, err = _cli(capsys, command, str(files / name))
    assert code == 2 and message in err


def test_a_huge_value_is_not_echoed(studio_home, files, capsys):
    code, err = _cli(capsys, "generate", str(files / "huge-name.yaml"))
    assert code == 2 and "name" in err  # one short line, not 1.5 million characters


@pytest.mark.parametrize("argv, message", [
    (["review", "push", "--guidelines", "{files}/latin.yaml"], "guidelines file is not UTF-8 text"),
    (["comparisons", "judge", "c1", "--rubric", "length", "--params", "{"], "--params JSON is not valid JSON"),
    (["comparisons", "judge", "c1", "--rubric", "length", "--params", "[" * 100 + "]" * 100], "nested more than 64"),
    (["leaderboard", "--boot", "1000000000"], "argument --boot: '1000000000' is out of range"),
    (["generate", "{files}/" + "a" * 600 + ".yaml"], "has a part of 605 bytes"),
    (["snapshots", "create", "--seed", "1" + "0" * 40], "argument --seed"),
    (["snapshots", "create", "--seed", "1e40"], "invalid int value: '1e40'"),
    (["review", "push", "--seed", "1" + "0" * 40], "argument --seed"),
    (["endpoints", "add", "e", "http://[::1/v1", "m"], "is malformed (Invalid IPv6 URL)"),
    (["endpoints", "add", "e", "http://127.0.0.1:99999/v1", "m"], "Port out of range"),
    (["endpoints", "add", "e", "http://my host/v1", "m"], "contains a space"),
    (["endpoints", "add", "e", "http://127.0.0.1:9/v1", "m" * 12_000], "is too long"),
    (["prices", "set", "gpt-x", "1e308", "1"], "argument input: '1e308' is out of range"),
    (["prices", "set", "m" * 12_000, "1", "1"], "is too long"),
    (["models", "try", "endpoint:x", "hi", "--max-tokens", "1" + "0" * 30], "argument --max-tokens"),
    (["runs", "accelerate", "r1", "--processes", "0"], "argument --processes"),
])
def test_hostile_arguments(studio_home, files, capsys, argv, message):
    code, err = _cli(capsys, *[a.replace("{files}", str(files)) for a in argv])
    assert code == 2 and message in err
