"""Find and redact personal data in text: emails, phones, card numbers, IPs, IBANs, US SSNs, URL credentials.

Why these rules (precision matters as much as recall: a scrubber that eats version numbers, dates and
order ids ruins training data):

- **card**: 13-19 digits, contiguous or in the printed groupings (4-4-4-4[-1..3], 4-6-5, 4-6-4) with one
  consistent separator, that pass the Luhn check *and* start with a known issuer prefix (Visa, Mastercard,
  Amex, Discover, JCB, Diners, UnionPay, Maestro). Luhn alone passes one random id in ten.
- **iban**: a country code with its registry length and the ISO 13616 mod-97 check; upper case only.
- **ssn**: US format ``AAA-GG-SSSS`` only (nine bare digits are too ambiguous), with the SSA's rules:
  area not 000, 666 or 9xx, group not 00, serial not 0000.
- **ip**: IPv4 with valid octets (no leading zeros) and IPv6 as parsed by :mod:`ipaddress`. Private
  addresses (10.0.0.1, 192.168.x.x) are redacted: they describe someone's network. Loopback (127.x, ::1),
  the unspecified address (0.0.0.0, ::) and netmasks (255.255.255.0) are kept: they identify no one and
  are everywhere in code. A dotted quad right after "version", "ver", "release", "build" or a ``v``
  (``v1.2.3.4``) is a version number and is kept; a bare ``1.2.3.4`` is an address and is redacted.
- **phone**: ``+`` international numbers (8-15 digits with separators, 10-15 without, so ``+100000000``
  in a diff is not a phone); North American ``555-123-4567`` / ``(555) 123-4567`` / ``1-800-555-0199``
  with one consistent separator; European national numbers that start with a 0 trunk prefix (then a
  non-zero digit) and have separators (``020 7946 0958``, ``06 12 34 56 78``; ``1 000 000 000`` is not
  one); and any 7-15 digit number right after a phone word ("phone", "tel", "mobile", "fax", ...).
  Years, dates, prices, ISBNs, version strings and unformatted digit runs (order ids) do not match.
- **email**: ``local@domain.tld``; no TLD (``user@localhost``) or a bare ``@handle`` is not an email.
- **url_credentials**: the ``user:password`` part of ``scheme://user:password@host``; the host is kept.

Text in other scripts is matched only where these formats are ASCII (digits 0-9, Latin letters).
Kinds run in a fixed order (url_credentials, email, iban, card, ssn, ip, phone) on text where earlier
kinds are already replaced, so one span is counted once: a card number is never also a phone.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from typing import Callable, Iterable

PII_KINDS: tuple[str, ...] = ("email", "phone", "card", "ip", "iban", "ssn", "url_credentials")
DETECTION_ORDER: tuple[str, ...] = ("url_credentials", "email", "iban", "card", "ssn", "ip", "phone")
REPLACEMENTS: dict[str, str] = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "card": "[CARD]",
    "ip": "[IP]",
    "iban": "[IBAN]",
    "ssn": "[SSN]",
    "url_credentials": "[CREDENTIALS]",
}

Span = tuple[int, int]

# --- url credentials and email -------------------------------------------------------------------

_URL_CREDENTIALS = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://([^\s:/@]+:[^\s/@]+)@", re.ASCII)
_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])",
    re.ASCII,
)


def _find_url_credentials(text: str) -> list[Span]:
    return [m.span(1) for m in _URL_CREDENTIALS.finditer(text)] if "://" in text else []


def _find_emails(text: str) -> list[Span]:
    return [m.span() for m in _EMAIL.finditer(text)] if "@" in text else []


# Cheap pre-checks: most texts hold no long number, and scanning for one is 10x cheaper than running
# every card, SSN and phone pattern (all need at least 7 digits in a row, separators aside).
_LONG_NUMBER = re.compile(r"[0-9][0-9 .()-]{5,}[0-9]")
_NEEDS_LONG_NUMBER = frozenset({"card", "ssn", "phone"})
_DOTTED_NUMBER = re.compile(r"[0-9]\.[0-9]{1,3}\.[0-9]")
_COLON_PAIR = re.compile(r":[0-9A-Fa-f]{0,4}:")


# --- IBAN ----------------------------------------------------------------------------------------

# ISO 13616 registry: country code -> IBAN length.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
_IBAN_CANDIDATE = re.compile(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}", re.ASCII)


def iban_is_valid(compact: str) -> bool:
    """ISO 13616: registry length for the country, then the mod-97 remainder of the rearranged number is 1."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum() or not compact.isascii():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _find_ibans(text: str) -> list[Span]:
    """The candidate regex is greedy (it may run into a following code like ``EUR``), so the registry
    length decides where the IBAN ends."""
    spans = []
    for m in _IBAN_CANDIDATE.finditer(text):
        length = IBAN_LENGTHS.get(m.group()[:2])
        if length is None:
            continue
        seen, end = 0, m.start()
        while end < m.end() and seen < length:
            seen += text[end] != " "
            end += 1
        if seen < length or (end < len(text) and text[end].isalnum()):
            continue
        if iban_is_valid(text[m.start():end].replace(" ", "")):
            spans.append((m.start(), end))
    return spans


