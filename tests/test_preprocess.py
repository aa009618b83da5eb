"""Preprocessing against hand-built cases: normalization, emoji, exact and near duplicates, PII, length,
the step reports, and every config rule."""

from __future__ import annotations

import copy
import random

import pytest

from pipelines.generate.pii import PII_KINDS, find_pii, iban_is_valid, luhn_is_valid, scrub_text
from pipelines.generate.preprocess import (
    PreprocessConfig,
    StepReport,
    preprocess,
)
from pipelines.generate.normalize import normalize_text
from core.errors import BadInput

OFF = dict(normalize_whitespace=False, strip_emoji=False, dedup_exact=False, dedup_near=False, scrub_pii=False)

PHOTOSYNTHESIS = (
    "Photosynthesis is the process by which green plants and some other organisms use sunlight to "
    "synthesize foods from carbon dioxide and water. It generally involves the green pigment chlorophyll "
    "and generates oxygen as a byproduct of the reactions in leaves"
)
SAME_TOPIC = (
    "Plants capture light energy in their chloroplasts and turn it into chemical energy stored in sugars. "
    "This process releases oxygen into the air and depends on water drawn up from the roots and on carbon "
    "dioxide from the air around leaves"
)


def only(**on) -> PreprocessConfig:
    return PreprocessConfig(**{**OFF, **on})


def items_of(*texts: str, **extra) -> list[dict]:
    return [{"id": f"t{i}", "text": t, **extra} for i, t in enumerate(texts)]


def report(result, step: str) -> StepReport:
    return next(r for r in result.reports if r.step == step)


def texts(result) -> list[str]:
    return [item["text"] for item in result.kept]


# --- normalization -----------------------------------------------------------------------------------


def test_normalize_collapses_whitespace_and_removes_invisible_characters():
    raw = "  Caf\u0065\u0301  au\u200b lait\t\tnow\u00a0ok \r\n\r\n\r\n\r\nNext \ufeffpara\x07  \u2028end  "
    text, causes = normalize_text(raw)
    assert text == "Café au lait now ok\n\nNext para\nend"
    assert text == "Caf\u00e9" + text[4:]  # NFC: one code point, not e + combining accent
    assert set(causes) == {"unicode composed (NFC)", "line endings normalised",
                           "invisible or control characters removed", "whitespace normalised"}


def test_normalize_keeps_indentation_code_fences_and_paragraph_breaks():
    raw = "Steps:\n\n  - one   item\n  - two\n\n```python\ndef f():\n    return  1  \n\n\n\n```\nDone."
    text, _ = normalize_text(raw)
    assert text == "Steps:\n\n  - one item\n  - two\n\n```python\ndef f():\n    return  1\n\n\n\n```\nDone."


def test_normalize_keeps_zero_width_joiner_inside_emoji_sequences():
    family = "family \U0001F468\u200d\U0001F469\u200d\U0001F467 here"
    assert normalize_text(family) == (family, [])


def test_normalize_step_reports_changed_items_and_causes():
    result = preprocess(items_of("already clean", "two  spaces", "zero\u200bwidth"), only(normalize_whitespace=True))
    rep = report(result, "normalize")
    assert (rep.input_count, rep.removed, rep.changed) == (3, 0, 2)
    assert rep.reasons == {"whitespace normalised": 1, "invisible or control characters removed": 1}
    assert texts(result) == ["already clean", "two spaces", "zerowidth"]
    assert {e["id"] for e in rep.examples} == {"t1", "t2"}
    assert rep.examples[0]["before"] == "two  spaces" and rep.examples[0]["after"] == "two spaces"


def test_emoji_stripping_removes_pictographs_but_keeps_trademark_signs():
    raw = "Great job \U0001F44D\U0001F3FD! \u2764\ufe0f See \U0001F1EB\U0001F1F7 \u00a9 2024 Acme\u2122"
    result = preprocess(items_of(raw), only(strip_emoji=True, normalize_whitespace=True))
    assert texts(result) == ["Great job ! See © 2024 Acme™"]
    assert report(result, "normalize").reasons["emoji removed"] == 1
    kept = preprocess(items_of(raw), only(normalize_whitespace=True))
    assert "\U0001F44D" in texts(kept)[0]  # off by default


