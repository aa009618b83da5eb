"""Endpoint URLs a user types: validated, and any credential in them taken out before storage.

Why: ``http://user:pass@host/v1`` or ``https://host/v1?api_key=...`` would put a key in DuckDB,
which is copied and shared, and print it in every listing. :func:`parse_endpoint_url` checks the
URL (http or https, a host without spaces, a port from 1 to 65535, IPv6 in brackets) and splits
out the credential: the service stores it in ``secrets.toml`` as the endpoint's API key (sent as
``Authorization: Bearer``, which every OpenAI-compatible server takes) and the URL without it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from core.errors import BadInput
from core.inputs import quote

MAX_URL_CHARS = 2048
# query parameters that carry a credential (compared lower-case, '-' read as '_')
SECRET_QUERY_KEYS = frozenset({"api_key", "apikey", "key", "token", "access_token", "auth", "auth_token",
                               "password", "secret", "client_secret", "sig", "signature"})
_HOST = re.compile(r"^[\w](?:[\w\-.]*[\w])?$", re.UNICODE)
MASK = "***"
HINT = "Use e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1."


@dataclass(frozen=True)
class EndpointURL:
    url: str                      # what is stored and shown: no credentials
    secret: str | None = None     # the credential taken out of it, if any
    moved: tuple[str, ...] = ()   # where it was: 'user:password', or the query keys

    @property
    def notice(self) -> str | None:
        """What to tell the user when a credential was taken out."""
        if not self.moved:
            return None
        return (f"The URL held a credential ({', '.join(self.moved)}): it was moved to STUDIO_HOME/secrets.toml as "
                f"the endpoint's API key (sent as a Bearer token), and the URL is stored as {self.url}.")


def _fail(url: str, why: str) -> BadInput:
    return BadInput(f"base_url={quote(url, 80)} {why}.", hint=HINT)


def _check_host(url: str, parts) -> None:
    netloc_host = parts.netloc.rpartition("@")[2]
    if netloc_host.startswith("["):
        literal = netloc_host[1:].partition("]")[0].partition("%")[0]
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise _fail(url, f"has an invalid IPv6 address {quote(literal)}") from None
        return
    host = parts.hostname or ""
    if not host:
        raise _fail(url, "has no host")
    if ":" in host or not _HOST.match(host) or len(host) > 253:
        raise _fail(url, f"has an invalid host {quote(host)} (an IPv6 address goes in brackets: http://[::1]:8000/v1)")


def parse_endpoint_url(url: object) -> EndpointURL:
    """Validate an endpoint's base URL and take any credential out of it."""
    if not isinstance(url, str) or not url.strip():
        raise BadInput("base_url is empty.", hint=HINT)
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        raise _fail(url, f"is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise _fail(url, "contains a space or a control character (encode a space in a path as %20)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", a port that is not a number
        raise _fail(url, f"is malformed ({exc})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise _fail(url, "is not an http(s) URL")
    _check_host(url, parts)
    if port is not None and not 1 <= port <= 65535:
        raise _fail(url, f"has port {port}; ports go from 1 to 65535")
    return _without_credentials(url, parts)


def _is_secret_key(key: str) -> bool:
    return key.lower().replace("-", "_") in SECRET_QUERY_KEYS


def _without_credentials(url: str, parts) -> EndpointURL:
    secrets: dict[str, str] = {}
    if parts.password:
        secrets["user:password"] = parts.password
    elif parts.username:
        secrets["user"] = parts.username
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    secrets.update((key, value) for key, value in pairs if _is_secret_key(key) and value)
    values = set(secrets.values())
    if len(values) > 1:
        raise BadInput(f"The URL holds {len(values)} different credentials ({', '.join(secrets)}).",
                       hint="Give the endpoint one API key: remove the others from the URL.")
    if "@" not in parts.netloc and not any(_is_secret_key(key) for key, _ in pairs):
        return EndpointURL(url=url)
    query = urlencode([(key, value) for key, value in pairs if not _is_secret_key(key)])
    clean = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, query, parts.fragment))
    return EndpointURL(url=clean, secret=values.pop() if values else None, moved=tuple(secrets))


def redact_url(url: str) -> str:
    """A URL for display: user, password and secret query values masked (for rows stored before
    URLs were cleaned on the way in)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if "@" not in parts.netloc and not any(_is_secret_key(key) for key, _ in pairs):
        return url
    netloc = MASK + "@" + parts.netloc.rpartition("@")[2] if "@" in parts.netloc else parts.netloc
    query = urlencode([(key, MASK if _is_secret_key(key) else value) for key, value in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