# --- card numbers --------------------------------------------------------------------------------

_DIGIT_START = r"[0-9](?<![0-9-][0-9])"  # a digit not preceded by a digit or hyphen
_CARD_PATTERNS = [
    re.compile(_DIGIT_START + p, re.ASCII)
    for p in (
        r"[0-9]{12,18}(?![0-9])",
        r"[0-9]{3}([ -])[0-9]{4}\1[0-9]{4}\1[0-9]{4}(?:\1[0-9]{1,3})?(?![0-9])",
        r"[0-9]{3}([ -])[0-9]{4}\1[0-9]{4}\1[0-9]{4}(?![0-9])",
        r"[0-9]{3}([ -])[0-9]{6}\1[0-9]{4,5}(?![0-9])",
    )
]
# Issuer prefixes and the lengths each issues (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay,
# Maestro): a Luhn-valid number with an unknown prefix or the wrong length for its issuer is an id.
_CARD_ISSUERS: list[tuple[re.Pattern[str], range | tuple[int, ...]]] = [
    (re.compile(r"4"), (13, 16, 19)),
    (re.compile(r"5[1-5]|2(?:22[1-9]|2[3-9][0-9]|[3-6][0-9]{2}|7[01][0-9]|720)"), (16,)),
    (re.compile(r"3[47]"), (15,)),
    (re.compile(r"6011|65|64[4-9]|62|35(?:2[89]|[3-8][0-9])"), range(16, 20)),
    (re.compile(r"3(?:0[0-5]|[689])"), range(14, 20)),
    (re.compile(r"5[06-9]|6[0-9]"), range(13, 20)),
]