# --- exact and near duplicates -------------------------------------------------------------------------


def test_exact_duplicates_differing_only_by_case_and_whitespace():
    result = preprocess(
        items_of("Hello   World", "hello world", "HELLO\nWORLD ", "Hello, World", "Something else"),
        only(dedup_exact=True),
    )
    assert texts(result) == ["Hello   World", "Hello, World", "Something else"]
    assert [(r["item"]["id"], r["duplicate_of"], r["reason"]) for r in result.removed] == [
        ("t1", "t0", "exact duplicate"), ("t2", "t0", "exact duplicate")]
    rep = report(result, "exact_dedup")
    assert rep.reasons == {"exact duplicate": 2}
    assert rep.examples[0]["duplicate_of"] == "t0" and rep.examples[0]["after"] is None


def test_near_duplicate_with_one_word_changed_is_caught_and_same_topic_text_is_not():
    words = PHOTOSYNTHESIS.split()
    assert len(words) == 40
    edited = " ".join(words[:20] + ["produce"] + words[21:])
    result = preprocess(items_of(PHOTOSYNTHESIS, edited, SAME_TOPIC), only(dedup_near=True, near_threshold=0.8))
    assert texts(result) == [PHOTOSYNTHESIS, SAME_TOPIC]
    assert result.removed[0]["item"]["id"] == "t1" and result.removed[0]["duplicate_of"] == "t0"
    rep = report(result, "near_dedup")
    assert rep.reasons == {"near duplicate": 1}
    assert 0.8 <= rep.examples[0]["similarity"] < 1


def test_near_threshold_decides():
    words = PHOTOSYNTHESIS.split()
    edited = " ".join(words[:10] + ["X"] + words[11:30] + ["Y"] + words[31:])  # two words changed
    assert len(preprocess(items_of(PHOTOSYNTHESIS, edited), only(dedup_near=True, near_threshold=0.6)).kept) == 1
    assert len(preprocess(items_of(PHOTOSYNTHESIS, edited), only(dedup_near=True, near_threshold=0.95)).kept) == 2


def test_near_duplicates_do_not_chain_through_removed_items():
    # t2 is close to t1 (one word apart) but not to t0 (two words apart); t1 is removed as a near
    # duplicate of t0, so t2 is compared only with kept texts and survives: no chain t0 <- t1 <- t2.
    words = PHOTOSYNTHESIS.split()
    first_edit = " ".join(words[:5] + ["many"] + words[6:])
    second_edit = " ".join(words[:5] + ["many"] + words[6:35] + ["stems"] + words[36:])
    result = preprocess(items_of(PHOTOSYNTHESIS, first_edit, second_edit), only(dedup_near=True))
    assert [(r["item"]["id"], r["duplicate_of"]) for r in result.removed] == [("t1", "t0")]
    assert [item["id"] for item in result.kept] == ["t0", "t2"]


def test_group_key_scopes_deduplication_to_one_instruction():
    items = [
        {"id": "a1", "instruction_id": "i1", "text": "Yes."},
        {"id": "b1", "instruction_id": "i2", "text": "Yes."},
        {"id": "a2", "instruction_id": "i1", "text": "yes."},
        {"id": "b2", "instruction_id": "i2", "text": "Yes!"},
        {"id": "c1", "instruction_id": "i3", "text": PHOTOSYNTHESIS},
        {"id": "d1", "instruction_id": "i4", "text": PHOTOSYNTHESIS.replace("oxygen", "O2")},
    ]
    config = PreprocessConfig()
    scoped = preprocess(items, config, group_key="instruction_id")
    assert [i["id"] for i in scoped.kept] == ["a1", "b1", "c1", "d1"]
    assert [(r["item"]["id"], r["step"], r["duplicate_of"]) for r in scoped.removed] == [
        ("a2", "exact_dedup", "a1"), ("b2", "near_dedup", "b1")]
    unscoped = preprocess(items, config)
    assert [i["id"] for i in unscoped.kept] == ["a1", "c1"]