def luhn_is_valid(digits: str) -> bool:
    """The Luhn mod-10 check every payment card number carries."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_is_valid(digits: str) -> bool:
    """Luhn-valid, not one repeated digit, and a known issuer prefix with a length that issuer uses."""
    if len(set(digits)) < 2 or not luhn_is_valid(digits):
        return False
    return any(prefix.match(digits) and len(digits) in lengths for prefix, lengths in _CARD_ISSUERS)


def _find_cards(text: str) -> list[Span]:
    spans = []
    for pattern in _CARD_PATTERNS:
        for m in pattern.finditer(text):
            if card_is_valid(re.sub(r"[ -]", "", m.group())):
                spans.append(m.span())
    return spans


# --- SSN -----------------------------------------------------------------------------------------

_SSN = re.compile(r"([0-9](?<![0-9-][0-9])[0-9]{2})-([0-9]{2})-([0-9]{4})(?![0-9]|-[0-9])", re.ASCII)


def _find_ssns(text: str) -> list[Span]:
    spans = []
    for m in _SSN.finditer(text):
        area, group, serial = m.groups()
        if area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000":
            spans.append(m.span())
    return spans


# --- IP addresses --------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.[0-9])", re.ASCII)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|[0-9]{1,3}(?:\.[0-9]{1,3}){3})?(?![\w:])",
    re.ASCII,
)
_VERSION_BEFORE = re.compile(r"(?:\bversion|\bver\.?|\brelease|\bbuild|\bv)\s*$", re.IGNORECASE)


def _ip_identifies_no_one(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if address.is_loopback or address.is_unspecified:
        return True
    if address.version == 4:
        bits = f"{int(address):032b}"
        return bits.startswith("1") and "01" not in bits  # a netmask such as 255.255.255.0
    return False


def _looks_like_slice(candidate: str) -> bool:
    """``a[1::2]`` and ``x[::2]`` parse as IPv6; decimal-only with at most two groups is a slice."""
    groups = [g for g in candidate.split(":") if g]
    return len(groups) <= 2 and all(g.isdigit() for g in groups)


def _find_ips(text: str) -> list[Span]:
    spans = []
    for m in _IPV4.finditer(text) if _DOTTED_NUMBER.search(text) else ():
        if _VERSION_BEFORE.search(text, max(0, m.start() - 12), m.start()):
            continue
        if not _ip_identifies_no_one(ipaddress.IPv4Address(m.group())):
            spans.append(m.span())
    for m in _IPV6.finditer(text) if _COLON_PAIR.search(text) else ():
        candidate = m.group()
        if candidate.count(":") < 2 or _looks_like_slice(candidate):
            continue
        try:
            address = ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        if not _ip_identifies_no_one(address):
            spans.append(m.span())
    return spans


# --- phone numbers -------------------------------------------------------------------------------

# A lookbehind placed after the first character lets re skip ahead to that character (much faster).
_PHONE_INTERNATIONAL = re.compile(r"\+(?<![\w+]\+)[1-9](?:[ .()-]{0,2}[0-9]){6,14}(?![0-9])", re.ASCII)
_PHONE_NANP = re.compile(
    r"(?<![\w.+-])(?:1([ .-]))?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}([ .-]))[0-9]{3}([ .-])[0-9]{4}(?![\w]|[.-][0-9])",
    re.ASCII,
)
_PHONE_NATIONAL = re.compile(
    r"(?<![\w.+-])(?:\(0[1-9][0-9]{0,3}\) ?[0-9]{3,4}[ .-]?[0-9]{3,4}|0[1-9][0-9]{0,3}([ .-])[0-9]{2,8}(?:\1[0-9]{2,8}){0,3})"
    r"(?![\w]|[.-][0-9])",
    re.ASCII,
)
_PHONE_AFTER_WORD = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|cell|fax|whatsapp|call me at|text me at)\b"
    r"\s*(?:(?:number|no\.?|#)\s*)?(?:is\s+)?(?:[:=.]\s*)?(\+?[0-9][0-9 .()-]{5,22}[0-9])(?![0-9])",
    re.ASCII,
)


def _digit_count(s: str) -> int:
    return sum(ch.isdigit() for ch in s)


def _find_phones(text: str) -> list[Span]:
    spans = []
    for m in _PHONE_INTERNATIONAL.finditer(text):
        digits = _digit_count(m.group())
        compact = digits == len(m.group()) - 1
        if (10 if compact else 8) <= digits <= 15:
            spans.append(m.span())
    for m in _PHONE_NANP.finditer(text):
        if m.group(2) is None or m.group(2) == m.group(3):  # one separator throughout, parentheses aside
            spans.append(m.span())
    for m in _PHONE_NATIONAL.finditer(text):
        if 9 <= _digit_count(m.group()) <= 12:
            spans.append(m.span())
    for m in _PHONE_AFTER_WORD.finditer(text):
        if 7 <= _digit_count(m.group(1)) <= 15:
            spans.append(m.span(1))
    return spans


_FINDERS: dict[str, Callable[[str], list[Span]]] = {
    "url_credentials": _find_url_credentials,
    "email": _find_emails,
    "iban": _find_ibans,
    "card": _find_cards,
    "ssn": _find_ssns,
    "ip": _find_ips,
    "phone": _find_phones,
}


def _merged(spans: Iterable[Span]) -> list[Span]:
    """Overlapping matches of one kind (two phone rules on one number) become their union: redacting
    the union never leaves a piece of either behind."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def find_pii(text: str, kind: str) -> list[Span]:
    """Spans of one kind of personal data in ``text`` (non-overlapping, in text order)."""
    if kind in _NEEDS_LONG_NUMBER and _LONG_NUMBER.search(text) is None:
        return []
    return _merged(_FINDERS[kind](text))


def scrub_text(text: str, kinds: Iterable[str]) -> tuple[str, Counter[str]]:
    """Replace every match of ``kinds`` with its placeholder; return the new text and matches per kind.

    Kinds run in :data:`DETECTION_ORDER` whatever order ``kinds`` has, each on the text the previous
    kinds left, so a placeholder is never matched again and no span is counted twice.
    """
    wanted = set(kinds)
    if _LONG_NUMBER.search(text) is None:  # checked once here rather than once per numeric kind
        wanted -= _NEEDS_LONG_NUMBER
    found: Counter[str] = Counter()
    for kind in DETECTION_ORDER:
        if kind not in wanted:
            continue
        spans = _merged(_FINDERS[kind](text))
        if not spans:
            continue
        found[kind] += len(spans)
        pieces, last = [], 0
        for start, end in spans:
            pieces += [text[last:start], REPLACEMENTS[kind]]
            last = end
        text = "".join(pieces) + text[last:]
    return text, found