def test_items_without_id_are_named_by_position():
    result = preprocess([{"text": "same"}, {"text": "Same"}], only(dedup_exact=True))
    assert result.removed[0]["duplicate_of"] == "#0"


# --- PII -----------------------------------------------------------------------------------------------

PII_POSITIVES = [
    ("email", "Mail john.doe+news@example.co.uk today", "Mail [EMAIL] today"),
    ("email", "contact: Ana_B@mail-server.example.org.", "contact: [EMAIL]."),
    ("phone", "Call +1 (415) 555-2671 now", "Call [PHONE] now"),
    ("phone", "UK office +44 20 7946 0958.", "UK office [PHONE]."),
    ("phone", "mobile +33 6 12 34 56 78", "mobile [PHONE]"),
    ("phone", "whatsapp +491701234567", "whatsapp [PHONE]"),
    ("phone", "Ring 415-555-2671 or (415) 555-2671", "Ring [PHONE] or [PHONE]"),
    ("phone", "toll free 1-800-555-0199", "toll free [PHONE]"),
    ("phone", "London 020 7946 0958, Paris 06 12 34 56 78", "London [PHONE], Paris [PHONE]"),
    ("phone", "Tel. 5551234", "Tel. [PHONE]"),
    ("phone", "my phone number is 0170 1234567", "my phone number is [PHONE]"),
    ("card", "Visa 4111 1111 1111 1111 exp 12/27", "Visa [CARD] exp 12/27"),
    ("card", "cards 4111-1111-1111-1111, 5555555555554444, 378282246310005", "cards [CARD], [CARD], [CARD]"),
    ("card", "amex 3782 822463 10005 and CVV 123", "amex [CARD] and CVV 123"),
    ("card", "card 4111 1111 1111 1111 123", "card [CARD] 123"),
    ("ip", "server at 10.0.0.1 and 192.168.1.20", "server at [IP] and [IP]"),
    ("ip", "dns 1.2.3.4;", "dns [IP];"),
    ("ip", "v6 2001:db8::8a2e:370:7334 and fe80::1", "v6 [IP] and [IP]"),
    ("iban", "IBAN DE89 3704 0044 0532 0130 00 EUR", "IBAN [IBAN] EUR"),
    ("iban", "pay GB82WEST12345698765432 or FR14 2004 1010 0505 0001 3M02 606.", "pay [IBAN] or [IBAN]."),
    ("ssn", "SSN 123-45-6789.", "SSN [SSN]."),
    ("url_credentials", "db postgres://admin:s3cr3t@db.internal:5432/app", "db postgres://[CREDENTIALS]@db.internal:5432/app"),
    ("url_credentials", "clone https://bob:tok_9x@git.example.com/repo.git", "clone https://[CREDENTIALS]@git.example.com/repo.git"),
]

PII_NEGATIVES = [
    ("email", "@handle, user@localhost, a@b.c and name at example dot com"),
    ("phone", "In 2023, 1999-2023, on 2023-01-15, 15.01.2023 and 01/15/2023 10:30"),
    ("phone", "version 10.0.19041.1234, release 1.2.3, pi 3.14159265, 0.5 0.25"),
    ("phone", "costs $1,299.99 or €1.299,00; ISBN 978-3-16-148410-0 and 0-306-40615-2"),
    ("phone", "order #12345678, order 0123456789, +100000000 lines, +5 points, 300 items"),
    ("phone", "a budget of 1 000 000 000 and 0 000 000 000, uuid 123e4567-e89b-12d3-a456-426614174000"),
    ("card", "bad Luhn 4111 1111 1111 1112, id 1234567812345670, no issuer 9234567812345678"),
    ("card", "all zeros 0000 0000 0000 0000; Amex prefix wrong length 3704 0044 0532 0130"),
    ("card", "order 4021-7788-1234-5678 and timestamp 1700000000000"),
    ("ip", "version 1.2.3.4, v1.2.3.4, ver. 2.0.0.1, build 4.3.2.1"),
    ("ip", "localhost 127.0.0.1, bind 0.0.0.0, mask 255.255.255.0, ::1"),
    ("ip", "not addresses: 256.1.1.1, 1.2.3, 1.2.3.4.5, 01.02.03.04"),
    ("ip", "code a[1::2], x[::2], std::vector, 12:30:45, MAC 00:1A:2B:3C:4D:5E"),
    ("iban", "bad check DE89 3704 0044 0532 0130 01, unknown country XX89370400440532013000"),
    ("iban", "wrong length DE89 3704 0044 0532 0130, lower case de89370400440532013000"),
    ("ssn", "987-65-4321, 666-12-3456, 123-00-4567, 123-45-0000, 123456789"),
    ("url_credentials", "https://example.com/a:b@c is fine? https://user@host.example has no password"),
]


@pytest.mark.parametrize("kind,text,expected", PII_POSITIVES)
def test_pii_positives(kind, text, expected):
    redacted, found = scrub_text(text, PII_KINDS)
    assert redacted == expected
    assert set(found) == {kind}


@pytest.mark.parametrize("kind,text", PII_NEGATIVES)
def test_pii_near_miss_negatives(kind, text):
    redacted, found = scrub_text(text, [kind])
    assert (redacted, dict(found)) == (text, {})


def test_checksums_and_spans():
    assert luhn_is_valid("4111111111111111") and not luhn_is_valid("4111111111111112")
    assert iban_is_valid("DE89370400440532013000") and not iban_is_valid("DE89370400440532013001")
    assert find_pii("call 415-555-2671 or a@b.io", "phone") == [(5, 17)]
    # Two phone rules match one number ("phone" keyword and international): one span, their union.
    assert find_pii("phone: +44 20 7946 0958", "phone") == [(7, 23)]


def test_pii_kinds_limit_what_is_scrubbed():
    text = "mail a@example.com, call +44 20 7946 0958"
    result = preprocess(items_of(text), only(scrub_pii=True, pii_kinds=("email",)))
    assert texts(result) == ["mail [EMAIL], call +44 20 7946 0958"]


def test_pii_redact_counts_items_per_kind():
    result = preprocess(
        items_of("a@example.com and b@example.com", "call 415-555-2671, mail c@example.com", "nothing here"),
        only(scrub_pii=True),
    )
    rep = report(result, "pii")
    assert (rep.input_count, rep.removed, rep.changed) == (3, 0, 2)
    assert rep.reasons == {"email": 2, "phone": 1}
    assert texts(result) == ["[EMAIL] and [EMAIL]", "call [PHONE], mail [EMAIL]", "nothing here"]
    assert rep.examples[1] == {"id": "t1", "reason": "redacted email, phone", "before": "call 415-555-2671, mail c@example.com",
                               "after": "call [PHONE], mail [EMAIL]"}


def test_pii_drop_removes_the_item_and_says_which_kinds():
    items = items_of("a@example.com, 415-555-2671", "clean text", "SSN 123-45-6789")
    result = preprocess(items, only(scrub_pii=True, pii_action="drop"))
    assert texts(result) == ["clean text"]
    assert [(r["item"], r["step"], r["reason"]) for r in result.removed] == [
        (items[0], "pii", "contains email, phone"), (items[2], "pii", "contains ssn")]
    rep = report(result, "pii")
    assert (rep.removed, rep.changed, rep.reasons) == (2, 0, {"email": 1, "phone": 1, "ssn": 1})


# --- length --------------------------------------------------------------------------------------------


def test_length_filters_say_which_bound():
    items = items_of("", "tiny", "just right here", "one two three four five six", "x" * 31)
    result = preprocess(items, only(min_chars=5, max_chars=30, min_words=2, max_words=5))
    assert texts(result) == ["just right here"]
    assert [r["reason"] for r in result.removed] == [
        "shorter than 5 characters", "shorter than 5 characters", "more than 5 words", "longer than 30 characters"]
    assert preprocess(items_of("solo word"), only(min_words=3)).removed[0]["reason"] == "fewer than 3 words"
    rep = report(result, "length")
    assert rep.reasons == {"shorter than 5 characters": 2, "more than 5 words": 1, "longer than 30 characters": 1}


def test_text_emptied_by_normalization_is_removed_by_the_default_length_filter():
    result = preprocess(items_of(" \u200b \n ", "ok"), PreprocessConfig())
    assert texts(result) == ["ok"]
    assert result.removed[0]["reason"] == "shorter than 1 character"


# --- the pipeline and its reports ----------------------------------------------------------------------


def test_reports_chain_and_add_up():
    rng = random.Random(7)
    words = PHOTOSYNTHESIS.split()
    items = []
    for i in range(60):
        choice = rng.random()
        if choice < 0.2:
            text = PHOTOSYNTHESIS.upper()
        elif choice < 0.4:
            edited = list(words)
            edited[rng.randrange(10, 30)] = "zzz"
            text = " ".join(edited)
        elif choice < 0.5:
            text = "x"
        elif choice < 0.6:
            text = f"write to user{i}@example.com  please \U0001F600 " + " ".join(rng.sample(words, 15))
        else:
            text = " ".join(rng.sample(words, 30))
        items.append({"id": i, "text": text})
    items.append({"id": "none", "text": None})
    result = preprocess(items, PreprocessConfig(strip_emoji=True, min_chars=3))
    steps = [r.step for r in result.reports]
    assert steps == ["input", "normalize", "pii", "length", "exact_dedup", "near_dedup"]
    assert result.reports[0].input_count == len(items)
    for before, after in zip(result.reports, result.reports[1:]):
        assert before.input_count - before.removed == after.input_count
    last = result.reports[-1]
    assert len(result.kept) == last.input_count - last.removed
    assert len(result.removed) == sum(r.removed for r in result.reports)
    for rep in result.reports:
        assert len(rep.examples) <= 5
        if rep.step in ("input", "length", "exact_dedup", "near_dedup"):
            assert sum(rep.reasons.values()) == rep.removed
            assert sum(r["step"] == rep.step for r in result.removed) == rep.removed
    assert all(report(result, s).removed > 0 for s in ("length", "exact_dedup", "near_dedup"))
    assert report(result, "pii").changed > 0 and report(result, "normalize").changed > 0
    summary = result.summary()
    assert summary["kept"] == len(result.kept) and [s["step"] for s in summary["steps"]] == steps


def test_steps_turned_off_produce_no_report_and_order_is_fixed():
    assert [r.step for r in preprocess(items_of("a"), only()).reports] == ["length"]
    config = PreprocessConfig(dedup_near=False, scrub_pii=False)
    assert config.enabled_steps() == ("normalize", "length", "exact_dedup")
    assert [r.step for r in preprocess(items_of("a"), config).reports] == list(config.enabled_steps())


def test_input_is_not_mutated_and_other_fields_are_kept():
    items = [{"id": "r1", "text": "  mail a@example.com ", "meta": {"model": "m"}}]
    snapshot = copy.deepcopy(items)
    result = preprocess(items, PreprocessConfig())
    assert items == snapshot
    assert result.kept == [{"id": "r1", "text": "mail [EMAIL]", "meta": {"model": "m"}}]
    assert result.kept[0] is not items[0]


def test_custom_keys_and_unusable_rows_are_removed_not_fatal():
    items = [{"uid": 1, "response": "fine"}, {"uid": 2}, {"uid": 3, "response": 42}, ["not", "a", "dict"]]
    result = preprocess(items, PreprocessConfig(), text_key="response", id_key="uid")
    assert result.kept == [{"uid": 1, "response": "fine"}]
    assert [r["reason"] for r in result.removed] == [
        "no text under 'response'", "'response' is a int, not text", "item is a list, not a mapping"]
    assert result.reports[0].step == "input" and result.reports[0].removed == 3


def test_examples_are_clipped():
    long_text = "word " * 200
    rep = report(preprocess(items_of(long_text), only(max_chars=100)), "length")
    assert len(rep.examples[0]["before"]) == 301 and rep.examples[0]["before"].endswith("…")


def test_ten_thousand_items_run():
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(3000)]
    items = []
    for i in range(10_000):
        if i % 10 == 9:  # a one-word edit of the previous item
            words = items[i - 1]["text"].split()
            words[50] = "changed"
        else:
            words = [rng.choice(vocab) for _ in range(100)]
        items.append({"id": i, "text": " ".join(words)})
    result = preprocess(items, PreprocessConfig())
    assert len(result.kept) == 9_000 and report(result, "near_dedup").removed == 1_000


# --- config validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("normalize_whitespace", "yes", r"normalize_whitespace='yes' must be true or false"),
        ("strip_emoji", 1, r"strip_emoji=1 must be true or false"),
        ("dedup_exact", None, r"dedup_exact=None must be true or false"),
        ("dedup_near", "no", r"dedup_near='no' must be true or false"),
        ("scrub_pii", 0, r"scrub_pii=0 must be true or false"),
        ("near_threshold", 0, r"near_threshold=0 is out of range.*above 0 and at most 1"),
        ("near_threshold", 1.5, r"near_threshold=1.5 is out of range"),
        ("near_threshold", True, r"near_threshold=True must be a number"),
        ("near_threshold", "0.8", r"near_threshold='0.8' must be a number"),
        ("num_perm", 8, r"num_perm=8 is out of range.*from 16 to 512"),
        ("num_perm", 1024, r"num_perm=1024 is out of range"),
        ("num_perm", 128.0, r"num_perm=128.0 must be a whole number"),
        ("shingle_size", 0, r"shingle_size=0 is out of range.*from 1 to 10"),
        ("shingle_size", 11, r"shingle_size=11 is out of range"),
        ("pii_action", "mask", r"pii_action='mask' is not one of the choices.*redact, drop"),
        ("pii_kinds", "email", r"pii_kinds='email' must be a list"),
        ("pii_kinds", ("email", "passport"), r"pii_kinds\[1\]='passport' is not one of the choices.*email"),
        ("pii_kinds", (), r"pii_kinds is empty while scrub_pii is on"),
        ("min_chars", -1, r"min_chars=-1 is out of range.*at least 0"),
        ("max_chars", 0, r"max_chars=0 is out of range.*at least 1"),
        ("min_words", -2, r"min_words=-2 is out of range"),
        ("max_words", 0, r"max_words=0 is out of range"),
    ],
)
def test_config_validation(field, value, match):
    with pytest.raises(BadInput, match=match):
        PreprocessConfig(**{field: value})


def test_config_bounds_must_be_ordered():
    with pytest.raises(BadInput, match=r"max_chars=10 is out of range.*at least 20"):
        PreprocessConfig(min_chars=20, max_chars=10)
    with pytest.raises(BadInput, match=r"max_words=3 is out of range.*at least 5"):
        PreprocessConfig(min_words=5, max_words=3)


def test_config_edges_are_accepted():
    PreprocessConfig(near_threshold=1, num_perm=16, shingle_size=1, min_chars=0, max_chars=1, max_words=1)
    PreprocessConfig(near_threshold=0.01, num_perm=512, shingle_size=10)
    assert PreprocessConfig(scrub_pii=False, pii_kinds=()).pii_kinds == ()
    for threshold, num_perm in [(1.0, 16), (0.01, 16), (0.5, 512)]:
        config = PreprocessConfig(near_threshold=threshold, num_perm=num_perm)
        assert len(preprocess(items_of(PHOTOSYNTHESIS, PHOTOSYNTHESIS + " again"), config).kept) >= 1


def test_config_from_dict():
    config = PreprocessConfig.from_dict({"pii_kinds": ["email", "ip"], "near_threshold": 0.9})
    assert config.pii_kinds == ("email", "ip") and config.to_dict()["pii_kinds"] == ["email", "ip"]
    assert PreprocessConfig.from_dict(None) == PreprocessConfig()
    with pytest.raises(BadInput, match=r"near_treshold: unknown key in the preprocessing options.*near_threshold"):
        PreprocessConfig.from_dict({"near_treshold": 0.9})
